package adversarial

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/proxy"
)

// faultServer is an upstream written on raw TCP, so that it can fail the
// ways a real backend does: reset, close, stall, answer garbage. handle
// runs after the request head is read; the connection is closed when it
// returns. A handler that waits returns when the gateway closes its side.
func faultServer(t *testing.T, handle func(c *net.TCPConn)) *url.URL {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	return &url.URL{Scheme: "http", Host: ln.Addr().String()}
}

// untilClosed blocks until the peer closes the connection.
func untilClosed(c *net.TCPConn) { io.Copy(io.Discard, c) }

// TestUpstreamFaults: every way an upstream can fail gives 502, or 504 past
// the route's timeout, or, once the upstream has started its answer, a
// client that never gets a complete one (a cut body, or no answer at all
// while the gateway still buffers it); and none of them leaves a goroutine
// behind once the connections are gone. Not parallel: it counts the
// process's goroutines.
func TestUpstreamFaults(t *testing.T) {
	closedPort := func(t *testing.T) *url.URL {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		u := &url.URL{Scheme: "http", Host: ln.Addr().String()}
		ln.Close()
		return u
	}
	tests := []struct {
		name     string
		upstream func(t *testing.T) *url.URL
		// status is the answer; 0 means none may be complete: a 200 with
		// a cut body, or no answer (see proxy's FlushInterval).
		status int
	}{
		{"connection refused", closedPort, http.StatusBadGateway},
		{"reset before answering", func(t *testing.T) *url.URL {
			return faultServer(t, func(c *net.TCPConn) { c.SetLinger(0) })
		}, http.StatusBadGateway},
		{"closed before answering", func(t *testing.T) *url.URL {
			return faultServer(t, func(c *net.TCPConn) {})
		}, http.StatusBadGateway},
		{"garbage instead of HTTP", func(t *testing.T) *url.URL {
			return faultServer(t, func(c *net.TCPConn) { io.WriteString(c, "SSH-2.0-OpenSSH_9.6\r\n\r\n") })
		}, http.StatusBadGateway},
		{"no answer within the route timeout", func(t *testing.T) *url.URL {
			return faultServer(t, untilClosed)
		}, http.StatusGatewayTimeout},
		{"headers within the timeout, then silence", func(t *testing.T) *url.URL {
			return faultServer(t, func(c *net.TCPConn) {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nfirst bytes")
				untilClosed(c)
			})
		}, 0},
		{"reset in the middle of the body", func(t *testing.T) *url.URL {
			return faultServer(t, func(c *net.TCPConn) {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nfirst bytes")
				c.SetLinger(0)
			})
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := tt.upstream(t)
			e := newEnv(t, envOptions{config: func(c *proxy.Config) {
				c.Routes = append(c.Routes, proxy.Route{Prefix: "/fault/", Upstream: up, Auth: proxy.AuthNone, Timeout: 300 * time.Millisecond})
			}})
			before := settledGoroutines()
			for range 2 {
				status, complete := e.fetch(t, "/fault/x", time.Second)
				switch {
				case tt.status != 0 && (status != tt.status || !complete):
					t.Errorf("status = %d (complete %v), want %d", status, complete, tt.status)
				case tt.status == 0 && ((status != 0 && status != http.StatusOK) || complete):
					t.Errorf("status = %d (complete %v), want no complete answer", status, complete)
				}
			}
			if !settle(10*time.Second, func() bool { return runtime.NumGoroutine() <= before }) {
				buf := make([]byte, 1<<20)
				t.Errorf("goroutines: %d after the faults, %d before:\n%s", runtime.NumGoroutine(), before,
					bytes.TrimSpace(buf[:runtime.Stack(buf, true)]))
			}
		})
	}
}

// fetch GETs path on a fresh connection and, as a client would, gives up
// after within; status 0 means no answer came. complete reports whether the
// whole body arrived.
func (e *env) fetch(t *testing.T, path string, within time.Duration) (status int, complete bool) {
	t.Helper()
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
	conn.SetReadDeadline(time.Now().Add(within))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, false
	}
	_, err = io.Copy(io.Discard, res.Body)
	return res.StatusCode, err == nil
}

// settledGoroutines is the goroutine count once it stops falling.
func settledGoroutines() int {
	n := runtime.NumGoroutine()
	for range 50 {
		time.Sleep(20 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m >= n {
			return m
		}
		n = m
	}
	return n
}
