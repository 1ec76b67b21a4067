package adversarial

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/proxy"
)

// TestHeaderLimit: request heads over server.max_header_bytes are answered
// 431 by net/http before any handler runs. net/http allows 4 KiB of slack
// over MaxHeaderBytes (its bufio buffer), so the tests stay clear of the
// boundary on both sides.
func TestHeaderLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		header func(e *env) []string
		status int
	}{
		{"24 KiB of headers pass", func(e *env) []string {
			return []string{bearer(valid(e)), "X-Pad: " + strings.Repeat("p", 24<<10)}
		}, http.StatusOK},
		{"40 KiB in one header", func(e *env) []string {
			return []string{bearer(valid(e)), "X-Pad: " + strings.Repeat("p", 40<<10)}
		}, http.StatusRequestHeaderFieldsTooLarge},
		{"40 KiB in a cookie", func(e *env) []string {
			return []string{bearer(valid(e)), "Cookie: a=" + strings.Repeat("p", 40<<10)}
		}, http.StatusRequestHeaderFieldsTooLarge},
		{"6000 small headers", func(e *env) []string {
			h := []string{bearer(valid(e))}
			for range 6000 {
				h = append(h, "X-A: b")
			}
			return h
		}, http.StatusRequestHeaderFieldsTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{})
			a := e.send(get("/api/x", tt.header(e)...))
			if a.status != tt.status {
				t.Fatalf("status = %d, want %d", a.status, tt.status)
			}
			if want := 0; tt.status != http.StatusOK && len(e.a.requests()) != want {
				t.Errorf("upstream received %d requests, want 0", len(e.a.requests()))
			}
		})
	}
}

// TestMaxInFlight: a route's max_in_flight bounds what is forwarded at
// once; one more is answered 503 with Retry-After at once, without waiting
// for a slot; requests refused before forwarding do not take one; and the
// slots come back when the upstream answers.
func TestMaxInFlight(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{config: func(c *proxy.Config) {
		for i := range c.Routes {
			c.Routes[i].MaxInFlight = 2
		}
	}})
	hold := make(chan struct{})
	e.a.mu.Lock()
	e.a.hold = hold
	e.a.mu.Unlock()
	tok := valid(e)

	var wg sync.WaitGroup
	statuses := make(chan int, 2)
	for range 2 {
		wg.Go(func() { statuses <- e.send(get("/api/slow", bearer(tok))).status })
	}
	if !settle(5*time.Second, func() bool { return len(e.a.requests()) == 2 }) {
		t.Fatalf("upstream holds %d requests, want 2", len(e.a.requests()))
	}
	// Unauthenticated requests are refused before they take a slot.
	if a := e.send(get("/api/x")); a.status != http.StatusUnauthorized {
		t.Errorf("no token while full: status = %d, want 401", a.status)
	}
	start := time.Now()
	a := e.send(get("/api/x", bearer(tok)))
	if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" {
		t.Errorf("third request: status = %d, Retry-After %q; want 503 with Retry-After", a.status, a.header.Get("Retry-After"))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("third request waited %v, want an immediate answer", d)
	}
	// The limit is per route: /other/ (upstream b) is not full.
	if a := e.send(get("/other/x", bearer(tok))); a.status != http.StatusOK {
		t.Errorf("other route while /api/ is full: status = %d, want 200", a.status)
	}
	close(hold)
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != http.StatusOK {
			t.Errorf("held request: status = %d, want 200", s)
		}
	}
	if a := e.send(get("/api/x", bearer(tok))); a.status != http.StatusOK {
		t.Errorf("after the held requests ended: status = %d, want 200", a.status)
	}
	if n := len(e.a.requests()); n != 3 {
		t.Errorf("upstream a received %d requests, want 3", n)
	}
}

// waitClosed reads from conn until the server closes it, and returns what it
// sent and when it closed.
func waitClosed(t *testing.T, conn net.Conn, within time.Duration) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	conn.SetReadDeadline(start.Add(within))
	b, err := io.ReadAll(conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %v", within)
	}
	return string(b), time.Since(start)
}

// TestSlowLoris: a client that never finishes its request head is cut at
// server.read_header_timeout, counted from the first byte, however it
// trickles. net/http closes such a connection without an answer: it treats
// the read timeout as a network error (server.go, isCommonNetReadError),
// so no 408 can be sent from a handler, which never runs. The connection
// and its goroutine are freed, which is what matters; nginx does the same
// (it logs 408 but sends nothing).
func TestSlowLoris(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	e := newEnv(t, envOptions{server: func(s *http.Server) { s.ReadHeaderTimeout = timeout }})
	tests := []struct {
		name  string
		write func(c net.Conn)
	}{
		{"half a request head, then nothing", func(c net.Conn) {
			io.WriteString(c, "GET /api/x HTTP/1.1\r\nHost: x\r\nX-A: b\r\n")
		}},
		{"a header byte every 50ms", func(c net.Conn) {
			io.WriteString(c, "GET /api/x HTTP/1.1\r\nHost: x\r\nX-A: ")
			for range 100 {
				if _, err := c.Write([]byte("b")); err != nil {
					return
				}
				time.Sleep(50 * time.Millisecond) // the attack itself, not a time rule
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			conn, err := net.Dial("tcp", e.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			go tt.write(conn)
			got, _ := waitClosed(t, conn, 10*time.Second)
			if d := time.Since(start); d < timeout/2 {
				t.Errorf("closed after %v, before read_header_timeout %v", d, timeout)
			}
			if got != "" {
				t.Errorf("the server answered %q, want the connection closed without an answer", got)
			}
		})
	}
	if n := len(e.a.requests()); n != 0 {
		t.Errorf("upstream received %d requests, want 0", n)
	}
}

// TestSlowLoginBody: a login body that does not arrive within
// login.body_timeout is answered 408 and the connection closed, even with
// server.read_timeout at its default (none).
func TestSlowLoginBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{config: func(c *proxy.Config) { c.AuthBodyTimeout = 300 * time.Millisecond }})
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 45\r\n\r\n{\"username\":")
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestTimeout {
		t.Errorf("status = %d, want 408", res.StatusCode)
	}
	if err := noSession(e); err != nil {
		t.Error(err)
	}
}

// TestIdleKeepAliveClosed: a keep-alive connection left idle is closed at
// server.idle_timeout.
func TestIdleKeepAliveClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{server: func(s *http.Server) { s.IdleTimeout = 300 * time.Millisecond }})
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	start := time.Now()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("idle connection: read = %v, want EOF (closed by the server)", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("closed after %v, before idle_timeout", d)
	}
}
