package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

const dashboardPath = "../../deploy/grafana/vsphere-csi.json"

// exercised is a Metrics on which every observer method has been called
// once, so that every labelled metric has a series and is gathered.
func exercised(t *testing.T) *Metrics {
	t.Helper()
	m := New()
	m.Started("v0.0.0-test", "vcenter.example.com")
	m.SyncerStarted("v0.0.0-test")
	m.ObserveCSI("CreateVolume", "OK", "block", "", time.Second)
	m.SOAPCall("CnsQueryVolume", "", time.Millisecond)
	m.SOAPCallTo("cns", "CnsCreateVolume", "", time.Millisecond)
	m.CNSOperation("CnsCreateVolume", false, time.Second)
	m.TasksInFlight(1)
	m.TasksInDoubt("create", 1)
	m.LoginRefused()
	m.NodeVMs(3)
	m.WatchUpdates(2)
	m.MetadataSent(1, false, []time.Duration{time.Second})
	m.FullSync(time.Second, 1, nil)
	m.Findings(1, 1)
	m.VolumeHealth(1, 0)
	return m
}

// families gathers m's registry: metric family name → type.
func families(t *testing.T, m *Metrics) map[string]dto.MetricType {
	t.Helper()
	mfs, err := m.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]dto.MetricType{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf.GetType()
	}
	return out
}

// exported tells whether a name used in a query is a series the registry
// serves: a family's own name, or a histogram's (summary's) _bucket, _sum
// or _count.
func exported(fams map[string]dto.MetricType, name string) bool {
	if _, ok := fams[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		switch fams[base] {
		case dto.MetricType_HISTOGRAM:
			return true
		case dto.MetricType_SUMMARY:
			return suffix != "_bucket"
		}
	}
	return false
}

// metricNames extracts the metric names of a PromQL expression: strings,
// label matchers, ranges and grouping label lists are removed; of the
// identifiers left, function and aggregation names (followed by "("),
// keywords and numbers' exponents are not metrics.
func metricNames(expr string) []string {
	// PromQL's keywords and the words of a query that are neither metrics
	// nor functions.
	promQLWords := map[string]bool{
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"bool": true, "and": true, "or": true, "unless": true, "offset": true, "inf": true, "nan": true, "atan2": true,
	}
	promQLString := regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promQLMatchers := regexp.MustCompile(`\{[^{}]*\}`)
	promQLRange := regexp.MustCompile(`\[[^\[\]]*\]`)
	promQLGrouping := regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promQLIdent := regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	s := promQLString.ReplaceAllString(expr, " ")
	s = promQLMatchers.ReplaceAllString(s, " ")
	s = promQLRange.ReplaceAllString(s, " ")
	s = promQLGrouping.ReplaceAllString(s, " ")
	var out []string
	for _, loc := range promQLIdent.FindAllStringIndex(s, -1) {
		word := s[loc[0]:loc[1]]
		if loc[0] > 0 && strings.ContainsAny(s[loc[0]-1:loc[0]], "0123456789.$") {
			continue // 1e3's e, a Grafana $variable
		}
		if rest := strings.TrimLeft(s[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") {
			continue // a function or an aggregation
		}
		if promQLWords[strings.ToLower(word)] {
			continue
		}
		out = append(out, word)
	}
	return out
}

func TestMetricNamesOfPromQL(t *testing.T) {
	for expr, want := range map[string]string{
		`sum by (le, optype) (rate(a_bucket{status="fail",x=~"a{1}"}[$__rate_interval]))`:          "a_bucket",
		`histogram_quantile(0.99, sum without (pod) (rate(b_bucket[5m] offset 1h)))`:               "b_bucket",
		`sum(rate(c_total[1m])) / on (job) group_left (version) count by (version) (d_info) > 1e3`: "c_total d_info",
		`max by (vc) (e) or vector(0)`:             "e",
		`f:recorded:rate5m * bool 2`:               "f:recorded:rate5m",
		`sum(increase(g_count[1h]))`:               "g_count",
		`label_replace(h, "a", "$1", "b", "(.*)")`: "h",
	} {
		if got := strings.Join(metricNames(expr), " "); got != want {
			t.Errorf("metricNames(%s) = %q, want %q", expr, got, want)
		}
	}
}

func TestExportedSuffixes(t *testing.T) {
	fams := map[string]dto.MetricType{"h": dto.MetricType_HISTOGRAM, "c": dto.MetricType_COUNTER, "c_count": dto.MetricType_COUNTER}
	for name, want := range map[string]bool{
		"h": true, "h_bucket": true, "h_sum": true, "h_count": true,
		"c": true, "c_count": true, "c_bucket": false, "c_sum": false, "nothing": false, "h_total": false,
	} {
		if got := exported(fams, name); got != want {
			t.Errorf("exported(%s) = %v, want %v", name, got, want)
		}
	}
}

// dashboardExprs reads every PromQL expression of the dashboard's panels
// (rows' nested panels too) and of its templating queries.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		Expr string `json:"expr"`
	}
	type panel struct {
		Title   string   `json:"title"`
		Targets []target `json:"targets"`
		Panels  []panel  `json:"panels"`
	}
	var dash struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	var exprs []string
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q has a target without an expression", p.Title)
				}
				exprs = append(exprs, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	for _, v := range dash.Templating.List {
		if q, ok := v.Query.(string); ok && v.Type == "query" {
			exprs = append(exprs, q)
		}
	}
	return exprs
}

// TestDashboardQueriesNameExportedMetrics: every metric the Grafana
// dashboard in deploy/grafana queries is one the driver's registry
// serves (after every observer was called once), so no panel stays empty
// for a wrong name.
func TestDashboardQueriesNameExportedMetrics(t *testing.T) {
	fams := families(t, exercised(t))
	exprs := dashboardExprs(t)
	if len(exprs) < 10 {
		t.Fatalf("the dashboard has %d queries; want its panels' queries", len(exprs))
	}
	missing := map[string]bool{}
	used := map[string]bool{}
	for _, e := range exprs {
		names := metricNames(e)
		if len(names) == 0 {
			t.Errorf("query %q names no metric", e)
		}
		for _, n := range names {
			used[n] = true
			if !exported(fams, n) {
				missing[n] = true
			}
		}
	}
	if len(missing) > 0 {
		var names []string
		for n := range missing {
			names = append(names, n)
		}
		sort.Strings(names)
		t.Errorf("the dashboard queries metrics the driver does not export: %s", strings.Join(names, ", "))
	}
	// The upstream driver's names are on the dashboard, so that its users'
	// panels are there.
	for _, n := range []string{"vsphere_csi_volume_ops_histogram_count", "vsphere_cns_volume_ops_histogram_bucket",
		"vsphere_request_ops_seconds_count", "vsphere_full_sync_ops_histogram_count", "vsphere_volume_health_gauge"} {
		if !used[n] {
			t.Errorf("the dashboard does not query %s", n)
		}
	}
}

// TestDashboardIsGrafanaJSON: the file imports into Grafana: a title, a
// uid, a datasource variable the panels use.
func TestDashboardIsGrafanaJSON(t *testing.T) {
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"title", "uid", "panels", "templating", "schemaVersion"} {
		if d[k] == nil {
			t.Errorf("dashboard has no %s", k)
		}
	}
	if !strings.Contains(string(raw), `"uid": "${datasource}"`) {
		t.Error("panels do not use the ${datasource} variable")
	}
}
