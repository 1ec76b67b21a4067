package adversarial

import (
	"net/http"
	"testing"

	"github.com/spa-gateway/gateway/proxy"
)

// originAttacks are cross-site requests riding on the cookie, and attempts
// to make the gateway believe a foreign origin is its own (issue 11, items
// 4 and 5). The suite's gateway delivers in both (so login sets the cookie)
// and trusts 127.0.0.2 as a proxy; the attacker connects from 127.0.0.1.
func originAttacks() []attack {
	loginFrom := func(lines ...string) func(e *env) rawReq {
		return func(e *env) rawReq {
			return post("/auth/login", "username=alice&password=wonderland",
				append([]string{"Content-Type: application/x-www-form-urlencoded"}, lines...)...)
		}
	}
	bearerOnly := envOptions{config: func(c *proxy.Config) { c.Delivery = proxy.DeliveryBearer }}
	nullAllowed := envOptions{config: func(c *proxy.Config) { c.AllowedOrigins = []string{"null"} }}
	cookiePost := func(lines ...string) func(e *env) rawReq {
		return func(e *env) rawReq {
			return post("/api/x", "x", append([]string{"Cookie: __Host-gateway=" + valid(e), "X-Requested-With: fetch"}, lines...)...)
		}
	}
	spoofed := []string{"Origin: https://evil.example", "X-Forwarded-Host: evil.example", "X-Forwarded-Proto: https"}
	return []attack{
		// Login CSRF: a foreign page posts the attacker's credentials so
		// that the victim's browser is silently signed in as the attacker.
		{name: "login CSRF: form POST from a foreign Origin", request: loginFrom("Origin: https://evil.example"),
			status: http.StatusForbidden, never: all(nothing, noSession)},
		{name: "login CSRF: Origin null (sandboxed iframe, redirect)", request: loginFrom("Origin: null"),
			status: http.StatusForbidden, never: all(nothing, noSession)},
		{name: "login CSRF: Sec-Fetch-Site cross-site without Origin", request: loginFrom("Sec-Fetch-Site: cross-site"),
			status: http.StatusForbidden, never: all(nothing, noSession)},
		{name: "login CSRF: two Origin headers, the own one first", request: func(e *env) rawReq {
			return loginFrom("Origin: http://"+e.addr, "Origin: https://evil.example")(e)
		}, status: http.StatusForbidden, never: all(nothing, noSession)},
		{name: "login CSRF: spoofed X-Forwarded-Host from an untrusted peer", request: loginFrom(spoofed...),
			status: http.StatusForbidden, never: all(nothing, noSession)},
		{name: "login from the gateway's own origin (control)", request: func(e *env) rawReq {
			return loginFrom("Origin: http://" + e.addr)(e)
		}, status: http.StatusOK, never: nothing},
		{name: "login from a foreign Origin under bearer delivery, which sets no cookie (control)", opts: bearerOnly,
			request: loginFrom("Origin: https://evil.example"), status: http.StatusOK, never: nothing},

		// Every cookie-authenticated state-changing request follows the
		// same rule.
		{name: "cookie POST from Origin null listed in allowed_origins", opts: nullAllowed,
			request: cookiePost("Origin: null"), status: http.StatusForbidden},
		{name: "cookie POST cross-site without Origin", request: cookiePost("Sec-Fetch-Site: cross-site"),
			status: http.StatusForbidden},
		{name: "cookie refresh cross-site without Origin", request: func(e *env) rawReq {
			return post("/auth/refresh", "", "Cookie: __Host-gateway="+expired(e), "X-Requested-With: fetch", "Sec-Fetch-Site: cross-site")
		}, status: http.StatusForbidden, never: all(nothing, sessionUnchanged)},
		{name: "cookie logout from Origin null", request: func(e *env) rawReq {
			return post("/auth/logout", "", "Cookie: __Host-gateway="+expired(e), "X-Requested-With: fetch", "Origin: null")
		}, status: http.StatusForbidden, never: all(nothing, sessionUnchanged)},
		{name: "cookie WebSocket upgrade cross-site without Origin", opts: wsRoute,
			request: func(e *env) rawReq {
				return get("/ws/x", "Cookie: __Host-gateway="+valid(e), "Connection: Upgrade", "Upgrade: websocket",
					"Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-Fetch-Site: cross-site")
			}, status: http.StatusForbidden},

		// X-Forwarded-Host names the request's own origin only from a
		// trusted proxy.
		{name: "cookie POST with a spoofed X-Forwarded-Host from an untrusted peer", request: cookiePost(spoofed...),
			status: http.StatusForbidden},
		{name: "cookie logout with a spoofed X-Forwarded-Host from an untrusted peer", request: func(e *env) rawReq {
			return post("/auth/logout", "", append([]string{"Cookie: __Host-gateway=" + expired(e), "X-Requested-With: fetch"}, spoofed...)...)
		}, status: http.StatusForbidden, never: all(nothing, sessionUnchanged)},
		{name: "cookie POST with X-Forwarded-Host from a trusted proxy (control)", request: func(e *env) rawReq {
			r := cookiePost("Origin: https://app.example", "X-Forwarded-Host: app.example", "X-Forwarded-Proto: https")(e)
			r.from = "127.0.0.2"
			return r
		}, status: http.StatusOK, never: countA(1)},
	}
}

// TestOriginAttacks runs originAttacks.
func TestOriginAttacks(t *testing.T) {
	t.Parallel()
	for _, tt := range originAttacks() {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t)
		})
	}
}
