package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/perf/benchfmt"
)

func TestLoadUsage(t *testing.T) {
	for _, args := range [][]string{{"load", "-nosuchflag"}, {"load", "extra"}, {"load", "-runtime", "v8"},
		{"load", "-plugins", "2"}, {"load", "-count", "0"}, {"load", "-conns", "0"},
		{"load", "-pool", "0"}, {"load", "-pool", "1,65"}, {"load", "-pool", "x"},
		{"load", "-cpuprofile", t.TempDir(), "-duration", "500ms"}, {"load", "-short", "-cpuprofile", t.TempDir()}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 {
			t.Errorf("run(%q) = %d, want 2; stderr:\n%s", args, code, errb.String())
		}
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	if p50, p99 := percentile(d, 50), percentile(d, 99); p50 != 50 || p99 != 99 {
		t.Errorf("p50, p99 = %d, %d; want 50, 99", p50, p99)
	}
	if p := percentile(d[:1], 99); p != 1 {
		t.Errorf("p99 of one = %d", p)
	}
	if median([]float64{3, 1, 2, 10}) != 2.5 {
		t.Error("median of 1,2,3,10 is not 2.5")
	}
}

func TestParseCounters(t *testing.T) {
	const text = `# HELP go_gc_duration_seconds A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 2.1e-05
go_gc_duration_seconds{quantile="1"} 0.0004
go_gc_duration_seconds_sum 0.012
go_gc_duration_seconds_count 37
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 12
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 3.25
`
	if cpu, gcs := parseCounters(strings.NewReader(text)); cpu != 3250*time.Millisecond || gcs != 37 {
		t.Errorf("parseCounters = %v, %v; want 3.25s, 37", cpu, gcs)
	}
	if cpu, gcs := parseCounters(strings.NewReader("# TYPE go_goroutines gauge\ngo_goroutines 12\n")); cpu != -1 || gcs != -1 {
		t.Errorf("parseCounters without either family = %v, %v; want -1, -1", cpu, gcs)
	}
	// A family of another type is not taken for it.
	if cpu, _ := parseCounters(strings.NewReader("# TYPE process_cpu_seconds_total gauge\nprocess_cpu_seconds_total 3\n")); cpu != -1 {
		t.Errorf("parseCounters of a gauge = %v, want -1", cpu)
	}
	if cpu, gcs := parseCounters(strings.NewReader("not prometheus {")); cpu != -1 || gcs != -1 {
		t.Errorf("parseCounters of garbage = %v, %v; want -1, -1", cpu, gcs)
	}
}

func TestLoadLine(t *testing.T) {
	s := sample{runtime: "wasmtime", plugins: 1, pool: 2, ok: 1000, wall: time.Second, mean: time.Millisecond,
		p50: time.Millisecond, p99: 2 * time.Millisecond, cpu: 200 * time.Millisecond, gcs: 4}
	l := s.line(true)
	for _, want := range []string{"BenchmarkProxyLoad/plugins=1/pool=2/runtime=wasmtime ", "200000 proxy-cpu-ns/req", "4.00 proxy-gc/1000req"} {
		if !strings.Contains(l, want) {
			t.Errorf("line lacks %q: %s", want, l)
		}
	}
	s.cpu, s.gcs = -1, -1
	l = s.line(false)
	if strings.Contains(l, "pool=") || strings.Contains(l, "proxy-") {
		t.Errorf("line without pool and without the proxy's figures: %s", l)
	}
	sum := loadSummary([]sample{{runtime: "wazero", plugins: 0, pool: 1, ok: 1000, wall: time.Second, cpu: 100 * time.Millisecond, gcs: 10},
		{runtime: "wazero", plugins: 1, pool: 1, ok: 800, wall: time.Second, cpu: 100 * time.Millisecond, gcs: 2}},
		loadOptions{runtimes: []string{"wazero"}, plugins: []int{0, 1}, pools: []int{1}, count: 1, duration: time.Second, conns: 16})
	for _, want := range []string{"| wazero | 0 | 1000 | - |", "| 100 µs | 10.0 | 0 |", "| wazero | 1 | 800 | 80% |", "| 125 µs | 2.5 | 0 |"} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
	// The share is of the 0-plugin rate whatever the order of -plugins.
	sum = loadSummary([]sample{{runtime: "wazero", plugins: 1, pool: 1, ok: 800, wall: time.Second, cpu: -1, gcs: -1},
		{runtime: "wazero", plugins: 0, pool: 1, ok: 1000, wall: time.Second, cpu: -1, gcs: -1}},
		loadOptions{runtimes: []string{"wazero"}, plugins: []int{1, 0}, pools: []int{1}, count: 1, duration: time.Second, conns: 16})
	if !strings.Contains(sum, "| wazero | 1 | 800 | 80% | ") {
		t.Errorf("-plugins 1,0: summary lacks the 1-plugin share:\n%s", sum)
	}
}

// TestLoad runs the load subcommand in -short mode on wazero with 0 and 1
// plugins: it builds the proxy and the headers plugin (cached by go build
// after the first time) and takes a few seconds.
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the proxy and a plugin and runs them: not in -short")
	}
	t.Cleanup(func() {
		liveProxies.Range(func(p, _ any) bool {
			t.Errorf("proxy process %d left running: killing it", p.(*os.Process).Pid)
			p.(*os.Process).Kill()
			return true
		})
	})
	out := filepath.Join(t.TempDir(), "load.txt")
	profs := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := run([]string{"load", "-short", "-duration", "1s", "-cpuprofile", profs, "-runtime", "wazero", "-plugins", "0,1", "-o", out}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("bench load = %d; stderr:\n%s", code, stderr.String())
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]bool{}
	r := benchfmt.NewReader(f, out)
	for r.Scan() {
		res, ok := r.Result().(*benchfmt.Result)
		if !ok {
			if e, isErr := r.Result().(*benchfmt.SyntaxError); isErr {
				t.Errorf("syntax error: %v", e)
			}
			continue
		}
		name := string(res.Name)
		seen[name] = true
		rps, _ := value(res, "req/s")
		p50, _ := value(res, "p50-ns")
		p99, _ := value(res, "p99-ns")
		errs, hasErrs := value(res, "errors")
		if res.Iters <= 0 || rps <= 0 || p50 <= 0 || p99 < p50 || !hasErrs || errs != 0 {
			t.Errorf("%s: iters %d, req/s %v, p50 %v, p99 %v, errors %v (present %t)", name, res.Iters, rps, p50, p99, errs, hasErrs)
		}
		if c, ok := value(res, "proxy-cpu-ns/req"); runtime.GOOS == "linux" && (!ok || c <= 0) {
			t.Errorf("%s: proxy-cpu-ns/req %v (present %t)", name, c, ok)
		}
		if g, ok := value(res, "proxy-gc/1000req"); !ok || g < 0 {
			t.Errorf("%s: proxy-gc/1000req %v (present %t)", name, g, ok)
		}
		if v, _ := value(res, "ns/op"); v <= 0 {
			t.Errorf("%s: ns/op %v", name, v)
		}
		// -cpuprofile: the profile's attribution. With no plugin the
		// middleware (an empty chain) may have a sample or two; with one
		// it and wazero's compiled guest code have many.
		total, okT := value(res, "profile-cpu-ns/req")
		plugin, okP := value(res, "plugin-cpu-ns/req")
		ext, okE := value(res, "external-cpu-ns/req")
		_, okG := value(res, "gc-cpu-ns/req")
		switch {
		case !okT || !okP || !okE || !okG || total <= 0 || plugin > total || ext > plugin:
			t.Errorf("%s: profile-cpu %v, plugin-cpu %v, external-cpu %v (present %t %t %t %t)", name, total, plugin, ext, okT, okP, okE, okG)
		case strings.Contains(name, "plugins=1") && (plugin <= 0 || ext <= 0 && wazeroCompiles()):
			t.Errorf("%s: plugin-cpu-ns/req %v, external-cpu-ns/req %v through a plugin on wazero", name, plugin, ext)
		}
		if string(res.GetConfig("load-conns")) != "16" || res.GetConfig("cpu") == "" {
			t.Errorf("%s: config load-conns %q, cpu %q", name, res.GetConfig("load-conns"), res.GetConfig("cpu"))
		}
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ProxyLoad/plugins=0/runtime=wazero", "ProxyLoad/plugins=1/runtime=wazero"} {
		if !seen[want] {
			t.Errorf("no line for %s (have %v)", want, seen)
		}
	}
	base := strings.TrimSuffix(out, ".txt")
	for _, f := range []string{base + ".benchstat", base + ".summary.md"} {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	// -cpuprofile: a profile of the proxy per run (gzipped protobuf).
	for _, n := range []int{0, 1} {
		f := filepath.Join(profs, fmt.Sprintf("wazero-plugins%d-pool1-round1.pprof", n))
		if b, err := os.ReadFile(f); err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
			t.Errorf("%s: %v, %d bytes, not a gzipped profile", f, err, len(b))
		}
	}
	if !strings.Contains(stdout.String(), "plugins' part/req") {
		t.Errorf("summary lacks the profiles' table:\n%s", stdout.String())
	}
	if !strings.Contains(stdout.String(), "| wazero | 1 |") {
		t.Errorf("summary lacks the wazero, 1 plugin row:\n%s", stdout.String())
	}
}

// value is a result's measurement in the unit of the file (benchfmt tidies
// ns/op to sec/op and p50-ns to p50-sec).
func value(res *benchfmt.Result, unit string) (float64, bool) {
	for _, v := range res.Values {
		switch {
		case v.OrigUnit == unit:
			return v.OrigValue, true
		case v.OrigUnit == "" && v.Unit == unit:
			return v.Value, true
		}
	}
	return 0, false
}

// wazeroCompiles reports whether wazero's default tier here is its
// compiler, whose guest code the profiler sees as runtime._ExternalCode
// (its interpreter runs the guest as Go code).
func wazeroCompiles() bool { return runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64" }
