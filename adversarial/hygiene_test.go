package adversarial

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/proxy"
)

// hygieneAttacks are the findings of issue 11's items 3, 6 and 7: token
// cookies spelled as lenient backends read them, and paths that a backend
// decoding twice routes elsewhere.
func hygieneAttacks() []attack {
	// spelled hands the upstream, with forward_token = false, a token
	// cookie under a spelling some common backend reads as the token
	// cookie's name.
	spelled := func(name, cookie string) attack {
		return attack{
			name: "cookie/" + name + " removed",
			request: func(e *env) rawReq {
				return get("/public/x", "Cookie: app=1; "+strings.ReplaceAll(cookie, "TOKEN", marker))
			},
			status: http.StatusOK,
			never:  all(reached("a", "/public/x"), absent(marker)),
		}
	}
	// spelledConflict: a valid bearer token, and another valid token in a
	// spelled token cookie, which a backend given both (forward_token =
	// true) may read instead of the verified one.
	spelledConflict := func(name, cookie string) attack {
		return attack{
			name: "cookie/" + name + " conflicts with the bearer",
			opts: envOptions{config: func(c *proxy.Config) { c.ForwardToken = true }},
			request: func(e *env) rawReq {
				return get("/api/x", bearer(valid(e)), "Cookie: "+strings.ReplaceAll(cookie, "TOKEN", valid(e)))
			},
			status: http.StatusBadRequest,
		}
	}
	cookies := []struct{ name, cookie string }{
		{"space before =", "__Host-gateway =TOKEN"},
		{"tab before =", "__Host-gateway\t=TOKEN"},
		{"lower case", "__host-gateway=TOKEN"},
		{"percent-encoded name", "%5F%5FHost-gateway=TOKEN"},
		{"dots for underscores", "..Host-gateway=TOKEN"},
		{"PHP array", "__Host-gateway[0]=TOKEN"},
		{"after a comma", "x=1,__Host-gateway=TOKEN"},
		{"encoded trailing space", "__Host-gateway%20=TOKEN"},
	}
	// tossed: the spelled cookie alone, as a sibling site can set it past
	// the __Host- prefix's rules, must not log the victim in as whoever's
	// token it holds.
	tossed := func(name, cookie string) attack {
		return attack{
			name: "cookie/" + name + " alone does not authenticate",
			request: func(e *env) rawReq {
				return get("/api/x", "Cookie: "+strings.ReplaceAll(cookie, "TOKEN", valid(e)))
			},
			status: http.StatusUnauthorized,
		}
	}
	var out []attack
	for _, c := range cookies {
		out = append(out, spelled(c.name, c.cookie), spelledConflict(c.name, c.cookie))
		if !strings.Contains(c.name, "before =") {
			out = append(out, tossed(c.name, c.cookie))
		}
	}
	out = append(out, attack{
		name: "cookie/spelled beside the real one",
		request: func(e *env) rawReq {
			return get("/api/x", "Cookie: __Host-gateway="+valid(e)+"; __Host-gateway ="+valid(e))
		},
		status: http.StatusBadRequest,
	})

	// A public catch-all, the setting in which a backend's second decoding
	// reaches what the gateway protects.
	catchAll := func(slash bool) envOptions {
		return envOptions{config: func(c *proxy.Config) {
			c.AllowEncodedSlash = slash
			c.Routes = append(c.Routes, proxy.Route{Prefix: "/", Upstream: c.Routes[0].Upstream, Auth: proxy.AuthNone})
		}}
	}
	for _, target := range []string{
		"/%2561pi/x", "/%252561pi/x", "/%2561dmin-api/x", "/%256Fther/x", "/ap%2569/x",
		"/%2561uth/login", "/%2561uth/refresh", "/auth/logou%2574", "/.well-known/jwks%252ejson",
	} {
		out = append(out, attack{
			name:    "path/" + target + " decodes again into another route",
			opts:    catchAll(false),
			request: func(e *env) rawReq { return get(target) },
			status:  http.StatusBadRequest,
		})
	}
	for _, target := range []string{"/api%2Fx", "/other%2fx", "/%2561pi%2Fx"} {
		out = append(out, attack{
			name:    "path/" + target + " decodes into another route with allow_encoded_slash",
			opts:    catchAll(true),
			request: func(e *env) rawReq { return get(target) },
			status:  http.StatusBadRequest,
		})
	}
	// Encodings that stay in their route still pass, as sent.
	for _, target := range []string{"/public/%2561", "/x%2561pi/x"} {
		out = append(out, attack{
			name:    "path/" + target + " stays in its route",
			opts:    catchAll(false),
			request: func(e *env) rawReq { return get(target) },
			status:  http.StatusOK,
			never:   reached("a", target),
		})
	}
	return out
}

// TestHygieneAttacks runs the hygiene table.
func TestHygieneAttacks(t *testing.T) {
	t.Parallel()
	for _, tt := range hygieneAttacks() {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t)
		})
	}
}

// TestTrailersNeverLeak: an upstream that speaks under the identity prefix
// and sets the token cookie in trailers, declared and not, gets none of it
// to the client: not in the trailer section on the wire, not in the Trailer
// header announcing it.
func TestTrailersNeverLeak(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Trailer", "X-Auth-Subject, x_auth_roles, Set-Cookie, X-Digest")
		io.WriteString(w, "first,")
		http.NewResponseController(w).Flush()
		io.WriteString(w, "second")
		h.Set("X-Auth-Subject", marker)
		h.Set("x_auth_roles", marker)
		h.Set("Set-Cookie", "__Host-gateway="+upstreamCookie+"; Path=/")
		h.Set("X-Digest", "kept")
		h.Set(http.TrailerPrefix+"X-Auth-Email", marker)
		h.Set(http.TrailerPrefix+"Set-Cookie", "__HOST-gateway="+upstreamCookie)
	}))
	e := envWithUpstream(t, up)

	// On the wire, byte for byte.
	wire := wireGet(t, e, "TE: trailers")
	noIdentityOnTheWire(t, wire)
	if !strings.Contains(string(wire), "X-Digest: kept") || !strings.Contains(string(wire), "Transfer-Encoding: chunked") {
		t.Errorf("want a chunked answer with its X-Digest trailer:\n%s", wire)
	}

	// As a client reads it.
	res, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(wire))), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	if string(body) != "first,second" {
		t.Errorf("body = %q", body)
	}
	for k, v := range res.Trailer {
		if strings.Contains(strings.ToLower(k), "auth") || strings.Contains(strings.Join(v, ","), upstreamCookie) {
			t.Errorf("trailer %s: %q reached the client", k, v)
		}
	}
	if got := res.Trailer.Get("X-Digest"); got != "kept" {
		t.Errorf("trailer X-Digest = %q, want kept", got)
	}
}

// TestEarlyHintsNeverLeak: an upstream's 103 Early Hints carrying identity
// headers and the gateway's token cookie reach the client on the wire
// without them (ReverseProxy forwards 1xx headers past ModifyResponse).
func TestEarlyHintsNeverLeak(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Link", "</a.css>; rel=preload")
		h.Set("X-Auth-Subject", marker)
		h.Set("x_auth_roles", marker)
		h.Set("Set-Cookie", "__Host-gateway="+upstreamCookie+"; Path=/")
		w.WriteHeader(http.StatusEarlyHints)
		clear(h)
		io.WriteString(w, "done")
	}))
	e := envWithUpstream(t, up)
	wire := wireGet(t, e)
	low := noIdentityOnTheWire(t, wire)
	if !strings.Contains(string(wire), "103 Early Hints") || !strings.Contains(string(wire), "Link: </a.css>") {
		t.Errorf("want the 103 with its Link header:\n%s", wire)
	}
	if n := strings.Count(low, "x-request-id:"); n != 2 {
		t.Errorf("X-Request-Id lines = %d, want 2 (the 103's and the answer's):\n%s", n, wire)
	}
}

// envWithUpstream is a gateway with the public route /t/ to up (closed with
// the test).
func envWithUpstream(t *testing.T, up *httptest.Server) *env {
	t.Helper()
	t.Cleanup(up.Close)
	return newEnv(t, envOptions{config: func(c *proxy.Config) {
		u := *c.Routes[0].Upstream
		u.Host = up.Listener.Addr().String()
		c.Routes = append(c.Routes, proxy.Route{Prefix: "/t/", Upstream: &u, Auth: proxy.AuthNone})
	}})
}

// wireGet sends GET /t/x with the extra header lines on a connection of its
// own and returns every byte of the answer.
func wireGet(t *testing.T, e *env, lines ...string) []byte {
	t.Helper()
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	head := "GET /t/x HTTP/1.1\r\nHost: " + e.addr + "\r\n"
	for _, l := range lines {
		head += l + "\r\n"
	}
	io.WriteString(conn, head+"Connection: close\r\n\r\n")
	wire, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	return wire
}

// noIdentityOnTheWire fails the test if the upstream's identity headers or
// its token cookie reached the client anywhere in wire, and returns wire in
// lower case.
func noIdentityOnTheWire(t *testing.T, wire []byte) string {
	t.Helper()
	low := strings.ToLower(string(wire))
	for _, w := range []string{strings.ToLower(marker), strings.ToLower(upstreamCookie), "x-auth", "x_auth"} {
		if strings.Contains(low, w) {
			t.Errorf("the client received %q:\n%s", w, wire)
		}
	}
	return low
}
