// Package oidctest starts a real OpenID Provider for tests: testop (the
// module in ./testop), which is the example OP of github.com/zitadel/oidc/v3
// (a certified implementation) with its login page, clients and storage
// unchanged, its signing key read from a file this package writes, and a
// "sid" claim in every ID token. It runs on a free loopback port, and this
// package drives its own login page the way a browser does. There is no
// fake: the gateway's login is tested against the discovery, the JWKS, the
// code exchange, the refresh tokens and the end-session endpoint of a real
// provider, and a test signs back-channel logout tokens with the
// provider's own key (OP.Key).
//
// The binary is found as env OIDC_TESTOP_BIN says, else it is built with
// "go build" from ./testop into the user's cache directory (once per
// content of its sources). When neither works the calling test is skipped,
// except under CI (the environment variable CI is "true"), where it fails:
// .ci/run installs it and sets OIDC_TESTOP_BIN. (The browser tests of
// client/e2e run the unmodified example OP, OIDC_OP_BIN.)
package oidctest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
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
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/spa-gateway/gateway/proctest"
)

// The clients the example OP registers (example/server/main.go, and
// testop's main.go): a confidential one (client_secret_basic) and a public
// one.
const (
	ClientID     = "web"
	ClientSecret = "secret"
	PublicClient = "native"
)

// KeyID is the kid under which the OP publishes Key at its /keys.
const KeyID = "testop-key"

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
	// Key is the OP's signing key (RS256, kid KeyID): it signs every token
	// the OP issues, and a test signs logout tokens with it.
	Key *rsa.PrivateKey

	bin, users, keyFile, redirects string
	env                            []string
	mu                             sync.Mutex
	proc                           *proctest.Proc
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

// newOP finds the binary and writes the users file and the signing key.
func newOP(tb testing.TB, redirectURIs []string) *OP {
	tb.Helper()
	bin := need(tb)
	dir := tb.TempDir()
	users := filepath.Join(dir, "users.json")
	if err := writeUsers(users, Alice, Bob); err != nil {
		tb.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	keyFile := filepath.Join(dir, "signing.pem")
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(keyFile, pemKey, 0o600); err != nil {
		tb.Fatal(err)
	}
	return &OP{bin: bin, users: users, keyFile: keyFile, Key: key, redirects: strings.Join(redirectURIs, ",")}
}

// args are the arguments of /usr/bin/env that run the OP on addr: the
// example OP is configured by its environment only.
func (op *OP) args(addr string) []string {
	_, port, _ := net.SplitHostPort(addr)
	op.Addr, op.Issuer = addr, "http://localhost:"+port+"/"
	op.env = []string{"PORT=" + port, "USERS_FILE=" + op.users, "REDIRECT_URI=" + op.redirects,
		"SIGNING_KEY_FILE=" + op.keyFile, "KEY_ID=" + KeyID}
	return append(append([]string{}, op.env...), op.bin)
}

func (op *OP) current() *proctest.Proc {
	op.mu.Lock()
	defer op.mu.Unlock()
	return op.proc
}

// Restart kills the OP and starts it again on the same port: it keeps its
// signing key (Key) and its users, and forgets every
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

// need finds or builds the OP's binary, or skips (fails under CI) tb.
func need(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("OIDC_TESTOP_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			tb.Fatalf("OIDC_TESTOP_BIN: %v", err)
		}
		return p
	}
	path, err := buildOnce()
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("the OpenID Provider (go build in auth/oidctest/testop) is not available, and CI must run the tests that need it: %v", err)
	}
	tb.Skipf("the OpenID Provider (go build in auth/oidctest/testop) is not available; skipping: %v", err)
	return ""
}

var buildOnce = sync.OnceValues(build)

// build runs go build in testop's directory, into the user's cache
// directory under a name that hashes testop's sources, once per test
// binary: a change to testop is built again, an unchanged one is not.
func build() (string, error) {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("oidctest: no source path")
	}
	src := filepath.Join(filepath.Dir(self), "testop")
	h := sha256.New()
	for _, name := range []string{"main.go", "go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(cache, "spa-gateway-oidctest", "testop-"+hex.EncodeToString(h.Sum(nil))[:16])
	if fileExists(p) {
		return p, nil
	}
	// Built under a name of its own and renamed into place: the test
	// binaries of several packages may build at once.
	tmp := fmt.Sprintf("%s.%d.tmp", p, os.Getpid())
	cmd := exec.Command("go", "build", "-o", tmp, ".")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build in %s: %w: %s", src, err, out)
	}
	return p, os.Rename(tmp, p)
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

// LogoutEvent is the member of a back-channel logout token's "events"
// claim (OpenID Connect Back-Channel Logout 1.0, section 2.4).
const LogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// LogoutClaims are the claims of a good logout token from the OP for
// client, issued now: iss, aud, iat, exp (two minutes on), a random jti,
// the events claim, and sid and sub where not empty. A test changes them
// to forge one.
func (op *OP) LogoutClaims(client, sub, sid string) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{
		"iss": op.Issuer, "aud": client, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
		"jti": rand.Text(), "events": map[string]any{LogoutEvent: map[string]any{}},
	}
	if sub != "" {
		c["sub"] = sub
	}
	if sid != "" {
		c["sid"] = sid
	}
	return c
}

// SignLogout signs claims as the OP would sign a logout token: RS256 with
// Key, kid KeyID, typ "logout+jwt".
func (op *OP) SignLogout(tb testing.TB, claims jwt.MapClaims) string {
	tb.Helper()
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	t.Header["kid"] = KeyID
	t.Header["typ"] = "logout+jwt"
	s, err := t.SignedString(op.Key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
