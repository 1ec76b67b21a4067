package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBinaryGracefulShutdown sends SIGTERM to the real binary while a slow
// upstream request is in flight: /readyz turns 503 at once, new requests
// are still served during server.drain_delay, then the main listener stops
// accepting while /readyz stays 503, the slow request finishes with 200, and
// the process exits 0.
func TestBinaryGracefulShutdown(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/slow" {
			close(arrived)
			<-release
		}
		io.WriteString(w, "slow done")
	}))
	defer slow.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()

	dir := t.TempDir()
	path := writeSetup(t, dir, "")
	patch(t, path, `upstream = "http://127.0.0.1:9"`, `upstream = "`+slow.URL+`"`)
	patch(t, path, "shutdown_timeout = \"5s\"\n", "shutdown_timeout = \"10s\"\ndrain_delay = \"1s\"\n")

	p := start(t, "serve", "--config", path)
	mainAddr, adminAddr := p.addrs(t)
	client := &http.Client{Timeout: 20 * time.Second}
	status := func(url string) int {
		res, err := client.Get(url)
		if err != nil {
			return 0
		}
		res.Body.Close()
		return res.StatusCode
	}
	if got := status("http://" + adminAddr + "/readyz"); got != 200 {
		t.Fatalf("/readyz before SIGTERM = %d, want 200", got)
	}
	res, err := client.Post("http://"+mainAddr+"/auth/login", "application/json", strings.NewReader(`{"username":"alice","password":"wonderland"}`))
	if err != nil {
		t.Fatal(err)
	}
	token := accessToken(t, res)

	type answer struct {
		code int
		body string
		err  error
	}
	slowDone := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://"+mainAddr+"/api/slow", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := client.Do(req)
		if err != nil {
			slowDone <- answer{err: err}
			return
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		slowDone <- answer{res.StatusCode, string(b), err}
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request did not reach the upstream")
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Readiness goes first ...
	deadline := time.Now().Add(5 * time.Second)
	for status("http://"+adminAddr+"/readyz") != http.StatusServiceUnavailable {
		if time.Now().After(deadline) {
			t.Fatal("/readyz did not turn 503 after SIGTERM")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// ... while the main listener still serves (the drain delay) ...
	if got := status("http://" + mainAddr + "/.well-known/jwks.json"); got != 200 {
		t.Errorf("main listener during the drain delay: status %d, want 200", got)
	}
	// ... then it stops accepting, with the slow request still in flight and
	// /readyz still 503.
	deadline = time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", mainAddr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the main listener still accepts 10s after SIGTERM")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case a := <-slowDone:
		t.Fatalf("the slow request ended before the upstream answered: %+v", a)
	default:
	}
	if got := status("http://" + adminAddr + "/readyz"); got != http.StatusServiceUnavailable {
		t.Errorf("/readyz while draining = %d, want 503", got)
	}

	close(release)
	select {
	case a := <-slowDone:
		if a.err != nil || a.code != 200 || a.body != "slow done" {
			t.Errorf("slow request: %d %q %v, want 200 \"slow done\"", a.code, a.body, a.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request did not finish")
	}
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Errorf("exit code = %d, want 0", code)
	}
	for _, msg := range []string{`"msg":"draining"`, `"msg":"shutting down"`, `"msg":"stopped"`} {
		if !strings.Contains(p.stderr.String(), msg) {
			t.Errorf("no %s log line:\n%s", msg, p.stderr.String())
		}
	}
}
