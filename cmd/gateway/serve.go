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
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/metrics"
	"github.com/spa-gateway/gateway/proxy"
	"github.com/spa-gateway/gateway/sessionstore"
	"github.com/spa-gateway/gateway/sessionstore/boltstore"
)

const serveDescription = `Runs the gateway: the main listener (proxy and /auth/ endpoints) and the
admin listener (/healthz, /readyz, /metrics, /admin/). Stops gracefully on
SIGTERM or SIGINT. SIGHUP reloads the configuration file and the files it
names (with server.watch_config, so does a change of one of them): a valid
one replaces the routes, users, keys and limits while requests in flight
finish on the old; an invalid one is logged and the old keeps serving.

With --dev it needs no file: an ephemeral EdDSA key, a store in a temporary
directory, user demo / password demo, an echo upstream under /api/ that
answers with the headers it received, and the admin API on with a new token
in the same directory (it prints a "gateway sessions list" line to try).`

// serve is the "serve" command: parse flags, load the configuration, build
// the gateway, run it until ctx ends.
func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// SIGHUP's default action ends the process (exit 129, no drain), and a
	// systemd reload or a logrotate hook sends it: catch it first, before
	// anything slow; once serving, it reloads the configuration.
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
	var reload func() (Config, error) // nil with --dev: no file to read again
	if !*dev {
		reload = func() (Config, error) {
			c, err := loadConfig(*configPath)
			if err != nil {
				return Config{}, err
			}
			// The flags' overrides hold for the reloaded file too, so that
			// they do not read as a change of a setting that cannot change.
			if *listen != "" {
				c.Server.Listen = *listen
			}
			if *adminListen != "" {
				c.Admin.Listen = *adminListen
			}
			return c, nil
		}
	}
	if err := serveConfig(ctx, cfg, *dev, hup, reload, *configPath, stdout, stderr); err != nil {
		// From here on a failure is logged in log.format, so that a JSON
		// log stays JSON lines for the collector that parses it; run then
		// only maps it to its exit code.
		cfg.Log.NewLogger(stderr).Error("serve failed", "err", err)
		return reportedError{err}
	}
	return nil
}

// serveConfig builds the gateway from cfg, listens, and runs it until ctx
// ends. Each SIGHUP arriving on hup, and with server.watch_config each
// change of configPath or of a file it names, reloads the configuration
// from reload (reloads); nil reload (--dev) logs the SIGHUP and ignores it.
func serveConfig(ctx context.Context, cfg Config, dev bool, hup <-chan os.Signal, reload func() (Config, error), configPath string, stdout, stderr io.Writer) error {
	m, err := newMain(cfg, dev, stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.Listen(); err != nil {
		return err
	}
	hupCtx, stopHup := context.WithCancel(context.Background())
	defer stopHup()
	go m.reloads(hupCtx, hup, reload, configPath)
	if dev {
		if err := m.printDevTour(ctx, stdout); err != nil {
			return err
		}
	}
	return m.Run(ctx)
}

// Main is the running gateway: everything serve builds, so that tests can
// start and stop it in process.
//
// A configuration reload builds a new Main from the new configuration
// (successor, reload.go) that shares this one's store, metrics, login
// limiter, DPoP replay cache and tunnel registry, and stores it in live;
// the listeners, the servers and their handlers stay this one's, and
// serve whatever live holds. m.cfg stays the configuration of start-up,
// whose settings that cannot change live (fixedSettings) the successors
// keep.
type Main struct {
	cfg               Config
	now               func() time.Time // the clock of every rule, the sweeper's too
	log               *slog.Logger
	store             sessionstore.Store
	keys              *auth.KeySet
	verifier          *auth.Verifier
	external          map[string]*auth.ExternalVerifier // by name
	minter            *auth.Minter
	login             auth.Authenticator   // nil: /auth/login is left to the routes
	oidc              *auth.OIDC           // nil: no [login.oidc]
	oidcBuiltFrom     string               // oidcFingerprint of what oidc was built from
	stopDiscovery     context.CancelFunc   // ends the discovery of oidc a reload started; nil: none
	logoutRC          auth.DPoPReplayCache // back-channel logout tokens seen; kept across reloads
	sessions          *auth.Sessions
	reg               *prometheus.Registry
	met               *metrics.Metrics
	gw                *proxy.Gateway
	api               http.Handler // the admin API under /admin/; nil: 404
	limiter           *auth.FailureLimiter
	replay            auth.DPoPReplayCache // the DPoP proofs', kept across reloads
	tunnels           *proxy.Tunnels       // the open WebSockets, kept across reloads
	live              atomic.Pointer[Main] // what serves: m itself, or its latest successor
	swapped           chan struct{}        // a reload stored a successor in live
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
// rules (tests move it instead of sleeping). Its steps run in this order,
// each from what the ones before it built; the first that fails ends it,
// and Close then releases what was opened (the store, the --dev echo
// upstream).
func newMainClock(cfg Config, dev bool, stderr io.Writer, now func() time.Time) (_ *Main, err error) {
	m := &Main{cfg: cfg, now: now, log: cfg.Log.NewLogger(stderr), reg: prometheus.NewRegistry(),
		tunnels: &proxy.Tunnels{}, swapped: make(chan struct{}, 1)}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	if err = m.buildAuth(dev); err != nil { // keys, verifier, minter, login source
		return nil, err
	}
	if err = m.openStore(); err != nil {
		return nil, err
	}
	if m.met, err = metrics.New(m.reg, m.activeSessions); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	bv := readBuildVersion()
	m.met.BuildInfo.WithLabelValues(bv.version, bv.goVersion).Set(1)
	m.met.ConfigLastReloadSuccess.Set(float64(now().Unix())) // the configuration loaded at start
	m.logoutRC = m.logoutReplay()
	m.limiter = newLimiter(cfg.Login, now)
	m.replay = m.dpopReplay()
	if err = m.buildServing(dev); err != nil {
		return nil, err
	}
	m.live.Store(m)
	if err = m.buildServers(dev); err != nil {
		return nil, err
	}
	return m, nil
}

// buildAuth loads the signing and verification keys (with dev, generates
// the signing key) and builds the verifier, the minter, the login
// source and the OpenID Connect login. It opens nothing that Close would release.
func (m *Main) buildAuth(dev bool) error {
	t := m.cfg.Tokens
	keys, err := loadKeys(t, dev)
	if err != nil {
		return err
	}
	m.keys = keys
	m.verifier, err = auth.NewVerifier(auth.VerifierConfig{
		Keys: m.keys, Algorithm: t.Algorithm, Issuer: t.Issuer, Audience: t.Audience,
		Leeway: time.Duration(t.Leeway), CacheSize: t.VerifyCacheSize, Now: m.now,
	})
	if err != nil {
		return &ConfigError{Key: "tokens", Err: err}
	}
	m.minter = auth.NewMinter(m.keys, t.Issuer, t.Audience)
	if m.login, err = loginSource(m.cfg.Login, dev); err != nil {
		return err
	}
	return m.buildOIDC()
}

// loadKeys is the key set of t: the signing key of tokens.key_file (with
// dev, a new one) and the public keys of tokens.verify_key_files.
func loadKeys(t TokensConfig, dev bool) (*auth.KeySet, error) {
	var (
		signing *auth.Key
		err     error
	)
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
	keys, err := auth.NewKeySet(signing, verify...)
	if err != nil {
		return nil, &ConfigError{Key: "tokens.verify_key_files", Err: err}
	}
	return keys, nil
}

// loginSource is where /auth/login checks passwords: the --dev user, the
// users file, or the legacy login upstream. Nil (neither configured) means
// the gateway has no login endpoint.
func loginSource(l LoginConfig, dev bool) (auth.Authenticator, error) {
	switch {
	case dev:
		users, err := devUsers()
		if err != nil {
			return nil, err
		}
		return users, nil
	case l.UsersFile != "":
		users, err := auth.LoadUsersFile(l.UsersFile, l.Roles)
		if err != nil {
			return nil, &ConfigError{Key: "login.users_file", Err: err}
		}
		return users, nil
	case l.Upstream != "":
		return &auth.UpstreamLogin{URL: l.Upstream, SubjectHeader: l.SubjectHeader, Roles: l.Roles}, nil
	}
	return nil, nil
}

// openStore opens the session store of store.backend; Close closes it.
func (m *Main) openStore() error {
	switch m.cfg.Store.Backend {
	case BackendBbolt:
		st, err := boltstore.Open(m.cfg.Store.Path, nil)
		if err != nil {
			return fmt.Errorf("open store: %w", err)
		}
		m.store = st
	case BackendRedis:
		st, err := openRedis(context.Background(), m.cfg.Store, m.log)
		if err != nil {
			return err
		}
		m.store = st
	default:
		return &ConfigError{Key: "store.backend", Err: fmt.Errorf("%q is not available in this build", m.cfg.Store.Backend)}
	}
	return nil
}

// buildProxy builds the main listener's handler from the routes of the
// configuration (with dev, the one route to a new echo upstream, which
// Close stops) and the parts buildAuth and the sessions service made.
func (m *Main) buildProxy(dev bool) error {
	cfg := m.cfg
	pcfg := proxyConfig(cfg)
	var err error
	if dev {
		if pcfg.Routes, err = m.startEcho(); err != nil {
			return err
		}
	}
	if m.external, err = externalVerifiers(cfg.Tokens, m.now, m.met); err != nil {
		return err
	}
	dpop, nonces, err := newDPoPVerifier(cfg.Tokens, m.keys.SigningKey(), m.now, m.replay)
	if err != nil {
		return err
	}
	m.gw, err = proxy.New(pcfg, proxy.Deps{
		Verifier:   m.verifier,
		Keys:       m.keys,
		Sessions:   m.sessions,
		Login:      m.login,
		OIDC:       m.oidc,
		Limiter:    m.limiter,
		DPoP:       dpop,
		DPoPNonces: nonces,
		Metrics:    m.met,
		External:   m.external,
		Logger:     m.log,
		Now:        m.now,
		Tunnels:    m.tunnels,
	})
	return err
}

// buildServing builds what serves m's configuration from the parts before
// it (auth, the store, the metrics, the limiter and the replay caches):
// the sessions service, the proxy and the admin API. newMain and a
// reload's successor both end with it, so that a reload rebuilds what
// start-up builds.
func (m *Main) buildServing(dev bool) (err error) {
	m.sessions = m.newSessions()
	if err = m.buildProxy(dev); err != nil {
		return err
	}
	m.api, err = m.adminAPI()
	return err
}

// newLimiter is the failed-login limiter of the [login] settings.
func newLimiter(l LoginConfig, now func() time.Time) *auth.FailureLimiter {
	return auth.NewFailureLimiter(l.MaxFailures, time.Duration(l.FailureWindow), now)
}

// dpopVerifier makes the DPoP proof verifier of the [tokens] settings, and
// with dpop_nonce its nonces. The nonce key is derived from the signing key,
// so that replicas sharing the key file accept each other's nonces (behind a
// round-robin balancer a client would otherwise be refused at every other
// replica); a key rotation changes it, and a client refused an old nonce is
// handed a fresh one (use_dpop_nonce) and retries. Its replay cache is
// this process's memory alone: see newDPoPVerifier.
func dpopVerifier(t TokensConfig, signing *auth.Key, now func() time.Time) (*auth.DPoPVerifier, *auth.DPoPNonces, error) {
	return newDPoPVerifier(t, signing, now, nil)
}

// newDPoPVerifier is dpopVerifier with replay as the proofs' replay cache
// (Main.dpopReplay); nil means a memory cache of t.DPoPReplayEntries.
func newDPoPVerifier(t TokensConfig, signing *auth.Key, now func() time.Time, replay auth.DPoPReplayCache) (*auth.DPoPVerifier, *auth.DPoPNonces, error) {
	var nonces *auth.DPoPNonces
	if t.DPoPNonce {
		key, err := signing.DeriveSecret("dpop nonce")
		if err != nil {
			return nil, nil, &ConfigError{Key: "tokens.dpop_nonce", Err: err}
		}
		if nonces, err = auth.NewDPoPNonces(auth.DPoPNonceConfig{Key: key, Now: now}); err != nil {
			return nil, nil, err
		}
	}
	if replay == nil {
		replay = auth.NewMemoryDPoPReplay(t.DPoPReplayEntries, now)
	}
	var algs []string
	if len(t.DPoPAlgorithms) > 0 {
		algs = t.DPoPAlgorithms
	}
	v, err := auth.NewDPoPVerifier(auth.DPoPConfig{
		Algorithms: algs,
		MaxAge:     time.Duration(t.DPoPProofMaxAge),
		Now:        now,
		Replay:     replay,
		Nonces:     nonces,
	})
	if err != nil {
		return nil, nil, &ConfigError{Key: "tokens.dpop_algorithms", Err: err}
	}
	return v, nonces, nil
}

// buildServers makes the two servers: the main one serves the gateway
// (with dev, behind the demo page at "/") under the server.* timeouts, the
// admin one serves adminRoutes.
func (m *Main) buildServers(dev bool) error {
	var (
		// One atomic load per request picks what a reload stored last;
		// a request keeps the Gateway it started on to its end.
		handler http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m.live.Load().gw.ServeHTTP(w, r)
		})
		err error
	)
	if dev {
		if handler, err = devHandler(m.gw); err != nil {
			return err
		}
	}
	errLog := slog.NewLogLogger(m.log.Handler(), slog.LevelWarn)
	s := m.cfg.Server
	m.mainSrv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: time.Duration(s.ReadHeaderTimeout),
		ReadTimeout:       time.Duration(s.ReadTimeout),
		WriteTimeout:      time.Duration(s.WriteTimeout),
		IdleTimeout:       time.Duration(s.IdleTimeout),
		MaxHeaderBytes:    s.MaxHeaderBytes,
		ErrorLog:          errLog,
	}
	admin, err := m.adminRoutes()
	if err != nil {
		return err
	}
	m.adminSrv = &http.Server{
		Handler:           admin,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          errLog,
	}
	return nil
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
		DPoP:              t.DPoP,
		DPoPNonce:         t.DPoPNonce,
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
			Accept:       r.Accept,
			CORS:         r.CORS,

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
