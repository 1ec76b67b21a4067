package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"testing"

	"github.com/spa-gateway/gateway/auth"
)

// The micro-benchmarks of the per-request path. CI runs them once
// (-benchtime=1x) to keep them working; docs/PERFORMANCE.md has figures.

func BenchmarkCheckPath(b *testing.B) {
	tests := []struct{ name, path string }{
		{"plain", "/api/v1/users/42/orders"},
		{"encoded", "/api/v1/users/J%C3%BCrgen/orders"},
		{"encoded slash allowed", "/api/v1/files/a%2Fb"},
		{"refused dot segment", "/api/v1/%2e%2e/admin"},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				checkPath(tt.path, true)
			}
		})
	}
}

func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{4, 32} {
		b.Run(strconv.Itoa(n)+" routes", func(b *testing.B) {
			up := &url.URL{Scheme: "http", Host: "127.0.0.1:9"}
			var rs []*route
			for i := range n {
				rs = append(rs, &route{Route: Route{Prefix: "/svc" + strconv.Itoa(i) + "/", Upstream: up}})
			}
			rs = append(rs, &route{Route: Route{Prefix: "/", Upstream: up}})
			sortRoutes(rs)
			b.ReportAllocs()
			for b.Loop() {
				if match(rs, "/svc"+strconv.Itoa(n/2)+"/users/42") == nil {
					b.Fatal("no match")
				}
			}
		})
	}
}

func BenchmarkExtractToken(b *testing.B) {
	const tok = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
	tests := []struct {
		name     string
		delivery Delivery
		header   http.Header
	}{
		{"bearer", DeliveryBearer, http.Header{"Authorization": {"Bearer " + tok}}},
		{"cookie", DeliveryBoth, http.Header{"Cookie": {"theme=dark; __Host-gateway=" + tok + "; lang=en"}}},
		{"bearer and cookie", DeliveryBoth, http.Header{"Authorization": {"Bearer " + tok}, "Cookie": {"__Host-gateway=" + tok}}},
		{"dpop", DeliveryBearer, http.Header{"Authorization": {"DPoP " + tok}}},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			g := &Gateway{cfg: Config{Delivery: tt.delivery, CookieName: "__Host-gateway"}}
			r := &http.Request{Header: tt.header}
			b.ReportAllocs()
			for b.Loop() {
				if raw, _, _, bad := g.extractToken(r); raw != tok || bad != "" {
					b.Fatalf("extractToken = %q, %q", raw, bad)
				}
			}
		})
	}
}

// benchEnv is a gateway whose verifier caches tokens, as serve configures
// it, in front of a plain upstream, and a token of a live session.
func benchEnv(b *testing.B, everyRequest bool) (*env, string) {
	b.Helper()
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	}))
	b.Cleanup(plain.Close)
	up, err := url.Parse(plain.URL)
	if err != nil {
		b.Fatal(err)
	}
	e := newEnv(b, func(c *Config, d *Deps) {
		if everyRequest {
			c.Revocation = RevocationEveryRequest
		}
		for i := range c.Routes {
			c.Routes[i].Upstream = up
		}
		v, err := auth.NewVerifier(auth.VerifierConfig{Keys: d.Keys, Algorithm: auth.EdDSA, Issuer: "gateway",
			Audience: "api", Now: d.Now, CacheSize: 100})
		if err != nil {
			b.Fatal(err)
		}
		d.Verifier = v
	})
	tok, _ := e.session("alice", "user")
	return e, tok
}

var revocations = []struct {
	name         string
	everyRequest bool
}{{"refresh", false}, {"every_request", true}}

// BenchmarkAuthorize is the token check of a proxied request: the
// Authorization header read, a verify cache hit, and under every_request
// the store read.
func BenchmarkAuthorize(b *testing.B) {
	for _, rv := range revocations {
		b.Run(rv.name, func(b *testing.B) {
			e, tok := benchEnv(b, rv.everyRequest)
			r := httptest.NewRequest("GET", "/api/x", nil)
			r.Header.Set("Authorization", "Bearer "+tok)
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				if _, _, _, err := e.gw.authorize(w, r, false); err != nil {
					b.Fatalf("authorize refused: %v", err)
				}
			}
		})
	}
}

// BenchmarkRewrite is the header work of a proxied request: identity
// headers stripped, forwarding headers set, the token removed, the claims
// injected, on a copy of the request as ReverseProxy makes it.
func BenchmarkRewrite(b *testing.B) {
	e, tok := benchEnv(b, false)
	vt, err := e.gw.deps.Verifier.Verify(tok)
	if err != nil {
		b.Fatal(err)
	}
	in := httptest.NewRequest("GET", "http://gateway.example/api/users/42?page=2", nil)
	in.RemoteAddr = "192.0.2.7:41000"
	in.Header = http.Header{
		"Accept":          {"application/json"},
		"Accept-Encoding": {"gzip, br"},
		"Accept-Language": {"en-GB,en;q=0.9"},
		"Authorization":   {"Bearer " + tok},
		"Cookie":          {"theme=dark; lang=en"},
		"User-Agent":      {"Mozilla/5.0 (X11; Linux x86_64)"},
		"X-Auth-Subject":  {"spoofed"},
	}
	fw := &forward{route: match(e.gw.table, "/api/users/42"), token: vt, scheme: schemeBearer}
	in = in.WithContext(context.WithValue(in.Context(), forwardKey{}, fw))
	b.ReportAllocs()
	for b.Loop() {
		pr := &httputil.ProxyRequest{In: in, Out: in.Clone(in.Context())}
		e.gw.rewrite(pr)
		if pr.Out.Header.Get("X-Auth-Subject") != "alice" {
			b.Fatalf("X-Auth-Subject = %q", pr.Out.Header.Get("X-Auth-Subject"))
		}
	}
}

// BenchmarkServeHTTP is a whole proxied request over loopback: client,
// gateway and upstream in this process, so allocs/op counts all three.
func BenchmarkServeHTTP(b *testing.B) {
	for _, rv := range revocations {
		b.Run(rv.name, func(b *testing.B) {
			e, tok := benchEnv(b, rv.everyRequest)
			client := e.srv.Client()
			req, err := http.NewRequest("GET", e.srv.URL+"/api/users/42", nil)
			if err != nil {
				b.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			b.ReportAllocs()
			for b.Loop() {
				res, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					b.Fatalf("status %d", res.StatusCode)
				}
			}
		})
	}
}
