package main

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spa-gateway/gateway/auth/authtest"
	"github.com/spa-gateway/gateway/sessionstore/redisstore/redistest"
)

// TestMaxSessionsPerUser: with login.max_sessions_per_user = 3, five logins
// of one user leave three live sessions (the admin list), the two oldest
// sessions' tokens no longer refresh ("session revoked"), the newer ones
// do, and gateway_sessions_revoked_total{reason="session_limit"} counts the
// two (issue 11, item 9), on either backend.
func TestMaxSessionsPerUser(t *testing.T) {
	tests := []struct {
		name  string
		store func(t *testing.T, c *Config)
	}{
		{"bbolt", func(t *testing.T, c *Config) {}},
		{"redis", func(t *testing.T, c *Config) {
			srv := redistest.Start(t)
			c.Store.Backend, c.Store.URL, c.Store.Path = BackendRedis, srv.URL(0), ""
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			c := testConfig(t, dir, okUpstream(t))
			c.Store.Path = filepath.Join(dir, "sessions.db")
			c.Login.MaxSessionsPerUser = 3
			tt.store(t, &c)
			g := startMain(t, c)

			var toks, sids []string
			for range 5 {
				tok := g.mustLogin()
				toks = append(toks, tok)
				sids = append(sids, authtest.Claims(t, tok)["sid"].(string))
			}
			code, body := g.adminRequest("GET", "/admin/sessions?subject=alice", testAdminToken)
			if code != http.StatusOK {
				t.Fatalf("admin list: status %d %s", code, body)
			}
			var list []struct {
				ID string `json:"session_id"`
			}
			if err := json.Unmarshal([]byte(body), &list); err != nil {
				t.Fatal(err)
			}
			var live []string
			for _, s := range list {
				live = append(live, s.ID)
			}
			slices.Sort(live)
			want := slices.Clone(sids[2:])
			slices.Sort(want)
			if !slices.Equal(live, want) {
				t.Fatalf("live sessions after 5 logins with a limit of 3 = %q, want the 3 newest %q", live, want)
			}
			for i, tok := range toks[:2] {
				if code, ta := g.refresh(tok); code != http.StatusUnauthorized || ta.Description != "session revoked" {
					t.Errorf("refresh of login %d's token: %d %+v, want 401 session revoked", i+1, code, ta)
				}
			}
			for i, tok := range toks[2:] {
				if code, ta := g.refresh(tok); code != http.StatusOK {
					t.Errorf("refresh of login %d's token: %d %+v, want 200", i+3, code, ta)
				}
			}
			if n, _ := sample(g.scrape(), `gateway_sessions_revoked_total{reason="session_limit"}`); n != 2 {
				t.Errorf(`gateway_sessions_revoked_total{reason="session_limit"} = %v, want 2`, n)
			}
			for _, sid := range sids[:2] {
				if logs := g.logs.String(); !strings.Contains(logs, `"reason":"session_limit"`) || !strings.Contains(logs, sid) {
					t.Errorf("the logs do not record session %s revoked for reason session_limit", sid)
				}
			}
		})
	}
}
