package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/cpuid/v2"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/anywasm/anywasm/internal/loadreq"
	"github.com/anywasm/anywasm/internal/version"
)

// The soak subcommand looks for leaks in cmd/anywasm-proxy: on each
// runtime in turn it sends many requests through the 3-plugin chain of the
// load subcommand (headers, local_response, metrics) and samples, every
// -interval, the proxy's RSS, Go heap, goroutines and open fds from its own
// /metrics (see soakSample):
//
//	go run ./cmd/bench soak                 # 1,000,000 requests per runtime, a sample every 10s
//	go run ./cmd/bench soak -short          # 20,000 requests, a sample every 1s (CI)
//	go run ./cmd/bench soak -runtime wasmtime -requests 5000000
//
// The warm-up (-warmup, a fraction of -requests) and the rest of the
// requests are two phases; after the last answer of each the proxy is
// sampled at rest (no request in flight, and its connections to the load
// generator and to the backend closed: see sampleAtRest).
// The soak fails (exit 1) if a request fails, or if a resource grows
// beyond soakLimits from the sample at rest after the warm-up to the one
// at rest at the end. Each line of the results is one sample:
//
//	BenchmarkProxySoak/plugins=3/runtime=R/sample=N/phase=P  <requests done>  <s> elapsed-sec  <n> errors  <req/s since the previous sample> req/s
//	    <B> rss-B  <B> rss-used-B  <B> heap-B  <B> heap-inuse-B  <B> heap-free-B  <n> goroutines  <n> fds

// soakChain is the plugin chain of the soak: loadreq.Chains[soakChain].
const soakChain = 3

// soakLimit is how much a resource may grow from the first sample after
// the warm-up to the last: max(rel*first, abs).
type soakLimit struct {
	name string
	rel  float64
	abs  float64
	get  func(soakSample) float64
	unit string // "B" or "" (a count)
}

// soakLimits are the tolerances of the leak check, which compares samples
// taken at rest (see sampleAtRest). Goroutines and fds are counts that
// should not move at all there: +10%, at least +10, leaves room for a
// background goroutine or file of the runtimes, no more. Heap and RSS are
// noisier: +20%, at least +4 MiB of heap (the live heap, right after a GC
// the soak forces: sync.Pool caches and guest memory, which on wazero is
// in the Go heap and grows by whole 64 KiB pages, move it) and +16 MiB of
// RSS used. RSS used is RSS less the Go heap's free pages not yet given
// back to the OS (go_memstats_heap_idle_bytes - heap_released_bytes):
// after a load the scavenger gives them back over seconds, so raw RSS at
// rest moved by ±20 MiB from one short run to the next.
var soakLimits = []soakLimit{
	{"goroutines", 0.10, 10, func(s soakSample) float64 { return s.goroutines }, ""},
	{"fds", 0.10, 10, func(s soakSample) float64 { return s.fds }, ""},
	{"heap", 0.20, 4 << 20, func(s soakSample) float64 { return s.heap }, "B"},
	{"rss-used", 0.20, 16 << 20, func(s soakSample) float64 { return s.rssUsed() }, "B"},
}

// soakOptions are the flags of the soak subcommand.
type soakOptions struct {
	runtimes []string
	requests int
	interval time.Duration
	conns    int
	warmup   float64
	out      string
}

// Phases of a soak: samples of phases start, baseline and end are taken
// at rest (before the first request, after the last of the warm-up, after
// the last: no request in flight, no connection open but the sampler's);
// the others under load.
const (
	phaseStart    = "start"
	phaseWarmup   = "warmup"
	phaseBaseline = "baseline"
	phaseSoak     = "soak"
	phaseEnd      = "end"
)

// soakSample is one sample of a running proxy.
type soakSample struct {
	runtime string
	n       int // 0 before the first request
	phase   string
	elapsed time.Duration // since the first request
	done    int64         // requests answered, errors included
	errs    int64
	rate    float64 // requests answered per second since the previous sample
	// From the proxy's /metrics: process_resident_memory_bytes,
	// go_memstats_heap_alloc_bytes (right after a forced GC: the live
	// heap), go_memstats_heap_inuse_bytes, go_goroutines, process_open_fds,
	// and the Go heap's free pages not given back to the OS:
	// go_memstats_heap_idle_bytes - go_memstats_heap_released_bytes.
	rss, heap, heapInuse, heapFree, goroutines, fds float64
}

// rssUsed is RSS less the Go heap's free pages not given back to the OS.
func (s soakSample) rssUsed() float64 { return s.rss - s.heapFree }

// line is the sample in the Go benchmark format.
func (s soakSample) line() string {
	return fmt.Sprintf("BenchmarkProxySoak/plugins=%d/runtime=%s/sample=%03d/phase=%s \t%9d\t%8.1f elapsed-sec\t%6d errors\t%8.1f req/s\t%11.0f rss-B\t%11.0f rss-used-B\t%11.0f heap-B\t%11.0f heap-inuse-B\t%11.0f heap-free-B\t%5.0f goroutines\t%5.0f fds",
		soakChain, s.runtime, s.n, s.phase, s.done, s.elapsed.Seconds(), s.errs, s.rate, s.rss, s.rssUsed(), s.heap, s.heapInuse, s.heapFree, s.goroutines, s.fds)
}

func soak(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runtimes := fs.String("runtime", "wazero,wasmtime,wasmer", "comma-separated runtimes to soak, one after the other")
	requests := fs.Int("requests", 1_000_000, "requests per runtime")
	interval := fs.Duration("interval", 10*time.Second, "time between samples")
	conns := fs.Int("conns", 16, "concurrent keep-alive connections of the closed-loop load generator")
	warmup := fs.Float64("warmup", 0.2, "fraction of -requests after which the leak check's baseline is taken")
	out := fs.String("o", "", "results file (default results/<goos>-<goarch>-<cpu>-<date>-soak.txt)")
	short := fs.Bool("short", false, "smoke run: -requests 20000 -interval 1s unless set; written to a temporary directory unless -o is set")
	showVersion := fs.Bool("version", false, "print the build's module version and Go version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: bench soak [flags]\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		version.Print(stdout, "bench")
		return 0
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	if *short {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["requests"] {
			*requests = 20_000
		}
		if !set["interval"] {
			*interval = time.Second
		}
	}
	o := soakOptions{requests: *requests, interval: *interval, conns: *conns, warmup: *warmup, out: *out}
	if o.requests < 1 || o.conns < 1 || o.interval <= 0 || o.warmup < 0 || o.warmup >= 1 {
		fmt.Fprintln(stderr, "bench soak: -requests and -conns must be at least 1, -interval positive, -warmup in [0, 1)")
		return 2
	}
	for _, r := range strings.Split(*runtimes, ",") {
		if !slices.Contains([]string{"wazero", "wasmtime", "wasmer"}, r) {
			fmt.Fprintf(stderr, "bench soak: unknown runtime %q (have wazero, wasmtime, wasmer)\n", r)
			return 2
		}
		if !slices.Contains(o.runtimes, r) {
			o.runtimes = append(o.runtimes, r)
		}
	}
	src, err := locate(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "bench soak:", err)
		return 1
	}
	defer src.cleanup()
	if o.out == "" {
		name := strings.TrimSuffix(defaultName(time.Now(), nil), ".txt") + "-soak.txt"
		out, err := defaultOut(*short, name)
		if err != nil {
			fmt.Fprintln(stderr, "bench soak:", err)
			return 1
		}
		o.out = out
	}
	runs, err := measureSoak(stderr, src, o)
	if err != nil {
		fmt.Fprintln(stderr, "bench soak:", err)
		return 1
	}
	fmt.Fprintf(stderr, "bench soak: wrote %s\n", o.out)
	summary := soakSummary(runs, o)
	base := strings.TrimSuffix(o.out, ".txt")
	if err := os.WriteFile(base+".summary.md", []byte(summary), 0o644); err != nil {
		fmt.Fprintln(stderr, "bench soak:", err)
		return 1
	}
	fmt.Fprintf(stderr, "bench soak: wrote %s.summary.md\n", base)
	fmt.Fprint(stdout, summary)
	failed := false
	for _, r := range runs {
		for _, p := range r.problems() {
			failed = true
			fmt.Fprintf(stderr, "bench soak: %s: %s\n", r.runtime, p)
		}
	}
	if failed {
		return 1
	}
	return 0
}

// soakRun is the samples of one runtime.
type soakRun struct {
	runtime  string
	requests int
	samples  []soakSample
	firstErr string
}

// baseline is the sample the leak check starts from: the first after the
// warm-up (the sample of phase baseline), else the first.
func (r soakRun) baseline() soakSample {
	for _, s := range r.samples {
		if s.phase == phaseBaseline {
			return s
		}
	}
	return r.samples[0]
}

// problems says why the run fails: request errors, and resources that
// grew beyond soakLimits between the baseline and the last sample.
func (r soakRun) problems() []string {
	if len(r.samples) == 0 {
		return []string{"no samples"}
	}
	var ps []string
	last := r.samples[len(r.samples)-1]
	if last.errs > 0 {
		ps = append(ps, fmt.Sprintf("%d of %d requests failed (first: %s)", last.errs, last.done, r.firstErr))
	}
	if last.done != int64(r.requests) {
		ps = append(ps, fmt.Sprintf("%d requests answered, want %d", last.done, r.requests))
	}
	first := r.baseline()
	for _, l := range soakLimits {
		a, b := l.get(first), l.get(last)
		if allowed := max(l.rel*a, l.abs); b-a > allowed {
			ps = append(ps, fmt.Sprintf("%s grew from %s (sample %d, %d requests) to %s (sample %d): +%s, more than the +%s allowed (+%.0f%%, at least +%s)",
				l.name, fmtQty(a, l.unit), first.n, first.done, fmtQty(b, l.unit), last.n, fmtQty(b-a, l.unit), fmtQty(allowed, l.unit), l.rel*100, fmtQty(l.abs, l.unit)))
		}
	}
	return ps
}

func fmtQty(v float64, unit string) string {
	if unit == "B" {
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	}
	return fmt.Sprintf("%.0f", v)
}

// measureSoak builds the proxy binaries and the plugins, starts the
// backend, soaks each runtime in turn and writes the results file.
func measureSoak(stderr io.Writer, src *source, o soakOptions) ([]soakRun, error) {
	tmp, err := os.MkdirTemp("", "anywasm-soak-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bins, err := buildProxies(stderr, src, tmp, o.runtimes)
	if err != nil {
		return nil, err
	}
	if err := buildPlugins(stderr, src, tmp, []int{soakChain}); err != nil {
		return nil, err
	}
	backend, err := startBackend()
	if err != nil {
		return nil, err
	}
	defer backend.Close()

	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(o.out)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	writeSoakHeader(f, o)

	var runs []soakRun
	prog := newProgress(len(o.runtimes))
	for i, r := range o.runtimes {
		fmt.Fprintf(stderr, "bench soak: %s\n", prog.line(i, fmt.Sprintf("%s: %d requests through %s", r, o.requests, strings.Join(loadreq.Chains[soakChain], ", "))))
		run, err := soakOne(stderr, f, bins[r], tmp, backend, r, o)
		if err != nil {
			return runs, fmt.Errorf("%s: %w", r, err)
		}
		runs = append(runs, run)
	}
	return runs, f.Close()
}

func writeSoakHeader(w io.Writer, o soakOptions) {
	writeMachineHeader(w, o.conns)
	fmt.Fprintf(w, "soak-plugins: %s\n", strings.Join(loadreq.Chains[soakChain], ","))
	fmt.Fprintf(w, "soak-requests: %d\n", o.requests)
	fmt.Fprintf(w, "soak-interval: %s\n", o.interval)
	fmt.Fprintf(w, "soak-warmup: %g of the requests (the leak check starts at the sample of phase=baseline, right after them)\n", o.warmup)
	var lim []string
	for _, l := range soakLimits {
		lim = append(lim, fmt.Sprintf("%s +max(%.0f%%,%s)", l.name, l.rel*100, fmtQty(l.abs, l.unit)))
	}
	fmt.Fprintf(w, "soak-tolerance: %s\n", strings.Join(lim, ", "))
	fmt.Fprintf(w, "soak-metrics: from the proxy's /metrics: rss-B process_resident_memory_bytes, heap-B go_memstats_heap_alloc_bytes right after a GC forced through /debug/pprof/heap?gc=1 (the live heap), heap-inuse-B go_memstats_heap_inuse_bytes, heap-free-B go_memstats_heap_idle_bytes - go_memstats_heap_released_bytes (free Go heap pages not given back to the OS yet), rss-used-B rss-B - heap-free-B, goroutines go_goroutines, fds process_open_fds\n")
	fmt.Fprintf(w, "soak-sample: phase=start before the first request, phase=baseline after the warm-up's last answer, phase=end after the last answer, all at rest (no request in flight, the connections to the load generator and to the backend closed, sampled until goroutines and fds hold still); phase=warmup and phase=soak every soak-interval under load; iterations are the requests answered so far (errors included); req/s since the previous sample\n")
}

// soakOne soaks one runtime: starts the proxy, samples it, sends the
// requests while sampling every interval, samples once more after the
// last answer, and stops the proxy. Each sample is written to w as it is
// taken.
func soakOne(stderr, w io.Writer, bin, dir string, backend *loadServer, r string, o soakOptions) (soakRun, error) {
	run := soakRun{runtime: r, requests: o.requests}
	px, err := startProxy(bin, dir, backend.Addr().String(), r, soakChain, 1, true)
	if err != nil {
		return run, err
	}
	defer px.stop()
	fail := func(err error) (soakRun, error) {
		px.stop()
		return run, fmt.Errorf("%w\nproxy output:\n%s", err, px.output())
	}
	client, tr := loadClient(o.conns)
	defer tr.CloseIdleConnections()
	// The sampler has a connection of its own, kept alive: it is in every
	// sample's goroutine and fd counts alike.
	sampler, str := loadClient(1)
	defer str.CloseIdleConnections()
	if err := waitHealthy(sampler, px.admin+"/healthz", px); err != nil {
		return fail(err)
	}

	var prog loadProgress
	start := time.Now()
	take := func(phase string) error {
		var (
			s   soakSample
			err error
		)
		if phase == phaseWarmup || phase == phaseSoak {
			s, err = sampleProxy(sampler, px.admin)
		} else {
			s, err = sampleAtRest(sampler, px.admin, backend, tr)
		}
		if err != nil {
			return err
		}
		s.runtime, s.n, s.phase = r, len(run.samples), phase
		s.done, s.errs = prog.done.Load(), prog.errs.Load()
		if s.n > 0 {
			s.elapsed = time.Since(start)
			prev := run.samples[s.n-1]
			if dt := (s.elapsed - prev.elapsed).Seconds(); dt > 0 {
				s.rate = float64(s.done-prev.done) / dt
			}
		}
		run.samples = append(run.samples, s)
		fmt.Fprintf(stderr, "bench soak: %s: sample %d (%s) at %s: %d/%d requests, %d errors, rss %s (used %s), heap %s, %.0f goroutines, %.0f fds\n",
			r, s.n, phase, s.elapsed.Round(time.Second), s.done, o.requests, s.errs, fmtQty(s.rss, "B"), fmtQty(s.rssUsed(), "B"), fmtQty(s.heap, "B"), s.goroutines, s.fds)
		_, err = fmt.Fprintln(w, s.line())
		return err
	}
	if err := take(phaseStart); err != nil {
		return fail(err)
	}
	// The warm-up's requests, then the rest, each phase sampled every
	// interval under load and once at rest after its last answer.
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	warm := int(o.warmup * float64(o.requests))
	start = time.Now()
	for _, ph := range []struct {
		requests    int
		load, after string
	}{{warm, phaseWarmup, phaseBaseline}, {o.requests - warm, phaseSoak, phaseEnd}} {
		if ph.requests == 0 {
			continue
		}
		done := make(chan loadResult, 1)
		go func() { done <- loadGenerate(client, px.url, o.conns, 0, ph.requests, &prog) }()
		var res loadResult
		for finished := false; !finished; {
			select {
			case res = <-done:
				finished = true
			case <-tick.C:
				if err := take(ph.load); err != nil {
					px.stop() // the load generator's requests now fail fast
					<-done
					return fail(err)
				}
			}
		}
		if run.firstErr == "" {
			run.firstErr = res.firstErr
		}
		if err := take(ph.after); err != nil {
			return fail(err)
		}
	}
	if err := px.stop(); err != nil {
		return run, fmt.Errorf("proxy exit: %w\nproxy output:\n%s", err, px.output())
	}
	return run, nil
}

// sampleAtRest samples the proxy with no request in flight and no
// connection open but the sampler's: it closes the load generator's idle
// connections to the proxy and, through the backend, the proxy's
// connections to it (a transport keeps as many as it once needed at the
// same time, and some it dialed and never used, which varies from run to
// run: counted, they would look like a leak), and samples until two
// samples in a row have the same goroutines and fds, at most
// soakRestPolls times.
func sampleAtRest(c *http.Client, admin string, backend *loadServer, load *http.Transport) (soakSample, error) {
	load.CloseIdleConnections()
	backend.closeIdle()
	prev, err := sampleProxy(c, admin)
	if err != nil {
		return prev, err
	}
	for range soakRestPolls {
		time.Sleep(100 * time.Millisecond)
		s, err := sampleProxy(c, admin)
		if err != nil || s.goroutines == prev.goroutines && s.fds == prev.fds {
			return s, err
		}
		prev = s
	}
	return prev, nil
}

// soakRestPolls bounds sampleAtRest's wait for connections to close.
const soakRestPolls = 50

// sampleProxy forces a GC in the proxy (so that the heap it reports is the
// live heap) and reads its /metrics.
func sampleProxy(c *http.Client, admin string) (soakSample, error) {
	get := func(path string) (*http.Response, error) {
		resp, err := c.Get(admin + path)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
		}
		return resp, nil
	}
	resp, err := get("/debug/pprof/heap?gc=1")
	if err != nil {
		return soakSample{}, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	resp, err = get("/metrics")
	if err != nil {
		return soakSample{}, err
	}
	defer resp.Body.Close()
	s, err := parseProxyMetrics(resp.Body)
	if err != nil {
		return s, fmt.Errorf("the proxy's /metrics: %w", err)
	}
	return s, nil
}

// parseProxyMetrics reads the resources of a sample from the proxy's
// Prometheus text: families of Go's and the process's collectors, one
// metric each, without labels.
func parseProxyMetrics(r io.Reader) (soakSample, error) {
	var (
		s        soakSample
		released float64
	)
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return s, err
	}
	for _, m := range []struct {
		name string
		v    *float64
	}{
		{"process_resident_memory_bytes", &s.rss},
		{"go_memstats_heap_alloc_bytes", &s.heap},
		{"go_memstats_heap_inuse_bytes", &s.heapInuse},
		{"go_goroutines", &s.goroutines},
		{"process_open_fds", &s.fds},
		{"go_memstats_heap_idle_bytes", &s.heapFree},
		{"go_memstats_heap_released_bytes", &released},
	} {
		f := fams[m.name]
		if f == nil || f.GetType() != dto.MetricType_GAUGE || len(f.GetMetric()) != 1 || len(f.GetMetric()[0].GetLabel()) != 0 {
			return s, fmt.Errorf("%s: want one gauge without labels, have %v", m.name, f)
		}
		*m.v = f.GetMetric()[0].GetGauge().GetValue()
	}
	s.heapFree -= released
	return s, nil
}

// soakSummary is a markdown table of the first sample, the baseline (the
// sample after the warm-up) and the last of each runtime, and of the leak
// check.
func soakSummary(runs []soakRun, o soakOptions) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Soak through anywasm-proxy: %d requests per runtime through %s, %d connections, a sample every %s; %s, %d logical cores (%s).\n\n",
		o.requests, strings.Join(loadreq.Chains[soakChain], ", "), o.conns, o.interval, strings.TrimSpace(cpuid.CPU.BrandName), runtime.NumCPU(), runtime.GOOS+"/"+runtime.GOARCH)
	fmt.Fprintf(&b, "The leak check compares the proxy at rest (no request in flight, its connections to the load generator and the backend closed) after the warm-up (%g of the requests) with the proxy at rest after the last request: ", o.warmup)
	var lim []string
	for _, l := range soakLimits {
		lim = append(lim, fmt.Sprintf("%s may grow by max(%.0f%%, %s)", l.name, l.rel*100, fmtQty(l.abs, l.unit)))
	}
	fmt.Fprintf(&b, "%s. Heap is the live Go heap (go_memstats_heap_alloc_bytes right after a forced GC; on wazero it holds guest memory too); RSS used is RSS (guest and C memory included) less the Go heap's free pages not yet given back to the OS.\n\n", strings.Join(lim, ", "))
	fmt.Fprintln(&b, "| runtime | sample | elapsed | requests | errors | req/s | RSS | RSS used | heap | heap in use | goroutines | fds |")
	fmt.Fprintln(&b, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, r := range runs {
		if len(r.samples) == 0 {
			continue
		}
		base := r.baseline()
		rows := []struct {
			label string
			s     soakSample
		}{{"first", r.samples[0]}, {"after warm-up", base}, {"last", r.samples[len(r.samples)-1]}}
		for _, row := range rows {
			s := row.s
			fmt.Fprintf(&b, "| %s | %s (%d) | %.0f s | %d | %d | %.0f | %s | %s | %s | %s | %.0f | %.0f |\n", r.runtime, row.label, s.n,
				s.elapsed.Seconds(), s.done, s.errs, s.rate, fmtQty(s.rss, "B"), fmtQty(s.rssUsed(), "B"), fmtQty(s.heap, "B"), fmtQty(s.heapInuse, "B"), s.goroutines, s.fds)
		}
	}
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, "| runtime | samples | goroutines | fds | heap | RSS used | result |")
	fmt.Fprintln(&b, "|---|--:|--:|--:|--:|--:|---|")
	for _, r := range runs {
		if len(r.samples) == 0 {
			continue
		}
		base := r.baseline()
		last := r.samples[len(r.samples)-1]
		var cells []string
		for _, l := range soakLimits {
			a, z := l.get(base), l.get(last)
			pct := 0.0
			if a != 0 {
				pct = (z - a) / a * 100
			}
			cells = append(cells, fmt.Sprintf("%+.1f%% (%s)", pct, signed(z-a, l.unit)))
		}
		result := "ok"
		if ps := r.problems(); len(ps) > 0 {
			result = "**FAIL**: " + strings.Join(ps, "; ")
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s |\n", r.runtime, len(r.samples), strings.Join(cells, " | "), result)
	}
	return b.String()
}

func signed(v float64, unit string) string {
	s := fmtQty(v, unit)
	if v >= 0 {
		return "+" + s
	}
	return s
}
