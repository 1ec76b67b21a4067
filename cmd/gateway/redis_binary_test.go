package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/auth/authtest"
	"github.com/spa-gateway/gateway/sessionstore/redisstore/redistest"
)

// The tests in this file run the real binary against a real redis-server
// (see package redistest: skipped when it is not installed, failed under
// CI=true).

// redisAdminToken is the admin token of redisSetup's configuration.
const redisAdminToken = "redis-admin-token-0123456789"

// redisSetup writes writeSetup's files and configuration, changed for a
// Redis store at redisURL (with the password in passwordFile, if not
// empty), the route /api/ to upstream, an admin token, every_request
// revocation, tokens that may be refreshed at once, and the given refresh
// grace. It returns the configuration's path.
func redisSetup(t testing.TB, dir, redisURL, passwordFile, upstream, grace string) string {
	t.Helper()
	path := writeSetup(t, dir, "")
	if err := os.WriteFile(filepath.Join(dir, "admin-token"), []byte(redisAdminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	store := "[store]\nbackend = \"redis\"\nurl = " + strconv.Quote(redisURL) + "\nredis_connect_timeout = \"2s\"\nsweep_interval = \"1s\"\n"
	if passwordFile != "" {
		store += "redis_password_file = " + strconv.Quote(passwordFile) + "\n"
	}
	for _, r := range []struct{ old, new string }{
		{"[store]\npath = \"sessions.db\"\n", store},
		{"[admin]\nlisten = \"127.0.0.1:0\"\n", "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin-token\"\n"},
		{"key_file = \"signing.pem\"\n", "key_file = \"signing.pem\"\naccess_ttl = \"10s\"\nrefresh_before_expiry = \"9999ms\"\nrefresh_grace = " + strconv.Quote(grace) + "\nrevocation = \"every_request\"\n"},
		{"upstream = \"http://127.0.0.1:9\"\n", "upstream = " + strconv.Quote(upstream) + "\n"},
	} {
		if !bytes.Contains(cfg, []byte(r.old)) {
			t.Fatalf("writeSetup's configuration lacks %q: update redisSetup", r.old)
		}
		cfg = bytes.Replace(cfg, []byte(r.old), []byte(r.new), 1)
	}
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// gw is a client of one running gateway binary.
type gw struct {
	t           testing.TB
	p           *process
	base, admin string
	client      *http.Client
}

func startGateway(t testing.TB, config string) *gw {
	t.Helper()
	p := start(t, "serve", "--config", config)
	main, admin := p.addrs(t)
	return &gw{t: t, p: p, base: "http://" + main, admin: "http://" + admin, client: &http.Client{Timeout: 10 * time.Second}}
}

// do sends a request and returns the status and body.
func (g *gw) do(method, url, token, body string) (int, string) {
	g.t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		g.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := g.client.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// login logs alice in and returns the status and the token (on 200).
func (g *gw) login() (int, string) {
	g.t.Helper()
	code, body := g.do("POST", g.base+"/auth/login", "", `{"username":"alice","password":"wonderland"}`)
	return code, tokenOf(body)
}

func (g *gw) mustLogin() string {
	g.t.Helper()
	code, tok := g.login()
	if code != http.StatusOK || tok == "" {
		g.t.Fatalf("login on %s: status %d, want 200 with a token", g.base, code)
	}
	return tok
}

// refresh returns the status, the new token (on 200) or the error
// description.
func (g *gw) refresh(tok string) (code int, next, desc string) {
	g.t.Helper()
	code, body := g.do("POST", g.base+"/auth/refresh", tok, "")
	var b struct {
		AccessToken string `json:"access_token"`
		Desc        string `json:"error_description"`
	}
	_ = json.Unmarshal([]byte(body), &b)
	return code, b.AccessToken, b.Desc
}

func (g *gw) mustRefresh(tok string) string {
	g.t.Helper()
	code, next, desc := g.refresh(tok)
	if code != http.StatusOK || next == "" {
		g.t.Fatalf("refresh on %s: status %d (%s), want 200", g.base, code, desc)
	}
	return next
}

// api calls the protected route and returns the status.
func (g *gw) api(tok string) int {
	g.t.Helper()
	code, _ := g.do("GET", g.base+"/api/x", tok, "")
	return code
}

// sessions lists alice's sessions through the admin API.
func (g *gw) sessions() []string {
	g.t.Helper()
	code, body := g.do("GET", g.admin+"/admin/sessions?subject=alice", redisAdminToken, "")
	if code != http.StatusOK {
		g.t.Fatalf("admin list on %s: status %d %s", g.admin, code, body)
	}
	var list []struct {
		ID string `json:"session_id"`
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		g.t.Fatal(err)
	}
	ids := make([]string, len(list))
	for i, s := range list {
		ids[i] = s.ID
	}
	return ids
}

// activeSessions reads gateway_sessions_active from /metrics.
func (g *gw) activeSessions() string {
	g.t.Helper()
	_, body := g.do("GET", g.admin+"/metrics", "", "")
	for line := range strings.SplitSeq(body, "\n") {
		if v, ok := strings.CutPrefix(line, "gateway_sessions_active "); ok {
			return v
		}
	}
	g.t.Fatalf("no gateway_sessions_active on %s/metrics", g.admin)
	return ""
}

func (g *gw) ready() int {
	g.t.Helper()
	code, _ := g.do("GET", g.admin+"/readyz", "", "")
	return code
}

func tokenOf(body string) string {
	var b struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.Unmarshal([]byte(body), &b)
	return b.AccessToken
}

// sidOf is the token's "sid" claim.
func sidOf(t testing.TB, tok string) string {
	t.Helper()
	sid, _ := authtest.Claims(t, tok)["sid"].(string)
	if sid == "" {
		t.Fatalf("no sid claim")
	}
	return sid
}

func wantStatus(t testing.TB, what string, got, want int) {
	t.Helper()
	if got != want {
		t.Errorf("%s: status %d, want %d", what, got, want)
	}
}

// TestBinaryRedisTwoGateways runs two gateway processes on one Redis, as two
// replicas would: a session created on one is refreshed, revoked, listed and
// counted on the other.
func TestBinaryRedisTwoGateways(t *testing.T) {
	const password = "Redis-pass-7f3a9c"
	srv := redistest.Start(t, "--requirepass", password)
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "redis-password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	config := redisSetup(t, dir, srv.URL(0), pwFile, okUpstream(t), "0s")
	a, b := startGateway(t, config), startGateway(t, config)

	t.Run("login on one, refresh on the other", func(t *testing.T) {
		t0 := a.mustLogin()
		wantStatus(t, "every_request check on B of a session created on A", b.api(t0), http.StatusOK)
		t1 := b.mustRefresh(t0)
		if sidOf(t, t1) != sidOf(t, t0) {
			t.Fatal("refresh on B changed the session")
		}
		t2 := a.mustRefresh(t1)

		// Reuse detected on B revokes the session on both.
		code, _, desc := b.refresh(t1)
		if code != http.StatusUnauthorized || desc != "token reuse detected" {
			t.Fatalf("refresh of a rotated token on B: %d (%s), want 401 token reuse detected", code, desc)
		}
		for _, g := range []*gw{a, b} {
			code, _, desc := g.refresh(t2)
			if code != http.StatusUnauthorized || desc != "session revoked" {
				t.Errorf("refresh of the current token on %s after reuse: %d (%s), want 401 session revoked", g.base, code, desc)
			}
			wantStatus(t, "every_request check after reuse on "+g.base, g.api(t2), http.StatusUnauthorized)
		}
	})

	t.Run("logout on one ends refresh on the other", func(t *testing.T) {
		u0 := b.mustLogin()
		wantStatus(t, "logout on A", func() int { c, _ := a.do("POST", a.base+"/auth/logout", u0, ""); return c }(), http.StatusNoContent)
		code, _, desc := b.refresh(u0)
		if code != http.StatusUnauthorized || desc != "session revoked" {
			t.Errorf("refresh on B after logout on A: %d (%s), want 401 session revoked", code, desc)
		}
		wantStatus(t, "every_request check on B after logout on A", b.api(u0), http.StatusUnauthorized)
	})

	t.Run("admin on one sees and revokes sessions of the other", func(t *testing.T) {
		onA, onB := a.mustLogin(), b.mustLogin()
		want := map[string]bool{sidOf(t, onA): true, sidOf(t, onB): true}
		for _, g := range []*gw{a, b} {
			got := map[string]bool{}
			for _, id := range g.sessions() {
				got[id] = true
			}
			for id := range want {
				if !got[id] {
					t.Errorf("admin list on %s lacks session %s", g.admin, id)
				}
			}
		}
		code, _ := b.do("DELETE", b.admin+"/admin/sessions/"+sidOf(t, onA), redisAdminToken, "")
		wantStatus(t, "admin revoke on B of a session created on A", code, http.StatusNoContent)
		wantStatus(t, "every_request check on A after the admin revoke on B", a.api(onA), http.StatusUnauthorized)
		wantStatus(t, "the other session", a.api(onB), http.StatusOK)

		// Every session above but onB is revoked: both count the one.
		for _, g := range []*gw{a, b} {
			if got := g.activeSessions(); got != "1" {
				t.Errorf("gateway_sessions_active on %s = %s, want 1", g.admin, got)
			}
		}
	})

	for _, g := range []*gw{a, b} {
		if strings.Contains(g.p.stderr.String(), password) {
			t.Errorf("the Redis password appears in the logs of %s", g.base)
		}
	}
}

// TestBinaryRedisOutage stops Redis under a gateway refreshing sessions:
// every answer is 200 or 503 (never another 5xx), login, refresh, logout,
// the every_request check, the admin API and /readyz answer 503 while it is
// down, every token answered 200 was recorded, and the gateway serves again
// by itself once Redis restarts on the same port.
func TestBinaryRedisOutage(t *testing.T) {
	srv := redistest.Start(t, redistest.Persistent...)
	dir := t.TempDir()
	config := redisSetup(t, dir, srv.URL(0), "", okUpstream(t), "5s")
	g := startGateway(t, config)
	wantStatus(t, "readyz with Redis up", g.ready(), http.StatusOK)

	// Chains of refreshes run while Redis is stopped under them.
	const chains = 4
	last := make([]string, chains) // each chain's last token answered 200
	for i := range last {
		last[i] = g.mustLogin()
	}
	var (
		mu       sync.Mutex
		statuses = map[int]int{}
		wg       sync.WaitGroup
		stop     = make(chan struct{})
	)
	for i := range chains {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, next, _ := g.refresh(last[i])
				mu.Lock()
				statuses[code]++
				mu.Unlock()
				if code == http.StatusOK {
					last[i] = next
				}
			}
		})
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 15s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	count := func(code int) int { mu.Lock(); defer mu.Unlock(); return statuses[code] }
	waitFor("50 refreshes", func() bool { return count(http.StatusOK) >= 50 })
	srv.Stop(t)
	waitFor("503s while Redis is down", func() bool { return count(http.StatusServiceUnavailable) >= 20 })
	close(stop)
	wg.Wait()

	// Down: everything that needs the store answers 503.
	tok := last[0]
	checks := []struct {
		name string
		do   func() int
	}{
		{"login", func() int { c, _ := g.login(); return c }},
		{"refresh", func() int { c, _, _ := g.refresh(tok); return c }},
		{"logout", func() int { c, _ := g.do("POST", g.base+"/auth/logout", tok, ""); return c }},
		{"every_request check", func() int { return g.api(tok) }},
		{"admin list", func() int {
			c, _ := g.do("GET", g.admin+"/admin/sessions?subject=alice", redisAdminToken, "")
			return c
		}},
		{"readyz", g.ready},
	}
	for _, c := range checks {
		wantStatus(t, c.name+" with Redis down", c.do(), http.StatusServiceUnavailable)
	}
	if code, _ := g.do("GET", g.admin+"/healthz", "", ""); code != http.StatusOK {
		t.Errorf("healthz with Redis down: status %d, want 200 (the process is alive)", code)
	}
	for code, n := range statuses {
		if code != http.StatusOK && code != http.StatusServiceUnavailable {
			t.Errorf("%d refreshes answered %d during the outage, want only 200 and 503", n, code)
		}
	}
	t.Logf("refresh answers around the outage: %v", statuses)

	// Back: the gateway serves again by itself, and every token answered
	// 200 refreshes (or, if its successor's 200 was lost with the
	// connection, gets that successor again within the grace).
	srv.Restart(t)
	waitFor("readyz 200 after Redis restarted", func() bool { return g.ready() == http.StatusOK })
	for i, tok := range last {
		if code, _, desc := g.refresh(tok); code != http.StatusOK {
			t.Errorf("chain %d: last token answered 200 before the outage: refresh %d (%s), want 200", i, code, desc)
		}
	}
	next := g.mustLogin()
	wantStatus(t, "every_request check after the restart", g.api(next), http.StatusOK)
}

// TestBinaryRedisStartup: serve waits for Redis at start-up, within
// store.redis_connect_timeout, then fails with exit code 1 and a message
// that names the URL without its password.
func TestBinaryRedisStartup(t *testing.T) {
	const password = "Startup-pass-93kd"
	srv := redistest.Start(t)
	srv.Stop(t)
	url := "redis://:" + password + "@" + srv.Addr + "/0"

	t.Run("fails after the timeout", func(t *testing.T) {
		config := redisSetup(t, t.TempDir(), url, "", "http://127.0.0.1:9", "0s")
		begin := time.Now()
		_, stderr, code := runBinary(t, "", "serve", "--config", config)
		if code != 1 {
			t.Errorf("serve with Redis down: exit %d, want 1", code)
		}
		for _, want := range []string{"redis://:xxxxx@" + srv.Addr + "/0", "no answer within 2s"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("serve with Redis down: stderr %q, want it to say %q", stderr, want)
			}
		}
		if strings.Contains(stderr, password) {
			t.Errorf("serve with Redis down: stderr %q holds the password", stderr)
		}
		if d := time.Since(begin); d > 15*time.Second {
			t.Errorf("serve took %v to give up, want about 2s", d)
		}
	})

	t.Run("waits for Redis", func(t *testing.T) {
		config := redisSetup(t, t.TempDir(), srv.URL(0), "", okUpstream(t), "0s")
		patch(t, config, `redis_connect_timeout = "2s"`, `redis_connect_timeout = "30s"`)
		p := start(t, "serve", "--config", config)
		time.Sleep(500 * time.Millisecond) // Let it find Redis down first.
		srv.Restart(t)
		main, _ := p.addrs(t)
		g := &gw{t: t, p: p, base: "http://" + main, client: &http.Client{Timeout: 10 * time.Second}}
		g.mustLogin()
	})
}
