package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v2"

	"github.com/spa-gateway/gateway/proctest"
)

// The observability pack in deploy/: the Prometheus alerting rules with
// their promtool unit tests, and the Grafana dashboard. Expressions are
// parsed by Prometheus's own parser through promtool (Debian's prometheus
// package), not a copy of it in go.mod.

var (
	alertsFile     = filepath.Join(repoRoot, "deploy", "prometheus", "alerts.yml")
	alertTestsFile = filepath.Join(repoRoot, "deploy", "prometheus", "alerts.test.yml")
	dashboardFile  = filepath.Join(repoRoot, "deploy", "grafana", "gateway.json")
)

// promtool returns the path of promtool, or skips (fails under CI=true).
func promtool(t testing.TB) string {
	t.Helper()
	return proctest.Need(t, "promtool", "apt-get install prometheus")
}

func runPromtool(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command(promtool(t), args...).CombinedOutput()
	if err != nil {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestAlertRules runs promtool check rules and the rules' unit tests.
func TestAlertRules(t *testing.T) {
	runPromtool(t, "check", "rules", alertsFile)
	runPromtool(t, "test", "rules", alertTestsFile)
}

// alertExprs returns alerts.yml's expressions by alert name.
func alertExprs(t testing.TB) map[string]string {
	t.Helper()
	data, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	out := map[string]string{}
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			out[r.Alert] = r.Expr
		}
	}
	return out
}

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	Title         string `json:"title"`
	UID           string `json:"uid"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name, Type string
			Query      any `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID         int    `json:"id"`
		Title      string `json:"title"`
		Type       string `json:"type"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// dashboardExprs returns the dashboard's queries by "panel title/refId",
// after checking the dashboard's shape: a schema version, a datasource
// variable every panel uses, panels with ids and targets.
func dashboardExprs(t testing.TB) map[string]string {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.SchemaVersion < 30 || d.Title == "" || d.UID == "" {
		t.Errorf("dashboard: schemaVersion %d, title %q, uid %q; want a current schema, a title and a uid", d.SchemaVersion, d.Title, d.UID)
	}
	var dsVar string
	for _, v := range d.Templating.List {
		if v.Type == "datasource" && v.Query == "prometheus" {
			dsVar = v.Name
		}
	}
	if dsVar == "" {
		t.Fatal("dashboard has no Prometheus datasource variable")
	}
	out := map[string]string{}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if p.ID == 0 || ids[p.ID] {
			t.Errorf("panel %q: id %d missing or repeated", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Datasource.UID != "${"+dsVar+"}" {
			t.Errorf("panel %q: datasource uid %q, want ${%s}", p.Title, p.Datasource.UID, dsVar)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no targets", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q target %s has no expr", p.Title, tg.RefID)
			}
			out[p.Title+"/"+tg.RefID] = tg.Expr
		}
	}
	return out
}

// grafanaVars are the dashboard variables, replaced by values PromQL
// parses: Grafana substitutes them before the query reaches Prometheus.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h", "$instance", ".+")

// TestDashboardQueriesParse writes every dashboard query as a recording
// rule and has promtool check the file, which parses each with
// Prometheus's PromQL parser.
func TestDashboardQueriesParse(t *testing.T) {
	exprs := dashboardExprs(t)
	want := []string{"gateway_sessions_active", "gateway_logins_total", "gateway_refreshes_total",
		"gateway_http_request_duration_seconds_bucket", "gateway_upstream_errors_total", "gateway_store_operation_duration_seconds_bucket"}
	all := strings.Join(mapValues(exprs), "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("the dashboard has no panel on %s", w)
		}
	}
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	i := 0
	for name, expr := range exprs {
		i++
		q := grafanaVars.Replace(expr)
		if strings.Contains(q, "$") {
			t.Errorf("%s: unknown Grafana variable in %q", name, expr)
		}
		quoted, _ := json.Marshal(q) // a JSON string is a YAML double-quoted string
		fmt.Fprintf(&b, "      - record: dashboard:query_%d\n        expr: %s\n", i, quoted)
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, "check", "rules", path)
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

var exposedNameRE = regexp.MustCompile(`^# TYPE (gateway_[a-z_]+) (\w+)$`)

// TestDeployMetricsExist checks that every gateway_ metric the alerts and
// the dashboard name is in the /metrics answer of a gateway running in
// process after a flow that touches them all, and that their label
// matchers name label values the gateway has.
func TestDeployMetricsExist(t *testing.T) {
	g, _ := metricsFlow(t)
	exposed := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(g.scrape()))
	for sc.Scan() {
		m := exposedNameRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		exposed[m[1]] = true
		if m[2] == "histogram" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				exposed[m[1]+s] = true
			}
		}
	}
	known := gatewayMetrics(t)
	nameRE := regexp.MustCompile(`\bgateway_[a-z_]+\b`)
	check := func(what, expr string) {
		names := nameRE.FindAllString(expr, -1)
		if len(names) == 0 {
			t.Errorf("%s: %q names no gateway metric", what, expr)
		}
		for _, n := range names {
			if !exposed[n] {
				t.Errorf("%s: %s is not in the gateway's /metrics", what, n)
			}
		}
		checkExpr(t, what, expr, known)
	}
	alerts := alertExprs(t)
	for _, want := range []string{"reuse_detected", "refreshes_total{result=~", "rate_limited", `code="503"`,
		"gateway_upstream_errors_total", "histogram_quantile(0.99", "gateway_config_reloads_total"} {
		if !strings.Contains(strings.Join(mapValues(alerts), "\n"), want) {
			t.Errorf("no alert's expression holds %q", want)
		}
	}
	for name, expr := range alerts {
		check("alert "+name, expr)
	}
	for name, expr := range dashboardExprs(t) {
		check("dashboard panel "+name, expr)
	}
}

// TestReadmeAlertsAreShipped keeps the README's alerting rules an excerpt
// of deploy/prometheus/alerts.yml, so the two cannot drift apart.
func TestReadmeAlertsAreShipped(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	shipped := alertExprs(t)
	n := 0
	for _, b := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(data), -1) {
		var doc struct {
			Groups []struct {
				Rules []struct {
					Alert string `yaml:"alert"`
					Expr  string `yaml:"expr"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		}
		if yaml.Unmarshal([]byte(b[1]), &doc) != nil {
			continue // TestReadmeOperations reports it
		}
		for _, g := range doc.Groups {
			for _, r := range g.Rules {
				n++
				if got, ok := shipped[r.Alert]; !ok || got != r.Expr {
					t.Errorf("README alert %s: expr %q, want the one in alerts.yml %q", r.Alert, r.Expr, got)
				}
			}
		}
	}
	if n == 0 {
		t.Error("the README shows no alerting rule")
	}
}
