package proxy

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/metrics"
)

func TestNoTokenIsRefusedAndUpstreamNotCalled(t *testing.T) {
	e := newEnv(t, nil)
	res := e.do("GET", "/api/x", http.Header{}, "")
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status = %d, want 401", res.StatusCode)
	}
	if got, want := res.Header.Get("WWW-Authenticate"), `Bearer realm="gateway"`; got != want {
		t.Errorf("WWW-Authenticate = %q, want %q", got, want)
	}
	if got := errorOf(t, res).Error; got != "unauthorized" {
		t.Errorf("error = %q, want unauthorized", got)
	}
	if n := len(e.upstream.requests()); n != 0 {
		t.Errorf("upstream called %d times, want 0", n)
	}
	if got := counter(t, e.metrics.TokenValidations.WithLabelValues(metrics.ValidationMissing)); got != 1 {
		t.Errorf("validations{missing} = %v, want 1", got)
	}
}

func TestBadTokensGetRFC6750Errors(t *testing.T) {
	e := newEnv(t, nil)
	good, _ := e.session("alice")
	now := e.clock.Now()
	expired := e.mint(auth.MintClaims{Subject: "alice", SessionID: "s", ID: "j", IssuedAt: now.Add(-time.Hour), ExpiresAt: now.Add(-time.Minute)})
	tests := []struct {
		name, token, desc string
	}{
		{"expired", expired, "token expired"},
		{"tampered", good[:len(good)-10] + flip(good[len(good)-10]) + good[len(good)-9:], ""},
		{"garbage", "abc.def", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.do("GET", "/api/x", bearer(tt.token), "")
			if res.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status = %d, want 401", res.StatusCode)
			}
			wa := res.Header.Get("WWW-Authenticate")
			if !strings.HasPrefix(wa, `Bearer realm="gateway", error="invalid_token", error_description="`) {
				t.Errorf("WWW-Authenticate = %q, want an invalid_token challenge", wa)
			}
			if tt.desc != "" && !strings.Contains(wa, tt.desc) {
				t.Errorf("WWW-Authenticate = %q, want description %q", wa, tt.desc)
			}
			if got := errorOf(t, res).Error; got != "invalid_token" {
				t.Errorf("error = %q, want invalid_token", got)
			}
		})
	}
	if n := len(e.upstream.requests()); n != 0 {
		t.Errorf("upstream called %d times, want 0", n)
	}
}

// flip returns a base64url character other than c.
func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

func TestVerifiedRequestGetsIdentityOnce(t *testing.T) {
	e := newEnv(t, nil)
	tok, _ := e.session("alice", "reader", "writer")
	h := bearer(tok)
	h.Set("X-Other", "kept")
	h.Set("Cookie", "a=1; __Host-gateway=zzz; b=2")
	res := e.do("POST", "/api/items?q=1&x=%zz;y", h, `{"k":"v"}`)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200 (%s)", res.StatusCode, readBody(t, res))
	}
	got := e.upstream.last(t)
	checks := []struct{ name, got, want string }{
		{"method", got.Method, "POST"},
		{"path", got.RequestURI, "/api/items?q=1&x=%zz;y"},
		{"body", got.Body, `{"k":"v"}`},
		{"X-Auth-Subject", strings.Join(got.Header.Values("X-Auth-Subject"), "|"), "alice"},
		{"X-Auth-Roles", strings.Join(got.Header.Values("X-Auth-Roles"), "|"), "reader,writer"},
		{"X-Auth-Email", strings.Join(got.Header.Values("X-Auth-Email"), "|"), ""},
		{"Authorization", got.Header.Get("Authorization"), ""},
		{"Cookie", got.Header.Get("Cookie"), "a=1; b=2"},
		{"X-Other", got.Header.Get("X-Other"), "kept"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("upstream %s = %q, want %q", c.name, c.got, c.want)
		}
	}
}

func TestBearerTokenNeverReachesAnUpstream(t *testing.T) {
	e := newEnv(t, nil)
	tok, _ := e.session("alice")
	for _, path := range []string{"/api/x", "/public/x", "/maybe/x"} {
		e.do("GET", path, bearer(tok), "")
		if got := e.upstream.last(t).Header.Get("Authorization"); got != "" {
			t.Errorf("%s: upstream Authorization = %q, want none", path, got)
		}
	}
	e.do("GET", "/public/x", http.Header{"Authorization": {"Basic YTpi", "Bearer " + tok}}, "")
	if got := e.upstream.last(t).Header.Values("Authorization"); len(got) != 0 {
		t.Errorf("two headers on a none route: upstream Authorization = %q, want none", got)
	}
	// Another scheme is not the gateway's token: it passes.
	e.do("GET", "/public/x", http.Header{"Authorization": {"Basic YTpi"}}, "")
	if got := e.upstream.last(t).Header.Get("Authorization"); got != "Basic YTpi" {
		t.Errorf("Basic: upstream Authorization = %q, want it unchanged", got)
	}
}

func TestForwardTokenKeepsAuthorization(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Deps) { c.ForwardToken = true })
	tok, _ := e.session("alice")
	e.do("GET", "/api/x", bearer(tok), "")
	if got := e.upstream.last(t).Header.Get("Authorization"); got != "Bearer "+tok {
		t.Errorf("upstream Authorization = %q, want the bearer token", got)
	}
}

func TestSpoofedIdentityHeadersAreStrippedOnEveryRoute(t *testing.T) {
	e := newEnv(t, nil)
	tok, _ := e.session("alice")
	spoofs := []http.Header{
		{"X-Auth-Subject": {"admin"}},
		{"x-auth-subject": {"admin"}},
		{"X-AUTH-SUBJECT": {"admin"}},
		{"X_Auth_Subject": {"admin"}},
		{"x_auth_roles": {"admin"}},
		{"X-Auth-Subject": {"admin", "root"}},
		{"X-Auth-Anything-Else": {"admin"}},
		{"X-Auth-Subject": {"admin"}, "Connection": {"X-Auth-Subject"}},
		{"Connection": {"close, X-Auth-Roles"}, "X-Auth-Roles": {"admin"}},
	}
	for _, path := range []string{"/api/x", "/public/x", "/maybe/x"} {
		for i, spoof := range spoofs {
			h := bearer(tok)
			for k, v := range spoof {
				h[k] = v
			}
			before := len(e.upstream.requests())
			res := e.do("GET", path, h, "")
			if res.StatusCode != http.StatusOK {
				t.Errorf("%s spoof %d: status = %d, want 200", path, i, res.StatusCode)
				continue
			}
			if len(e.upstream.requests()) != before+1 {
				t.Fatalf("%s spoof %d: upstream not called", path, i)
			}
			got := e.upstream.last(t)
			for k, v := range got.Header {
				lk := strings.ToLower(strings.ReplaceAll(k, "_", "-"))
				if !strings.HasPrefix(lk, "x-auth-") {
					continue
				}
				switch {
				case path == "/public/x":
					t.Errorf("%s spoof %d: upstream got %s: %q on a none route", path, i, k, v)
				case k == "X-Auth-Subject" && len(v) == 1 && v[0] == "alice":
				default:
					t.Errorf("%s spoof %d: upstream got %s: %q", path, i, k, v)
				}
			}
			if path != "/public/x" && got.Header.Get("X-Auth-Subject") != "alice" {
				t.Errorf("%s spoof %d: X-Auth-Subject = %q, want alice", path, i, got.Header.Get("X-Auth-Subject"))
			}
		}
	}
	if got := counter(t, e.metrics.SpoofedHeaders.WithLabelValues("/api/")); got != float64(len(spoofs)) {
		t.Errorf("spoofed{/api/} = %v, want %d", got, len(spoofs))
	}
}

func TestSpoofRejectMode(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Deps) { c.OnSpoof = SpoofReject })
	res := e.do("GET", "/public/x", http.Header{"X_auth_subject": {"admin"}}, "")
	if res.StatusCode != http.StatusBadRequest {
		t.Fatalf("status = %d, want 400", res.StatusCode)
	}
	if got := errorOf(t, res).Error; got != "invalid_request" {
		t.Errorf("error = %q, want invalid_request", got)
	}
	if n := len(e.upstream.requests()); n != 0 {
		t.Errorf("upstream called %d times, want 0", n)
	}
}

func TestPathTricksNeverReachAProtectedRoute(t *testing.T) {
	e := newEnv(t, nil)
	tests := []string{
		"/public/../api/x",
		"/public/./x",
		"/public/%2e%2e/api/x",
		"/public/%2E%2E/api/x",
		"/public/.%2e/api/x",
		"/public/%252e%252e/api/x",
		"/public/%25252e%25252e/api/x",
		"/public%2f..%2fapi/x",
		"/public/..%2fapi/x",
		"/public/x%2fy",
		"/public/x%252fy",
		"//api/x",
		"/public//x",
		"/api;x/y",
		"/public/x;jsessionid=1",
		"/public/%3b/x",
		"/public/x%5c..%5capi",
		"/public/x\\..\\api",
		"/public/%zz",
		"/public/%00",
	}
	for _, target := range tests {
		t.Run(target, func(t *testing.T) {
			res := e.do("GET", target, http.Header{}, "")
			if res.StatusCode != http.StatusBadRequest {
				t.Errorf("GET %s: status = %d, want 400", target, res.StatusCode)
			}
		})
	}
	if n := len(e.upstream.requests()); n != 0 {
		t.Errorf("upstream called %d times, want 0: %+v", n, e.upstream.requests())
	}
}

func TestEncodedPathRoutesAsTheUpstreamReadsIt(t *testing.T) {
	e := newEnv(t, nil)
	// "/%61pi/x" is "/api/x" to the upstream, so it must meet /api/'s auth.
	res := e.do("GET", "/%61pi/x", http.Header{}, "")
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status = %d, want 401", res.StatusCode)
	}
	tok, _ := e.session("alice")
	res = e.do("GET", "/%61pi/x", bearer(tok), "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200", res.StatusCode)
	}
	if got := e.upstream.last(t).RequestURI; got != "/%61pi/x" {
		t.Errorf("upstream RequestURI = %q, want the path as sent", got)
	}
}

func TestAllowEncodedSlash(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Deps) { c.AllowEncodedSlash = true })
	res := e.do("GET", "/public/a%2Fb", http.Header{}, "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200", res.StatusCode)
	}
	if got := e.upstream.last(t).RequestURI; got != "/public/a%2Fb" {
		t.Errorf("upstream RequestURI = %q, want /public/a%%2Fb", got)
	}
	for _, target := range []string{"/public/a%2F..%2F..%2Fapi/x", "/public/a%252Fb"} {
		if res := e.do("GET", target, http.Header{}, ""); res.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %s: status = %d, want 400", target, res.StatusCode)
		}
	}
}

func TestLongestPrefixWins(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Deps) {
		// Listed shortest first on purpose: order must not matter.
		c.Routes = append([]Route{{Prefix: "/", Upstream: c.Routes[0].Upstream, Auth: AuthRequired}}, c.Routes...)
		c.Routes = append(c.Routes, Route{Prefix: "/api/open/", Upstream: c.Routes[0].Upstream, Auth: AuthNone})
	})
	tests := []struct {
		path string
		want int
	}{
		{"/api/open/x", http.StatusOK},
		{"/api/x", http.StatusUnauthorized},
		{"/api/openx", http.StatusUnauthorized},
		{"/elsewhere", http.StatusUnauthorized},
		{"/public/x", http.StatusOK},
	}
	for _, tt := range tests {
		if res := e.do("GET", tt.path, http.Header{}, ""); res.StatusCode != tt.want {
			t.Errorf("GET %s: status = %d, want %d", tt.path, res.StatusCode, tt.want)
		}
	}
}

func TestUnmatchedPathIs404(t *testing.T) {
	e := newEnv(t, nil)
	res := e.do("GET", "/nowhere", http.Header{}, "")
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("status = %d, want 404", res.StatusCode)
	}
}

func TestTokenConflictsAre400(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Deps) { c.Delivery = DeliveryBoth })
	tok, _ := e.session("alice")
	other, _ := e.session("bob")
	tests := []struct {
		name string
		h    http.Header
		want int
	}{
		{"two authorization headers", http.Header{"Authorization": {"Bearer " + tok, "Bearer " + tok}}, 400},
		{"bearer and cookie differ", http.Header{"Authorization": {"Bearer " + tok}, "Cookie": {"__Host-gateway=" + other}}, 400},
		{"two different cookies", http.Header{"Cookie": {"__Host-gateway=" + tok + "; __Host-gateway=" + other}}, 400},
		{"bearer and cookie same", http.Header{"Authorization": {"Bearer " + tok}, "Cookie": {"__Host-gateway=" + tok}}, 200},
		{"cookie only", http.Header{"Cookie": {"__Host-gateway=" + tok}}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if res := e.do("GET", "/api/x", tt.h, ""); res.StatusCode != tt.want {
				t.Errorf("status = %d, want %d", res.StatusCode, tt.want)
			}
		})
	}
}

func TestCookieIgnoredInBearerDelivery(t *testing.T) {
	e := newEnv(t, nil)
	tok, _ := e.session("alice")
	res := e.do("GET", "/api/x", http.Header{"Cookie": {"__Host-gateway=" + tok}}, "")
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status = %d, want 401", res.StatusCode)
	}
}

func TestRequireRoles(t *testing.T) {
	e := newEnv(t, nil)
	user, _ := e.session("alice", "reader")
	admin, _ := e.session("root", "admin")
	res := e.do("GET", "/admin-api/x", bearer(user), "")
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("status = %d, want 403", res.StatusCode)
	}
	if got, want := res.Header.Get("WWW-Authenticate"), `Bearer realm="gateway", error="insufficient_scope"`; got != want {
		t.Errorf("WWW-Authenticate = %q, want %q", got, want)
	}
	if got := errorOf(t, res).Error; got != "insufficient_scope" {
		t.Errorf("error = %q, want insufficient_scope", got)
	}
	if res := e.do("GET", "/admin-api/x", bearer(admin), ""); res.StatusCode != http.StatusOK {
		t.Errorf("admin: status = %d, want 200", res.StatusCode)
	}
	if n := len(e.upstream.requests()); n != 1 {
		t.Errorf("upstream called %d times, want 1", n)
	}
}

func TestOptionalRoute(t *testing.T) {
	e := newEnv(t, nil)
	res := e.do("GET", "/maybe/x", http.Header{"X-Auth-Subject": {"admin"}}, "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("anonymous: status = %d, want 200", res.StatusCode)
	}
	if got := e.upstream.last(t).Header.Get("X-Auth-Subject"); got != "" {
		t.Errorf("anonymous: X-Auth-Subject = %q, want none", got)
	}
	res = e.do("GET", "/maybe/x", bearer("not.a.token"), "")
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("bad token: status = %d, want 401", res.StatusCode)
	}
	tok, _ := e.session("alice")
	e.do("GET", "/maybe/x", bearer(tok), "")
	if got := e.upstream.last(t).Header.Get("X-Auth-Subject"); got != "alice" {
		t.Errorf("with token: X-Auth-Subject = %q, want alice", got)
	}
}

func TestForwardedHeaders(t *testing.T) {
	spoofed := http.Header{
		"X-Forwarded-For":   {"6.6.6.6"},
		"X-Forwarded-Host":  {"evil.example"},
		"X-Forwarded-Proto": {"https"},
		"Forwarded":         {"for=6.6.6.6"},
		"X-Real-Ip":         {"6.6.6.6"},
	}
	t.Run("untrusted peer", func(t *testing.T) {
		e := newEnv(t, nil)
		e.do("GET", "/public/x", spoofed, "")
		got := e.upstream.last(t)
		for _, c := range []struct{ k, want string }{
			{"X-Forwarded-For", "127.0.0.1"},
			{"X-Forwarded-Host", e.srv.Listener.Addr().String()},
			{"X-Forwarded-Proto", "http"},
			{"Forwarded", ""},
			{"X-Real-Ip", ""},
		} {
			if v := strings.Join(got.Header.Values(c.k), ","); v != c.want {
				t.Errorf("%s = %q, want %q", c.k, v, c.want)
			}
		}
	})
	t.Run("trusted peer", func(t *testing.T) {
		e := newEnv(t, func(c *Config, _ *Deps) { c.TrustedProxies = mustPrefixes(t, "127.0.0.0/8") })
		e.do("GET", "/public/x", spoofed, "")
		got := e.upstream.last(t)
		for _, c := range []struct{ k, want string }{
			{"X-Forwarded-For", "6.6.6.6, 127.0.0.1"},
			{"X-Forwarded-Host", "evil.example"},
			{"X-Forwarded-Proto", "https"},
			{"Forwarded", "for=6.6.6.6"},
			{"X-Real-Ip", "6.6.6.6"},
		} {
			if v := strings.Join(got.Header.Values(c.k), ","); v != c.want {
				t.Errorf("%s = %q, want %q", c.k, v, c.want)
			}
		}
	})
}

func TestPathOverrideHeadersAreRemoved(t *testing.T) {
	for _, trustedPeer := range []bool{false, true} {
		e := newEnv(t, func(c *Config, _ *Deps) {
			if trustedPeer {
				c.TrustedProxies = mustPrefixes(t, "127.0.0.0/8")
			}
		})
		h := http.Header{"X-Original-Url": {"/admin-api/x"}, "X_rewrite_url": {"/admin-api/x"}, "X-Original-Host": {"kept"}}
		if res := e.do("GET", "/public/x", h, ""); res.StatusCode != http.StatusOK {
			t.Fatalf("trusted=%v: status = %d, want 200", trustedPeer, res.StatusCode)
		}
		got := e.upstream.last(t).Header
		for k := range got {
			if n := strings.ToLower(strings.ReplaceAll(k, "_", "-")); n == "x-original-url" || n == "x-rewrite-url" {
				t.Errorf("trusted=%v: upstream got %s", trustedPeer, k)
			}
		}
		if got.Get("X-Original-Host") != "kept" {
			t.Errorf("trusted=%v: X-Original-Host = %q, want it unchanged", trustedPeer, got.Get("X-Original-Host"))
		}
	}
}

func TestResponseHygiene(t *testing.T) {
	e := newEnv(t, nil)
	e.upstream.respond = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", "__Host-gateway=forged; Path=/")
		w.Header().Add("Set-Cookie", "app=1; Path=/")
		w.Header().Set("X-Auth-Subject", "admin")
		w.Header().Set("X-App", "kept")
	}
	res := e.do("GET", "/public/x", http.Header{}, "")
	if got := res.Header.Values("Set-Cookie"); len(got) != 1 || !strings.HasPrefix(got[0], "app=1") {
		t.Errorf("Set-Cookie = %q, want only app=1", got)
	}
	if got := res.Header.Get("X-Auth-Subject"); got != "" {
		t.Errorf("X-Auth-Subject = %q, want none", got)
	}
	if got := res.Header.Get("X-App"); got != "kept" {
		t.Errorf("X-App = %q, want kept", got)
	}
}

func TestUpgradeOnlyWebSocketWhereAllowed(t *testing.T) {
	e := newEnv(t, nil)
	h := http.Header{"Connection": {"Upgrade, HTTP2-Settings"}, "Upgrade": {"h2c"}, "Http2-Settings": {"AAMAAABkAARAAAAAAAIAAAAA"}}
	res := e.do("GET", "/public/x", h, "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200", res.StatusCode)
	}
	got := e.upstream.last(t)
	if v := got.Header.Get("Upgrade"); v != "" {
		t.Errorf("upstream Upgrade = %q, want none", v)
	}
	// websocket on a route without websocket = true is not forwarded either.
	h = http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}
	e.do("GET", "/public/x", h, "")
	if v := e.upstream.last(t).Header.Get("Upgrade"); v != "" {
		t.Errorf("upstream Upgrade = %q, want none", v)
	}
}

func TestUpstreamDownIs502(t *testing.T) {
	e := newEnv(t, nil)
	e.upstream.Close()
	res := e.do("GET", "/public/x", http.Header{}, "")
	if res.StatusCode != http.StatusBadGateway {
		t.Fatalf("status = %d, want 502", res.StatusCode)
	}
	if got := errorOf(t, res).Error; got != "bad_gateway" {
		t.Errorf("error = %q, want bad_gateway", got)
	}
	if got := counter(t, e.metrics.UpstreamErrors.WithLabelValues("/public/")); got != 1 {
		t.Errorf("upstream_errors{/public/} = %v, want 1", got)
	}
}

func TestUpstreamTimeoutIs504(t *testing.T) {
	release := make(chan struct{})
	e := newEnv(t, func(c *Config, _ *Deps) {
		for i := range c.Routes {
			c.Routes[i].Timeout = 50 * time.Millisecond
		}
	})
	t.Cleanup(func() { close(release) })
	e.upstream.respond = func(w http.ResponseWriter, r *http.Request) { <-release }
	res := e.do("GET", "/public/x", http.Header{}, "")
	if res.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("status = %d, want 504", res.StatusCode)
	}
}

func TestJWKS(t *testing.T) {
	e := newEnv(t, nil)
	res := e.do("GET", "/.well-known/jwks.json", http.Header{}, "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200", res.StatusCode)
	}
	if body := readBody(t, res); !strings.Contains(body, e.key.ID()) {
		t.Errorf("JWKS %s does not name kid %s", body, e.key.ID())
	}
}
