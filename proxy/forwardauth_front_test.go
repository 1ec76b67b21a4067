package proxy

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/auth/authtest"
	"github.com/spa-gateway/gateway/proxy/fronttest"
)

// shippedConfig is a file of deploy/ with its example addresses replaced
// by the test's: the gateway's (127.0.0.1:8080), the application's
// (127.0.0.1:3000) and the ingress's own listen address, as old=new pairs.
func shippedConfig(t testing.TB, path string, pairs ...string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.NewReplacer(pairs...).Replace(string(b))
}

// ingress is a real ingress in front of e in forward-auth mode, reached at
// addr: what a client sends there, and what e's upstream receives.
type ingress struct {
	e    *env
	addr string
}

func (in *ingress) do(method, target string, h http.Header, body string) *http.Response {
	in.e.t.Helper()
	return rawDo(in.e.t, in.addr, method, target, h, body)
}

// forwardAuthEnv is the gateway of the ingress tests: loopback trusted,
// the default claims, a users file.
func forwardAuthEnv(t *testing.T) *env {
	return newSessionEnv(t, func(c *Config, d *Deps) {
		trustLoopback(t)(c, d)
		c.Claims = map[string]string{"X-Auth-Subject": "sub", "X-Auth-Roles": "roles"}
	})
}

// TestNginxForwardAuth runs deploy/nginx/gateway.conf, as shipped, in a
// real nginx in front of the gateway and an upstream.
func TestNginxForwardAuth(t *testing.T) {
	e := forwardAuthEnv(t)
	n := fronttest.StartNginx(t, "", fronttest.NginxOptions{HTTP: func(listen string) string {
		return shippedConfig(t, "../deploy/nginx/gateway.conf",
			"127.0.0.1:8080", e.srv.Listener.Addr().String(),
			"127.0.0.1:3000", e.upstream.Listener.Addr().String(),
			"listen 80;", "listen "+listen+";")
	}})
	testIngress(t, &ingress{e: e, addr: n.Addr}, func() string { return n.ErrorLog() })
}

// testIngress is what every shipped ingress configuration must do.
func testIngress(t *testing.T, in *ingress, logs func() string) {
	e := in.e
	defer func() {
		if t.Failed() {
			t.Logf("ingress log:\n%s", logs())
		}
	}()
	// No token: the gateway's 401, JSON and challenge, at the client.
	res := in.do("GET", "/api/x", nil, "")
	if eb := errorOf(t, res); res.StatusCode != 401 || eb.Error != errUnauthorized || eb.Description != "token missing" ||
		!strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("no token: %d %+v %v", res.StatusCode, eb, res.Header)
	}
	if n := len(e.upstream.requests()); n != 0 {
		t.Fatalf("the upstream was called %d times without a token", n)
	}

	// Login and refresh through the ingress, which proxies /auth/.
	res = in.do("POST", "/auth/login", loginHeader(), loginJSON)
	var tr tokenResponse
	if err := json.Unmarshal([]byte(readBody(t, res)), &tr); err != nil || res.StatusCode != 200 {
		t.Fatalf("login through the ingress: %d %v", res.StatusCode, err)
	}
	spoofed := with(bearer(tr.AccessToken), "X-Auth-Subject", "mallory", "X-Auth-Roles", "admin")
	res = in.do("GET", "/api/x?q=1", spoofed, "")
	readBody(t, res)
	got := e.upstream.last(t)
	if res.StatusCode != 200 || got.Header.Get("X-Auth-Subject") != "alice" || got.Header.Get("X-Auth-Roles") != "reader" ||
		got.RequestURI != "/api/x?q=1" {
		t.Fatalf("valid token: %d, upstream got %s %v", res.StatusCode, got.RequestURI, got.Header)
	}
	if vs := got.Header.Values("X-Auth-Subject"); len(vs) != 1 || got.Header.Get("Authorization") != "" {
		t.Errorf("the upstream got the client's identity or credential: %v", got.Header)
	}

	// An expired token: "token expired", then a refresh through the
	// ingress, then 200.
	e.clock.Advance(16 * time.Minute)
	res = in.do("GET", "/api/x", bearer(tr.AccessToken), "")
	if eb := errorOf(t, res); res.StatusCode != 401 || eb.Description != "token expired" {
		t.Fatalf("expired token: %d %+v", res.StatusCode, eb)
	}
	res = in.do("POST", "/auth/refresh", bearer(tr.AccessToken), "")
	if err := json.Unmarshal([]byte(readBody(t, res)), &tr); err != nil || res.StatusCode != 200 {
		t.Fatalf("refresh through the ingress: %d %v", res.StatusCode, err)
	}
	if res := in.do("GET", "/api/x", bearer(tr.AccessToken), ""); res.StatusCode != 200 {
		t.Fatalf("refreshed token: %d %s", res.StatusCode, readBody(t, res))
	}

	// A path trick on the original URI gets the gateway's 400, and the
	// upstream never sees it.
	before := len(e.upstream.requests())
	for _, trick := range []string{"/public/%2e%2e/api/x", "/public/%252e%252e/api/x", "/public;x/../api/x"} {
		res := in.do("GET", trick, nil, "")
		if eb := errorOf(t, res); res.StatusCode != 400 || eb.Error != errInvalidRequest {
			t.Errorf("%s: %d %+v", trick, res.StatusCode, eb)
		}
	}
	if n := len(e.upstream.requests()); n != before {
		t.Errorf("a path trick reached the upstream")
	}
	// The client's own description of the original request is never the
	// one believed: a protected URI named as a public one (or a role's as
	// another's) is refused, and never reaches the upstream.
	before = len(e.upstream.requests())
	for i, c := range []struct {
		target string
		h      http.Header
	}{
		{"/api/x", http.Header{"X-Forwarded-Uri": {"/public/x"}}},
		{"/api/x", http.Header{"X-Original-Uri": {"/public/x"}}},
		{"/admin-api/x", with(bearer(tr.AccessToken), "X-Forwarded-Uri", "/api/x")},
		{"/admin-api/x", with(bearer(tr.AccessToken), "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/api/x")},
	} {
		if res := in.do("GET", c.target, c.h, ""); res.StatusCode == 200 {
			t.Errorf("case %d: %s described by its client as another: 200", i, c.target)
		}
	}
	if n := len(e.upstream.requests()); n != before {
		t.Errorf("a request described by its client as another reached the upstream")
	}
	// Anonymous on an optional or public route: the upstream gets no
	// identity header at all, neither the client's nor the ingress's own
	// stand-in for the gateway's absent answer.
	for _, p := range []string{"/maybe/x", "/public/x"} {
		res := in.do("GET", p, http.Header{"X-Auth-Subject": {"mallory"}, "X-Auth-Roles": {"admin"}}, "")
		readBody(t, res)
		got := e.upstream.last(t)
		if res.StatusCode != 200 || !strings.HasPrefix(got.RequestURI, p) || len(got.Header["X-Auth-Subject"]) != 0 || len(got.Header["X-Auth-Roles"]) != 0 {
			t.Errorf("anonymous %s: %d, upstream got %s %v", p, res.StatusCode, got.RequestURI, got.Header)
		}
	}
	// Roles: 403 with the gateway's body.
	if res := in.do("GET", "/admin-api/x", bearer(tr.AccessToken), ""); res.StatusCode != 403 || errorOf(t, res).Error != errInsufficientScope {
		t.Errorf("role: %d", res.StatusCode)
	}
	// The verify endpoint is the ingress's to ask, not a client's.
	if res := in.do("GET", "/auth/verify", with(bearer(tr.AccessToken), "X-Original-URI", "/api/x"), ""); res.StatusCode == 200 {
		t.Errorf("/auth/verify answered 200 to a client through the ingress")
	}

	// A bound token, with a proof of the original request.
	k := authtest.NewDPoPKey(t)
	origin := "http://" + in.addr
	h := with(loginHeader(), "DPoP", k.Proof(t, "POST", origin+"/auth/login", "", e.clock.Now()))
	res = in.do("POST", "/auth/login", h, loginJSON)
	if err := json.Unmarshal([]byte(readBody(t, res)), &tr); err != nil || res.StatusCode != 200 || tr.TokenType != "DPoP" {
		t.Fatalf("bound login through the ingress: %d %q %v", res.StatusCode, tr.TokenType, err)
	}
	h = with(dpopAuth(tr.AccessToken), "DPoP", k.Proof(t, "GET", origin+"/api/bound", tr.AccessToken, e.clock.Now()))
	if res := in.do("GET", "/api/bound", h, ""); res.StatusCode != 200 || e.upstream.last(t).Header.Get("Dpop") != "" {
		t.Fatalf("bound token with its proof: %d %s", res.StatusCode, readBody(t, res))
	}
	h = with(dpopAuth(tr.AccessToken), "DPoP", k.Proof(t, "GET", origin+"/api/other", tr.AccessToken, e.clock.Now()))
	if res := in.do("GET", "/api/bound", h, ""); res.StatusCode != 401 || errorOf(t, res).Error != "invalid_dpop_proof" {
		t.Errorf("proof of another URI: %d", res.StatusCode)
	}
}

// TestCaddyForwardAuth runs deploy/caddy/Caddyfile, as shipped, in a real
// caddy in front of the gateway and an upstream.
func TestCaddyForwardAuth(t *testing.T) {
	e := forwardAuthEnv(t)
	c := fronttest.StartCaddy(t, func(listen string) string {
		return shippedConfig(t, "../deploy/caddy/Caddyfile",
			"127.0.0.1:8080", e.srv.Listener.Addr().String(),
			"127.0.0.1:3000", e.upstream.Listener.Addr().String(),
			":80 {", "http://"+listen+" {")
	})
	testIngress(t, &ingress{e: e, addr: c.Addr}, c.Log)
}
