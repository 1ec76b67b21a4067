package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v2"

	"github.com/spa-gateway/gateway/metrics"
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
