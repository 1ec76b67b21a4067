package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestWebSocketAfterAuth upgrades through the gateway on a route that allows
// it, and checks the upgrade needs a valid token first.
func TestWebSocketAfterAuth(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Deps) {
		c.Routes = append(c.Routes, Route{Prefix: "/ws/", Upstream: c.Routes[0].Upstream, Auth: AuthRequired, WebSocket: true})
	})
	e.upstream.respond = func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "no upgrade", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Subject: %s\r\n\r\n", r.Header.Get("X-Auth-Subject"))
		brw.Flush()
		io.Copy(conn, brw) // echo until the client closes
	}
	upgrade := func(tok string) (*http.Response, net.Conn, *bufio.Reader) {
		conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		req := "GET /ws/chat HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
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
		return res, conn, br
	}

	res, _, _ := upgrade("")
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("upgrade without a token: status = %d, want 401", res.StatusCode)
	}
	if n := len(e.upstream.requests()); n != 0 {
		t.Fatalf("upstream called %d times before auth, want 0", n)
	}

	tok, _ := e.session("alice")
	res, conn, br := upgrade(tok)
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade with a token: status = %d, want 101", res.StatusCode)
	}
	if got := res.Header.Get("X-Subject"); got != "alice" {
		t.Errorf("upstream saw X-Auth-Subject %q, want alice", got)
	}
	io.WriteString(conn, "ping\n")
	line, err := br.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ping" {
		t.Errorf("echo through the upgraded connection = %q, %v; want ping", line, err)
	}
}
