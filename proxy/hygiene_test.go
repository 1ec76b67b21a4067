package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"
)

// trailerUpstream answers with a chunked body and trailers, declared and
// undeclared (http.TrailerPrefix), that speak under the identity prefix, set
// the gateway's token cookie, repeat the request id, and one that is kept.
func trailerUpstream(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Trailer", "X-Auth-Subject, X-Auth-Roles, Set-Cookie, X-Request-Id, X-Checksum")
	io.WriteString(w, "part one,")
	http.NewResponseController(w).Flush() // chunked from here on
	io.WriteString(w, "part two")
	h.Set("X-Auth-Subject", "forged-admin")
	h.Set("X-Auth-Roles", "admin")
	h.Set("Set-Cookie", "__Host-gateway=forged-cookie; Path=/")
	h.Set("X-Request-Id", "upstream-id")
	h.Set("X-Checksum", "kept")
	h.Set(http.TrailerPrefix+"X_Auth_Email", "forged@example.com")
	h.Set(http.TrailerPrefix+"X-Auth-Tenant", "forged-tenant")
	h.Add(http.TrailerPrefix+"Set-Cookie", "__host-gateway=forged-undeclared; Path=/")
	h.Set(http.TrailerPrefix+"X-Late", "kept")
}

// TestTrailersAreCleaned: the response rules (no identity header, no token
// cookie, one X-Request-Id) hold for trailers too, in their announcement
// (the Trailer header) and in their values, over HTTP/1.1 and HTTP/2.
func TestTrailersAreCleaned(t *testing.T) {
	// The upstream's answer over HTTP/1.1 (chunked) behind /public/, over
	// HTTP/2 behind /h2/.
	h2up := httptest.NewUnstartedServer(http.HandlerFunc(trailerUpstream))
	h2up.EnableHTTP2 = true
	h2up.StartTLS()
	t.Cleanup(h2up.Close)
	e := newEnv(t, func(c *Config, d *Deps) {
		u := *c.Routes[0].Upstream
		u.Scheme, u.Host = "https", h2up.Listener.Addr().String()
		c.Routes = append(c.Routes, Route{Prefix: "/h2/", Upstream: &u, Auth: AuthNone})
		tr := h2up.Client().Transport.(*http.Transport).Clone()
		tr.ForceAttemptHTTP2 = true
		d.Transport = &routeTransport{h2: tr, h1: NewTransport(0), h2Host: u.Host}
	})
	e.upstream.respond = trailerUpstream
	h2 := httptest.NewUnstartedServer(e.gw)
	h2.EnableHTTP2 = true
	h2.StartTLS()
	t.Cleanup(h2.Close)
	tests := []struct {
		name   string
		url    string
		client *http.Client
		proto  int
	}{
		{"HTTP/1.1 upstream, HTTP/1.1 client", e.srv.URL + "/public/x", e.srv.Client(), 1},
		{"HTTP/1.1 upstream, HTTP/2 client", h2.URL + "/public/x", h2.Client(), 2},
		{"HTTP/2 upstream, HTTP/1.1 client", e.srv.URL + "/h2/x", e.srv.Client(), 1},
		{"HTTP/2 upstream, HTTP/2 client", h2.URL + "/h2/x", h2.Client(), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := tt.client.Get(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if res.ProtoMajor != tt.proto {
				t.Fatalf("protocol = %s, want major %d", res.Proto, tt.proto)
			}
			var announced []string
			for k := range res.Trailer {
				announced = append(announced, k)
			}
			if body := readBody(t, res); body != "part one,part two" {
				t.Errorf("body = %q, want it whole", body)
			}
			for _, k := range announced {
				// Set-Cookie may stay announced: the name says nothing, and
				// an upstream's own cookies may follow.
				if isIdentityHeader(k, "x-auth-") || k == HeaderRequestID {
					t.Errorf("Trailer announces %s (announced: %v)", k, announced)
				}
			}
			for k, v := range res.Trailer {
				if isIdentityHeader(k, "x-auth-") || k == HeaderRequestID {
					t.Errorf("trailer %s: %q reached the client", k, v)
				}
				for _, c := range v {
					if strings.Contains(c, "forged") {
						t.Errorf("trailer %s: %q reached the client", k, c)
					}
				}
			}
			for _, k := range []string{"X-Checksum", "X-Late"} {
				if got := res.Trailer.Get(k); got != "kept" {
					t.Errorf("trailer %s = %q, want kept", k, got)
				}
			}
			if got := res.Header.Values(HeaderRequestID); len(got) != 1 || got[0] == "upstream-id" {
				t.Errorf("X-Request-Id = %q, want the gateway's, once", got)
			}
		})
	}
}

// routeTransport sends requests for h2Host through h2 (a transport that
// trusts that upstream's test certificate), the others through h1.
type routeTransport struct {
	h1, h2 http.RoundTripper
	h2Host string
}

func (rt *routeTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host == rt.h2Host {
		res, err := rt.h2.RoundTrip(r)
		if err == nil && res.ProtoMajor != 2 {
			res.Body.Close()
			return nil, fmt.Errorf("upstream answered %s, want HTTP/2", res.Proto)
		}
		return res, err
	}
	return rt.h1.RoundTrip(r)
}

// TestSpelledTokenCookieNeverReachesAnUpstream: with forward_token false,
// the token cookie is removed under every spelling that a common backend
// would read as its name, and only it.
func TestSpelledTokenCookieNeverReachesAnUpstream(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Deps) { c.Delivery = DeliveryBoth })
	tok, _ := e.session("alice")
	tests := []struct{ name, cookie string }{
		{"space before =", "__Host-gateway =MARK"},
		{"tab before =", "__Host-gateway\t=MARK"},
		{"spaces around", "a=1;   __Host-gateway  =  MARK  ;b=2"},
		{"lower case (ASP.NET Core)", "__host-gateway=MARK"},
		{"upper case", "__HOST-GATEWAY=MARK"},
		{"percent-encoded (PHP, Rack, ASP.NET Core)", "%5F%5FHost%2Dgateway=MARK"},
		{"encoded space before =", "__Host-gateway%20=MARK"},
		{"dots for underscores (PHP, CVE-2022-31629)", "..Host-gateway=MARK"},
		{"space for underscore (PHP)", "_ Host-gateway=MARK"},
		{"plus for underscore (PHP)", "_+Host-gateway=MARK"},
		{"encoded dot for underscore (PHP)", "_%2EHost-gateway=MARK"},
		{"PHP array", "__Host-gateway[x]=MARK"},
		{"comma-separated (RFC 2109 parsers)", "a=1,__Host-gateway=MARK"},
		{"quoted", `__Host-gateway="MARK"`},
		{"no value", "__Host-gateway"},
		{"non-breaking space (Python, Node)", "\xa0__Host-gateway\xa0=MARK"},
		{"long s (.NET OrdinalIgnoreCase)", "__Ho%C5%BFt-gateway=MARK"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{"Cookie": {"keep=1; " + tt.cookie}}
			res := e.do("GET", "/public/x", h, "")
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, want 200", res.StatusCode)
			}
			got := e.upstream.last(t).Header.Values("Cookie")
			if strings.Contains(strings.Join(got, ";"), "MARK") || strings.Contains(strings.ToLower(strings.Join(got, ";")), "host") {
				t.Errorf("Cookie %q reached the upstream as %q", tt.cookie, got)
			}
			if !strings.Contains(strings.Join(got, ";"), "keep=1") {
				t.Errorf("upstream Cookie = %q, want keep=1 kept", got)
			}
			// The real cookie beside it, on a protected route, with a
			// bearer token: every spelling conflicts with the real cookie,
			// and the request never reaches the upstream.
			h = bearer(tok)
			h.Set("Cookie", "keep=1; __Host-gateway="+tok+"; "+tt.cookie)
			before := len(e.upstream.requests())
			res = e.do("GET", "/api/y", h, "")
			if res.StatusCode != http.StatusBadRequest {
				t.Fatalf("beside the real cookie: status = %d, want 400", res.StatusCode)
			}
			if got, want := errorOf(t, res).Description, "conflicting token cookies"; got != want {
				t.Errorf("beside the real cookie: error_description = %q, want %q", got, want)
			}
			if n := len(e.upstream.requests()); n != before {
				t.Errorf("beside the real cookie: %d requests reached the upstream, want none", n-before)
			}
		})
	}
	// Cookies that only look alike are kept.
	for _, c := range []string{"__Host-gateway2=v", "x__Host-gateway=v", "__Host-gatewa=v", "gateway=v", "__Host-gateway-x=v"} {
		before := len(e.upstream.requests())
		if res := e.do("GET", "/public/x", http.Header{"Cookie": {c}}, ""); res.StatusCode != http.StatusOK || len(e.upstream.requests()) != before+1 {
			t.Fatalf("Cookie %q: status = %d, want 200 and one request upstream", c, res.StatusCode)
		}
		if got := e.upstream.last(t).Header.Get("Cookie"); got != c {
			t.Errorf("upstream Cookie = %q, want %q kept", got, c)
		}
	}
}

// TestSpelledTokenCookieConflicts: a token cookie spelled as a backend
// would still read it counts in the "conflicting token cookies" and "bearer
// token and cookie token differ" rules.
func TestSpelledTokenCookieConflicts(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Deps) { c.Delivery = DeliveryBoth })
	tok, _ := e.session("alice")
	other, _ := e.session("bob")
	tests := []struct {
		name   string
		h      http.Header
		want   int
		reason string
	}{
		{"bearer and spelled cookie", http.Header{"Authorization": {"Bearer " + tok}, "Cookie": {"__Host-gateway =" + other}}, 400, "bearer token and cookie token differ"},
		{"bearer and lower-case cookie", http.Header{"Authorization": {"Bearer " + tok}, "Cookie": {"__host-gateway=" + other}}, 400, "bearer token and cookie token differ"},
		{"cookie and spelled cookie", http.Header{"Cookie": {"__Host-gateway=" + tok + "; __Host-gateway =" + other}}, 400, "conflicting token cookies"},
		{"cookie and encoded cookie", http.Header{"Cookie": {"__Host-gateway=" + tok + "; %5F%5FHost-gateway=" + other}}, 400, "conflicting token cookies"},
		{"cookie and comma cookie", http.Header{"Cookie": {"__Host-gateway=" + tok + "; a=1,__Host-gateway=" + other}}, 400, "conflicting token cookies"},
		{"two header lines", http.Header{"Cookie": {"__Host-gateway=" + tok, "__HOST-gateway=" + other}}, 400, "conflicting token cookies"},
		{"spaced cookie alone", http.Header{"Cookie": {"__Host-gateway =" + tok}}, 200, ""},
		{"bearer and same spaced cookie", http.Header{"Authorization": {"Bearer " + tok}, "Cookie": {" __Host-gateway = " + tok}}, 200, ""},
		// Spelled otherwise, a cookie never authenticates (a sibling site
		// can set "%5F%5FHost-gateway"); beside a bearer it is ambiguous.
		{"encoded cookie alone", http.Header{"Cookie": {"%5F%5FHost-gateway=" + tok}}, 401, "token missing"},
		{"lower-case cookie alone", http.Header{"Cookie": {"__host-gateway=" + tok}}, 401, "token missing"},
		{"comma cookie alone", http.Header{"Cookie": {"a=1, __Host-gateway=" + tok}}, 401, "token missing"},
		{"bearer and same encoded cookie", http.Header{"Authorization": {"Bearer " + tok}, "Cookie": {"%5F%5FHost-gateway=" + tok}}, 400, "bearer token and cookie token differ"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.do("GET", "/api/x", tt.h, "")
			if res.StatusCode != tt.want {
				t.Fatalf("status = %d, want %d", res.StatusCode, tt.want)
			}
			if tt.reason != "" {
				if got := errorOf(t, res).Description; got != tt.reason {
					t.Errorf("error_description = %q, want %q", got, tt.reason)
				}
			}
		})
	}
}

// TestUpstreamCannotSetASpelledTokenCookie: an upstream's Set-Cookie for a
// name the browser keeps apart but the gateway reads as its token cookie is
// dropped too.
func TestUpstreamCannotSetASpelledTokenCookie(t *testing.T) {
	e := newEnv(t, nil)
	e.upstream.respond = func(w http.ResponseWriter, r *http.Request) {
		for _, c := range []string{"__host-gateway=forged; Path=/", " __Host-gateway =forged", "__Host-gateway", "app=1; Path=/"} {
			w.Header().Add("Set-Cookie", c)
		}
	}
	res := e.do("GET", "/public/x", http.Header{}, "")
	if got := res.Header.Values("Set-Cookie"); len(got) != 1 || !strings.HasPrefix(got[0], "app=1") {
		t.Errorf("Set-Cookie = %q, want only app=1", got)
	}
}

// TestFurtherDecodingCannotChangeTheRoute: a path that routes one way
// decoded once and another way decoded again (a backend that decodes twice)
// is refused, as are those that decode again into the gateway's own
// endpoints; encodings that keep the route pass.
func TestFurtherDecodingCannotChangeTheRoute(t *testing.T) {
	for _, allowSlash := range []bool{false, true} {
		e := newEnv(t, func(c *Config, _ *Deps) {
			c.AllowEncodedSlash = allowSlash
			c.Routes = append(c.Routes, Route{Prefix: "/", Upstream: c.Routes[0].Upstream, Auth: AuthNone})
		})
		tests := []struct {
			target string
			want   int
		}{
			{"/%2561pi/x", 400},
			{"/%252561pi/x", 400},
			{"/public/x/%2561", 200},
			{"/%2561dmin-api/x", 400},
			{"/api/%2561dmin", 401}, // same route however decoded: its own auth answers
			{"/%2561uth/refresh", 400},
			{"/%2561uth/logout", 400},
			{"/.well-known/jwks%252ejson", 400},
			{"/x%2561pi/x", 200},
			{"/%61pi/x", 401}, // decoded once, routed as the upstream reads it
		}
		if allowSlash {
			tests = append(tests,
				struct {
					target string
					want   int
				}{"/api%2Fx", 400},
				struct {
					target string
					want   int
				}{"/public/a%2Fb", 200},
			)
		}
		for _, tt := range tests {
			before := len(e.upstream.requests())
			_ = before
			res := e.do("GET", tt.target, http.Header{}, "")
			if res.StatusCode != tt.want {
				t.Errorf("allow_encoded_slash=%v: GET %s: status = %d, want %d", allowSlash, tt.target, res.StatusCode, tt.want)
			}
			if reached := len(e.upstream.requests()) > before; reached != (tt.want == 200) {
				t.Errorf("allow_encoded_slash=%v: GET %s: reached the upstream = %v", allowSlash, tt.target, reached)
			}
		}
	}
}

// TestInformationalAnswersAreCleaned: an upstream's 103 Early Hints reach the
// client (their Link header is what they are for) without the upstream's
// identity headers or the gateway's token cookie, which ReverseProxy would
// otherwise copy past ModifyResponse; and the final answer still carries the
// gateway's X-Request-Id, which ReverseProxy clears with the 1xx's headers.
func TestInformationalAnswersAreCleaned(t *testing.T) {
	e := newEnv(t, nil)
	e.upstream.respond = func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Link", "</app.css>; rel=preload; as=style")
		h.Set("X-Auth-Subject", "root")
		h.Set("X-Request-Id", "upstream-chosen")
		h.Add("Set-Cookie", "__Host-gateway=planted; Path=/; Secure")
		h.Add("Set-Cookie", "theme=dark")
		w.WriteHeader(http.StatusEarlyHints)
		clear(h)
		w.Write([]byte("ok"))
	}
	var hints []textproto.MIMEHeader
	ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			if code == http.StatusEarlyHints {
				hints = append(hints, h)
			}
			return nil
		},
	})
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/public/x", nil)
	req.Header.Set("X-Request-Id", "client-request-1")
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if len(hints) != 1 {
		t.Fatalf("103 answers = %d, want 1", len(hints))
	}
	h := hints[0]
	if got := h.Get("Link"); got == "" {
		t.Errorf("103 lost its Link header: %v", h)
	}
	if got := h.Values("X-Auth-Subject"); len(got) != 0 {
		t.Errorf("103 X-Auth-Subject = %q, want none", got)
	}
	if got := h.Values("X-Request-Id"); len(got) != 1 || got[0] != "client-request-1" {
		t.Errorf("103 X-Request-Id = %q, want only the gateway's", got)
	}
	for _, c := range h.Values("Set-Cookie") {
		if strings.HasPrefix(c, "__Host-gateway") {
			t.Errorf("103 set the token cookie: %q", c)
		}
	}
	if got := res.Header.Get("X-Request-Id"); got != "client-request-1" {
		t.Errorf("final X-Request-Id = %q, want the gateway's %q", got, "client-request-1")
	}
}
