package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/spa-gateway/gateway/logtest"
	"github.com/spa-gateway/gateway/sessionstore/boltstore"
)

// The tests in this file run the real binary, built once per test process.
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func gatewayBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gateway-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "gateway")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// process is a running gateway binary.
type process struct {
	cmd            *exec.Cmd
	stdout, stderr *logtest.Buffer
	done           chan struct{}
	err            error
}

func start(t testing.TB, args ...string) *process {
	t.Helper()
	p := &process{
		cmd:    exec.Command(gatewayBinary(t), args...),
		stdout: &logtest.Buffer{},
		stderr: &logtest.Buffer{},
		done:   make(chan struct{}),
	}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("gateway stderr:\n%s", p.stderr.String())
		}
	})
	return p
}

var listeningRE = regexp.MustCompile(`"msg":"listening","addr":"([^"]+)","admin_addr":"([^"]+)"|msg=listening addr=(\S+) admin_addr=(\S+)`)

// addrs waits for the "listening" log line and returns both addresses.
func (p *process) addrs(t testing.TB) (main, admin string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if m := listeningRE.FindStringSubmatch(p.stderr.String()); m != nil {
			if m[1] != "" {
				return m[1], m[2]
			}
			return m[3], m[4]
		}
		select {
		case <-p.done:
			t.Fatalf("gateway exited early (%v):\n%s", p.err, p.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("gateway did not start:\n%s", p.stderr.String())
	return "", ""
}

func (p *process) wait(t testing.TB, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("gateway did not exit within %v", within)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatal(p.err)
	}
	return 0
}

func runBinary(t testing.TB, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(gatewayBinary(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// writeSetup writes a key, a users file (alice / wonderland) and a
// configuration with extra TOML appended, and returns the config's path.
func writeSetup(t testing.TB, dir, extra string) string {
	t.Helper()
	if _, stderr, code := runBinary(t, "", "keygen", "--alg", "EdDSA", "--out", filepath.Join(dir, "signing.pem")); code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, stderr)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("wonderland"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "users"), []byte("alice:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := `
[server]
listen = "127.0.0.1:0"
shutdown_timeout = "5s"
[admin]
listen = "127.0.0.1:0"
[tokens]
key_file = "signing.pem"
[store]
path = "sessions.db"
[login]
users_file = "users"
max_failures = 1000
[[route]]
prefix = "/api/"
upstream = "http://127.0.0.1:9"
` + extra
	path := filepath.Join(dir, "gateway.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// patch replaces the first old in the file at path with new, failing tb
// if the file has no old (a fixture that writeSetup no longer matches).
func patch(tb testing.TB, path, old, new string) {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		tb.Fatalf("%s has no %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o600); err != nil {
		tb.Fatal(err)
	}
}

func TestBinaryCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := writeSetup(t, dir, "")
	if out, stderr, code := runBinary(t, "", "check-config", "--config", good); code != 0 || !strings.Contains(out, "ok") {
		t.Errorf("check-config good: exit %d, stdout %q, stderr %q; want 0 and ok", code, out, stderr)
	}
	tests := []struct {
		name, extra, key string
	}{
		{"bad algorithm", "[log]\nlevel = \"loud\"\n", "log.level"},
		{"unknown key", "[store]\nbackend = \"bbolt\"\n", "store"},
		{"bad duration", "[[route]]\nprefix = \"/x/\"\nupstream = \"http://127.0.0.1:9\"\ntimeout = \"soon\"\n", "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := t.TempDir()
			path := writeSetup(t, d, tt.extra)
			_, stderr, code := runBinary(t, "", "check-config", "--config", path)
			if code != 2 || !strings.Contains(stderr, tt.key) {
				t.Errorf("check-config: exit %d, stderr %q; want 2 naming %s", code, stderr, tt.key)
			}
		})
	}
	t.Run("missing key file", func(t *testing.T) {
		d := t.TempDir()
		path := writeSetup(t, d, "")
		os.Remove(filepath.Join(d, "signing.pem"))
		_, stderr, code := runBinary(t, "", "check-config", "--config", path)
		if code != 2 || !strings.Contains(stderr, "tokens.key_file") {
			t.Errorf("check-config: exit %d, stderr %q; want 2 naming tokens.key_file", code, stderr)
		}
		// serve refuses the same file with the same exit code.
		_, stderr, code = runBinary(t, "", "serve", "--config", path)
		if code != 2 || !strings.Contains(stderr, "tokens.key_file") {
			t.Errorf("serve: exit %d, stderr %q; want 2 naming tokens.key_file", code, stderr)
		}
	})
}

func TestBinaryServeDev(t *testing.T) {
	p := start(t, "serve", "--dev", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
	mainAddr, adminAddr := p.addrs(t)
	var token string
	deadline := time.Now().Add(10 * time.Second)
	for token == "" && time.Now().Before(deadline) {
		if m := regexp.MustCompile(`TOKEN=(\S+)`).FindStringSubmatch(p.stdout.String()); m != nil {
			token = m[1]
		}
		time.Sleep(10 * time.Millisecond)
	}
	if token == "" {
		t.Fatalf("no TOKEN line in stdout:\n%s", p.stdout.String())
	}
	if !strings.Contains(p.stdout.String(), "curl") {
		t.Errorf("stdout has no curl line:\n%s", p.stdout.String())
	}
	req, _ := http.NewRequest("GET", "http://"+mainAddr+"/api/hello", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Auth-Subject", "root")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), `"X-Auth-Subject": "demo"`) || strings.Contains(string(body), "root") {
		t.Errorf("GET /api/hello: %d %s; want 200 and the echo showing X-Auth-Subject: demo only", res.StatusCode, body)
	}
	// demo / demo logs in.
	res, err = http.Post("http://"+mainAddr+"/auth/login", "application/json", strings.NewReader(`{"username":"demo","password":"demo"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("login demo/demo: status %d, want 200", res.StatusCode)
	}
	if res, err := http.Get("http://" + adminAddr + "/readyz"); err != nil || res.StatusCode != 200 {
		t.Errorf("readyz: %v %v, want 200", res, err)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
	if strings.Contains(p.stderr.String(), token) {
		t.Error("the token appears in the logs")
	}
}

func TestBinaryServeSecondInstanceFailsFast(t *testing.T) {
	dir := t.TempDir()
	path := writeSetup(t, dir, "")
	p := start(t, "serve", "--config", path)
	p.addrs(t)
	startAt := time.Now()
	_, stderr, code := runBinary(t, "", "serve", "--config", path)
	if code != 1 || !strings.Contains(stderr, "sessions.db") {
		t.Errorf("second serve on the same store: exit %d, stderr %q; want 1 naming the file", code, stderr)
	}
	if d := time.Since(startAt); d > 10*time.Second {
		t.Errorf("second serve took %v to fail, want fast", d)
	}
}

// TestBinaryCrashSafety refreshes many sessions in a loop, kills the gateway
// with SIGKILL in the middle, restarts it on the same file and checks that
// every successor answered 200 before the kill still refreshes, and every
// token rotated before it is refused as reuse.
func TestBinaryCrashSafety(t *testing.T) {
	dir := t.TempDir()
	// Tokens refreshable at once (refresh_before_expiry just under
	// access_ttl), and a short grace so the reuse check comes quickly.
	path := writeSetup(t, dir, "")
	patch(t, path, "key_file = \"signing.pem\"\n",
		"key_file = \"signing.pem\"\naccess_ttl = \"10s\"\nrefresh_before_expiry = \"9999ms\"\nrefresh_grace = \"2s\"\n")

	p := start(t, "serve", "--config", path)
	mainAddr, _ := p.addrs(t)
	base := "http://" + mainAddr
	client := &http.Client{Timeout: 5 * time.Second}

	const sessions = 12
	chains := make([][]string, sessions) // every token answered 200, in order
	for i := range chains {
		res, err := client.Post(base+"/auth/login", "application/json", strings.NewReader(`{"username":"alice","password":"wonderland"}`))
		if err != nil {
			t.Fatal(err)
		}
		chains[i] = []string{accessToken(t, res)}
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	answered := 0
	for i := range chains {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				cur := chains[i][len(chains[i])-1]
				mu.Unlock()
				req, _ := http.NewRequest("POST", base+"/auth/refresh", nil)
				req.Header.Set("Authorization", "Bearer "+cur)
				res, err := client.Do(req)
				if err != nil {
					return // the gateway was killed
				}
				if res.StatusCode != 200 {
					res.Body.Close()
					t.Errorf("refresh during load: status %d", res.StatusCode)
					return
				}
				var body struct {
					AccessToken string `json:"access_token"`
				}
				err = json.NewDecoder(res.Body).Decode(&body)
				res.Body.Close()
				if err != nil || body.AccessToken == "" {
					return // killed while answering: not an answered 200
				}
				tok := body.AccessToken
				mu.Lock()
				chains[i] = append(chains[i], tok)
				answered++
				mu.Unlock()
			}
		})
	}
	// Let the load run, then kill -9 in the middle of it.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := answered
		mu.Unlock()
		if n >= 200 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	close(stop)
	wg.Wait()
	if answered < 50 {
		t.Fatalf("only %d refreshes answered before the kill", answered)
	}
	t.Logf("%d refreshes answered 200 before SIGKILL", answered)

	// The file the kill left is consistent: pages, indexes and counter
	// agree with the sessions.
	st, err := boltstore.Open(filepath.Join(dir, "sessions.db"), nil)
	if err != nil {
		t.Fatalf("open the store after SIGKILL: %v", err)
	}
	if err := st.Check(t.Context()); err != nil {
		t.Errorf("store after SIGKILL: %v", err)
	}
	st.Close()

	p2 := start(t, "serve", "--config", path)
	mainAddr, _ = p2.addrs(t)
	base = "http://" + mainAddr
	refresh := func(tok string) (int, string) {
		req, _ := http.NewRequest("POST", base+"/auth/refresh", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body struct {
			Desc string `json:"error_description"`
		}
		if res.StatusCode != 200 {
			json.NewDecoder(res.Body).Decode(&body)
		}
		return res.StatusCode, body.Desc
	}
	// Every last successor answered 200 still refreshes (a refresh that was
	// in flight at the kill may have committed: then it gets the grace).
	for i, chain := range chains {
		if code, desc := refresh(chain[len(chain)-1]); code != 200 {
			t.Errorf("session %d: last answered successor: status %d (%s), want 200", i, code, desc)
		}
	}
	// Past the grace, every token rotated before the kill is reuse.
	time.Sleep(2100 * time.Millisecond)
	for i, chain := range chains {
		if len(chain) < 2 {
			continue
		}
		if code, desc := refresh(chain[len(chain)-2]); code != 401 || desc != "token reuse detected" {
			t.Errorf("session %d: rotated token: status %d (%s), want 401 token reuse detected", i, code, desc)
		}
	}
}

func accessToken(t testing.TB, res *http.Response) string {
	t.Helper()
	defer res.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil || body.AccessToken == "" {
		t.Fatalf("no access_token (status %d): %v", res.StatusCode, err)
	}
	return body.AccessToken
}

// TestBinaryServeDevAdminToken runs the "gateway sessions list" line that
// serve --dev prints, as printed, with the binary: it lists demo's session
// through the admin API and the token file --dev wrote, which is removed at
// exit.
func TestBinaryServeDevAdminToken(t *testing.T) {
	p := start(t, "serve", "--dev", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
	_, adminAddr := p.addrs(t)
	lineRE := regexp.MustCompile(`(?m)^\s*gateway (sessions list .*)$`)
	var line []string
	deadline := time.Now().Add(10 * time.Second)
	for line == nil && time.Now().Before(deadline) {
		line = lineRE.FindStringSubmatch(p.stdout.String())
		time.Sleep(10 * time.Millisecond)
	}
	if line == nil {
		t.Fatalf("no gateway sessions list line in stdout:\n%s", p.stdout.String())
	}
	args := strings.Fields(line[1])
	if !strings.Contains(line[1], "--admin http://"+adminAddr) {
		t.Errorf("sessions line %q does not name the admin listener %s", line[1], adminAddr)
	}
	tokenFile := args[len(args)-1]
	if fi, err := os.Stat(tokenFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("admin token file %s: %v, %v; want mode 0600", tokenFile, fi, err)
	}
	stdout, stderr, code := runBinary(t, "", args...)
	if code != 0 || !strings.HasPrefix(stdout, "SESSION") || strings.Count(stdout, "\n") != 2 {
		t.Errorf("gateway %s: exit %d, stdout %q, stderr %q; want 0 and demo's session", line[1], code, stdout, stderr)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
	if _, err := os.Stat(tokenFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("admin token file after exit: %v, want removed", err)
	}
}

// post sends body to url as JSON with token as a bearer token (none when
// empty), and returns the status and body of the answer.
func post(t *testing.T, url, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}
