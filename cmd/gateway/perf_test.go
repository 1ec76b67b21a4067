package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/spa-gateway/gateway/proxy"
)

// TestAdminPprof: the profiler is on the admin listener only when
// admin.pprof says so, and never on the main listener.
func TestAdminPprof(t *testing.T) {
	tests := []struct {
		pprof bool
		want  int
	}{
		{false, http.StatusNotFound},
		{true, http.StatusOK},
	}
	for _, tt := range tests {
		cfg := testConfig(t, t.TempDir(), okUpstream(t))
		cfg.Admin.Pprof = tt.pprof
		g := startMain(t, cfg)
		code, body, _ := g.request("GET", g.admin+"/debug/pprof/", "")
		if code != tt.want || (tt.pprof && !strings.Contains(body, "goroutine")) {
			t.Errorf("pprof = %v: GET admin /debug/pprof/ = %d, want %d with the profile index", tt.pprof, code, tt.want)
		}
		if code, _, _ := g.request("GET", g.admin+"/debug/pprof/heap", ""); code != tt.want {
			t.Errorf("pprof = %v: GET admin /debug/pprof/heap = %d, want %d", tt.pprof, code, tt.want)
		}
		if code, _, _ := g.request("GET", g.base+"/debug/pprof/", ""); code == http.StatusOK {
			t.Errorf("pprof = %v: GET main /debug/pprof/ = 200, want it absent", tt.pprof)
		}
		g.stop()
	}
}

// TestVerifyCacheKeepsEveryRequestCheck: with the verified-token cache on
// (the default), a token that passed before its session ended is refused
// at once under revocation = "every_request", and still passes under
// "refresh", as without the cache.
func TestVerifyCacheKeepsEveryRequestCheck(t *testing.T) {
	tests := []struct {
		revocation proxy.Revocation
		want       int
	}{
		{proxy.RevocationEveryRequest, http.StatusUnauthorized},
		{proxy.RevocationRefresh, http.StatusOK},
	}
	for _, tt := range tests {
		cfg := testConfig(t, t.TempDir(), okUpstream(t))
		cfg.Tokens.Revocation = tt.revocation
		if cfg.Tokens.VerifyCacheSize == 0 {
			t.Fatal("the default configuration has no verify cache")
		}
		g := startMain(t, cfg)
		tok := g.mustLogin()
		for range 3 { // verified once, then from the cache
			if code, body, _ := g.request("GET", g.base+"/api/x", "", "Authorization", "Bearer "+tok); code != http.StatusOK {
				t.Fatalf("%s: GET /api/x = %d %s, want 200", tt.revocation, code, body)
			}
		}
		if code, _, _ := g.request("POST", g.base+"/auth/logout", "", "Authorization", "Bearer "+tok); code != http.StatusNoContent {
			t.Fatalf("%s: logout = %d, want 204", tt.revocation, code)
		}
		code, body, _ := g.request("GET", g.base+"/api/x", "", "Authorization", "Bearer "+tok)
		if code != tt.want || (tt.want == http.StatusUnauthorized && !strings.Contains(body, "session revoked")) {
			t.Errorf("%s: GET /api/x after logout = %d %s, want %d", tt.revocation, code, body, tt.want)
		}
		g.stop()
	}
}
