package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore/redisstore/redistest"
)

// stallWriteTimeout is store.write_timeout in TestBinaryRedisStall: short,
// so that the stall and the 503s take a second, not the default's seconds.
const stallWriteTimeout = "400ms"

// TestBinaryRedisStall pauses Redis (SIGSTOP) under the real binary during a
// refresh and a login (issue 11, item 2): both answer 503 within the write
// timeout plus the reply margin; once Redis resumes (SIGCONT), with no
// refresh grace, the same token refreshes with 200 (the refused rotation
// did not apply when Redis ran its queued commands), no reuse is detected,
// the successor works, and the login that answered 503 left no session.
func TestBinaryRedisStall(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	config := redisSetup(t, dir, srv.URL(0), "", okUpstream(t), "0s")
	patch(t, config, "sweep_interval = \"1s\"\n", "sweep_interval = \"1s\"\nwrite_timeout = \""+stallWriteTimeout+"\"\n")
	g := startGateway(t, config)
	tok := g.mustLogin()
	before := g.sessions()
	if len(before) != 1 {
		t.Fatalf("admin list after one login: %d sessions, want 1", len(before))
	}

	srv.Pause(t)
	paused := true
	defer func() {
		if paused {
			srv.Resume(t)
		}
	}()
	begin := time.Now()
	code, _, desc := g.refresh(tok)
	took := time.Since(begin)
	wantStatus(t, "refresh with Redis stalled", code, http.StatusServiceUnavailable)
	if took > 3*time.Second {
		t.Errorf("refresh with Redis stalled took %v, want about write_timeout (%s) plus the reply margin", took, stallWriteTimeout)
	}
	t.Logf("refresh during the stall: %d (%s) after %v", code, desc, took)
	if code, _ := g.login(); code != http.StatusServiceUnavailable {
		t.Errorf("login with Redis stalled: status %d, want 503", code)
	}
	// The gateway's requests sit unanswered in Redis; let it run them now.
	// With refresh_grace 0, had the stalled rotation applied, the same
	// token would be reuse at once: no wait past a grace is needed.
	srv.Resume(t)
	paused = false

	code, next, desc := g.refresh(tok)
	if code != http.StatusOK || next == "" {
		t.Fatalf("refresh of the same token after the stall: %d (%s), want 200: the 503 rotation applied later", code, desc)
	}
	wantStatus(t, "the successor on the protected route", g.api(next), http.StatusOK)
	g.mustRefresh(next)
	_, metrics := g.do("GET", g.admin+"/metrics", "", "")
	if n, _ := sample(metrics, `gateway_refreshes_total{result="success"}`); n < 2 {
		t.Errorf(`gateway_refreshes_total{result="success"} = %v, want at least 2`, n)
	}
	if n, _ := sample(metrics, `gateway_refreshes_total{result="reuse_detected"}`); n != 0 {
		t.Errorf(`gateway_refreshes_total{result="reuse_detected"} = %v, want 0`, n)
	}
	if after := g.sessions(); len(after) != 1 || after[0] != before[0] {
		t.Errorf("admin list after the stall = %q, want only %q: the login that answered 503 left a session", after, before)
	}
}
