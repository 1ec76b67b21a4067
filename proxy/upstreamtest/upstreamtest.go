// Package upstreamtest holds the backends that tests put behind the
// gateway; for now one, a WebSocket echo. Each runs on httptest, on a free
// loopback port, until the test ends. DialWebSocket is the client side: a
// handshake on a raw connection, through the gateway to the echo.
//
// It imports nothing of the gateway's, so that proxy's own tests can use
// it as well as the adversarial suite and the cmd/gateway tests.
package upstreamtest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// WebSocketEcho is a WebSocket backend: it switches protocols, naming the
// X-Auth-Subject it received in an X-Subject response header (empty for an
// anonymous upgrade), and then echoes every byte until either side closes.
// A request without "Upgrade: websocket" gets 200 "ok".
//
// It is a handler function, for a test that routes to it from an upstream
// of its own; StartWebSocketEcho serves it alone.
func WebSocketEcho(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") != "websocket" {
		io.WriteString(w, "ok")
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

// StartWebSocketEcho serves WebSocketEcho until the test ends and returns
// its base URL (http://127.0.0.1:port).
func StartWebSocketEcho(tb testing.TB) *url.URL {
	tb.Helper()
	srv := httptest.NewServer(http.HandlerFunc(WebSocketEcho))
	tb.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

// WebSocket is the client side of a WebSocket handshake, on a raw TCP
// connection that is closed when the test ends. Its methods fail the test
// they were dialled with; they are not safe for concurrent use.
type WebSocket struct {
	// Response is the answer to the handshake. Its body is not to be read:
	// after a 101 the connection is the tunnel's.
	Response *http.Response

	tb   testing.TB
	conn net.Conn
	br   *bufio.Reader
}

// DialWebSocket connects to addr (host:port), sends a WebSocket handshake
// for path with the extra header lines (such as "Authorization: Bearer
// x"), and reads the answer, whatever its status. A failure to connect or
// to read an answer within 10 seconds fails the test.
func DialWebSocket(tb testing.TB, addr, path string, lines ...string) *WebSocket {
	tb.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", path, addr)
	for _, l := range lines {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		tb.Fatal(err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		tb.Fatal(err)
	}
	return &WebSocket{Response: res, tb: tb, conn: conn, br: br}
}

// Echoes fails the test unless a line sent comes back within 10 seconds.
func (ws *WebSocket) Echoes() {
	ws.tb.Helper()
	ws.conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(ws.conn, "ping\n")
	if line, err := ws.br.ReadString('\n'); err != nil || line != "ping\n" {
		ws.tb.Fatalf("echo through the WebSocket = %q, %v; want ping", line, err)
	}
}

// ClosedWithin fails the test (naming what) unless the peer closes the
// connection within d: a read ends with EOF or a reset, not with the
// deadline, nor with data. It returns how long the close took.
func (ws *WebSocket) ClosedWithin(what string, d time.Duration) time.Duration {
	ws.tb.Helper()
	start := time.Now()
	ws.conn.SetDeadline(start.Add(d))
	n, err := ws.br.Read(make([]byte, 64))
	switch {
	case err == nil:
		ws.tb.Fatalf("%s: the WebSocket is still open (read %d bytes)", what, n)
	case errors.Is(err, os.ErrDeadlineExceeded):
		ws.tb.Fatalf("%s: the WebSocket is still open after %v", what, d)
	}
	return time.Since(start)
}

// Close closes the client's end of the connection, as a browser leaving
// the page does. The test's end closes it too.
func (ws *WebSocket) Close() error { return ws.conn.Close() }
