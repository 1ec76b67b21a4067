package main

import (
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore/boltstore"
)

// TestNewMainReleasesOnFailure: when a step after openStore fails, newMain
// returns its error and has closed the store, so that the bbolt file is
// not left locked (a second Open would wait for the lock and fail).
func TestNewMainReleasesOnFailure(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want string // the failing step's configuration key; "" for an error of another kind
	}{
		{"buildProxy: a route without upstream", func(c *Config) { c.Route[0].Upstream = "" }, ""},
		{"buildServers: a missing admin token file", func(c *Config) { c.Admin.TokenFile = filepath.Join(t.TempDir(), "missing") }, "admin.token_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, t.TempDir(), okUpstream(t))
			tt.edit(&cfg)
			m, err := newMain(cfg, false, io.Discard)
			if err == nil {
				m.Close()
				t.Fatal("newMain = nil error, want the step's error")
			}
			got := ""
			if ce := (*ConfigError)(nil); errors.As(err, &ce) {
				got = ce.Key
			}
			if got != tt.want {
				t.Errorf("newMain = %v: configuration key %q, want %q", err, got, tt.want)
			}
			st, err := boltstore.Open(cfg.Store.Path, &boltstore.Options{Timeout: 200 * time.Millisecond})
			if err != nil {
				t.Fatalf("the store is still open after newMain failed: %v", err)
			}
			st.Close()
		})
	}
}
