package main

import (
	"encoding"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/proxy"
	"github.com/spa-gateway/gateway/sessionstore/redisstore"
)

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
	c.validateExternal(&p)
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
	if s.WatchConfig {
		positive(p, "server.watch_interval", s.WatchInterval)
	}
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
	checkWord(p, "tokens.delivery", t.Delivery)
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
	checkWord(p, "tokens.revocation", t.Revocation)
	if t.VerifyCacheSize < 0 {
		p.add("tokens.verify_cache_size", "%d must not be negative (0 disables the cache)", t.VerifyCacheSize)
	}
	t.validateDPoP(p)
}

// Bounds of tokens.dpop_replay_entries: below the minimum a full cache's
// window would shrink to a fraction of a second at modest rates, refusing
// honest clients whose clocks differ by more; the maximum is about 800 MiB.
const (
	minDPoPReplayEntries = 1_000
	maxDPoPReplayEntries = 10_000_000
)

func (t *TokensConfig) validateDPoP(p *problems) {
	checkWord(p, "tokens.dpop", t.DPoP)
	for i, alg := range t.DPoPAlgorithms {
		if !slices.Contains(auth.DPoPAlgorithms(), alg) {
			p.add(fmt.Sprintf("tokens.dpop_algorithms[%d]", i), "%q is not one of %s (none, HMAC and RSA are never accepted)", alg, strings.Join(auth.DPoPAlgorithms(), ", "))
		}
	}
	if t.DPoPProofMaxAge <= 0 || time.Duration(t.DPoPProofMaxAge) > 10*time.Minute {
		p.add("tokens.dpop_proof_max_age", "%v must be positive and at most 10m: a proof is meant for one request, now", t.DPoPProofMaxAge)
	}
	if t.DPoPReplayEntries < minDPoPReplayEntries || t.DPoPReplayEntries > maxDPoPReplayEntries {
		p.add("tokens.dpop_replay_entries", "%d must be between %d and %d (about 80 bytes an entry)", t.DPoPReplayEntries, minDPoPReplayEntries, maxDPoPReplayEntries)
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
		checkWord(p, "store.backend", s.Backend)
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
	validateReplicas(p, s)
}

// validateReplicas checks store.redis_min_replicas and its timeout: a WAIT
// longer than the write timeout would outlast the write it confirms; it
// only matters when replicas are waited for.
func validateReplicas(p *problems, s *StoreConfig) {
	if s.RedisMinReplicas < 0 {
		p.add("store.redis_min_replicas", "%d must not be negative", s.RedisMinReplicas)
	}
	positive(p, "store.redis_replica_timeout", s.RedisReplicaTimeout)
	if s.RedisMinReplicas > 0 && s.RedisReplicaTimeout >= s.WriteTimeout && s.WriteTimeout > 0 {
		p.add("store.redis_replica_timeout", "%v must be below store.write_timeout (%v)", s.RedisReplicaTimeout, s.WriteTimeout)
	}
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
	c.validateOIDC(p)
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
	checkWord(p, "headers.on_spoof", h.OnSpoof)
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
		checkWord(p, key+".auth", r.Auth)
		if r.Auth == proxy.AuthNone && len(r.RequireRoles) > 0 {
			p.add(key+".require_roles", "needs auth = \"required\" or \"optional\": a route with auth = \"none\" never reads a token")
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

// checkWord reports an enumerated value that is none of its words. LoadConfig
// already refuses those as it decodes (their UnmarshalText); this is for a
// Config built or changed in code.
func checkWord(p *problems, key string, v encoding.TextMarshaler) {
	if _, err := v.MarshalText(); err != nil {
		p.add(key, "%w", err)
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
