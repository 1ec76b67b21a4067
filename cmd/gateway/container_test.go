package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// repoRoot is the module root, where the Dockerfile is and its build
// context starts (the tests run in cmd/gateway).
const repoRoot = "../.."

// dockerfile is the parsed part of the Dockerfile the tests check.
type dockerfile struct {
	args   map[string]string // ARG defaults
	build  string            // the RUN line that holds "go build"
	froms  []string          // FROM images, in order
	user   string            // the last USER
	volume string            // the VOLUME line
	entry  string            // the ENTRYPOINT line
}

func readDockerfile(t testing.TB) dockerfile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	d := dockerfile{args: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		word, rest, _ := strings.Cut(line, " ")
		switch word {
		case "ARG":
			k, v, _ := strings.Cut(rest, "=")
			d.args[k] = v
		case "RUN":
			if strings.Contains(rest, "go build") {
				if d.build != "" {
					t.Fatal("Dockerfile: more than one RUN go build")
				}
				d.build = rest
			}
		case "FROM":
			d.froms = append(d.froms, strings.Fields(rest)[0])
		case "USER":
			d.user = rest
		case "VOLUME":
			d.volume = rest
		case "ENTRYPOINT":
			d.entry = rest
		}
	}
	if d.build == "" {
		t.Fatal("Dockerfile: no RUN line with go build")
	}
	return d
}

// shellWords splits a simple shell command line the way sh would: words
// separated by blanks, "..." and '...' quoting, and ${NAME} or $NAME
// expanded from vars outside single quotes. It refuses what it does not
// handle (pipes, ;, &&, backslashes, backquotes, $(...)), so that the
// Dockerfile's line cannot grow beyond what the test runs.
func shellWords(line string, vars map[string]string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word
		quote byte
	)
	name := regexp.MustCompile(`^\$(\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))`)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote == '\'' && c != '\'':
			cur.WriteByte(c)
		case c == '\'' || c == '"':
			switch quote {
			case 0:
				quote, in = c, true
			case c:
				quote = 0
			default:
				cur.WriteByte(c)
			}
		case c == '$':
			m := name.FindStringSubmatch(line[i:])
			if m == nil {
				return nil, fmt.Errorf("unsupported $ at %d", i)
			}
			n := m[2] + m[3]
			v, ok := vars[n]
			if !ok {
				return nil, fmt.Errorf("undefined variable %s", n)
			}
			cur.WriteString(v)
			in = true
			i += len(m[0]) - 1
		case quote == 0 && (c == ' ' || c == '\t'):
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case quote == 0 && strings.IndexByte("|;&<>()`\\*?[", c) >= 0, c == '`', c == '\\':
			return nil, fmt.Errorf("unsupported shell syntax %q at %d", c, i)
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

func TestShellWords(t *testing.T) {
	vars := map[string]string{"V": "1.2", "EMPTY": ""}
	tests := []struct {
		line string
		want []string
	}{
		{`a  b`, []string{"a", "b"}},
		{`X=1 go build -ldflags="-s -w -X m.v=${V}" -o /o ./c`, []string{"X=1", "go", "build", "-ldflags=-s -w -X m.v=1.2", "-o", "/o", "./c"}},
		{`'$V' "$V" $V x"$EMPTY"`, []string{"$V", "1.2", "1.2", "x"}},
		{`""`, []string{""}},
	}
	for _, tt := range tests {
		got, err := shellWords(tt.line, vars)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("shellWords(%q) = %q, %v; want %q", tt.line, got, err, tt.want)
		}
	}
	for _, bad := range []string{`a && b`, `a; b`, `a | b`, `$(x)`, "`x`", `"open`, `$UNSET`, `a\ b`} {
		if got, err := shellWords(bad, vars); err == nil {
			t.Errorf("shellWords(%q) = %q, want an error", bad, got)
		}
	}
}

// TestDockerfileBuild runs the Dockerfile's own go build line (with
// VERSION given as docker build --build-arg would, and its -o pointed at a
// temporary file) and checks that the result is a static, stripped binary
// that runs. There is no Docker engine here: this is the part of the image
// build that can go wrong without one.
func TestDockerfileBuild(t *testing.T) {
	d := readDockerfile(t)
	vars := maps.Clone(d.args)
	vars["VERSION"] = "v0.0.0-dockerfile-test"
	words, err := shellWords(d.build, vars)
	if err != nil {
		t.Fatalf("Dockerfile RUN %q: %v", d.build, err)
	}
	var env []string
	for len(words) > 0 && regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`).MatchString(words[0]) {
		env, words = append(env, words[0]), words[1:]
	}
	if !slices.Contains(env, "CGO_ENABLED=0") {
		t.Errorf("the build sets %q, want CGO_ENABLED=0 (a static binary for distroless static)", env)
	}
	if len(words) < 2 || words[0] != "go" || words[1] != "build" || words[len(words)-1] != "./cmd/gateway" {
		t.Fatalf("Dockerfile build command %q, want go build ... ./cmd/gateway", words)
	}
	out := filepath.Join(t.TempDir(), "gateway")
	i := slices.Index(words, "-o")
	if i < 0 || i+1 >= len(words) {
		t.Fatalf("Dockerfile build command %q has no -o FILE", words)
	}
	words[i+1] = out
	cmd := exec.Command(words[0], words[1:]...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(words, " "), err, b)
	}

	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary has a %v program header: it is not static", p.Type)
		}
	}
	for _, s := range []string{".interp", ".dynamic", ".symtab"} {
		if f.Section(s) != nil {
			t.Errorf("the binary has a %s section, want a static stripped binary", s)
		}
	}
	abs, _ := filepath.Abs(repoRoot)
	if data, _ := os.ReadFile(out); bytes.Contains(data, []byte(abs)) {
		t.Errorf("the binary holds the build directory %s: want -trimpath", abs)
	}
	b, err := exec.Command(out, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(b), "gateway v0.0.0-dockerfile-test (") {
		t.Errorf("%s version = %q, %v; want the VERSION build argument", out, b, err)
	}
}

// TestDockerfileRuntime checks the final stage: a minimal image, a non-root
// user, the config and data volumes, the gateway as entry point.
func TestDockerfileRuntime(t *testing.T) {
	d := readDockerfile(t)
	if len(d.froms) < 2 {
		t.Fatalf("FROM %q, want a build stage and a runtime stage", d.froms)
	}
	if got := d.froms[0]; !strings.HasPrefix(got, "golang:") {
		t.Errorf("build stage FROM %s, want golang:", got)
	}
	runtime := d.froms[len(d.froms)-1]
	if !strings.HasPrefix(runtime, "gcr.io/distroless/static") && runtime != "scratch" {
		t.Errorf("runtime stage FROM %s, want distroless static or scratch", runtime)
	}
	user, _, _ := strings.Cut(d.user, ":")
	if user == "" || user == "root" || user == "0" {
		t.Errorf("USER %q, want a non-root user", d.user)
	}
	for _, v := range []string{`"/config"`, `"/data"`} {
		if !strings.Contains(d.volume, v) {
			t.Errorf("VOLUME %s, want %s", d.volume, v)
		}
	}
	if d.entry != `["/gateway"]` {
		t.Errorf(`ENTRYPOINT %s, want ["/gateway"]`, d.entry)
	}
}
