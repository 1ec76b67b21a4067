package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v2"

	"github.com/spa-gateway/gateway/metrics"
	"github.com/spa-gateway/gateway/proctest"
)

// recordingRegisterer keeps the collectors registered through it.
type recordingRegisterer struct {
	prometheus.Registerer
	collectors []prometheus.Collector
}

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return r.Registerer.Register(c)
}

// gatewayMetrics returns every gateway_ metric that metrics.New registers,
// with the label values it knows up front (label name to values).
func gatewayMetrics(t testing.TB) map[string]map[string]map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	rec := &recordingRegisterer{Registerer: reg}
	if _, err := metrics.New(rec, func() float64 { return 0 }); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]map[string]bool{}
	fqName := regexp.MustCompile(`fqName: "(gateway_[a-z_]+)"`)
	for _, c := range rec.collectors {
		ch := make(chan *prometheus.Desc, 100)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			if m := fqName.FindStringSubmatch(d.String()); m != nil {
				out[m[1]] = map[string]map[string]bool{}
			}
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "gateway_") {
			continue
		}
		labels := map[string]map[string]bool{}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] == nil {
					labels[l.GetName()] = map[string]bool{}
				}
				labels[l.GetName()][l.GetValue()] = true
			}
		}
		out[f.GetName()] = labels
	}
	return out
}

// TestReadmeOperations checks the README against the code: every metric is
// in its table with every label value known up front, and its alerting rules parse as YAML and name only metrics
// and label values that exist.
func TestReadmeOperations(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	known := gatewayMetrics(t)
	for name, labels := range known {
		_, row, ok := strings.Cut(readme, "| `"+name+"` |")
		if !ok {
			t.Errorf("README's metrics table lacks %s", name)
			continue
		}
		row, _, _ = strings.Cut(row, "\n")
		// Every label value known up front is documented in its row.
		for label, values := range labels {
			for v := range values {
				if !strings.Contains(row, "`"+v+"`") {
					t.Errorf("README's metrics table: %s's row does not document %s = `%s`", name, label, v)
				}
			}
		}
	}

	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(readme, -1)
	var alerts []string
	for _, b := range blocks {
		var doc struct {
			Groups []struct {
				Name  string `yaml:"name"`
				Rules []struct {
					Alert string `yaml:"alert"`
					Expr  string `yaml:"expr"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		}
		if err := yaml.Unmarshal([]byte(b[1]), &doc); err != nil {
			t.Errorf("README YAML block does not parse: %v", err)
			continue
		}
		for _, g := range doc.Groups {
			for _, r := range g.Rules {
				alerts = append(alerts, r.Alert)
				checkExpr(t, r.Alert, r.Expr, known)
			}
		}
	}
	if len(alerts) < 3 {
		t.Errorf("README alerting rules %q, want at least 3", alerts)
	}
}

var (
	selectorRE = regexp.MustCompile(`\b(gateway_[a-z_]+?)(_bucket|_count|_sum)?\b(\{[^}]*\})?`)
	matcherRE  = regexp.MustCompile(`(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
)

// checkExpr checks that every gateway_ metric of a PromQL expression exists
// and that its = and =~ matchers name label values it has.
func checkExpr(t *testing.T, alert, expr string, known map[string]map[string]map[string]bool) {
	t.Helper()
	sels := selectorRE.FindAllStringSubmatch(expr, -1)
	if len(sels) == 0 {
		t.Errorf("alert %s: expr %q names no gateway_ metric", alert, expr)
	}
	for _, s := range sels {
		labels, ok := known[s[1]]
		if !ok {
			t.Errorf("alert %s: unknown metric %s", alert, s[1])
			continue
		}
		for _, m := range matcherRE.FindAllStringSubmatch(s[3], -1) {
			if m[2] != "=" && m[2] != "=~" || labels[m[1]] == nil {
				continue // a label without values known up front (route, code)
			}
			for _, v := range strings.Split(m[3], "|") {
				if !labels[m[1]][v] {
					t.Errorf("alert %s: %s{%s} has no value %q", alert, s[1], m[1], v)
				}
			}
		}
	}
}

// TestCIRunsTheREADMETestCommand keeps .ci/run on exactly the test command
// the README gives, the first indented line after "Run the tests".
func TestCIRunsTheREADMETestCommand(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	ci, err := os.ReadFile("../../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "Run the tests")
	if !ok {
		t.Fatal(`README has no "Run the tests" paragraph`)
	}
	var command string
	for _, line := range strings.Split(after, "\n") {
		if strings.HasPrefix(line, "    ") {
			command = strings.TrimSpace(line)
			break
		}
	}
	if command == "" {
		t.Fatal("README gives no indented test command")
	}
	found := false
	for _, line := range strings.Split(string(ci), "\n") {
		if strings.HasPrefix(line, command) {
			found = true
		}
	}
	if !found {
		t.Errorf(".ci/run does not run the README's test command %q", command)
	}
}

// TestReadmeTour runs the README's tour against the binary: the serve
// line's flags, then the shell block with curl, as written, but for the
// addresses (free ports instead of 8080 and 9090) and time (the access
// token's lifetime and the sleep past it scaled down to seconds, after
// checking that the README's sleep outlasts its lifetime). The output must
// hold what the tour's comments promise.
func TestReadmeTour(t *testing.T) {
	curl := proctest.Need(t, "curl", "apt-get install curl")
	data, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, tour, ok := strings.Cut(string(data), "## A two-minute tour")
	if !ok {
		t.Fatal("README has no tour")
	}
	serveLine := regexp.MustCompile(`(?m)^    go run \./cmd/gateway (serve --dev.*)$`).FindStringSubmatch(tour)
	block := regexp.MustCompile("(?s)```sh\n(.*?)```").FindStringSubmatch(tour)
	if serveLine == nil || block == nil {
		t.Fatal("the tour lacks its serve line or its sh block")
	}
	args := strings.Fields(serveLine[1])
	ttlAt := slices.Index(args, "--dev-access-ttl")
	if ttlAt < 0 || ttlAt+1 >= len(args) {
		t.Fatalf("the tour's serve line %q has no --dev-access-ttl", serveLine[1])
	}
	ttl, err := time.ParseDuration(args[ttlAt+1])
	if err != nil {
		t.Fatal(err)
	}
	sleeps := regexp.MustCompile(`(?m)^sleep (\d+)$`).FindAllStringSubmatch(block[1], -1)
	if len(sleeps) != 1 {
		t.Fatalf("the tour has %d sleep lines, want the one past the token's lifetime", len(sleeps))
	}
	if s, _ := strconv.Atoi(sleeps[0][1]); time.Duration(s)*time.Second <= ttl || time.Duration(s)*time.Second > ttl+5*time.Second {
		t.Errorf("the tour sleeps %ss for tokens of %v: want just past their lifetime", sleeps[0][1], ttl)
	}

	args[ttlAt+1] = "2s"
	p := start(t, append(args, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")...)
	mainAddr, adminAddr := p.addrs(t)
	script := strings.NewReplacer("localhost:8080", mainAddr, "localhost:9090", adminAddr,
		"sleep "+sleeps[0][1], "sleep 3").Replace(block[1])
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(curl)+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the tour's shell block: %v\n%s", err, out)
	}
	got := string(out)
	rest := got
	for _, want := range []string{
		`"X-Auth-Subject": "demo"`,
		"HTTP/1.1 401", `Bearer realm="gateway"`,
		`{"error":"invalid_token","error_description":"token not expired"}`,
		`{"error":"invalid_token","error_description":"token reuse detected"}`,
		"HTTP/1.1 204",
		`gateway_logins_total{result="success"} 2`,
		`gateway_refreshes_total{result="reuse_detected"} 1`,
		`gateway_refreshes_total{result="success"} 1`,
	} {
		i := strings.Index(rest, want)
		if i < 0 {
			t.Errorf("the tour's output lacks %q after what came before it:\n%s", want, got)
			continue
		}
		rest = rest[i+len(want):]
	}
	if strings.Contains(got, "root") || strings.Contains(got, "_bucket") {
		t.Errorf("the tour's output shows the spoofed header or histogram buckets:\n%s", got)
	}
}
