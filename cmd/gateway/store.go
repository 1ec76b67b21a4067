package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/sessionstore"
	"github.com/spa-gateway/gateway/sessionstore/redisstore"
)

// openRedis opens the Redis session store of cfg: it reads the password and
// CA files, then waits for Redis for at most store.redis_connect_timeout.
// A file that does not load is a *ConfigError; Redis not answering is an
// error naming the URL with its password redacted.
func openRedis(ctx context.Context, cfg StoreConfig, log *slog.Logger) (sessionstore.Store, error) {
	opts := &redisstore.Options{
		ConnectTimeout: time.Duration(cfg.RedisConnectTimeout), WriteTimeout: time.Duration(cfg.WriteTimeout),
		MinReplicas: cfg.RedisMinReplicas, ReplicaTimeout: time.Duration(cfg.RedisReplicaTimeout),
	}
	if cfg.RedisPasswordFile != "" {
		pw, err := loadSecretFile(cfg.RedisPasswordFile)
		if err != nil {
			return nil, &ConfigError{Key: "store.redis_password_file", Err: err}
		}
		opts.Password = pw
	}
	if cfg.RedisTLSCAFile != "" {
		pem, err := os.ReadFile(cfg.RedisTLSCAFile)
		if err == nil {
			opts.RootCAs, err = redisstore.CertPool(pem)
		}
		if err != nil {
			return nil, &ConfigError{Key: "store.redis_tls_ca_file", Err: fmt.Errorf("%s: %w", cfg.RedisTLSCAFile, err)}
		}
	}
	// go-redis reports what it cannot return (a pool that fails to dial)
	// through a process-wide logger; route it to ours, as JSON or text like
	// every other line. Its messages name addresses, never passwords.
	redis.SetLogger(redisLogger{log})
	st, err := redisstore.Open(ctx, cfg.URL, opts)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return st, nil
}

// loadSecretFile reads a secret (the Redis password, the OIDC client
// secret) from path, without surrounding whitespace (a trailing newline is
// usual), refusing an empty one. The error never holds the secret.
func loadSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	pw := strings.TrimSpace(string(b))
	if pw == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return pw, nil
}

// redisLogger is go-redis's logger, writing to the gateway's.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client", "detail", fmt.Sprintf(format, v...))
}

// readyPingTimeout bounds the store check of /readyz, well within a
// Kubernetes probe's default one-second timeout.
const readyPingTimeout = 500 * time.Millisecond

// pinger is a store that can tell whether its backend answers: the Redis
// store does; bbolt, a local file, has nothing to ask.
type pinger interface {
	Ping(ctx context.Context) error
}

// pingStore checks st for /readyz: nil when st is no pinger or answers
// within readyPingTimeout.
func pingStore(ctx context.Context, st sessionstore.Store) error {
	p, ok := st.(pinger)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, readyPingTimeout)
	defer cancel()
	return p.Ping(ctx)
}

// dpopReplay is the DPoP proofs' replay cache for the store: with Redis,
// the cache every replica on that Redis shares (a proof accepted at one is
// refused as a replay at the others), behind this replica's memory cache;
// its calls are observed in gateway_store_operation_duration_seconds as
// "dpop_replay". With bbolt, a memory cache of tokens.dpop_replay_entries,
// this process's alone (a bbolt file serves one gateway process; several
// bbolt replicas behind one balancer each refuse only the replays they
// saw themselves). Either is made once and kept across reloads, so that
// a proof accepted before one is still a replay after it.
func (m *Main) dpopReplay() auth.DPoPReplayCache {
	rs, ok := m.store.(*redisstore.Store)
	if !ok {
		return auth.NewMemoryDPoPReplay(m.cfg.Tokens.DPoPReplayEntries, m.now)
	}
	shared := observedReplay{cache: rs.ReplayCache(m.now), hist: m.met.StoreOperationLength.WithLabelValues("dpop_replay")}
	return auth.NewSharedDPoPReplay(shared, auth.NewMemoryDPoPReplay(m.cfg.Tokens.DPoPReplayEntries, m.now))
}

// logoutReplay is the back-channel logout tokens' replay cache: with
// Redis, the one every replica shares (observed as "oidc_logout_replay"),
// so that a logout token accepted at one replica is a replay at the
// others; with bbolt, a memory cache of this process. Either is made once
// and kept across reloads.
func (m *Main) logoutReplay() auth.DPoPReplayCache {
	rs, ok := m.store.(*redisstore.Store)
	if !ok {
		return auth.NewMemoryDPoPReplay(auth.DefaultLogoutReplayEntries, m.now)
	}
	return observedReplay{cache: rs.ReplayCache(m.now), hist: m.met.StoreOperationLength.WithLabelValues("oidc_logout_replay")}
}

// observedReplay is a replay cache whose calls' durations go to hist.
type observedReplay struct {
	cache auth.DPoPReplayCache
	hist  prometheus.Observer
}

func (o observedReplay) Seen(ctx context.Context, id string, until time.Time) (bool, error) {
	start := time.Now()
	seen, err := o.cache.Seen(ctx, id, until)
	o.hist.Observe(time.Since(start).Seconds())
	return seen, err
}
