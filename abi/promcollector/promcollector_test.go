package promcollector_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/abi/promcollector"
	"github.com/anywasm/anywasm/engine"
	_ "github.com/anywasm/anywasm/engine/all"
	"github.com/anywasm/anywasm/internal/plugins"
	"github.com/anywasm/anywasm/internal/testrt"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestSanitizeName(t *testing.T) {
	for in, want := range map[string]string{
		"anywasm_requests_total": "anywasm_requests_total",
		"envoy.wasm.x":           "envoy_wasm_x",
		"a-b:c":                  "a_b:c",
		"9lives":                 "_9lives",
		"x9":                     "x9",
		"":                       "_",
		"résumé":                 "r_sum_",
		"a b\n\"c\"":             "a_b__c_",
		"\xff":                   "_",
		":colon":                 ":colon",
	} {
		if got := promcollector.SanitizeName(in); got != want {
			t.Errorf("SanitizeName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestName(t *testing.T) {
	for _, c := range []struct {
		prefix, name string
		typ          abi.MetricType
		want         string
	}{
		{promcollector.DefaultPrefix, "x", abi.MetricCounter, "anywasm_plugin_x_total"},
		{promcollector.DefaultPrefix, "x_total", abi.MetricCounter, "anywasm_plugin_x_total"},
		{promcollector.DefaultPrefix, "x.total", abi.MetricCounter, "anywasm_plugin_x_total"}, // sanitized first
		{promcollector.DefaultPrefix, "x_total", abi.MetricGauge, "anywasm_plugin_x_total"},
		{promcollector.DefaultPrefix, "x", abi.MetricGauge, "anywasm_plugin_x"},
		{promcollector.DefaultPrefix, "x", abi.MetricHistogram, "anywasm_plugin_x"},
		{promcollector.DefaultPrefix, "9", abi.MetricGauge, "anywasm_plugin_9"},
		{"", "9", abi.MetricGauge, "_9"},
		{"", "", abi.MetricCounter, "__total"},
		{"", "total", abi.MetricCounter, "total_total"},
		{"pw.", "envoy.wasm.x", abi.MetricCounter, "pw_envoy_wasm_x_total"},
	} {
		if got := promcollector.Name(c.prefix, c.name, c.typ); got != c.want {
			t.Errorf("Name(%q, %q, %s) = %q, want %q", c.prefix, c.name, c.typ, got, c.want)
		}
	}
}

// load loads wasm into a new host on runtime name; host and runtime stay
// open until the test ends (the host closed first).
func load(t *testing.T, name string, wasm []byte) (*abi.Host, *abi.Plugin) {
	t.Helper()
	ctx := context.Background()
	rt, err := engine.Open(name, testrt.Config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close(ctx) })
	h := abi.NewHost(rt, abi.Options{})
	t.Cleanup(func() { _ = h.Close(ctx) })
	p, err := h.Load(ctx, wasm, abi.PluginConfig{Name: "p", VMID: "vm"})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return h, p
}

// eachHost loads wasm into a host on every runtime compiled in and calls f.
func eachHost(t *testing.T, wasm []byte, f func(runtime string, h *abi.Host, p *abi.Plugin)) {
	t.Helper()
	for _, name := range engine.Runtimes() {
		h, p := load(t, name, wasm)
		f(name, h, p)
	}
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// skips records what a collector leaves out.
type skips struct {
	mu sync.Mutex
	s  []promcollector.Skip
}

func (s *skips) add(k promcollector.Skip) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.s = append(s.s, k)
}

// take returns the skips so far, one line each ("name type -> exposed
// labels: reason"), sorted, and forgets them.
func (s *skips) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, k := range s.s {
		out = append(out, fmt.Sprintf("%s %s -> %s %v: %s", k.Name, k.Type, k.Exposed, k.Labels, k.Reason))
	}
	s.s = nil
	slices.Sort(out)
	return out
}

// TestGoSDKMetrics exposes the metrics of the Go SDK plugin "metrics" of
// one host per runtime through one collector, the runtimes told apart by
// a constant label.
func TestGoSDKMetrics(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewPedanticRegistry()
	var (
		runtimes []string
		sources  []promcollector.Source
	)
	eachHost(t, plugins.Build(t, "metrics"), func(runtime string, h *abi.Host, p *abi.Plugin) {
		for _, path := range []string{"/a", "/bbbb", "/cc"} {
			s, err := p.NewHTTPStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.RequestHeaders(ctx, abi.Headers{{Key: ":path", Value: path}, {Key: "x", Value: "1"}, {Key: "y", Value: "2"}}, true); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(ctx); err != nil {
				t.Fatal(err)
			}
		}
		sources = append(sources, promcollector.Source{Metrics: h.Metrics(), Labels: prometheus.Labels{"runtime": runtime}})
		runtimes = append(runtimes, runtime)
	})
	var sk skips
	reg.MustRegister(promcollector.NewSources(sources, promcollector.WithOnSkip(sk.add)))
	// Three requests of 3 headers each on each host: the histogram has 3
	// values of 3, all in bucket le=3; the gauge is len("/cc"). Every name
	// has the default prefix.
	var exp strings.Builder
	for _, fam := range []struct{ name, typ, samples string }{
		{"anywasm_plugin_anywasm_requests_total", "counter", `anywasm_plugin_anywasm_requests_total{runtime=%[1]q} 3`},
		{"anywasm_plugin_anywasm_last_path_len", "gauge", `anywasm_plugin_anywasm_last_path_len{runtime=%[1]q} 3`},
		{"anywasm_plugin_anywasm_header_count", "histogram", `anywasm_plugin_anywasm_header_count_bucket{runtime=%[1]q,le="3"} 3
anywasm_plugin_anywasm_header_count_bucket{runtime=%[1]q,le="+Inf"} 3
anywasm_plugin_anywasm_header_count_sum{runtime=%[1]q} 9
anywasm_plugin_anywasm_header_count_count{runtime=%[1]q} 3`},
	} {
		fmt.Fprintf(&exp, "# HELP %s Proxy-Wasm plugin %s.\n# TYPE %[1]s %[2]s\n", fam.name, fam.typ)
		for _, rt := range runtimes {
			fmt.Fprintf(&exp, fam.samples+"\n", rt)
		}
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(exp.String())); err != nil {
		t.Error(err)
	}
	if s := sk.take(); len(s) != 0 {
		t.Errorf("left out: %q", s)
	}

	// And over HTTP, in the text format a Prometheus server scrapes.
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	for _, runtime := range engine.Runtimes() {
		for _, line := range []string{
			"# TYPE anywasm_plugin_anywasm_requests_total counter",
			"# TYPE anywasm_plugin_anywasm_last_path_len gauge",
			"# TYPE anywasm_plugin_anywasm_header_count histogram",
			fmt.Sprintf(`anywasm_plugin_anywasm_requests_total{runtime=%q} 3`, runtime),
			fmt.Sprintf(`anywasm_plugin_anywasm_header_count_bucket{runtime=%q,le="3"} 3`, runtime),
			fmt.Sprintf(`anywasm_plugin_anywasm_header_count_count{runtime=%q} 3`, runtime),
		} {
			if !strings.Contains(string(body), line+"\n") {
				t.Errorf("exposition lacks %q:\n%s", line, body)
			}
		}
	}
}

// TestNames: names.wasm defines metrics whose names Prometheus refuses and
// that collide once sanitized and suffixed (testdata/names.wat).
func TestNames(t *testing.T) {
	eachHost(t, readFile(t, "testdata/names.wasm"), func(runtime string, h *abi.Host, _ *abi.Plugin) {
		t.Run(runtime, func(t *testing.T) {
			if n := len(h.Metrics().Snapshot()); n != 8 {
				t.Fatalf("the plugin defined %d metrics, want 8", n)
			}
			var sk skips
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(promcollector.New(h.Metrics(), nil, promcollector.WithOnSkip(sk.add)))
			// Gauge envoy_wasm_x_total loses to counter envoy.wasm.x
			// (exposed with _total), the first in name order; gauge
			// h_count loses to histogram h's _count series.
			exp := `# HELP anywasm_plugin_9lives Proxy-Wasm plugin gauge.
# TYPE anywasm_plugin_9lives gauge
anywasm_plugin_9lives 9
# HELP anywasm_plugin_a_b:c_total Proxy-Wasm plugin counter.
# TYPE anywasm_plugin_a_b:c_total counter
anywasm_plugin_a_b:c_total 2
# HELP anywasm_plugin_done_total Proxy-Wasm plugin counter.
# TYPE anywasm_plugin_done_total counter
anywasm_plugin_done_total 1
# HELP anywasm_plugin_envoy_wasm_x_total Proxy-Wasm plugin counter.
# TYPE anywasm_plugin_envoy_wasm_x_total counter
anywasm_plugin_envoy_wasm_x_total 5
# HELP anywasm_plugin_h Proxy-Wasm plugin histogram.
# TYPE anywasm_plugin_h histogram
anywasm_plugin_h_bucket{le="1"} 1
anywasm_plugin_h_bucket{le="+Inf"} 1
anywasm_plugin_h_sum 1
anywasm_plugin_h_count 1
# HELP anywasm_plugin_requests_total Proxy-Wasm plugin gauge.
# TYPE anywasm_plugin_requests_total gauge
anywasm_plugin_requests_total 11
`
			if err := testutil.GatherAndCompare(reg, strings.NewReader(exp)); err != nil {
				t.Error(err)
			}
			want := []string{
				`envoy_wasm_x_total gauge -> anywasm_plugin_envoy_wasm_x_total map[]: anywasm_plugin_envoy_wasm_x_total is already plugin metric "envoy.wasm.x", a counter`,
				`h_count gauge -> anywasm_plugin_h_count map[]: series anywasm_plugin_h_count is already plugin metric "h"'s (exposed as anywasm_plugin_h)`,
			}
			if got := sk.take(); !slices.Equal(got, want) {
				t.Errorf("left out:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			// Every Collect decides the same.
			for range 3 {
				if err := testutil.GatherAndCompare(reg, strings.NewReader(exp)); err != nil {
					t.Error(err)
				}
				if got := sk.take(); !slices.Equal(got, want) {
					t.Errorf("left out:\n%s", strings.Join(got, "\n"))
				}
			}

			// Another prefix goes in front before sanitizing.
			reg = prometheus.NewPedanticRegistry()
			reg.MustRegister(promcollector.New(h.Metrics(), prometheus.Labels{"runtime": runtime}, promcollector.WithPrefix("pw.")))
			exp = fmt.Sprintf(`# HELP pw_9lives Proxy-Wasm plugin gauge.
# TYPE pw_9lives gauge
pw_9lives{runtime=%[1]q} 9
# HELP pw_envoy_wasm_x_total Proxy-Wasm plugin counter.
# TYPE pw_envoy_wasm_x_total counter
pw_envoy_wasm_x_total{runtime=%[1]q} 5
`, runtime)
			if err := testutil.GatherAndCompare(reg, strings.NewReader(exp), "pw_9lives", "pw_envoy_wasm_x_total"); err != nil {
				t.Error(err)
			}
			if n, err := testutil.GatherAndCount(reg); err != nil || n != 6 {
				t.Errorf("%d metrics, %v", n, err)
			}

			// No prefix, and reserved names: _9lives, and h_sum (so all of
			// histogram h). h left out, gauge h_count no longer clashes.
			reg = prometheus.NewPedanticRegistry()
			reg.MustRegister(promcollector.New(h.Metrics(), nil, promcollector.WithPrefix(""), promcollector.WithOnSkip(sk.add),
				promcollector.WithReserved(func(n string) bool { return n == "_9lives" || n == "h_sum" })))
			exp = `# HELP h_count Proxy-Wasm plugin gauge.
# TYPE h_count gauge
h_count 4
`
			if err := testutil.GatherAndCompare(reg, strings.NewReader(exp), "h_count", "h", "_9lives"); err != nil {
				t.Error(err)
			}
			want = []string{
				"9lives gauge -> _9lives map[]: _9lives is reserved for another collector's metrics",
				`envoy_wasm_x_total gauge -> envoy_wasm_x_total map[]: envoy_wasm_x_total is already plugin metric "envoy.wasm.x", a counter`,
				"h histogram -> h map[]: h_sum is reserved for another collector's metrics",
			}
			if got := sk.take(); !slices.Equal(got, want) {
				t.Errorf("left out:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}

			// An invalid constant label (not UTF-8) is a Gather error, not a panic.
			reg = prometheus.NewPedanticRegistry()
			reg.MustRegister(promcollector.New(h.Metrics(), prometheus.Labels{"runtime": "\xff"}))
			if _, err := reg.Gather(); err == nil {
				t.Error("an invalid label name gathered without error")
			}
		})
	})
}

// TestSources: where the metrics of two sources collide, the earlier
// source's is exposed. collide.wasm's counter "requests" and names.wasm's
// gauge "requests_total" are both exposed as anywasm_plugin_requests_total.
func TestSources(t *testing.T) {
	rt := engine.Runtimes()[0]
	collide, _ := load(t, rt, readFile(t, "testdata/collide.wasm"))
	names, _ := load(t, rt, readFile(t, "testdata/names.wasm"))
	c := promcollector.Source{Metrics: collide.Metrics(), Labels: prometheus.Labels{"plugin": "collide"}}
	n := promcollector.Source{Metrics: names.Metrics(), Labels: prometheus.Labels{"plugin": "names"}}
	for _, tc := range []struct {
		sources []promcollector.Source
		exp     string
		skipped string
	}{
		{[]promcollector.Source{c, n}, `# HELP anywasm_plugin_requests_total Proxy-Wasm plugin counter.
# TYPE anywasm_plugin_requests_total counter
anywasm_plugin_requests_total{plugin="collide"} 0
`, `requests_total gauge -> anywasm_plugin_requests_total map[plugin:names]: anywasm_plugin_requests_total is already plugin metric "requests", a counter`},
		{[]promcollector.Source{n, c}, `# HELP anywasm_plugin_requests_total Proxy-Wasm plugin gauge.
# TYPE anywasm_plugin_requests_total gauge
anywasm_plugin_requests_total{plugin="names"} 11
`, `requests counter -> anywasm_plugin_requests_total map[plugin:collide]: anywasm_plugin_requests_total is already plugin metric "requests_total", a gauge`},
	} {
		var sk skips
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(promcollector.NewSources(tc.sources, promcollector.WithOnSkip(sk.add)))
		if err := testutil.GatherAndCompare(reg, strings.NewReader(tc.exp), "anywasm_plugin_requests_total"); err != nil {
			t.Error(err)
		}
		var got []string
		for _, s := range sk.take() {
			if strings.Contains(s, "requests") {
				got = append(got, s)
			}
		}
		if !slices.Equal(got, []string{tc.skipped}) {
			t.Errorf("left out:\n%s\nwant:\n%s", strings.Join(got, "\n"), tc.skipped)
		}
		// Both plugins' metrics that do not collide are there.
		if n, err := testutil.GatherAndCount(reg, "anywasm_plugin_go_goroutines", "anywasm_plugin_done_total"); err != nil || n != 2 {
			t.Errorf("%d metrics, %v", n, err)
		}
	}

	// The same metrics twice: with other labels, one family of two
	// metrics; with the same labels, the second source's are left out.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(promcollector.NewSources([]promcollector.Source{c, {Metrics: collide.Metrics(), Labels: prometheus.Labels{"plugin": "again"}}}))
	if n, err := testutil.GatherAndCount(reg, "anywasm_plugin_go_goroutines"); err != nil || n != 2 {
		t.Errorf("%d metrics, %v", n, err)
	}
	var sk skips
	reg = prometheus.NewPedanticRegistry()
	reg.MustRegister(promcollector.NewSources([]promcollector.Source{c, c}, promcollector.WithOnSkip(sk.add)))
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 4 {
		t.Errorf("%d metrics, %v", n, err)
	}
	if got := sk.take(); len(got) != 4 || !strings.HasSuffix(got[0], "another source with the same labels already exposed anywasm_plugin_go_goroutines") {
		t.Errorf("left out: %q", got)
	}
}

// TestBesideGoCollector: with no prefix, collide.wasm's go_goroutines and
// process_open_fds would be the Go and process collectors' names; reserved,
// they are left out and the registry gathers without error.
func TestBesideGoCollector(t *testing.T) {
	h, _ := load(t, engine.Runtimes()[0], readFile(t, "testdata/collide.wasm"))
	reserved := func(n string) bool { return strings.HasPrefix(n, "go_") || strings.HasPrefix(n, "process_") }
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		promcollector.New(h.Metrics(), nil, promcollector.WithPrefix(""), promcollector.WithReserved(reserved)))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		if mf.GetName() == "go_goroutines" && mf.GetHelp() != "Number of goroutines that currently exist." {
			t.Errorf("go_goroutines is not the Go collector's: %v", mf)
		}
		if !reserved(mf.GetName()) {
			names = append(names, mf.GetName())
		}
	}
	if want := []string{"proxy_http_requests_total", "requests_total"}; !slices.Equal(names, want) {
		t.Errorf("the plugin's families are %q, want %q", names, want)
	}

	// Without WithReserved the registry refuses the exposition: the
	// reason for the option.
	reg = prometheus.NewPedanticRegistry()
	reg.MustRegister(collectors.NewGoCollector(), promcollector.New(h.Metrics(), nil, promcollector.WithPrefix("")))
	if _, err := reg.Gather(); err == nil {
		t.Error("go_goroutines twice gathered without error")
	}
}

func TestNilAndEmpty(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(promcollector.New(nil, nil), promcollector.NewSources(nil))
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Errorf("%d metrics, %v", n, err)
	}
}
