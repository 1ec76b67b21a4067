package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/proxy"
	"golang.org/x/crypto/bcrypt"
)

// writeFile writes content to dir/name with mode 0600 and returns its path.
func writeFile(tb testing.TB, dir, name, content string) string {
	tb.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// writeKey writes a new private key for alg to dir/name.
func writeKey(tb testing.TB, dir, name, alg string) string {
	tb.Helper()
	k, err := auth.GenerateKey(alg)
	if err != nil {
		tb.Fatal(err)
	}
	pem, err := k.PrivatePEM()
	if err != nil {
		tb.Fatal(err)
	}
	return writeFile(tb, dir, name, string(pem))
}

// writeUsers writes a users file with alice:password at bcrypt's minimum
// cost, to keep the tests fast.
func writeUsers(tb testing.TB, dir, name string) string {
	tb.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte("password"), bcrypt.MinCost)
	if err != nil {
		tb.Fatal(err)
	}
	return writeFile(tb, dir, name, "# users\nalice:"+string(h)+"\n")
}

// validConfig returns Default with the files it needs written to a temp
// directory and one route: a configuration Validate accepts.
func validConfig(tb testing.TB) Config {
	tb.Helper()
	dir := tb.TempDir()
	c := Default()
	c.Tokens.KeyFile = writeKey(tb, dir, "signing.pem", auth.EdDSA)
	c.Login.UsersFile = writeUsers(tb, dir, "users")
	c.Store.Path = filepath.Join(dir, "gateway.db")
	r := DefaultRoute()
	r.Prefix, r.Upstream = "/api/", "http://127.0.0.1:9000"
	c.Route = []RouteConfig{r}
	return c
}

// configErrors returns the *ConfigError leaves of err.
func configErrors(tb testing.TB, err error) []*ConfigError {
	tb.Helper()
	var out []*ConfigError
	for _, p := range problemsOf(err) {
		var ce *ConfigError
		if !errors.As(p, &ce) {
			tb.Fatalf("problem %v (%T) is not a *ConfigError", p, p)
		}
		out = append(out, ce)
	}
	return out
}

func TestDefaultIsValid(t *testing.T) {
	c := validConfig(t)
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() = %v, want nil", err)
	}
	if err := checkFileContents(&c, nil); err != nil {
		t.Fatalf("checkFileContents() = %v, want nil", err)
	}
	// Without a login source the gateway only verifies: still valid.
	c.Login.UsersFile = ""
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() without login = %v, want nil", err)
	}
}

func TestValidateNamesKey(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.pem")
	tests := []struct {
		name   string
		modify func(c *Config)
		want   string
	}{
		{"listen not host:port", func(c *Config) { c.Server.Listen = "8080" }, `server.listen: "8080" is not host:port`},
		{"listen bad port", func(c *Config) { c.Server.Listen = "127.0.0.1:http" }, "server.listen: "},
		{"listen port range", func(c *Config) { c.Server.Listen = ":70000" }, "server.listen: "},
		{"admin listen", func(c *Config) { c.Admin.Listen = "localhost" }, "admin.listen: "},
		{"same listeners", func(c *Config) { c.Admin.Listen = c.Server.Listen }, "admin.listen: "},
		{"admin token missing", func(c *Config) { c.Admin.TokenFile = missing }, "admin.token_file: open " + missing},
		{"shutdown timeout", func(c *Config) { c.Server.ShutdownTimeout = 0 }, "server.shutdown_timeout: 0s must be positive"},
		{"max header bytes", func(c *Config) { c.Server.MaxHeaderBytes = 0 }, "server.max_header_bytes: "},
		{"trusted proxy", func(c *Config) { c.Server.TrustedProxies = []string{"10.0.0.0/8", "10.0.0.0/33"} }, "server.trusted_proxies[1]: "},
		{"trusted proxy name", func(c *Config) { c.Server.TrustedProxies = []string{"proxy.local"} }, "server.trusted_proxies[0]: "},
		{"tls cert without key", func(c *Config) { c.Server.TLSCertFile = c.Tokens.KeyFile }, "server.tls_key_file: must be set too"},
		{"tls key without cert", func(c *Config) { c.Server.TLSKeyFile = c.Tokens.KeyFile }, "server.tls_cert_file: must be set too"},
		{"tls files missing", func(c *Config) { c.Server.TLSCertFile, c.Server.TLSKeyFile = missing, missing }, "server.tls_cert_file: open " + missing},
		{"read header timeout", func(c *Config) { c.Server.ReadHeaderTimeout = 0 }, "server.read_header_timeout: "},
		{"read timeout", func(c *Config) { c.Server.ReadTimeout = -1 }, "server.read_timeout: "},
		{"write timeout", func(c *Config) { c.Server.WriteTimeout = -1 }, "server.write_timeout: "},
		{"server idle timeout", func(c *Config) { c.Server.IdleTimeout = -1 }, "server.idle_timeout: "},

		{"algorithm", func(c *Config) { c.Tokens.Algorithm = "HS512" }, `tokens.algorithm: "HS512" is not one of EdDSA, ES256, RS256, HS256`},
		{"algorithm none", func(c *Config) { c.Tokens.Algorithm = "none" }, `tokens.algorithm: "none"`},
		{"issuer", func(c *Config) { c.Tokens.Issuer = "" }, "tokens.issuer: must not be empty"},
		{"audience", func(c *Config) { c.Tokens.Audience = "" }, "tokens.audience: must not be empty"},
		{"key file empty", func(c *Config) { c.Tokens.KeyFile = "" }, "tokens.key_file: must be set"},
		{"key file missing", func(c *Config) { c.Tokens.KeyFile = missing }, "tokens.key_file: open " + missing + ": no such file"},
		{"key file directory", func(c *Config) { c.Tokens.KeyFile = filepath.Dir(missing) }, "tokens.key_file: " + filepath.Dir(missing) + " is a directory"},
		{"verify key missing", func(c *Config) { c.Tokens.VerifyKeyFiles = []string{c.Tokens.KeyFile, missing} }, "tokens.verify_key_files[1]: open " + missing},
		{"access ttl", func(c *Config) { c.Tokens.AccessTTL = 0 }, "tokens.access_ttl: 0s must be positive"},
		{"idle timeout", func(c *Config) { c.Tokens.IdleTimeout = 0 }, "tokens.idle_timeout: 0s must be positive"},
		{"idle timeout below ttl", func(c *Config) { c.Tokens.IdleTimeout = Duration(10 * time.Minute) }, "tokens.idle_timeout: 10m0s must be longer than tokens.access_ttl"},
		{"absolute below idle", func(c *Config) { c.Tokens.AbsoluteTimeout = Duration(30 * time.Minute) }, "tokens.absolute_timeout: 30m0s is shorter than tokens.idle_timeout"},
		{"refresh grace negative", func(c *Config) { c.Tokens.RefreshGrace = Duration(-time.Second) }, "tokens.refresh_grace: "},
		{"refresh grace ttl", func(c *Config) { c.Tokens.RefreshGrace = c.Tokens.AccessTTL }, "tokens.refresh_grace: "},
		{"refresh before expiry negative", func(c *Config) { c.Tokens.RefreshBeforeExpiry = Duration(-time.Second) }, "tokens.refresh_before_expiry: "},
		{"refresh before expiry ttl", func(c *Config) { c.Tokens.RefreshBeforeExpiry = Duration(time.Hour) }, "tokens.refresh_before_expiry: "},
		{"leeway negative", func(c *Config) { c.Tokens.Leeway = Duration(-time.Second) }, "tokens.leeway: "},
		{"leeway large", func(c *Config) { c.Tokens.Leeway = Duration(6 * time.Minute) }, "tokens.leeway: 6m0s must be between 0s and 5m"},
		{"delivery", func(c *Config) { c.Tokens.Delivery = "header" }, `tokens.delivery: "header" is not one of bearer, cookie, both`},
		{"cookie name", func(c *Config) { c.Tokens.CookieName = "my cookie" }, `tokens.cookie_name: "my cookie"`},
		{"cookie name empty", func(c *Config) { c.Tokens.CookieName = "" }, `tokens.cookie_name: ""`},
		{"origin path", func(c *Config) { c.Tokens.AllowedOrigins = []string{"https://app.example.com/"} }, `tokens.allowed_origins[0]: "https://app.example.com/" is not an origin as browsers send it: write "https://app.example.com"`},
		{"origin scheme", func(c *Config) { c.Tokens.AllowedOrigins = []string{"app.example.com"} }, "tokens.allowed_origins[0]: "},
		{"origin case", func(c *Config) { c.Tokens.AllowedOrigins = []string{"https://App.example.com"} }, "tokens.allowed_origins[0]: "},
		{"origin default port", func(c *Config) { c.Tokens.AllowedOrigins = []string{"https://app.example.com:443"} }, `write "https://app.example.com"`},
		{"revocation", func(c *Config) { c.Tokens.Revocation = "never" }, `tokens.revocation: "never"`},
		{"verify cache size negative", func(c *Config) { c.Tokens.VerifyCacheSize = -1 }, "tokens.verify_cache_size: -1 must not be negative"},
		{"dpop", func(c *Config) { c.Tokens.DPoP = "sometimes" }, `tokens.dpop: "sometimes" is not one of off, allowed, required`},
		{"dpop algorithm", func(c *Config) { c.Tokens.DPoPAlgorithms = []string{"ES256", "HS256"} }, `tokens.dpop_algorithms[1]: "HS256" is not one of ES256, EdDSA`},
		{"dpop proof max age zero", func(c *Config) { c.Tokens.DPoPProofMaxAge = 0 }, "tokens.dpop_proof_max_age: 0s must be positive"},
		{"dpop proof max age long", func(c *Config) { c.Tokens.DPoPProofMaxAge = Duration(time.Hour) }, "tokens.dpop_proof_max_age: 1h0m0s must be positive and at most 10m"},
		{"dpop replay entries small", func(c *Config) { c.Tokens.DPoPReplayEntries = 10 }, "tokens.dpop_replay_entries: 10 must be between 1000 and 10000000"},
		{"dpop replay entries zero", func(c *Config) { c.Tokens.DPoPReplayEntries = 0 }, "tokens.dpop_replay_entries: 0 must be between"},

		{"backend", func(c *Config) { c.Store.Backend = "sqlite" }, `store.backend: "sqlite" is not one of bbolt, redis`},
		{"bbolt path", func(c *Config) { c.Store.Path = "" }, "store.path: must be set"},
		{"redis url empty", func(c *Config) { c.Store.Backend = BackendRedis }, "store.url: must be set"},
		{"redis url scheme", func(c *Config) { c.Store.Backend, c.Store.URL = BackendRedis, "http://localhost:6379" }, `store.url: scheme "http"`},
		{"redis url host", func(c *Config) { c.Store.Backend, c.Store.URL = BackendRedis, "redis:///0" }, "store.url: has no host"},
		{"sweep interval", func(c *Config) { c.Store.SweepInterval = 0 }, "store.sweep_interval: "},

		{"login both", func(c *Config) { c.Login.Upstream = "http://127.0.0.1:9001/login" }, "login.upstream: cannot be set together with login.users_file"},
		{"users file missing", func(c *Config) { c.Login.UsersFile = missing }, "login.users_file: open " + missing},
		{"login upstream scheme", func(c *Config) { c.Login.UsersFile, c.Login.Upstream = "", "ftp://x/login" }, "login.upstream: "},
		{"subject header", func(c *Config) { c.Login.SubjectHeader = "X Auth" }, `login.subject_header: "X Auth"`},
		{"max failures", func(c *Config) { c.Login.MaxFailures = 0 }, "login.max_failures: 0 must be at least 1"},
		{"failure window", func(c *Config) { c.Login.FailureWindow = 0 }, "login.failure_window: "},
		{"max body bytes", func(c *Config) { c.Login.MaxBodyBytes = 0 }, "login.max_body_bytes: 0 must be at least 1"},
		{"body timeout", func(c *Config) { c.Login.BodyTimeout = 0 }, "login.body_timeout: 0s must be positive"},
		{"role comma", func(c *Config) { c.Login.Roles = map[string][]string{"alice": {"a,b"}} }, "login.roles.alice[0]: "},

		{"identity prefix empty", func(c *Config) { c.Headers.IdentityPrefix = "" }, "headers.identity_prefix: "},
		{"identity prefix chars", func(c *Config) { c.Headers.IdentityPrefix = "X Auth" }, "headers.identity_prefix: "},
		{"on spoof", func(c *Config) { c.Headers.OnSpoof = "log" }, `headers.on_spoof: "log" is not one of strip, reject`},
		{"claim header outside prefix", func(c *Config) { c.Headers.Claims = map[string]string{"X-User": "sub"} }, `headers.claims.X-User: header "X-User" is not under headers.identity_prefix "X-Auth-": a client could send it`},
		{"claim header invalid", func(c *Config) { c.Headers.Claims = map[string]string{"X-Auth-Us er": "sub"} }, `headers.claims."X-Auth-Us er": `},
		{"claim empty", func(c *Config) { c.Headers.Claims = map[string]string{"X-Auth-Sub": ""} }, "headers.claims.X-Auth-Sub: claim name must not be empty"},

		{"no route", func(c *Config) { c.Route = nil }, "route: at least one [[route]] is needed"},
		{"prefix slash", func(c *Config) { c.Route[0].Prefix = "api/" }, `route[0].prefix: "api/" must start with "/"`},
		{"prefix dot segment", func(c *Config) { c.Route[0].Prefix = "/api/../admin/" }, "route[0].prefix: "},
		{"prefix query", func(c *Config) { c.Route[0].Prefix = "/api?x" }, "route[0].prefix: "},
		{"prefix duplicate", func(c *Config) { c.Route = append(c.Route, c.Route[0]) }, `route[1].prefix: "/api/" is already the prefix of route[0]`},
		{"upstream empty", func(c *Config) { c.Route[0].Upstream = "" }, "route[0].upstream: must be set"},
		{"upstream relative", func(c *Config) { c.Route[0].Upstream = "/backend" }, "route[0].upstream: "},
		{"upstream scheme", func(c *Config) { c.Route[0].Upstream = "ws://127.0.0.1:9000" }, "route[0].upstream: "},
		{"upstream no host", func(c *Config) { c.Route[0].Upstream = "http:///x" }, "route[0].upstream: "},
		{"upstream query", func(c *Config) { c.Route[0].Upstream = "http://127.0.0.1:9000/?a=b" }, "route[0].upstream: "},
		{"upstream fragment", func(c *Config) { c.Route[0].Upstream = "http://127.0.0.1:9000/#x" }, "route[0].upstream: "},
		{"upstream password redacted", func(c *Config) { c.Route[0].Upstream = "ftp://u:hunter2@127.0.0.1/" }, `route[0].upstream: "ftp://u:xxxxx@127.0.0.1/" must be an http:// or https:// URL`},
		{"upstream credentials", func(c *Config) { c.Route[0].Upstream = "http://u:p@127.0.0.1:9000/" }, "route[0].upstream: must not hold credentials"},
		{"auth", func(c *Config) { c.Route[0].Auth = "maybe" }, `route[0].auth: "maybe" is not one of required, optional, none`},
		{"roles without auth", func(c *Config) { c.Route[0].Auth, c.Route[0].RequireRoles = proxy.AuthNone, []string{"admin"} }, "route[0].require_roles: needs auth"},
		{"role empty", func(c *Config) { c.Route[0].RequireRoles = []string{""} }, "route[0].require_roles[0]: "},
		{"route timeout", func(c *Config) { c.Route[0].Timeout = 0 }, "route[0].timeout: 0s must be positive"},
		{"route max in flight", func(c *Config) { c.Route[0].MaxInFlight = -1 }, "route[0].max_in_flight: -1 must not be negative"},
		{"upgrade check interval", func(c *Config) { c.Server.UpgradeCheckInterval = 0 }, "server.upgrade_check_interval: 0s must be positive"},
		{"upgrade max lifetime negative", func(c *Config) { c.Route[0].Websocket, c.Route[0].UpgradeMaxLifetime = true, Duration(-time.Second) }, "route[0].upgrade_max_lifetime: -1s must not be negative"},
		{"upgrade max lifetime without websocket", func(c *Config) { c.Route[0].UpgradeMaxLifetime = Duration(time.Hour) }, "route[0].upgrade_max_lifetime: needs websocket = true"},

		{"log level", func(c *Config) { c.Log.Level = "trace" }, `log.level: "trace"`},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, `log.format: "xml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			tt.modify(&c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want an error containing %q", tt.want)
			}
			found := false
			for _, ce := range configErrors(t, err) {
				if strings.HasPrefix(ce.Error(), ce.Key+": ") && strings.Contains(ce.Error(), tt.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("Validate() = %v, want a problem starting with its key and containing %q", err, tt.want)
			}
		})
	}
}

func TestValidateAcceptsVariants(t *testing.T) {
	tests := []struct {
		name   string
		modify func(c *Config)
	}{
		{"single IPs and CIDRs", func(c *Config) {
			c.Server.TrustedProxies = []string{"10.0.0.0/8", "192.168.1.7", "::1", "fd00::/8"}
		}},
		{"cookie delivery with origins", func(c *Config) {
			c.Tokens.Delivery = proxy.DeliveryBoth
			c.Tokens.AllowedOrigins = []string{"https://app.example.com", "http://localhost:3000", "https://[::1]:8443"}
		}},
		{"redis", func(c *Config) {
			c.Store.Backend, c.Store.URL, c.Store.Path = BackendRedis, "rediss://:pw@redis:6380/2", ""
		}},
		{"login upstream", func(c *Config) { c.Login.UsersFile, c.Login.Upstream = "", "https://legacy.example.com/login" }},
		{"claims with underscores and case", func(c *Config) { c.Headers.Claims = map[string]string{"x_auth_email": "email"} }},
		{"no claims", func(c *Config) { c.Headers.Claims = nil }},
		{"routes", func(c *Config) {
			r := DefaultRoute()
			r.Prefix, r.Upstream, r.Auth = "/", "https://legacy.example.com/app/", proxy.AuthNone
			o := DefaultRoute()
			o.Prefix, o.Upstream, o.Auth, o.RequireRoles = "/admin", "http://[::1]:9001", proxy.AuthOptional, []string{"admin"}
			c.Route = append(c.Route, r, o)
		}},
		{"ephemeral ports", func(c *Config) { c.Server.Listen, c.Admin.Listen = "127.0.0.1:0", "127.0.0.1:0" }},
		{"zero server timeouts", func(c *Config) { c.Server.IdleTimeout, c.Server.ReadTimeout, c.Server.WriteTimeout = 0, 0, 0 }},
		{"refresh window", func(c *Config) {
			c.Tokens.RefreshBeforeExpiry, c.Tokens.Leeway = Duration(2*time.Minute), Duration(5*time.Minute)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			tt.modify(&c)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate() = %v, want nil", err)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := validConfig(t)
	c.Tokens.Algorithm = "HS512"
	c.Store.Backend = "sqlite"
	c.Route[0].Upstream = "ftp://x"
	c.Log.Level = "loud"
	err := c.Validate()
	var got []string
	for _, ce := range configErrors(t, err) {
		got = append(got, ce.Key)
	}
	want := []string{"tokens.algorithm", "store.backend", "route[0].upstream", "log.level"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Validate() problem keys = %q, want %q", got, want)
	}
}

func TestTrustedProxyNets(t *testing.T) {
	c := Default()
	c.Server.TrustedProxies = []string{"10.1.2.3/8", "192.168.1.7", "::ffff:10.0.0.1", "fd00::/8"}
	var got []string
	for _, p := range c.TrustedProxyNets() {
		got = append(got, p.String())
	}
	want := []string{"10.0.0.0/8", "192.168.1.7/32", "10.0.0.1/32", "fd00::/8"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("TrustedProxyNets() = %q, want %q", got, want)
	}
}

func TestUpstreamURL(t *testing.T) {
	r := RouteConfig{Upstream: "https://legacy.example.com:8443/app/"}
	if u := r.UpstreamURL(); u == nil || u.Host != "legacy.example.com:8443" || u.Path != "/app/" {
		t.Errorf("UpstreamURL() = %v, want https://legacy.example.com:8443/app/", u)
	}
	r.Upstream = "ftp://x"
	if u := r.UpstreamURL(); u != nil {
		t.Errorf("UpstreamURL() of %q = %v, want nil", r.Upstream, u)
	}
}

const minimalTOML = `
[tokens]
key_file = "keys/signing.pem"

[[route]]
prefix = "/api/"
upstream = "http://127.0.0.1:9000"
`

func TestLoadConfigDefaults(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "gateway.toml", minimalTOML+`
[[route]]
prefix = "/public/"
upstream = "http://127.0.0.1:9001"
auth = "none"
timeout = "5s"
`)
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatalf("LoadConfig() = %v", err)
	}
	want := Default()
	want.Tokens.KeyFile = filepath.Join(dir, "keys", "signing.pem")
	want.Store.Path = filepath.Join(dir, "gateway.db")
	r0, r1 := DefaultRoute(), DefaultRoute()
	r0.Prefix, r0.Upstream = "/api/", "http://127.0.0.1:9000"
	r1.Prefix, r1.Upstream, r1.Auth, r1.Timeout = "/public/", "http://127.0.0.1:9001", proxy.AuthNone, Duration(5*time.Second)
	want.Route = []RouteConfig{r0, r1}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("LoadConfig() =\n%+v\nwant\n%+v", c, want)
	}
}

func TestLoadConfigReplacesClaims(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "gateway.toml", minimalTOML+`
[headers.claims]
"X-Auth-Email" = "email"
`)
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatalf("LoadConfig() = %v", err)
	}
	if want := map[string]string{"X-Auth-Email": "email"}; !reflect.DeepEqual(c.Headers.Claims, want) {
		t.Errorf("Headers.Claims = %v, want %v", c.Headers.Claims, want)
	}
}

func TestLoadConfigAbsolutePathsKept(t *testing.T) {
	dir := t.TempDir()
	abs := filepath.Join(t.TempDir(), "signing.pem")
	path := writeFile(t, dir, "gateway.toml", "[tokens]\nkey_file = \""+filepath.ToSlash(abs)+"\"\n")
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatalf("LoadConfig() = %v", err)
	}
	if c.Tokens.KeyFile != abs {
		t.Errorf("Tokens.KeyFile = %q, want %q", c.Tokens.KeyFile, abs)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want []string // each must be a problem, in this order
	}{
		{"unknown top-level key", "listen = \"x\"\n", []string{"listen: unknown key"}},
		{"unknown table", "[metrics]\nenabled = true\n", []string{"metrics: unknown key"}},
		{"unknown key in section", "[server]\nlisten = \"127.0.0.1:1\"\nport = 8080\n", []string{"server.port: unknown key"}},
		{"unknown key in route", minimalTOML + "[[route]]\nprefix = \"/b/\"\nupstream = \"http://b\"\npath = \"/x\"\n", []string{"route[1].path: unknown key"}},
		{"case mismatch", "[Server]\nListen = \"x\"\n", []string{`Server: unknown key (keys are case-sensitive: did you mean "server"?)`}},
		{"syntax error", "[server]\nlisten = \"127.0.0.1:8080\"\nshutdown_timeout = 15s\n", []string{"line 3: "}},
		{"unterminated table", "[server\nlisten = \"x\"\n", []string{"line "}},
		{"wrong type", "[server]\nmax_header_bytes = \"32k\"\n", []string{"server.max_header_bytes: must be an integer, not a string"}},
		{"wrong type bool", "[headers]\nforward_token = \"yes\"\n", []string{"headers.forward_token: must be true or false, not a string"}},
		{"wrong type array", "[server]\ntrusted_proxies = \"10.0.0.0/8\"\n", []string{"server.trusted_proxies: must be an array, not a string"}},
		{"wrong element type", "[server]\ntrusted_proxies = [\"10.0.0.0/8\", 10]\n", []string{"server.trusted_proxies[1]: must be a string, not an integer"}},
		{"table as value", "server = 3\n", []string{"server: must be a table, not an integer"}},
		{"route not array", "[route]\nprefix = \"/\"\n", []string{"route: must be an array of tables ([[route]])"}},
		{"roles wrong type", "[login.roles]\nalice = \"admin\"\n", []string{"login.roles.alice: must be an array, not a string"}},
		{"bad duration", "\n[tokens]\naccess_ttl = \"15 minutes\"\n", []string{`tokens.access_ttl (line 3): invalid duration "15 minutes"`}},
		{"duration without unit", "[tokens]\naccess_ttl = 15\n", []string{"tokens.access_ttl (line 2): must be a duration string such as \"15m\", not an integer"}},
		{"bad duration in route", minimalTOML + "timeout = \"soon\"\n", []string{`route[0].timeout: invalid duration "soon"`}},
		{"several at once", "[server]\nlisten = 8080\nbogus = 1\n[tokens]\nleeway = \"1 s\"\n", []string{
			"server.bogus: unknown key",
			"server.listen: must be a string, not an integer",
			`tokens.leeway: invalid duration "1 s"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "gateway.toml", tt.toml)
			_, err := LoadConfig(path)
			if err == nil {
				t.Fatalf("LoadConfig() = nil error, want %q", tt.want)
			}
			ces := configErrors(t, err)
			if len(ces) != len(tt.want) {
				t.Fatalf("LoadConfig() = %d problems:\n%v\nwant %d: %q", len(ces), err, len(tt.want), tt.want)
			}
			for i, ce := range ces {
				// Where the decoder stopped first (map order) the line is
				// known too; either form is right.
				withoutLine := lineNote.ReplaceAllString(ce.Error(), "")
				if !strings.HasPrefix(ce.Error(), tt.want[i]) && !strings.HasPrefix(withoutLine, tt.want[i]) {
					t.Errorf("problem %d = %q, want it to start with %q", i, ce.Error(), tt.want[i])
				}
			}
		})
	}
}

var lineNote = regexp.MustCompile(` \(line \d+\)`)

func TestLoadConfigSyntaxErrorPosition(t *testing.T) {
	path := writeFile(t, t.TempDir(), "gateway.toml", "[server]\n\nlisten = = \"x\"\n")
	_, err := LoadConfig(path)
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("LoadConfig() = %v, want a toml.ParseError inside", err)
	}
	if pe.Position.Line != 3 {
		t.Errorf("ParseError line = %d, want 3", pe.Position.Line)
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.toml")
	_, err := LoadConfig(path)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Errorf("LoadConfig() = %v, want a not-exist error naming %s", err, path)
	}
	if got := exitCode(err); got != exitUsage {
		t.Errorf("exitCode(%v) = %d, want %d", err, got, exitUsage)
	}
}

// exampleFile is the repository's documented configuration.
const exampleFile = "../../gateway.example.toml"

// TestExampleFile keeps gateway.example.toml in step with Config: it decodes
// strictly, holds every key, states every default, and validates once the
// key file it names exists next to it.
func TestExampleFile(t *testing.T) {
	data, err := os.ReadFile(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := writeFile(t, dir, "gateway.toml", string(data))
	writeKey(t, dir, "signing.pem", auth.EdDSA)

	c, err := LoadConfig(path)
	if err != nil {
		t.Fatalf("LoadConfig(example) = %v", err)
	}
	want := Default()
	want.Tokens.KeyFile = filepath.Join(dir, "signing.pem")
	want.Store.Path = filepath.Join(dir, "gateway.db")
	r := DefaultRoute()
	r.Prefix, r.Upstream = "/api/", "http://127.0.0.1:9000"
	want.Route = []RouteConfig{r}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("example file =\n%+v\nwant the defaults\n%+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate(example) = %v", err)
	}
	if err := checkFileContents(&c, nil); err != nil {
		t.Errorf("checkFileContents(example) = %v", err)
	}

	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		t.Fatal(err)
	}
	if missing := undocumented("", raw, reflect.TypeFor[Config]()); len(missing) > 0 {
		t.Errorf("example file lacks keys %q", missing)
	}
}

// undocumented lists the keys of struct type t (recursively, and in the
// first element of arrays of tables) that raw does not hold.
func undocumented(prefix string, raw map[string]any, t reflect.Type) []string {
	var missing []string
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("toml")
		key := joinKey(prefix, name)
		v, ok := raw[name]
		if !ok && key == "tokens.external" {
			// An optional array of tables, documented as a commented
			// example (an entry would configure an issuer): see
			// TestExampleDocumentsExternal.
			continue
		}
		if !ok {
			missing = append(missing, key)
			continue
		}
		switch {
		case f.Type.Kind() == reflect.Struct && f.Type != durationType:
			m, _ := v.(map[string]any)
			missing = append(missing, undocumented(key, m, f.Type)...)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			arr, _ := asArray(v)
			if len(arr) == 0 {
				missing = append(missing, key+"[0]")
				continue
			}
			m, _ := arr[0].(map[string]any)
			missing = append(missing, undocumented(key+"[0]", m, f.Type.Elem())...)
		}
	}
	return missing
}

func TestCheckFileContents(t *testing.T) {
	tests := []struct {
		name   string
		modify func(tb testing.TB, c *Config, dir string)
		want   string
	}{
		{"key not PEM", func(tb testing.TB, c *Config, dir string) {
			c.Tokens.KeyFile = writeFile(tb, dir, "bad.pem", "not a key\n")
		}, "tokens.key_file: "},
		{"key of another algorithm", func(tb testing.TB, c *Config, dir string) {
			c.Tokens.KeyFile = writeKey(tb, dir, "es.pem", auth.ES256)
		}, "tokens.key_file: "},
		{"short HMAC secret", func(tb testing.TB, c *Config, dir string) {
			c.Tokens.Algorithm = auth.HS256
			c.Tokens.KeyFile = writeFile(tb, dir, "secret", "short\n")
		}, "tokens.key_file: "},
		{"verify key of another algorithm", func(tb testing.TB, c *Config, dir string) {
			c.Tokens.VerifyKeyFiles = []string{writeKey(tb, dir, "rs.pem", auth.ES256)}
		}, "tokens.verify_key_files[0]: "},
		{"users file malformed", func(tb testing.TB, c *Config, dir string) {
			c.Login.UsersFile = writeFile(tb, dir, "users.bad", "alice:{SHA}abc\n")
		}, "login.users_file: "},
		{"admin token short", func(tb testing.TB, c *Config, dir string) {
			c.Admin.TokenFile = writeFile(tb, dir, "admin", "short\n")
		}, "admin.token_file: "},
		{"tls pair invalid", func(tb testing.TB, c *Config, dir string) {
			c.Server.TLSCertFile = writeFile(tb, dir, "cert.pem", "x")
			c.Server.TLSKeyFile = c.Tokens.KeyFile
		}, "server.tls_cert_file: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			tt.modify(t, &c, t.TempDir())
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate() = %v, want nil (the problem is in the content)", err)
			}
			err := checkFileContents(&c, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("checkFileContents() = %v, want a problem starting %q", err, tt.want)
			}
			if got := exitCode(err); got != exitUsage {
				t.Errorf("exitCode(%v) = %d, want %d", err, got, exitUsage)
			}
		})
	}
}

func TestLoadAdminToken(t *testing.T) {
	dir := t.TempDir()
	secret := "0123456789abcdef-admin"
	got, err := LoadAdminToken(writeFile(t, dir, "ok", "  "+secret+"\n"))
	if err != nil || string(got) != secret {
		t.Errorf("LoadAdminToken() = %q, %v, want the trimmed token", got, err)
	}
	_, err = LoadAdminToken(writeFile(t, dir, "short", "tooshort\n"))
	if err == nil || strings.Contains(err.Error(), "tooshort") {
		t.Errorf("LoadAdminToken(short) = %v, want an error not containing the token", err)
	}
}

func TestLogger(t *testing.T) {
	var b strings.Builder
	LogConfig{Level: "warn", Format: "text"}.NewLogger(&b).Info("hidden")
	LogConfig{Level: "warn", Format: "text"}.NewLogger(&b).Warn("shown")
	if got := b.String(); strings.Contains(got, "hidden") || !strings.Contains(got, "level=WARN msg=shown") {
		t.Errorf("logger wrote %q, want only the warning, as text", got)
	}
}

// TestExampleDocumentsExternal checks that the example file's commented
// [[tokens.external]] example names every key of ExternalTokensConfig.
func TestExampleDocumentsExternal(t *testing.T) {
	data, err := os.ReadFile("../../gateway.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	if !strings.Contains(text, "# [[tokens.external]]") {
		t.Fatal("example file has no commented [[tokens.external]] example")
	}
	ty := reflect.TypeFor[ExternalTokensConfig]()
	for i := range ty.NumField() {
		if name := ty.Field(i).Tag.Get("toml"); !strings.Contains(text, "# "+name+" =") {
			t.Errorf("example's [[tokens.external]] lacks %q", name)
		}
	}
}
