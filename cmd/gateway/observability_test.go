package main

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestBinaryServeFailureLogsJSON makes serve fail at run time (its listen
// address is taken) under log.format = "json": every line on stderr is a
// JSON object, the failure among them, and the exit code stays 1.
func TestBinaryServeFailureLogsJSON(t *testing.T) {
	dir := t.TempDir()
	path := writeSetup(t, dir, "[log]\nformat = \"json\"\n")
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, stderr, code := runBinary(t, "", "serve", "--config", path, "--listen", taken.Addr().String())
	if code != 1 {
		t.Errorf("serve on a taken address: exit %d, want 1", code)
	}
	var failure map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("stderr line %q is not JSON: %v", line, err)
			continue
		}
		if rec["msg"] == "serve failed" {
			failure = rec
		}
	}
	if failure == nil || failure["level"] != "ERROR" || !strings.Contains(failure["err"].(string), "server.listen") {
		t.Errorf("no ERROR \"serve failed\" line naming server.listen in stderr:\n%s", stderr)
	}
}

// TestListeningLogsVersion checks the start-up line names the version.
func TestListeningLogsVersion(t *testing.T) {
	g := startMain(t, testConfig(t, t.TempDir(), okUpstream(t)))
	if want := `"version":"` + readBuildVersion().version + `"`; !strings.Contains(g.logs.String(), want) {
		t.Errorf("start-up logs lack %s:\n%s", want, g.logs.String())
	}
	scrape := g.scrape()
	want := `gateway_build_info{goversion="` + readBuildVersion().goVersion + `",version="` + readBuildVersion().version + `"} 1`
	if !strings.Contains(scrape, want) {
		t.Errorf("/metrics lacks %s", want)
	}
	if v, ok := sample(scrape, "gateway_config_last_reload_success_timestamp_seconds"); !ok || time.Since(time.Unix(int64(v), 0)) > time.Minute {
		t.Errorf("gateway_config_last_reload_success_timestamp_seconds = %v (%v), want the start-up time", v, ok)
	}
}

// TestBinaryVersionFromSourceBuild builds the gateway the way a user does
// from a git checkout (go build, no -ldflags) and checks that
// gateway --version and gateway version report the module's pseudo-version
// and the VCS revision. The checkout is a new repository holding the
// working tree's files (committed or not), so the code under test is this
// tree's; the build forces -buildvcs=true, since an environment's GOFLAGS
// may turn stamping off.
func TestBinaryVersionFromSourceBuild(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	files, err := exec.Command("git", "-C", repoRoot, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	src := t.TempDir()
	for _, f := range strings.Split(strings.TrimRight(string(files), "\x00"), "\x00") {
		data, err := os.ReadFile(filepath.Join(repoRoot, f))
		if os.IsNotExist(err) {
			continue // deleted in the working tree
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(src, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", src, "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	git("add", "-A")
	git("commit", "-q", "-m", "source build")
	rev := git("rev-parse", "HEAD")

	bin := filepath.Join(t.TempDir(), "gateway")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "./cmd/gateway")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	wantRE := regexp.MustCompile(`^gateway v0\.0\.0-\d{14}-` + rev[:12] + ` \(go[^,]+, [a-z0-9]+/[a-z0-9]+, revision ` + rev + `\)\n$`)
	for _, args := range [][]string{{"--version"}, {"version"}} {
		out, err := exec.Command(bin, args...).Output()
		if err != nil || !wantRE.Match(out) {
			t.Errorf("gateway %s = %q, %v; want it to match %s", args[0], out, err, wantRE)
		}
	}
}
