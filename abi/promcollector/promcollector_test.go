package promcollector_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/abi/promcollector"
	"github.com/anywasm/anywasm/engine"
	_ "github.com/anywasm/anywasm/engine/all"
	"github.com/anywasm/anywasm/internal/plugins"
	"github.com/anywasm/anywasm/internal/testrt"
	"github.com/prometheus/client_golang/prometheus"
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

// eachHost loads wasm into a host on every runtime compiled in and calls f;
// hosts and runtimes stay open until the test ends (the hosts closed first).
func eachHost(t *testing.T, wasm []byte, f func(runtime string, h *abi.Host, p *abi.Plugin)) {
	t.Helper()
	ctx := context.Background()
	for _, name := range engine.Runtimes() {
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
		f(name, h, p)
	}
}

// TestGoSDKMetrics exposes the metrics of the Go SDK plugin "metrics" of
// one host per runtime through one registry, the runtimes told apart by a
// constant label.
func TestGoSDKMetrics(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewPedanticRegistry()
	var runtimes []string
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
		if err := reg.Register(promcollector.New(h.Metrics(), prometheus.Labels{"runtime": runtime})); err != nil {
			t.Fatal(err)
		}
		runtimes = append(runtimes, runtime)
	})
	// Three requests of 3 headers each on each host: the histogram has 3
	// values of 3, all in bucket le=3; the gauge is len("/cc").
	var exp strings.Builder
	for _, fam := range []struct{ name, typ, samples string }{
		{"anywasm_requests_total", "counter", `anywasm_requests_total{runtime=%[1]q} 3`},
		{"anywasm_last_path_len", "gauge", `anywasm_last_path_len{runtime=%[1]q} 3`},
		{"anywasm_header_count", "histogram", `anywasm_header_count_bucket{runtime=%[1]q,le="3"} 3
anywasm_header_count_bucket{runtime=%[1]q,le="+Inf"} 3
anywasm_header_count_sum{runtime=%[1]q} 9
anywasm_header_count_count{runtime=%[1]q} 3`},
	} {
		fmt.Fprintf(&exp, "# HELP %s Proxy-Wasm plugin %s.\n# TYPE %[1]s %[2]s\n", fam.name, fam.typ)
		for _, rt := range runtimes {
			fmt.Fprintf(&exp, fam.samples+"\n", rt)
		}
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(exp.String())); err != nil {
		t.Error(err)
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
			"# TYPE anywasm_requests_total counter",
			"# TYPE anywasm_last_path_len gauge",
			"# TYPE anywasm_header_count histogram",
			fmt.Sprintf(`anywasm_requests_total{runtime=%q} 3`, runtime),
			fmt.Sprintf(`anywasm_header_count_bucket{runtime=%q,le="3"} 3`, runtime),
			fmt.Sprintf(`anywasm_header_count_count{runtime=%q} 3`, runtime),
		} {
			if !strings.Contains(string(body), line+"\n") {
				t.Errorf("exposition lacks %q:\n%s", line, body)
			}
		}
	}
}

// TestNames: names.wasm defines metrics whose names Prometheus refuses and
// that collide once sanitized (testdata/names.wat).
func TestNames(t *testing.T) {
	wasm, err := os.ReadFile("testdata/names.wasm")
	if err != nil {
		t.Fatal(err)
	}
	eachHost(t, wasm, func(runtime string, h *abi.Host, _ *abi.Plugin) {
		t.Run(runtime, func(t *testing.T) {
			if n := len(h.Metrics().Snapshot()); n != 6 {
				t.Fatalf("the plugin defined %d metrics, want 6", n)
			}
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(promcollector.New(h.Metrics(), nil))
			// envoy_wasm_x (gauge) loses to envoy.wasm.x (counter), the
			// first in name order; h_count loses to histogram h.
			exp := `# HELP _9lives Proxy-Wasm plugin gauge.
# TYPE _9lives gauge
_9lives 9
# HELP a_b:c Proxy-Wasm plugin counter.
# TYPE a_b:c counter
a_b:c 2
# HELP envoy_wasm_x Proxy-Wasm plugin counter.
# TYPE envoy_wasm_x counter
envoy_wasm_x 5
# HELP h Proxy-Wasm plugin histogram.
# TYPE h histogram
h_bucket{le="1"} 1
h_bucket{le="+Inf"} 1
h_sum 1
h_count 1
`
			if err := testutil.GatherAndCompare(reg, strings.NewReader(exp)); err != nil {
				t.Error(err)
			}
			if n, err := testutil.GatherAndCount(reg); err != nil || n != 4 {
				t.Errorf("%d metrics, %v", n, err)
			}

			// A prefix goes in front before sanitizing.
			reg = prometheus.NewPedanticRegistry()
			reg.MustRegister(promcollector.New(h.Metrics(), prometheus.Labels{"runtime": runtime}, promcollector.WithPrefix("pw.")))
			exp = fmt.Sprintf(`# HELP pw_9lives Proxy-Wasm plugin gauge.
# TYPE pw_9lives gauge
pw_9lives{runtime=%[1]q} 9
# HELP pw_envoy_wasm_x Proxy-Wasm plugin counter.
# TYPE pw_envoy_wasm_x counter
pw_envoy_wasm_x{runtime=%[1]q} 5
`, runtime)
			if err := testutil.GatherAndCompare(reg, strings.NewReader(exp), "pw_9lives", "pw_envoy_wasm_x"); err != nil {
				t.Error(err)
			}
			if n, err := testutil.GatherAndCount(reg); err != nil || n != 4 {
				t.Errorf("%d metrics, %v", n, err)
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

func TestNilAndEmpty(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(promcollector.New(nil, nil))
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Errorf("%d metrics, %v", n, err)
	}
}
