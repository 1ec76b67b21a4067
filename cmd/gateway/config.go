package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/proxy"
)

// Config is the gateway's whole configuration, one field per key of the TOML
// file (see gateway.example.toml). Default returns it with every default
// filled in; LoadConfig decodes a file over those defaults; Validate checks
// it. The zero Config is not valid.
//
// Relative file paths (tokens.key_file, tokens.verify_key_files,
// login.users_file, admin.token_file, server.tls_cert_file,
// server.tls_key_file, store.path, store.redis_password_file,
// store.redis_tls_ca_file) are resolved by LoadConfig against the
// directory of the configuration file, so that a configuration means the same
// thing whatever the working directory of the process.
type Config struct {
	Server  ServerConfig  `toml:"server"`
	Admin   AdminConfig   `toml:"admin"`
	Tokens  TokensConfig  `toml:"tokens"`
	Store   StoreConfig   `toml:"store"`
	Login   LoginConfig   `toml:"login"`
	Headers HeadersConfig `toml:"headers"`
	Log     LogConfig     `toml:"log"`
	// Route is the list of [[route]] tables. Empty is invalid: the gateway
	// would have nothing to proxy.
	Route []RouteConfig `toml:"route"`
}

// ServerConfig is the [server] table: the main listener.
type ServerConfig struct {
	// Listen is the host:port of the main listener; an empty host listens
	// on every interface.
	Listen string `toml:"listen"`
	// ShutdownTimeout bounds how long requests in flight may finish after
	// SIGTERM or SIGINT.
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	// DrainDelay is how long, after SIGTERM or SIGINT, the gateway keeps
	// serving with /readyz already answering 503, before its listeners
	// stop accepting: time for a load balancer or Kubernetes
	// to take it out of its endpoints. Zero stops accepting at once.
	DrainDelay Duration `toml:"drain_delay"`
	// AllowEncodedSlash forwards %2F in paths as is; false answers 400.
	AllowEncodedSlash bool `toml:"allow_encoded_slash"`
	// MaxHeaderBytes bounds the request headers; larger ones get 431.
	MaxHeaderBytes int `toml:"max_header_bytes"`
	// TrustedProxies are CIDRs ("10.0.0.0/8") or single addresses
	// ("10.1.2.3", meaning /32 or /128) whose forwarding headers are kept.
	// Empty trusts no one. Use TrustedProxyNets for the parsed form.
	TrustedProxies []string `toml:"trusted_proxies"`
	// TLSCertFile and TLSKeyFile, both set, serve HTTPS; both empty serve
	// plain HTTP (behind a TLS-terminating proxy).
	TLSCertFile string `toml:"tls_cert_file"`
	TLSKeyFile  string `toml:"tls_key_file"`

	// ReadHeaderTimeout is http.Server.ReadHeaderTimeout; it
	// must be positive, as it is the slow-loris guard.
	ReadHeaderTimeout Duration `toml:"read_header_timeout"`
	// ReadTimeout is http.Server.ReadTimeout; zero means none.
	ReadTimeout Duration `toml:"read_timeout"`
	// WriteTimeout is http.Server.WriteTimeout; zero means none.
	// A non-zero value also cuts long downloads and WebSocket connections.
	WriteTimeout Duration `toml:"write_timeout"`
	// IdleTimeout is http.Server.IdleTimeout for keep-alive connections
	//; zero means none.
	IdleTimeout Duration `toml:"idle_timeout"`
	// UpgradeCheckInterval is how often the sessions of open upgraded
	// connections (WebSockets) are read from the store: a connection whose
	// session ended where this gateway did not see it (revoked on another
	// replica, past its idle deadline) is closed within it. It must be
	// positive; each check reads one session per session with an open
	// connection, and nothing when there is none.
	UpgradeCheckInterval Duration `toml:"upgrade_check_interval"`

	// WatchConfig reloads the configuration, as SIGHUP does, when the
	// configuration file or a file it names (watchedFiles) changes
	// content, a Kubernetes symlink swap of a mounted volume included.
	// False reloads on SIGHUP only.
	WatchConfig bool `toml:"watch_config"`
	// WatchInterval is how often, with WatchConfig, the files are read and
	// compared; a change is reloaded once it has stayed for one interval.
	WatchInterval Duration `toml:"watch_interval"`
}

// AdminConfig is the [admin] table: the second listener, for /metrics,
// /healthz, /readyz and /admin/.
type AdminConfig struct {
	// Listen is the host:port of the admin listener.
	Listen string `toml:"listen"`
	// TokenFile holds the bearer token for /admin/ (see LoadAdminToken).
	// Empty disables /admin/: it answers 404.
	TokenFile string `toml:"token_file"`
	// Pprof serves Go's profiler (net/http/pprof) under /debug/pprof/ on
	// the admin listener, for finding where CPU time and
	// allocations go under load. False answers 404. Anyone who reaches the
	// admin listener can then take profiles, which cost CPU while they run.
	Pprof bool `toml:"pprof"`
}

// TokensConfig is the [tokens] table: how access tokens are minted, carried
// and verified.
type TokensConfig struct {
	Issuer   string `toml:"issuer"`
	Audience string `toml:"audience"`
	// Algorithm is one of auth.EdDSA, auth.ES256, auth.RS256, auth.HS256.
	Algorithm string `toml:"algorithm"`
	// KeyFile is the private key PEM, or the HMAC secret for HS256.
	KeyFile string `toml:"key_file"`
	// VerifyKeyFiles are extra keys of the same algorithm that verify
	// tokens but never sign them, for key rotation. Empty means
	// only KeyFile.
	VerifyKeyFiles []string `toml:"verify_key_files"`

	AccessTTL           Duration `toml:"access_ttl"`
	IdleTimeout         Duration `toml:"idle_timeout"`
	AbsoluteTimeout     Duration `toml:"absolute_timeout"`
	RefreshGrace        Duration `toml:"refresh_grace"`
	RefreshBeforeExpiry Duration `toml:"refresh_before_expiry"`
	Leeway              Duration `toml:"leeway"`

	// Delivery is proxy.DeliveryBearer, DeliveryCookie or DeliveryBoth.
	Delivery   proxy.Delivery `toml:"delivery"`
	CookieName string         `toml:"cookie_name"`
	// AllowedOrigins are "scheme://host[:port]" origins, besides the
	// request's own, allowed on cookie-authenticated state-changing
	// requests. Empty allows only the request's own.
	AllowedOrigins []string `toml:"allowed_origins"`
	// Revocation is proxy.RevocationRefresh or RevocationEveryRequest.
	Revocation proxy.Revocation `toml:"revocation"`
	// VerifyCacheSize is how many verified tokens are remembered, so that
	// a token presented again has its signature checked once, not on every
	// request (see auth.VerifierConfig.CacheSize). Zero
	// disables the cache. The every_request revocation check is made on
	// every request all the same.
	VerifyCacheSize int `toml:"verify_cache_size"`

	// DPoP is proxy.DPoPOff, DPoPAllowed or DPoPRequired: whether a login
	// with a DPoP proof (RFC 9449) binds its session to the client's key.
	DPoP proxy.DPoPMode `toml:"dpop"`
	// DPoPNonce makes the gateway hand out DPoP-Nonce values and require
	// them in proofs (RFC 9449 section 8).
	DPoPNonce bool `toml:"dpop_nonce"`
	// DPoPAlgorithms are the proof algorithms accepted: auth.ES256 and
	// auth.EdDSA. Empty means both.
	DPoPAlgorithms []string `toml:"dpop_algorithms"`
	// DPoPProofMaxAge is how old a proof's iat may be, and how long its
	// jti is remembered against replay.
	DPoPProofMaxAge Duration `toml:"dpop_proof_max_age"`
	// DPoPReplayEntries is the capacity of this process's memory replay
	// cache (auth.MemoryDPoPReplay, about 80 bytes an entry): it holds
	// dpop_proof_max_age of proofs up to DPoPReplayEntries/max_age a
	// second, and beyond that shrinks its window rather than refuse.
	DPoPReplayEntries int `toml:"dpop_replay_entries"`

	// External are the [[tokens.external]] tables: other issuers whose
	// tokens routes may accept (see external.go). Empty means none.
	External []ExternalTokensConfig `toml:"external"`
}

// StoreConfig is the [store] table: where sessions live.
type StoreConfig struct {
	// Backend is BackendBbolt or BackendRedis.
	Backend StoreBackend `toml:"backend"`
	// Path is the bbolt file.
	Path string `toml:"path"`
	// URL is the Redis of the redis backend, in one of the forms
	// redisstore.Open accepts: redis://host:port/db, rediss://...,
	// redis+sentinel://..., redis+cluster://...
	URL string `toml:"url"`
	// SweepInterval is how often ended sessions are deleted.
	SweepInterval Duration `toml:"sweep_interval"`
	// RedisPasswordFile holds the Redis password (surrounding whitespace
	// ignored), which then replaces the URL's. Empty means the URL's, if
	// any.
	RedisPasswordFile string `toml:"redis_password_file"`
	// RedisTLSCAFile holds the PEM certificates of the CAs that verify a
	// rediss server. Empty means the system's.
	RedisTLSCAFile string `toml:"redis_tls_ca_file"`
	// RedisConnectTimeout bounds how long serve waits for Redis at start-up
	// before it fails.
	RedisConnectTimeout Duration `toml:"redis_connect_timeout"`
	// WriteTimeout bounds each session store call but the every_request
	// read: the writes of login, refresh, logout and the admin API (one not
	// done within it answers 503 and never applies afterwards), the session
	// lists, and the WebSocket session checks.
	WriteTimeout Duration `toml:"write_timeout"`

	// RedisMinReplicas is how many Redis replicas must have each session
	// change (WAIT) before it is reported done; fewer within
	// RedisReplicaTimeout answer 503 (see redisstore.Options.MinReplicas).
	// Zero means none: the master's answer is enough.
	RedisMinReplicas int `toml:"redis_min_replicas"`
	// RedisReplicaTimeout is how long a change waits for
	// RedisMinReplicas; it must be below WriteTimeout.
	RedisReplicaTimeout Duration `toml:"redis_replica_timeout"`
}

// LoginConfig is the [login] table. With neither UsersFile nor Upstream set,
// login is disabled (/auth/login answers 404) and the gateway only verifies
// and refreshes tokens minted elsewhere with the same keys and store.
type LoginConfig struct {
	// UsersFile is an htpasswd file of bcrypt hashes.
	UsersFile string `toml:"users_file"`
	// Upstream is a legacy login URL the credentials are forwarded to.
	Upstream string `toml:"upstream"`
	// SubjectHeader names the user in the upstream's 2xx answer.
	SubjectHeader string `toml:"subject_header"`
	// MaxFailures failed logins per username, and per client address,
	// within FailureWindow are allowed; past them 429. An attempt counts
	// from before its password is checked, so logins in flight count too.
	MaxFailures   int      `toml:"max_failures"`
	FailureWindow Duration `toml:"failure_window"`
	// MaxBodyBytes bounds the body of POST /auth/login, /auth/refresh and
	// /auth/logout: a larger one, declared or sent, gets 413.
	MaxBodyBytes int `toml:"max_body_bytes"`
	// MaxSessionsPerUser caps a user's live sessions: the login past it
	// revokes the user's least recently refreshed sessions. Zero means no
	// cap.
	MaxSessionsPerUser int `toml:"max_sessions_per_user"`
	// BodyTimeout bounds the time to receive the body of POST /auth/login
	//, whatever server.read_timeout says: past it 408.
	BodyTimeout Duration `toml:"body_timeout"`
	// Roles maps a user to the roles minted in the "roles" claim. Nil or
	// empty means nobody has roles.
	Roles map[string][]string `toml:"roles"`
	// OIDC is [login.oidc], the OpenID Connect login; its zero Issuer
	// means none.
	OIDC OIDCConfig `toml:"oidc"`
}

// HeadersConfig is the [headers] table: identity headers toward upstreams.
type HeadersConfig struct {
	// IdentityPrefix: every client header under it is removed.
	IdentityPrefix string `toml:"identity_prefix"`
	// OnSpoof is proxy.SpoofStrip or SpoofReject.
	OnSpoof      proxy.SpoofAction `toml:"on_spoof"`
	ForwardToken bool              `toml:"forward_token"`
	// Claims maps a header to inject to the claim it comes from. A
	// [headers.claims] table in the file replaces the default one as a
	// whole; an empty table injects nothing.
	Claims map[string]string `toml:"claims"`
}

// LogConfig is the [log] table.
type LogConfig struct {
	// Level is "debug", "info", "warn" or "error".
	Level string `toml:"level"`
	// Format is "json" or "text".
	Format string `toml:"format"`
}

// RouteConfig is one [[route]] table. DefaultRoute gives the defaults of
// the keys a table leaves out.
type RouteConfig struct {
	// Prefix is the path prefix; the longest matching one wins.
	Prefix string `toml:"prefix"`
	// Upstream is the backend's base URL. Use UpstreamURL for the parsed
	// form.
	Upstream string `toml:"upstream"`
	// Auth is proxy.AuthRequired, AuthOptional or AuthNone.
	Auth proxy.AuthMode `toml:"auth"`
	// RequireRoles: 403 unless the token's roles hold one of them. Empty
	// means any valid token.
	RequireRoles []string `toml:"require_roles"`
	Websocket    bool     `toml:"websocket"`
	// UpgradeMaxLifetime closes an upgraded connection this long after its
	// upgrade (needs Websocket). Zero means no cap but the session's end,
	// which closes every connection of the session anyway.
	UpgradeMaxLifetime Duration `toml:"upgrade_max_lifetime"`
	// Timeout bounds the wait for the upstream's response headers; past it
	// 504.
	Timeout Duration `toml:"timeout"`
	// MaxInFlight bounds the requests forwarded to the upstream at once
	//; one more gets 503 at once. Zero means no limit.
	MaxInFlight int `toml:"max_in_flight"`
	// Accept names the issuers whose tokens the route takes: "gateway"
	// for the gateway's own, and names of [[tokens.external]]. Empty
	// means ["gateway"].
	Accept []string `toml:"accept"`
	// CORS answers preflights at the gateway and grants CORS, with
	// credentials, to tokens.allowed_origins on this route (proxy.Route.CORS).
	CORS bool `toml:"cors"`
}

// StoreBackend is the store.backend key: where sessions live. Like the
// enumerated keys of package proxy (proxy.Delivery, ...), it decodes from
// its configuration word and refuses any other, naming the allowed ones.
// The zero value is not valid.
type StoreBackend string

// The values of StoreBackend.
const (
	BackendBbolt StoreBackend = "bbolt" // a local file (boltstore)
	BackendRedis StoreBackend = "redis" // a Redis server (redisstore)
)

// backendWords are the values of StoreBackend, as written.
var backendWords = []string{string(BackendBbolt), string(BackendRedis)}

// String returns b as written in the configuration.
func (b StoreBackend) String() string { return string(b) }

// MarshalText returns b's configuration word, or an error naming the
// allowed words if b is none of them.
func (b StoreBackend) MarshalText() ([]byte, error) {
	if !slices.Contains(backendWords, string(b)) {
		return nil, fmt.Errorf("%q is not one of %s", string(b), strings.Join(backendWords, ", "))
	}
	return []byte(b), nil
}

// UnmarshalText sets b from its configuration word, bbolt or redis. Any
// other text is an error naming the allowed words, and leaves b as it was.
func (b *StoreBackend) UnmarshalText(text []byte) error {
	v := StoreBackend(text)
	if _, err := v.MarshalText(); err != nil {
		return err
	}
	*b = v
	return nil
}

// Default returns the configuration gateway.example.toml documents, with every key at its
// default, and no route. Its maps and slices are fresh on every call.
func Default() Config {
	return Config{
		Server: ServerConfig{
			Listen:               "127.0.0.1:8080",
			ShutdownTimeout:      Duration(15 * time.Second),
			MaxHeaderBytes:       32768,
			TrustedProxies:       []string{},
			ReadHeaderTimeout:    Duration(10 * time.Second),
			IdleTimeout:          Duration(120 * time.Second),
			UpgradeCheckInterval: Duration(10 * time.Second),
			WatchInterval:        Duration(2 * time.Second),
		},
		Admin: AdminConfig{Listen: "127.0.0.1:9090"},
		Tokens: TokensConfig{
			Issuer:            "gateway",
			Audience:          "api",
			Algorithm:         auth.EdDSA,
			KeyFile:           "signing.pem",
			VerifyKeyFiles:    []string{},
			AccessTTL:         Duration(15 * time.Minute),
			IdleTimeout:       Duration(time.Hour),
			AbsoluteTimeout:   Duration(24 * time.Hour),
			RefreshGrace:      Duration(10 * time.Second),
			Delivery:          proxy.DeliveryBearer,
			CookieName:        "__Host-gateway",
			AllowedOrigins:    []string{},
			Revocation:        proxy.RevocationRefresh,
			VerifyCacheSize:   10_000,
			DPoP:              proxy.DPoPAllowed,
			DPoPAlgorithms:    auth.DPoPAlgorithms(),
			DPoPProofMaxAge:   Duration(auth.DefaultDPoPMaxAge),
			DPoPReplayEntries: auth.DefaultDPoPReplayEntries,
		},
		Store: StoreConfig{
			Backend:             BackendBbolt,
			Path:                "gateway.db",
			SweepInterval:       Duration(time.Minute),
			RedisConnectTimeout: Duration(10 * time.Second),
			WriteTimeout:        Duration(3 * time.Second),
			RedisReplicaTimeout: Duration(time.Second),
		},
		Login: LoginConfig{
			SubjectHeader:      "X-Auth-Subject",
			MaxFailures:        5,
			FailureWindow:      Duration(time.Minute),
			MaxBodyBytes:       64 << 10,
			BodyTimeout:        Duration(10 * time.Second),
			Roles:              map[string][]string{},
			MaxSessionsPerUser: 50,
			OIDC:               defaultOIDC(),
		},
		Headers: HeadersConfig{
			IdentityPrefix: "X-Auth-",
			OnSpoof:        proxy.SpoofStrip,
			Claims: map[string]string{
				"X-Auth-Subject": "sub",
				"X-Auth-Roles":   "roles",
			},
		},
		Log: LogConfig{Level: "info", Format: "json"},
	}
}

// DefaultRoute returns the defaults of a [[route]] table's keys; Prefix and
// Upstream have none.
func DefaultRoute() RouteConfig {
	return RouteConfig{Auth: proxy.AuthRequired, RequireRoles: []string{}, Timeout: Duration(30 * time.Second),
		Accept: []string{proxy.AcceptGateway}}
}

// Duration is a time.Duration written in TOML as a Go duration string
// ("15m", "1h30m", "0s"). Convert with time.Duration(d).
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("invalid duration %q: write a Go duration such as \"90s\", \"15m\" or \"1h30m\"", text)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes d as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// String is time.Duration's String.
func (d Duration) String() string { return time.Duration(d).String() }

// ConfigError is one problem with a configuration: the key it concerns, the
// line where the parser knows it, and what is wrong. LoadConfig and Validate
// return them, one or several joined with errors.Join; the CLI maps any error
// holding a *ConfigError to exit code 2.
type ConfigError struct {
	// Key is the dotted key ("tokens.algorithm", "route[1].upstream");
	// empty for a problem of the whole file (unreadable, bad syntax).
	Key string
	// Line is the 1-based line in the file; 0 when unknown.
	Line int
	Err  error
}

// Error returns "key (line N): message", leaving out what is unknown.
func (e *ConfigError) Error() string {
	msg := e.Err.Error()
	var pe toml.ParseError
	if errors.As(e.Err, &pe) {
		msg = pe.Message
	}
	switch {
	case e.Key != "" && e.Line > 0:
		return fmt.Sprintf("%s (line %d): %s", e.Key, e.Line, msg)
	case e.Key != "":
		return e.Key + ": " + msg
	case e.Line > 0:
		return fmt.Sprintf("line %d: %s", e.Line, msg)
	}
	return msg
}

// Unwrap returns Err.
func (e *ConfigError) Unwrap() error { return e.Err }

// TrustedProxyNets returns server.trusted_proxies parsed. Entries Validate
// would refuse are left out, so call it on a validated Config.
func (c *Config) TrustedProxyNets() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range c.Server.TrustedProxies {
		if p, err := parseTrustedProxy(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// TLS reports whether the main listener serves HTTPS.
func (s ServerConfig) TLS() bool { return s.TLSCertFile != "" && s.TLSKeyFile != "" }

// UpstreamURL returns the route's upstream parsed, or nil when Validate
// would refuse it.
func (r RouteConfig) UpstreamURL() *url.URL {
	if checkUpstream(r.Upstream) != nil {
		return nil
	}
	u, _ := url.Parse(r.Upstream)
	return u
}

// SlogLevel returns log.level as a slog.Level; unknown values are Info.
func (l LogConfig) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// NewLogger returns a logger writing to w in log.format at log.level;
// unknown formats are JSON.
func (l LogConfig) NewLogger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.SlogLevel()}
	if l.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// minAdminToken is the shortest admin token LoadAdminToken accepts: a
// bearer token that guards session revocation must not be guessable.
const minAdminToken = 16

// LoadAdminToken reads the admin bearer token from path, without
// surrounding whitespace (a trailing newline is usual). It refuses a token
// shorter than 16 bytes. The error never contains the token.
func LoadAdminToken(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	tok := []byte(strings.TrimSpace(string(b)))
	if len(tok) < minAdminToken {
		return nil, fmt.Errorf("%s: the token is %d bytes, use at least %d (e.g. head -c 32 /dev/urandom | base64)", path, len(tok), minAdminToken)
	}
	return tok, nil
}
