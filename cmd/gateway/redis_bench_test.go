package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/spa-gateway/gateway/proxy"
	"github.com/spa-gateway/gateway/sessionstore/redisstore/redistest"
)

// storeBackends are the stores the HTTP benchmarks compare: bbolt (fsync on
// every change), and Redis with an append-only file fsynced every second
// (the usual setting) or before every reply (bbolt's durability).
var storeBackends = []struct {
	name  string
	redis []string // redis-server arguments; nil means bbolt
}{
	{"bbolt", nil},
	{"redis-aof-everysec", []string{"--appendonly", "yes", "--appendfsync", "everysec"}},
	{"redis-aof-always", redistest.Persistent},
}

// benchGateway runs a Main in process on the given store, with a route
// /api/ to an upstream answering 200, every_request revocation and tokens
// that may be refreshed at once, and returns its base URL.
func benchGateway(b *testing.B, redisArgs []string) string {
	b.Helper()
	dir := b.TempDir()
	upstream := okUpstream(b)
	cfg := Default()
	cfg.Server.Listen, cfg.Admin.Listen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Tokens.KeyFile = writeKey(b, dir, "signing.pem", "EdDSA")
	cfg.Tokens.AccessTTL = Duration(10 * time.Second)
	cfg.Tokens.RefreshBeforeExpiry = Duration(9999 * time.Millisecond)
	cfg.Tokens.RefreshGrace = Duration(time.Second)
	cfg.Tokens.Revocation = proxy.RevocationEveryRequest
	hash, err := bcrypt.GenerateFromPassword([]byte("wonderland"), bcrypt.MinCost)
	if err != nil {
		b.Fatal(err)
	}
	cfg.Login.UsersFile = filepath.Join(dir, "users")
	if err := os.WriteFile(cfg.Login.UsersFile, []byte("alice:"+string(hash)+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg.Store.Path = filepath.Join(dir, "sessions.db")
	if redisArgs != nil {
		cfg.Store.Backend, cfg.Store.URL = BackendRedis, redistest.Start(b, redisArgs...).URL(0)
	}
	r := DefaultRoute()
	r.Prefix, r.Upstream = "/api/", upstream
	cfg.Route = []RouteConfig{r}
	cfg.Log.Level = "error"
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	m, err := newMain(cfg, false, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Listen(); err != nil {
		m.Close()
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	return "http://" + m.MainAddr()
}

// BenchmarkRefresh is one POST /auth/refresh, end to end over HTTP: verify,
// rotate in the store, mint.
func BenchmarkRefresh(b *testing.B) {
	for _, be := range storeBackends {
		b.Run(be.name, func(b *testing.B) {
			g := &gw{t: b, base: benchGateway(b, be.redis), client: &http.Client{}}
			tok := g.mustLogin()
			for b.Loop() {
				tok = g.mustRefresh(tok)
			}
		})
	}
}

// BenchmarkEveryRequest is one proxied GET under revocation =
// "every_request": verify, read the session from the store, forward.
func BenchmarkEveryRequest(b *testing.B) {
	for _, be := range storeBackends[:2] { // reads do not fsync: one Redis is enough
		b.Run(be.name, func(b *testing.B) {
			g := &gw{t: b, base: benchGateway(b, be.redis), client: &http.Client{}}
			tok := g.mustLogin()
			for b.Loop() {
				if code := g.api(tok); code != http.StatusOK {
					b.Fatalf("GET /api/x: status %d", code)
				}
			}
		})
	}
}
