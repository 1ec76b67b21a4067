package proxy

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/metrics"
	"github.com/spa-gateway/gateway/proxy/fronttest"
)

const loginJSON = `{"username":"alice","password":"wonderland"}`

// loginHeader is a JSON login's header with extra name, value pairs.
func loginHeader(kv ...string) http.Header {
	return with(http.Header{"Content-Type": {"application/json"}}, kv...)
}

// tokenCookie is the "name=value" of the token cookie a response sets, or "".
func tokenCookie(res *http.Response) string {
	for _, sc := range res.Header.Values("Set-Cookie") {
		if c := strings.SplitN(sc, ";", 2)[0]; strings.HasPrefix(c, "__Host-gateway=") && c != "__Host-gateway=" {
			return c
		}
	}
	return ""
}

// TestLoginOrigin: under cookie and both delivery, a login a browser says
// comes from another site (login CSRF) is refused with 403 and sets no
// cookie; under bearer delivery a login from anywhere is fine.
func TestLoginOrigin(t *testing.T) {
	deliveries := []struct {
		name string
		d    Delivery
	}{{"bearer", DeliveryBearer}, {"cookie", DeliveryCookie}, {"both", DeliveryBoth}}
	for _, dl := range deliveries {
		t.Run(dl.name, func(t *testing.T) {
			e := newSessionEnv(t, func(c *Config, _ *Deps) {
				c.Delivery = dl.d
				c.AllowedOrigins = []string{"https://app.example"}
			})
			own := "http://" + e.srv.Listener.Addr().String()
			tests := []struct {
				name    string
				h       http.Header
				body    string
				foreign bool // refused unless bearer delivery
			}{
				{"no Origin (not a browser)", loginHeader(), loginJSON, false},
				{"own Origin", loginHeader("Origin", own), loginJSON, false},
				{"own Origin, upper case", loginHeader("Origin", strings.ToUpper(own)), loginJSON, false},
				{"allowed Origin", loginHeader("Origin", "https://app.example"), loginJSON, false},
				{"Sec-Fetch-Site same-origin", loginHeader("Sec-Fetch-Site", "same-origin"), loginJSON, false},
				{"foreign Origin", loginHeader("Origin", "https://evil.example"), loginJSON, true},
				{"foreign form POST", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Origin": {"https://evil.example"}},
					"username=alice&password=wonderland", true},
				{"own origin with another scheme", loginHeader("Origin", "https://"+e.srv.Listener.Addr().String()), loginJSON, true},
				{"Origin null", loginHeader("Origin", "null"), loginJSON, true},
				{"two Origin headers", loginHeader("Origin", own, "Origin", "https://evil.example"), loginJSON, true},
				{"Sec-Fetch-Site cross-site without Origin", loginHeader("Sec-Fetch-Site", "cross-site"), loginJSON, true},
				{"X-Forwarded-Host from an untrusted peer", loginHeader("Origin", "https://evil.example", "X-Forwarded-Host", "evil.example",
					"X-Forwarded-Proto", "https"), loginJSON, true},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					before := counter(t, e.metrics.Logins.WithLabelValues(metrics.LoginSuccess))
					res := e.do("POST", "/auth/login", tt.h, tt.body)
					if !tt.foreign || dl.d == DeliveryBearer {
						if res.StatusCode != http.StatusOK {
							t.Fatalf("status = %d, want 200", res.StatusCode)
						}
						if got, want := tokenCookie(res) != "", dl.d != DeliveryBearer; got != want {
							t.Errorf("token cookie set = %v, want %v", got, want)
						}
						return
					}
					if res.StatusCode != http.StatusForbidden {
						t.Fatalf("status = %d, want 403", res.StatusCode)
					}
					if c := res.Header.Values("Set-Cookie"); len(c) != 0 {
						t.Errorf("Set-Cookie = %q, want none", c)
					}
					if eb := errorOf(t, res); eb.Error != errForbidden {
						t.Errorf("error = %q, want %q", eb.Error, errForbidden)
					}
					if got := counter(t, e.metrics.Logins.WithLabelValues(metrics.LoginSuccess)); got != before {
						t.Errorf("logins{success} went from %v to %v, want no login", before, got)
					}
				})
			}
		})
	}
}

// TestCookieOriginRule: every cookie-authenticated state-changing request
// follows the login's rule: Origin null is refused even when listed in
// AllowedOrigins (it names no origin: a sandboxed iframe or a redirect sends
// it), and so is Sec-Fetch-Site: cross-site without an Origin.
func TestCookieOriginRule(t *testing.T) {
	e := newSessionEnv(t, func(c *Config, _ *Deps) {
		c.Delivery = DeliveryCookie
		c.AllowedOrigins = []string{"https://app.example", "null"}
		c.Routes = append(c.Routes, Route{Prefix: "/ws/", Upstream: c.Routes[0].Upstream, WebSocket: true})
	})
	res := e.do("POST", "/auth/login", loginHeader(), loginJSON)
	cookie := tokenCookie(res)
	if res.StatusCode != http.StatusOK || cookie == "" {
		t.Fatalf("login: status = %d, cookie %q", res.StatusCode, cookie)
	}
	h := func(kv ...string) http.Header {
		return with(http.Header{"Cookie": {cookie}, "X-Requested-With": {"fetch"}}, kv...)
	}
	upgrade := func(kv ...string) http.Header {
		return with(http.Header{"Cookie": {cookie}, "Connection": {"Upgrade"}, "Upgrade": {"websocket"}}, kv...)
	}
	tests := []struct {
		name, method, path string
		h                  http.Header
		want               int
	}{
		{"POST from Origin null", "POST", "/api/x", h("Origin", "null"), 403},
		{"POST cross-site without Origin", "POST", "/api/x", h("Sec-Fetch-Site", "cross-site"), 403},
		{"POST same-site without Origin", "POST", "/api/x", h("Sec-Fetch-Site", "same-origin"), 200},
		{"POST from an allowed origin", "POST", "/api/x", h("Origin", "https://app.example"), 200},
		{"refresh from Origin null", "POST", "/auth/refresh", h("Origin", "null"), 403},
		{"refresh cross-site without Origin", "POST", "/auth/refresh", h("Sec-Fetch-Site", "cross-site"), 403},
		{"logout from Origin null", "POST", "/auth/logout", h("Origin", "null"), 403},
		{"logout cross-site without Origin", "POST", "/auth/logout", h("Sec-Fetch-Site", "cross-site"), 403},
		{"upgrade from Origin null", "GET", "/ws/x", upgrade("Origin", "null"), 403},
		{"upgrade cross-site without Origin", "GET", "/ws/x", upgrade("Sec-Fetch-Site", "cross-site"), 403},
		{"upgrade from an allowed origin", "GET", "/ws/x", upgrade("Origin", "https://app.example"), 200},
		{"GET cross-site without Origin (safe method)", "GET", "/api/x", http.Header{"Cookie": {cookie}, "Sec-Fetch-Site": {"cross-site"}}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if res := e.do(tt.method, tt.path, tt.h, ""); res.StatusCode != tt.want {
				t.Errorf("status = %d, want %d", res.StatusCode, tt.want)
			}
		})
	}
}

// TestOwnOriginFromTrustedProxy: behind a trusted proxy the request's own
// origin is X-Forwarded-Proto://X-Forwarded-Host (their first values,
// without case, the default port ignored); from any other peer those
// headers are ignored.
func TestOwnOriginFromTrustedProxy(t *testing.T) {
	tests := []struct {
		name    string
		trusted bool
		origin  string
		h       []string
		want    int
	}{
		{"forwarded host and proto", true, "https://app.example", []string{"X-Forwarded-Host", "app.example", "X-Forwarded-Proto", "https"}, 200},
		{"forwarded host with a port", true, "http://app.example:8080", []string{"X-Forwarded-Host", "app.example:8080"}, 200},
		{"forwarded host with the default port", true, "https://app.example", []string{"X-Forwarded-Host", "app.example:443", "X-Forwarded-Proto", "https"}, 200},
		{"forwarded host in upper case", true, "https://app.example", []string{"X-Forwarded-Host", "APP.Example", "X-Forwarded-Proto", "HTTPS"}, 200},
		{"first of several values", true, "https://app.example", []string{"X-Forwarded-Host", "app.example, gateway.internal", "X-Forwarded-Proto", "https, http"}, 200},
		{"first of several lines", true, "https://app.example", []string{"X-Forwarded-Host", "app.example", "X-Forwarded-Host", "gateway.internal", "X-Forwarded-Proto", "https"}, 200},
		{"not the later values", true, "http://gateway.internal", []string{"X-Forwarded-Host", "app.example, gateway.internal"}, 403},
		{"forwarded proto differs", true, "http://app.example", []string{"X-Forwarded-Host", "app.example", "X-Forwarded-Proto", "https"}, 403},
		{"forwarded host differs", true, "https://evil.example", []string{"X-Forwarded-Host", "app.example", "X-Forwarded-Proto", "https"}, 403},
		{"no forwarded host: Host", true, "http://app.example", []string{"Host", "app.example"}, 200},
		{"untrusted peer: forwarded host ignored", false, "https://app.example", []string{"X-Forwarded-Host", "app.example", "X-Forwarded-Proto", "https"}, 403},
		{"untrusted peer: Host still counts", false, "http://app.example", []string{"Host", "app.example", "X-Forwarded-Host", "evil.example"}, 200},
	}
	envs := map[bool]*env{}
	cookies := map[bool]string{}
	for _, tr := range []bool{false, true} {
		e := newSessionEnv(t, func(c *Config, _ *Deps) {
			c.Delivery = DeliveryCookie
			if tr {
				c.TrustedProxies = mustPrefixes(t, "127.0.0.1/32")
			}
		})
		res := e.do("POST", "/auth/login", loginHeader(), loginJSON)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("login: status = %d", res.StatusCode)
		}
		envs[tr], cookies[tr] = e, tokenCookie(res)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := envs[tt.trusted]
			h := with(http.Header{"Origin": {tt.origin}}, tt.h...)
			post := h.Clone()
			post.Set("Cookie", cookies[tt.trusted])
			post.Set("X-Requested-With", "fetch")
			if res := e.do("POST", "/api/x", post, "x"); res.StatusCode != tt.want {
				t.Errorf("cookie POST: status = %d, want %d", res.StatusCode, tt.want)
			}
			login := h.Clone()
			login.Set("Content-Type", "application/json")
			if res := e.do("POST", "/auth/login", login, loginJSON); res.StatusCode != tt.want {
				t.Errorf("login: status = %d, want %d", res.StatusCode, tt.want)
			}
		})
	}
}

// TestOriginBehindNginx runs a real nginx in front of the gateway, as its
// users configure it (X-Forwarded-Host $http_host, X-Forwarded-Proto
// $scheme), once with "proxy_set_header Host $host" and once with nginx's
// default Host (the proxy_pass address): a browser at nginx's origin logs
// in with the cookie, posts, refreshes and logs out. The same Origin sent
// straight to the gateway, from a peer that is not a trusted proxy, with a
// spoofed X-Forwarded-Host, is still refused.
func TestOriginBehindNginx(t *testing.T) {
	for _, host := range []string{"$host", ""} {
		name := "Host " + host
		if host == "" {
			name = "default Host"
		}
		t.Run(name, func(t *testing.T) {
			e := newSessionEnv(t, func(c *Config, _ *Deps) {
				c.Delivery = DeliveryCookie
				// nginx connects from 127.0.0.2; the test itself, as an
				// untrusted client, from 127.0.0.1.
				c.TrustedProxies = mustPrefixes(t, "127.0.0.2/32")
			})
			ng := fronttest.StartNginx(t, e.srv.Listener.Addr().String(), fronttest.NginxOptions{Host: host, Bind: "127.0.0.2"})
			origin := ng.Origin()
			via := func(method, path string, h http.Header, body string) *http.Response {
				t.Helper()
				h.Set("Origin", origin)
				res := rawDo(t, ng.Addr, method, path, h, body)
				if res.StatusCode >= 400 {
					t.Logf("nginx.conf:\n%s\nerror log:\n%s", ng.Config, ng.ErrorLog())
				}
				return res
			}

			res := via("POST", "/auth/login", loginHeader(), loginJSON)
			cookie := tokenCookie(res)
			if res.StatusCode != http.StatusOK || cookie == "" {
				t.Fatalf("login via nginx: status = %d, cookie %q; want 200 and the token cookie", res.StatusCode, cookie)
			}
			if got := e.upstream.requests(); len(got) != 0 {
				t.Fatalf("upstream got %d requests before any proxied one", len(got))
			}
			res = via("POST", "/api/x", http.Header{"Cookie": {cookie}, "X-Requested-With": {"fetch"}}, "x")
			if res.StatusCode != http.StatusOK {
				t.Errorf("cookie POST via nginx: status = %d, want 200", res.StatusCode)
			} else {
				// It came through nginx, from 127.0.0.2, carrying the
				// browser's host.
				got := e.upstream.last(t).Header
				if got.Get("X-Auth-Subject") != "alice" || got.Get("X-Forwarded-For") != "127.0.0.1, 127.0.0.2" || got.Get("X-Forwarded-Host") != ng.Addr {
					t.Errorf("upstream X-Auth-Subject %q, X-Forwarded-For %q, X-Forwarded-Host %q; want alice, 127.0.0.1, 127.0.0.2 and %s",
						got.Get("X-Auth-Subject"), got.Get("X-Forwarded-For"), got.Get("X-Forwarded-Host"), ng.Addr)
				}
			}
			e.clock.Advance(16 * time.Minute)
			res = via("POST", "/auth/refresh", http.Header{"Cookie": {cookie}, "X-Requested-With": {"fetch"}}, "")
			next := tokenCookie(res)
			if res.StatusCode != http.StatusOK || next == "" || next == cookie {
				t.Fatalf("refresh via nginx: status = %d, cookie %q; want 200 and a new token cookie", res.StatusCode, next)
			}
			res = via("POST", "/auth/logout", http.Header{"Cookie": {next}, "X-Requested-With": {"fetch"}}, "")
			if res.StatusCode != http.StatusNoContent {
				t.Errorf("logout via nginx: status = %d, want 204", res.StatusCode)
			}

			// Straight to the gateway, from 127.0.0.1 (not a trusted
			// proxy), claiming nginx's host: refused, with no cookie set.
			u, _ := url.Parse(origin)
			spoof := func(h http.Header) http.Header {
				h.Set("Origin", origin)
				h.Set("X-Forwarded-Host", u.Host)
				h.Set("X-Forwarded-Proto", "http")
				return h
			}
			res = e.do("POST", "/auth/login", spoof(loginHeader()), loginJSON)
			if res.StatusCode != http.StatusForbidden || len(res.Header.Values("Set-Cookie")) != 0 {
				t.Errorf("direct login with a spoofed X-Forwarded-Host: status = %d, Set-Cookie %q; want 403 and none",
					res.StatusCode, res.Header.Values("Set-Cookie"))
			}
			_, fresh := e.login("alice", "wonderland")
			cookie = tokenCookie(fresh)
			for _, path := range []string{"/api/x", "/auth/refresh", "/auth/logout"} {
				res = e.do("POST", path, spoof(http.Header{"Cookie": {cookie}, "X-Requested-With": {"fetch"}}), "")
				if res.StatusCode != http.StatusForbidden {
					t.Errorf("direct POST %s with a spoofed X-Forwarded-Host: status = %d, want 403", path, res.StatusCode)
				}
			}
		})
	}
}
