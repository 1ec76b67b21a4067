// Package oidctest starts a real OpenID Provider for tests: the example OP
// of github.com/zitadel/oidc/v3 (a certified implementation), unmodified,
// on a free loopback port, and drives its own login page the way a browser
// does. There is no fake: the gateway's login is tested against the
// discovery, the JWKS, the code exchange, the refresh tokens and the
// end-session endpoint of a real provider.
//
// The binary (named "server") is found as env OIDC_OP_BIN says, else in
// $(go env GOPATH)/bin, else it is installed with "go install" into the
// user's cache directory. When none works the calling test is skipped,
// except under CI (the environment variable CI is "true"), where it fails:
// .ci/run installs it and sets OIDC_OP_BIN.
package oidctest

import (
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/spa-gateway/gateway/proctest"
)

// Module is the example OP's package, at the version the tests are written
// against.
const Module = "github.com/zitadel/oidc/v3/example/server@v3.52.0"

// The clients the example OP registers (example/server/main.go): a
// confidential one (client_secret_basic) and a public one.
const (
	ClientID     = "web"
	ClientSecret = "secret"
	PublicClient = "native"
)

// User is one user of the OP's users file; its ID is the "sub" of its ID
// tokens.
type User struct {
	ID, Username, Password, Email string
}

// Alice and Bob are the users every OP started by Start knows.
var (
	Alice = User{ID: "alice-id-7f3a", Username: "alice", Password: "alice-secret-pw", Email: "alice@example.com"}
	Bob   = User{ID: "bob-id-19c2", Username: "bob", Password: "bob-secret-pw", Email: "bob@example.com"}
)

// OP is one running example OP.
type OP struct {
	// Issuer is "http://localhost:PORT/", as the OP names itself.
	Issuer string
	// Addr is 127.0.0.1:PORT.
	Addr string

	bin, users, redirects string
	env                   []string
	mu                    sync.Mutex
	proc                  *proctest.Proc
}

// Start starts the OP on a free loopback port with redirectURIs as the
// redirect (and callback) URIs of its clients, and stops it when tb ends.
func Start(tb testing.TB, redirectURIs ...string) *OP {
	tb.Helper()
	op := newOP(tb, redirectURIs)
	proc, err := proctest.Start("/usr/bin/env", func(addr string) []string {
		return op.args(addr)
	}, ready)
	if err != nil {
		tb.Fatalf("start the OpenID Provider: %v", err)
	}
	op.proc = proc
	tb.Cleanup(func() { op.current().Kill() })
	return op
}

// newOP finds the binary and writes the users file.
func newOP(tb testing.TB, redirectURIs []string) *OP {
	tb.Helper()
	bin := need(tb)
	users := filepath.Join(tb.TempDir(), "users.json")
	if err := writeUsers(users, Alice, Bob); err != nil {
		tb.Fatal(err)
	}
	return &OP{bin: bin, users: users, redirects: strings.Join(redirectURIs, ",")}
}

// args are the arguments of /usr/bin/env that run the OP on addr: the
// example OP is configured by its environment only.
func (op *OP) args(addr string) []string {
	_, port, _ := net.SplitHostPort(addr)
	op.Addr, op.Issuer = addr, "http://localhost:"+port+"/"
	op.env = []string{"PORT=" + port, "USERS_FILE=" + op.users, "REDIRECT_URI=" + op.redirects}
	return append(append([]string{}, op.env...), op.bin)
}

func (op *OP) current() *proctest.Proc {
	op.mu.Lock()
	defer op.mu.Unlock()
	return op.proc
}

// Restart kills the OP and starts it again on the same port: it keeps its
// signing key (the example's is fixed) and its users, and forgets every
// code, token and session it issued, as a provider that revoked them all.
func (op *OP) Restart(tb testing.TB) {
	tb.Helper()
	op.current().Kill()
	proc, err := proctest.StartAt(op.Addr, "/usr/bin/env", append(append([]string{}, op.env...), op.bin), ready)
	if err != nil {
		tb.Fatalf("restart the OpenID Provider: %v", err)
	}
	op.mu.Lock()
	op.proc = proc
	op.mu.Unlock()
}

// Stop kills the OP: the provider is then down (connection refused).
func (op *OP) Stop() { op.current().Kill() }

// Log is what the OP wrote so far, for a failing test's message.
func (op *OP) Log() string { return op.current().Log() }

// ready is the OP's discovery document answering.
func ready(addr string) error {
	_, port, _ := net.SplitHostPort(addr)
	resp, err := http.Get("http://localhost:" + port + "/.well-known/openid-configuration")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("discovery: %s", resp.Status)
	}
	return nil
}

func writeUsers(path string, users ...User) error {
	m := map[string]any{}
	for _, u := range users {
		m[u.ID] = map[string]any{
			"ID": u.ID, "Username": u.Username, "Password": u.Password, "FirstName": u.Username,
			"LastName": "Example", "Email": u.Email, "EmailVerified": true, "PreferredLanguage": "en",
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// need finds or installs the OP's binary, or skips (fails under CI) tb.
func need(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("OIDC_OP_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			tb.Fatalf("OIDC_OP_BIN: %v", err)
		}
		return p
	}
	path, err := find()
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("the OpenID Provider (go install %s) is not available, and CI must run the tests that need it: %v", Module, err)
	}
	tb.Skipf("the OpenID Provider (go install %s) is not available; skipping: %v", Module, err)
	return ""
}

var installOnce = sync.OnceValues(install)

func find() (string, error) {
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
			if p := filepath.Join(dir, "bin", "server"); fileExists(p) {
				return p, nil
			}
		}
	}
	return installOnce()
}

// install runs go install into the user's cache directory, once per test
// binary.
func install() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "spa-gateway-oidctest")
	p := filepath.Join(dir, "server")
	if fileExists(p) {
		return p, nil
	}
	cmd := exec.Command("go", "install", Module)
	cmd.Env = append(os.Environ(), "GOBIN="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s: %w: %s", Module, err, out)
	}
	return p, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// loginForm finds the hidden auth request ID of the OP's login page.
var loginForm = regexp.MustCompile(`name="id" value="([^"]*)"`)

// Login drives the OP's own login page as a browser does: it follows
// authURL's redirects to the page, posts u's username and password to its
// form, and follows the OP's redirects until one leads outside the OP
// (to the relying party's callback), which it returns without following.
// client must have a cookie jar; its CheckRedirect is not used.
func (op *OP) Login(tb testing.TB, client *http.Client, authURL string, u User) *url.URL {
	tb.Helper()
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	page, loc := op.follow(tb, &c, authURL)
	if loc != nil {
		return loc // the OP did not ask for the login page
	}
	m := loginForm.FindStringSubmatch(page)
	if m == nil {
		tb.Fatalf("no login form at the OP: %s", page)
	}
	form := url.Values{"id": {html.UnescapeString(m[1])}, "username": {u.Username}, "password": {u.Password}}
	resp, err := c.PostForm(op.url("/login/username"), form)
	if err != nil {
		tb.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	next, err := resp.Location()
	if err != nil {
		tb.Fatalf("the OP's login answered %s without a redirect: %s", resp.Status, body)
	}
	if _, loc = op.follow(tb, &c, next.String()); loc == nil {
		tb.Fatalf("the OP did not redirect to the relying party after the login")
	}
	return loc
}

// LoginPage reports whether authURL leads to the OP's login page (rather
// than straight back to the relying party).
func (op *OP) LoginPage(tb testing.TB, client *http.Client, authURL string) bool {
	tb.Helper()
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	page, loc := op.follow(tb, &c, authURL)
	return loc == nil && loginForm.MatchString(page)
}

// follow GETs raw and the redirects after it while they stay on the OP;
// it returns the page it ends on, or the first redirect off the OP.
func (op *OP) follow(tb testing.TB, c *http.Client, raw string) (page string, off *url.URL) {
	tb.Helper()
	for range 10 {
		u, err := url.Parse(raw)
		if err != nil {
			tb.Fatal(err)
		}
		if !op.owns(u) {
			return "", u
		}
		resp, err := c.Get(u.String())
		if err != nil {
			tb.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		loc, err := resp.Location()
		if errors.Is(err, http.ErrNoLocation) {
			if resp.StatusCode != http.StatusOK {
				tb.Fatalf("the OP answered %s: %s", resp.Status, body)
			}
			return string(body), nil
		}
		raw = loc.String()
	}
	tb.Fatalf("too many redirects at the OP")
	return "", nil
}

func (op *OP) owns(u *url.URL) bool {
	iss, _ := url.Parse(op.Issuer)
	return u.Host == iss.Host || u.Host == op.Addr
}

func (op *OP) url(path string) string { return strings.TrimSuffix(op.Issuer, "/") + path }
