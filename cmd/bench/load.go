package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/klauspost/cpuid/v2"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/anywasm/anywasm/internal/loadreq"
	"github.com/anywasm/anywasm/internal/version"
)

// The load subcommand measures requests per second and latency through
// cmd/anywasm-proxy with chains of 0, 1 and 3 plugins on each runtime:
//
//	go run ./cmd/bench load                          # -count 10 -duration 2s -conns 16, about 6 minutes
//	go run ./cmd/bench load -short                   # one 300ms run of each (CI)
//	go run ./cmd/bench load -runtime wazero -plugins 0,3 -count 5
//	go run ./cmd/bench load -runtime wasmtime -plugins 1 -pool 1,2   # pool_size 1 against 2, interleaved
//
// The proxy runs as a subprocess (wasmer through a binary built with
// -tags anywasm_wasmer, as wasmtime and wasmer never share one); the
// upstream backend and the closed-loop load generator run in this process,
// all on loopback. Each line of the results is one run:
//
//	BenchmarkProxyLoad/plugins=N/runtime=R  <ok requests>  <mean latency> ns/op  <req/s>  <p50> p50-ns  <p99> p99-ns  <n> errors  <cpu> proxy-cpu-ns/req  <gc> proxy-gc/1000req
//
// (with /pool=P after plugins=N when -pool is not 1). proxy-cpu-ns/req is
// the CPU time the proxy process spent (user and system, its
// process_cpu_seconds_total; absent where its process collector has no
// CPU figure) while the measurement ran, divided by the requests it
// answered; proxy-gc/1000req the garbage-collection cycles it ran
// meanwhile per 1000 requests. Both come from the proxy's /metrics. Both leave out the
// load generator and the backend, which share the machine: they say where
// requests/s went when a plugin costs more than its in-process benchmark.
// With -cpuprofile each line also has the attribution of the run's CPU
// profile (cpuShares), per 200 response answered while it ran:
// profile-cpu-ns/req (all the proxy's samples), plugin-cpu-ns/req (the
// plugins' part), external-cpu-ns/req (the part of that Go cannot walk)
// and gc-cpu-ns/req (the GC mark workers); the summary has them as a
// second table.

// backendBody is what the upstream answers: 64 bytes.
var backendBody = loadreq.Body()

const (
	loadWarmup    = 200
	healthTimeout = 60 * time.Second
)

// loadOptions are the flags of the load subcommand.
type loadOptions struct {
	runtimes []string
	plugins  []int
	count    int
	duration time.Duration
	conns    int
	pools    []int // pool_size of every plugin; interleaved like runtimes
	out      string
	// profDir, when set, receives a CPU profile of the proxy for every
	// measured run (-cpuprofile).
	profDir string
}

// named reports whether the results name the pool size (-pool is not 1).
func (o loadOptions) named() bool { return !slices.Equal(o.pools, []int{1}) }

// sample is one measurement.
type sample struct {
	runtime  string
	plugins  int
	pool     int           // pool_size of each plugin
	ok       int           // 200 responses
	errs     int           // non-200 answers and transport errors
	firstErr string        // the first error, for the report
	wall     time.Duration // duration of the measurement
	mean     time.Duration // mean latency of the 200s
	p50, p99 time.Duration
	cpu      time.Duration // of the proxy process during the measurement; -1 where unknown
	gcs      float64       // GC cycles of the proxy during the measurement; -1 where unknown
	shares   *cpuShares    // of the run's CPU profile (-cpuprofile); nil without one
}

func (s sample) rps() float64 { return float64(s.ok) / s.wall.Seconds() }

// cpuPerReq is the proxy's CPU per 200 response, -1 where unknown.
func (s sample) cpuPerReq() time.Duration {
	if s.cpu < 0 || s.ok == 0 {
		return -1
	}
	return s.cpu / time.Duration(s.ok)
}

// gcPerKReq is the proxy's GC cycles per 1000 200 responses, -1 where
// unknown.
func (s sample) gcPerKReq() float64 {
	if s.gcs < 0 || s.ok == 0 {
		return -1
	}
	return s.gcs * 1000 / float64(s.ok)
}

func load(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runtimes := fs.String("runtime", "wazero,wasmtime,wasmer", "comma-separated runtimes to measure")
	plugins := fs.String("plugins", "0,1,3", "comma-separated plugin chain lengths: 0 (no filter), 1 (headers), 3 (headers, local_response, metrics)")
	count := fs.Int("count", 10, "runs of each (runtime, plugins), interleaved across runtimes")
	duration := fs.Duration("duration", 2*time.Second, "length of each run")
	conns := fs.Int("conns", 16, "concurrent keep-alive connections of the closed-loop load generator")
	pools := fs.String("pool", "1", "comma-separated pool_size values given to every plugin, each measured as its own column (1 to 64)")
	out := fs.String("o", "", "results file (default results/<goos>-<goarch>-<cpu>-<date>-load.txt)")
	short := fs.Bool("short", false, "smoke run: -count 1 -duration 300ms unless set; written to a temporary directory unless -o is set")
	profDir := fs.String("cpuprofile", "", "directory that receives a CPU profile of the proxy (its /debug/pprof/profile) for every measured run, named <runtime>-plugins<n>-pool<p>-round<k>.pprof")
	showVersion := fs.Bool("version", false, "print the build's module version and Go version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: bench load [flags]\n\nflags:\n")
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
		if !set["count"] {
			*count = 1
		}
		if !set["duration"] {
			*duration = 300 * time.Millisecond
		}
	}
	o := loadOptions{count: *count, duration: *duration, conns: *conns, out: *out, profDir: *profDir}
	if o.profDir != "" && *duration < time.Second {
		fmt.Fprintln(stderr, "bench load: -cpuprofile needs a -duration of at least 1s (profiles are whole seconds)")
		return 2
	}
	if o.count < 1 || o.conns < 1 || o.duration <= 0 {
		fmt.Fprintln(stderr, "bench load: -count and -conns must be at least 1, -duration positive")
		return 2
	}
	for _, r := range strings.Split(*runtimes, ",") {
		if !slices.Contains([]string{"wazero", "wasmtime", "wasmer"}, r) {
			fmt.Fprintf(stderr, "bench load: unknown runtime %q (have wazero, wasmtime, wasmer)\n", r)
			return 2
		}
		if !slices.Contains(o.runtimes, r) {
			o.runtimes = append(o.runtimes, r)
		}
	}
	for _, p := range strings.Split(*pools, ",") {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 64 {
			fmt.Fprintf(stderr, "bench load: -pool %q: want a pool_size from 1 to 64\n", p)
			return 2
		}
		if !slices.Contains(o.pools, n) {
			o.pools = append(o.pools, n)
		}
	}
	for _, p := range strings.Split(*plugins, ",") {
		n, err := strconv.Atoi(p)
		if _, ok := loadreq.Chains[n]; err != nil || !ok {
			fmt.Fprintf(stderr, "bench load: -plugins %q: want 0, 1 or 3\n", p)
			return 2
		}
		if !slices.Contains(o.plugins, n) {
			o.plugins = append(o.plugins, n)
		}
	}
	if o.profDir != "" {
		if err := os.MkdirAll(o.profDir, 0o755); err != nil {
			fmt.Fprintln(stderr, "bench load: -cpuprofile:", err)
			return 1
		}
	}
	src, err := locate(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "bench load:", err)
		return 1
	}
	defer src.cleanup()
	if o.out == "" {
		name := strings.TrimSuffix(defaultName(time.Now(), nil), ".txt") + "-load.txt"
		out, err := defaultOut(*short, name)
		if err != nil {
			fmt.Fprintln(stderr, "bench load:", err)
			return 1
		}
		o.out = out
	}
	samples, err := measureLoad(stderr, src, o)
	if err != nil {
		fmt.Fprintln(stderr, "bench load:", err)
		return 1
	}
	fmt.Fprintf(stderr, "bench load: wrote %s\n", o.out)
	base := strings.TrimSuffix(o.out, ".txt")
	var bs bytes.Buffer
	col := "/runtime"
	if o.named() {
		col = "/runtime,/pool"
	}
	if err := benchstatWith(&bs, stderr, src, []string{"-col", col}, o.out); err != nil {
		fmt.Fprintln(stderr, "bench load: benchstat:", err)
		return 1
	}
	if err := os.WriteFile(base+".benchstat", bs.Bytes(), 0o644); err != nil {
		fmt.Fprintln(stderr, "bench load:", err)
		return 1
	}
	summary := loadSummary(samples, o)
	if err := os.WriteFile(base+".summary.md", []byte(summary), 0o644); err != nil {
		fmt.Fprintln(stderr, "bench load:", err)
		return 1
	}
	fmt.Fprintf(stderr, "bench load: wrote %s.benchstat and %s.summary.md\n", base, base)
	fmt.Fprint(stdout, summary)
	failed := 0
	for _, s := range samples {
		if s.errs > 0 {
			failed++
			fmt.Fprintf(stderr, "bench load: plugins=%d runtime=%s: %d errors (first: %s)\n", s.plugins, s.runtime, s.errs, s.firstErr)
		}
	}
	if failed > 0 {
		fmt.Fprintf(stderr, "bench load: %d of %d runs had errors (their lines say how many)\n", failed, len(samples))
		return 1
	}
	return 0
}

// measureLoad builds the proxy binaries and the plugins, starts the
// backend, runs every (runtime, plugins) count times, interleaved, and
// writes the results file.
func measureLoad(stderr io.Writer, src *source, o loadOptions) ([]sample, error) {
	tmp, err := os.MkdirTemp("", "anywasm-load-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	bins, err := buildProxies(stderr, src, tmp, o.runtimes)
	if err != nil {
		return nil, err
	}
	if err := buildPlugins(stderr, src, tmp, o.plugins); err != nil {
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
	writeLoadHeader(f, o)

	var samples []sample
	prog := newProgress(o.count * len(o.runtimes) * len(o.plugins) * len(o.pools))
	for round := range o.count {
		for i := range o.runtimes {
			r := o.runtimes[(i+round)%len(o.runtimes)] // rotate: no runtime always goes first
			for j := range o.pools {
				pool := o.pools[(j+round)%len(o.pools)] // nor any pool size
				for _, n := range o.plugins {
					what := fmt.Sprintf("round %d/%d: %s, %d plugins", round+1, o.count, r, n)
					if o.named() {
						what += fmt.Sprintf(", pool_size %d", pool)
					}
					fmt.Fprintf(stderr, "bench load: %s\n", prog.line(len(samples), what))
					s, err := loadRun(bins[r], tmp, backend.Addr().String(), r, n, pool, round, o)
					if err != nil {
						return samples, fmt.Errorf("%s: %w", what, err)
					}
					samples = append(samples, s)
					if _, err := fmt.Fprintln(f, s.line(o.named())); err != nil {
						return samples, err
					}
				}
			}
		}
	}
	return samples, f.Close()
}

// buildProxies builds cmd/anywasm-proxy into dir for the runtimes: one
// binary for wazero and wasmtime, one with -tags anywasm_wasmer for
// wasmer (wasmtime and wasmer never share one). It returns the binary of
// each runtime.
func buildProxies(stderr io.Writer, src *source, dir string, runtimes []string) (map[string]string, error) {
	bins := map[string]string{}
	for _, r := range runtimes {
		bin, tags := filepath.Join(dir, "proxy"), ""
		if r == "wasmer" {
			bin, tags = filepath.Join(dir, "proxy-wasmer"), "anywasm_wasmer"
		}
		bins[r] = bin
		if _, err := os.Stat(bin); err == nil {
			continue
		}
		args := []string{"build", "-o", bin}
		if tags != "" {
			args = append(args, "-tags", tags)
		}
		args = append(args, src.pkg("cmd/anywasm-proxy"))
		if err := goCmd(stderr, src.root, src.env, args...); err != nil {
			return nil, fmt.Errorf("building the proxy for %s: %w", r, err)
		}
	}
	return bins, nil
}

// buildPlugins builds the Go-SDK plugins of the chains into dir as
// <name>.wasm.
func buildPlugins(stderr io.Writer, src *source, dir string, chains []int) error {
	built := map[string]bool{}
	for _, n := range chains {
		for _, p := range loadreq.Chains[n] {
			if built[p] {
				continue
			}
			built[p] = true
			err := goCmd(stderr, src.pluginsDir,
				[]string{"GOOS=wasip1", "GOARCH=wasm", "GOWORK=off"},
				"build", "-trimpath", "-buildmode=c-shared", "-o", filepath.Join(dir, p+".wasm"), "./"+p)
			if err != nil {
				return fmt.Errorf("building plugin %s: %w", p, err)
			}
		}
	}
	return nil
}

// goCmd runs the go command in dir with extra environment variables.
func goCmd(stderr io.Writer, dir string, env []string, args ...string) error {
	fmt.Fprintf(stderr, "bench: %sgo %s\n", strings.Join(append(env, ""), " "), strings.Join(args, " "))
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	return cmd.Run()
}

func writeLoadHeader(w io.Writer, o loadOptions) {
	writeMachineHeader(w, o.conns)
	fmt.Fprintf(w, "load-duration: %s\n", o.duration)
	fmt.Fprintf(w, "ns-op: mean latency of the 200 responses (req/s counts 200s per wall second)\n")
	fmt.Fprintf(w, "proxy-cpu: user+system CPU of the proxy process while measuring (its /metrics, process_cpu_seconds_total), per 200 response\n")
	fmt.Fprintf(w, "proxy-gc: GC cycles of the proxy process while measuring (its /metrics), per 1000 200 responses\n")
	if o.profDir != "" {
		fmt.Fprintf(w, "profile-cpu: from the run's CPU profile (-cpuprofile), the proxy's profiled CPU per 200 response; plugin-cpu: the abi/nethttp middleware's part less the upstream round trip beneath it, plus runtime._ExternalCode; external-cpu: runtime._ExternalCode alone; gc-cpu: the GC mark workers'\n")
	}
}

// writeMachineHeader writes the configuration lines of the machine and the
// load generator, which load and soak share.
func writeMachineHeader(w io.Writer, conns int) {
	cpu := strings.TrimSpace(cpuid.CPU.BrandName)
	if cpu == "" {
		cpu = "unknown"
	}
	fmt.Fprintf(w, "goos: %s\n", runtime.GOOS)
	fmt.Fprintf(w, "goarch: %s\n", runtime.GOARCH)
	fmt.Fprintf(w, "cpu: %s\n", cpu)
	fmt.Fprintf(w, "cores-physical: %d\n", cpuid.CPU.PhysicalCores)
	fmt.Fprintf(w, "cores-logical: %d\n", runtime.NumCPU())
	if cpuid.CPU.VM() {
		fmt.Fprintf(w, "hypervisor: true\n")
	}
	fmt.Fprintf(w, "go-version: %s\n", runtime.Version())
	fmt.Fprintf(w, "load-generator: go closed-loop on loopback, same machine\n")
	fmt.Fprintf(w, "load-backend: go net/http on 127.0.0.1 in the load generator's process, %d-byte body\n", len(backendBody))
	fmt.Fprintf(w, "load-conns: %d\n", conns)
	fmt.Fprintf(w, "load-request: GET %s with %d headers, keep-alive\n", loadreq.Path, len(loadreq.Headers))
}

// line is the sample in the Go benchmark format; withPool names its pool
// size.
func (s sample) line(withPool bool) string {
	name := fmt.Sprintf("plugins=%d", s.plugins)
	if withPool {
		name += fmt.Sprintf("/pool=%d", s.pool)
	}
	l := fmt.Sprintf("BenchmarkProxyLoad/%s/runtime=%s \t%9d\t%12d ns/op\t%10.1f req/s\t%10d p50-ns\t%10d p99-ns\t%6d errors",
		name, s.runtime, s.ok, s.mean.Nanoseconds(), s.rps(), s.p50.Nanoseconds(), s.p99.Nanoseconds(), s.errs)
	if c := s.cpuPerReq(); c >= 0 {
		l += fmt.Sprintf("\t%10d proxy-cpu-ns/req", c.Nanoseconds())
	}
	if g := s.gcPerKReq(); g >= 0 {
		l += fmt.Sprintf("\t%8.2f proxy-gc/1000req", g)
	}
	if sh := s.shares; sh != nil {
		for _, m := range []struct {
			d    time.Duration
			unit string
		}{{sh.total, "profile-cpu-ns/req"}, {sh.plugin, "plugin-cpu-ns/req"}, {sh.external, "external-cpu-ns/req"}, {sh.gc, "gc-cpu-ns/req"}} {
			if v := sh.perRequest(m.d, s.rps()); v >= 0 {
				l += fmt.Sprintf("\t%10d %s", v.Nanoseconds(), m.unit)
			}
		}
	}
	return l
}

// startBackend serves the upstream on 127.0.0.1: 200 with backendBody,
// after reading the request body.
func startBackend() (*loadServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &loadServer{ln: ln, conns: map[net.Conn]http.ConnState{}}
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", strconv.Itoa(len(backendBody)))
		w.Write(backendBody)
	}), ConnState: s.track}
	go s.srv.Serve(ln)
	return s, nil
}

type loadServer struct {
	srv   *http.Server
	ln    net.Listener
	mu    sync.Mutex
	conns map[net.Conn]http.ConnState // open connections
}

func (s *loadServer) Addr() net.Addr { return s.ln.Addr() }
func (s *loadServer) Close() error   { return s.srv.Close() }

func (s *loadServer) track(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st {
	case http.StateClosed, http.StateHijacked:
		delete(s.conns, c)
	default:
		s.conns[c] = st
	}
}

// closeIdle closes every connection without a request in progress: idle
// ones, and new ones that have not sent a request yet (a transport dials
// connections it may never use; http.Server closes those only after 5s).
// It returns how many it closed.
func (s *loadServer) closeIdle() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c, st := range s.conns {
		if st == http.StateIdle || st == http.StateNew {
			c.Close()
			n++
		}
	}
	return n
}

// freePort returns a loopback port nothing listens on now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// proxyConfig is the proxy's configuration (JSON, which it reads as YAML)
// for a chain of n plugins in dir, each with pool VMs, in front of the
// backend; pprof turns on the admin endpoint's /debug/pprof/.
func proxyConfig(dir, backend string, n, pool, port, adminPort int, pprof bool) ([]byte, error) {
	type plugin struct {
		Name          string `json:"name"`
		VMConfig      any    `json:"vm_config"`
		FailurePolicy string `json:"failure_policy"`
		PoolSize      int    `json:"pool_size"`
	}
	filters := []plugin{}
	for _, p := range loadreq.Chains[n] {
		filters = append(filters, plugin{
			Name:          p,
			VMConfig:      map[string]any{"vm_id": "bench-" + p, "code": map[string]any{"local": map[string]string{"filename": filepath.Join(dir, p+".wasm")}}},
			FailurePolicy: "FAIL_CLOSED",
			PoolSize:      pool,
		})
	}
	return json.MarshalIndent(map[string]any{
		"admin": map[string]any{"address": fmt.Sprintf("127.0.0.1:%d", adminPort), "pprof": pprof},
		"listeners": []any{map[string]any{
			"name":    "bench",
			"address": fmt.Sprintf("127.0.0.1:%d", port),
			"http":    map[string]any{"cluster": "backend", "filters": filters},
		}},
		"clusters":        []any{map[string]string{"name": "backend", "type": "http", "address": "http://" + backend}},
		"reload_interval": "0s",
	}, "", "  ")
}

// liveProxies are the proxy processes running now; tests check that none
// is left behind.
var liveProxies sync.Map // *os.Process -> struct{}

// proxyProc is a running cmd/anywasm-proxy.
type proxyProc struct {
	cmd     *exec.Cmd
	logs    *tailBuffer
	exited  chan struct{} // closed when the process has exited; then err is its Wait error
	err     error
	stopped bool
	url     string // of the listener: http://127.0.0.1:<port>/bench
	admin   string // http://127.0.0.1:<admin port>
}

// startProxy starts the proxy binary bin for runtime r with n plugins of
// dir, pool VMs each, in front of the backend. It does not wait until it
// serves.
func startProxy(bin, dir, backend, r string, n, pool int, pprof bool) (*proxyProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	adminPort, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg, err := proxyConfig(dir, backend, n, pool, port, adminPort, pprof)
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, fmt.Sprintf("proxy-%d.yaml", n))
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		return nil, err
	}
	p := &proxyProc{logs: &tailBuffer{}, exited: make(chan struct{}),
		url: fmt.Sprintf("http://127.0.0.1:%d%s", port, loadreq.Path), admin: fmt.Sprintf("http://127.0.0.1:%d", adminPort)}
	p.cmd = exec.Command(bin, "-config", cfgPath, "-runtime", r, "-log-level", "warn")
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	liveProxies.Store(p.cmd.Process, struct{}{})
	go func() {
		p.err = p.cmd.Wait()
		liveProxies.Delete(p.cmd.Process)
		close(p.exited)
	}()
	return p, nil
}

// stop sends SIGTERM and waits for the proxy to exit (killing it after
// 15s); it returns the exit error. Later calls return nil.
func (p *proxyProc) stop() error {
	if p.stopped {
		return nil
	}
	p.stopped = true
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.err
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
		return errors.New("the proxy did not stop within 15s of SIGTERM: killed")
	}
}

// output is the end of what the proxy logged.
func (p *proxyProc) output() string { return tail(p.logs.String(), 20) }

// loadClient is an HTTP client for conns closed loops.
func loadClient(conns int) (*http.Client, *http.Transport) {
	tr := &http.Transport{
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns * 2,
		DisableCompression:  true,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, tr
}

// loadRun starts the proxy for runtime r with n plugins of pool VMs each,
// waits until it serves, warms it up, measures and stops it. With
// o.profDir it profiles the proxy's CPU while measuring (the whole seconds
// of o.duration, from its start).
func loadRun(bin, dir, backend, r string, n, pool, round int, o loadOptions) (sample, error) {
	s := sample{runtime: r, plugins: n, pool: pool, cpu: -1, gcs: -1}
	px, err := startProxy(bin, dir, backend, r, n, pool, o.profDir != "")
	if err != nil {
		return s, err
	}
	defer px.stop()
	fail := func(err error) (sample, error) {
		px.stop()
		return s, fmt.Errorf("%w\nproxy output:\n%s", err, px.output())
	}
	client, tr := loadClient(o.conns)
	defer tr.CloseIdleConnections()

	if err := waitHealthy(client, px.admin+"/healthz", px); err != nil {
		return fail(err)
	}
	warm := loadGenerate(client, px.url, o.conns, 0, loadWarmup, nil)
	if warm.errs > 0 {
		return fail(fmt.Errorf("warm-up: %d of %d requests failed (first: %s)", warm.errs, loadWarmup, warm.firstErr))
	}
	cpu0, gc0 := proxyCounters(client, px.admin)
	var prof chan error
	var profFile string
	if o.profDir != "" {
		prof = make(chan error, 1)
		profFile = filepath.Join(o.profDir, fmt.Sprintf("%s-plugins%d-pool%d-round%d.pprof", r, n, pool, round+1))
		go func() { prof <- fetchProfile(px.admin, int(o.duration/time.Second), profFile) }()
	}
	res := loadGenerate(client, px.url, o.conns, o.duration, 0, nil)
	cpu1, gc1 := proxyCounters(client, px.admin)
	if prof != nil {
		if err := <-prof; err != nil {
			return fail(fmt.Errorf("-cpuprofile: %w", err))
		}
		sh, err := readShares(profFile)
		if err != nil {
			return fail(fmt.Errorf("-cpuprofile: %s: %w", profFile, err))
		}
		s.shares = &sh
	}
	if cpu0 >= 0 && cpu1 >= 0 {
		s.cpu = cpu1 - cpu0
	}
	if gc0 >= 0 && gc1 >= 0 {
		s.gcs = gc1 - gc0
	}
	if err := px.stop(); err != nil {
		return s, fmt.Errorf("proxy exit: %w\nproxy output:\n%s", err, px.output())
	}
	s.ok, s.errs, s.firstErr, s.wall = len(res.lat), res.errs, res.firstErr, res.wall
	if len(res.lat) == 0 {
		return s, fmt.Errorf("no request succeeded (%d errors, first: %s)", res.errs, res.firstErr)
	}
	var sum time.Duration
	for _, d := range res.lat {
		sum += d
	}
	s.mean = sum / time.Duration(len(res.lat))
	s.p50, s.p99 = percentile(res.lat, 50), percentile(res.lat, 99)
	return s, nil
}

// fetchProfile writes to file the proxy's CPU profile of the next seconds
// (its admin /debug/pprof/profile).
func fetchProfile(admin string, seconds int, file string) error {
	c := &http.Client{Timeout: time.Duration(seconds)*time.Second + 30*time.Second}
	resp, err := c.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", admin, seconds))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s/debug/pprof/profile: %s", admin, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o644)
}

// proxyCounters reads the proxy's admin /metrics: the CPU time it has
// used (process_cpu_seconds_total, user and system, from its process
// collector) and the GC cycles it has run (the count of
// go_gc_duration_seconds). A figure it does not report is -1.
func proxyCounters(client *http.Client, admin string) (cpu time.Duration, gcs float64) {
	resp, err := client.Get(admin + "/metrics")
	if err != nil {
		return -1, -1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return -1, -1
	}
	return parseCounters(resp.Body)
}

// parseCounters reads proxyCounters' figures from a Prometheus text
// exposition.
func parseCounters(r io.Reader) (cpu time.Duration, gcs float64) {
	cpu, gcs = -1, -1
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return cpu, gcs
	}
	if f := fams["process_cpu_seconds_total"]; f != nil && f.GetType() == dto.MetricType_COUNTER && len(f.GetMetric()) == 1 {
		cpu = time.Duration(f.GetMetric()[0].GetCounter().GetValue() * float64(time.Second))
	}
	if f := fams["go_gc_duration_seconds"]; f != nil && f.GetType() == dto.MetricType_SUMMARY && len(f.GetMetric()) == 1 {
		gcs = float64(f.GetMetric()[0].GetSummary().GetSampleCount())
	}
	return cpu, gcs
}

// waitHealthy polls url until it answers 200 or the proxy exits.
func waitHealthy(client *http.Client, url string, px *proxyProc) error {
	deadline := time.Now().Add(healthTimeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not healthy after %s: %w", url, healthTimeout, err)
		}
		select {
		case <-px.exited:
			return fmt.Errorf("the proxy exited before serving: %v", px.err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

type loadResult struct {
	lat      []time.Duration // of the 200s, sorted
	errs     int
	firstErr string
	wall     time.Duration
}

// loadProgress counts, while loadGenerate runs, the requests answered and
// how many of them failed.
type loadProgress struct {
	done, errs atomic.Int64
}

// loadGenerate runs conns closed loops of GET url, each sending its next
// request when the previous answer is read, for d, or until total
// requests are done when d is 0. prog, when not nil, is kept up to date.
func loadGenerate(client *http.Client, url string, conns int, d time.Duration, total int, prog *loadProgress) loadResult {
	var (
		mu     sync.Mutex
		res    loadResult
		wg     sync.WaitGroup
		issued int
	)
	ctx := context.Background()
	start := time.Now()
	deadline := start.Add(d)
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1<<14)
			var errs int
			var firstErr string
			noteErr := func(s string) {
				errs++
				if firstErr == "" {
					firstErr = s
				}
				if prog != nil {
					prog.errs.Add(1)
					prog.done.Add(1)
				}
			}
			for {
				if d > 0 {
					if !time.Now().Before(deadline) {
						break
					}
				} else {
					mu.Lock()
					more := issued < total
					issued++
					mu.Unlock()
					if !more {
						break
					}
				}
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				if err != nil {
					noteErr(err.Error())
					continue
				}
				for _, h := range loadreq.Headers {
					req.Header.Set(h[0], h[1])
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					noteErr(err.Error())
					continue
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				el := time.Since(t0)
				switch {
				case err != nil:
					noteErr("reading the body: " + err.Error())
				case resp.StatusCode != http.StatusOK:
					noteErr(resp.Status)
				case n != int64(len(backendBody)):
					noteErr(fmt.Sprintf("body of %d bytes, want %d", n, len(backendBody)))
				default:
					lat = append(lat, el)
					if prog != nil {
						prog.done.Add(1)
					}
				}
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.errs += errs
			if res.firstErr == "" {
				res.firstErr = firstErr
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.wall = time.Since(start)
	slices.Sort(res.lat)
	return res
}

// percentile is the nearest-rank p-th percentile of sorted durations.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100 // ceil(n*p/100)
	return sorted[max(i-1, 0)]
}

// loadSummary is a markdown table of the medians over the runs of each
// (runtime, pool size, plugins): requests/s with its share of the same
// runtime's (and pool size's) 0-plugin rate, latency, the proxy's CPU per
// request and GC cycles per 1000 requests.
func loadSummary(samples []sample, o loadOptions) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Medians of %d run(s) of %s each, %d connections, %s, %d logical cores (%s). The share is of the 0-plugin rate; proxy CPU and GC are the proxy process's own, per request and per 1000 requests.\n\n",
		o.count, o.duration, o.conns, strings.TrimSpace(cpuid.CPU.BrandName), runtime.NumCPU(), runtime.GOOS+"/"+runtime.GOARCH)
	tableHeader(&b, o, "req/s", "share", "p50", "p99", "proxy CPU/req", "GC/1000 req", "errors")
	for _, r := range o.runtimes {
		for _, pl := range o.pools {
			// The 0-plugin rate, whatever the order of -plugins.
			var zero []float64
			for _, s := range samples {
				if s.runtime == r && s.plugins == 0 && s.pool == pl {
					zero = append(zero, s.rps())
				}
			}
			base := -1.0
			if len(zero) > 0 {
				base = median(zero)
			}
			for _, n := range o.plugins {
				var rps, p50, p99, cpu, gc []float64
				errs := 0
				for _, s := range samples {
					if s.runtime == r && s.plugins == n && s.pool == pl {
						rps = append(rps, s.rps())
						p50 = append(p50, float64(s.p50))
						p99 = append(p99, float64(s.p99))
						if c := s.cpuPerReq(); c >= 0 {
							cpu = append(cpu, float64(c))
						}
						if g := s.gcPerKReq(); g >= 0 {
							gc = append(gc, g)
						}
						errs += s.errs
					}
				}
				if len(rps) == 0 {
					continue
				}
				m := median(rps)
				share := "-"
				if n != 0 && base > 0 {
					share = fmt.Sprintf("%.0f%%", 100*m/base)
				}
				cpuS, gcS := "-", "-"
				if len(cpu) > 0 {
					cpuS = fmtLatency(median(cpu))
				}
				if len(gc) > 0 {
					gcS = fmt.Sprintf("%.1f", median(gc))
				}
				fmt.Fprintf(&b, "| %s |%s %d | %.0f | %s | %s | %s | %s | %s | %d |\n", r, o.poolCell(pl), n, m, share,
					fmtLatency(median(p50)), fmtLatency(median(p99)), cpuS, gcS, errs)
			}
		}
	}
	if o.profDir != "" {
		b.WriteString(profileSummary(samples, o))
	}
	return b.String()
}

// profileSummary is the table of the runs' CPU profiles (-cpuprofile):
// medians, per request, of the proxy's profiled CPU, the plugins' part of
// it (cpuShares), the part of that outside Go, and the GC workers' share
// of the profiled CPU.
func profileSummary(samples []sample, o loadOptions) string {
	var b strings.Builder
	b.WriteString("\nFrom the proxy's CPU profiles (-cpuprofile, medians per request): the plugins' part is the `abi/nethttp` middleware's samples less the upstream round trip beneath it (`internal/proxy` router), plus code Go cannot walk (`runtime._ExternalCode`: wazero's compiled guest code, C code without a Go caller); GC is the share of the profiled CPU in the collector's mark workers.\n\n")
	tableHeader(&b, o, "profiled CPU/req", "plugins' part/req", "of it outside Go", "GC workers")
	for _, r := range o.runtimes {
		for _, pl := range o.pools {
			for _, n := range o.plugins {
				var total, plugin, ext, gc []float64
				for _, s := range samples {
					sh := s.shares
					if s.runtime != r || s.plugins != n || s.pool != pl || sh == nil {
						continue
					}
					t := sh.perRequest(sh.total, s.rps())
					if t < 0 {
						continue
					}
					total = append(total, float64(t))
					plugin = append(plugin, float64(sh.perRequest(sh.plugin, s.rps())))
					ext = append(ext, float64(sh.perRequest(sh.external, s.rps())))
					if sh.total > 0 {
						gc = append(gc, 100*float64(sh.gc)/float64(sh.total))
					}
				}
				if len(total) == 0 {
					continue
				}
				gcS := "-"
				if len(gc) > 0 {
					gcS = fmt.Sprintf("%.0f%%", median(gc))
				}
				fmt.Fprintf(&b, "| %s |%s %d | %s | %s | %s | %s |\n", r, o.poolCell(pl), n, fmtLatency(median(total)),
					fmtLatency(median(plugin)), fmtLatency(median(ext)), gcS)
			}
		}
	}
	return b.String()
}

// tableHeader writes the header of a summary table: runtime, pool_size
// when -pool names it, plugins, then cols, all but runtime right-aligned.
func tableHeader(b *strings.Builder, o loadOptions, cols ...string) {
	pool, poolSep := "", ""
	if o.named() {
		pool, poolSep = " pool_size |", "--:|"
	}
	fmt.Fprintf(b, "| runtime |%s plugins | %s |\n", pool, strings.Join(cols, " | "))
	fmt.Fprintf(b, "|---|%s--:|%s\n", poolSep, strings.Repeat("--:|", len(cols)))
}

// poolCell is a row's pool_size cell, when -pool names it (tableHeader).
func (o loadOptions) poolCell(pool int) string {
	if !o.named() {
		return ""
	}
	return fmt.Sprintf(" %d |", pool)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtLatency(ns float64) string {
	switch {
	case ns >= 1e6:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	default:
		return fmt.Sprintf("%.0f µs", ns/1e3)
	}
}

// tailBuffer keeps the last 64 KiB written to it; safe for concurrent use.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - 64<<10; over > 0 {
		t.buf = t.buf[over:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
