package main

import (
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBinarySIGHUPReloads sends SIGHUP twice to the real binary (a systemd
// reload or a logrotate hook does): it used to die at once with exit 129,
// no drain and no log line, and then logged it as ignored. Now (issue 15)
// each SIGHUP reloads the unchanged configuration, the process keeps
// serving (a proxied request with a token from before and /readyz still
// answer), and a SIGTERM afterwards still drains and exits 0.
func TestBinarySIGHUPReloads(t *testing.T) {
	dir := t.TempDir()
	path := writeSetup(t, dir, "")
	patch(t, path, `upstream = "http://127.0.0.1:9"`, `upstream = "`+okUpstream(t)+`"`)

	p := start(t, "serve", "--config", path)
	mainAddr, adminAddr := p.addrs(t)
	client := &http.Client{Timeout: 5 * time.Second}
	res, err := client.Post("http://"+mainAddr+"/auth/login", "application/json", strings.NewReader(`{"username":"alice","password":"wonderland"}`))
	if err != nil {
		t.Fatal(err)
	}
	token := accessToken(t, res)

	const ignored = `"msg":"configuration reloaded","cause":"signal"`
	for i := 1; i <= 2; i++ {
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatalf("SIGHUP %d: %v", i, err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for strings.Count(p.stderr.String(), ignored) < i {
			select {
			case <-p.done:
				t.Fatalf("the gateway exited on SIGHUP %d (%v)", i, p.err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("SIGHUP %d: no log line %s", i, ignored)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if !strings.Contains(p.stderr.String(), `"level":"INFO","msg":"configuration reloaded"`) {
			t.Errorf("the SIGHUP line is not an information:\n%s", p.stderr.String())
		}

		req, _ := http.NewRequest("GET", "http://"+mainAddr+"/api/x", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("proxied request after SIGHUP %d: %v", i, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || string(body) != "ok" {
			t.Errorf("proxied request after SIGHUP %d: %d %q, want 200 \"ok\"", i, res.StatusCode, body)
		}
		res, err = client.Get("http://" + adminAddr + "/readyz")
		if err != nil {
			t.Fatalf("/readyz after SIGHUP %d: %v", i, err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Errorf("/readyz after SIGHUP %d = %d, want 200", i, res.StatusCode)
		}
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
	for _, msg := range []string{`"msg":"shutting down"`, `"msg":"stopped"`} {
		if !strings.Contains(p.stderr.String(), msg) {
			t.Errorf("no %s log line after SIGTERM:\n%s", msg, p.stderr.String())
		}
	}
}
