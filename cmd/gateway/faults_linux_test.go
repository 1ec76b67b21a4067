package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// setFileSizeLimit sets RLIMIT_FSIZE of process pid (prlimit(2)): with a
// soft limit of 0, every write the process makes to a regular file fails
// with EFBIG ("file too large") from the kernel, exactly where a full disk
// fails with ENOSPC: in bbolt's pwrite and ftruncate at commit. Unlike a
// read-only file or directory it works for root (CI runs as root) and
// needs no mount. The Go runtime ignores the SIGXFSZ that comes with it.
func setFileSizeLimit(t *testing.T, pid int, soft uint64) {
	t.Helper()
	lim := syscall.Rlimit{Cur: soft, Max: ^uint64(0)} // RLIM_INFINITY
	if _, _, errno := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), syscall.RLIMIT_FSIZE,
		uintptr(unsafe.Pointer(&lim)), 0, 0, 0); errno != 0 {
		t.Fatalf("prlimit: %v", errno)
	}
}

// hardeningSetup is writeSetup with tokens that may be refreshed at once
// and extra TOML.
func hardeningSetup(t *testing.T, dir, extra string) string {
	t.Helper()
	path := writeSetup(t, dir, extra)
	patch(t, path, "key_file = \"signing.pem\"\n",
		"key_file = \"signing.pem\"\naccess_ttl = \"10s\"\nrefresh_before_expiry = \"9999ms\"\nrefresh_grace = \"2s\"\n")
	return path
}

const aliceLogin = `{"username":"alice","password":"wonderland"}`

// TestBinaryStoreCannotWrite runs the real binary on a real bbolt file and
// makes the kernel refuse its writes: login, refresh and logout answer 503
// and change nothing, which is proved once writes work again: the token
// refreshed while failing refreshes normally (it was not rotated, and is
// not taken for a reuse), and the session logged out while failing is
// still there.
func TestBinaryStoreCannotWrite(t *testing.T) {
	dir := t.TempDir()
	p := start(t, "serve", "--config", hardeningSetup(t, dir, ""))
	mainAddr, _ := p.addrs(t)
	base := "http://" + mainAddr
	code, body := post(t, base+"/auth/login", "", aliceLogin)
	if code != http.StatusOK {
		t.Fatalf("login: %d %s", code, body)
	}
	tok := accessTokenOf(t, body)

	setFileSizeLimit(t, p.cmd.Process.Pid, 0)
	for _, c := range []struct{ name, path, token, body string }{
		{"login", "/auth/login", "", aliceLogin},
		{"refresh", "/auth/refresh", tok, ""},
		{"logout", "/auth/logout", tok, ""},
	} {
		if code, body := post(t, base+c.path, c.token, c.body); code != http.StatusServiceUnavailable {
			t.Errorf("%s while the store cannot write: %d %s, want 503", c.name, code, body)
		}
	}
	if !strings.Contains(p.stderr.String(), "file too large") {
		t.Errorf("the log does not name the write error:\n%s", p.stderr.String())
	}

	setFileSizeLimit(t, p.cmd.Process.Pid, ^uint64(0))
	code, body = post(t, base+"/auth/refresh", tok, "")
	if code != http.StatusOK {
		t.Fatalf("refresh once the store writes again: %d %s, want 200 (the failed refresh changed nothing)", code, body)
	}
	next := accessTokenOf(t, body)
	if code, body := post(t, base+"/auth/logout", next, ""); code != http.StatusNoContent {
		t.Errorf("logout once the store writes again: %d %s, want 204", code, body)
	}
	if code, body := post(t, base+"/auth/login", "", aliceLogin); code != http.StatusOK {
		t.Errorf("login once the store writes again: %d %s, want 200", code, body)
	}
}

func accessTokenOf(t *testing.T, body string) string {
	t.Helper()
	i := strings.Index(body, `"access_token":"`)
	if i < 0 {
		t.Fatalf("no access_token in %s", body)
	}
	rest := body[i+len(`"access_token":"`):]
	return rest[:strings.IndexByte(rest, '"')]
}

// TestBinaryRefusesDamagedStore: a session file that is empty, truncated
// or overwritten is refused at start-up with exit code 1 and a message
// naming the file, fast, and is left exactly as it was: never recreated,
// since a new file would log everybody out and hide the damage.
func TestBinaryRefusesDamagedStore(t *testing.T) {
	dir := t.TempDir()
	cfg := hardeningSetup(t, dir, "")
	p := start(t, "serve", "--config", cfg)
	mainAddr, _ := p.addrs(t)
	for range 3 {
		if code, body := post(t, "http://"+mainAddr+"/auth/login", "", aliceLogin); code != http.StatusOK {
			t.Fatalf("login: %d %s", code, body)
		}
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	db := filepath.Join(dir, "sessions.db")
	good, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	overwrite := func(from, to int) []byte {
		b := bytes.Clone(good)
		for i := from; i < to && i < len(b); i++ {
			b[i] = byte(i*7 + 1)
		}
		return b
	}
	tests := []struct {
		name string
		file []byte
	}{
		{"empty", []byte{}},
		{"meta pages only", good[:8192]},
		{"meta pages overwritten", overwrite(0, 8192)},
		{"everything after the meta pages overwritten", overwrite(8192, len(good))},
		{"not a session file", []byte("alice:wonderland\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(db, tt.file, 0o600); err != nil {
				t.Fatal(err)
			}
			begin := time.Now()
			p := start(t, "serve", "--config", cfg)
			code := p.wait(t, 10*time.Second) // a gateway that starts fails here, not by hanging
			stderr := p.stderr.String()
			if code != 1 || !strings.Contains(stderr, db) {
				t.Errorf("serve: exit %d, stderr %q; want 1 naming %s", code, stderr, db)
			}
			if d := time.Since(begin); d > 10*time.Second {
				t.Errorf("serve took %v to refuse the file", d)
			}
			if strings.Contains(stderr, "goroutine ") {
				t.Errorf("serve crashed instead of refusing the file:\n%s", stderr)
			}
			after, _ := os.ReadFile(db)
			if !bytes.Equal(after, tt.file) {
				t.Errorf("the file changed: %d bytes, was %d", len(after), len(tt.file))
			}
		})
	}
}
