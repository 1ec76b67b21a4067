package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spa-gateway/gateway/auth"
	"golang.org/x/crypto/bcrypt"
)

// runCmd calls run with args and stdin, and returns its exit code and
// outputs.
func runCmd(tb testing.TB, stdin string, args ...string) (code int, stdout, stderr string) {
	tb.Helper()
	var out, errOut bytes.Buffer
	code = run(tb.Context(), args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// writeConfig writes a valid configuration, its key and users files, and
// extra TOML appended, into a temp dir, and returns the file's path.
func writeConfig(tb testing.TB, extra string) string {
	tb.Helper()
	dir := tb.TempDir()
	writeKey(tb, dir, "signing.pem", auth.EdDSA)
	writeUsers(tb, dir, "users")
	return writeFile(tb, dir, "gateway.toml", `
[tokens]
key_file = "signing.pem"
[login]
users_file = "users"
[[route]]
prefix = "/api/"
upstream = "http://127.0.0.1:9000"
`+extra)
}

func TestCheckConfig(t *testing.T) {
	good := writeConfig(t, "")
	badKey := writeConfig(t, "")
	writeFile(t, filepath.Dir(badKey), "signing.pem", "not a key\n")
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr []string
	}{
		{"valid", []string{"--config", good}, 0, "ok: " + good + "\n", nil},
		{"valid single dash", []string{"-config=" + good}, 0, "ok: " + good + "\n", nil},
		{"invalid values", []string{"--config", writeConfig(t, "[log]\nlevel = \"loud\"\n[headers]\non_spoof = \"ignore\"\n")}, 2, "", []string{
			`log.level: "loud" is not one of`, `headers.on_spoof: "ignore"`,
		}},
		{"unknown key", []string{"--config", writeConfig(t, "[store]\nbackend = \"bbolt\"\ndir = \"/var\"\n")}, 2, "", []string{"store.dir: unknown key"}},
		{"syntax error with line", []string{"--config", writeConfig(t, "[log]\nlevel = info\n")}, 2, "", []string{": line 10: expected", "At line 10, column 12:", "10 | level = info"}},
		{"missing key file", []string{"--config", writeConfig(t, "[admin]\ntoken_file = \"no-such-token\"\n")}, 2, "", []string{"admin.token_file: open ", "no-such-token"}},
		{"bad key content", []string{"--config", badKey}, 2, "", []string{"tokens.key_file: "}},
		{"missing config", []string{"--config", filepath.Join(t.TempDir(), "absent.toml")}, 2, "", []string{"absent.toml: no such file"}},
		{"no --config", nil, 2, "", []string{"--config FILE is required"}},
		{"extra argument", []string{"--config", good, "more"}, 2, "", []string{`unexpected argument "more"`}},
		{"bad flag", []string{"--conf", good}, 2, "", []string{"flag provided but not defined: -conf", "Usage: gateway check-config"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, "", append([]string{"check-config"}, tt.args...)...)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.wantCode, stderr)
			}
			if stdout != tt.wantStdout {
				t.Errorf("stdout = %q, want %q", stdout, tt.wantStdout)
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr = %q, want it to contain %q", stderr, w)
				}
			}
		})
	}
}

func TestCheckConfigOneProblemPerLine(t *testing.T) {
	path := writeConfig(t, "[log]\nlevel = \"loud\"\nformat = \"xml\"\n")
	code, _, stderr := runCmd(t, "", "check-config", "--config", path)
	if code != 2 {
		t.Fatalf("exit code = %d, want 2", code)
	}
	want := path + ": log.level: \"loud\" is not one of debug, info, warn, error\n" +
		path + ": log.format: \"xml\" is not one of json, text\n"
	if stderr != want {
		t.Errorf("stderr =\n%s\nwant\n%s", stderr, want)
	}
}

func TestKeygen(t *testing.T) {
	for _, alg := range []string{auth.EdDSA, auth.ES256, auth.RS256, auth.HS256} {
		t.Run(alg, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "key.pem")
			code, stdout, stderr := runCmd(t, "", "keygen", "--alg", alg, "--out", out)
			if code != 0 {
				t.Fatalf("keygen exit code = %d, want 0 (stderr %q)", code, stderr)
			}
			if !strings.Contains(stdout, out) {
				t.Errorf("stdout = %q, want it to name %s", stdout, out)
			}
			st, err := os.Stat(out)
			if err != nil {
				t.Fatal(err)
			}
			if got := st.Mode().Perm(); got != 0o600 {
				t.Errorf("key file mode = %v, want 0600", got)
			}
			k, err := auth.LoadKey(alg, out)
			if err != nil {
				t.Fatalf("LoadKey(%s) = %v", alg, err)
			}
			if k.Algorithm() != alg {
				t.Errorf("LoadKey().Algorithm() = %q, want %q", k.Algorithm(), alg)
			}
			if !strings.Contains(stdout, k.ID()) {
				t.Errorf("stdout = %q, want the key ID %s", stdout, k.ID())
			}
		})
	}
}

func TestKeygenDefaultAlgorithm(t *testing.T) {
	out := filepath.Join(t.TempDir(), "key.pem")
	if code, _, stderr := runCmd(t, "", "keygen", "--out", out); code != 0 {
		t.Fatalf("keygen exit code = %d, want 0 (stderr %q)", code, stderr)
	}
	if _, err := auth.LoadKey(auth.EdDSA, out); err != nil {
		t.Errorf("LoadKey(EdDSA) = %v", err)
	}
}

func TestKeygenOverwrite(t *testing.T) {
	out := writeFile(t, t.TempDir(), "key.pem", "old")
	if err := os.Chmod(out, 0o644); err != nil {
		t.Fatal(err)
	}

	code, _, stderr := runCmd(t, "", "keygen", "--alg", auth.EdDSA, "--out", out)
	if code != 1 || !strings.Contains(stderr, "already exists") {
		t.Errorf("keygen over a file: exit code %d, stderr %q; want 1 and \"already exists\"", code, stderr)
	}
	if b, _ := os.ReadFile(out); string(b) != "old" {
		t.Errorf("file = %q after refusal, want it unchanged", b)
	}

	if code, _, stderr := runCmd(t, "", "keygen", "--alg", auth.EdDSA, "--out", out, "--force"); code != 0 {
		t.Fatalf("keygen --force exit code = %d, want 0 (stderr %q)", code, stderr)
	}
	if _, err := auth.LoadKey(auth.EdDSA, out); err != nil {
		t.Errorf("LoadKey after --force = %v", err)
	}
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("mode after --force = %v (%v), want 0600", st.Mode().Perm(), err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 1 {
		t.Errorf("directory holds %d files after --force, want 1 (no temporary left)", len(entries))
	}
}

func TestKeygenUsage(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown alg", []string{"--alg", "HS512", "--out", filepath.Join(dir, "a")}, `--alg "HS512" is not one of`},
		{"alg none", []string{"--alg", "none", "--out", filepath.Join(dir, "b")}, `--alg "none"`},
		{"no out", []string{"--alg", auth.EdDSA}, "--out FILE is required"},
		{"bad flag", []string{"--bits", "4096"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCmd(t, "", append([]string{"keygen"}, tt.args...)...)
			if code != 2 || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit code %d, stderr %q; want 2 and %q", code, stderr, tt.want)
			}
		})
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("keygen wrote %d files on usage errors, want none", len(entries))
	}
}

// TestHashPassword hashes once: auth.HashPassword's cost 12 takes seconds
// under the race detector.
func TestHashPassword(t *testing.T) {
	const password = "correct horse"
	code, stdout, stderr := runCmd(t, password+"\r\nsecond line\n", "hash-password")
	if code != 0 {
		t.Fatalf("exit code = %d, want 0 (stderr %q)", code, stderr)
	}
	hash := strings.TrimSuffix(stdout, "\n")
	if strings.Contains(hash, "\n") || !strings.HasPrefix(hash, "$2") {
		t.Fatalf("stdout = %q, want one bcrypt hash line", stdout)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)); err != nil {
		t.Errorf("CompareHashAndPassword(%q) = %v, want nil (line ending trimmed, later lines ignored)", password, err)
	}
	if strings.Contains(stdout+stderr, password) {
		t.Errorf("output holds the password")
	}
}

func TestHashPasswordRefuses(t *testing.T) {
	tests := []struct {
		name  string
		stdin string
		want  string
	}{
		{"empty line", "\n", "empty password"},
		{"no input", "", "empty password"},
		{"too long", strings.Repeat("x", 73) + "\n", "at most 72"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, tt.stdin, "hash-password")
			if code != 2 || stdout != "" || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit code %d, stdout %q, stderr %q; want 2, nothing and %q", code, stdout, stderr, tt.want)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, stdout, _ := runCmd(t, "", "version")
	if code != 0 || !strings.HasPrefix(stdout, "gateway dev (go") {
		t.Errorf("version: exit code %d, stdout %q; want 0 and \"gateway dev (go...\"", code, stdout)
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string // substring; "" means stdout must be empty
		wantStderr string // substring
	}{
		{"no command", nil, 2, "", "Usage: gateway <command>"},
		{"unknown command", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"help", []string{"help"}, 0, "Usage: gateway <command>", ""},
		{"--help", []string{"--help"}, 0, "Usage: gateway <command>", ""},
		{"help keygen", []string{"help", "keygen"}, 0, "-out FILE", ""},
		{"help unknown", []string{"help", "frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"check-config -h", []string{"check-config", "-h"}, 0, "", "Usage: gateway check-config --config FILE"},
		{"keygen -h", []string{"keygen", "-h"}, 0, "", "Usage: gateway keygen"},
		{"hash-password -h", []string{"hash-password", "-h"}, 0, "", "Usage: gateway hash-password"},
		{"version --help", []string{"version", "--help"}, 0, "", "Usage: gateway version"},
		{"version extra", []string{"version", "now"}, 2, "", `unexpected argument "now"`},
		{"hash-password bad flag", []string{"hash-password", "-cost", "4"}, 2, "", "flag provided but not defined: -cost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, "", tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.wantCode, stderr)
			}
			if tt.wantStdout == "" && stdout != "" || !strings.Contains(stdout, tt.wantStdout) {
				t.Errorf("stdout = %q, want %q", stdout, tt.wantStdout)
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.wantStderr)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	cfgErr := errors.Join(&ConfigError{Key: "a", Err: errors.New("x")}, &ConfigError{Key: "b", Err: errors.New("y")})
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, 0},
		{"help", flag.ErrHelp, 0},
		{"usage", usageError{errors.New("bad flag")}, 2},
		{"reported usage", reportedError{usageError{errors.New("bad flag")}}, 2},
		{"config error", cfgErr, 2},
		{"wrapped config error", fmt.Errorf("serve: %w", cfgErr), 2},
		{"run time", errors.New("listen tcp: address in use"), 1},
		{"wrapped run time", fmt.Errorf("open store: %w", os.ErrPermission), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitCode(tt.err); got != tt.want {
				t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

// TestHashPasswordName: with NAME, the output is a whole users file line
// that the users file parser accepts and that logs NAME in.
func TestHashPasswordName(t *testing.T) {
	code, stdout, stderr := runCmd(t, "wonderland\n", "hash-password", "alice")
	if code != 0 {
		t.Fatalf("exit code = %d, want 0 (stderr %q)", code, stderr)
	}
	name, hash, ok := strings.Cut(strings.TrimSuffix(stdout, "\n"), ":")
	if !ok || name != "alice" || !strings.HasPrefix(hash, "$2") {
		t.Fatalf("stdout = %q, want alice:HASH", stdout)
	}
	users, err := auth.ParseUsers(strings.NewReader(stdout), nil)
	if err != nil {
		t.Fatalf("ParseUsers(%q) = %v", stdout, err)
	}
	if _, err := users.Authenticate(t.Context(), auth.Credentials{Username: "alice", Password: "wonderland"}); err != nil {
		t.Errorf("Authenticate(alice, wonderland) = %v, want nil", err)
	}
	for _, bad := range [][]string{{"al:ice"}, {"#alice"}, {" alice"}, {""}, {"alice", "bob"}} {
		code, stdout, stderr := runCmd(t, "wonderland\n", append([]string{"hash-password"}, bad...)...)
		if code != 2 || stdout != "" || stderr == "" {
			t.Errorf("hash-password %q: exit %d, stdout %q, stderr %q; want 2, nothing and a message", bad, code, stdout, stderr)
		}
	}
}

// TestCheckConfigNotes: a valid configuration that is inert in some way
// still passes (exit 0, "ok" on stdout), and stderr says what it will do.
func TestCheckConfigNotes(t *testing.T) {
	up := okUpstream(t)
	// A port that was free a moment ago: nothing answers there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	mixed := t.TempDir()
	h4, _ := bcrypt.GenerateFromPassword([]byte("a"), bcrypt.MinCost)
	h5, _ := bcrypt.GenerateFromPassword([]byte("b"), bcrypt.MinCost+1)
	writeFile(t, mixed, "users", "alice:"+string(h4)+"\nbob:"+string(h5)+"\ncarol:"+string(h5)+"\n")
	writeKey(t, mixed, "signing.pem", auth.EdDSA)
	tests := []struct {
		name       string
		config     string
		want, omit []string
	}{
		{"one upstream answering, one not", writeConfig(t, "[[route]]\nprefix = \"/b/\"\nupstream = \""+up+"\"\n"),
			[]string{`route[0] (prefix "/api/"): upstream http://127.0.0.1:9000 is not answering`},
			[]string{"route[1]", "login is disabled", "bcrypt costs"}},
		{"login disabled, upstream down", writeFile(t, t.TempDir(), "gateway.toml", "[tokens]\nkey_file = \""+
			filepath.Join(mixed, "signing.pem")+"\"\n[[route]]\nprefix = \"/\"\nupstream = \""+dead+"\"\n"),
			[]string{"note: login is disabled", `route[0] (prefix "/"): upstream ` + dead + " is not answering", "502"},
			[]string{"bcrypt costs"}},
		{"mixed costs", writeFile(t, mixed, "gateway.toml", "[tokens]\nkey_file = \"signing.pem\"\n[login]\nusers_file = \"users\"\n"+
			"[[route]]\nprefix = \"/\"\nupstream = \""+up+"\"\n"),
			[]string{"warning: login.users_file ", "users mixes bcrypt costs (4: 1 user, 5: 2 users)", "htpasswd -B -C 12"},
			[]string{"login is disabled", "not answering"}},
		{"OpenID Connect login only", writeFile(t, mixed, "oidc.toml", "[tokens]\nkey_file = \"signing.pem\"\ndelivery = \"cookie\"\n"+
			"[login.oidc]\nissuer = \"https://idp.example\"\nclient_id = \"gw\"\nclient_secret_file = \"users\"\n"+
			"redirect_url = \"https://app.example/auth/oidc/callback\"\n[[route]]\nprefix = \"/\"\nupstream = \""+up+"\"\n"),
			nil, []string{"login is disabled", "not answering"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, "", "check-config", "--config", tt.config)
			if code != 0 || stdout != "ok: "+tt.config+"\n" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and ok", code, stdout, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr = %q, want it to contain %q", stderr, w)
				}
			}
			for _, o := range tt.omit {
				if strings.Contains(stderr, o) {
					t.Errorf("stderr = %q, want no %q", stderr, o)
				}
			}
		})
	}
}
