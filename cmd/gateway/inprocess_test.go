package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/spa-gateway/gateway/logtest"
)

// The tests in this file's family run a Main in process, built by newMain
// from a Config as serve builds it, on 127.0.0.1 ports chosen by the system.

// testPassword is alice's password in the users file of testConfig:
// distinctive, so that a test can look for it in the logs.
const testPassword = "Wonder-7-land-Q"

// testAdminToken is the admin token of testConfig's admin.token_file.
const testAdminToken = "admin-token-0123456789abcdef"

// testConfig returns a valid configuration whose files live in dir: the
// signing key dir/signing.pem (written unless present), a users file with
// alice, the admin token file, a store dir/sessions.db, a route /api/ to
// upstream, tokens of 10s that may be refreshed at once
// (refresh_before_expiry just under access_ttl), no refresh grace (a
// rotated token presented again is reuse at once) and debug logs.
func testConfig(t testing.TB, dir, upstream string) Config {
	t.Helper()
	c := Default()
	c.Server.Listen, c.Admin.Listen = "127.0.0.1:0", "127.0.0.1:0"
	c.Server.ShutdownTimeout = Duration(5 * time.Second)
	c.Tokens.KeyFile = filepath.Join(dir, "signing.pem")
	if _, err := os.Stat(c.Tokens.KeyFile); err != nil {
		writeKey(t, dir, "signing.pem", "EdDSA")
	}
	c.Tokens.AccessTTL = Duration(10 * time.Second)
	c.Tokens.RefreshBeforeExpiry = Duration(9999 * time.Millisecond)
	c.Tokens.RefreshGrace = 0
	h, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	c.Login.UsersFile = writeFile(t, dir, "users", "alice:"+string(h)+"\n")
	c.Login.MaxFailures = 1000
	c.Admin.TokenFile = writeFile(t, dir, "admin-token", testAdminToken+"\n")
	c.Store.Path = filepath.Join(dir, "sessions.db")
	r := DefaultRoute()
	r.Prefix, r.Upstream = "/api/", upstream
	c.Route = []RouteConfig{r}
	c.Log.Level = "debug"
	return c
}

// okUpstream is an upstream that answers 200 "ok".
func okUpstream(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// testGateway is a Main running in process.
type testGateway struct {
	t           testing.TB
	m           *Main
	logs        *logtest.Buffer
	base, admin string // http://host:port of the two listeners
	cancel      context.CancelFunc
	done        chan error
}

// startMain validates cfg, builds a Main from it with its logs in a buffer,
// and runs it until stop or the end of the test.
func startMain(t testing.TB, cfg Config) *testGateway {
	t.Helper()
	return startMainClock(t, cfg, time.Now)
}

// startMainClock is startMain with now as the gateway's clock.
func startMainClock(t testing.TB, cfg Config, now func() time.Time) *testGateway {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	g := &testGateway{t: t, logs: &logtest.Buffer{}, done: make(chan error, 1)}
	m, err := newMainClock(cfg, false, g.logs, now)
	if err != nil {
		t.Fatalf("newMain: %v", err)
	}
	if err := m.Listen(); err != nil {
		m.Close()
		t.Fatal(err)
	}
	g.m = m
	g.base, g.admin = "http://"+m.MainAddr(), "http://"+m.AdminAddr()
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	go func() { g.done <- m.Run(ctx) }()
	t.Cleanup(func() {
		g.stop()
		if t.Failed() {
			t.Logf("gateway logs:\n%s", g.logs.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get(g.admin + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return g
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway not ready: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop ends Run as SIGTERM would and checks that it returns nil. It may be
// called more than once.
func (g *testGateway) stop() {
	g.t.Helper()
	if g.cancel == nil {
		return
	}
	g.cancel()
	g.cancel = nil
	select {
	case err := <-g.done:
		if err != nil {
			g.t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(15 * time.Second):
		g.t.Fatal("Run did not return after its context ended")
	}
}

// request sends a request to url with the header pairs given, and returns
// the status and body.
func (g *testGateway) request(method, url, body string, header ...string) (int, string, http.Header) {
	g.t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		g.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		g.t.Fatal(err)
	}
	return res.StatusCode, string(b), res.Header
}

// tokenAnswer is the body of a login or refresh.
type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// login logs user in and returns the status and the answer.
func (g *testGateway) login(user, password string) (int, tokenAnswer, http.Header) {
	g.t.Helper()
	body, _ := json.Marshal(map[string]string{"username": user, "password": password})
	code, b, h := g.request("POST", g.base+"/auth/login", string(body), "Content-Type", "application/json")
	var ta tokenAnswer
	json.Unmarshal([]byte(b), &ta)
	return code, ta, h
}

// mustLogin logs alice in and returns her token.
func (g *testGateway) mustLogin() string {
	g.t.Helper()
	code, ta, _ := g.login("alice", testPassword)
	if code != http.StatusOK || ta.AccessToken == "" {
		g.t.Fatalf("login: status %d, %+v; want 200 and a token", code, ta)
	}
	return ta.AccessToken
}

// refresh posts tok to /auth/refresh.
func (g *testGateway) refresh(tok string) (int, tokenAnswer) {
	g.t.Helper()
	code, b, _ := g.request("POST", g.base+"/auth/refresh", "", "Authorization", "Bearer "+tok)
	var ta tokenAnswer
	json.Unmarshal([]byte(b), &ta)
	return code, ta
}

// adminRequest calls the admin API with the bearer token (none if "").
func (g *testGateway) adminRequest(method, path, token string) (int, string) {
	g.t.Helper()
	var h []string
	if token != "" {
		h = []string{"Authorization", "Bearer " + token}
	}
	code, body, _ := g.request(method, g.admin+path, "", h...)
	return code, body
}

// scrape returns the admin listener's /metrics.
func (g *testGateway) scrape() string {
	g.t.Helper()
	code, body, _ := g.request("GET", g.admin+"/metrics", "")
	if code != http.StatusOK {
		g.t.Fatalf("GET /metrics: status %d", code)
	}
	return body
}

// sample returns the value of the sample named series (its name and labels,
// labels in alphabetical order, as client_golang writes them) in a
// Prometheus text exposition, and whether it is there.
func sample(exposition, series string) (float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(exposition))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), series+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(rest, 64)
		return v, err == nil
	}
	return 0, false
}
