package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/spa-gateway/gateway/metrics"
)

// A reload reads the configuration file again with loadConfig, the code
// start-up uses (the file decoded strictly, Validate, every file it names
// loaded: keys, users, admin token), then builds a successor Main from it
// by newMain's own steps (buildAuth, then buildServing: the sessions
// service, the proxy, the admin API). Only when all of that succeeded is
// the successor stored in Main.live, in one atomic store: the main
// listener's handler loads it once per request, so a request in flight
// finishes on the Gateway it started on, and the next one sees the new
// routes, users, keys, origins, claims and limits. A failure anywhere leaves live as it was.
//
// What the successor shares instead of rebuilding: the session store (and
// so every session), the metrics, the DPoP replay cache, the tunnel
// registry (open WebSockets stay open and still close with their session),
// and the failed-login limiter unless its settings changed. Settings that
// cannot change without new listeners or a new store (fixedSettings) keep
// their start-up value, and a Warn line names each that differs.

// reloads reloads the configuration with load on each SIGHUP from hup and,
// while the live configuration has server.watch_config, on each change of
// configPath or a file it names, until ctx ends. Reloads run one at a time,
// in this goroutine. With load nil (--dev, no file) a SIGHUP is logged and
// ignored.
func (m *Main) reloads(ctx context.Context, hup <-chan os.Signal, load func() (Config, error), configPath string) {
	w := &fileWatch{}
	w.seen = fingerprint(watchedFiles(configPath, m.cfg))
	for {
		var tick <-chan time.Time
		if live := m.live.Load().cfg.Server; load != nil && live.WatchConfig {
			tick = time.After(time.Duration(live.WatchInterval))
		}
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if load == nil {
				m.log.Warn("signal ignored: serve --dev has no configuration file to reload", "signal", "SIGHUP")
				continue
			}
			m.reload(ctx, load, "signal")
			w.seen = fingerprint(watchedFiles(configPath, m.live.Load().cfg))
		case <-tick:
			if w.changed(fingerprint(watchedFiles(configPath, m.live.Load().cfg))) {
				m.reload(ctx, load, "file_changed")
			}
		}
	}
}

// reload is one reload, cause saying what asked for it ("signal",
// "file_changed"): counted in gateway_config_reloads_total, and on failure
// each problem logged with the key it concerns.
func (m *Main) reload(ctx context.Context, load func() (Config, error), cause string) {
	err := m.reloadFrom(ctx, load)
	if err != nil {
		m.met.ConfigReloads.WithLabelValues(metrics.ReloadFailure).Inc()
		problems := problemsOf(err)
		for _, p := range problems {
			var ce *ConfigError
			if errors.As(p, &ce) {
				m.log.Error("configuration reload: invalid setting", "key", ce.Key, "line", ce.Line, "err", ce.Err.Error())
			} else {
				m.log.Error("configuration reload: invalid setting", "err", p.Error())
			}
		}
		m.log.Error("configuration reload failed: the previous configuration keeps serving",
			"cause", cause, "problems", len(problems))
		return
	}
	m.met.ConfigReloads.WithLabelValues(metrics.ReloadSuccess).Inc()
	m.met.ConfigLastReloadSuccess.Set(float64(m.now().Unix()))
	m.log.Info("configuration reloaded", "cause", cause, "routes", len(m.live.Load().cfg.Route))
}

// reloadFrom loads and builds the next configuration and, if both
// succeed, makes it live.
func (m *Main) reloadFrom(ctx context.Context, load func() (Config, error)) error {
	cfg, err := load()
	if err != nil {
		return err
	}
	m.keepFixed(&cfg)
	n, err := m.successor(cfg)
	if err != nil {
		return err
	}
	prev := m.live.Load()
	m.live.Store(n)
	n.startOIDC(ctx, prev)
	select {
	case m.swapped <- struct{}{}: // watchTunnels moves to n
	default: // it has not yet seen the previous swap, and will load n
	}
	return nil
}

// successor builds the parts of a Main that a reload replaces from cfg,
// by the steps newMain takes, around the parts it keeps of m. Its
// listeners and servers are nil: m's serve it, through m.live.
func (m *Main) successor(cfg Config) (*Main, error) {
	prev := m.live.Load()
	n := &Main{cfg: cfg, now: m.now, log: m.log, store: m.store, reg: m.reg, met: m.met,
		limiter: prev.limiter, replay: m.replay, logoutRC: m.logoutRC, tunnels: m.tunnels}
	if err := n.buildAuth(false); err != nil {
		return nil, err
	}
	n.keepOIDC(prev)
	if l, p := cfg.Login, prev.cfg.Login; l.MaxFailures != p.MaxFailures || l.FailureWindow != p.FailureWindow {
		// The counts were kept against the old limits; the new ones start
		// from none.
		n.limiter = newLimiter(l, n.now)
		m.log.Info("configuration reload: new failed-login limits, failure counts start over",
			"max_failures", l.MaxFailures, "failure_window", l.FailureWindow.String())
	}
	if err := n.buildServing(false); err != nil {
		return nil, err
	}
	return n, nil
}

// fixedSettings are the keys a reload cannot apply: they are read once,
// by the listeners, the servers, the logger, the store and the DPoP
// replay cache, all kept across a reload. Each names its setting by its
// TOML path (a table alone, "log", is all of it), so the key a warning
// names is the setting kept. storeLive lists the [store] keys that are
// read per call and so do change live; every other [store] key is fixed.
var fixedSettings = []string{
	"server.listen", "admin.listen", "admin.pprof",
	"server.tls_cert_file", "server.tls_key_file",
	"server.read_header_timeout", "server.read_timeout", "server.write_timeout", "server.idle_timeout",
	"server.max_header_bytes", "server.shutdown_timeout", "server.drain_delay",
	"log",
	// The DPoP replay cache is kept across reloads, its capacity with it,
	// and forgets a proof at the until of the verifier that recorded it:
	// a longer max age would accept again the proofs of before the reload
	// whose entries had gone.
	"tokens.dpop_proof_max_age", "tokens.dpop_replay_entries",
}

// storeLive are the [store] keys a reload applies; see fixedSettings.
var storeLive = map[string]bool{"write_timeout": true}

// keepFixed gives every fixed setting of cfg its start-up value, and logs
// a warning naming each that differed.
func (m *Main) keepFixed(cfg *Config) {
	keep := func(key string, now, start reflect.Value) {
		if !reflect.DeepEqual(now.Interface(), start.Interface()) {
			m.log.Warn("configuration reload: setting changed but cannot change while serving; kept until a restart", "key", key)
			now.Set(start)
		}
	}
	for _, key := range fixedSettings {
		keep(key, settingAt(cfg, key), settingAt(&m.cfg, key))
	}
	// Every [store] key, by its TOML name, so that keys added to
	// StoreConfig are covered without a list to keep up to date.
	now, start := reflect.ValueOf(&cfg.Store).Elem(), reflect.ValueOf(&m.cfg.Store).Elem()
	for i := range now.NumField() {
		name := now.Type().Field(i).Tag.Get("toml")
		if name != "" && !storeLive[name] {
			keep("store."+name, now.Field(i), start.Field(i))
		}
	}
}

// settingAt is the field of cfg at TOML path key ("server.listen"). A key
// that names no field is a mistake in fixedSettings, and panics.
func settingAt(cfg *Config, key string) reflect.Value {
	v := reflect.ValueOf(cfg).Elem()
	for name := range strings.SplitSeq(key, ".") {
		f, ok := fieldByTag(v.Type(), name)
		if !ok {
			panic("fixedSettings: no setting " + key)
		}
		v = v.FieldByIndex(f.Index)
	}
	return v
}

// watchedFiles are the files a reload reads: the configuration file and
// those it names that a reload applies. The TLS pair and the store's
// files are not among them: they are fixed (fixedSettings).
func watchedFiles(configPath string, cfg Config) []string {
	files := []string{configPath, cfg.Login.UsersFile, cfg.Tokens.KeyFile, cfg.Admin.TokenFile, cfg.Login.OIDC.ClientSecretFile}
	files = append(files, cfg.Tokens.VerifyKeyFiles...)
	return files
}

// fileWatch tells a change of the watched files, debounced: a change is
// reported once the files have kept it for one more poll, so that a file
// caught half written, or a volume update caught between two of its files,
// is not reloaded.
type fileWatch struct {
	seen    string // the fingerprint of the files last reloaded (or started) with
	pending string // a different fingerprint seen at the last poll; "" if none
}

// changed reports whether fp, the files' fingerprint now, is a change to
// reload. A change reported counts as seen whether its reload succeeds or
// not: a broken file is reported once, not at every poll.
func (w *fileWatch) changed(fp string) bool {
	switch {
	case fp == w.seen:
		w.pending = ""
		return false
	case fp != w.pending:
		w.pending = fp
		return false
	}
	w.seen, w.pending = fp, ""
	return true
}

// fingerprint hashes the paths and contents of files ("" entries skipped).
// It reads each through its path every time, so that a symlink repointed,
// as Kubernetes updates a mounted ConfigMap or Secret (the file is a link
// through "..data" to a timestamped directory that is swapped whole), is
// read at its new target: polling the contents needs no directory watch.
// A file that cannot be read hashes as its error, so that its coming
// back counts as a change.
func fingerprint(files []string) string {
	h := sha256.New()
	for _, f := range files {
		if f == "" {
			continue
		}
		h.Write([]byte(f))
		h.Write([]byte{0})
		data, err := os.ReadFile(f)
		if err != nil {
			h.Write([]byte("error: " + err.Error()))
		}
		h.Write(data)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}
