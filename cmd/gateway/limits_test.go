package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestBinaryLimits proves the limit keys reach the running gateway: each
// limit answers its status instead of hanging.
func TestBinaryLimits(t *testing.T) {
	release := make(chan struct{})
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	held := make(chan struct{}, 10)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		held <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer up.Close()
	defer free()

	dir := t.TempDir()
	cfg := writeSetup(t, dir, `
[[route]]
prefix = "/held/"
upstream = "`+up.URL+`"
auth = "none"
max_in_flight = 1
`)
	// The extra keys of [server] and [login] go into their tables.
	patch(t, cfg, "[server]\n", "[server]\nmax_header_bytes = 4096\nread_header_timeout = \"300ms\"\n")
	patch(t, cfg, "[login]\n", "[login]\nmax_body_bytes = 1000\nbody_timeout = \"300ms\"\n")
	p := start(t, "serve", "--config", cfg)
	addr, _ := p.addrs(t)

	t.Run("header over max_header_bytes: 431", func(t *testing.T) {
		// net/http allows 4 KiB of slack over MaxHeaderBytes.
		if got := rawStatus(t, addr, "GET /api/x HTTP/1.1\r\nHost: x\r\nX-Pad: "+strings.Repeat("p", 12<<10)+"\r\n\r\n"); got != 431 {
			t.Errorf("status = %d, want 431", got)
		}
	})
	t.Run("login body over max_body_bytes: 413", func(t *testing.T) {
		if code, _ := post(t, "http://"+addr+"/auth/login", "", `{"username":"alice","password":"`+strings.Repeat("x", 2000)+`"}`); code != 413 {
			t.Errorf("status = %d, want 413", code)
		}
	})
	t.Run("login body slower than body_timeout: 408", func(t *testing.T) {
		if got := rawStatus(t, addr, "POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 45\r\n\r\n{"); got != 408 {
			t.Errorf("status = %d, want 408", got)
		}
	})
	t.Run("head slower than read_header_timeout: closed", func(t *testing.T) {
		if got := rawStatus(t, addr, "GET /api/x HTTP/1.1\r\nHost: x\r\n"); got != 0 {
			t.Errorf("status = %d, want the connection closed without an answer", got)
		}
	})
	t.Run("over max_in_flight: 503", func(t *testing.T) {
		first := make(chan int, 1)
		go func() { first <- rawStatus(t, addr, "GET /held/1 HTTP/1.1\r\nHost: x\r\n\r\n") }()
		select {
		case <-held:
		case <-time.After(10 * time.Second):
			t.Fatal("the first request never reached the upstream")
		}
		if got := rawStatus(t, addr, "GET /held/2 HTTP/1.1\r\nHost: x\r\n\r\n"); got != 503 {
			t.Errorf("second request: status = %d, want 503", got)
		}
		free()
		if got := <-first; got != 200 {
			t.Errorf("held request: status = %d, want 200", got)
		}
	})
}

// rawStatus writes req on a new connection and returns the answer's
// status, or 0 if the gateway closed the connection without one.
func rawStatus(t *testing.T, addr, req string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Error(err)
		return -1
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(c, req)
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Error("no answer and the connection stayed open")
			return -1
		}
		return 0
	}
	res.Body.Close()
	return res.StatusCode
}
