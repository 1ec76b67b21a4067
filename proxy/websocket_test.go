package proxy

import (
	"net/http"
	"testing"

	"github.com/spa-gateway/gateway/proxy/upstreamtest"
)

// upgrade sends a WebSocket handshake for path (with tok as a bearer token
// unless empty) on a new connection to addr and reads the answer.
func upgrade(t testing.TB, addr, path, tok string) *upstreamtest.WebSocket {
	t.Helper()
	var lines []string
	if tok != "" {
		lines = append(lines, "Authorization: Bearer "+tok)
	}
	return upstreamtest.DialWebSocket(t, addr, path, lines...)
}

// openTunnel upgrades, requiring 101 and an echo.
func openTunnel(t testing.TB, addr, path, tok string) *upstreamtest.WebSocket {
	t.Helper()
	ws := upgrade(t, addr, path, tok)
	if ws.Response.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade %s: status = %d, want 101", path, ws.Response.StatusCode)
	}
	ws.Echoes()
	return ws
}

// TestWebSocketAfterAuth upgrades through the gateway on a route that allows
// it, and checks the upgrade needs a valid token first.
func TestWebSocketAfterAuth(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Deps) {
		c.Routes = append(c.Routes, Route{Prefix: "/ws/", Upstream: c.Routes[0].Upstream, Auth: AuthRequired, WebSocket: true})
	})
	e.upstream.respond = upstreamtest.WebSocketEcho
	addr := e.srv.Listener.Addr().String()

	if c := upgrade(t, addr, "/ws/chat", ""); c.Response.StatusCode != http.StatusUnauthorized {
		t.Fatalf("upgrade without a token: status = %d, want 401", c.Response.StatusCode)
	}
	if n := len(e.upstream.requests()); n != 0 {
		t.Fatalf("upstream called %d times before auth, want 0", n)
	}

	tok, _ := e.session("alice")
	c := openTunnel(t, addr, "/ws/chat", tok)
	if got := c.Response.Header.Get("X-Subject"); got != "alice" {
		t.Errorf("upstream saw X-Auth-Subject %q, want alice", got)
	}
}
