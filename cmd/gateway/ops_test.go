package main

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/auth/authtest"
	"github.com/spa-gateway/gateway/proxy"
)

// metricsFlow runs, against a fresh gateway, a failed login, a login, two
// proxied requests (one with a spoofed header), one without a token, one to
// a dead upstream, a refresh, a reuse of the rotated token, a refresh of
// its revoked successor, a second login and a logout, and returns the
// gateway.
func metricsFlow(t *testing.T) (*testGateway, map[string]float64) {
	t.Helper()
	cfg := testConfig(t, t.TempDir(), okUpstream(t))
	down := DefaultRoute()
	down.Prefix, down.Upstream = "/down/", "http://127.0.0.1:9"
	cfg.Route = append(cfg.Route, down)
	g := startMain(t, cfg)

	if code, _, _ := g.login("alice", "not the password"); code != 401 {
		t.Fatalf("bad login: status %d, want 401", code)
	}
	first := g.mustLogin()
	active := map[string]float64{}
	active["after login"], _ = sample(g.scrape(), "gateway_sessions_active")
	if code, _, _ := g.request("GET", g.base+"/api/x", "", "Authorization", "Bearer "+first, "X-Auth-Subject", "root"); code != 200 {
		t.Fatalf("GET /api/x: status %d, want 200", code)
	}
	if code, _, _ := g.request("GET", g.base+"/api/x", ""); code != 401 {
		t.Fatalf("GET /api/x without token: status %d, want 401", code)
	}
	if code, _, _ := g.request("GET", g.base+"/down/x", "", "Authorization", "Bearer "+first); code != 502 {
		t.Fatalf("GET /down/x: status %d, want 502", code)
	}
	code, second := g.refresh(first)
	if code != 200 {
		t.Fatalf("refresh: status %d %+v, want 200", code, second)
	}
	if code, ta := g.refresh(first); code != 401 || ta.Description != "token reuse detected" {
		t.Fatalf("reuse: status %d %+v, want 401 token reuse detected", code, ta)
	}
	if code, ta := g.refresh(second.AccessToken); code != 401 || ta.Description != "session revoked" {
		t.Fatalf("refresh after reuse: status %d %+v, want 401 session revoked", code, ta)
	}
	third := g.mustLogin()
	active["after second login"], _ = sample(g.scrape(), "gateway_sessions_active")
	if code, _, _ := g.request("POST", g.base+"/auth/logout", "", "Authorization", "Bearer "+third); code != 204 {
		t.Fatalf("logout: status %d, want 204", code)
	}
	active["after logout"], _ = sample(g.scrape(), "gateway_sessions_active")
	return g, active
}

func TestMetricsAfterAFlow(t *testing.T) {
	g, active := metricsFlow(t)
	for when, want := range map[string]float64{"after login": 1, "after second login": 1, "after logout": 0} {
		if got := active[when]; got != want {
			t.Errorf("gateway_sessions_active %s = %v, want %v", when, got, want)
		}
	}
	body := g.scrape()
	tests := []struct {
		series string
		want   float64
	}{
		{`gateway_logins_total{result="success"}`, 2},
		{`gateway_logins_total{result="failure"}`, 1},
		{`gateway_logins_total{result="rate_limited"}`, 0},
		{`gateway_refreshes_total{result="success"}`, 1},
		{`gateway_refreshes_total{result="reuse_detected"}`, 1},
		{`gateway_refreshes_total{result="revoked"}`, 1},
		{`gateway_refreshes_total{result="grace"}`, 0},
		{`gateway_refreshes_total{result="not_expired"}`, 0},
		{`gateway_refreshes_total{result="invalid_token"}`, 0},
		{`gateway_refreshes_total{result="unknown_session"}`, 0},
		{`gateway_refreshes_total{result="expired"}`, 0},
		{`gateway_logouts_total`, 1},
		{`gateway_sessions_revoked_total{reason="reuse_detected"}`, 1},
		{`gateway_sessions_revoked_total{reason="logout"}`, 1},
		{`gateway_sessions_revoked_total{reason="admin"}`, 0},
		{`gateway_token_validations_total{result="valid"}`, 2},
		{`gateway_token_validations_total{result="missing"}`, 1},
		{`gateway_token_validations_total{result="invalid"}`, 0},
		{`gateway_http_requests_total{code="200",route="auth"}`, 3},
		{`gateway_http_requests_total{code="401",route="auth"}`, 3},
		{`gateway_http_requests_total{code="204",route="auth"}`, 1},
		{`gateway_http_requests_total{code="200",route="/api/"}`, 1},
		{`gateway_http_requests_total{code="401",route="/api/"}`, 1},
		{`gateway_http_requests_total{code="502",route="/down/"}`, 1},
		{`gateway_http_request_duration_seconds_count{route="auth"}`, 7},
		{`gateway_http_request_duration_seconds_count{route="/api/"}`, 2},
		{`gateway_upstream_errors_total{route="/down/"}`, 1},
		{`gateway_spoofed_headers_total{route="/api/"}`, 1},
		{`gateway_store_operation_duration_seconds_count{op="create"}`, 2},
		{`gateway_store_operation_duration_seconds_count{op="rotate"}`, 3},
		{`gateway_store_operation_duration_seconds_count{op="revoke"}`, 1},
		{`gateway_sessions_active`, 0},
	}
	for _, tt := range tests {
		got, ok := sample(body, tt.series)
		if !ok {
			t.Errorf("%s: absent from /metrics", tt.series)
			continue
		}
		if got != tt.want {
			t.Errorf("%s = %v, want %v", tt.series, got, tt.want)
		}
	}
	// The Go and process collectors are registered; the histogram buckets
	// go from 100µs to 10s.
	for _, series := range []string{"go_goroutines", "process_start_time_seconds",
		`gateway_http_request_duration_seconds_bucket{route="auth",le="0.0001"}`,
		`gateway_http_request_duration_seconds_bucket{route="auth",le="10"}`} {
		if _, ok := sample(body, series); !ok {
			t.Errorf("%s: absent from /metrics", series)
		}
	}
	// Label values stay bounded: no raw path, no subject.
	for _, leak := range []string{"/api/x", "/down/x", "alice"} {
		if strings.Contains(body, leak) {
			t.Errorf("/metrics holds %q", leak)
		}
	}
}

func TestMetricsPassPromlint(t *testing.T) {
	g, _ := metricsFlow(t)
	problems, err := promlint.New(strings.NewReader(g.scrape())).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

func TestAdminAPI(t *testing.T) {
	g := startMain(t, testConfig(t, t.TempDir(), okUpstream(t)))
	toks := []string{g.mustLogin(), g.mustLogin(), g.mustLogin()}
	sids := make([]string, len(toks))
	for i, tok := range toks {
		sids[i], _ = authtest.Claims(t, tok)["sid"].(string)
	}

	t.Run("unauthorized", func(t *testing.T) {
		tests := []struct {
			name, method, path string
			header             []string
		}{
			{"no token", "GET", "/admin/sessions?subject=alice", nil},
			{"wrong token", "GET", "/admin/sessions?subject=alice", []string{"Authorization", "Bearer " + testAdminToken + "x"}},
			{"token prefix", "GET", "/admin/sessions?subject=alice", []string{"Authorization", "Bearer " + testAdminToken[:16]}},
			{"basic scheme", "GET", "/admin/sessions?subject=alice", []string{"Authorization", "Basic " + testAdminToken}},
			{"revoke without token", "DELETE", "/admin/sessions/" + sids[0], nil},
			{"revoke subject with wrong token", "DELETE", "/admin/sessions?subject=alice", []string{"Authorization", "Bearer nope"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				code, body, h := g.request(tt.method, g.admin+tt.path, "", tt.header...)
				if code != http.StatusUnauthorized {
					t.Errorf("status = %d, want 401", code)
				}
				if h.Get("WWW-Authenticate") == "" {
					t.Error("no WWW-Authenticate challenge")
				}
				if strings.Contains(body, "session_id") {
					t.Errorf("body %q lists sessions", body)
				}
			})
		}
		// Nothing was revoked.
		if code, ta := g.refresh(toks[0]); code != 200 {
			t.Fatalf("refresh after refused revocations: status %d %+v, want 200", code, ta)
		}
	})

	list := func(t *testing.T) []sessionView {
		t.Helper()
		code, body := g.adminRequest("GET", "/admin/sessions?subject=alice", testAdminToken)
		if code != http.StatusOK {
			t.Fatalf("list: status %d %s, want 200", code, body)
		}
		var out []sessionView
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatalf("list body %q: %v", body, err)
		}
		return out
	}
	t.Run("list", func(t *testing.T) {
		got := list(t)
		var ids []string
		for _, s := range got {
			ids = append(ids, s.SessionID)
			if s.Subject != "alice" {
				t.Errorf("session %s subject = %q, want alice", s.SessionID, s.Subject)
			}
			for name, v := range map[string]string{"created_at": s.CreatedAt, "refreshed_at": s.RefreshedAt,
				"idle_expires_at": s.IdleExpiresAt, "expires_at": s.ExpiresAt} {
				if _, err := time.Parse(time.RFC3339, v); err != nil {
					t.Errorf("session %s %s = %q, want RFC 3339", s.SessionID, name, v)
				}
			}
		}
		slices.Sort(ids)
		want := slices.Sorted(slices.Values(sids))
		if !slices.Equal(ids, want) {
			t.Errorf("listed sessions %q, want %q", ids, want)
		}
		if code, _ := g.adminRequest("GET", "/admin/sessions", testAdminToken); code != http.StatusBadRequest {
			t.Errorf("list without subject: status %d, want 400", code)
		}
		if code, body := g.adminRequest("GET", "/admin/sessions?subject=nobody", testAdminToken); code != 200 || strings.TrimSpace(body) != "[]" {
			t.Errorf("list of an unknown subject: %d %q, want 200 []", code, body)
		}
	})
	t.Run("revoke by id", func(t *testing.T) {
		if code, body := g.adminRequest("DELETE", "/admin/sessions/"+sids[1], testAdminToken); code != http.StatusNoContent {
			t.Fatalf("revoke: status %d %s, want 204", code, body)
		}
		if code, ta := g.refresh(toks[1]); code != 401 || ta.Description != "session revoked" {
			t.Errorf("refresh of the revoked session: %d %+v, want 401 session revoked", code, ta)
		}
		if n := len(list(t)); n != 2 {
			t.Errorf("%d sessions listed after revoking one of 3, want 2", n)
		}
		if code, _ := g.adminRequest("DELETE", "/admin/sessions/no-such-session", testAdminToken); code != http.StatusNotFound {
			t.Errorf("revoke unknown: status %d, want 404", code)
		}
	})
	t.Run("revoke by subject", func(t *testing.T) {
		code, body := g.adminRequest("DELETE", "/admin/sessions?subject=alice", testAdminToken)
		if code != http.StatusOK || strings.TrimSpace(body) != `{"revoked":2}` {
			t.Fatalf("revoke subject: %d %s, want 200 {\"revoked\":2}", code, body)
		}
		if code, ta := g.refresh(toks[2]); code != 401 || ta.Description != "session revoked" {
			t.Errorf("refresh after revoking the subject: %d %+v, want 401 session revoked", code, ta)
		}
		if n := len(list(t)); n != 0 {
			t.Errorf("%d sessions listed after revoking the subject, want 0", n)
		}
	})
	if got, _ := sample(g.scrape(), `gateway_sessions_revoked_total{reason="admin"}`); got != 3 {
		t.Errorf(`gateway_sessions_revoked_total{reason="admin"} = %v, want 3`, got)
	}
	if !strings.Contains(g.logs.String(), `"event":"session_revoked","reason":"admin"`) {
		t.Errorf("no session_revoked event logged for the administrator's revocations")
	}
}

func TestAdminAPIOffWithoutTokenFile(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), okUpstream(t))
	cfg.Admin.TokenFile = ""
	g := startMain(t, cfg)
	if code, _ := g.adminRequest("GET", "/admin/sessions?subject=alice", testAdminToken); code != http.StatusNotFound {
		t.Errorf("admin API without admin.token_file: status %d, want 404", code)
	}
	if code, _, _ := g.request("GET", g.admin+"/healthz", ""); code != 200 {
		t.Errorf("/healthz: status %d, want 200", code)
	}
}

// TestKeyRotation follows the README's procedure, each step a restart on
// the same store: a new key signs while the old one still verifies, then
// the old one is dropped.
func TestKeyRotation(t *testing.T) {
	dir := t.TempDir()
	upstream := okUpstream(t)
	oldKey := writeKey(t, dir, "old.pem", auth.EdDSA)
	newKey := writeKey(t, dir, "new.pem", auth.EdDSA)
	kid := func(path string) string {
		k, err := auth.LoadKey(auth.EdDSA, path)
		if err != nil {
			t.Fatal(err)
		}
		return k.ID()
	}
	oldKID, newKID := kid(oldKey), kid(newKey)
	jwksKIDs := func(g *testGateway) []string {
		_, body, _ := g.request("GET", g.base+"/.well-known/jwks.json", "")
		var doc struct {
			Keys []struct {
				KID string `json:"kid"`
			} `json:"keys"`
		}
		if err := json.Unmarshal([]byte(body), &doc); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, k := range doc.Keys {
			out = append(out, k.KID)
		}
		return out
	}
	withKeys := func(signing string, verify ...string) Config {
		c := testConfig(t, dir, upstream)
		c.Tokens.KeyFile = signing
		c.Tokens.VerifyKeyFiles = verify
		return c
	}

	// Step 0: the old key signs.
	g := startMain(t, withKeys(oldKey))
	a, b := g.mustLogin(), g.mustLogin()
	if got := authtest.Header(t, a)["kid"]; got != oldKID {
		t.Fatalf("token kid = %v, want the old key's %s", got, oldKID)
	}
	g.stop()

	// Step 1: the new key signs, the old one still verifies.
	g = startMain(t, withKeys(newKey, oldKey))
	if got, want := jwksKIDs(g), []string{newKID, oldKID}; !slices.Equal(got, want) {
		t.Errorf("JWKS kids during the overlap = %q, want %q", got, want)
	}
	if code, _, _ := g.request("GET", g.base+"/api/x", "", "Authorization", "Bearer "+a); code != 200 {
		t.Errorf("old-key token on /api/ during the overlap: status %d, want 200", code)
	}
	code, next := g.refresh(a)
	if code != 200 {
		t.Fatalf("refresh of an old-key token during the overlap: %d %+v, want 200", code, next)
	}
	if got := authtest.Header(t, next.AccessToken)["kid"]; got != newKID {
		t.Errorf("successor kid = %v, want the new key's %s", got, newKID)
	}
	g.stop()

	// Step 2: the old key is dropped.
	g = startMain(t, withKeys(newKey))
	if got, want := jwksKIDs(g), []string{newKID}; !slices.Equal(got, want) {
		t.Errorf("JWKS kids after the rotation = %q, want %q", got, want)
	}
	if code, ta := g.refresh(b); code != 401 || ta.Error != "invalid_token" {
		t.Errorf("refresh of an old-key token after its key is dropped: %d %+v, want 401 invalid_token", code, ta)
	}
	if code, _, _ := g.request("GET", g.base+"/api/x", "", "Authorization", "Bearer "+b); code != 401 {
		t.Errorf("old-key token on /api/ after its key is dropped: status %d, want 401", code)
	}
	if code, ta := g.refresh(next.AccessToken); code != 200 {
		t.Errorf("refresh of the new-key successor: %d %+v, want 200: the session survived the rotation", code, ta)
	}
}

// TestNoSecretInLogs runs a whole login, proxied request, refresh and
// logout flow, with the token in a cookie too, at debug level, and looks
// for every secret in the logs.
func TestNoSecretInLogs(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), okUpstream(t))
	cfg.Tokens.Delivery = proxy.DeliveryBoth
	g := startMain(t, cfg)

	code, ta, h := g.login("alice", testPassword)
	if code != 200 {
		t.Fatalf("login: status %d", code)
	}
	var cookies []string
	cookieOf := func(h http.Header) string {
		res := http.Response{Header: h}
		for _, c := range res.Cookies() {
			if c.Name == cfg.Tokens.CookieName && c.Value != "" {
				return c.Value
			}
		}
		t.Fatal("no token cookie")
		return ""
	}
	cookies = append(cookies, cookieOf(h))
	if code, _, _ := g.request("GET", g.base+"/api/x", "", "Cookie", cfg.Tokens.CookieName+"="+cookies[0]); code != 200 {
		t.Fatalf("GET /api/x with the cookie: status %d", code)
	}
	if code, _, _ := g.login("alice", testPassword+"-wrong"); code != 401 {
		t.Fatalf("bad login: status %d", code)
	}
	code, body, h := g.request("POST", g.base+"/auth/refresh", "", "Authorization", "Bearer "+ta.AccessToken)
	if code != 200 {
		t.Fatalf("refresh: status %d %s", code, body)
	}
	var next tokenAnswer
	json.Unmarshal([]byte(body), &next)
	cookies = append(cookies, cookieOf(h))
	if code, _, _ := g.request("POST", g.base+"/auth/refresh", "", "Authorization", "Bearer "+ta.AccessToken); code != 401 {
		t.Fatalf("reuse: status %d", code)
	}
	third := g.mustLogin()
	if code, _, _ := g.request("POST", g.base+"/auth/logout", "", "Authorization", "Bearer "+third); code != 204 {
		t.Fatalf("logout: status %d", code)
	}
	g.adminRequest("GET", "/admin/sessions?subject=alice", testAdminToken)
	g.stop()

	logs := g.logs.String()
	secrets := map[string]string{"password": testPassword, "admin token": testAdminToken}
	for i, tok := range append([]string{ta.AccessToken, next.AccessToken, third}, cookies...) {
		secrets["token "+string(rune('0'+i))] = tok
		secrets["token signature "+string(rune('0'+i))] = tok[strings.LastIndexByte(tok, '.')+1:]
	}
	for name, s := range secrets {
		if s == "" {
			t.Fatalf("%s is empty", name)
		}
		if strings.Contains(logs, s) {
			t.Errorf("the logs hold the %s", name)
		}
	}
	// The flow was logged: every line JSON, one access line per request.
	requests := 0
	for _, m := range g.logs.Lines(t) {
		if m["msg"] == "request" {
			requests++
		}
	}
	if requests != 7 {
		t.Errorf("%d access lines, want 7 (one per request on the main listener)", requests)
	}
	for _, event := range []string{"login_failed", "reuse_detected", "session_revoked"} {
		if !strings.Contains(logs, `"event":"`+event+`"`) {
			t.Errorf("no %s event in the logs:\n%s", event, logs)
		}
	}
}

// TestReadyzFollowsDrain checks /readyz in process with a drain delay: 503
// as soon as shutdown starts, while the main listener still answers.
func TestReadyzFollowsDrain(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), okUpstream(t))
	cfg.Server.DrainDelay = Duration(time.Second)
	g := startMain(t, cfg)
	cancel := g.cancel
	g.cancel = nil // this test waits for Run itself
	cancel()       // what SIGTERM does
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _, _ := g.request("GET", g.admin+"/readyz", "")
		if code == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz = %d after shutdown began, want 503", code)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Still within the drain delay: the main listener serves.
	if code, _, _ := g.request("GET", g.base+"/.well-known/jwks.json", ""); code != 200 {
		t.Errorf("main listener during the drain delay: status %d, want 200", code)
	}
	select {
	case err := <-g.done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return")
	}
	if !strings.Contains(g.logs.String(), `"msg":"draining"`) {
		t.Error(`no "draining" log line`)
	}
}

func TestDrainDelayConfig(t *testing.T) {
	c, err := LoadConfig(writeConfig(t, "[server]\ndrain_delay = \"5s\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := time.Duration(c.Server.DrainDelay); got != 5*time.Second {
		t.Errorf("server.drain_delay = %v, want 5s", got)
	}
	if got := time.Duration(Default().Server.DrainDelay); got != 0 {
		t.Errorf("default server.drain_delay = %v, want 0s", got)
	}
	c = validConfig(t)
	c.Server.DrainDelay = Duration(-time.Second)
	errs := configErrors(t, c.Validate())
	if len(errs) != 1 || errs[0].Key != "server.drain_delay" {
		t.Errorf("Validate(drain_delay = -1s) = %v, want one problem naming server.drain_delay", errs)
	}
}
