package proxy

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spa-gateway/gateway/auth/authtest"
	"github.com/spa-gateway/gateway/metrics"
)

// trustLoopback makes the test client (127.0.0.1) a trusted proxy: the
// ingress of forward-auth.
func trustLoopback(t testing.TB) func(*Config, *Deps) {
	return func(c *Config, _ *Deps) { c.TrustedProxies = mustPrefixes(t, "127.0.0.1/32") }
}

// described is h plus the headers in which an ingress describes the
// original request.
func described(h http.Header, method, uri string) http.Header {
	h = with(h, "X-Forwarded-Method", method, "X-Forwarded-Uri", uri,
		"X-Forwarded-Proto", "https", "X-Forwarded-Host", "app.example")
	return h
}

func decisions(e *env, route, result string) float64 {
	return testutil.ToFloat64(e.metrics.ForwardAuth.WithLabelValues(route, result))
}

// TestVerifyDecides: /auth/verify answers for the original request what a
// proxied one would get, with the identity to inject on 200, never the
// client's spoofed identity nor its credential, and the refusal's JSON
// both as the body and in X-Gateway-Error (for nginx). The upstream is
// never called.
func TestVerifyDecides(t *testing.T) {
	e := newEnv(t, trustLoopback(t))
	tok, _ := e.session("alice", "reader")
	admin, _ := e.session("root", "admin")

	res := e.do("GET", "/auth/verify", with(described(bearer(tok), "GET", "/api/x?q=1"),
		"X-Auth-Subject", "mallory", "X-Auth-Email", "mallory@evil"), "")
	h := res.Header
	if res.StatusCode != http.StatusOK || h.Get("X-Auth-Subject") != "alice" || h.Get("X-Auth-Roles") != "reader" {
		t.Fatalf("valid token: %d %v", res.StatusCode, h)
	}
	if h.Get("X-Auth-Email") != "" || h.Get("Authorization") != "" || h.Get("Cache-Control") != "no-store" {
		t.Errorf("answer echoes the request or is cacheable: %v", h)
	}

	for _, c := range []struct {
		name   string
		h      http.Header
		status int
		code   string
	}{
		{"no token", described(nil, "GET", "/api/x"), 401, errUnauthorized},
		{"bad token", described(bearer("x.y.z"), "GET", "/api/x"), 401, errInvalidToken},
		{"role", described(bearer(tok), "GET", "/admin-api/x"), 403, errInsufficientScope},
		{"dot segment", described(bearer(admin), "GET", "/public/../admin-api/x"), 400, errInvalidRequest},
		{"double encoded", described(bearer(admin), "GET", "/public/%252e%252e/api"), 400, errInvalidRequest},
		{"empty segment", described(nil, "GET", "//api/x"), 400, errInvalidRequest},
		{"own endpoint", described(bearer(tok), "POST", "/auth/refresh"), 404, errNotFound},
		{"verify itself", described(bearer(tok), "GET", "/auth/verify"), 404, errNotFound},
		{"no route", described(bearer(tok), "GET", "/nowhere"), 404, errNotFound},
		{"no uri", with(bearer(tok), "X-Forwarded-Method", "GET"), 400, errInvalidRequest},
		{"absolute uri", described(bearer(tok), "GET", "http://evil/api/x"), 400, errInvalidRequest},
		{"bad method", described(bearer(tok), "G E T", "/api/x"), 400, errInvalidRequest},
	} {
		res := e.do("GET", "/auth/verify", c.h, "")
		body := readBody(t, res)
		var eb errorBody
		json.Unmarshal([]byte(body), &eb)
		if res.StatusCode != c.status || eb.Error != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.name, res.StatusCode, body, c.status, c.code)
		}
		if got := res.Header.Get(HeaderVerifyError); got != strings.TrimSpace(body) {
			t.Errorf("%s: %s = %q, want the body %q", c.name, HeaderVerifyError, got, body)
		}
		if c.status == 401 && !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: no challenge", c.name)
		}
		if res.Header.Get("X-Auth-Subject") != "" {
			t.Errorf("%s: identity on a refusal", c.name)
		}
	}
	// Public and optional routes pass without a token, and inject nothing.
	for _, uri := range []string{"/public/x", "/maybe/x"} {
		res := e.do("GET", "/auth/verify", with(described(nil, "GET", uri), "X-Auth-Subject", "mallory"), "")
		if res.StatusCode != 200 || res.Header.Get("X-Auth-Subject") != "" {
			t.Errorf("%s: %d %v", uri, res.StatusCode, res.Header)
		}
	}
	if len(e.upstream.requests()) != 0 {
		t.Error("forward-auth called the upstream")
	}
	if got := decisions(e, "/api/", metrics.ForwardAllowed); got != 1 {
		t.Errorf("allowed on /api/ = %v, want 1", got)
	}
	if got := decisions(e, "/api/", metrics.ForwardUnauthorized); got != 2 {
		t.Errorf("unauthorized on /api/ = %v, want 2", got)
	}
	if got := decisions(e, "/admin-api/", metrics.ForwardForbidden); got != 1 {
		t.Errorf("forbidden on /admin-api/ = %v, want 1", got)
	}
}

// TestVerifyUntrusted: from a peer outside trusted_proxies the description
// is not believed, whatever it says: 403, counted, and no identity, even
// for a valid token.
func TestVerifyUntrusted(t *testing.T) {
	for name, edit := range map[string]func(*Config, *Deps){
		"none trusted":  nil,
		"other trusted": func(c *Config, _ *Deps) { c.TrustedProxies = mustPrefixes(t, "10.0.0.0/8") },
	} {
		e := newEnv(t, edit)
		tok, _ := e.session("alice")
		res := e.do("GET", "/auth/verify", described(bearer(tok), "GET", "/api/x"), "")
		if eb := errorOf(t, res); res.StatusCode != 403 || eb.Error != errForbidden || res.Header.Get("X-Auth-Subject") != "" {
			t.Errorf("%s: %d %+v %v", name, res.StatusCode, eb, res.Header)
		}
		if got := decisions(e, metrics.RouteUnmatched, metrics.ForwardUntrusted); got != 1 {
			t.Errorf("%s: untrusted = %v", name, got)
		}
	}
}

// TestVerifyOnSpoofReject: under on_spoof = "reject" a spoofed identity
// header in the described request is refused, as a proxied one is.
func TestVerifyOnSpoofReject(t *testing.T) {
	e := newEnv(t, func(c *Config, d *Deps) { trustLoopback(t)(c, d); c.OnSpoof = SpoofReject })
	tok, _ := e.session("alice")
	res := e.do("GET", "/auth/verify", with(described(bearer(tok), "GET", "/api/x"), "X-Auth-Subject", "mallory"), "")
	if res.StatusCode != 400 || res.Header.Get("X-Auth-Subject") != "" {
		t.Fatalf("%d %v", res.StatusCode, res.Header)
	}
}

// TestVerifyDPoP: a bound token's proof is checked against the original
// method and URL (X-Forwarded-Proto and -Host and the original path), not
// against /auth/verify's.
func TestVerifyDPoP(t *testing.T) {
	e := newSessionEnv(t, trustLoopback(t))
	k := authtest.NewDPoPKey(t)
	tok := e.boundLogin(k)
	proof := func(method, url string) http.Header {
		return with(described(dpopAuth(tok), "POST", "/api/x?q=1"), "DPoP", k.Proof(t, method, url, tok, e.clock.Now()))
	}
	res := e.do("GET", "/auth/verify", proof("POST", "https://app.example/api/x"), "")
	if res.StatusCode != 200 || res.Header.Get("X-Auth-Subject") != "alice" {
		t.Fatalf("proof of the original request: %d %s", res.StatusCode, readBody(t, res))
	}
	for name, h := range map[string]http.Header{
		"proof of /auth/verify": proof("GET", e.url("/auth/verify")),
		"proof of another path": proof("POST", "https://app.example/api/y"),
		"proof of another verb": proof("GET", "https://app.example/api/x"),
		"no proof":              described(dpopAuth(tok), "POST", "/api/x"),
	} {
		wantDPoPRefusal(t, name, e.do("GET", "/auth/verify", h, ""), "invalid_dpop_proof")
	}
}

// TestVerifyEveryRequest: under every_request a revoked session's token is
// refused by forward-auth too.
func TestVerifyEveryRequest(t *testing.T) {
	e := newEnv(t, func(c *Config, d *Deps) { trustLoopback(t)(c, d); c.Revocation = RevocationEveryRequest })
	tok, s := e.session("alice")
	if res := e.do("GET", "/auth/verify", described(bearer(tok), "GET", "/api/x"), ""); res.StatusCode != 200 {
		t.Fatalf("live session: %d", res.StatusCode)
	}
	if _, err := e.store.Revoke(t.Context(), s.ID, "admin", e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	res := e.do("GET", "/auth/verify", described(bearer(tok), "GET", "/api/x"), "")
	if eb := errorOf(t, res); res.StatusCode != 401 || eb.Description != "session revoked" {
		t.Fatalf("revoked session: %d %+v", res.StatusCode, eb)
	}
}

// TestVerifyURIsDisagree: an ingress sets one of X-Forwarded-Uri and
// X-Original-URI and passes the client's headers, so the other may be
// the client's own; where both are present they must name the same URI,
// or a client of an nginx setting only X-Original-URI would have its
// request to /admin-api/ decided as one to /public/.
func TestVerifyURIsDisagree(t *testing.T) {
	e := newEnv(t, trustLoopback(t))
	h := with(described(nil, "GET", "/public/x"), "X-Original-URI", "/admin-api/x")
	if eb := errorOf(t, e.do("GET", "/auth/verify", h, "")); eb.Error != errInvalidRequest {
		t.Errorf("disagreeing URIs: %+v, want %s", eb, errInvalidRequest)
	}
	h = with(described(nil, "GET", "/public/x"), "X-Original-URI", "/public/x")
	if res := e.do("GET", "/auth/verify", h, ""); res.StatusCode != 200 {
		t.Errorf("agreeing URIs: %d", res.StatusCode)
	}
}
