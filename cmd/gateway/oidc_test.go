package main

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/auth/oidctest"
	"github.com/spa-gateway/gateway/proctest"
)

// TestOIDCConfigErrors: [login.oidc] is checked like every table: each bad
// key named, in one run, a typo with the key probably meant, and the
// delivery the callback needs.
func TestOIDCConfigErrors(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "gateway.toml", `
[tokens]
key_file = "keys/signing.pem"
delivery = "bearer"
[[route]]
prefix = "/api/"
upstream = "http://127.0.0.1:9000"
[login.oidc]
issuer = "http://idp.example/"
cleint_id = "web"
client_secret_file = "no-such-secret"
redirect_url = "https://app.example/callback"
recheck = "always"
scopes = ["openid", "two words"]
[login.oidc.extra_auth_params]
state = "mine"
`)
	_, err := loadConfig(path)
	var got []string
	for _, ce := range configErrors(t, err) {
		got = append(got, lineNote.ReplaceAllString(ce.Error(), ""))
	}
	joined := strings.Join(got, "\n")
	for _, want := range []string{
		`login.oidc.cleint_id: unknown key (did you mean "client_id"?)`,
		`login.oidc.recheck: "always" is not one of never, refresh`,
		`login.oidc.issuer: "http://idp.example/" must be https (http only for localhost)`,
		`login.oidc.redirect_url: path "/callback" must be /auth/oidc/callback`,
		`login.oidc.client_id: is required with login.oidc.issuer`,
		"login.oidc.client_secret_file: open " + filepath.Join(dir, "no-such-secret"),
		`login.oidc.scopes[1]: "two words" is not a scope`,
		`login.oidc.extra_auth_params.state: the login sets this parameter itself`,
		`tokens.delivery: must be "cookie" or "both" with login.oidc`,
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("problems lack %q; got:\n%s", want, joined)
		}
	}
	_, stderr, code := runBinary(t, "", "check-config", "--config", path)
	if code != 2 || !strings.Contains(stderr, "tokens.delivery") {
		t.Errorf("check-config: exit %d, want 2 naming tokens.delivery:\n%s", code, stderr)
	}
}

// subjectUpstream records the X-Auth-Subject of the requests it gets.
type subjectUpstream struct {
	mu       sync.Mutex
	subjects []string
}

func (u *subjectUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.subjects = append(u.subjects, r.Header.Get("X-Auth-Subject"))
	u.mu.Unlock()
	io.WriteString(w, "ok")
}

func (u *subjectUpstream) last() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.subjects) == 0 {
		return ""
	}
	return u.subjects[len(u.subjects)-1]
}

// TestBinaryOIDC: the real binary with [login.oidc] against the real OP.
// It starts while the OP is down (the login answers 503, the rest of the
// gateway serves), discovers the OP once it is up, and a login through the
// OP's page ends at return_to with our session: the upstream sees the OP's
// subject.
func TestBinaryOIDC(t *testing.T) {
	dir := t.TempDir()
	addr, err := proctest.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr
	up := &subjectUpstream{}
	upstream := httptest.NewServer(up)
	t.Cleanup(upstream.Close)
	// The OP's port is found by starting it once; it is then down until
	// the gateway runs.
	op := oidctest.Start(t, base+"/auth/oidc/callback")
	op.Stop()
	issuer := op.Issuer
	if err := os.WriteFile(filepath.Join(dir, "oidc-secret"), []byte(oidctest.ClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := writeSetup(t, dir, `
[tokens]
key_file = "signing.pem"
delivery = "cookie"
[login.oidc]
issuer = "`+issuer+`"
client_id = "web"
client_secret_file = "oidc-secret"
scopes = ["openid", "profile", "email", "offline_access"]
redirect_url = "`+base+`/auth/oidc/callback"
recheck = "refresh"
`)
	cfg, _ := os.ReadFile(path)
	cfg = []byte(strings.Replace(strings.Replace(string(cfg), `listen = "127.0.0.1:0"`, `listen = "`+addr+`"`, 1),
		`upstream = "http://127.0.0.1:9"`, `upstream = "`+upstream.URL+`"`, 1))
	// writeSetup's [tokens] comes first; the second one would be a
	// duplicate table.
	cfg = []byte(strings.Replace(string(cfg), "[tokens]\nkey_file = \"signing.pem\"\n[store]", "[store]", 1))
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, "serve", "--config", path)
	p.addrs(t)

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := browser.Get(base + "/auth/oidc/login?return_to=/api/hello")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("login with the OP down = %s, want 503", res.Status)
	}

	op.Restart(t)
	var authURL string
	deadline := time.Now().Add(20 * time.Second)
	for authURL == "" {
		res, err := browser.Get(base + "/auth/oidc/login?return_to=/api/hello")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode == http.StatusFound {
			authURL = res.Header.Get("Location")
		} else if time.Now().After(deadline) {
			t.Fatalf("login still %s after the OP came up:\n%s", res.Status, p.stderr.String())
		} else {
			time.Sleep(100 * time.Millisecond)
		}
	}
	// A reload that changes nothing of [login.oidc] keeps the discovered
	// provider (no 503 while it is discovered again) and opens a login
	// state sealed before it.
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.awaitLog(t, reloaded, 1)
	other := &http.Client{CheckRedirect: browser.CheckRedirect} // browser's login state stays as it is
	if res, err := other.Get(base + "/auth/oidc/login?return_to=/api/other"); err != nil || res.StatusCode != http.StatusFound {
		t.Fatalf("login right after a reload = %v, %v; want 302", res, err)
	} else {
		res.Body.Close()
	}
	cb := op.Login(t, browser, authURL, oidctest.Alice)
	res, err = browser.Get(cb.String())
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusFound || res.Header.Get("Location") != "/api/hello" {
		t.Fatalf("callback = %s, Location %q:\n%s", res.Status, res.Header.Get("Location"), p.stderr.String())
	}
	var tok string
	for _, c := range res.Cookies() {
		if c.Name == "__Host-gateway" {
			tok = c.Value
		}
	}
	req, _ := http.NewRequest("GET", base+"/api/hello", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/hello = %v, %v", res, err)
	}
	if got := up.last(); got != oidctest.Alice.ID {
		t.Fatalf("X-Auth-Subject = %q, want %q", got, oidctest.Alice.ID)
	}
	if strings.Contains(p.stderr.String(), tok) {
		t.Error("the gateway logged a token")
	}
}
