// Package upstreamtest holds the backends that tests put behind the
// gateway; for now one, a WebSocket echo. Each runs on httptest, on a free
// loopback port, until the test ends.
//
// It imports nothing of the gateway's, so that proxy's own tests can use
// it as well as the adversarial suite and the cmd/gateway tests.
package upstreamtest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
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
