package adversarial

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/proxy"
)

// attack is one entry of the suite: the attack, the request an attacker
// sends, the status the gateway must answer, and what must not reach the
// upstreams.
type attack struct {
	name string
	// opts configures the gateway; the zero value is the default one.
	opts envOptions
	// request builds the raw request; it may log in, mint tokens and
	// store sessions through e.
	request func(e *env) rawReq
	status  int
	// never checks what must not have reached the upstreams (or changed in
	// the store); nil means nothing at all may reach them.
	never check
}

// run runs the attack against a gateway of its own: the status must be
// tt.status, tt.never must hold (nothing reached the upstreams if nil), a
// refused login must set no token cookie, and e.invariants must hold. The
// string B-HOST in the request target is upstream b's address.
func (tt attack) run(t *testing.T) {
	t.Helper()
	e := newEnv(t, tt.opts)
	r := tt.request(e)
	r.target = strings.ReplaceAll(r.target, "B-HOST", e.b.Listener.Addr().String())
	a := e.send(r)
	if a.status != tt.status {
		t.Errorf("status = %d, want %d (%s)", a.status, tt.status, a.body)
	}
	if r.target == "/auth/login" && a.status != http.StatusOK {
		for _, c := range a.header.Values("Set-Cookie") {
			if strings.HasPrefix(c, "__Host-gateway=") {
				t.Errorf("refused login set the token cookie: %q", c)
			}
		}
	}
	never := tt.never
	if never == nil {
		never = nothing
	}
	if err := never(e); err != nil {
		t.Error(err)
	}
	if err := e.invariants(a); err != nil {
		t.Error(err)
	}
}

// Shorthands for the table.
func valid(e *env) string   { tok, _ := e.token(false); return tok }
func expired(e *env) string { tok, e2 := e.token(true); e.last = e2; return tok }

// sessionUnchanged: the session of the last expired() token is as it was.
func sessionUnchanged(e *env) error { return unchanged(e.last)(e) }

func xff(want string) check {
	return func(e *env) error {
		for _, r := range e.a.requests() {
			if got := strings.Join(r.Header.Values("X-Forwarded-For"), ", "); got != want {
				return fmt.Errorf("upstream X-Forwarded-For = %q, want %q", got, want)
			}
		}
		return nil
	}
}

// noHeader: no request reached an upstream with a header of these names,
// compared without case and with '_' taken as '-'.
func noHeader(names ...string) check {
	return func(e *env) error {
		for _, u := range []*upstream{e.a, e.b} {
			for _, r := range u.requests() {
				for k, v := range r.Header {
					for _, n := range names {
						if strings.EqualFold(strings.ReplaceAll(k, "_", "-"), n) {
							return fmt.Errorf("upstream %s received %s: %q", u.name, k, v)
						}
					}
				}
			}
		}
		return nil
	}
}

func headerIs(name, want string) check {
	return func(e *env) error {
		for _, r := range e.a.requests() {
			if got := strings.Join(r.Header.Values(name), ", "); got != want {
				return fmt.Errorf("upstream %s = %q, want %q", name, got, want)
			}
		}
		return nil
	}
}

// noSession: no session of alice was created.
func noSession(e *env) error {
	list, err := e.store.List(e.tb.Context(), user, epoch)
	if err != nil {
		return err
	}
	if len(list) != 0 {
		return fmt.Errorf("%d session(s) created, want none", len(list))
	}
	return nil
}

// countA: upstream a received exactly n requests, and b none.
func countA(n int) check {
	return func(e *env) error {
		if got := len(e.a.requests()); got != n || len(e.b.requests()) != 0 {
			return fmt.Errorf("upstreams received a:%d b:%d, want a:%d b:0", got, len(e.b.requests()), n)
		}
		return nil
	}
}

const loginJSON = `{"username":"alice","password":"wonderland"}`

// wsRoute adds /ws/, a protected route that allows WebSocket upgrades.
var wsRoute = envOptions{config: func(c *proxy.Config) {
	c.Routes = append(c.Routes, proxy.Route{Prefix: "/ws/", Upstream: c.Routes[0].Upstream, Auth: proxy.AuthRequired, WebSocket: true})
}}

func headerAttacks() []attack {
	spoof := func(name, line string) attack {
		return attack{name: name, request: func(e *env) rawReq { return get("/api/x", bearer(valid(e)), line) },
			status: http.StatusOK, never: all(identity(user), absent(marker))}
	}
	return []attack{
		spoof("X-Auth-Subject spoofed", "X-Auth-Subject: "+marker),
		spoof("x-auth-subject in lower case", "x-auth-subject: "+marker),
		spoof("X-AUTH-SUBJECT in upper case", "X-AUTH-SUBJECT: "+marker),
		spoof("X_Auth_Subject with underscores", "X_Auth_Subject: "+marker),
		spoof("x_auth-SUBJECT mixed", "x_auth-SUBJECT: "+marker),
		spoof("X-Auth-Roles spoofed", "X-Auth-Roles: admin,"+marker),
		spoof("a header under the prefix that the gateway never injects", "X-Auth-Email: "+marker),
		{name: "X-Auth-Subject sent twice", request: func(e *env) rawReq {
			return get("/api/x", bearer(valid(e)), "X-Auth-Subject: "+marker, "X-Auth-Subject: "+marker+"2")
		}, status: http.StatusOK, never: all(identity(user), absent(marker))},
		{name: "spoofed on an auth = none route", request: func(e *env) rawReq {
			return get("/public/x", "X-Auth-Subject: "+marker, "x_auth_roles: admin")
		}, status: http.StatusOK, never: all(identity(""), absent(marker))},
		{name: "spoofed on an optional route, anonymously", request: func(e *env) rawReq {
			return get("/maybe/x", "X-Auth-Subject: "+marker)
		}, status: http.StatusOK, never: all(identity(""), absent(marker))},
		{name: "spoofed in reject mode", opts: envOptions{config: func(c *proxy.Config) { c.OnSpoof = proxy.SpoofReject }},
			request: func(e *env) rawReq { return get("/api/x", bearer(valid(e)), "x_AUTH_subject: "+marker) },
			status:  http.StatusBadRequest},
		{name: "spoofed in a request trailer", request: func(e *env) rawReq {
			return rawReq{method: "POST", target: "/api/x", framed: true,
				lines: []string{bearer(valid(e)), "Transfer-Encoding: chunked", "Trailer: X-Auth-Subject"},
				body:  "2\r\nhi\r\n0\r\nX-Auth-Subject: " + marker + "\r\nX-Auth-Roles: " + marker + "\r\n\r\n"}
		}, status: http.StatusOK, never: all(identity(user), absent(marker))},
		{name: "undeclared request trailer", request: func(e *env) rawReq {
			return rawReq{method: "POST", target: "/public/x", framed: true,
				lines: []string{"Transfer-Encoding: chunked"},
				body:  "2\r\nhi\r\n0\r\nX-Auth-Subject: " + marker + "\r\n\r\n"}
		}, status: http.StatusOK, never: all(identity(""), absent(marker))},

		// Connection: names headers a proxy must remove; it must not remove
		// what the gateway injects, nor keep what it must remove.
		{name: "Connection naming the injected header", request: func(e *env) rawReq {
			return get("/api/x", bearer(valid(e)), "Connection: X-Auth-Subject, X-Auth-Roles")
		}, status: http.StatusOK, never: identity(user)},
		{name: "Connection naming the injected header, and spoofing it", request: func(e *env) rawReq {
			return get("/api/x", bearer(valid(e)), "Connection: close, X-Auth-Subject", "X-Auth-Subject: "+marker)
		}, status: http.StatusOK, never: all(identity(user), absent(marker))},
		{name: "Connection naming X-Forwarded-For", request: func(e *env) rawReq {
			return get("/api/x", bearer(valid(e)), "Connection: X-Forwarded-For", "X-Forwarded-For: 6.6.6.6")
		}, status: http.StatusOK, never: all(identity(user), xff("127.0.0.1"))},
		{name: "Connection naming Authorization on a protected route", request: func(e *env) rawReq {
			return get("/api/x", bearer(valid(e)), "Connection: Authorization")
		}, status: http.StatusOK, never: all(identity(user), noHeader("Authorization"))},

		// Forwarding headers from a client outside trusted_proxies.
		{name: "X-Forwarded-For spoofed", request: func(e *env) rawReq {
			return get("/api/x", bearer(valid(e)), "X-Forwarded-For: 6.6.6.6")
		}, status: http.StatusOK, never: all(absent("6.6.6.6"), xff("127.0.0.1"))},
		{name: "X-Forwarded-For sent twice", request: func(e *env) rawReq {
			return get("/api/x", bearer(valid(e)), "X-Forwarded-For: 6.6.6.6", "x-forwarded-for: 7.7.7.7")
		}, status: http.StatusOK, never: all(absent("6.6.6.6", "7.7.7.7"), xff("127.0.0.1"))},
		{name: "X_Forwarded_For with underscores", request: func(e *env) rawReq {
			return get("/api/x", bearer(valid(e)), "X_Forwarded_For: 6.6.6.6")
		}, status: http.StatusOK, never: all(absent("6.6.6.6"), xff("127.0.0.1"))},
		{name: "X-Forwarded-Host spoofed", request: func(e *env) rawReq {
			return get("/api/x", bearer(valid(e)), "X-Forwarded-Host: "+marker+".example")
		}, status: http.StatusOK, never: absent(marker)},
		{name: "X-Forwarded-Proto spoofed", request: func(e *env) rawReq {
			return get("/api/x", bearer(valid(e)), "X-Forwarded-Proto: https")
		}, status: http.StatusOK, never: headerIs("X-Forwarded-Proto", "http")},
		{name: "Forwarded spoofed", request: func(e *env) rawReq {
			return get("/api/x", bearer(valid(e)), "Forwarded: for=6.6.6.6;host="+marker+";proto=https")
		}, status: http.StatusOK, never: all(absent(marker, "6.6.6.6"), noHeader("Forwarded"))},
		{name: "X-Real-IP spoofed", request: func(e *env) rawReq {
			return get("/api/x", bearer(valid(e)), "X-Real-IP: 6.6.6.6")
		}, status: http.StatusOK, never: all(absent("6.6.6.6"), noHeader("X-Real-IP"))},
		{name: "X-Forwarded-Port, -Prefix, -Server, -Ssl, -Scheme spoofed", request: func(e *env) rawReq {
			return get("/api/x", bearer(valid(e)), "X-Forwarded-Port: 443", "X-Forwarded-Prefix: /"+marker,
				"X-Forwarded-Server: "+marker, "X-Forwarded-Ssl: on", "X-Forwarded-Scheme: https")
		}, status: http.StatusOK, never: all(absent(marker), noHeader("X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Server", "X-Forwarded-Ssl", "X-Forwarded-Scheme"))},
		{name: "X-Forwarded-For kept and extended from a trusted proxy (control)", request: func(e *env) rawReq {
			r := get("/api/x", bearer(valid(e)), "X-Forwarded-For: 6.6.6.6")
			r.from = "127.0.0.2"
			return r
		}, status: http.StatusOK, never: xff("6.6.6.6, 127.0.0.2")},

		// Header syntax tricks.
		{name: "obs-fold continuing a harmless header with a spoofed one", request: func(e *env) rawReq {
			return get("/api/x", bearer(valid(e)), "X-Other: a", " X-Auth-Subject: "+marker)
		}, status: http.StatusOK, never: identity(user)},
		{name: "obs-fold continuing a spoofed header", request: func(e *env) rawReq {
			return get("/api/x", bearer(valid(e)), "X-Auth-Subject: a", "\t"+marker)
		}, status: http.StatusOK, never: all(identity(user), absent(marker))},
		{name: "obs-fold as the first header line", request: func(e *env) rawReq {
			r := get("/api/x", " X-Auth-Subject: "+marker, "Host: x", bearer(valid(e)))
			r.noHost = true
			return r
		}, status: http.StatusBadRequest},
		{name: "NUL in a header value", request: func(e *env) rawReq {
			return get("/api/x", bearer(valid(e)), "X-Other: a\x00X-Auth-Subject: "+marker)
		}, status: http.StatusBadRequest},
		{name: "CR alone in a header value", request: func(e *env) rawReq {
			return get("/api/x", bearer(valid(e)), "X-Other: a\rX-Auth-Subject: "+marker)
		}, status: http.StatusBadRequest},
		{name: "bare LF line endings", request: func(e *env) rawReq {
			return get("/api/x", bearer(valid(e))+"\nX-Auth-Subject: "+marker)
		}, status: http.StatusOK, never: all(identity(user), absent(marker))},
		{name: "control character in a header name", request: func(e *env) rawReq {
			return get("/api/x", bearer(valid(e)), "X-Auth-Subject\x01: "+marker)
		}, status: http.StatusBadRequest},
		{name: "space before the colon", request: func(e *env) rawReq {
			return get("/api/x", bearer(valid(e)), "X-Auth-Subject : "+marker)
		}, status: http.StatusBadRequest},
		{name: "tab in a header name", request: func(e *env) rawReq {
			return get("/api/x", bearer(valid(e)), "X-Auth\t-Subject: "+marker)
		}, status: http.StatusBadRequest},
		{name: "non-ASCII in a header name", request: func(e *env) rawReq {
			return get("/api/x", bearer(valid(e)), "X-Auth-Subjéct: "+marker)
		}, status: http.StatusBadRequest},

		// Upgrades: only websocket, and only where a route allows it.
		{name: "Upgrade h2c (request smuggling through an h2c upgrade)", request: func(e *env) rawReq {
			return get("/api/x", bearer(valid(e)), "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA")
		}, status: http.StatusOK, never: all(identity(user), absent("h2c"), noHeader("Upgrade", "HTTP2-Settings"))},
		{name: "Upgrade websocket on a route without websocket", request: func(e *env) rawReq {
			return get("/api/x", bearer(valid(e)), "Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==")
		}, status: http.StatusOK, never: all(identity(user), noHeader("Upgrade"))},
		{name: "Upgrade without a token", request: func(e *env) rawReq {
			return get("/api/x", "Connection: Upgrade", "Upgrade: websocket")
		}, status: http.StatusUnauthorized},

		// The token itself.
		{name: "bearer token must not reach the upstream", request: func(e *env) rawReq {
			return get("/api/x", bearer(valid(e)))
		}, status: http.StatusOK, never: all(identity(user), noHeader("Authorization"))},
		{name: "token cookie must not reach the upstream, other cookies do", request: func(e *env) rawReq {
			return get("/api/x", "Cookie: a=1; __Host-gateway="+valid(e)+"; b=2")
		}, status: http.StatusOK, never: all(identity(user), headerIs("Cookie", "a=1; b=2"))},
		{name: "token in the query string", request: func(e *env) rawReq {
			return get("/api/x?access_token=" + valid(e))
		}, status: http.StatusUnauthorized},
		{name: "token cookie after a comma (RFC 2965 separator)", request: func(e *env) rawReq {
			return get("/api/x", "Cookie: a=1, __Host-gateway="+valid(e))
		}, status: http.StatusUnauthorized},
		{name: "two Authorization headers", request: func(e *env) rawReq {
			return get("/api/x", bearer(valid(e)), "Authorization: Bearer "+marker)
		}, status: http.StatusBadRequest},
		{name: "bearer and a different cookie token", request: func(e *env) rawReq {
			return get("/api/x", bearer(valid(e)), "Cookie: __Host-gateway="+valid(e))
		}, status: http.StatusBadRequest},
		{name: "two different token cookies", request: func(e *env) rawReq {
			return get("/api/x", "Cookie: __Host-gateway="+valid(e), "Cookie: __Host-gateway="+valid(e))
		}, status: http.StatusBadRequest},
		{name: "two tokens in one Authorization header", request: func(e *env) rawReq {
			return get("/api/x", "Authorization: Bearer "+valid(e)+", Bearer "+valid(e))
		}, status: http.StatusUnauthorized},
		{name: "Basic credentials instead of a token", request: func(e *env) rawReq {
			return get("/api/x", "Authorization: Basic YWxpY2U6d29uZGVybGFuZA==")
		}, status: http.StatusUnauthorized},
		{name: "roles not held", request: func(e *env) rawReq {
			return get("/admin-api/x", bearer(valid(e)))
		}, status: http.StatusForbidden},
		{name: "Expect 100-continue without a token: the body is never forwarded", request: func(e *env) rawReq {
			r := post("/api/x", strings.Repeat("b", 1000), "Expect: 100-continue")
			return r
		}, status: http.StatusUnauthorized},

		// Cookie delivery: state-changing requests need X-Requested-With
		// and a same-site Origin.
		{name: "cookie POST without X-Requested-With (CSRF)", request: func(e *env) rawReq {
			return post("/api/x", "x", "Cookie: __Host-gateway="+valid(e))
		}, status: http.StatusForbidden},
		{name: "cookie POST from a foreign Origin", request: func(e *env) rawReq {
			return post("/api/x", "x", "Cookie: __Host-gateway="+valid(e), "X-Requested-With: fetch", "Origin: https://evil.example")
		}, status: http.StatusForbidden},
		{name: "cookie POST from Origin null", request: func(e *env) rawReq {
			return post("/api/x", "x", "Cookie: __Host-gateway="+valid(e), "X-Requested-With: fetch", "Origin: null")
		}, status: http.StatusForbidden},
		{name: "cookie refresh without X-Requested-With", request: func(e *env) rawReq {
			return post("/auth/refresh", "", "Cookie: __Host-gateway="+expired(e))
		}, status: http.StatusForbidden, never: all(nothing, sessionUnchanged)},
		{name: "cookie logout from a foreign Origin", request: func(e *env) rawReq {
			return post("/auth/logout", "", "Cookie: __Host-gateway="+expired(e), "X-Requested-With: fetch", "Origin: https://evil.example")
		}, status: http.StatusForbidden, never: all(nothing, sessionUnchanged)},
		{name: "cookie WebSocket upgrade from a foreign Origin (cross-site WebSocket hijacking)", opts: wsRoute,
			request: func(e *env) rawReq {
				return get("/ws/x", "Cookie: __Host-gateway="+valid(e), "Connection: Upgrade", "Upgrade: websocket",
					"Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Origin: https://evil.example")
			}, status: http.StatusForbidden},
		{name: "cookie WebSocket upgrade from the gateway's own origin (control)", opts: wsRoute,
			request: func(e *env) rawReq {
				return get("/ws/x", "Cookie: __Host-gateway="+valid(e), "Connection: Upgrade", "Upgrade: websocket",
					"Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Origin: http://"+e.addr)
			}, status: http.StatusOK, never: all(identity(user), headerIs("Upgrade", "websocket"))},
		{name: "login rate limit evaded with X-Forwarded-For", opts: envOptions{deps: func(d *proxy.Deps) {
			d.Limiter = auth.NewFailureLimiter(3, time.Minute, func() time.Time { return epoch })
		}}, request: func(e *env) rawReq {
			for i := range 3 {
				e.send(post("/auth/login", `{"username":"mallory`+fmt.Sprint(i)+`","password":"x"}`,
					"Content-Type: application/json", fmt.Sprintf("X-Forwarded-For: 10.0.0.%d", i)))
			}
			return post("/auth/login", loginJSON, "Content-Type: application/json", "X-Forwarded-For: 10.9.9.9", "X-Real-IP: 10.9.9.9")
		}, status: http.StatusTooManyRequests, never: all(nothing, noSession)},
		{name: "refresh of a token not yet expired", request: func(e *env) rawReq {
			tok, s := e.token(false)
			e.last = s
			return post("/auth/refresh", "", bearer(tok))
		}, status: http.StatusUnauthorized, never: all(nothing, sessionUnchanged)},
	}
}

func pathAttacks() []attack {
	refused := func(target string) attack {
		return attack{name: target, request: func(e *env) rawReq { return get(target) }, status: http.StatusBadRequest}
	}
	withToken := func(name, target string, status int, never check) attack {
		return attack{name: name, request: func(e *env) rawReq { return get(target, bearer(valid(e))) }, status: status, never: never}
	}
	return []attack{
		refused("/public/../api/x"),
		refused("/public/./../api/x"),
		refused("/public/%2e%2e/api/x"),
		refused("/public/%2E%2E/api/x"),
		refused("/public/.%2e/api/x"),
		refused("/public/%2e./api/x"),
		refused("/public/%252e%252e/api/x"),
		refused("/public/%25252e%25252e/api/x"),
		refused("/public/%2525252e%2525252e/api/x"),
		refused("/public/..%2fapi/x"),
		refused("/public/..%2Fapi/x"),
		refused("/public/%2f..%2fapi/x"),
		refused("/public/..%252fapi/x"),
		refused("/public/..%5capi/x"),
		refused("/public/..%5Capi/x"),
		refused("/public/..%255capi/x"),
		refused(`/public/..\api/x`),
		refused("//api/x"),
		refused("/public//../api/x"),
		refused("/public/..;/api/x"),
		refused("/public;/../api/x"),
		refused("/api/x;jsessionid=1"),
		refused("/public/%3b/../api/x"),
		refused("/./api/x"),
		refused("/public/.."),
		refused("/public/."),
		refused("/public/%00/../api/x"),
		refused("/public/x%00"),
		refused("/public/x%0d%0aX-Auth-Subject:%20" + marker),
		refused("/public/%zz"),
		refused("/public/%"),
		// Overlong UTF-8 for '.' and '/' (Tomcat CVE-2008-2938, IIS):
		// decoders that accept them see "/public/../api/x".
		refused("/public/%c0%ae%c0%ae/api/x"),
		refused("/public/%c0%af..%c0%afapi/x"),
		refused("/public/%e0%80%ae%e0%80%ae/api/x"),
		refused("/public/x#/../../api/x"),
		refused("/public/\xc0\xae\xc0\xae/api/x"),
		{name: "asterisk-form on GET", request: func(e *env) rawReq { return get("*") }, status: http.StatusBadRequest},
		{name: "request target without leading slash", request: func(e *env) rawReq { return get("api/x") }, status: http.StatusBadRequest},
		{name: "CONNECT authority-form", request: func(e *env) rawReq {
			return rawReq{method: "CONNECT", target: e.b.Listener.Addr().String()}
		}, status: http.StatusBadRequest},

		// Encodings that are not ambiguous route as the upstream reads
		// them: "/%61pi/" is "/api/", so it needs a token.
		{name: "/%61pi/x (encoded letter) without a token", request: func(e *env) rawReq { return get("/%61pi/x") }, status: http.StatusUnauthorized},
		withToken("/%61pi/x with a token routes to /api/", "/%61pi/x", http.StatusOK, reached("a", "/%61pi/x")),
		{name: "/API/x (case) matches no route", request: func(e *env) rawReq { return get("/API/x") }, status: http.StatusNotFound},
		{name: "/api (no trailing slash) matches no route", request: func(e *env) rawReq { return get("/api") }, status: http.StatusNotFound},

		// Absolute-form request targets and Host: routing is on the path,
		// and the upstream is the route's, whatever host the client names.
		withToken("absolute-form naming upstream b", "http://B-HOST/api/x", http.StatusOK, reached("a", "/api/x")),
		{name: "absolute-form naming upstream b on a public route", request: func(e *env) rawReq {
			return get("http://" + e.b.Listener.Addr().String() + "/public/x")
		}, status: http.StatusOK, never: reached("a", "/public/x")},
		{name: "absolute-form naming upstream b, with credentials", request: func(e *env) rawReq {
			return get("http://user:pass@" + e.b.Listener.Addr().String() + "/public/x")
		}, status: http.StatusOK, never: all(reached("a", "/public/x"), absent("user:pass"))},
		{name: "absolute-form https naming an outside host", request: func(e *env) rawReq {
			return get("https://evil.example/public/x")
		}, status: http.StatusOK, never: reached("a", "/public/x")},
		{name: "absolute-form with dot segments", request: func(e *env) rawReq {
			return get("http://" + e.b.Listener.Addr().String() + "/public/../other/x")
		}, status: http.StatusBadRequest},
		{name: "Host naming upstream b", request: func(e *env) rawReq {
			r := get("/public/x", "Host: "+e.b.Listener.Addr().String())
			r.noHost = true
			return r
		}, status: http.StatusOK, never: reached("a", "/public/x")},
		{name: "Host naming upstream b with a token for /api/", request: func(e *env) rawReq {
			r := get("/api/x", "Host: "+e.b.Listener.Addr().String(), bearer(valid(e)))
			r.noHost = true
			return r
		}, status: http.StatusOK, never: reached("a", "/api/x")},
		{name: "two Host headers", request: func(e *env) rawReq {
			return get("/public/x", "Host: "+e.b.Listener.Addr().String())
		}, status: http.StatusBadRequest},
		{name: "/other/ still reaches b (control)", request: func(e *env) rawReq {
			r := get("/other/x", "Host: "+e.a.Listener.Addr().String(), bearer(valid(e)))
			r.noHost = true
			return r
		}, status: http.StatusOK, never: reached("b", "/other/x")},
	}
}

func bodyAttacks() []attack {
	const smuggled = "GET /api/secret HTTP/1.1\r\nHost: x\r\nX-Auth-Subject: " + marker + "\r\n\r\n"
	framed := func(name string, lines []string, body string, status int, never check) attack {
		return attack{name: name, request: func(e *env) rawReq {
			return rawReq{method: "POST", target: "/public/x", lines: lines, body: body, framed: true}
		}, status: status, never: never}
	}
	notSmuggled := all(absent("/api/secret", marker), countA(1))
	big := strings.Repeat("x", 65<<10)
	return []attack{
		// CL.TE and TE.CL: Transfer-Encoding wins (RFC 9112 section 6.3),
		// and the gateway re-frames the body toward the upstream, so the
		// smuggled request is at most a second request from the client
		// (answered 401 by the gateway), never bytes inside the upstream's
		// request stream.
		framed("Content-Length and Transfer-Encoding (CL.TE)",
			[]string{"Content-Length: " + fmt.Sprint(5+len(smuggled)), "Transfer-Encoding: chunked"}, "0\r\n\r\n"+smuggled,
			http.StatusOK, notSmuggled),
		framed("Transfer-Encoding and a short Content-Length (TE.CL)",
			[]string{"Transfer-Encoding: chunked", "Content-Length: 3"}, fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(smuggled), smuggled),
			http.StatusOK, all(countA(1), func(e *env) error {
				if r := e.a.requests(); len(r) == 1 && r[0].Body != smuggled {
					return fmt.Errorf("upstream body = %q, want the whole chunked body", r[0].Body)
				}
				return nil
			})),
		framed("Transfer-Encoding chunked then identity", []string{"Transfer-Encoding: chunked", "Transfer-Encoding: identity", "Content-Length: 5"}, "0\r\n\r\n"+smuggled, http.StatusNotImplemented, nil),
		framed("Transfer-Encoding: chunked, chunked", []string{"Transfer-Encoding: chunked, chunked"}, "0\r\n\r\n", http.StatusNotImplemented, nil),
		framed("Transfer-Encoding: xchunked", []string{"Transfer-Encoding: xchunked", "Content-Length: 5"}, "0\r\n\r\n", http.StatusNotImplemented, nil),
		framed("Transfer-Encoding with a space before the colon", []string{"Transfer-Encoding : chunked", "Content-Length: 5"}, "0\r\n\r\n", http.StatusBadRequest, nil),
		framed("Transfer-Encoding as an obs-fold continuation", []string{"X-Other: a", " Transfer-Encoding: chunked", "Content-Length: 5"}, "0\r\n\r\n", http.StatusOK, countA(1)),
		framed("two different Content-Length headers", []string{"Content-Length: 5", "Content-Length: 6"}, "0\r\n\r\nx", http.StatusBadRequest, nil),
		framed("Content-Length with a sign", []string{"Content-Length: +5"}, "0\r\n\r\n", http.StatusBadRequest, nil),
		framed("Content-Length list", []string{"Content-Length: 5, 5"}, "0\r\n\r\n", http.StatusBadRequest, nil),
		framed("chunk size overflowing 64 bits", []string{"Transfer-Encoding: chunked"}, "10000000000000001\r\nx\r\n0\r\n\r\n", http.StatusBadGateway, absent("10000000000000001")),
		{name: "GET with a body holding a request", request: func(e *env) rawReq {
			return rawReq{method: "GET", target: "/public/x", body: smuggled}
		}, status: http.StatusOK, never: all(countA(1), absent(marker+"\r\n\r\nGET"), func(e *env) error {
			if r := e.a.requests(); len(r) == 1 && r[0].RequestURI != "/public/x" {
				return fmt.Errorf("upstream received %q", r[0].RequestURI)
			}
			return nil
		})},
		{name: "pipelined request after a refused one", request: func(e *env) rawReq {
			return rawReq{method: "GET", target: "/api/x", lines: []string{"Content-Length: " + fmt.Sprint(len(smuggled))}, body: smuggled, framed: true}
		}, status: http.StatusUnauthorized},

		// Bodies of the gateway's own endpoints are bounded
		// (login.max_body_bytes, 64 KiB by default).
		{name: "login body over the limit (Content-Length)", request: func(e *env) rawReq {
			return post("/auth/login", `{"username":"alice","password":"wonderland","pad":"`+big+`"}`, "Content-Type: application/json")
		}, status: http.StatusRequestEntityTooLarge, never: all(nothing, noSession)},
		{name: "login body over the limit (chunked)", request: func(e *env) rawReq {
			body := `{"username":"alice","password":"wonderland","pad":"` + big + `"}`
			return rawReq{method: "POST", target: "/auth/login", framed: true,
				lines: []string{"Content-Type: application/json", "Transfer-Encoding: chunked"},
				body:  fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)}
		}, status: http.StatusRequestEntityTooLarge, never: all(nothing, noSession)},
		{name: "login body declared huge", request: func(e *env) rawReq {
			return rawReq{method: "POST", target: "/auth/login", framed: true,
				lines: []string{"Content-Type: application/json", "Content-Length: 1073741824"}, body: loginJSON}
		}, status: http.StatusRequestEntityTooLarge, never: all(nothing, noSession)},
		{name: "refresh with a body over the limit", request: func(e *env) rawReq {
			return post("/auth/refresh", big, bearer(expired(e)))
		}, status: http.StatusRequestEntityTooLarge, never: all(nothing, sessionUnchanged)},
		{name: "logout with a body over the limit", request: func(e *env) rawReq {
			return post("/auth/logout", big, bearer(expired(e)))
		}, status: http.StatusRequestEntityTooLarge, never: all(nothing, sessionUnchanged)},
		{name: "login with a password over bcrypt's 72 bytes", request: func(e *env) rawReq {
			return post("/auth/login", `{"username":"alice","password":"wonderland`+strings.Repeat("x", 100)+`"}`, "Content-Type: application/json")
		}, status: http.StatusUnauthorized, never: all(nothing, noSession)},
		{name: "login with a NUL after the password", request: func(e *env) rawReq {
			return post("/auth/login", `{"username":"alice","password":"wonderland\u0000x"}`, "Content-Type: application/json")
		}, status: http.StatusUnauthorized, never: all(nothing, noSession)},
		{name: "login with duplicate JSON keys", request: func(e *env) rawReq {
			return post("/auth/login", `{"username":"mallory","password":"x","username":"alice","password":"nope"}`, "Content-Type: application/json")
		}, status: http.StatusUnauthorized, never: all(nothing, noSession)},
		{name: "login over GET with credentials in the query", request: func(e *env) rawReq {
			return get("/auth/login?username=alice&password=wonderland")
		}, status: http.StatusMethodNotAllowed, never: all(nothing, noSession)},
	}
}

// TestAttacks runs the header, path and body tables.
func TestAttacks(t *testing.T) {
	t.Parallel()
	groups := []struct {
		name    string
		attacks []attack
	}{
		{"headers", headerAttacks()},
		{"paths", pathAttacks()},
		{"bodies", bodyAttacks()},
	}
	for _, g := range groups {
		for _, tt := range g.attacks {
			t.Run(g.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				tt.run(t)
			})
		}
	}
}
