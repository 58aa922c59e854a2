package abi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/internal/plugins"
	"github.com/anywasm/anywasm/internal/testrt"
)

// fixture is a host and one loaded Go-SDK plugin on one runtime.
type fixture struct {
	t    *testing.T
	ctx  context.Context
	host *abi.Host
	p    *abi.Plugin
	logs *logSink
}

func load(t *testing.T, rt *engine.Runtime, name string, cfg abi.PluginConfig, opts abi.Options) *fixture {
	t.Helper()
	logs := &logSink{}
	if opts.Logger == nil {
		opts.Logger = slogLogger(logs)
	}
	h := abi.NewHost(rt, opts)
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	if cfg.Name == "" {
		cfg.Name = name
	}
	if cfg.VMID == "" {
		cfg.VMID = "vm-" + name
	}
	p, err := h.Load(context.Background(), plugins.Build(t, name), cfg)
	if err != nil {
		t.Fatalf("load %s: %v\nlogs:\n%s", name, err, logs)
	}
	return &fixture{t: t, ctx: context.Background(), host: h, p: p, logs: logs}
}

func (f *fixture) stream() *abi.HTTPStream {
	f.t.Helper()
	s, err := f.p.NewHTTPStream(f.ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

func (f *fixture) requestHeaders(s *abi.HTTPStream, h abi.Headers, eos bool) abi.Action {
	f.t.Helper()
	a, err := s.RequestHeaders(f.ctx, h, eos)
	if err != nil {
		f.t.Fatal(err)
	}
	if s.Err() != nil {
		f.t.Fatalf("plugin failed: %v\nlogs:\n%s", s.Err(), f.logs)
	}
	return a
}

func (f *fixture) close(s *abi.HTTPStream) {
	f.t.Helper()
	if err := s.Close(f.ctx); err != nil {
		f.t.Fatalf("close: %v\nlogs:\n%s", err, f.logs)
	}
}

func get(h abi.Headers, k string) string {
	v, ok := h.Get(k)
	if !ok {
		return "<none>"
	}
	return v
}

func reqHeaders(n int) abi.Headers {
	h := abi.Headers{{":method", "GET"}, {":path", "/hello"}, {":authority", "example.com"}}
	for i := len(h); i < n; i++ {
		h = append(h, abi.Header{Key: fmt.Sprintf("x-h%d", i), Value: "v"})
	}
	return h
}

func TestGoSDKHeaders(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		f := load(t, rt, "headers", abi.PluginConfig{}, abi.Options{})
		if f.p.ABIVersion() != abi.Version020 {
			t.Errorf("ABI %s", f.p.ABIVersion())
		}
		for i := 0; i < 3; i++ {
			s := f.stream()
			if a := f.requestHeaders(s, reqHeaders(10), true); a != abi.ActionContinue {
				t.Errorf("action %s", a)
			}
			if got := get(s.RequestHeaderMap(), "x-anywasm-seen"); got != "10" {
				t.Errorf("x-anywasm-seen = %s", got)
			}
			if _, err := s.ResponseHeaders(f.ctx, abi.Headers{{":status", "200"}}, true); err != nil {
				t.Fatal(err)
			}
			if got := get(s.ResponseHeaderMap(), "x-anywasm-plugin"); got != "headers" {
				t.Errorf("x-anywasm-plugin = %s", got)
			}
			f.close(s)
		}
		if !f.logs.has("INFO headers: GET /hello") {
			t.Errorf("log missing:\n%s", f.logs)
		}
	})
}

func TestGoSDKBody(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		f := load(t, rt, "body", abi.PluginConfig{}, abi.Options{})
		s := f.stream()
		defer f.close(s)
		f.requestHeaders(s, abi.Headers{{":path", "/"}, {"content-length", "11"}}, false)
		if _, ok := s.RequestHeaderMap().Get("content-length"); ok {
			t.Error("content-length not removed")
		}
		// Chunks are buffered while the plugin pauses; the callback sees the
		// cumulative size.
		out, a, err := s.RequestBody(f.ctx, []byte("hello "), false)
		if err != nil || a != abi.ActionPause || out != nil {
			t.Fatalf("first chunk: %q %s %v", out, a, err)
		}
		out, a, err = s.RequestBody(f.ctx, []byte("world"), true)
		if err != nil || a != abi.ActionContinue || string(out) != "HELLO WORLD" {
			t.Fatalf("last chunk: %q %s %v (%v)", out, a, err, s.Err())
		}
		if _, err := s.ResponseHeaders(f.ctx, abi.Headers{{":status", "200"}}, false); err != nil {
			t.Fatal(err)
		}
		out, _, _ = s.ResponseBody(f.ctx, []byte("ab"), false)
		out2, _, _ := s.ResponseBody(f.ctx, []byte("c"), true)
		if string(out)+string(out2) != "abc\n-- anywasm" {
			t.Errorf("response body = %q + %q", out, out2)
		}
	})
}

func TestGoSDKLocalResponse(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		f := load(t, rt, "local_response", abi.PluginConfig{}, abi.Options{})
		s := f.stream()
		if a := f.requestHeaders(s, abi.Headers{{":path", "/"}, {"x-deny", ""}}, true); a != abi.ActionPause {
			t.Errorf("action %s", a)
		}
		lr := s.LocalResponse()
		if lr == nil || lr.Status != 403 || string(lr.Body) != "denied\n" || get(lr.Headers, "x-denied-by") != "anywasm" || lr.GRPCStatus != -1 {
			t.Errorf("local response = %+v", lr)
		}
		f.close(s)
		s = f.stream()
		if a := f.requestHeaders(s, abi.Headers{{":path", "/"}}, true); a != abi.ActionContinue || s.LocalResponse() != nil {
			t.Errorf("without x-deny: %s %+v", a, s.LocalResponse())
		}
		f.close(s)
	})
}

func TestGoSDKMetrics(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		f := load(t, rt, "metrics", abi.PluginConfig{}, abi.Options{})
		for _, path := range []string{"/a", "/bbbb", "/cc"} {
			s := f.stream()
			f.requestHeaders(s, abi.Headers{{":path", path}, {"x", "1"}, {"y", "2"}}, true)
			f.close(s)
		}
		m := f.host.Metrics()
		if c, ok := m.Get("anywasm_requests_total"); !ok || c.Type != abi.MetricCounter || c.Value != 3 {
			t.Errorf("counter = %+v", c)
		}
		if g, ok := m.Get("anywasm_last_path_len"); !ok || g.Type != abi.MetricGauge || g.Value != 3 {
			t.Errorf("gauge = %+v", g)
		}
		hist, ok := m.Get("anywasm_header_count")
		if !ok || hist.Type != abi.MetricHistogram || hist.Count != 3 || hist.Value != 9 {
			t.Errorf("histogram = %+v", hist)
		}
	})
}

// upstreams is a test Upstreams that records requests.
type upstreams struct {
	srv *httptest.Server
}

func (u *upstreams) RoundTrip(ctx context.Context, cluster string, req *http.Request) (*http.Response, error) {
	up := &abi.HTTPUpstreams{Clusters: map[string]string{"backend": u.srv.URL}}
	return up.RoundTrip(ctx, cluster, req)
}

func TestGoSDKCallout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/info" || r.Method != "GET" {
			http.Error(w, "bad request "+r.Method+" "+r.URL.Path, 400)
			return
		}
		io.WriteString(w, "info from backend")
	}))
	defer srv.Close()
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		f := load(t, rt, "callout", abi.PluginConfig{}, abi.Options{Upstreams: &abi.HTTPUpstreams{Clusters: map[string]string{"backend": srv.URL}}})
		s := f.stream()
		defer f.close(s)
		if a := f.requestHeaders(s, abi.Headers{{":path", "/"}}, true); a != abi.ActionPause {
			t.Fatalf("action %s", a)
		}
		ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
		defer cancel()
		if err := s.Wait(ctx, abi.StreamHTTPRequest); err != nil {
			t.Fatalf("wait: %v\nlogs:\n%s", err, f.logs)
		}
		if s.LocalResponse() != nil {
			t.Fatalf("local response %+v\nlogs:\n%s", s.LocalResponse(), f.logs)
		}
		h := s.RequestHeaderMap()
		if get(h, "x-callout-status") != "200" || get(h, "x-callout-body") != "info from backend" {
			t.Errorf("headers after callout: %s", h)
		}
	})
	// A cluster that does not answer: the plugin answers 503 itself.
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		f := load(t, rt, "callout", abi.PluginConfig{}, abi.Options{Upstreams: &abi.HTTPUpstreams{Clusters: map[string]string{"backend": "http://127.0.0.1:1"}}})
		s := f.stream()
		defer f.close(s)
		f.requestHeaders(s, abi.Headers{{":path", "/"}}, true)
		ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
		defer cancel()
		if err := s.Wait(ctx, abi.StreamHTTPRequest); err != nil {
			t.Fatal(err)
		}
		if lr := s.LocalResponse(); lr == nil || lr.Status != 503 || string(lr.Body) != "callout failed\n" {
			t.Errorf("local response = %+v", lr)
		}
	})
}

func TestGoSDKShared(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		f := load(t, rt, "shared", abi.PluginConfig{PoolSize: 2}, abi.Options{})
		for i, path := range []string{"/a", "/b", "/c", "/d"} {
			s := f.stream()
			f.requestHeaders(s, abi.Headers{{":path", path}}, true)
			if got := get(s.RequestHeaderMap(), "x-hits"); got != fmt.Sprint(i+1) {
				t.Errorf("request %d: x-hits = %s", i, got)
			}
			f.close(s)
		}
		if v, _, ok := f.host.SharedData("vm-shared", "hits"); !ok || string(v) != "4" {
			t.Errorf("shared data hits = %q %v", v, ok)
		}
		eventually(t, func() bool { return f.logs.has("queue: /d") }, "queue delivery of /d:\n%s", f.logs)
		for _, p := range []string{"/a", "/b", "/c"} {
			if !f.logs.has("queue: " + p) {
				t.Errorf("queue item %s not logged", p)
			}
		}
	})
}

// TestSharedDataLimit: the shared data of a vm_id is bounded
// (Limits.MaxSharedDataBytes): "hits" (4 bytes) counts to 9, and the set of
// "10" is refused (INTERNAL_FAILURE), leaving 9.
func TestSharedDataLimit(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		f := load(t, rt, "shared", abi.PluginConfig{}, abi.Options{Limits: abi.Limits{MaxSharedDataBytes: 5}})
		for range 11 {
			s := f.stream()
			f.requestHeaders(s, abi.Headers{{":path", "/"}}, true)
			f.close(s)
		}
		if v, _, _ := f.host.SharedData("vm-shared", "hits"); string(v) != "9" {
			t.Errorf("hits = %q, want 9", v)
		}
		if !f.logs.has("over the vm_id's shared data limit") || !f.logs.has("shared: increment: ") {
			t.Errorf("no refusal logged:\n%s", f.logs)
		}
	})
}

// eventually waits until cond holds, checking it every few milliseconds:
// for an event the test cannot be told of (a delivery on another
// goroutine), with no bound but the test's own timeout.
func eventually(t *testing.T, cond func() bool, format string, args ...any) {
	t.Helper()
	for !cond() {
		select {
		case <-t.Context().Done():
			t.Fatalf("gave up waiting for "+format, args...)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestGoSDKTick: the tick plugin's ticks, driven by hand (ManualTicks):
// its period, three ticks counted in shared data, none after Close; and
// timers drive them when not by hand.
func TestGoSDKTick(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		f := load(t, rt, "tick", abi.PluginConfig{}, abi.Options{ManualTicks: true})
		if p := f.p.TickPeriod(); p != 100*time.Millisecond {
			t.Errorf("tick period %s, want 100ms", p)
		}
		for range 3 {
			if n := f.p.Tick(f.ctx); n != 1 {
				t.Fatalf("Tick ran %d ticks, want 1", n)
			}
		}
		if !f.logs.has("tick 3") {
			t.Errorf("no third tick:\n%s", f.logs)
		}
		if err := f.p.Close(f.ctx); err != nil {
			t.Fatal(err)
		}
		if n := f.p.Tick(f.ctx); n != 0 {
			t.Errorf("Tick after Close ran %d ticks", n)
		}
		if v, _, _ := f.host.SharedData("vm-tick", "ticks"); string(v) != "3" {
			t.Errorf("ticks = %q, want 3", v)
		}
		// With timers: the first tick comes by itself.
		f2 := load(t, rt, "tick", abi.PluginConfig{VMID: "vm-timed"}, abi.Options{})
		eventually(t, func() bool { return f2.logs.has("tick 1") }, "a tick from the timer:\n%s", f2.logs)
	})
}

func TestGoSDKTCP(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		f := load(t, rt, "tcp", abi.PluginConfig{}, abi.Options{})
		s, a, err := f.p.NewTCPStream(f.ctx)
		if err != nil || a != abi.ActionContinue {
			t.Fatalf("new connection: %s %v", a, err)
		}
		out, a, err := s.DownstreamData(f.ctx, []byte("ping"), false)
		if err != nil || a != abi.ActionContinue || string(out) != "anywasm:ping" {
			t.Errorf("downstream = %q %s %v (%v)", out, a, err, s.Err())
		}
		out, _, _ = s.DownstreamData(f.ctx, []byte("pong"), false)
		if string(out) != "pong" {
			t.Errorf("second downstream chunk = %q", out)
		}
		out, _, _ = s.UpstreamData(f.ctx, []byte("hello World"), false)
		if string(out) != "HELLO WORLD" {
			t.Errorf("upstream = %q", out)
		}
		if err := s.DownstreamClose(f.ctx, abi.PeerRemote); err != nil {
			t.Fatal(err)
		}
		if err := s.UpstreamClose(f.ctx, abi.PeerLocal); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(f.ctx); err != nil {
			t.Fatal(err)
		}
		if !f.logs.has("tcp: downstream close peer=remote") || !f.logs.has("tcp: upstream close peer=local") {
			t.Errorf("close logs:\n%s", f.logs)
		}
	})
}

func TestGoSDKProperties(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		f := load(t, rt, "props", abi.PluginConfig{Name: "props-plugin", RootID: "root-1", VMID: "vm-9"}, abi.Options{
			Properties: func(path []string) ([]byte, bool) {
				if slices.Equal(path, []string{"anywasm", "custom"}) {
					return []byte("custom-value"), true
				}
				return nil, false
			},
		})
		s := f.stream()
		defer f.close(s)
		f.requestHeaders(s, abi.Headers{{":path", "/"}}, true)
		h := s.RequestHeaderMap()
		for k, want := range map[string]string{"x-plugin-name": "props-plugin", "x-root-id": "root-1", "x-vm-id": "vm-9", "x-custom": "custom-value"} {
			if got := get(h, k); got != want {
				t.Errorf("%s = %s, want %s", k, got, want)
			}
		}
	})
}

func TestGoSDKForeign(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		f := load(t, rt, "foreign", abi.PluginConfig{}, abi.Options{ForeignFunctions: map[string]abi.ForeignFunc{
			"reverse": func(_ context.Context, b []byte) ([]byte, error) {
				slices.Reverse(b)
				return b, nil
			},
		}})
		s := f.stream()
		defer f.close(s)
		f.requestHeaders(s, abi.Headers{{":path", "/"}, {"x-input", "abc123"}}, true)
		if got := get(s.RequestHeaderMap(), "x-output"); got != "321cba" {
			t.Errorf("x-output = %s", got)
		}
	})
}

func TestGoSDKConfig(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		f := load(t, rt, "config", abi.PluginConfig{Configuration: []byte("mode=strict"), VMConfiguration: []byte("vmconf")}, abi.Options{})
		if !f.logs.has(`config: vm configuration "vmconf"`) {
			t.Errorf("vm configuration log:\n%s", f.logs)
		}
		s := f.stream()
		defer f.close(s)
		if _, err := s.ResponseHeaders(f.ctx, abi.Headers{{":status", "200"}}, true); err != nil {
			t.Fatal(err)
		}
		if got := get(s.ResponseHeaderMap(), "x-config"); got != "mode=strict" {
			t.Errorf("x-config = %s", got)
		}
		// A configuration the plugin refuses fails the load, clearly.
		h := abi.NewHost(rt, abi.Options{Logger: slogLogger(&logSink{})})
		defer h.Close(f.ctx)
		_, err := h.Load(f.ctx, plugins.Build(t, "config"), abi.PluginConfig{Name: "config", Configuration: []byte("fail")})
		if err == nil || !strings.Contains(err.Error(), "proxy_on_configure returned false") || !strings.Contains(err.Error(), `"config"`) {
			t.Errorf("load with a refused configuration = %v", err)
		}
	})
}

func TestGoSDKTrap(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		for _, policy := range []abi.FailurePolicy{abi.FailClosed, abi.FailOpen, abi.FailReload} {
			t.Run(policy.String(), func(t *testing.T) {
				f := load(t, rt, "trap", abi.PluginConfig{FailurePolicy: policy}, abi.Options{})
				s := f.stream()
				a, err := s.RequestHeaders(f.ctx, abi.Headers{{":path", "/"}, {"x-crash", "panic"}}, true)
				if err != nil {
					t.Fatal(err)
				}
				var pe *abi.PluginError
				if !errors.As(s.Err(), &pe) || pe.Callback != "proxy_on_request_headers" || pe.Plugin != "trap" {
					t.Fatalf("stream error = %v", s.Err())
				}
				var tr *engine.Trap
				if !errors.As(s.Err(), &tr) || tr.Code != engine.TrapUnreachable {
					t.Errorf("trap = %v", s.Err())
				}
				switch policy {
				case abi.FailOpen:
					if a != abi.ActionContinue || s.LocalResponse() != nil {
						t.Errorf("fail open: %s %+v", a, s.LocalResponse())
					}
				default:
					if lr := s.LocalResponse(); a != abi.ActionPause || lr == nil || lr.Status != 503 {
						t.Errorf("%s: %s %+v", policy, a, lr)
					}
				}
				if !f.logs.has("panic: trap: x-crash: panic") {
					t.Errorf("the Go panic message did not reach the log:\n%s", f.logs)
				}
				_ = s.Close(f.ctx)
				// The VM is replaced: the next request works.
				eventually(t, func() bool {
					s2, err := f.p.NewHTTPStream(f.ctx)
					if err != nil {
						return false
					}
					defer s2.Close(f.ctx)
					a, err := s2.RequestHeaders(f.ctx, abi.Headers{{":path", "/"}}, true)
					return err == nil && a == abi.ActionContinue && s2.Err() == nil
				}, "a working VM after the trap")
			})
		}
	})
}

// TestFailReloadInterval: FailReload replaces a failed VM as Envoy's
// FAIL_RELOAD does, no sooner than ReloadBackoff after the failed VM was
// made. With an interval of an hour, the VM that trapped right after its
// making is not replaced and streams meanwhile are refused naming the
// interval; with a millisecond it is.
func TestFailReloadInterval(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		crash := func(f *fixture) {
			t.Helper()
			s := f.stream()
			defer s.Close(f.ctx)
			if _, err := s.RequestHeaders(f.ctx, abi.Headers{{":path", "/"}, {"x-crash", "panic"}}, true); err != nil {
				t.Fatal(err)
			}
			if lr := s.LocalResponse(); lr == nil || lr.Status != 503 {
				t.Fatalf("after the trap: %+v, err %v", lr, s.Err())
			}
		}
		t.Run("hour", func(t *testing.T) {
			f := load(t, rt, "trap", abi.PluginConfig{FailurePolicy: abi.FailReload, ReloadBackoff: time.Hour}, abi.Options{})
			crash(f)
			eventually(t, func() bool { return f.p.VMs() == 0 }, "the failed VM dropped")
			for range 3 {
				_, err := f.p.NewHTTPStream(f.ctx)
				if err == nil || !strings.Contains(err.Error(), "FailReload's interval") {
					t.Fatalf("a stream within the interval = %v", err)
				}
			}
			if n := f.p.VMs(); n != 0 {
				t.Errorf("%d VMs made within the interval", n)
			}
		})
		t.Run("millisecond", func(t *testing.T) {
			f := load(t, rt, "trap", abi.PluginConfig{FailurePolicy: abi.FailReload, ReloadBackoff: time.Millisecond}, abi.Options{})
			crash(f)
			eventually(t, func() bool { return f.p.VMs() == 1 }, "a new VM")
			s := f.stream()
			defer s.Close(f.ctx)
			if a, err := s.RequestHeaders(f.ctx, abi.Headers{{":path", "/"}}, true); err != nil || a != abi.ActionContinue || s.Err() != nil {
				t.Errorf("on the new VM: %s %v %v", a, err, s.Err())
			}
		})
		h := abi.NewHost(rt, abi.Options{})
		defer h.Close(context.Background())
		if _, err := h.Load(context.Background(), plugins.Build(t, "trap"), abi.PluginConfig{Name: "x", ReloadBackoff: -time.Second}); err == nil || !strings.Contains(err.Error(), "ReloadBackoff -1s is negative") {
			t.Errorf("negative ReloadBackoff = %v", err)
		}
	})
}

func TestGoSDKInfiniteLoop(t *testing.T) {
	for _, name := range engine.Runtimes() {
		t.Run(name, func(t *testing.T) {
			info, _ := engine.Lookup(name)
			if !info.Capabilities.Has(engine.CapInterrupt) {
				rt, _ := engine.Open(name, testrt.Config())
				defer rt.Close(context.Background())
				h := abi.NewHost(rt, abi.Options{})
				_, err := h.Load(context.Background(), plugins.Build(t, "trap"), abi.PluginConfig{Name: "trap", CallTimeout: time.Second})
				if !errors.Is(err, engine.ErrNotSupported) {
					t.Errorf("CallTimeout on %s = %v, want ErrNotSupported", name, err)
				}
				return
			}
			rt, err := engine.Open(name, testrt.Config().WithInterruptOnContextDone(true))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = rt.Close(context.Background()) }) // after the host's
			// The timeout bounds the Go initializer too: generous under -race and load.
			f := load(t, rt, "trap", abi.PluginConfig{CallTimeout: time.Second}, abi.Options{})
			s := f.stream()
			defer s.Close(f.ctx)
			start := time.Now()
			a, err := s.RequestHeaders(f.ctx, abi.Headers{{":path", "/"}, {"x-crash", "loop"}}, true)
			if err != nil {
				t.Fatal(err)
			}
			if !errors.Is(s.Err(), context.DeadlineExceeded) || a != abi.ActionPause || s.LocalResponse().Status != 503 {
				t.Errorf("after the deadline: %s %v %+v", a, s.Err(), s.LocalResponse())
			}
			t.Logf("an infinite loop was stopped after %s", time.Since(start).Round(time.Millisecond))
		})
	}
}

func slogLogger(s *logSink) *slogLoggerT { return newSlog(s) }
