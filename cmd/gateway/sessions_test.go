package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spa-gateway/gateway/auth/authtest"
)

func TestSessionsCommand(t *testing.T) {
	dir := t.TempDir()
	g := startMain(t, testConfig(t, dir, okUpstream(t)))
	tokenFile := filepath.Join(dir, "admin-token")
	wrongToken := writeFile(t, t.TempDir(), "wrong", "not-the-admin-token-at-all\n")
	toks := []string{g.mustLogin(), g.mustLogin(), g.mustLogin()}
	sid := func(i int) string { s, _ := authtest.Claims(t, toks[i])["sid"].(string); return s }
	sessions := func(args ...string) (int, string, string) {
		t.Helper()
		return runCmd(t, "", append([]string{"sessions"}, args...)...)
	}
	auth := []string{"--admin", g.admin, "--token-file", tokenFile}

	t.Run("list", func(t *testing.T) {
		code, stdout, stderr := sessions(append([]string{"list", "--subject", "alice"}, auth...)...)
		if code != 0 {
			t.Fatalf("exit %d, stderr %q; want 0", code, stderr)
		}
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		if len(lines) != 4 || !strings.HasPrefix(lines[0], "SESSION") {
			t.Fatalf("stdout = %q, want a header and 3 sessions", stdout)
		}
		for i := range toks {
			if !strings.Contains(stdout, sid(i)) {
				t.Errorf("stdout lacks session %s:\n%s", sid(i), stdout)
			}
		}
		code, stdout, _ = sessions(append([]string{"list", "--subject", "alice", "--json"}, auth...)...)
		var list []sessionView
		if err := json.Unmarshal([]byte(stdout), &list); code != 0 || err != nil || len(list) != 3 {
			t.Errorf("list --json: exit %d, %d sessions (%v); want 0 and 3", code, len(list), err)
		}
		code, stdout, _ = sessions(append([]string{"list", "--subject", "bob"}, auth...)...)
		if code != 0 || !strings.Contains(stdout, `no live sessions of "bob"`) {
			t.Errorf("list of bob: exit %d, stdout %q; want 0 and no live sessions", code, stdout)
		}
	})
	t.Run("revoke by id", func(t *testing.T) {
		code, stdout, stderr := sessions(append([]string{"revoke", "--id", sid(0)}, auth...)...)
		if code != 0 || !strings.Contains(stdout, "revoked session "+sid(0)) {
			t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and revoked", code, stdout, stderr)
		}
		if code, ta := g.refresh(toks[0]); code != 401 || ta.Description != "session revoked" {
			t.Errorf("refresh of the revoked session: %d %+v, want 401 session revoked", code, ta)
		}
		code, _, stderr = sessions(append([]string{"revoke", "--id", "no-such-session"}, auth...)...)
		if code != 1 || !strings.Contains(stderr, "404 no such session") {
			t.Errorf("revoke unknown: exit %d, stderr %q; want 1 and 404", code, stderr)
		}
	})
	t.Run("revoke by subject", func(t *testing.T) {
		code, stdout, stderr := sessions(append([]string{"revoke", "--subject", "alice"}, auth...)...)
		if code != 0 || !strings.Contains(stdout, `revoked 2 sessions of "alice"`) {
			t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and 2 revoked", code, stdout, stderr)
		}
		if code, ta := g.refresh(toks[1]); code != 401 || ta.Description != "session revoked" {
			t.Errorf("refresh after revoking the subject: %d %+v, want 401 session revoked", code, ta)
		}
	})

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"wrong token", []string{"list", "--subject", "alice", "--admin", g.admin, "--token-file", wrongToken}, 1, "401 unauthorized"},
		{"no token file", []string{"list", "--subject", "alice", "--admin", g.admin}, 2, "--token-file FILE is required"},
		{"missing token file", []string{"list", "--subject", "alice", "--admin", g.admin, "--token-file", filepath.Join(dir, "absent")}, 2, "no such file"},
		{"no subject", append([]string{"list"}, auth...), 2, "--subject S is required"},
		{"revoke neither", append([]string{"revoke"}, auth...), 2, "exactly one of --id ID or --subject S"},
		{"revoke both", append([]string{"revoke", "--id", "x", "--subject", "alice"}, auth...), 2, "exactly one of --id ID or --subject S"},
		{"bad admin URL", []string{"list", "--subject", "alice", "--admin", "127.0.0.1:9090", "--token-file", tokenFile}, 2, "not an http:// or https:// URL"},
		{"admin unreachable", []string{"list", "--subject", "alice", "--admin", "http://127.0.0.1:9", "--token-file", tokenFile}, 1, "connection refused"},
		{"no subcommand", nil, 2, "Usage: gateway sessions"},
		{"unknown subcommand", []string{"kill"}, 2, `unknown subcommand "kill"`},
		{"help", []string{"-h"}, 0, "Usage: gateway sessions"},
		{"list help", []string{"list", "-h"}, 0, "-token-file FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := sessions(tt.args...)
			if code != tt.wantCode || !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, tt.wantCode, tt.wantStderr)
			}
			if strings.Contains(stderr, testAdminToken) {
				t.Errorf("stderr holds the admin token")
			}
		})
	}
	// The listing lives in the main help too.
	if code, stdout, _ := runCmd(t, "", "help"); code != 0 || !strings.Contains(stdout, "sessions ") {
		t.Errorf("help: exit %d, stdout %q; want the sessions command listed", code, stdout)
	}
}
