package proxy

import (
	"net/http"
	"testing"
)

const spaOrigin = "https://app.example.com"

// corsEnv is a gateway whose /api/ and /public/ routes opt in to CORS for
// spaOrigin; /maybe/ does not. Its upstream answers with CORS headers of
// its own, which must not reach the client.
func corsEnv(t *testing.T) *env {
	e := newSessionEnv(t, func(c *Config, _ *Deps) {
		c.AllowedOrigins = []string{spaOrigin}
		for i := range c.Routes {
			c.Routes[i].CORS = c.Routes[i].Prefix != "/maybe/"
		}
	})
	e.upstream.respond = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Allow-Headers", "X-Anything")
		w.Write([]byte("ok"))
	}
	return e
}

func preflight(origin, method string) http.Header {
	return http.Header{"Origin": {origin}, "Access-Control-Request-Method": {method},
		"Access-Control-Request-Headers": {"authorization, dpop, content-type"}}
}

// TestCORSPreflight: preflights of /auth/ and of CORS routes are answered by
// the gateway, 204, granted to an allowed origin only, and never reach the
// upstream; a route without CORS forwards them as before.
func TestCORSPreflight(t *testing.T) {
	e := corsEnv(t)
	for _, path := range []string{"/api/x", "/public/x", "/auth/refresh", "/auth/login"} {
		res := e.do("OPTIONS", path, preflight(spaOrigin, "POST"), "")
		h := res.Header
		if res.StatusCode != 204 || h.Get("Access-Control-Allow-Origin") != spaOrigin ||
			h.Get("Access-Control-Allow-Credentials") != "true" || h.Get("Access-Control-Max-Age") == "" ||
			h.Get("Access-Control-Allow-Headers") != corsAllowHeaders || h.Get("Vary") == "" {
			t.Errorf("%s: %d %v", path, res.StatusCode, h)
		}
		res = e.do("OPTIONS", path, preflight("https://evil.example", "POST"), "")
		for k := range res.Header {
			if len(k) > 15 && k[:15] == "Access-Control-" {
				t.Errorf("%s from a foreign origin: %s: %v", path, k, res.Header[k])
			}
		}
		if res.StatusCode != 204 {
			t.Errorf("%s from a foreign origin: %d", path, res.StatusCode)
		}
	}
	if n := len(e.upstream.requests()); n != 0 {
		t.Fatalf("%d preflights reached the upstream", n)
	}
	e.do("OPTIONS", "/maybe/x", preflight(spaOrigin, "POST"), "")
	if n := len(e.upstream.requests()); n != 1 {
		t.Errorf("a route without cors: %d upstream hits, want the preflight forwarded", n)
	}
}

// TestCORSAnswers: the answers on a CORS route carry the gateway's CORS
// headers for an allowed origin, refusals included (an SPA must read its
// 401), never "*" nor the upstream's own.
func TestCORSAnswers(t *testing.T) {
	e := corsEnv(t)
	tok, _ := e.session("alice")
	res := e.do("GET", "/api/x", with(bearer(tok), "Origin", spaOrigin), "")
	readBody(t, res)
	h := res.Header
	if res.StatusCode != 200 || h.Values("Access-Control-Allow-Origin")[0] != spaOrigin || len(h.Values("Access-Control-Allow-Origin")) != 1 ||
		h.Get("Access-Control-Allow-Credentials") != "true" || h.Get("Access-Control-Expose-Headers") != corsExposeHeaders ||
		h.Get("Access-Control-Allow-Headers") != "" {
		t.Errorf("allowed origin: %d %v", res.StatusCode, h)
	}
	res = e.do("GET", "/api/x", http.Header{"Origin": {spaOrigin}}, "")
	if res.StatusCode != 401 || res.Header.Get("Access-Control-Allow-Origin") != spaOrigin {
		t.Errorf("401: %d %v", res.StatusCode, res.Header)
	}
	res = e.do("GET", "/api/x", with(bearer(tok), "Origin", "https://evil.example"), "")
	if res.StatusCode != 200 || res.Header.Get("Access-Control-Allow-Origin") != "" || res.Header.Get("Vary") != "Origin" {
		t.Errorf("foreign origin: %d %v", res.StatusCode, res.Header)
	}
	res = e.do("POST", "/auth/refresh", http.Header{"Origin": {spaOrigin}}, "")
	if res.Header.Get("Access-Control-Allow-Origin") != spaOrigin {
		t.Errorf("/auth/refresh: %v", res.Header)
	}
}
