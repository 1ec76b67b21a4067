package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/spa-gateway/gateway/auth"
)

// reloadConfig is the configuration of the reload tests: writeSetup's
// files, /api/ to api and /slow/ to slow, server and tokens added to
// their tables.
func reloadConfig(api, slow, server, tokens string) string {
	return fmt.Sprintf(`
[server]
listen = "127.0.0.1:0"
shutdown_timeout = "5s"
%s
[admin]
listen = "127.0.0.1:0"
[tokens]
%s
[store]
path = "sessions.db"
[login]
users_file = "users"
max_failures = 1000
[[route]]
prefix = "/api/"
upstream = %q
[[route]]
prefix = "/slow/"
upstream = %q
`, server, tokens, api, slow)
}

// refreshableTokens makes a token refreshable one second after its minting
// (in its last 9m59s), so that the test need not wait for it to expire.
const refreshableTokens = "access_ttl = \"10m\"\nrefresh_before_expiry = \"9m59s\"\n"

// answering is an upstream that answers 200 with body.
func answering(t testing.TB, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, body) }))
	t.Cleanup(srv.Close)
	return srv.URL
}

// awaitLog waits until the gateway's log holds want n times, failing if it
// exits first.
func (p *process) awaitLog(t testing.TB, want string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(p.stderr.String(), want) < n {
		select {
		case <-p.done:
			t.Fatalf("the gateway exited (%v) waiting for %d× %s", p.err, n, want)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %d× %s in the log", n, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// metric is the value of the series named exactly series on /metrics.
func metric(t testing.TB, adminAddr, series string) float64 {
	t.Helper()
	res, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no series %s on /metrics", series)
	return 0
}

// call sends method to url with tok as its bearer token and returns the
// status and body.
func call(t testing.TB, method, url, tok, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func login(t testing.TB, base, user, pass string) (int, string) {
	t.Helper()
	return call(t, "POST", base+"/auth/login", "", fmt.Sprintf(`{"username":%q,"password":%q}`, user, pass))
}

func addUser(t testing.TB, path, user, pass string) {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "%s:%s\n", user, hash)
}

const (
	reloaded      = `"msg":"configuration reloaded"`
	reloadFailed  = `"msg":"configuration reload failed: the previous configuration keeps serving"`
	settingKept   = `"msg":"configuration reload: setting changed but cannot change while serving; kept until a restart"`
	successSeries = `gateway_config_reloads_total{result="success"}`
	failureSeries = `gateway_config_reloads_total{result="failure"}`
	lastSuccess   = `gateway_config_last_reload_success_timestamp_seconds`
)

// TestBinaryReload runs the real binary through reloads on SIGHUP: a route
// moved to another upstream, a user added and the signing key rotated
// (the old one kept among the verify keys) take effect while a slow
// request in flight finishes with 200 and a session from before still
// refreshes; a broken configuration leaves the previous one serving and
// names its key; a changed listen address is named and kept.
func TestBinaryReload(t *testing.T) {
	dir := t.TempDir()
	path := writeSetup(t, dir, "")
	entered, release := make(chan struct{}, 1), make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		entered <- struct{}{}
		<-release
		io.WriteString(w, "slow")
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	rewrite(t, path, reloadConfig(answering(t, "old"), slow.URL, "", refreshableTokens+`key_file = "signing.pem"`))
	p := start(t, "serve", "--config", path)
	mainAddr, adminAddr := p.addrs(t)
	base := "http://" + mainAddr
	started := metric(t, adminAddr, lastSuccess)

	code, body := login(t, base, "alice", "wonderland")
	if code != 200 {
		t.Fatalf("login alice = %d %s", code, body)
	}
	alice := tokenOf(body)
	if code, body := call(t, "GET", base+"/api/x", alice, ""); code != 200 || body != "old" {
		t.Fatalf("GET /api/x = %d %q, want 200 \"old\"", code, body)
	}
	inFlight := make(chan string, 1)
	go func() {
		code, body := call(t, "GET", base+"/slow/x", alice, "")
		inFlight <- fmt.Sprintf("%d %s", code, body)
	}()
	<-entered

	// The new configuration: /api/ elsewhere, bob, a new signing key.
	if _, stderr, code := runBinary(t, "", "keygen", "--alg", "EdDSA", "--out", filepath.Join(dir, "signing2.pem")); code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, stderr)
	}
	addUser(t, filepath.Join(dir, "users"), "bob", "builder")
	rewrite(t, path, reloadConfig(answering(t, "new"), slow.URL, "",
		refreshableTokens+`key_file = "signing2.pem"`+"\nverify_key_files = [\"signing.pem\"]"))
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.awaitLog(t, reloaded, 1)

	close(release)
	if got := <-inFlight; got != "200 slow" {
		t.Errorf("the request in flight across the reload = %s, want 200 slow", got)
	}
	if code, body := call(t, "GET", base+"/api/x", alice, ""); code != 200 || body != "new" {
		t.Errorf("GET /api/x with a token of the old key = %d %q, want 200 \"new\"", code, body)
	}
	code, body = login(t, base, "bob", "builder")
	if code != 200 {
		t.Fatalf("login of the added user = %d %s, want 200", code, body)
	}
	if code, body := call(t, "GET", base+"/api/x", tokenOf(body), ""); code != 200 {
		t.Errorf("GET /api/x with a token of the new key = %d %s", code, body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for code, body = call(t, "POST", base+"/auth/refresh", alice, ""); code == 401 && strings.Contains(body, "token not expired") && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond) // not yet in its refreshable last 9m59s
		code, body = call(t, "POST", base+"/auth/refresh", alice, "")
	}
	if code != 200 {
		t.Fatalf("refresh of a session from before the reload = %d %s, want 200", code, body)
	}
	if code, _ := call(t, "GET", base+"/api/x", tokenOf(body), ""); code != 200 {
		t.Errorf("GET /api/x with the refreshed token = %d", code)
	}
	if got := metric(t, adminAddr, successSeries); got != 1 {
		t.Errorf("%s = %v, want 1", successSeries, got)
	}
	if got := metric(t, adminAddr, lastSuccess); got < started {
		t.Errorf("%s = %v, want at least %v", lastSuccess, got, started)
	}

	// A broken configuration: the previous one keeps serving.
	rewrite(t, path, reloadConfig(answering(t, "broken"), slow.URL, "", refreshableTokens+`key_file = "missing.pem"`))
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.awaitLog(t, reloadFailed, 1)
	if log := p.stderr.String(); !strings.Contains(log, `"key":"tokens.key_file"`) {
		t.Errorf("the failed reload's log does not name tokens.key_file:\n%s", log)
	}
	if got := metric(t, adminAddr, failureSeries); got != 1 {
		t.Errorf("%s = %v, want 1", failureSeries, got)
	}
	if code, body := call(t, "GET", base+"/api/x", alice, ""); code != 200 || body != "new" {
		t.Errorf("GET /api/x after a failed reload = %d %q, want 200 \"new\"", code, body)
	}

	// A new listen address cannot be taken while serving: named, kept.
	rewrite(t, path, strings.Replace(reloadConfig(answering(t, "moved"), slow.URL, "",
		refreshableTokens+`key_file = "signing2.pem"`+"\nverify_key_files = [\"signing.pem\"]"),
		`listen = "127.0.0.1:0"`, `listen = "127.0.0.1:1"`, 1))
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.awaitLog(t, reloaded, 2)
	if log := p.stderr.String(); !strings.Contains(log, `"level":"WARN",`+settingKept+`,"key":"server.listen"`) {
		t.Errorf("no warning naming server.listen:\n%s", log)
	}
	if code, body := call(t, "GET", base+"/api/x", alice, ""); code != 200 || body != "moved" {
		t.Errorf("GET /api/x on the kept address = %d %q, want 200 \"moved\"", code, body)
	}
	if got := metric(t, adminAddr, successSeries); got != 2 {
		t.Errorf("%s = %v, want 2", successSeries, got)
	}
}

// TestBinaryReloadUnderLoad holds 2,000 requests in flight at a slow
// upstream across a SIGHUP that adds a route and rotates the signing key
// (the old one kept in verify_key_files), while a stream of new requests
// keeps arriving through the swap: every one answers 200 with its body,
// none fails to connect, and afterwards the added route answers to tokens
// of both keys.
func TestBinaryReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 requests held across a reload: not under -short")
	}
	const n = 2000
	// Each held request is a socket at the client and at the upstream
	// here, and two in the gateway, which inherits the limit.
	raiseFileLimit(t, 2*n+512)
	dir := t.TempDir()
	path := writeSetup(t, dir, "")

	var entered atomic.Int64
	allIn, release := make(chan struct{}), make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if entered.Add(1) == n {
			close(allIn)
		}
		<-release
		io.WriteString(w, "slow")
	}))
	t.Cleanup(slow.Close)
	var releaseOnce sync.Once
	open := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(open) // before slow.Close, which waits for its handlers
	api := answering(t, "api")
	rewrite(t, path, reloadConfig(api, slow.URL, "", `key_file = "signing.pem"`))
	p := start(t, "serve", "--config", path)
	mainAddr, adminAddr := p.addrs(t)
	base := "http://" + mainAddr
	code, body := login(t, base, "alice", "wonderland")
	if code != 200 {
		t.Fatalf("login alice = %d %s", code, body)
	}
	old := tokenOf(body)

	// One transport for all: no cap on connections to the gateway, and
	// every one of them may stay idle for the next request.
	tr := &http.Transport{MaxIdleConns: n + 64, MaxIdleConnsPerHost: n + 64}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	get := func(url, tok string) (int, string, error) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return res.StatusCode, string(b), err
	}

	held := make(chan string, n)
	for i := 0; i < n; i++ {
		go func() {
			code, body, err := get(fmt.Sprintf("%s/slow/%d", base, i), old)
			held <- fmt.Sprintf("%d %s %v", code, body, err)
		}()
	}
	select {
	case <-allIn:
	case <-time.After(15 * time.Second):
		t.Fatalf("only %d of %d requests reached the upstream", entered.Load(), n)
	}

	// New requests keep arriving while the configuration is swapped.
	stop := make(chan struct{})
	var streamed atomic.Int64
	var streamWG sync.WaitGroup
	streamErrs := make(chan string, 64)
	for range 8 {
		streamWG.Add(1)
		go func() {
			defer streamWG.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, body, err := get(base+"/api/x", old)
				if err != nil || code != 200 || body != "api" {
					select {
					case streamErrs <- fmt.Sprintf("%d %q %v", code, body, err):
					default:
					}
				}
				streamed.Add(1)
			}
		}()
	}

	if _, stderr, code := runBinary(t, "", "keygen", "--alg", "EdDSA", "--out", filepath.Join(dir, "signing2.pem")); code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, stderr)
	}
	added := answering(t, "added")
	rewrite(t, path, reloadConfig(api, slow.URL, "",
		`key_file = "signing2.pem"`+"\nverify_key_files = [\"signing.pem\"]")+
		fmt.Sprintf("[[route]]\nprefix = \"/new/\"\nupstream = %q\n", added))
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.awaitLog(t, reloaded, 1)
	if got := entered.Load(); got != n {
		t.Fatalf("%d requests reached the slow upstream before the release, want %d", got, n)
	}
	time.Sleep(200 * time.Millisecond) // the stream runs on the new configuration too
	open()

	bad := 0
	for range n {
		if got := <-held; got != "200 slow <nil>" {
			if bad++; bad <= 5 {
				t.Errorf("a request held across the reload = %s, want 200 slow", got)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d requests held across the reload failed", bad, n)
	}
	close(stop)
	streamWG.Wait()
	close(streamErrs)
	for e := range streamErrs {
		t.Errorf("a request during the reload = %s, want 200 \"api\"", e)
	}
	t.Logf("%d held requests and %d streamed ones across the reload", n, streamed.Load())

	code, body = login(t, base, "alice", "wonderland")
	if code != 200 {
		t.Fatalf("login after the reload = %d %s", code, body)
	}
	rotated := tokenOf(body)
	if kidOf(t, rotated) == kidOf(t, old) {
		t.Fatalf("a token minted after the reload has the old key's kid %q", kidOf(t, old))
	}
	for name, tok := range map[string]string{"new key": rotated, "old key (verify_key_files)": old} {
		if code, body, err := get(base+"/new/x", tok); err != nil || code != 200 || body != "added" {
			t.Errorf("GET /new/x with a token of the %s = %d %q %v, want 200 \"added\"", name, code, body, err)
		}
	}
	if got := metric(t, adminAddr, successSeries); got != 1 {
		t.Errorf("%s = %v, want 1", successSeries, got)
	}
}

// raiseFileLimit raises this process's soft limit on open files to at
// least want; the gateway started after it inherits the limit.
func raiseFileLimit(t testing.TB, want uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= want {
		return
	}
	if lim.Max < want {
		t.Fatalf("the hard limit on open files is %d; the test needs %d", lim.Max, want)
	}
	lim.Cur = want
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("raising the limit on open files to %d: %v", want, err)
	}
}

// kidOf is the "kid" of the token's header.
func kidOf(t testing.TB, tok string) string {
	t.Helper()
	head, _, _ := strings.Cut(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		t.Fatalf("token header: %v", err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatalf("token header: %v", err)
	}
	return h.Kid
}

// TestBinaryReloadWatchesSymlinkSwap mounts the users file the way
// Kubernetes mounts a Secret (users → ..data/users, ..data → a timestamped
// directory) with server.watch_config on, and swaps ..data to a new
// directory holding a new user: the gateway reloads without a SIGHUP.
func TestBinaryReloadWatchesSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	path := writeSetup(t, dir, "")
	mount := filepath.Join(dir, "mount")
	v1 := filepath.Join(mount, "..2025_01_01_00_00_00.1")
	if err := os.MkdirAll(v1, 0o700); err != nil {
		t.Fatal(err)
	}
	users, err := os.ReadFile(filepath.Join(dir, "users"))
	if err != nil {
		t.Fatal(err)
	}
	rewrite(t, filepath.Join(v1, "users"), string(users))
	mustSymlink(t, filepath.Base(v1), filepath.Join(mount, "..data"))
	mustSymlink(t, "..data/users", filepath.Join(mount, "users"))
	cfg := strings.Replace(reloadConfig(okUpstream(t), okUpstream(t), "watch_config = true\nwatch_interval = \"50ms\"", `key_file = "signing.pem"`),
		`users_file = "users"`, `users_file = "mount/users"`, 1)
	rewrite(t, path, cfg)
	p := start(t, "serve", "--config", path)
	mainAddr, adminAddr := p.addrs(t)
	base := "http://" + mainAddr
	if code, _ := login(t, base, "bob", "builder"); code != 401 {
		t.Fatalf("login of bob before the swap = %d, want 401", code)
	}

	// What the kubelet does: write the new directory, point a new link at
	// it, rename the link over ..data (one atomic step).
	v2 := filepath.Join(mount, "..2025_01_01_00_00_01.2")
	if err := os.MkdirAll(v2, 0o700); err != nil {
		t.Fatal(err)
	}
	rewrite(t, filepath.Join(v2, "users"), string(users))
	addUser(t, filepath.Join(v2, "users"), "bob", "builder")
	mustSymlink(t, filepath.Base(v2), filepath.Join(mount, "..data_tmp"))
	if err := os.Rename(filepath.Join(mount, "..data_tmp"), filepath.Join(mount, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(v1); err != nil {
		t.Fatal(err)
	}
	p.awaitLog(t, reloaded+`,"cause":"file_changed"`, 1)
	if code, body := login(t, base, "bob", "builder"); code != 200 {
		t.Errorf("login of bob after the swap = %d %s, want 200", code, body)
	}
	if code, _ := login(t, base, "alice", "wonderland"); code != 200 {
		t.Errorf("login of alice after the swap = %d, want 200", code)
	}
	if got := metric(t, adminAddr, successSeries); got != 1 {
		t.Errorf("%s = %v, want 1", successSeries, got)
	}
}

func rewrite(t testing.TB, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t testing.TB, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// TestReloadStopsReplacedDiscovery: a successor with a new relying party
// starts its discovery only once live, and stops that of the one it
// replaced; one that keeps its predecessor's relying party keeps its
// discovery running.
func TestReloadStopsReplacedDiscovery(t *testing.T) {
	rp := func() *auth.OIDC {
		o, err := auth.NewOIDC(auth.OIDCConfig{Issuer: "http://127.0.0.1:9/", ClientID: "gw",
			RedirectURL: "http://127.0.0.1:9/auth/oidc/callback", Secret: make([]byte, 32)})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	prevCtx, prevStop := context.WithCancel(t.Context())
	prev := &Main{oidc: rp(), oidcBuiltFrom: "a", stopDiscovery: prevStop, log: log}

	same := &Main{oidc: rp(), oidcBuiltFrom: "a", log: log}
	same.keepOIDC(prev)
	same.startOIDC(t.Context(), prev)
	if same.oidc != prev.oidc || prevCtx.Err() != nil {
		t.Fatalf("unchanged [login.oidc]: relying party kept %v, predecessor's discovery stopped %v; want kept, running", same.oidc == prev.oidc, prevCtx.Err() != nil)
	}

	changed := &Main{oidc: rp(), oidcBuiltFrom: "b", log: log}
	changed.keepOIDC(same)
	changed.startOIDC(t.Context(), same)
	if prevCtx.Err() == nil {
		t.Error("the replaced relying party's discovery still runs")
	}
	if changed.oidc == same.oidc || changed.stopDiscovery == nil {
		t.Fatal("a new relying party without a discovery of its own")
	}
	changed.stopDiscovery()
}
