package adversarial

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/sessionstore"
	"github.com/spa-gateway/gateway/sessionstore/redisstore"
	"github.com/spa-gateway/gateway/sessionstore/redisstore/redistest"
)

// Attacks on the session store (issue 11, items 2 and 9).

// TestSessionFloodStaysCapped: an attacker holding one user's password
// logs in 150 times at once, to fill the store with that user's sessions.
// Every login succeeds, but no more than login.max_sessions_per_user stay
// live, and every session pushed out is counted as revoked for
// session_limit.
func TestSessionFloodStaysCapped(t *testing.T) {
	const (
		logins = 150
		limit  = 5
	)
	e := newEnv(t, envOptions{sessions: func(c *auth.SessionsConfig, _ *sessionstore.Store) { c.MaxSessionsPerUser = limit }})
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		status = map[int]int{}
	)
	for range logins {
		wg.Go(func() {
			a := sendTo(t, e.addr, post("/auth/login", loginJSON, "Content-Type: application/json"))
			mu.Lock()
			status[a.status]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if status[http.StatusOK] != logins {
		t.Fatalf("login answers = %v, want %d × 200", status, logins)
	}
	live, err := e.store.List(t.Context(), "alice", epoch)
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != limit {
		t.Fatalf("after %d logins with max_sessions_per_user = %d: %d live sessions, want %d", logins, limit, len(live), limit)
	}
	if n := testutil.ToFloat64(e.met.SessionsRevoked.WithLabelValues(sessionstore.ReasonSessionLimit)); n != logins-limit {
		t.Fatalf(`gateway_sessions_revoked_total{reason="session_limit"} = %v, want %d`, n, logins-limit)
	}
}

// TestStalledRedisWriteNeverAppliesLater: Redis stalls (SIGSTOP) while a
// client refreshes and logs in; both get 503. When Redis resumes it runs
// the commands queued on its connections: none may apply. With no refresh
// grace, a rotation applied late would make the client's retry of its
// token "token reuse detected" and revoke the session (a forced logout,
// and a false theft alarm); a login applied late would leave a session
// nobody holds a token of.
func TestStalledRedisWriteNeverAppliesLater(t *testing.T) {
	srv := redistest.Start(t)
	st, err := redisstore.Open(t.Context(), srv.URL(0), &redisstore.Options{WriteTimeout: 300 * time.Millisecond, ReplyMargin: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := newEnv(t, envOptions{
		sessions: func(c *auth.SessionsConfig, s *sessionstore.Store) {
			c.RefreshGrace, c.StoreTimeout = 0, 300*time.Millisecond
			*s = st
		},
	})
	tok, sess := e.token(true)
	if err := st.Create(t.Context(), sess); err != nil {
		t.Fatal(err)
	}

	srv.Pause(t)
	refresh := e.send(post("/auth/refresh", "", bearer(tok)))
	login := e.send(post("/auth/login", loginJSON, "Content-Type: application/json"))
	srv.Resume(t)
	if refresh.status != http.StatusServiceUnavailable || login.status != http.StatusServiceUnavailable {
		t.Fatalf("refresh, login with Redis stalled = %d, %d; want 503, 503", refresh.status, login.status)
	}
	// Redis has run what was queued once it answers a new connection.
	if got := srv.Do(t, "PING"); got != "+PONG" {
		t.Fatalf("PING after SIGCONT = %q", got)
	}

	again := e.send(post("/auth/refresh", "", bearer(tok)))
	if again.status != http.StatusOK {
		t.Fatalf("retry of the refresh after the stall = %d %s, want 200: the refused rotation applied later", again.status, again.body)
	}
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal([]byte(again.body), &body); err != nil || body.AccessToken == "" {
		t.Fatalf("retry body %q: %v", again.body, err)
	}
	if a := e.send(get("/api/x", bearer(body.AccessToken))); a.status != http.StatusOK {
		t.Errorf("the successor on /api/: %d, want 200", a.status)
	}
	live, err := st.List(t.Context(), "alice", epoch)
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != 1 || live[0].ID != sess.ID {
		ids := make([]string, len(live))
		for i, s := range live {
			ids[i] = s.ID
		}
		t.Fatalf("alice's live sessions after the stall = %s, want only %s: the login that answered 503 left one", fmt.Sprint(ids), sess.ID)
	}
}
