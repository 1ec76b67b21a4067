package proxy

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/auth/authtest"
)

// externalEnv is a gateway whose /ext/ route accepts the external issuer
// "idp" only, /mixed/ both it and the gateway, and /api/ the gateway
// alone; idp is a real JWKS server on 127.0.0.1.
func externalEnv(t testing.TB, edit func(*Config, *Deps)) (*env, *authtest.Issuer) {
	t.Helper()
	idp := authtest.NewIssuer(t)
	idp.AddKey(t, "k1", "ES256")
	e := newEnv(t, func(c *Config, d *Deps) {
		ev, err := auth.NewExternalVerifier(auth.ExternalConfig{
			Name: "idp", Issuer: idp.URL(), JWKSURL: idp.JWKSURL(), Audience: "api",
			Algorithms: []string{"ES256"}, RolesClaim: "scope", Now: d.Now,
		})
		if err != nil {
			t.Fatal(err)
		}
		d.External = map[string]*auth.ExternalVerifier{"idp": ev}
		up := c.Routes[0].Upstream
		c.Routes = append(c.Routes,
			Route{Prefix: "/ext/", Upstream: up, Auth: AuthRequired, Accept: []string{"idp"}},
			Route{Prefix: "/mixed/", Upstream: up, Auth: AuthRequired, Accept: []string{AcceptGateway, "idp"}},
			Route{Prefix: "/ext-admin/", Upstream: up, Auth: AuthRequired, Accept: []string{"idp"}, RequireRoles: []string{"admin"}},
		)
		if edit != nil {
			edit(c, d)
		}
	})
	return e, idp
}

func externalToken(t testing.TB, e *env, idp *authtest.Issuer) string {
	t.Helper()
	now := e.clock.Now().Unix()
	return idp.Sign(t, "k1", "", map[string]any{
		"iss": idp.URL(), "aud": "api", "sub": "svc-7", "exp": now + 300, "iat": now,
		"scope": "read write", "email": "svc@example.com",
	})
}

func TestExternalTokenRoutes(t *testing.T) {
	e, idp := externalEnv(t, nil)
	ext := externalToken(t, e, idp)
	own, _ := e.session("alice", "user")
	tests := []struct {
		path, tok string
		want      int
	}{
		{"/ext/x", ext, http.StatusOK},
		{"/mixed/x", ext, http.StatusOK},
		{"/mixed/x", own, http.StatusOK},
		{"/api/x", ext, http.StatusUnauthorized}, // accept = ["gateway"], the default
		{"/ext/x", own, http.StatusUnauthorized},
		{"/ext-admin/x", ext, http.StatusForbidden}, // roles from scope: read, write
	}
	for _, tt := range tests {
		res := e.do("GET", tt.path, bearer(tt.tok), "")
		res.Body.Close()
		if res.StatusCode != tt.want {
			t.Errorf("GET %s with the %s token = %d, want %d", tt.path, map[bool]string{true: "external", false: "gateway"}[tt.tok == ext], res.StatusCode, tt.want)
		}
	}
}

func TestExternalTokenHeaders(t *testing.T) {
	e, idp := externalEnv(t, nil)
	h := bearer(externalToken(t, e, idp))
	h.Set("X-Auth-Subject", "root")
	h.Set("X-Auth-Issuer", "spoofed")
	res := e.do("GET", "/ext/x", h, "")
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /ext/x = %d", res.StatusCode)
	}
	got := e.upstream.last(t).Header
	if got.Get("X-Auth-Subject") != "svc-7" || got.Get("X-Auth-Roles") != "read,write" || got.Get("X-Auth-Email") != "svc@example.com" {
		t.Errorf("upstream saw X-Auth-Subject %q, X-Auth-Roles %q, X-Auth-Email %q; want svc-7, read,write, svc@example.com",
			got.Get("X-Auth-Subject"), got.Get("X-Auth-Roles"), got.Get("X-Auth-Email"))
	}
	if v := got.Get("X-Auth-Issuer"); v != "" {
		t.Errorf("spoofed X-Auth-Issuer reached the upstream: %q", v)
	}
}

func TestExternalTokenNeverRefreshes(t *testing.T) {
	e, idp := externalEnv(t, func(c *Config, _ *Deps) { c.Revocation = RevocationEveryRequest })
	ext := externalToken(t, e, idp)
	for _, path := range []string{"/auth/refresh", "/auth/logout"} {
		res := e.do("POST", path, bearer(ext), "")
		body := errorOf(t, res)
		if res.StatusCode != http.StatusUnauthorized || body.Error != "invalid_token" {
			t.Errorf("POST %s with an external token = %d %q, want 401 invalid_token", path, res.StatusCode, body.Error)
		}
	}
	res := e.do("GET", "/auth/sessions", bearer(ext), "")
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /auth/sessions with an external token = %d, want 401", res.StatusCode)
	}
	// every_request has no session to check: the token passes.
	res = e.do("GET", "/ext/x", bearer(ext), "")
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("GET /ext/x under every_request = %d, want 200", res.StatusCode)
	}
}

func TestExternalKeysUnavailable(t *testing.T) {
	e, idp := externalEnv(t, nil)
	idp.SetDown(true)
	res := e.do("GET", "/ext/x", bearer(externalToken(t, e, idp)), "")
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("GET /ext/x, issuer never reached = %d, want 503", res.StatusCode)
	}
}

func TestNewRefusesUnknownAccept(t *testing.T) {
	e, _ := externalEnv(t, nil)
	cfg := e.cfg
	cfg.Routes = append(cfg.Routes[:0:0], Route{Prefix: "/x/", Upstream: cfg.Routes[0].Upstream, Accept: []string{"nope"}})
	if _, err := New(cfg, e.gw.deps); err == nil {
		t.Error("New with accept = [\"nope\"] = nil, want an error")
	}
}

// BenchmarkAuthorizeExternal compares an external token (its JWKS cached,
// its signature checked every time: external tokens are not cached) with
// a gateway token on a route that accepts both, and the gateway token on
// a route of its own tokens only.
func BenchmarkAuthorizeExternal(b *testing.B) {
	e, idp := externalEnv(b, func(c *Config, d *Deps) {
		v, err := auth.NewVerifier(auth.VerifierConfig{Keys: d.Keys, Algorithm: auth.EdDSA, Issuer: "gateway",
			Audience: "api", Now: d.Now, CacheSize: 100})
		if err != nil {
			b.Fatal(err)
		}
		d.Verifier = v
	})
	e.clock.Advance(time.Second)
	own, _ := e.session("alice", "user")
	ext := externalToken(b, e, idp)
	for _, tt := range []struct{ name, path, tok string }{
		{"gateway token, gateway route", "/api/x", own},
		{"gateway token, mixed route", "/mixed/x", own},
		{"external token, mixed route", "/mixed/x", ext},
	} {
		b.Run(tt.name, func(b *testing.B) {
			rt := match(e.gw.table, tt.path)
			r := httptest.NewRequest("GET", tt.path, nil)
			r.Header.Set("Authorization", "Bearer "+tt.tok)
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				if _, _, _, err := e.gw.authorizeWith(w, r, rt.issuers, false); err != nil {
					b.Fatalf("authorize refused: %v", err)
				}
			}
		})
	}
}

// TestVerifyExternalToken: forward-auth takes the original route's
// issuers, as a proxied request does: an external token passes for a
// route that accepts its issuer, with its identity, and not for one that
// takes the gateway's tokens only.
func TestVerifyExternalToken(t *testing.T) {
	e, idp := externalEnv(t, trustLoopback(t))
	ext := externalToken(t, e, idp)
	res := e.do("GET", "/auth/verify", described(bearer(ext), "GET", "/ext/x"), "")
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("X-Auth-Subject") != "svc-7" {
		t.Errorf("external token for /ext/: %d, subject %q; want 200 svc-7", res.StatusCode, res.Header.Get("X-Auth-Subject"))
	}
	res = e.do("GET", "/auth/verify", described(bearer(ext), "GET", "/api/x"), "")
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("external token for /api/ (gateway tokens only): %d, want 401", res.StatusCode)
	}
}
