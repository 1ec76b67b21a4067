package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/sessionstore/redisstore"
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

	// Delivery is DeliveryBearer, DeliveryCookie or DeliveryBoth.
	Delivery   string `toml:"delivery"`
	CookieName string `toml:"cookie_name"`
	// AllowedOrigins are "scheme://host[:port]" origins, besides the
	// request's own, allowed on cookie-authenticated state-changing
	// requests. Empty allows only the request's own.
	AllowedOrigins []string `toml:"allowed_origins"`
	// Revocation is RevocationRefresh or RevocationEveryRequest.
	Revocation string `toml:"revocation"`
	// VerifyCacheSize is how many verified tokens are remembered, so that
	// a token presented again has its signature checked once, not on every
	// request (see auth.VerifierConfig.CacheSize). Zero
	// disables the cache. The every_request revocation check is made on
	// every request all the same.
	VerifyCacheSize int `toml:"verify_cache_size"`
}

// StoreConfig is the [store] table: where sessions live.
type StoreConfig struct {
	// Backend is BackendBbolt or BackendRedis.
	Backend string `toml:"backend"`
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
	// WriteTimeout bounds each session write of login, refresh, logout and
	// the admin API: a write not done within it answers 503 and never
	// applies afterwards.
	WriteTimeout Duration `toml:"write_timeout"`
}

// LoginConfig is the [login] table. With neither UsersFile nor Upstream set,
// login is disabled (/auth/login answers 404) and the gateway only verifies
// and refreshes tokens minted elsewhere with the same keys and store.
type LoginConfig struct {
	// UsersFile is an htpasswd file of bcrypt hashes.
	UsersFile string `toml:"users_file"`
	// Upstream is a legacy login URL the credentials are forwarded to.
	// Use UpstreamURL for the parsed form.
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
}

// HeadersConfig is the [headers] table: identity headers toward upstreams.
type HeadersConfig struct {
	// IdentityPrefix: every client header under it is removed.
	IdentityPrefix string `toml:"identity_prefix"`
	// OnSpoof is SpoofStrip or SpoofReject.
	OnSpoof      string `toml:"on_spoof"`
	ForwardToken bool   `toml:"forward_token"`
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
	// Auth is AuthRequired, AuthOptional or AuthNone.
	Auth string `toml:"auth"`
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
}

// Values of the enumerated keys.
const (
	DeliveryBearer = "bearer"
	DeliveryCookie = "cookie"
	DeliveryBoth   = "both"

	RevocationRefresh      = "refresh"
	RevocationEveryRequest = "every_request"

	BackendBbolt = "bbolt"
	BackendRedis = "redis"

	SpoofStrip  = "strip"
	SpoofReject = "reject"

	AuthRequired = "required"
	AuthOptional = "optional"
	AuthNone     = "none"
)

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
		},
		Admin: AdminConfig{Listen: "127.0.0.1:9090"},
		Tokens: TokensConfig{
			Issuer:          "gateway",
			Audience:        "api",
			Algorithm:       auth.EdDSA,
			KeyFile:         "signing.pem",
			VerifyKeyFiles:  []string{},
			AccessTTL:       Duration(15 * time.Minute),
			IdleTimeout:     Duration(time.Hour),
			AbsoluteTimeout: Duration(24 * time.Hour),
			RefreshGrace:    Duration(10 * time.Second),
			Delivery:        DeliveryBearer,
			CookieName:      "__Host-gateway",
			AllowedOrigins:  []string{},
			Revocation:      RevocationRefresh,
			VerifyCacheSize: 10_000,
		},
		Store: StoreConfig{
			Backend:             BackendBbolt,
			Path:                "gateway.db",
			SweepInterval:       Duration(time.Minute),
			RedisConnectTimeout: Duration(10 * time.Second),
			WriteTimeout:        Duration(3 * time.Second),
		},
		Login: LoginConfig{
			SubjectHeader:      "X-Auth-Subject",
			MaxFailures:        5,
			FailureWindow:      Duration(time.Minute),
			MaxBodyBytes:       64 << 10,
			BodyTimeout:        Duration(10 * time.Second),
			Roles:              map[string][]string{},
			MaxSessionsPerUser: 50,
		},
		Headers: HeadersConfig{
			IdentityPrefix: "X-Auth-",
			OnSpoof:        SpoofStrip,
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
	return RouteConfig{Auth: AuthRequired, RequireRoles: []string{}, Timeout: Duration(30 * time.Second)}
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

// LoadConfig reads the TOML file at path over Default and returns the
// result, with relative file paths resolved against path's directory. It
// does not Validate. Every error it returns holds one or more *ConfigError:
// an unreadable file, a syntax error (with its line), unknown keys (keys are
// case-sensitive), values of the wrong type and bad durations, all reported
// at once and each naming its key.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, &ConfigError{Err: err}
	}
	// A first, loose pass gives the shape of the document: it reports
	// syntax errors, lets checkShape name every misplaced key and wrong
	// type at once, and tells which defaults the strict pass must not
	// merge into (routes, headers.claims).
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		ce := &ConfigError{Err: err}
		var pe toml.ParseError
		if errors.As(err, &pe) {
			ce.Line = pe.Position.Line
		}
		return Config{}, ce
	}
	errs := checkShape("", raw, reflect.TypeFor[Config]())

	cfg := Default()
	if routes, ok := asArray(raw["route"]); ok {
		// The decoder reuses the elements of a slice that is long enough,
		// so each [[route]] decodes over DefaultRoute.
		cfg.Route = make([]RouteConfig, len(routes))
		for i := range cfg.Route {
			cfg.Route[i] = DefaultRoute()
		}
	}
	if h, ok := raw["headers"].(map[string]any); ok {
		if _, ok := h["claims"]; ok {
			cfg.Headers.Claims = nil // replace, do not merge into, the default claims
		}
	}
	md, err := toml.Decode(string(data), &cfg)
	switch {
	case err != nil:
		errs = mergeDecodeError(errs, err)
	case len(errs) == 0:
		// Backstop: checkShape should already have named these.
		for _, k := range md.Undecoded() {
			errs = append(errs, &ConfigError{Key: k.String(), Err: errors.New("unknown key")})
		}
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	cfg.resolvePaths(filepath.Dir(path))
	return cfg, nil
}

// mergeDecodeError adds what the strict decoder found to checkShape's
// problems. Its only structured errors are bad durations (a
// toml.ParseError with the key and its line): the line is attached to
// checkShape's problem for that key, except inside arrays of tables, where
// the decoder's key has no index and its line is that of the last element.
func mergeDecodeError(problems []error, err error) []error {
	var pe toml.ParseError
	if errors.As(err, &pe) && pe.LastKey != "" {
		for _, p := range problems {
			if ce, ok := p.(*ConfigError); ok && ce.Key == pe.LastKey && ce.Line == 0 {
				ce.Line = pe.Position.Line
				return problems
			}
		}
	}
	if len(problems) > 0 {
		return problems // checkShape saw the same document and named the keys
	}
	ce := &ConfigError{Err: err}
	if errors.As(err, &pe) {
		ce.Key, ce.Line = pe.LastKey, pe.Position.Line
	}
	return append(problems, ce)
}

var durationType = reflect.TypeFor[Duration]()

// checkShape compares the loosely decoded value v of key with the Go type t
// it must decode into, and names every unknown key, wrong type and bad
// duration. It knows the kinds Config uses; a field of another kind is
// reported, so that a test of the example file catches it.
func checkShape(key string, v any, t reflect.Type) []error {
	bad := func(format string, args ...any) []error {
		return []error{&ConfigError{Key: key, Err: fmt.Errorf(format, args...)}}
	}
	if t == durationType {
		s, ok := v.(string)
		if !ok {
			return bad("must be a duration string such as \"15m\", not %s", tomlTypeName(v))
		}
		var d Duration
		if err := d.UnmarshalText([]byte(s)); err != nil {
			return bad("%w", err)
		}
		return nil
	}
	var errs []error
	switch t.Kind() {
	case reflect.String:
		if _, ok := v.(string); !ok {
			return bad("must be a string, not %s", tomlTypeName(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return bad("must be true or false, not %s", tomlTypeName(v))
		}
	case reflect.Int:
		if _, ok := v.(int64); !ok {
			return bad("must be an integer, not %s", tomlTypeName(v))
		}
	case reflect.Slice:
		arr, ok := asArray(v)
		if !ok {
			if t.Elem().Kind() == reflect.Struct {
				return bad("must be an array of tables ([[%s]]), not %s", key, tomlTypeName(v))
			}
			return bad("must be an array, not %s", tomlTypeName(v))
		}
		for i, e := range arr {
			errs = append(errs, checkShape(fmt.Sprintf("%s[%d]", key, i), e, t.Elem())...)
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return bad("must be a table, not %s", tomlTypeName(v))
		}
		for _, k := range sortedKeys(m) {
			errs = append(errs, checkShape(joinKey(key, k), m[k], t.Elem())...)
		}
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return bad("must be a table, not %s", tomlTypeName(v))
		}
		for _, k := range sortedKeys(m) {
			f, ok := fieldByTag(t, k)
			if !ok {
				msg := "unknown key"
				if f, ok := fieldByTagFold(t, k); ok {
					msg = fmt.Sprintf("unknown key (keys are case-sensitive: did you mean %q?)", f)
				}
				errs = append(errs, &ConfigError{Key: joinKey(key, k), Err: errors.New(msg)})
				continue
			}
			errs = append(errs, checkShape(joinKey(key, k), m[k], f.Type)...)
		}
	default:
		return bad("unsupported configuration field type %s", t)
	}
	return errs
}

// asArray returns a TOML array (of values or of tables) as []any.
func asArray(v any) ([]any, bool) {
	switch a := v.(type) {
	case []any:
		return a, true
	case []map[string]any:
		out := make([]any, len(a))
		for i := range a {
			out[i] = a[i]
		}
		return out, true
	}
	return nil, false
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); f.Tag.Get("toml") == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func fieldByTagFold(t reflect.Type, name string) (string, bool) {
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("toml"); strings.EqualFold(tag, name) {
			return tag, true
		}
	}
	return "", false
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

var bareKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// joinKey appends k to the dotted key prefix, quoting k as TOML would.
func joinKey(prefix, k string) string {
	if !bareKey.MatchString(k) {
		k = strconv.Quote(k)
	}
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

func tomlTypeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date-time"
	}
	return fmt.Sprintf("a %T", v)
}

// resolvePaths makes the relative file paths relative to dir.
func (c *Config) resolvePaths(dir string) {
	res := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	res(&c.Server.TLSCertFile)
	res(&c.Server.TLSKeyFile)
	res(&c.Admin.TokenFile)
	res(&c.Tokens.KeyFile)
	for i := range c.Tokens.VerifyKeyFiles {
		res(&c.Tokens.VerifyKeyFiles[i])
	}
	res(&c.Login.UsersFile)
	if c.Store.Backend == BackendBbolt {
		res(&c.Store.Path)
	}
	res(&c.Store.RedisPasswordFile)
	res(&c.Store.RedisTLSCAFile)
}

// problems collects Validate's findings.
type problems []error

func (p *problems) add(key, format string, args ...any) {
	*p = append(*p, &ConfigError{Key: key, Err: fmt.Errorf(format, args...)})
}

// Validate reports every problem of c at once, joined with errors.Join, each
// a *ConfigError naming its key. It changes nothing and opens no
// connection; the only thing it reads is whether each file the
// configuration names exists and can be opened (their content is checked
// where they are loaded, see checkFileContents).
func (c *Config) Validate() error {
	var p problems
	c.validateServer(&p)
	c.validateTokens(&p)
	c.validateStore(&p)
	c.validateLogin(&p)
	c.validateHeaders(&p)
	c.validateRoutes(&p)
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		p.add("log.format", "%q is not one of json, text", c.Log.Format)
	}
	return errors.Join(p...)
}

func (c *Config) validateServer(p *problems) {
	s := &c.Server
	checkListen(p, "server.listen", s.Listen)
	checkListen(p, "admin.listen", c.Admin.Listen)
	if s.Listen == c.Admin.Listen && !strings.HasSuffix(s.Listen, ":0") {
		p.add("admin.listen", "%q is also server.listen: the two listeners need different addresses", c.Admin.Listen)
	}
	if c.Admin.TokenFile != "" {
		checkReadable(p, "admin.token_file", c.Admin.TokenFile)
	}
	positive(p, "server.shutdown_timeout", s.ShutdownTimeout)
	if s.DrainDelay < 0 {
		p.add("server.drain_delay", "%v must not be negative", s.DrainDelay)
	}
	if s.MaxHeaderBytes <= 0 {
		p.add("server.max_header_bytes", "%d must be positive", s.MaxHeaderBytes)
	}
	for i, tp := range s.TrustedProxies {
		if _, err := parseTrustedProxy(tp); err != nil {
			p.add(fmt.Sprintf("server.trusted_proxies[%d]", i), "%w", err)
		}
	}
	switch {
	case (s.TLSCertFile == "") != (s.TLSKeyFile == ""):
		key := "server.tls_key_file"
		if s.TLSCertFile == "" {
			key = "server.tls_cert_file"
		}
		p.add(key, "must be set too: serving HTTPS needs both server.tls_cert_file and server.tls_key_file")
	case s.TLSCertFile != "":
		checkReadable(p, "server.tls_cert_file", s.TLSCertFile)
		checkReadable(p, "server.tls_key_file", s.TLSKeyFile)
	}
	positive(p, "server.read_header_timeout", s.ReadHeaderTimeout)
	nonNegative(p, "server.read_timeout", s.ReadTimeout)
	nonNegative(p, "server.write_timeout", s.WriteTimeout)
	nonNegative(p, "server.idle_timeout", s.IdleTimeout)
	positive(p, "server.upgrade_check_interval", s.UpgradeCheckInterval)
}

func (c *Config) validateTokens(p *problems) {
	t := &c.Tokens
	switch t.Algorithm {
	case auth.EdDSA, auth.ES256, auth.RS256, auth.HS256:
	default:
		p.add("tokens.algorithm", "%q is not one of %s, %s, %s, %s", t.Algorithm, auth.EdDSA, auth.ES256, auth.RS256, auth.HS256)
	}
	if t.Issuer == "" {
		p.add("tokens.issuer", "must not be empty")
	}
	if t.Audience == "" {
		p.add("tokens.audience", "must not be empty")
	}
	if t.KeyFile == "" {
		p.add("tokens.key_file", "must be set: the gateway signs its tokens with it (gateway keygen writes one)")
	} else {
		checkReadable(p, "tokens.key_file", t.KeyFile)
	}
	for i, f := range t.VerifyKeyFiles {
		checkReadable(p, fmt.Sprintf("tokens.verify_key_files[%d]", i), f)
	}

	ttl := time.Duration(t.AccessTTL)
	positive(p, "tokens.access_ttl", t.AccessTTL)
	positive(p, "tokens.idle_timeout", t.IdleTimeout)
	if t.IdleTimeout > 0 && ttl > 0 && t.IdleTimeout <= t.AccessTTL {
		p.add("tokens.idle_timeout", "%v must be longer than tokens.access_ttl (%v): a session would end before its token could be refreshed", t.IdleTimeout, t.AccessTTL)
	}
	if t.AbsoluteTimeout < t.IdleTimeout {
		p.add("tokens.absolute_timeout", "%v is shorter than tokens.idle_timeout (%v): every session ends at its absolute timeout, so the idle timeout could never apply (are the two swapped?)", t.AbsoluteTimeout, t.IdleTimeout)
	}
	if t.RefreshGrace < 0 || (ttl > 0 && t.RefreshGrace >= t.AccessTTL) {
		p.add("tokens.refresh_grace", "%v must be at least 0s and shorter than tokens.access_ttl (%v)", t.RefreshGrace, t.AccessTTL)
	}
	if t.RefreshBeforeExpiry < 0 || (ttl > 0 && t.RefreshBeforeExpiry >= t.AccessTTL) {
		p.add("tokens.refresh_before_expiry", "%v must be at least 0s and shorter than tokens.access_ttl (%v)", t.RefreshBeforeExpiry, t.AccessTTL)
	}
	if t.Leeway < 0 || time.Duration(t.Leeway) > 5*time.Minute {
		p.add("tokens.leeway", "%v must be between 0s and 5m", t.Leeway)
	}
	switch t.Delivery {
	case DeliveryBearer, DeliveryCookie, DeliveryBoth:
	default:
		p.add("tokens.delivery", "%q is not one of bearer, cookie, both", t.Delivery)
	}
	// The contract's cookie is Secure, Path=/ and has no Domain, which is
	// what the "__Host-" and "__Secure-" name prefixes demand: any valid
	// name is fine.
	if !isToken(t.CookieName) {
		p.add("tokens.cookie_name", "%q is not a valid cookie name (letters, digits and !#$%%&'*+-.^_`|~ only)", t.CookieName)
	}
	for i, o := range t.AllowedOrigins {
		if err := checkOrigin(o); err != nil {
			p.add(fmt.Sprintf("tokens.allowed_origins[%d]", i), "%w", err)
		}
	}
	switch t.Revocation {
	case RevocationRefresh, RevocationEveryRequest:
	default:
		p.add("tokens.revocation", "%q is not one of refresh, every_request", t.Revocation)
	}
	if t.VerifyCacheSize < 0 {
		p.add("tokens.verify_cache_size", "%d must not be negative (0 disables the cache)", t.VerifyCacheSize)
	}
}

func (c *Config) validateStore(p *problems) {
	s := &c.Store
	switch s.Backend {
	case BackendBbolt:
		if s.Path == "" {
			p.add("store.path", "must be set for backend = \"bbolt\"")
		}
	case BackendRedis:
		if s.URL == "" {
			p.add("store.url", "must be set for backend = \"redis\"")
		} else if err := redisstore.CheckURL(s.URL); err != nil {
			p.add("store.url", "%w", err) // CheckURL's errors never repeat a password
		}
		if s.RedisPasswordFile != "" {
			checkReadable(p, "store.redis_password_file", s.RedisPasswordFile)
		}
		if s.RedisTLSCAFile != "" {
			checkReadable(p, "store.redis_tls_ca_file", s.RedisTLSCAFile)
			if !strings.HasPrefix(s.URL, "rediss") {
				p.add("store.redis_tls_ca_file", "needs a TLS URL (rediss://, rediss+sentinel:// or rediss+cluster://)")
			}
		}
	default:
		p.add("store.backend", "%q is not one of bbolt, redis", s.Backend)
	}
	if s.Backend != BackendRedis {
		if s.RedisPasswordFile != "" {
			p.add("store.redis_password_file", "is only for backend = \"redis\"")
		}
		if s.RedisTLSCAFile != "" {
			p.add("store.redis_tls_ca_file", "is only for backend = \"redis\"")
		}
	}
	positive(p, "store.sweep_interval", s.SweepInterval)
	positive(p, "store.redis_connect_timeout", s.RedisConnectTimeout)
	positive(p, "store.write_timeout", s.WriteTimeout)
}

func (c *Config) validateLogin(p *problems) {
	l := &c.Login
	if l.UsersFile != "" && l.Upstream != "" {
		p.add("login.upstream", "cannot be set together with login.users_file: choose where credentials are checked")
	}
	if l.UsersFile != "" {
		checkReadable(p, "login.users_file", l.UsersFile)
	}
	if l.Upstream != "" {
		if err := checkUpstream(l.Upstream); err != nil {
			p.add("login.upstream", "%w", err)
		}
	}
	if !isToken(l.SubjectHeader) {
		p.add("login.subject_header", "%q is not a valid header name", l.SubjectHeader)
	}
	if l.MaxFailures < 1 {
		p.add("login.max_failures", "%d must be at least 1", l.MaxFailures)
	}
	positive(p, "login.failure_window", l.FailureWindow)
	if l.MaxBodyBytes < 1 {
		p.add("login.max_body_bytes", "%d must be at least 1", l.MaxBodyBytes)
	}
	positive(p, "login.body_timeout", l.BodyTimeout)
	if l.MaxSessionsPerUser < 0 {
		p.add("login.max_sessions_per_user", "%d must not be negative (0 means no limit)", l.MaxSessionsPerUser)
	}
	for _, user := range slices.Sorted(maps.Keys(l.Roles)) {
		key := joinKey("login.roles", user)
		if user == "" {
			p.add(key, "user name must not be empty")
		}
		for i, r := range l.Roles[user] {
			if err := checkRole(r); err != nil {
				p.add(fmt.Sprintf("%s[%d]", key, i), "%w", err)
			}
		}
	}
}

func (c *Config) validateHeaders(p *problems) {
	h := &c.Headers
	if h.IdentityPrefix == "" || !isToken(h.IdentityPrefix) {
		p.add("headers.identity_prefix", "%q must be a non-empty header name prefix such as \"X-Auth-\"", h.IdentityPrefix)
	}
	switch h.OnSpoof {
	case SpoofStrip, SpoofReject:
	default:
		p.add("headers.on_spoof", "%q is not one of strip, reject", h.OnSpoof)
	}
	prefix := headerFold(h.IdentityPrefix)
	for _, name := range slices.Sorted(maps.Keys(h.Claims)) {
		key := joinKey("headers.claims", name)
		switch {
		case !isToken(name):
			p.add(key, "%q is not a valid header name", name)
		case h.IdentityPrefix != "" && !strings.HasPrefix(headerFold(name), prefix):
			p.add(key, "header %q is not under headers.identity_prefix %q: a client could send it and the gateway would not strip it first", name, h.IdentityPrefix)
		}
		if h.Claims[name] == "" {
			p.add(key, "claim name must not be empty")
		}
	}
}

func (c *Config) validateRoutes(p *problems) {
	if len(c.Route) == 0 {
		p.add("route", "at least one [[route]] is needed")
	}
	seen := make(map[string]int, len(c.Route))
	for i, r := range c.Route {
		key := fmt.Sprintf("route[%d]", i)
		if err := checkPrefix(r.Prefix); err != nil {
			p.add(key+".prefix", "%w", err)
		} else if j, dup := seen[r.Prefix]; dup {
			p.add(key+".prefix", "%q is already the prefix of route[%d]", r.Prefix, j)
		} else {
			seen[r.Prefix] = i
		}
		if err := checkUpstream(r.Upstream); err != nil {
			p.add(key+".upstream", "%w", err)
		}
		switch r.Auth {
		case AuthRequired, AuthOptional:
		case AuthNone:
			if len(r.RequireRoles) > 0 {
				p.add(key+".require_roles", "needs auth = \"required\" or \"optional\": a route with auth = \"none\" never reads a token")
			}
		default:
			p.add(key+".auth", "%q is not one of required, optional, none", r.Auth)
		}
		for j, role := range r.RequireRoles {
			if err := checkRole(role); err != nil {
				p.add(fmt.Sprintf("%s.require_roles[%d]", key, j), "%w", err)
			}
		}
		positive(p, key+".timeout", r.Timeout)
		switch {
		case r.UpgradeMaxLifetime < 0:
			p.add(key+".upgrade_max_lifetime", "%v must not be negative (0s: until the session ends)", r.UpgradeMaxLifetime)
		case r.UpgradeMaxLifetime > 0 && !r.Websocket:
			p.add(key+".upgrade_max_lifetime", "needs websocket = true: only upgraded connections have a lifetime")
		}
		if r.MaxInFlight < 0 {
			p.add(key+".max_in_flight", "%d must not be negative (0 means no limit)", r.MaxInFlight)
		}
	}
}

func positive(p *problems, key string, d Duration) {
	if d <= 0 {
		p.add(key, "%v must be positive", d)
	}
}

func nonNegative(p *problems, key string, d Duration) {
	if d < 0 {
		p.add(key, "%v must not be negative (0s means no limit)", d)
	}
}

// checkReadable reports the file at path if it cannot be opened for
// reading or is a directory. The os error names the path.
func checkReadable(p *problems, key, path string) {
	f, err := os.Open(path)
	if err != nil {
		p.add(key, "%w", err)
		return
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		p.add(key, "%w", err)
	} else if st.IsDir() {
		p.add(key, "%s is a directory", path)
	}
}

// checkListen requires host:port with a numeric port; an empty host means
// every interface.
func checkListen(p *problems, key, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		p.add(key, "%q is not host:port", addr)
		return
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		p.add(key, "%q: port %q is not a number from 0 to 65535", addr, port)
	}
}

// parseTrustedProxy parses a CIDR ("10.0.0.0/8", masked if host bits are
// set) or a single address ("10.1.2.3", as /32 or /128).
func parseTrustedProxy(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8", s)
		}
		return pfx.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or a CIDR such as 10.0.0.0/8", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// checkUpstream requires an absolute http(s) URL with a host and no
// credentials, query or fragment (the proxy would silently drop them).
// Messages show the URL with any password redacted.
func checkUpstream(s string) error {
	if s == "" {
		return errors.New("must be set")
	}
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("is not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q must be an http:// or https:// URL", u.Redacted())
	case u.Host == "":
		return fmt.Errorf("%q has no host", u.Redacted())
	case u.User != nil:
		return errors.New("must not hold credentials (they would not be sent)")
	case u.RawQuery != "" || u.ForceQuery:
		return fmt.Errorf("%q must not have a query", u.Redacted())
	case u.Fragment != "":
		return fmt.Errorf("%q must not have a fragment", u.Redacted())
	}
	return nil
}

// checkOrigin requires a browser origin: scheme://host[:port], lower case,
// nothing else, as the Origin header carries it.
func checkOrigin(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an origin such as \"https://app.example.com\"", s)
	}
	host := strings.ToLower(u.Host)
	if port := u.Port(); (u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80") {
		host = strings.ToLower(u.Hostname())
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
	}
	want := u.Scheme + "://" + host
	if s != want {
		return fmt.Errorf("%q is not an origin as browsers send it: write %q (no path, trailing slash, query, default port or upper case)", s, want)
	}
	return nil
}

// checkPrefix requires an absolute path without query, fragment, dot
// segments or empty segments, since requests holding those are refused
// before routing and the route could never match.
func checkPrefix(s string) error {
	if !strings.HasPrefix(s, "/") {
		return fmt.Errorf("%q must start with \"/\"", s)
	}
	if strings.ContainsAny(s, "?#\\ ") || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("%q must be a plain path (no query, fragment, backslash, space or control character)", s)
	}
	segs := strings.Split(s, "/")
	for i, seg := range segs[1:] {
		last := i == len(segs)-2
		if seg == "." || seg == ".." || (seg == "" && !last) {
			return fmt.Errorf("%q must not hold dot or empty segments", s)
		}
	}
	return nil
}

// checkRole requires a role that survives being joined with "," into a
// header.
func checkRole(r string) error {
	if r == "" || strings.TrimSpace(r) != r || strings.ContainsAny(r, ",\r\n") {
		return fmt.Errorf("role %q must be non-empty, without commas or surrounding spaces", r)
	}
	return nil
}

// isToken reports whether s is a non-empty RFC 9110 token, the syntax of
// header and cookie names.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// headerFold is how the gateway compares identity header names: without
// case, with "_" taken as "-".
func headerFold(s string) string {
	return strings.ReplaceAll(strings.ToLower(s), "_", "-")
}

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

// BearerAllowed reports whether tokens travel in the response body and the
// Authorization header (delivery bearer or both).
func (t TokensConfig) BearerAllowed() bool { return t.Delivery != DeliveryCookie }

// CookieAllowed reports whether tokens travel in the cookie (delivery cookie
// or both).
func (t TokensConfig) CookieAllowed() bool {
	return t.Delivery == DeliveryCookie || t.Delivery == DeliveryBoth
}

// UpstreamURL returns login.upstream parsed, or nil when it is empty or
// invalid (see Validate).
func (l LoginConfig) UpstreamURL() *url.URL { return parseUpstream(l.Upstream) }

// UpstreamURL returns the route's upstream parsed, or nil when Validate
// would refuse it.
func (r RouteConfig) UpstreamURL() *url.URL { return parseUpstream(r.Upstream) }

func parseUpstream(s string) *url.URL {
	if checkUpstream(s) != nil {
		return nil
	}
	u, _ := url.Parse(s)
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
