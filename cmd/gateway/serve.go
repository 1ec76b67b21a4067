package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/metrics"
	"github.com/spa-gateway/gateway/proxy"
	"github.com/spa-gateway/gateway/sessionstore"
	"github.com/spa-gateway/gateway/sessionstore/boltstore"
)

const serveDescription = `Runs the gateway: the main listener (proxy and /auth/ endpoints) and the
admin listener (/healthz, /readyz, /metrics, /admin/). Stops gracefully on
SIGTERM or SIGINT. SIGHUP is logged and ignored (configuration reload is not
supported yet).

With --dev it needs no file: an ephemeral EdDSA key, a store in a temporary
directory, user demo / password demo, and an echo upstream under /api/ that
answers with the headers it received.`

// serve is the "serve" command: parse flags, load the configuration, build
// the gateway, run it until ctx ends.
func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// SIGHUP's default action ends the process (exit 129, no drain), and a
	// systemd reload or a logrotate hook sends it: catch it first, before
	// anything slow, and ignore it until configuration reload exists.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	fs := newFlagSet("serve", "serve --config FILE | serve --dev", serveDescription, stderr)
	configPath := fs.String("config", "", "the TOML configuration `file`")
	dev := fs.Bool("dev", false, "run with built-in defaults and no file (for trying the gateway)")
	listen := fs.String("listen", "", "override server.listen (`host:port`; port 0 picks a free one)")
	adminListen := fs.String("admin-listen", "", "override admin.listen (`host:port`)")
	devAccessTTL := fs.Duration("dev-access-ttl", 0, "with --dev, the access tokens' `lifetime` instead of one minute, and no refresh grace (for tests)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dev == (*configPath != "") {
		fs.Usage()
		return reportedError{usageError{errors.New("serve: give exactly one of --config FILE or --dev")}}
	}
	if *devAccessTTL < 0 || (*devAccessTTL != 0 && !*dev) {
		return usageError{errors.New("serve: --dev-access-ttl needs --dev and a positive duration")}
	}

	var (
		cfg Config
		err error
	)
	if *dev {
		cfg, err = devConfig(*devAccessTTL)
		if err != nil {
			return err
		}
		defer os.RemoveAll(filepath.Dir(cfg.Store.Path))
	} else if cfg, err = loadConfig(*configPath); err != nil {
		return err
	}
	if *listen != "" {
		cfg.Server.Listen = *listen
	}
	if *adminListen != "" {
		cfg.Admin.Listen = *adminListen
	}

	m, err := newMain(cfg, *dev, stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.Listen(); err != nil {
		return err
	}
	hupCtx, stopHup := context.WithCancel(context.Background())
	defer stopHup()
	go m.ignoreHangups(hupCtx, hup)
	if *dev {
		if err := m.printDevTour(ctx, stdout); err != nil {
			return err
		}
	}
	return m.Run(ctx)
}

// Main is the running gateway: everything serve builds, so that tests can
// start and stop it in process.
type Main struct {
	cfg               Config
	log               *slog.Logger
	store             sessionstore.Store
	keys              *auth.KeySet
	minter            *auth.Minter
	sessions          *auth.Sessions
	reg               *prometheus.Registry
	met               *metrics.Metrics
	gw                *proxy.Gateway
	mainSrv, adminSrv *http.Server
	mainLn, adminLn   net.Listener
	ready             atomic.Bool
	echo              *http.Server // --dev only
	closeOnce         sync.Once
}

// newMain builds every part from cfg, opening the store. Close releases what
// it opened, also when it fails half way.
func newMain(cfg Config, dev bool, stderr io.Writer) (*Main, error) {
	return newMainClock(cfg, dev, stderr, time.Now)
}

// newMainClock is newMain with now as the clock of the token and session
// rules (tests move it instead of sleeping).
func newMainClock(cfg Config, dev bool, stderr io.Writer, now func() time.Time) (_ *Main, err error) {
	m := &Main{cfg: cfg, log: cfg.Log.NewLogger(stderr), reg: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	t := cfg.Tokens

	var signing *auth.Key
	if dev {
		signing, err = auth.GenerateKey(t.Algorithm)
	} else {
		signing, err = auth.LoadKey(t.Algorithm, t.KeyFile)
	}
	if err != nil {
		return nil, &ConfigError{Key: "tokens.key_file", Err: err}
	}
	var verify []*auth.Key
	for i, f := range t.VerifyKeyFiles {
		k, err := auth.LoadPublicKey(t.Algorithm, f)
		if err != nil {
			return nil, &ConfigError{Key: fmt.Sprintf("tokens.verify_key_files[%d]", i), Err: err}
		}
		verify = append(verify, k)
	}
	if m.keys, err = auth.NewKeySet(signing, verify...); err != nil {
		return nil, &ConfigError{Key: "tokens.verify_key_files", Err: err}
	}
	verifier, err := auth.NewVerifier(auth.VerifierConfig{
		Keys: m.keys, Algorithm: t.Algorithm, Issuer: t.Issuer, Audience: t.Audience,
		Leeway: time.Duration(t.Leeway), CacheSize: t.VerifyCacheSize, Now: now,
	})
	if err != nil {
		return nil, &ConfigError{Key: "tokens", Err: err}
	}
	m.minter = auth.NewMinter(m.keys, t.Issuer, t.Audience)

	var login auth.Authenticator
	switch {
	case dev:
		login, err = devUsers()
	case cfg.Login.UsersFile != "":
		var uf *auth.UsersFile
		uf, err = auth.LoadUsersFile(cfg.Login.UsersFile, cfg.Login.Roles)
		if err != nil {
			return nil, &ConfigError{Key: "login.users_file", Err: err}
		}
		login = uf
	case cfg.Login.Upstream != "":
		login = &auth.UpstreamLogin{URL: cfg.Login.Upstream, SubjectHeader: cfg.Login.SubjectHeader, Roles: cfg.Login.Roles}
	}
	if err != nil {
		return nil, err
	}

	switch cfg.Store.Backend {
	case BackendBbolt:
		st, err := boltstore.Open(cfg.Store.Path, nil)
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		m.store = st
	case BackendRedis:
		st, err := openRedis(context.Background(), cfg.Store, m.log)
		if err != nil {
			return nil, err
		}
		m.store = st
	default:
		return nil, &ConfigError{Key: "store.backend", Err: fmt.Errorf("%q is not available in this build", cfg.Store.Backend)}
	}

	met, err := metrics.New(m.reg, m.activeSessions)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	m.met = met

	pcfg := proxyConfig(cfg)
	if dev {
		if pcfg.Routes, err = m.startEcho(); err != nil {
			return nil, err
		}
	}
	m.sessions = auth.NewSessions(m.store, m.minter, sessionsConfig(cfg, now, met))
	gw, err := proxy.New(pcfg, proxy.Deps{
		Verifier: verifier,
		Keys:     m.keys,
		Sessions: m.sessions,
		Login:    login,
		Limiter:  auth.NewFailureLimiter(cfg.Login.MaxFailures, time.Duration(cfg.Login.FailureWindow), now),
		Metrics:  met,
		Logger:   m.log,
		Now:      now,
	})
	if err != nil {
		return nil, err
	}
	m.gw = gw

	var handler http.Handler = gw
	if dev {
		if handler, err = devHandler(gw); err != nil { // the demo page at "/"
			return nil, err
		}
	}
	errLog := slog.NewLogLogger(m.log.Handler(), slog.LevelWarn)
	s := cfg.Server
	m.mainSrv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: time.Duration(s.ReadHeaderTimeout),
		ReadTimeout:       time.Duration(s.ReadTimeout),
		WriteTimeout:      time.Duration(s.WriteTimeout),
		IdleTimeout:       time.Duration(s.IdleTimeout),
		MaxHeaderBytes:    s.MaxHeaderBytes,
		ErrorLog:          errLog,
	}
	adminHandler, err := m.adminHandler()
	if err != nil {
		return nil, err
	}
	m.adminSrv = &http.Server{
		Handler:           adminHandler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          errLog,
	}
	return m, nil
}

// proxyConfig maps the validated configuration onto proxy.Config. The
// enumerated keys are proxy's own types, so they are copied as they are.
func proxyConfig(cfg Config) proxy.Config {
	t := cfg.Tokens
	pc := proxy.Config{
		AllowEncodedSlash: cfg.Server.AllowEncodedSlash,
		TrustedProxies:    cfg.TrustedProxyNets(),
		IdentityPrefix:    cfg.Headers.IdentityPrefix,
		OnSpoof:           cfg.Headers.OnSpoof,
		ForwardToken:      cfg.Headers.ForwardToken,
		Claims:            cfg.Headers.Claims,
		Delivery:          t.Delivery,
		CookieName:        t.CookieName,
		AllowedOrigins:    t.AllowedOrigins,
		Revocation:        t.Revocation,
		MaxAuthBodyBytes:  int64(cfg.Login.MaxBodyBytes),
		AuthBodyTimeout:   time.Duration(cfg.Login.BodyTimeout),
	}
	for _, r := range cfg.Route {
		pc.Routes = append(pc.Routes, proxy.Route{
			Prefix:       r.Prefix,
			Upstream:     r.UpstreamURL(),
			Auth:         r.Auth,
			RequireRoles: r.RequireRoles,
			WebSocket:    r.Websocket,
			Timeout:      time.Duration(r.Timeout),
			MaxInFlight:  r.MaxInFlight,

			UpgradeMaxLifetime: time.Duration(r.UpgradeMaxLifetime),
		})
	}
	return pc
}

// sessionsConfig maps the validated configuration onto the session rules,
// with now as their clock and the store's durations observed in
// gateway_store_operation_duration_seconds.
func sessionsConfig(cfg Config, now func() time.Time, met *metrics.Metrics) auth.SessionsConfig {
	t := cfg.Tokens
	return auth.SessionsConfig{
		AccessTTL:           time.Duration(t.AccessTTL),
		IdleTimeout:         time.Duration(t.IdleTimeout),
		AbsoluteTimeout:     time.Duration(t.AbsoluteTimeout),
		RefreshGrace:        time.Duration(t.RefreshGrace),
		RefreshBeforeExpiry: time.Duration(t.RefreshBeforeExpiry),
		MaxSessionsPerUser:  cfg.Login.MaxSessionsPerUser,
		StoreTimeout:        time.Duration(cfg.Store.WriteTimeout),
		Now:                 now,
		ObserveStore: func(op string, d time.Duration) {
			met.StoreOperationLength.WithLabelValues(op).Observe(d.Seconds())
		},
	}
}

// activeSessions feeds gateway_sessions_active from the store's counter.
func (m *Main) activeSessions() float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n, err := m.store.Count(ctx)
	if err != nil {
		return math.NaN()
	}
	return float64(n)
}

// Listen opens both listeners, so that a port in use fails before anything
// is served and ":0" gets its real port (MainAddr, AdminAddr).
func (m *Main) Listen() error {
	var err error
	if m.mainLn, err = net.Listen("tcp", m.cfg.Server.Listen); err != nil {
		return fmt.Errorf("listen on server.listen: %w", err)
	}
	if m.adminLn, err = net.Listen("tcp", m.cfg.Admin.Listen); err != nil {
		return fmt.Errorf("listen on admin.listen: %w", err)
	}
	return nil
}

// MainAddr and AdminAddr are the listeners' addresses, after Listen.
func (m *Main) MainAddr() string  { return m.mainLn.Addr().String() }
func (m *Main) AdminAddr() string { return m.adminLn.Addr().String() }

// Run serves until ctx ends, then shuts down: readiness off first, then,
// after server.drain_delay, the listeners stop accepting and requests in
// flight finish, bounded by server.shutdown_timeout. A listener that fails
// ends Run with its error.
func (m *Main) Run(ctx context.Context) error {
	errc := make(chan error, 2)
	go func() {
		var err error
		if m.cfg.Server.TLS() {
			err = m.mainSrv.ServeTLS(m.mainLn, m.cfg.Server.TLSCertFile, m.cfg.Server.TLSKeyFile)
		} else {
			err = m.mainSrv.Serve(m.mainLn)
		}
		errc <- err
	}()
	go func() { errc <- m.adminSrv.Serve(m.adminLn) }()

	sweepCtx, stopSweep := context.WithCancel(ctx)
	defer stopSweep()
	go m.sweep(sweepCtx)
	go m.gw.WatchTunnels(sweepCtx, time.Duration(m.cfg.Server.UpgradeCheckInterval))

	m.ready.Store(true)
	m.log.Info("listening", "addr", m.MainAddr(), "admin_addr", m.AdminAddr(), "tls", m.cfg.Server.TLS())

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		runErr = fmt.Errorf("serve: %w", runErr)
	}
	m.ready.Store(false)
	if d := time.Duration(m.cfg.Server.DrainDelay); runErr == nil && d > 0 {
		// /readyz answers 503 from now on, while requests are still served:
		// time for load balancers and Kubernetes endpoints to notice before
		// the listeners close.
		m.log.Info("draining", "delay", d.String())
		time.Sleep(d)
	}
	m.log.Info("shutting down", "timeout", m.cfg.Server.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), time.Duration(m.cfg.Server.ShutdownTimeout))
	defer cancel()
	if err := m.mainSrv.Shutdown(sctx); err != nil {
		m.mainSrv.Close()
		m.log.Warn("requests still in flight at the shutdown timeout were cut", "err", err)
	}
	m.adminSrv.Shutdown(sctx)
	stopSweep()
	if err := m.Close(); err != nil && runErr == nil {
		runErr = err
	}
	if runErr == nil {
		m.log.Info("stopped")
	}
	return runErr
}

// ignoreHangups logs each SIGHUP received on hup, and does nothing else,
// until ctx ends.
func (m *Main) ignoreHangups(ctx context.Context, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			m.log.Warn("signal ignored: configuration reload is not supported yet", "signal", "SIGHUP")
		}
	}
}

// sweep removes ended sessions every store.sweep_interval.
func (m *Main) sweep(ctx context.Context) {
	every := time.Duration(m.cfg.Store.SweepInterval)
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := m.store.Sweep(ctx, time.Now())
			switch {
			case err != nil && ctx.Err() == nil:
				m.log.Error("sweep sessions", "err", err)
			case n > 0:
				m.log.Info("swept ended sessions", "count", n)
			}
		}
	}
}

// Close releases the store and the dev echo server. It is safe to call more
// than once.
func (m *Main) Close() error {
	var err error
	m.closeOnce.Do(func() {
		if m.echo != nil {
			m.echo.Close()
		}
		if m.store != nil {
			err = m.store.Close()
		}
	})
	return err
}

// adminHandler serves the admin listener.
func (m *Main) adminHandler() (http.Handler, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !m.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		if err := pingStore(r.Context(), m.store); err != nil {
			http.Error(w, "session store unavailable", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	if m.cfg.Admin.Pprof {
		// Only here, never on the main listener. (Importing net/http/pprof
		// also registers it on http.DefaultServeMux, which nothing serves.)
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	if m.cfg.Admin.TokenFile == "" {
		return mux, nil
	}
	token, err := LoadAdminToken(m.cfg.Admin.TokenFile)
	if err != nil {
		return nil, &ConfigError{Key: "admin.token_file", Err: err}
	}
	mux.Handle("/admin/", requireAdmin(token, m.adminAPI()))
	return mux, nil
}
