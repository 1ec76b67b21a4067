package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDevDemoPage runs the --dev configuration in process: the demo page and
// its files are served at their exact paths, everything else by the gateway.
func TestDevDemoPage(t *testing.T) {
	cfg, err := devConfig(2 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(cfg.Store.Path)) })
	if got, want := time.Duration(cfg.Tokens.AccessTTL), 2*time.Second; got != want {
		t.Errorf("access TTL = %v, want %v", got, want)
	}
	cfg.Server.Listen, cfg.Admin.Listen = "127.0.0.1:0", "127.0.0.1:0"
	m, err := newMain(cfg, true, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Listen(); err != nil {
		m.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	base := "http://" + m.MainAddr()

	tests := []struct {
		method, path string
		wantStatus   int
		wantType     string // Content-Type prefix; "" for the gateway's JSON errors
		wantBody     string
	}{
		{"GET", "/", 200, "text/html", `<form id="login-form">`},
		{"GET", "/", 200, "text/html", `<button id="steal"`},
		{"GET", "/", 200, "text/html", `<button id="logout-others"`},
		{"HEAD", "/", 200, "text/html", ""},
		{"GET", "/client/gateway-client.js", 200, "text/javascript", "export function createClient"},
		{"GET", "/client/demo.js", 200, "text/javascript", "gateway-client.js"},
		{"GET", "/client/demo.js", 200, "text/javascript", "/auth/sessions"},
		{"GET", "/client/demo.css", 200, "text/css", "body"},
		{"GET", "/api/hello", 401, "application/json", "unauthorized"},
		{"POST", "/", 404, "", ""},
		{"GET", "/client/other.js", 404, "", ""},
		{"GET", "/client/%67ateway-client.js", 404, "", ""},
		{"POST", "/auth/refresh", 401, "application/json", "token missing"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tt.method, base+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d (%s)", res.StatusCode, tt.wantStatus, body)
			}
			if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.wantType) {
				t.Errorf("Content-Type = %q, want %q", ct, tt.wantType)
			}
			if !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("body %q lacks %q", body, tt.wantBody)
			}
			if tt.wantStatus == 200 {
				if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
					t.Errorf("Content-Security-Policy = %q, want default-src 'self'", csp)
				}
			}
		})
	}
}
