package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/proxy/upstreamtest"
)

// wsConn is the client side of an upgrade through the gateway.
type wsConn struct {
	t    testing.TB
	res  *http.Response
	conn net.Conn
	br   *bufio.Reader
}

// upgrade sends a WebSocket handshake for path (with tok as a bearer token
// unless empty) on a new connection to addr and reads the answer.
func upgrade(t testing.TB, addr, path, tok string) *wsConn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET " + path + " HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	if tok != "" {
		req += "Authorization: Bearer " + tok + "\r\n"
	}
	io.WriteString(conn, req+"\r\n")
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	return &wsConn{t: t, res: res, conn: conn, br: br}
}

// open upgrades and fails the test unless the answer is 101.
func openTunnel(t testing.TB, addr, path, tok string) *wsConn {
	t.Helper()
	c := upgrade(t, addr, path, tok)
	if c.res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade %s: status = %d, want 101", path, c.res.StatusCode)
	}
	c.echoes()
	return c
}

// echoes checks that a line sent comes back through the tunnel.
func (c *wsConn) echoes() {
	c.t.Helper()
	c.conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c.conn, "ping\n")
	line, err := c.br.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ping" {
		c.t.Fatalf("echo through the upgraded connection = %q, %v; want ping", line, err)
	}
}

// closed checks that the gateway closes the tunnel within 5s: a read ends
// with EOF (or a reset), not with the deadline.
func (c *wsConn) closed(what string) {
	c.t.Helper()
	c.conn.SetDeadline(time.Now().Add(5 * time.Second))
	n, err := c.br.Read(make([]byte, 64))
	if err == nil {
		c.t.Fatalf("%s: the tunnel is still open (read %d bytes)", what, n)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.t.Fatalf("%s: the tunnel is still open after 5s", what)
	}
}

// TestWebSocketAfterAuth upgrades through the gateway on a route that allows
// it, and checks the upgrade needs a valid token first.
func TestWebSocketAfterAuth(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Deps) {
		c.Routes = append(c.Routes, Route{Prefix: "/ws/", Upstream: c.Routes[0].Upstream, Auth: AuthRequired, WebSocket: true})
	})
	e.upstream.respond = upstreamtest.WebSocketEcho
	addr := e.srv.Listener.Addr().String()

	if c := upgrade(t, addr, "/ws/chat", ""); c.res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("upgrade without a token: status = %d, want 401", c.res.StatusCode)
	}
	if n := len(e.upstream.requests()); n != 0 {
		t.Fatalf("upstream called %d times before auth, want 0", n)
	}

	tok, _ := e.session("alice")
	c := openTunnel(t, addr, "/ws/chat", tok)
	if got := c.res.Header.Get("X-Subject"); got != "alice" {
		t.Errorf("upstream saw X-Auth-Subject %q, want alice", got)
	}
}
