package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spa-gateway/gateway/auth"
)

func TestDecodeLooseRetries(t *testing.T) {
	tests := []struct {
		name      string
		toml      string
		wantLines []int    // the syntax errors reported, by line
		wantKeys  []string // top-level tables left in the tree; nil: no tree
	}{
		{"one error", "[server]\nlisten = \"x\"\nshutdown_timeout = 15s\n[log]\nlevel = \"info\"\n",
			[]int{3}, []string{"log", "server"}},
		{"three errors", "[server]\nlisten = = \"x\"\n[log]\nlevel = info\n[store]\npath = \"a\nbackend = \"bbolt\"\n",
			[]int{2, 4, 6}, []string{"log", "server", "store"}},
		{"broken header drops its section", "[server\nlisten = \"x\"\n[log]\nlevel = \"info\"\n",
			[]int{2}, []string{"log"}},
		{"error at the end", "[log]\nlevel = \"info\"\nformat = \"\"\"text\n",
			[]int{3}, []string{"log"}},
		{"duplicate key", "[log]\nlevel = \"info\"\nlevel = \"warn\"\n[store]\npath = \"a\"\n",
			[]int{3}, []string{"log", "store"}},
		{"too many", strings.Repeat("x = = 1\n", maxSyntaxErrors+5), seq(1, maxSyntaxErrors), nil},
		// Blanking line 4 leaves the string open all the same: its EOF
		// is one problem, reported once.
		{"the same error after blanking", "[tokens]\nissuer = \"\"\"abc\ndef\"\"\" x\naudience = 5\n",
			[]int{3, 4}, nil},
		{"an EOF on a blank line", "x = 1\ny = \"\"\"\n\n\n",
			[]int{4}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text, raw, _, errs := decodeLoose(tt.toml)
			var lines []int
			for _, ce := range configErrors(t, errors.Join(errs...)) {
				if ce.Line > 0 {
					lines = append(lines, ce.Line)
				}
			}
			if !reflect.DeepEqual(lines, tt.wantLines) {
				t.Errorf("decodeLoose() error lines = %v, want %v (errors %v)", lines, tt.wantLines, errs)
			}
			if tt.wantKeys == nil {
				if raw != nil {
					t.Errorf("decodeLoose() tree = %v, want nil", raw)
				}
				return
			}
			if got := sortedKeys(raw); !reflect.DeepEqual(got, tt.wantKeys) {
				t.Errorf("decodeLoose() tables = %q, want %q", got, tt.wantKeys)
			}
			if got, want := strings.Count(text, "\n"), strings.Count(tt.toml, "\n"); got != want {
				t.Errorf("repaired text has %d lines, want %d (line numbers kept)", got, want)
			}
		})
	}
}

func seq(from, to int) []int {
	var s []int
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func TestBlankAt(t *testing.T) {
	tests := []struct {
		name   string
		text   string
		off    int
		want   string
		wantOK bool
	}{
		{"the line of the offset", "a = 1\nb = = 2\nc = 3\n", 9, "a = 1\n\nc = 3\n", true},
		{"an offset at a newline is the line it ends", "[a\nb = 1\n", 2, "\n\n", true},
		{"a header takes its section", "x = 1\n[a\nb = 1\nc = 2\n[d]\ne = 1\n", 8, "x = 1\n\n\n\n[d]\ne = 1\n", true},
		{"no final newline", "a = 1\nb = =", 10, "a = 1\n", true},
		{"offset past the end", "a = 1\nb = =", 99, "a = 1\n", true},
		{"blank line: no progress", "a = 1\n\n", 6, "a = 1\n\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, ok := blankAt(tt.text, tt.off)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("blankAt(%q, %d) = %q, %v, want %q, %v", tt.text, tt.off, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestUnknownKeySuggestion(t *testing.T) {
	tests := []struct {
		name, toml, want string
	}{
		{"typo", "[tokens]\nacess_ttl = \"1m\"\n", `tokens.acess_ttl: unknown key (did you mean "access_ttl"?)`},
		{"transposition", "[server]\nlsiten = \"x\"\n", `server.lsiten: unknown key (did you mean "listen"?)`},
		{"two edits", "[store]\nsweep_intervl = \"1m\"\n", `store.sweep_intervl: unknown key (did you mean "sweep_interval"?)`},
		{"in a route", minimalTOML + "prefx = \"/x/\"\n", `route[0].prefx: unknown key (did you mean "prefix"?)`},
		{"case first", "[tokens]\nAccess_TTL = \"1m\"\n", `tokens.Access_TTL: unknown key (keys are case-sensitive: did you mean "access_ttl"?)`},
		{"wrong table", "[server]\naccess_ttl = \"1m\"\n", "server.access_ttl: unknown key (access_ttl is a key of [tokens])"},
		{"wrong table: route", "[tokens]\nrequire_roles = []\n", "tokens.require_roles: unknown key (require_roles is a key of [[route]])"},
		{"in two other tables", "[tokens]\nupstream = \"http://x\"\n", "tokens.upstream: unknown key"},
		{"in two other tables: server and tokens", "[store]\nidle_timeout = \"1m\"\n", "store.idle_timeout: unknown key"},
		{"too far", "[server]\nport = 8080\n", "server.port: unknown key"},
		{"short key, one edit", "[store]\nur = \"x\"\n", `store.ur: unknown key (did you mean "url"?)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadConfig(writeFile(t, t.TempDir(), "gateway.toml", tt.toml))
			for _, ce := range configErrors(t, err) {
				if ce.Error() == tt.want {
					return
				}
			}
			t.Errorf("LoadConfig() = %v, want a problem %q", err, tt.want)
		})
	}
}

func TestNearestTag(t *testing.T) {
	typ := reflect.TypeFor[LogConfig]() // level, format
	tests := []struct {
		key, want string
		ok        bool
	}{
		{"levle", "level", true},
		{"lvl", "", false}, // 2 edits in 3 letters
		{"fromat", "format", true},
		{"xyz", "", false},
		{"level", "", false}, // not unknown
	}
	for _, tt := range tests {
		if got, ok := nearestTag(typ, tt.key); got != tt.want || ok != tt.ok {
			t.Errorf("nearestTag(%q) = %q, %v, want %q, %v", tt.key, got, ok, tt.want, tt.ok)
		}
	}
	type twins struct {
		A string `toml:"abcd"`
		B string `toml:"abce"`
	}
	if got, ok := nearestTag(reflect.TypeFor[twins](), "abcf"); ok {
		t.Errorf("nearestTag(abcf) = %q, want no guess between two as close", got)
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"abc", "abc", 0}, {"", "abc", 3}, {"acess_ttl", "access_ttl", 1},
		{"lsiten", "listen", 1}, {"kitten", "sitting", 3}, {"ca", "abc", 3},
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

// TestLoadConfigReportsEveryProblemOnce: problems of every level (syntax,
// shape, values, files, key contents) come out of one loadConfig, and the
// keys that could not be decoded are not reported again for their defaults.
func TestLoadConfigReportsEveryProblemOnce(t *testing.T) {
	dir := t.TempDir()
	writeKey(t, dir, "signing.pem", auth.EdDSA)
	path := writeFile(t, dir, "gateway.toml", `
[server]
shutdown_timeout = 15s
max_header_bytes = "big"
[tokens]
algorithm = "ES256"
key_file = "signing.pem"
acess_ttl = "1m"
revocation = "never"
[login]
users_file = "no-such-users"
[log]
level = "loud"
[[route]]
prefix = "/api/"
upstream = "http://127.0.0.1:9000"
auth = "maybe"
`)
	_, err := loadConfig(path)
	var got []string
	for _, ce := range configErrors(t, err) {
		got = append(got, lineNote.ReplaceAllString(ce.Error(), ""))
	}
	want := []string{
		"line 3: ",
		`route[0].auth: "maybe" is not one of required, optional, none`,
		"server.max_header_bytes: must be an integer, not a string",
		`tokens.acess_ttl: unknown key (did you mean "access_ttl"?)`,
		`tokens.revocation: "never" is not one of refresh, every_request`,
		"login.users_file: open " + filepath.Join(dir, "no-such-users"),
		`log.level: "loud"`,
		"tokens.key_file: ",
	}
	if len(got) != len(want) {
		t.Fatalf("loadConfig() = %d problems:\n%s\nwant %d: %q", len(got), strings.Join(got, "\n"), len(want), want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d = %q, want it to start with %q", i, got[i], want[i])
		}
	}
	if _, err := LoadConfig(path); err == nil {
		t.Error("LoadConfig() = nil error, want the parse problems")
	}
}

// TestLoadConfigBrokenHeader: a broken table header blanks its section
// (see blankAt), so Validate sees the rest without it; what it finds there
// is about that loss, not about the file, and only the syntax error is
// reported.
func TestLoadConfigBrokenHeader(t *testing.T) {
	const route = "prefix = \"/%s/\"\nupstream = \"%s\"\n"
	tests := []struct {
		name, toml string
		wantLine   int
	}{
		// Not "route: at least one [[route]] is needed".
		{"the one route", "[[route]\n" + fmt.Sprintf(route, "a", "http://127.0.0.1:9000"), 4},
		// Not the third route's upstream as route[1].upstream.
		{"the second of three routes", "[[route]]\n" + fmt.Sprintf(route, "a", "http://127.0.0.1:9000") +
			"[[route]\n" + fmt.Sprintf(route, "b", "http://127.0.0.1:9001") +
			"[[route]]\n" + fmt.Sprintf(route, "c", "ftp://127.0.0.1:9002"), 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeKey(t, dir, "signing.pem", auth.EdDSA)
			path := writeFile(t, dir, "gateway.toml", "[tokens]\nkey_file = \"signing.pem\"\n"+tt.toml)
			_, err := loadConfig(path)
			got := configErrors(t, err)
			if len(got) != 1 || got[0].Key != "" || got[0].Line != tt.wantLine {
				t.Errorf("loadConfig() = %v, want only the syntax error of line %d", err, tt.wantLine)
			}
		})
	}
}

// TestBinaryCheckConfigReportsEveryProblem runs check-config, then serve,
// on a file with a syntax error, an unknown key, a missing file and a key of
// the wrong algorithm: one run names all four and exits 2, and serve does
// so before it opens the store.
func TestBinaryCheckConfigReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	if _, stderr, code := runBinary(t, "", "keygen", "--alg", "EdDSA", "--out", filepath.Join(dir, "signing.pem")); code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, stderr)
	}
	path := writeFile(t, dir, "gateway.toml", `[server]
listen = "127.0.0.1:0"
shutdown_timeout = 5s
[admin]
listen = "127.0.0.1:0"
token_file = "no-such-token"
[tokens]
algorithm = "ES256"
key_file = "signing.pem"
acess_ttl = "10m"
[store]
path = "sessions.db"
[[route]]
prefix = "/api/"
upstream = "http://127.0.0.1:9"
`)
	want := []string{
		path + ": line 3: expected", // the syntax error
		path + `: tokens.acess_ttl: unknown key (did you mean "access_ttl"?)`,
		path + ": admin.token_file: open " + filepath.Join(dir, "no-such-token"),
		path + ": tokens.key_file: key file " + filepath.Join(dir, "signing.pem") + ": holds an Ed25519 key, algorithm ES256 needs",
	}
	_, stderr, code := runBinary(t, "", "check-config", "--config", path)
	if code != 2 {
		t.Errorf("check-config: exit %d, want 2", code)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("check-config stderr =\n%s\nwant it to contain %q", stderr, w)
		}
	}

	_, stderr, code = runBinary(t, "", "serve", "--config", path)
	if code != 2 {
		t.Errorf("serve: exit %d, want 2", code)
	}
	for _, w := range want {
		w = "gateway: " + strings.TrimPrefix(w, path+": ")
		if !strings.Contains(stderr, w) {
			t.Errorf("serve stderr =\n%s\nwant it to contain %q", stderr, w)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "sessions.db")); !os.IsNotExist(err) {
		t.Errorf("serve opened the store before refusing the configuration (stat: %v)", err)
	}
}
