package auth

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
	"github.com/spa-gateway/gateway/sessionstore/boltstore"
)

// sessionsFixture is a Sessions over a real bbolt file, with an injected
// clock, and the verifier of its tokens.
type sessionsFixture struct {
	clock    *testClock
	store    sessionstore.Store
	sessions *Sessions
	verifier *Verifier
	mu       sync.Mutex
	observed []string // the ops ObserveStore was told of
}

func newSessionsFixture(tb testing.TB, edit func(*SessionsConfig)) *sessionsFixture {
	tb.Helper()
	f := &sessionsFixture{clock: newTestClock()}
	keys, err := NewKeySet(testKey(tb, EdDSA, 0))
	if err != nil {
		tb.Fatal(err)
	}
	st, err := boltstore.Open(filepath.Join(tb.TempDir(), "sessions.db"), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	f.store = st
	f.verifier, err = NewVerifier(VerifierConfig{Keys: keys, Algorithm: EdDSA, Issuer: "gateway", Audience: "api", Now: f.clock.Now})
	if err != nil {
		tb.Fatal(err)
	}
	cfg := SessionsConfig{
		AccessTTL:       15 * time.Minute,
		IdleTimeout:     time.Hour,
		AbsoluteTimeout: 24 * time.Hour,
		RefreshGrace:    10 * time.Second,
		StoreTimeout:    5 * time.Second,
		Now:             f.clock.Now,
		ObserveStore: func(op string, d time.Duration) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.observed = append(f.observed, op)
		},
	}
	if edit != nil {
		edit(&cfg)
	}
	f.sessions = NewSessions(f.store, NewMinter(keys, "gateway", "api"), cfg)
	return f
}

// token verifies a grant's token, exp relaxed.
func (f *sessionsFixture) token(tb testing.TB, g Grant) *Token {
	tb.Helper()
	tok, err := f.verifier.VerifyExpired(g.Token)
	if err != nil {
		tb.Fatalf("VerifyExpired(grant token) = %v", err)
	}
	return tok
}

func (f *sessionsFixture) login(tb testing.TB, subject string) (Grant, *Token) {
	tb.Helper()
	g, err := f.sessions.Login(tb.Context(), Identity{Subject: subject, Roles: []string{"reader"}}, Client{})
	if err != nil {
		tb.Fatalf("Login(%s) = %v", subject, err)
	}
	return g, f.token(tb, g)
}

func TestSessionsLogin(t *testing.T) {
	f := newSessionsFixture(t, nil)
	now := f.clock.Now()
	g, tok := f.login(t, "alice")
	if g.SessionID == "" || g.SessionID != tok.SessionID || tok.ID == "" || tok.Subject != "alice" || g.Subject != "alice" {
		t.Errorf("Login: grant %+v, token sid %q jti %q sub %q", g, tok.SessionID, tok.ID, tok.Subject)
	}
	if !slices.Equal(tok.Roles, []string{"reader"}) {
		t.Errorf("token roles = %v, want [reader]", tok.Roles)
	}
	if want := now.Add(15 * time.Minute); !g.ExpiresAt.Equal(want) || !tok.ExpiresAt.Equal(want) {
		t.Errorf("exp = %v (token %v), want %v", g.ExpiresAt, tok.ExpiresAt, want)
	}
	if want := now.Add(time.Hour); !g.RefreshDeadline.Equal(want) {
		t.Errorf("RefreshDeadline = %v, want %v (the idle deadline)", g.RefreshDeadline, want)
	}
	if want := now.Add(24 * time.Hour); !g.SessionEnd.Equal(want) {
		t.Errorf("SessionEnd = %v, want %v", g.SessionEnd, want)
	}
	if !g.Now.Equal(now) || g.Revoked != nil || g.Grace {
		t.Errorf("Now %v Revoked %v Grace %v; want %v, nil, false", g.Now, g.Revoked, g.Grace, now)
	}
	s, err := f.store.Get(t.Context(), g.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	if s.JTI != tok.ID || !s.CreatedAt.Equal(now) {
		t.Errorf("stored session jti %q created %v; want %q, %v", s.JTI, s.CreatedAt, tok.ID, now)
	}
	other, _ := f.login(t, "alice")
	if other.SessionID == g.SessionID {
		t.Error("two logins got the same session ID")
	}
	if !slices.Equal(f.observed, []string{"create", "create"}) {
		t.Errorf("observed %v, want [create create]", f.observed)
	}
}

func TestSessionsLoginLimit(t *testing.T) {
	f := newSessionsFixture(t, func(c *SessionsConfig) { c.MaxSessionsPerUser = 2 })
	first, _ := f.login(t, "alice")
	f.clock.Advance(time.Second)
	f.login(t, "alice")
	f.clock.Advance(time.Second)
	third, _ := f.login(t, "alice")
	if !slices.Equal(third.Revoked, []string{first.SessionID}) {
		t.Errorf("third login revoked %v, want [%s]", third.Revoked, first.SessionID)
	}
	if _, err := f.sessions.Check(t.Context(), first.SessionID); !errors.Is(err, ErrSessionRevoked) || EndReason(err) != ReasonSessionLimit {
		t.Errorf("Check(first) = %v (reason %q), want ErrSessionRevoked, %q", err, EndReason(err), ReasonSessionLimit)
	}
}

// TestSessionsExpCapped: a token's exp never passes its session's end.
func TestSessionsExpCapped(t *testing.T) {
	f := newSessionsFixture(t, func(c *SessionsConfig) { c.AbsoluteTimeout = 10 * time.Minute })
	now := f.clock.Now()
	g, tok := f.login(t, "alice")
	if want := now.Add(10 * time.Minute); !g.ExpiresAt.Equal(want) || !tok.ExpiresAt.Equal(want) {
		t.Errorf("exp = %v (token %v), want the session's end %v", g.ExpiresAt, tok.ExpiresAt, want)
	}
}

// TestSessionsRefreshRules walks the refresh rules in their order, each
// with the error it gives and the end reason.
func TestSessionsRefreshRules(t *testing.T) {
	tests := []struct {
		name string
		// prepare logs in and returns the token to refresh, the clock
		// moved as the case needs.
		prepare    func(t *testing.T, f *sessionsFixture) *Token
		want       error
		wantReason string
		wantGrace  bool
	}{
		{
			name: "token names no session",
			prepare: func(t *testing.T, f *sessionsFixture) *Token {
				return &Token{Subject: "alice", ID: "j", ExpiresAt: f.clock.Now().Add(-time.Minute)}
			},
			want: ErrNoSession,
		},
		{
			name: "token not expired",
			prepare: func(t *testing.T, f *sessionsFixture) *Token {
				_, tok := f.login(t, "alice")
				return tok
			},
			want: ErrTokenNotExpired,
		},
		{
			name: "expired token rotates",
			prepare: func(t *testing.T, f *sessionsFixture) *Token {
				_, tok := f.login(t, "alice")
				f.clock.Advance(16 * time.Minute)
				return tok
			},
		},
		{
			name: "unknown session",
			prepare: func(t *testing.T, f *sessionsFixture) *Token {
				return &Token{Subject: "alice", SessionID: "nope", ID: "j", ExpiresAt: f.clock.Now().Add(-time.Minute)}
			},
			want: ErrSessionUnknown, wantReason: EndUnknownSession,
		},
		{
			name: "revoked session",
			prepare: func(t *testing.T, f *sessionsFixture) *Token {
				_, tok := f.login(t, "alice")
				if _, err := f.sessions.Logout(t.Context(), tok); err != nil {
					t.Fatal(err)
				}
				f.clock.Advance(16 * time.Minute)
				return tok
			},
			want: ErrSessionRevoked, wantReason: EndRevoked,
		},
		{
			name: "idle session",
			prepare: func(t *testing.T, f *sessionsFixture) *Token {
				_, tok := f.login(t, "alice")
				f.clock.Advance(time.Hour)
				return tok
			},
			want: ErrSessionExpired, wantReason: EndExpired,
		},
		{
			name: "rotated token within the grace",
			prepare: func(t *testing.T, f *sessionsFixture) *Token {
				_, tok := f.login(t, "alice")
				f.clock.Advance(16 * time.Minute)
				if _, err := f.sessions.Refresh(t.Context(), tok, Client{}); err != nil {
					t.Fatal(err)
				}
				f.clock.Advance(5 * time.Second)
				return tok
			},
			wantGrace: true,
		},
		{
			name: "rotated token after the grace",
			prepare: func(t *testing.T, f *sessionsFixture) *Token {
				_, tok := f.login(t, "alice")
				f.clock.Advance(16 * time.Minute)
				if _, err := f.sessions.Refresh(t.Context(), tok, Client{}); err != nil {
					t.Fatal(err)
				}
				f.clock.Advance(11 * time.Second)
				return tok
			},
			want: ErrTokenReused, wantReason: ReasonReuseDetected,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newSessionsFixture(t, nil)
			tok := tt.prepare(t, f)
			g, err := f.sessions.Refresh(t.Context(), tok, Client{})
			if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
				t.Fatalf("Refresh = %v, want %v", err, tt.want)
			}
			if got := EndReason(err); got != tt.wantReason {
				t.Errorf("EndReason(%v) = %q, want %q", err, got, tt.wantReason)
			}
			if err != nil {
				return
			}
			if g.Grace != tt.wantGrace {
				t.Errorf("Grace = %v, want %v", g.Grace, tt.wantGrace)
			}
			next := f.token(t, g)
			if next.SessionID != tok.SessionID || next.ID == tok.ID {
				t.Errorf("successor sid %q jti %q; want sid %q and a new jti", next.SessionID, next.ID, tok.SessionID)
			}
			if want := next.IssuedAt.Add(15 * time.Minute); !g.ExpiresAt.Equal(want) {
				t.Errorf("successor exp = %v, want %v", g.ExpiresAt, want)
			}
		})
	}
}

// TestSessionsRefreshBeforeExpiry: a token refreshes early only within
// RefreshBeforeExpiry of its exp.
func TestSessionsRefreshBeforeExpiry(t *testing.T) {
	f := newSessionsFixture(t, func(c *SessionsConfig) { c.RefreshBeforeExpiry = 2 * time.Minute })
	_, tok := f.login(t, "alice")
	f.clock.Advance(12 * time.Minute)
	if _, err := f.sessions.Refresh(t.Context(), tok, Client{}); !errors.Is(err, ErrTokenNotExpired) {
		t.Errorf("Refresh 3 min before exp = %v, want ErrTokenNotExpired", err)
	}
	f.clock.Advance(time.Minute + time.Second)
	if _, err := f.sessions.Refresh(t.Context(), tok, Client{}); err != nil {
		t.Errorf("Refresh 2 min before exp = %v, want nil", err)
	}
}

func TestSessionsLogout(t *testing.T) {
	f := newSessionsFixture(t, nil)
	_, tok := f.login(t, "alice")
	tests := []struct {
		name    string
		tok     *Token
		revoked bool
		err     error
	}{
		{"first", tok, true, nil},
		{"again", tok, false, nil},
		{"unknown session", &Token{SessionID: "nope"}, false, nil},
		{"no session", &Token{}, false, ErrNoSession},
	}
	for _, tt := range tests {
		revoked, err := f.sessions.Logout(t.Context(), tt.tok)
		if revoked != tt.revoked || !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
			t.Errorf("%s: Logout = %v, %v; want %v, %v", tt.name, revoked, err, tt.revoked, tt.err)
		}
	}
	if _, err := f.sessions.Check(t.Context(), tok.SessionID); EndReason(err) != ReasonLogout {
		t.Errorf("Check after logout = %v (reason %q), want reason %q", err, EndReason(err), ReasonLogout)
	}
}

func TestSessionsCheck(t *testing.T) {
	f := newSessionsFixture(t, nil)
	g, _ := f.login(t, "alice")
	l, err := f.sessions.Check(t.Context(), g.SessionID)
	if err != nil || l.Subject != "alice" || !l.ExpiresAt.Equal(g.SessionEnd) {
		t.Errorf("Check(live) = %+v, %v; want alice, %v", l, err, g.SessionEnd)
	}
	if _, err := f.sessions.CheckTunnel(t.Context(), g.SessionID); err != nil {
		t.Errorf("CheckTunnel(live) = %v", err)
	}
	if _, err := f.sessions.Check(t.Context(), "nope"); !errors.Is(err, ErrSessionUnknown) || EndReason(err) != EndUnknownSession {
		t.Errorf("Check(unknown) = %v (%q)", err, EndReason(err))
	}
	f.clock.Advance(time.Hour)
	if _, err := f.sessions.Check(t.Context(), g.SessionID); !errors.Is(err, ErrSessionExpired) || EndReason(err) != EndExpired {
		t.Errorf("Check(idle) = %v (%q)", err, EndReason(err))
	}
	// Revoked is said before expired.
	if _, err := f.store.Revoke(t.Context(), g.SessionID, "", f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := f.sessions.Check(t.Context(), g.SessionID); !errors.Is(err, ErrSessionRevoked) || EndReason(err) != EndRevoked {
		t.Errorf("Check(revoked, expired) = %v (%q)", err, EndReason(err))
	}
	if got := f.observed[len(f.observed)-1]; got != "get" {
		t.Errorf("last observed op = %q, want get", got)
	}
}

func TestSessionsAdmin(t *testing.T) {
	f := newSessionsFixture(t, nil)
	a, _ := f.login(t, "alice")
	f.clock.Advance(time.Second)
	b, _ := f.login(t, "alice")
	f.login(t, "bob")
	list, err := f.sessions.List(t.Context(), "alice")
	if err != nil || len(list) != 2 || list[0].ID != a.SessionID || list[1].ID != b.SessionID {
		t.Fatalf("List(alice) = %v, %v; want [%s %s]", list, err, a.SessionID, b.SessionID)
	}
	if revoked, err := f.sessions.Revoke(t.Context(), a.SessionID, ReasonAdmin); !revoked || err != nil {
		t.Errorf("Revoke = %v, %v; want true, nil", revoked, err)
	}
	if revoked, err := f.sessions.Revoke(t.Context(), "nope", ReasonAdmin); revoked || !errors.Is(err, ErrSessionUnknown) {
		t.Errorf("Revoke(unknown) = %v, %v; want false, ErrSessionUnknown", revoked, err)
	}
	if n, err := f.sessions.RevokeSubject(t.Context(), "alice", ReasonAdmin); n != 1 || err != nil {
		t.Errorf("RevokeSubject = %d, %v; want 1, nil", n, err)
	}
	// The injected clock decides what is live: past the idle deadline,
	// bob's session is no longer listed.
	f.clock.Advance(time.Hour)
	if list, err := f.sessions.List(t.Context(), "bob"); err != nil || len(list) != 0 {
		t.Errorf("List(bob) an hour later = %v, %v; want none", list, err)
	}
}

// failing is a store whose every call fails as a broken medium does, or
// with a rule error the service must not pass on as such.
type failing struct {
	sessionstore.Store
	err error
}

func (s failing) CreateLimited(context.Context, sessionstore.Session, int) ([]string, error) {
	return nil, s.err
}
func (s failing) Rotate(context.Context, sessionstore.RotateRequest) (sessionstore.RotateResult, error) {
	return sessionstore.RotateResult{}, s.err
}
func (s failing) Revoke(context.Context, string, string, time.Time) (bool, error) {
	return false, s.err
}
func (s failing) Get(context.Context, string) (sessionstore.Session, error) {
	return sessionstore.Session{}, s.err
}

// TestSessionsStoreUnavailable: every failure of the store itself, a
// store's ErrExists and the write timeout come back as ErrStoreUnavailable,
// with no end reason.
func TestSessionsStoreUnavailable(t *testing.T) {
	for _, cause := range []error{
		fmt.Errorf("test: %w: disk full", sessionstore.ErrUnavailable),
		sessionstore.ErrExists,
		errors.New("a store breaking its contract"),
	} {
		f := newSessionsFixture(t, nil)
		s := NewSessions(failing{f.store, cause}, f.sessions.minter, f.sessions.cfg)
		expired := &Token{SessionID: "s", ID: "j", ExpiresAt: f.clock.Now().Add(-time.Minute)}
		_, login := s.Login(t.Context(), Identity{Subject: "alice"}, Client{})
		_, refresh := s.Refresh(t.Context(), expired, Client{})
		_, logout := s.Logout(t.Context(), expired)
		_, check := s.Check(t.Context(), "s")
		for name, err := range map[string]error{"Login": login, "Refresh": refresh, "Logout": logout, "Check": check} {
			if !errors.Is(err, ErrStoreUnavailable) || EndReason(err) != "" {
				t.Errorf("%s with the store failing (%v) = %v, want ErrStoreUnavailable", name, cause, err)
			}
		}
	}
}

// TestSessionsStoreTimeout: a write is bounded by StoreTimeout.
func TestSessionsStoreTimeout(t *testing.T) {
	f := newSessionsFixture(t, func(c *SessionsConfig) { c.StoreTimeout = time.Millisecond })
	s := NewSessions(blocking{f.store}, f.sessions.minter, f.sessions.cfg)
	if _, err := s.Login(t.Context(), Identity{Subject: "alice"}, Client{}); !errors.Is(err, ErrStoreUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Login past the timeout = %v, want ErrStoreUnavailable wrapping the deadline", err)
	}
}

// blocking is a store whose CreateLimited waits for ctx to end, as a
// stalled store does.
type blocking struct{ sessionstore.Store }

func (blocking) CreateLimited(ctx context.Context, _ sessionstore.Session, _ int) ([]string, error) {
	<-ctx.Done()
	return nil, fmt.Errorf("%w: %w", sessionstore.ErrUnavailable, ctx.Err())
}

// TestSessionsMintFailure: a session stored but whose token cannot be
// minted (too many roles) is ErrMint, with the grant describing the session.
func TestSessionsMintFailure(t *testing.T) {
	f := newSessionsFixture(t, nil)
	roles := make([]string, 2000)
	for i := range roles {
		roles[i] = fmt.Sprintf("role-%d", i)
	}
	g, err := f.sessions.Login(t.Context(), Identity{Subject: "alice", Roles: roles}, Client{})
	if !errors.Is(err, ErrMint) || g.Token != "" || g.SessionID == "" {
		t.Errorf("Login with too many roles = %+v, %v; want ErrMint, a session and no token", g.SessionID, err)
	}
}
