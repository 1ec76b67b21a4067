package auth

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
)

// noIdPSessions is a store that cannot record identity provider sessions.
type noIdPSessions struct{ sessionstore.Store }

func (noIdPSessions) PutIdPSession(context.Context, string, string, string, time.Time) error {
	return fmt.Errorf("test: %w: disk full", sessionstore.ErrUnavailable)
}

// TestSessionsIdPSessionEntry: an OpenID Connect login with a sid records
// its provider session until the session's absolute end, and a logout
// token with that sid alone ends exactly that session; a login whose entry
// cannot be written fails closed (ErrStoreUnavailable) with nothing stored
// and no session revoked past the limit; a login without sid, or not of
// OpenID Connect, records nothing.
func TestSessionsIdPSessionEntry(t *testing.T) {
	f := newSessionsFixture(t, func(c *SessionsConfig) { c.MaxSessionsPerUser = 1 })
	ctx := t.Context()
	const iss = "https://idp.example/"
	login := func(s *Sessions, sid string) (Grant, error) {
		return s.Login(ctx, Identity{Subject: "alice", IdP: IdPLogin{Issuer: iss, SessionID: sid}}, Client{})
	}
	g, err := login(f.sessions, "op-sid-1")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := f.store.IdPSessionSubject(ctx, iss, "op-sid-1"); err != nil || got != "alice" {
		t.Fatalf("entry of op-sid-1 = %q, %v; want alice", got, err)
	}

	broken := NewSessions(noIdPSessions{f.store}, f.sessions.minter, f.sessions.cfg)
	if _, err := login(broken, "op-sid-2"); !errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("Login with the entry failing = %v, want ErrStoreUnavailable", err)
	}
	if list, err := f.sessions.List(ctx, "alice"); err != nil || len(list) != 1 || list[0].ID != g.SessionID {
		t.Fatalf("after the failed login: alice's sessions %v, %v; want only the first, unrevoked", list, err)
	}
	// Without a sid, or without a provider: nothing to record, so the
	// broken entry does not matter.
	if _, err := broken.Login(ctx, Identity{Subject: "bob", IdP: IdPLogin{Issuer: iss}}, Client{}); err != nil {
		t.Errorf("Login without a sid on the broken store = %v, want nil", err)
	}
	if _, err := broken.Login(ctx, Identity{Subject: "carol"}, Client{}); err != nil {
		t.Errorf("Login without a provider on the broken store = %v, want nil", err)
	}

	tok := LogoutToken{Issuer: iss, SessionID: "op-sid-1", ID: "jti-1", IssuedAt: f.clock.Now()}
	revoked, err := f.sessions.EndIdPLogout(ctx, tok)
	if err != nil || len(revoked) != 1 || revoked[0] != g.SessionID {
		t.Fatalf("EndIdPLogout(sid only) = %v, %v; want [%s]", revoked, err, g.SessionID)
	}
	if _, err := f.sessions.EndIdPLogout(ctx, tok); !errors.Is(err, ErrLogoutReplayed) {
		t.Errorf("EndIdPLogout(replayed) = %v, want ErrLogoutReplayed", err)
	}
	tok.ID, tok.SessionID = "jti-2", "op-sid-unknown"
	if revoked, err := f.sessions.EndIdPLogout(ctx, tok); err != nil || revoked != nil {
		t.Errorf("EndIdPLogout(unknown sid) = %v, %v; want nothing, nil", revoked, err)
	}
	// A sweep just before the session's absolute end keeps the entry (the
	// session itself is swept at its idle end, long before); one at it
	// removes it.
	if _, err := f.store.Sweep(ctx, g.SessionEnd.Add(-time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.IdPSessionSubject(ctx, iss, "op-sid-1"); err != nil {
		t.Fatalf("entry before the session's end = %v, want found", err)
	}
	if _, err := f.store.Sweep(ctx, g.SessionEnd); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.IdPSessionSubject(ctx, iss, "op-sid-1"); !errors.Is(err, sessionstore.ErrNotFound) {
		t.Fatalf("entry at the session's end = %v, want ErrNotFound", err)
	}
}
