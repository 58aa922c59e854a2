package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/perf/benchfmt"
)

func TestSoakUsage(t *testing.T) {
	for _, args := range [][]string{{"soak", "-nosuchflag"}, {"soak", "extra"}, {"soak", "-runtime", "v8"},
		{"soak", "-requests", "0"}, {"soak", "-conns", "0"}, {"soak", "-interval", "0s"}, {"soak", "-warmup", "1"}, {"soak", "-warmup", "-0.1"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 {
			t.Errorf("run(%q) = %d, want 2; stderr:\n%s", args, code, errb.String())
		}
	}
}

// soakFixture is a run of 1000 requests whose baseline (after the warm-up)
// and end samples are base and end; a sample under load in between has
// much more of everything, which the check ignores.
func soakFixture(base, end soakSample) soakRun {
	start := soakSample{phase: phaseStart, rss: 1, heap: 1, goroutines: 1, fds: 1}
	base.phase, base.n, base.done = phaseBaseline, 1, 200
	busy := soakSample{phase: phaseSoak, n: 2, done: 600, rss: 1e12, heap: 1e12, goroutines: 1e6, fds: 1e6}
	end.phase, end.n, end.done = phaseEnd, 3, 1000
	return soakRun{runtime: "wazero", requests: 1000, samples: []soakSample{start, base, busy, end}}
}

func TestSoakProblems(t *testing.T) {
	const mib = 1 << 20
	base := soakSample{rss: 100 * mib, heap: 10 * mib, goroutines: 50, fds: 40}
	for _, c := range []struct {
		name string
		end  func(s *soakSample)
		want string // "" for no problem
	}{
		{"same", func(s *soakSample) {}, ""},
		{"less", func(s *soakSample) { s.rss, s.heap, s.goroutines, s.fds = 1, 1, 1, 1 }, ""},
		{"goroutines +10 (absolute floor)", func(s *soakSample) { s.goroutines += 10 }, ""},
		{"goroutines +11", func(s *soakSample) { s.goroutines += 11 }, "goroutines grew from 50 (sample 1, 200 requests) to 61 (sample 3): +11, more than the +10 allowed"},
		{"fds +11", func(s *soakSample) { s.fds += 11 }, "fds grew from 40"},
		{"heap +4 MiB (absolute floor)", func(s *soakSample) { s.heap += 4 * mib }, ""},
		{"heap +4.1 MiB", func(s *soakSample) { s.heap += 4.1 * mib }, "heap grew from 10.0 MiB"},
		{"rss +20%", func(s *soakSample) { s.rss *= 1.2 }, ""},
		{"rss +21%", func(s *soakSample) { s.rss *= 1.21 }, "rss-used grew from 100.0 MiB (sample 1, 200 requests) to 121.0 MiB (sample 3): +21.0 MiB, more than the +20.0 MiB allowed (+20%, at least +16.0 MiB)"},
		// RSS used leaves out the Go heap's free pages not given back yet.
		{"rss +30 MiB of free heap", func(s *soakSample) { s.rss += 30 * mib; s.heapFree += 30 * mib }, ""},
		{"rss +31 MiB, 10 of them free heap", func(s *soakSample) { s.rss += 31 * mib; s.heapFree += 10 * mib }, "rss-used grew from 100.0 MiB (sample 1, 200 requests) to 121.0 MiB (sample 3): +21.0 MiB"},
		{"errors", func(s *soakSample) { s.errs = 3 }, "3 of 1000 requests failed (first: 502 Bad Gateway)"},
		{"short", func(s *soakSample) { s.done = 999 }, "999 requests answered, want 1000"},
	} {
		end := base
		c.end(&end)
		r := soakFixture(base, end)
		r.firstErr = "502 Bad Gateway"
		if c.name == "short" {
			r.samples[3].done = 999
		}
		ps := r.problems()
		switch {
		case c.want == "" && len(ps) > 0:
			t.Errorf("%s: problems %q", c.name, ps)
		case c.want != "" && (len(ps) != 1 || !strings.Contains(ps[0], c.want)):
			t.Errorf("%s: problems %q, want one with %q", c.name, ps, c.want)
		}
	}
	// A large baseline: +10% of goroutines allowed, more than +10.
	big := soakSample{rss: 100 * mib, heap: 10 * mib, goroutines: 500, fds: 40}
	end := big
	end.goroutines = 550
	if ps := soakFixture(big, end).problems(); len(ps) != 0 {
		t.Errorf("500 -> 550 goroutines: %q", ps)
	}
	end.goroutines = 551
	if ps := soakFixture(big, end).problems(); len(ps) != 1 {
		t.Errorf("500 -> 551 goroutines: %q", ps)
	}
	// Without a baseline sample (no warm-up) the check starts at the first.
	r := soakFixture(base, base)
	r.samples = slicesDelete(r.samples, 1)
	if got := r.baseline(); got.phase != phaseStart {
		t.Errorf("baseline without a warm-up: %+v", got)
	}
}

func slicesDelete(s []soakSample, i int) []soakSample {
	return append(append([]soakSample(nil), s[:i]...), s[i+1:]...)
}

// proxyMetricsFixture is what the proxy's /metrics says, a plugin's
// go_goroutines (prefixed, with a runtime label) beside Go's.
const proxyMetricsFixture = `# HELP anywasm_plugin_go_goroutines Proxy-Wasm plugin gauge.
# TYPE anywasm_plugin_go_goroutines gauge
anywasm_plugin_go_goroutines{runtime="wazero"} 1e+06
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 57
# HELP go_memstats_heap_alloc_bytes Number of heap bytes allocated and currently in use.
# TYPE go_memstats_heap_alloc_bytes gauge
go_memstats_heap_alloc_bytes 3.9e+07
# HELP go_memstats_heap_inuse_bytes Number of heap bytes that are in use.
# TYPE go_memstats_heap_inuse_bytes gauge
go_memstats_heap_inuse_bytes 4.2e+07
# HELP go_memstats_heap_idle_bytes Number of heap bytes waiting to be used.
# TYPE go_memstats_heap_idle_bytes gauge
go_memstats_heap_idle_bytes 3e+07
# HELP go_memstats_heap_released_bytes Number of heap bytes released to OS.
# TYPE go_memstats_heap_released_bytes gauge
go_memstats_heap_released_bytes 2.5e+07
# HELP process_open_fds Number of open file descriptors.
# TYPE process_open_fds gauge
process_open_fds 44
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 1.2e+08
`

func TestParseProxyMetrics(t *testing.T) {
	s, err := parseProxyMetrics(strings.NewReader(proxyMetricsFixture))
	if err != nil {
		t.Fatal(err)
	}
	if s.goroutines != 57 || s.heap != 39e6 || s.heapInuse != 42e6 || s.fds != 44 || s.rss != 120e6 || s.heapFree != 5e6 || s.rssUsed() != 115e6 {
		t.Errorf("%+v", s)
	}
	for _, bad := range []string{
		strings.Replace(proxyMetricsFixture, "process_open_fds 44", "", 1),
		strings.Replace(proxyMetricsFixture, "go_memstats_heap_released_bytes 2.5e+07", "", 1),
		strings.Replace(proxyMetricsFixture, "go_goroutines 57", `go_goroutines{runtime="wazero"} 57`, 1),
		strings.Replace(proxyMetricsFixture, "go_goroutines 57", "go_goroutines 57\ngo_goroutines{x=\"y\"} 1", 1),
		"not prometheus text {",
	} {
		if _, err := parseProxyMetrics(strings.NewReader(bad)); err == nil {
			t.Errorf("no error for:\n%s", bad)
		}
	}
}

// TestSoak runs the soak subcommand in -short mode on wazero: it builds the
// proxy and the three plugins (cached by go build after the first time),
// sends 20,000 requests and checks the results file and the summary.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the proxy and the plugins and runs them: not in -short")
	}
	t.Cleanup(func() {
		liveProxies.Range(func(p, _ any) bool {
			t.Errorf("proxy process %d left running: killing it", p.(*os.Process).Pid)
			p.(*os.Process).Kill()
			return true
		})
	})
	out := filepath.Join(t.TempDir(), "soak.txt")
	var stdout, stderr bytes.Buffer
	code := run([]string{"soak", "-short", "-runtime", "wazero", "-o", out}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("bench soak = %d; stderr:\n%s", code, stderr.String())
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	phases := map[string]int{}
	var last *benchfmt.Result
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
		if !strings.HasPrefix(name, "ProxySoak/plugins=3/runtime=wazero/sample=") {
			t.Errorf("unexpected result %s", name)
		}
		_, phase, _ := strings.Cut(name, "/phase=")
		phases[phase]++
		for _, unit := range []string{"rss-B", "rss-used-B", "heap-B", "heap-inuse-B", "goroutines", "fds"} {
			if v, ok := value(res, unit); !ok || v <= 0 {
				t.Errorf("%s: %s = %v (present %t)", name, unit, v, ok)
			}
		}
		rss, _ := value(res, "rss-B")
		used, _ := value(res, "rss-used-B")
		if free, ok := value(res, "heap-free-B"); !ok || free < 0 || rss-free != used {
			t.Errorf("%s: heap-free-B %v (present %t), rss-B %v, rss-used-B %v", name, free, ok, rss, used)
		}
		if errs, ok := value(res, "errors"); !ok || errs != 0 {
			t.Errorf("%s: errors %v (present %t)", name, errs, ok)
		}
		if string(res.GetConfig("soak-requests")) != "20000" || string(res.GetConfig("load-conns")) != "16" || res.GetConfig("cpu") == "" {
			t.Errorf("%s: config soak-requests %q, load-conns %q, cpu %q", name, res.GetConfig("soak-requests"), res.GetConfig("load-conns"), res.GetConfig("cpu"))
		}
		last = res.Clone()
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if phases["start"] != 1 || phases["baseline"] != 1 || phases["end"] != 1 {
		t.Errorf("phases %v: want one start, baseline and end", phases)
	}
	if last == nil || !strings.HasSuffix(string(last.Name), "/phase=end") || last.Iters != 20000 {
		t.Errorf("last sample: %v", last)
	}
	summary, err := os.ReadFile(strings.TrimSuffix(out, ".txt") + ".summary.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(summary, stdout.Bytes()) {
		t.Error("the summary printed is not the summary written")
	}
	// The warm-up is 20% of the requests: 4000.
	for _, want := range []string{"| wazero | first (0) | 0 s | 0 | 0 |", "| wazero | after warm-up (", "| 4000 | 0 |", "| 20000 | 0 |", "| ok |"} {
		if !strings.Contains(string(summary), want) {
			t.Errorf("summary lacks %q:\n%s", want, summary)
		}
	}
}
