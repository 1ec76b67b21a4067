package auth

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// loginFrom logs subject in from c and returns the grant and its token.
func (f *sessionsFixture) loginFrom(tb testing.TB, subject string, c Client) (Grant, *Token) {
	tb.Helper()
	g, err := f.sessions.Login(tb.Context(), Identity{Subject: subject}, c)
	if err != nil {
		tb.Fatalf("Login(%s) = %v", subject, err)
	}
	return g, f.token(tb, g)
}

func ownIDs(list []OwnSession) []string {
	var ids []string
	for _, s := range list {
		ids = append(ids, s.ID)
	}
	return ids
}

func TestOwnSessions(t *testing.T) {
	f := newSessionsFixture(t, nil)
	ctx := t.Context()
	laptop := Client{UserAgent: "Firefox/140", Address: "192.0.2.1"}
	phone := Client{UserAgent: "Safari/17", Address: "198.51.100.2"}
	a1, tok1 := f.loginFrom(t, "alice", laptop)
	f.clock.Advance(time.Second)
	a2, _ := f.loginFrom(t, "alice", phone)
	f.loginFrom(t, "bob", laptop)

	list, err := f.sessions.Own(ctx, tok1)
	if err != nil {
		t.Fatalf("Own(alice) = %v", err)
	}
	if got, want := ownIDs(list), []string{a1.SessionID, a2.SessionID}; !slices.Equal(got, want) {
		t.Fatalf("Own(alice) = %q, want %q (oldest first, never bob's)", got, want)
	}
	if !list[0].Current || list[1].Current {
		t.Errorf("Current = %v, %v; want true, false", list[0].Current, list[1].Current)
	}
	if list[1].UserAgent != phone.UserAgent || list[1].Client != phone.Address || list[1].LoginUserAgent != phone.UserAgent || list[1].Bound {
		t.Errorf("Own(alice)[1] = %+v, want the phone's user agent and address, unbound", list[1])
	}

	// A refresh from elsewhere is recorded as the last refresh's; the
	// login's stays.
	f.clock.Advance(16 * time.Minute)
	moved := Client{UserAgent: "Firefox/141", Address: "203.0.113.3"}
	if _, err := f.sessions.Refresh(ctx, tok1, moved); err != nil {
		t.Fatalf("Refresh = %v", err)
	}
	list, err = f.sessions.Own(ctx, tok1) // Own needs a live session, not a current jti
	if err != nil {
		t.Fatalf("Own after refresh = %v", err)
	}
	s := list[0]
	if s.UserAgent != moved.UserAgent || s.Client != moved.Address || s.LoginUserAgent != laptop.UserAgent ||
		s.LoginClient != laptop.Address || !s.RefreshedAt.Equal(f.clock.Now()) || !s.CreatedAt.Equal(a1.Now) {
		t.Errorf("Own after refresh = %+v, want refreshed from %+v at %v, logged in from %+v", s, moved, f.clock.Now(), laptop)
	}
}

func TestClientBounded(t *testing.T) {
	f := newSessionsFixture(t, nil)
	// "é" (2 bytes) across the 256th byte: the cut keeps whole characters.
	ua := strings.Repeat("a", MaxUserAgentBytes-1) + "é" + strings.Repeat("b", 10_000)
	_, tok := f.loginFrom(t, "alice", Client{UserAgent: ua, Address: strings.Repeat("1", 1000)})
	list, err := f.sessions.Own(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	got := list[0]
	if len(got.UserAgent) != MaxUserAgentBytes-1 || !utf8.ValidString(got.UserAgent) || len(got.LoginUserAgent) != MaxUserAgentBytes-1 {
		t.Errorf("recorded user agent of %d bytes (valid UTF-8: %v), want %d", len(got.UserAgent), utf8.ValidString(got.UserAgent), MaxUserAgentBytes-1)
	}
	if len(got.Client) != MaxAddressBytes {
		t.Errorf("recorded address of %d bytes, want %d", len(got.Client), MaxAddressBytes)
	}
}

func TestEndOwn(t *testing.T) {
	f := newSessionsFixture(t, nil)
	ctx := t.Context()
	_, alice := f.loginFrom(t, "alice", Client{})
	a2, alice2 := f.loginFrom(t, "alice", Client{})
	b, _ := f.loginFrom(t, "bob", Client{})

	for _, id := range []string{b.SessionID, "no-such-session", ""} {
		if err := f.sessions.EndOwn(ctx, alice, id); !errors.Is(err, ErrOtherSession) || !errors.Is(err, ErrSessionUnknown) {
			t.Errorf("EndOwn(alice, %q) = %v, want %v", id, err, ErrOtherSession)
		}
	}
	if _, err := f.sessions.Check(ctx, b.SessionID); err != nil {
		t.Fatalf("bob's session after alice's attempt: Check = %v, want live", err)
	}
	if err := f.sessions.EndOwn(ctx, alice, a2.SessionID); err != nil {
		t.Fatalf("EndOwn(alice, her other session) = %v", err)
	}
	// Ended: the same answer as for anyone else's, and it no longer refreshes.
	if err := f.sessions.EndOwn(ctx, alice, a2.SessionID); !errors.Is(err, ErrOtherSession) {
		t.Errorf("EndOwn of an ended session = %v, want %v", err, ErrOtherSession)
	}
	f.clock.Advance(16 * time.Minute)
	if _, err := f.sessions.Refresh(ctx, alice2, Client{}); !errors.Is(err, ErrSessionRevoked) {
		t.Errorf("Refresh of the ended session = %v, want %v", err, ErrSessionRevoked)
	}
	// The ended session's token has no say over the others.
	if err := f.sessions.EndOwn(ctx, alice2, alice.SessionID); !errors.Is(err, ErrSessionRevoked) {
		t.Errorf("EndOwn with an ended session's token = %v, want %v", err, ErrSessionRevoked)
	}
	if _, err := f.sessions.Own(ctx, alice2); !errors.Is(err, ErrSessionRevoked) {
		t.Errorf("Own with an ended session's token = %v, want %v", err, ErrSessionRevoked)
	}
}

func TestLogoutScope(t *testing.T) {
	f := newSessionsFixture(t, nil)
	ctx := t.Context()
	a1, alice := f.loginFrom(t, "alice", Client{})
	a2, _ := f.loginFrom(t, "alice", Client{})
	a3, _ := f.loginFrom(t, "alice", Client{})
	b, _ := f.loginFrom(t, "bob", Client{})

	for _, scope := range []string{"", "All", "session", "others "} {
		if _, err := f.sessions.LogoutScope(ctx, alice, scope); !errors.Is(err, ErrUnknownScope) {
			t.Errorf("LogoutScope(%q) = %v, want %v", scope, err, ErrUnknownScope)
		}
	}
	ended, err := f.sessions.LogoutScope(ctx, alice, ScopeOthers)
	if err != nil {
		t.Fatalf("LogoutScope(others) = %v", err)
	}
	slices.Sort(ended)
	want := []string{a2.SessionID, a3.SessionID}
	slices.Sort(want)
	if !slices.Equal(ended, want) {
		t.Fatalf("LogoutScope(others) ended %q, want %q", ended, want)
	}
	for id, live := range map[string]bool{a1.SessionID: true, a2.SessionID: false, a3.SessionID: false, b.SessionID: true} {
		if _, err := f.sessions.Check(ctx, id); (err == nil) != live {
			t.Errorf("Check(%s) = %v, want live %v", id, err, live)
		}
	}
	a4, _ := f.loginFrom(t, "alice", Client{})
	ended, err = f.sessions.LogoutScope(ctx, alice, ScopeAll)
	if err != nil {
		t.Fatalf("LogoutScope(all) = %v", err)
	}
	slices.Sort(ended)
	want = []string{a1.SessionID, a4.SessionID}
	slices.Sort(want)
	if !slices.Equal(ended, want) {
		t.Fatalf("LogoutScope(all) ended %q, want %q", ended, want)
	}
	if _, err := f.sessions.Check(ctx, b.SessionID); err != nil {
		t.Errorf("bob's session after alice's logout of all: %v, want live", err)
	}
	// Over now: the token no longer ends anything.
	if _, err := f.sessions.LogoutScope(ctx, alice, ScopeAll); !errors.Is(err, ErrSessionRevoked) {
		t.Errorf("LogoutScope(all) from an ended session = %v, want %v", err, ErrSessionRevoked)
	}
}
