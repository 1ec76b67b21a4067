package main

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/sessionstore"
	"github.com/spa-gateway/gateway/sessionstore/boltstore"
	"github.com/spa-gateway/gateway/sessionstore/redisstore/redistest"
)

// redisConfig is validConfig with the redis backend at url.
func redisConfig(tb testing.TB, url string) Config {
	tb.Helper()
	c := validConfig(tb)
	c.Store.Backend, c.Store.URL = BackendRedis, url
	return c
}

func TestValidateRedis(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope")
	pw := writeFile(t, dir, "pw", "secret\n")
	tests := []struct {
		name   string
		modify func(c *Config)
		want   string // "" means valid
	}{
		{"standalone", func(c *Config) {}, ""},
		{"sentinel", func(c *Config) { c.Store.URL = "redis+sentinel://s1:26379/0?master_name=m&addr=s2:26379" }, ""},
		{"cluster", func(c *Config) { c.Store.URL = "rediss+cluster://n1:6379?addr=n2:6379" }, ""},
		{"password file", func(c *Config) { c.Store.RedisPasswordFile = pw }, ""},
		{"CA file with rediss", func(c *Config) { c.Store.URL, c.Store.RedisTLSCAFile = "rediss://h:6380/0", pw }, ""},
		{"bad scheme", func(c *Config) { c.Store.URL = "redis+ring://h" }, `store.url: scheme "redis+ring" is not one of redis, rediss, redis+sentinel`},
		{"sentinel without master", func(c *Config) { c.Store.URL = "redis+sentinel://s1:26379" }, "store.url: names no master"},
		{"cluster database", func(c *Config) { c.Store.URL = "redis+cluster://n1:6379/2" }, "store.url: selects a database"},
		{"unknown option", func(c *Config) { c.Store.URL = "redis://h:6379/0?colour=blue" }, "store.url: redis: unexpected option: colour"},
		{"password in a query", func(c *Config) { c.Store.URL = "redis://h:6379/0?password=hunter2" }, "store.url: redis: unexpected option: password"},
		{"password file missing", func(c *Config) { c.Store.RedisPasswordFile = missing }, "store.redis_password_file: open " + missing},
		{"CA file missing", func(c *Config) { c.Store.URL, c.Store.RedisTLSCAFile = "rediss://h:6380/0", missing }, "store.redis_tls_ca_file: open " + missing},
		{"CA file without TLS", func(c *Config) { c.Store.RedisTLSCAFile = pw }, "store.redis_tls_ca_file: needs a TLS URL"},
		{"password file with bbolt", func(c *Config) { c.Store.Backend, c.Store.RedisPasswordFile = BackendBbolt, pw }, `store.redis_password_file: is only for backend = "redis"`},
		{"CA file with bbolt", func(c *Config) { c.Store.Backend, c.Store.RedisTLSCAFile = BackendBbolt, pw }, `store.redis_tls_ca_file: is only for backend = "redis"`},
		{"connect timeout", func(c *Config) { c.Store.RedisConnectTimeout = 0 }, "store.redis_connect_timeout: 0s must be positive"},
		{"min replicas", func(c *Config) { c.Store.RedisMinReplicas = -1 }, "store.redis_min_replicas: -1 must not be negative"},
		{"replica timeout", func(c *Config) { c.Store.RedisReplicaTimeout = 0 }, "store.redis_replica_timeout: 0s must be positive"},
		{"replica timeout above write", func(c *Config) { c.Store.RedisMinReplicas, c.Store.RedisReplicaTimeout = 1, c.Store.WriteTimeout }, "must be below store.write_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := redisConfig(t, "redis://redis.internal:6379/0")
			tt.modify(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("Validate() = %v, which holds the password", err)
			}
		})
	}
}

// TestOpenRedisFiles: a password or CA file that does not load is a
// configuration error naming its key, before any connection.
func TestOpenRedisFiles(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  StoreConfig
		key  string
	}{
		{"password file missing", StoreConfig{URL: "redis://127.0.0.1:9/0", RedisPasswordFile: filepath.Join(dir, "nope")}, "store.redis_password_file"},
		{"password file empty", StoreConfig{URL: "redis://127.0.0.1:9/0", RedisPasswordFile: writeFile(t, dir, "empty", " \n")}, "store.redis_password_file"},
		{"CA file without a certificate", StoreConfig{URL: "rediss://127.0.0.1:9/0", RedisTLSCAFile: writeFile(t, dir, "ca.pem", "not a certificate\n")}, "store.redis_tls_ca_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.RedisConnectTimeout = Duration(time.Second)
			st, err := openRedis(t.Context(), tt.cfg, slog.New(slog.DiscardHandler))
			if err == nil {
				st.Close()
				t.Fatal("openRedis() = nil error, want one")
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Key != tt.key {
				t.Fatalf("openRedis() = %v, want a *ConfigError for %s", err, tt.key)
			}
		})
	}
}

// TestOpenRedisPasswordFile: the password file's content, without its
// newline, authenticates to a Redis that requires it.
func TestOpenRedisPasswordFile(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "file-pw")
	cfg := StoreConfig{
		URL:                 srv.URL(0),
		RedisPasswordFile:   writeFile(t, t.TempDir(), "pw", "file-pw\n"),
		RedisConnectTimeout: Duration(5 * time.Second),
	}
	st, err := openRedis(t.Context(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("openRedis() = %v", err)
	}
	defer st.Close()
	if _, err := st.Count(t.Context()); err != nil {
		t.Fatalf("Count() = %v", err)
	}
}

// TestPingStore: /readyz asks a store that can be pinged, and only such a
// store.
func TestPingStore(t *testing.T) {
	bolt, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	srv := redistest.Start(t)
	cfg := StoreConfig{URL: srv.URL(0), RedisConnectTimeout: Duration(5 * time.Second)}
	rs, err := openRedis(t.Context(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()

	tests := []struct {
		name      string
		st        sessionstore.Store
		stop      bool
		wantError bool
	}{
		{"bbolt", bolt, false, false},
		{"redis up", rs, false, false},
		{"redis down", rs, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.stop {
				srv.Stop(t)
			}
			start := time.Now()
			err := pingStore(context.Background(), tt.st)
			if got := err != nil; got != tt.wantError {
				t.Fatalf("pingStore() = %v, want error %v", err, tt.wantError)
			}
			if d := time.Since(start); d > 2*readyPingTimeout+time.Second {
				t.Errorf("pingStore() took %v, want about %v at most", d, readyPingTimeout)
			}
		})
	}
}

// TestReloadKeepsDPoPReplayWindow: a reload keeps tokens.dpop_proof_max_age
// and tokens.dpop_replay_entries. The replay cache is kept across reloads
// and forgets a proof at the until of the verifier that recorded it: a
// longer max age after a reload would accept again, as fresh, the proofs
// accepted before it whose entries had gone.
func TestReloadKeepsDPoPReplayWindow(t *testing.T) {
	var logs strings.Builder
	m := &Main{cfg: Default(), log: slog.New(slog.NewJSONHandler(&logs, nil))}
	cfg := Default()
	cfg.Tokens.DPoPProofMaxAge = Duration(5 * time.Minute)
	cfg.Tokens.DPoPReplayEntries = 2 * auth.DefaultDPoPReplayEntries
	m.keepFixed(&cfg)
	if cfg.Tokens.DPoPProofMaxAge != m.cfg.Tokens.DPoPProofMaxAge || cfg.Tokens.DPoPReplayEntries != m.cfg.Tokens.DPoPReplayEntries {
		t.Errorf("after a reload: max age %v, entries %d; want the start-up %v, %d", cfg.Tokens.DPoPProofMaxAge, cfg.Tokens.DPoPReplayEntries, m.cfg.Tokens.DPoPProofMaxAge, m.cfg.Tokens.DPoPReplayEntries)
	}
	for _, key := range []string{"tokens.dpop_proof_max_age", "tokens.dpop_replay_entries"} {
		if !strings.Contains(logs.String(), `"key":"`+key+`"`) {
			t.Errorf("no warning names %s: %s", key, logs.String())
		}
	}
}
