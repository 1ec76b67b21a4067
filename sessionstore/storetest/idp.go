package storetest

import (
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
)

// testIdentityProvider: an OpenID Connect login's issuer, IdP session ID,
// refresh token and ID token are kept by Create, CreateLimited, Get, List
// and Revoke; a rotation with an IdPRefreshToken replaces the refresh token
// and keeps the rest, one without keeps it, a grace result changes nothing;
// a session of another login stays without them.
func testIdentityProvider(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	st := open(t)
	ctx := t.Context()
	s := newSession("idp", "alice", t0)
	s.Issuer = "http://localhost:9998/"
	s.IdPSessionID = "op-session-7"
	s.IdPRefreshToken = "sealed-refresh-token-1"
	s.IDToken = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJpZDEifQ.c2ln"
	create(t, st, s)
	wantSession(t, "Get after Create", get(t, st, "idp"), s)

	at := t0.Add(10 * time.Minute)
	res := rotate(t, st, sessionstore.RotateRequest{
		SessionID: "idp", JTI: s.JTI, NewJTI: "idp-jti-1", Now: at, IdleTimeout: idle, Grace: grace,
		IdPRefreshToken: "sealed-refresh-token-2",
	})
	want := rotated(s, "idp-jti-1", at, idle, "", "")
	want.IdPRefreshToken = "sealed-refresh-token-2"
	wantSession(t, "Rotate's session", res.Session, want)
	wantSession(t, "Get after Rotate", get(t, st, "idp"), want)

	res = rotate(t, st, sessionstore.RotateRequest{
		SessionID: "idp", JTI: s.JTI, NewJTI: "unused", Now: at.Add(time.Second), IdleTimeout: idle, Grace: grace,
		IdPRefreshToken: "never-stored",
	})
	if !res.Grace {
		t.Fatalf("Rotate(previous jti within grace).Grace = false, want true")
	}
	wantSession(t, "Get after a grace result", get(t, st, "idp"), want)

	at = at.Add(time.Minute)
	res = rotate(t, st, sessionstore.RotateRequest{
		SessionID: "idp", JTI: "idp-jti-1", NewJTI: "idp-jti-2", Now: at, IdleTimeout: idle, Grace: grace,
	})
	want = rotated(want, "idp-jti-2", at, idle, "", "")
	wantSession(t, "Rotate without an IdP refresh token", res.Session, want)

	limited := newSession("idp-limited", "bob", t0)
	limited.Issuer, limited.IDToken = "https://idp.example/", "id-token"
	wantListed(t, st, limited, newSession("idp-plain", "bob", t0.Add(time.Second)), t0.Add(2*time.Second))

	if _, err := st.Revoke(ctx, "idp", sessionstore.ReasonIdPRefused, at.Add(time.Second)); err != nil {
		t.Fatalf("Revoke = %v", err)
	}
	want.RevokedAt, want.RevokeReason = at.Add(time.Second), sessionstore.ReasonIdPRefused
	wantSession(t, "Get after Revoke", get(t, st, "idp"), want)
}
