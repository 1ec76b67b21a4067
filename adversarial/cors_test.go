package adversarial

import (
	"net/http"
	"strings"
	"testing"

	"github.com/spa-gateway/gateway/proxy"
)

// TestCORSOriginReflection: an origin that only looks like the allowed one
// is never granted CORS, on a preflight nor on an answer, on /auth/ nor on
// a CORS route: a gateway that reflected it, with credentials, would let
// that origin's page read the user's data and tokens. The allowed origin
// (the control) is, and no preflight reaches the upstream.
func TestCORSOriginReflection(t *testing.T) {
	const allowed = "https://app.example.com"
	e := newEnv(t, envOptions{config: func(c *proxy.Config) {
		c.AllowedOrigins = []string{allowed, "null"} // "null" listed: still never granted
		for i := range c.Routes {
			c.Routes[i].CORS = true
		}
	}})
	tok := valid(e)
	tricks := []string{
		"null", "NULL",
		"https://app.example.com.evil", // suffix look-alike
		"https://evilapp.example.com", "https://app.example.co",
		"https://evil.app.example.com", // a subdomain
		"http://app.example.com",       // another scheme
		"https://app.example.com.",     // trailing dot
		"HTTPS://APP.EXAMPLE.COM",      // case
		"https://App.example.com",      // case
		"https://app.example.com:443",  // the default port, written
		"https://app.example.com:8443", // another port
		"https://app.example.com/",     // a path
		"https://app.example.com@evil.example",
		"https://app.example.com%00.evil.example",
		"*", "",
		"https://app.example.com, https://evil.example",
	}
	send := func(method, path, origin string, h http.Header) *http.Response {
		req, err := http.NewRequest(method, "http://"+e.addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range h {
			req.Header[k] = v
		}
		req.Header["Origin"] = append([]string{origin}, h["Origin"]...)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	granted := func(res *http.Response) bool {
		for k := range res.Header {
			if strings.HasPrefix(k, "Access-Control-Allow-") {
				return true
			}
		}
		return false
	}
	pre := http.Header{"Access-Control-Request-Method": {"POST"}, "Access-Control-Request-Headers": {"authorization"}}
	for _, o := range tricks {
		for _, path := range []string{"/api/x", "/auth/refresh", "/public/x"} {
			if res := send("OPTIONS", path, o, pre); granted(res) {
				t.Errorf("preflight of %s from %q granted: %v", path, o, res.Header)
			}
		}
		if res := send("GET", "/api/x", o, http.Header{"Authorization": {"Bearer " + tok}}); granted(res) {
			t.Errorf("answer to %q granted: %v", o, res.Header)
		}
	}
	// Two Origin headers, the allowed one first.
	if res := send("OPTIONS", "/api/x", allowed, with(pre, "Origin", "https://evil.example")); granted(res) || len(e.a.requests()) != len(tricks) {
		t.Errorf("two Origin headers granted: %v", res.Header)
	}
	res := send("OPTIONS", "/api/x", allowed, pre)
	if !granted(res) || res.Header.Get("Access-Control-Allow-Origin") != allowed || res.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Errorf("the allowed origin (control): %d %v", res.StatusCode, res.Header)
	}
	if n := len(e.a.requests()); n != len(tricks) {
		t.Errorf("upstream hits = %d, want only the %d GETs: a preflight was forwarded", n, len(tricks))
	}
}

// with is h with more values of one header.
func with(h http.Header, k, v string) http.Header {
	h = h.Clone()
	h.Add(k, v)
	return h
}
