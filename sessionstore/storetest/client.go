package storetest

import (
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
)

// testClientContext: the user agent and client address of the login, those
// of the last rotation, and the DPoP binding are kept by Create,
// CreateLimited and List; a rotation replaces the refresh's pair and keeps
// the rest; a grace result changes nothing; and a session without them (as
// stored before they existed) stays without them.
func testClientContext(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	st := open(t)
	s := newSession("ua", "alice", t0)
	s.LoginUserAgent = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"
	s.LoginClient = "192.0.2.7"
	s.RefreshUserAgent, s.RefreshClient = s.LoginUserAgent, s.LoginClient
	s.JKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
	create(t, st, s)
	wantSession(t, "Get after Create", get(t, st, "ua"), s)

	at := t0.Add(10 * time.Minute)
	res := rotate(t, st, sessionstore.RotateRequest{
		SessionID: "ua", JTI: s.JTI, NewJTI: "ua-jti-1", Now: at, IdleTimeout: idle, Grace: grace,
		UserAgent: "curl/8.5.0", Client: "2001:db8::1",
	})
	want := rotated(s, "ua-jti-1", at, idle, "curl/8.5.0", "2001:db8::1")
	wantSession(t, "Rotate's session", res.Session, want)
	wantSession(t, "Get after Rotate", get(t, st, "ua"), want)

	res = rotate(t, st, sessionstore.RotateRequest{
		SessionID: "ua", JTI: s.JTI, NewJTI: "unused", Now: at.Add(time.Second), IdleTimeout: idle, Grace: grace,
		UserAgent: "other/1", Client: "198.51.100.1",
	})
	if !res.Grace {
		t.Fatalf("Rotate(previous jti within grace).Grace = false, want true")
	}
	wantSession(t, "Get after a grace result", get(t, st, "ua"), want)

	// A rotation that records no client context records it as not known:
	// the last refresh's, not the login's, is what it describes.
	res = rotate(t, st, sessionstore.RotateRequest{
		SessionID: "ua", JTI: "ua-jti-1", NewJTI: "ua-jti-2", Now: at.Add(time.Minute), IdleTimeout: idle, Grace: grace,
	})
	if res.Session.RefreshUserAgent != "" || res.Session.RefreshClient != "" || res.Session.LoginUserAgent != s.LoginUserAgent {
		t.Fatalf("Rotate without client context: refresh %q %q, login %q; want empty, empty, %q",
			res.Session.RefreshUserAgent, res.Session.RefreshClient, res.Session.LoginUserAgent, s.LoginUserAgent)
	}

	limited := newSession("ua-limited", "bob", t0)
	limited.LoginUserAgent, limited.LoginClient = "Safari/17", "203.0.113.9"
	limited.RefreshUserAgent, limited.RefreshClient = limited.LoginUserAgent, limited.LoginClient
	old := newSession("ua-old", "bob", t0.Add(time.Second)) // no client context, no binding
	wantListed(t, st, limited, old, t0.Add(time.Minute))
}
