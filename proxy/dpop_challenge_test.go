package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/spa-gateway/gateway/auth/authtest"
	"github.com/spa-gateway/gateway/sessionstore"
)

// TestDPoPRequestChallenges: every refusal of a request that presented its
// token with the DPoP scheme is a DPoP challenge (RFC 9449 section 7.1),
// whichever check refused it: the session found revoked by a proxied
// request under every_request, by an upgrade, by the own sessions, and a
// role the token lacks.
func TestDPoPRequestChallenges(t *testing.T) {
	wsRoute := func(c *Config, _ *Deps) {
		c.Routes = append(c.Routes, Route{Prefix: "/ws/", Upstream: c.Routes[0].Upstream, Auth: AuthRequired, WebSocket: true})
	}
	tests := []struct {
		name         string
		everyRequest bool
		revoke       bool
		method, path string
		header       http.Header
		status       int
		code         string
	}{
		{name: "every_request, revoked", everyRequest: true, revoke: true, method: "GET", path: "/api/x",
			status: http.StatusUnauthorized, code: "invalid_token"},
		{name: "own sessions, revoked", revoke: true, method: "GET", path: "/auth/sessions",
			status: http.StatusUnauthorized, code: "invalid_token"},
		{name: "upgrade, revoked", revoke: true, method: "GET", path: "/ws/x",
			header: http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}, "Sec-Websocket-Version": {"13"},
				"Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}},
			status: http.StatusUnauthorized, code: "invalid_token"},
		{name: "role required", method: "GET", path: "/admin-api/x",
			status: http.StatusForbidden, code: "insufficient_scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newSessionEnv(t, func(c *Config, d *Deps) {
				wsRoute(c, d)
				if tt.everyRequest {
					c.Revocation = RevocationEveryRequest
				}
			})
			k := authtest.NewDPoPKey(t)
			tok := e.boundLogin(k)
			if tt.revoke {
				sid, _ := authtest.Claims(t, tok)["sid"].(string)
				if _, err := e.store.Revoke(t.Context(), sid, sessionstore.ReasonAdmin, e.clock.Now()); err != nil {
					t.Fatal(err)
				}
			}
			h := dpopAuth(tok)
			for k, v := range tt.header {
				h[k] = v
			}
			res := e.do(tt.method, tt.path, e.proofHeader(h, k, tt.method, tt.path, tok), "")
			chal := res.Header.Get("WWW-Authenticate")
			eb := errorOf(t, res)
			if res.StatusCode != tt.status || eb.Error != tt.code ||
				!strings.HasPrefix(chal, `DPoP error="`+tt.code+`"`) || !strings.Contains(chal, `algs="ES256 EdDSA Ed25519"`) {
				t.Errorf("%s %s: %d %q %+v, want %d with a DPoP %s challenge", tt.method, tt.path, res.StatusCode, chal, eb, tt.status, tt.code)
			}
		})
	}
}
