package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
	_ "github.com/anywasm/anywasm/engine/all"
	"github.com/anywasm/anywasm/internal/plugins"
	"github.com/anywasm/anywasm/internal/proxy"
	"github.com/anywasm/anywasm/internal/testlog"
	"github.com/anywasm/anywasm/internal/testrt"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// backend is the upstream of the HTTP listeners: it answers /info (the
// callout plugin's call), holds /slow until released, and otherwise
// answers "path=<path> body=<body>" with the request headers it got as
// x-got-<name> response headers.
type backend struct {
	*httptest.Server
	release chan struct{}
	slow    chan struct{} // a /slow request arrived
}

func newBackend(t *testing.T) *backend {
	b := &backend{release: make(chan struct{}), slow: make(chan struct{}, 10)}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/info":
			io.WriteString(w, "info")
			return
		case "/slow":
			b.slow <- struct{}{}
			<-b.release
		}
		for k, vs := range r.Header {
			w.Header()["X-Got-"+k] = vs
		}
		fmt.Fprintf(w, "path=%s body=%s", r.URL.RequestURI(), body)
	}))
	t.Cleanup(b.Close)
	return b
}

// echoTCP is a TCP upstream that echoes.
func echoTCP(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// harness is a proxy started from a configuration on one runtime.
type harness struct {
	t    *testing.T
	p    *proxy.Proxy
	logs *testlog.Sink
}

func start(t *testing.T, runtime, config string) *harness {
	t.Helper()
	cfg, err := proxy.ParseConfig([]byte(config))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, config)
	}
	h := &harness{t: t, logs: &testlog.Sink{}}
	if cfg.CacheDir == "" {
		cfg.CacheDir = testrt.Dir() // each plugin compiled once for the whole test run
	}
	p, err := proxy.Start(context.Background(), cfg, proxy.Options{Runtime: runtime, Logger: slog.New(h.logs)})
	if err != nil {
		t.Fatalf("start: %v\nlogs:\n%s", err, h.logs)
	}
	h.p = p
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return h
}

func (h *harness) url(listener, path string) string {
	return "http://" + h.p.Addr(listener).String() + path
}

type reply struct {
	status int
	header http.Header
	body   string
}

func (h *harness) do(method, url, body string, hdr ...string) reply {
	h.t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if body == "" {
		req.Body = http.NoBody
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v\nlogs:\n%s", method, url, err, h.logs)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b)}
}

func forEachRuntime(t *testing.T, f func(t *testing.T, rt string)) {
	for _, name := range engine.Runtimes() {
		t.Run(name, func(t *testing.T) { f(t, name) })
	}
}

// config is the configuration of most tests: one listener per behaviour.
func config(t *testing.T, b *backend, tcpEcho string, interrupt bool) string {
	p := func(name string) string { return plugins.Path(t, name) }
	loop := ""
	if interrupt {
		loop = fmt.Sprintf(`
  - name: loop
    address: 127.0.0.1:0
    http:
      cluster: backend
      filters:
        - name: loop
          call_timeout: 1s # bounds the Go initializer too: generous under -race and load
          vm_config: {vm_id: loop, code: {local: {filename: %q}}}`, p("trap"))
	}
	return fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
reload_interval: 0s
clusters:
  - {name: backend, address: %q}
  - {name: echo-tcp, type: tcp, address: %q}
listeners:
  - name: web
    address: 127.0.0.1:0
    http:
      cluster: backend
      max_buffer_bytes: 65536
      filters:
        - name: headers
          vm_config: {vm_id: web, code: {local: {filename: %[3]q}}}
        - name: body
          vm_config: {vm_id: web-body, code: {local: {filename: %[4]q}}}
        - name: deny
          vm_config: {vm_id: web-deny, code: {local: {filename: %[5]q}}}
  - name: callout
    address: 127.0.0.1:0
    http:
      cluster: backend
      filters:
        - name: callout
          vm_config: {vm_id: callout, code: {local: {filename: %[6]q}}}
  - name: shared-a
    address: 127.0.0.1:0
    http:
      cluster: backend
      filters:
        - name: shared-a
          root_id: a
          vm_config: {vm_id: shared, code: {local: {filename: %[7]q}}}
  - name: shared-b
    address: 127.0.0.1:0
    http:
      cluster: backend
      filters:
        - name: shared-b
          root_id: b
          vm_config: {vm_id: shared, code: {local: {filename: %[7]q}}}
        - name: tick
          vm_config: {vm_id: ticks, code: {local: {filename: %[8]q}}}
  - name: trap-closed
    address: 127.0.0.1:0
    http:
      cluster: backend
      filters:
        - name: trap-closed
          failure_policy: FAIL_CLOSED
          vm_config: {vm_id: trap-closed, code: {local: {filename: %[9]q}}}
  - name: trap-open
    address: 127.0.0.1:0
    http:
      cluster: backend
      filters:
        - name: trap-open
          failure_policy: FAIL_OPEN
          vm_config: {vm_id: trap-open, code: {local: {filename: %[9]q}}}
        - name: headers
          vm_config: {vm_id: web, code: {local: {filename: %[3]q}}}
  - name: tcp
    address: 127.0.0.1:0
    tcp:
      cluster: echo-tcp
      filters:
        - name: tcp
          vm_config: {vm_id: tcp, code: {local: {filename: %[10]q}}}
  - name: config
    address: 127.0.0.1:0
    http:
      cluster: echo
      filters:
        - name: config
          configuration: {"@type": type.googleapis.com/google.protobuf.StringValue, value: "plugin-conf"}
          vm_config:
            vm_id: config
            configuration: vm-conf
            environment_variables: {key_values: {A: b}}
            code: {local: {filename: %[11]q}}
%[12]s
`, b.URL, tcpEcho, p("headers"), p("body"), p("local_response"), p("callout"), p("shared"), p("tick"), p("trap"), p("tcp"), p("config"), loop)
}

// oneFilter is a configuration with one HTTP listener, "web", through one
// plugin to the backend at url ("" for the built-in echo); top is added at
// the top level.
func oneFilter(top, url, name, file string) string {
	cluster, clusters := "echo", ""
	if url != "" {
		cluster, clusters = "backend", fmt.Sprintf("clusters: [{name: backend, address: %q}]\n", url)
	}
	return fmt.Sprintf(`%s
%slisteners:
  - name: web
    address: 127.0.0.1:0
    http:
      cluster: %s
      filters:
        - name: %s
          vm_config: {code: {local: {filename: %q}}}
`, top, clusters, cluster, name, file)
}

func interrupts(rt string) bool {
	info, err := engine.Lookup(rt)
	return err == nil && info.Capabilities.Has(engine.CapInterrupt)
}

// TestProxy sends real HTTP and TCP traffic through the proxy on every
// runtime (chosen with Options.Runtime, the -runtime flag).
func TestProxy(t *testing.T) {
	b := newBackend(t)
	tcpEcho := echoTCP(t)
	forEachRuntime(t, func(t *testing.T, rt string) {
		h := start(t, rt, config(t, b, tcpEcho, interrupts(rt)))

		t.Run("headers and body", func(t *testing.T) {
			r := h.do("POST", h.url("web", "/up?q=1"), "Hello Wasm")
			if r.status != 200 || r.body != "path=/up?q=1 body=HELLO WASM\n-- anywasm" {
				t.Errorf("%d %q", r.status, r.body)
			}
			if r.header.Get("X-Anywasm-Plugin") != "headers" || r.header.Get("X-Got-X-Anywasm-Seen") == "" {
				t.Errorf("headers %v", r.header)
			}
		})
		t.Run("local response", func(t *testing.T) {
			// The plugins before local_response see its answer, as in
			// Envoy: body appends its trailer, headers its header.
			r := h.do("GET", h.url("web", "/"), "", "X-Deny", "1")
			if r.status != 403 || r.body != "denied\n\n-- anywasm" || r.header.Get("X-Denied-By") != "anywasm" ||
				r.header.Get("X-Anywasm-Plugin") != "headers" {
				t.Errorf("%d %q %v", r.status, r.body, r.header)
			}
		})
		t.Run("buffer bound", func(t *testing.T) {
			r := h.do("POST", h.url("web", "/"), strings.Repeat("x", 100<<10))
			if r.status != 413 || !strings.Contains(r.body, "plugin body buffered more than 65536 bytes") {
				t.Errorf("%d %q", r.status, r.body)
			}
		})
		t.Run("callout", func(t *testing.T) {
			r := h.do("GET", h.url("callout", "/"), "")
			if r.status != 200 || r.header.Get("X-Got-X-Callout-Status") != "200" || r.header.Get("X-Got-X-Callout-Body") != "info" {
				t.Errorf("%d %v", r.status, r.header)
			}
		})
		t.Run("shared data between plugins", func(t *testing.T) {
			a := h.do("GET", h.url("shared-a", "/a"), "")
			bb := h.do("GET", h.url("shared-b", "/b"), "")
			na, nb := a.header.Get("X-Got-X-Hits"), bb.header.Get("X-Got-X-Hits")
			if na == "" || nb == "" || na == nb {
				t.Errorf("hits %q then %q: two plugins of one vm_id share one counter", na, nb)
			}
			var x, y int
			fmt.Sscan(na, &x)
			fmt.Sscan(nb, &y)
			if y != x+1 {
				t.Errorf("hits %d then %d", x, y)
			}
		})
		t.Run("ticks", func(t *testing.T) {
			// The proxy's ticks run on timers: wait for the event.
			if err := h.logs.Wait(t.Context(), "tick 3"); err != nil {
				t.Errorf("no third tick:\n%s", h.logs)
			}
		})
		t.Run("configuration", func(t *testing.T) {
			r := h.do("GET", h.url("config", "/"), "")
			if r.status != 200 || r.header.Get("X-Config") != "plugin-conf" {
				t.Errorf("%d %v", r.status, r.header)
			}
			if h.logs.Count(`config: vm configuration "vm-conf"`) == 0 {
				t.Errorf("logs:\n%s", h.logs)
			}
		})
		t.Run("trap fail closed", func(t *testing.T) {
			r := h.do("GET", h.url("trap-closed", "/"), "", "X-Crash", "panic")
			if r.status != 503 || !strings.Contains(r.body, "plugin trap-closed failed") {
				t.Errorf("%d %q", r.status, r.body)
			}
			// The VM was replaced: the next request goes through.
			if r := h.do("GET", h.url("trap-closed", "/next"), ""); r.status != 200 || r.body != "path=/next body=" {
				t.Errorf("after the trap: %d %q", r.status, r.body)
			}
		})
		t.Run("trap fail open", func(t *testing.T) {
			r := h.do("GET", h.url("trap-open", "/"), "", "X-Crash", "panic")
			if r.status != 200 || r.header.Get("X-Anywasm-Plugin") != "headers" {
				t.Errorf("%d %q %v", r.status, r.body, r.header)
			}
			if r := h.do("GET", h.url("trap-open", "/next"), ""); r.status != 200 {
				t.Errorf("after the trap: %d %q", r.status, r.body)
			}
		})
		t.Run("infinite loop", func(t *testing.T) {
			if !interrupts(rt) {
				t.Skipf("%s cannot interrupt a guest (TestInterruptRefused checks the refusal)", rt)
			}
			r := h.do("GET", h.url("loop", "/"), "", "X-Crash", "loop")
			if r.status != 503 {
				t.Errorf("%d %q", r.status, r.body)
			}
			if r := h.do("GET", h.url("loop", "/next"), ""); r.status != 200 {
				t.Errorf("after the loop: %d %q", r.status, r.body)
			}
		})
		t.Run("tcp", func(t *testing.T) {
			c, err := net.Dial("tcp", h.p.Addr("tcp").String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte("ping"))
			c.(*net.TCPConn).CloseWrite()
			got, _ := io.ReadAll(c)
			if string(got) != "ANYWASM:PING" {
				t.Errorf("%q", got)
			}
		})
		t.Run("concurrent", func(t *testing.T) {
			var wg sync.WaitGroup
			errs := make(chan error, 200)
			for g := range 8 {
				wg.Go(func() {
					for i := range 15 {
						body := fmt.Sprintf("g%d r%d", g, i)
						req, _ := http.NewRequest("POST", h.url("web", "/c"), strings.NewReader(body))
						resp, err := http.DefaultClient.Do(req)
						if err != nil {
							errs <- err
							return
						}
						got, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						if want := "path=/c body=" + strings.ToUpper(body) + "\n-- anywasm"; resp.StatusCode != 200 || string(got) != want {
							errs <- fmt.Errorf("%d %q, want %q", resp.StatusCode, got, want)
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
		t.Run("admin", func(t *testing.T) {
			admin := "http://" + h.p.AdminAddr().String()
			if r := h.do("GET", admin+"/healthz", ""); r.status != 200 || r.body != "ok\n" {
				t.Errorf("healthz %d %q", r.status, r.body)
			}
			if r := h.do("GET", admin+"/debug/pprof/", ""); r.status != 404 {
				t.Errorf("pprof without admin.pprof: %d", r.status)
			}
			// The home page answers 200 as Envoy's does (the Go SDK's
			// e2e tests probe it through a tcp_proxy); other paths 404.
			if r := h.do("GET", admin+"/", ""); r.status != 200 || !strings.Contains(r.body, "/plugins\n") || strings.Contains(r.body, "pprof") {
				t.Errorf("admin home: %d %q", r.status, r.body)
			}
			if r := h.do("GET", admin+"/nothing", ""); r.status != 404 {
				t.Errorf("admin /nothing: %d", r.status)
			}
			m := h.do("GET", admin+"/metrics", "").body
			for _, want := range []string{
				`anywasm_proxy_http_requests_total{code="403",listener="web"} 1`,
				`anywasm_proxy_http_requests_total{code="413",listener="web"} 1`,
				`anywasm_proxy_tcp_connections_total{listener="tcp"} 1`,
				"# TYPE anywasm_proxy_http_request_duration_seconds histogram",
			} {
				if !strings.Contains(m, want) {
					t.Errorf("metrics lack %s", want)
				}
			}
			var ps []map[string]any
			if err := json.Unmarshal([]byte(h.do("GET", admin+"/plugins", "").body), &ps); err != nil || len(ps) < 10 {
				t.Fatalf("plugins: %v %d", err, len(ps))
			}
			if ps[0]["runtime"] != rt || ps[0]["abi_version"] != "0.2.0" || ps[0]["filter"] != "listeners[0].http.filters[0]" {
				t.Errorf("plugins[0] = %v", ps[0])
			}
		})
	})
}

// TestPluginMetrics: the metrics plugins define reach /metrics with a
// runtime label, under the default prefix anywasm_plugin_ (the metrics
// plugin's own names start with anywasm_).
func TestPluginMetrics(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt string) {
		h := start(t, rt, oneFilter("admin: {address: 127.0.0.1:0, pprof: true}", "", "metrics", plugins.Path(t, "metrics")))
		for range 3 {
			h.do("GET", h.url("web", "/abc"), "")
		}
		if r := h.do("GET", "http://"+h.p.AdminAddr().String()+"/debug/pprof/", ""); r.status != 200 || !strings.Contains(r.body, "goroutine") {
			t.Errorf("pprof: %d", r.status)
		}
		m := h.do("GET", "http://"+h.p.AdminAddr().String()+"/metrics", "").body
		for _, want := range []string{
			fmt.Sprintf(`anywasm_plugin_anywasm_requests_total{runtime=%q} 3`, rt),
			fmt.Sprintf(`anywasm_plugin_anywasm_last_path_len{runtime=%q} 4`, rt),
			fmt.Sprintf(`anywasm_plugin_anywasm_header_count_count{runtime=%q} 3`, rt),
			"# TYPE anywasm_plugin_anywasm_header_count histogram",
		} {
			if !strings.Contains(m, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})
}

// collideWasm is a plugin whose metrics are named like the proxy's other
// families: go_goroutines, process_open_fds, proxy_http_requests_total, and
// a counter "requests" it increments on each request
// (abi/promcollector/testdata/collide.wat).
const collideWasm = "../../abi/promcollector/testdata/collide.wasm"

// scrape GETs /metrics and parses it; it fails the test unless the answer
// is 200 and valid Prometheus text.
func (h *harness) scrape() map[string]*dto.MetricFamily {
	h.t.Helper()
	r := h.do("GET", "http://"+h.p.AdminAddr().String()+"/metrics", "")
	if r.status != 200 {
		h.t.Fatalf("/metrics: %d %s\nlogs:\n%s", r.status, r.body, h.logs)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(r.body))
	if err != nil {
		h.t.Fatalf("/metrics is not valid Prometheus text: %v\n%s", err, r.body)
	}
	return fams
}

// only returns the one metric of family name, failing the test if the
// family has another type or help, or not exactly one metric.
func only(t *testing.T, fams map[string]*dto.MetricFamily, name string, typ dto.MetricType, help string) *dto.Metric {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no family %s", name)
	}
	if f.GetType() != typ || (help != "" && f.GetHelp() != help) || len(f.GetMetric()) != 1 {
		t.Fatalf("family %s: type %s, help %q, %d metrics; want %s, %q, 1", name, f.GetType(), f.GetHelp(), len(f.GetMetric()), typ, help)
	}
	return f.GetMetric()[0]
}

func labels(m *dto.Metric) map[string]string {
	l := map[string]string{}
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

// TestPluginMetricNames: a plugin metric named like one of the proxy's
// other families never breaks /metrics or takes that family's place, on
// every runtime. Plugin metrics are exposed under admin.plugin_metrics_prefix
// (default anywasm_plugin_), counters with _total; one that would still
// collide (prefix anywasm_: anywasm_proxy_http_requests_total) is left
// out, and that is logged once, however often /metrics is scraped.
func TestPluginMetricNames(t *testing.T) {
	wasm, err := filepath.Abs(collideWasm)
	if err != nil {
		t.Fatal(err)
	}
	const goHelp, fdsHelp = "Number of goroutines that currently exist.", "Number of open file descriptors."
	forEachRuntime(t, func(t *testing.T, rt string) {
		for _, c := range []struct{ prefix, admin string }{
			{"anywasm_plugin_", "admin: {address: 127.0.0.1:0}"},
			{"anywasm_", "admin: {address: 127.0.0.1:0, plugin_metrics_prefix: anywasm_}"},
		} {
			t.Run(c.prefix, func(t *testing.T) {
				h := start(t, rt, oneFilter(c.admin, "", "collide", wasm))
				for range 3 {
					if r := h.do("GET", h.url("web", "/"), ""); r.status != 200 {
						t.Fatalf("request: %d %q", r.status, r.body)
					}
				}
				var fams map[string]*dto.MetricFamily
				for range 3 {
					fams = h.scrape()
				}
				// The Go and process collectors' families are theirs: no
				// runtime label, not the plugin's 1000000.
				for _, f := range []struct{ name, help string }{{"go_goroutines", goHelp}, {"process_open_fds", fdsHelp}} {
					m := only(t, fams, f.name, dto.MetricType_GAUGE, f.help)
					if v := m.GetGauge().GetValue(); len(m.GetLabel()) != 0 || v <= 0 || v >= 1e6 {
						t.Errorf("%s: labels %v, value %v", f.name, labels(m), v)
					}
				}
				// The plugin's, under the prefix, with the runtime label.
				for _, name := range []string{"go_goroutines", "process_open_fds"} {
					m := only(t, fams, c.prefix+name, dto.MetricType_GAUGE, "")
					if m.GetGauge().GetValue() != 1e6 || labels(m)["runtime"] != rt {
						t.Errorf("%s%s: %v %v", c.prefix, name, labels(m), m.GetGauge().GetValue())
					}
				}
				if m := only(t, fams, c.prefix+"requests_total", dto.MetricType_COUNTER, ""); m.GetCounter().GetValue() != 3 || labels(m)["runtime"] != rt {
					t.Errorf("%srequests_total: %v %v", c.prefix, labels(m), m.GetCounter().GetValue())
				}
				if fams[c.prefix+"requests"] != nil || fams[c.prefix+"proxy_http_requests_total_total"] != nil {
					t.Error("a counter was exposed without _total, or with it twice")
				}
				const notExposed = "plugin metric not exposed"
				switch c.prefix {
				case "anywasm_plugin_":
					if m := only(t, fams, "anywasm_plugin_proxy_http_requests_total", dto.MetricType_COUNTER, ""); m.GetCounter().GetValue() != 7 {
						t.Errorf("anywasm_plugin_proxy_http_requests_total: %v", m.GetCounter().GetValue())
					}
					if n := h.logs.Count(notExposed); n != 0 {
						t.Errorf("%d metrics not exposed:\n%s", n, h.logs)
					}
				case "anywasm_":
					// anywasm_proxy_http_requests_total is the proxy's.
					m := only(t, fams, "anywasm_proxy_http_requests_total", dto.MetricType_COUNTER, "HTTP requests answered, by listener and status code.")
					if l := labels(m); l["runtime"] != "" || l["code"] != "200" || m.GetCounter().GetValue() != 3 {
						t.Errorf("anywasm_proxy_http_requests_total: %v %v", l, m.GetCounter().GetValue())
					}
					if n := h.logs.Count(notExposed); n != 1 || h.logs.Count("proxy_http_requests_total") != 1 {
						t.Errorf("logged %d times that a metric is not exposed, want once:\n%s", n, h.logs)
					}
				}
				if h.logs.Count("error gathering") != 0 {
					t.Errorf("gathering failed:\n%s", h.logs)
				}
			})
		}
	})
}

// TestInterruptRefused: a call timeout on a runtime that cannot interrupt
// is refused at start, naming the field.
func TestInterruptRefused(t *testing.T) {
	for _, rt := range engine.Runtimes() {
		if interrupts(rt) {
			continue
		}
		cfg, err := proxy.ParseConfig([]byte(fmt.Sprintf(`
listeners:
  - address: 127.0.0.1:0
    http:
      cluster: echo
      filters:
        - name: loop
          call_timeout: 1s
          vm_config: {code: {local: {filename: %q}}}
`, plugins.Path(t, "trap"))))
		if err != nil {
			t.Fatal(err)
		}
		_, err = proxy.Start(context.Background(), cfg, proxy.Options{Runtime: rt, Logger: slog.New(&testlog.Sink{})})
		if err == nil || !strings.Contains(err.Error(), "listeners[0].http.filters[0].call_timeout") {
			t.Errorf("%s: %v", rt, err)
		}
	}
}

// TestReload replaces a plugin file while a request is in flight: the
// request ends on the old plugin, later ones run the new one; a broken file
// leaves the running plugin in place.
func TestReload(t *testing.T) {
	b := newBackend(t)
	forEachRuntime(t, func(t *testing.T, rt string) {
		dir := t.TempDir()
		file := filepath.Join(dir, "plugin.wasm")
		copyFile(t, plugins.Path(t, "headers"), file)
		h := start(t, rt, oneFilter("admin: {address: 127.0.0.1:0}\nreload_interval: 0s", b.URL, "swap", file))
		inflight := make(chan reply)
		go func() { inflight <- h.do("GET", h.url("web", "/slow"), "") }()
		<-b.slow
		copyFile(t, plugins.Path(t, "body"), file)
		if n := h.p.Reload(context.Background()); n != 1 {
			t.Fatalf("reloaded %d plugins\nlogs:\n%s", n, h.logs)
		}
		r := h.do("POST", h.url("web", "/new"), "new body")
		if r.status != 200 || r.body != "path=/new body=NEW BODY\n-- anywasm" || r.header.Get("X-Anywasm-Plugin") != "" {
			t.Errorf("after the reload: %d %q %v", r.status, r.body, r.header)
		}
		b.release <- struct{}{}
		old := <-inflight
		if old.status != 200 || old.header.Get("X-Anywasm-Plugin") != "headers" || old.body != "path=/slow body=" {
			t.Errorf("the request in flight: %d %q %v", old.status, old.body, old.header)
		}
		// A broken file: the reload fails, the running plugin stays.
		if err := os.WriteFile(file, []byte("\x00asm broken"), 0o644); err != nil {
			t.Fatal(err)
		}
		if n := h.p.Reload(context.Background()); n != 0 {
			t.Errorf("a broken file was swapped in")
		}
		if r := h.do("POST", h.url("web", "/"), "x"); r.status != 200 || r.body != "path=/ body=X\n-- anywasm" {
			t.Errorf("after a failed reload: %d %q", r.status, r.body)
		}
		m := h.do("GET", "http://"+h.p.AdminAddr().String()+"/metrics", "").body
		for _, want := range []string{`anywasm_proxy_plugin_reloads_total{plugin="swap",result="ok"} 1`, `anywasm_proxy_plugin_reloads_total{plugin="swap",result="failed"} 1`} {
			if !strings.Contains(m, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})
}

// TestReloadWatch: the reload_interval watcher picks up a changed file.
func TestReloadWatch(t *testing.T) {
	b := newBackend(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "plugin.wasm")
	copyFile(t, plugins.Path(t, "headers"), file)
	h := start(t, "", oneFilter("reload_interval: 100ms", b.URL, "swap", file))
	if r := h.do("GET", h.url("web", "/"), ""); r.header.Get("X-Anywasm-Plugin") != "headers" {
		t.Fatalf("%v", r.header)
	}
	copyFile(t, plugins.Path(t, "local_response"), file)
	// The watcher polls: wait for the reload it makes, however long the
	// new plugin takes to load on a busy machine.
	if err := h.logs.Wait(t.Context(), "plugin reloaded"); err != nil {
		t.Fatal(err)
	}
	if r := h.do("GET", h.url("web", "/"), "", "X-Deny", "1"); r.status != 403 {
		t.Errorf("after the change: %d\nlogs:\n%s", r.status, h.logs)
	}
}

// TestShutdown: a request in flight when the shutdown starts is answered;
// health reports draining; later connections are refused.
func TestShutdown(t *testing.T) {
	b := newBackend(t)
	cfg, err := proxy.ParseConfig([]byte(oneFilter("admin: {address: 127.0.0.1:0}", b.URL, "headers", plugins.Path(t, "headers"))))
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.Start(context.Background(), cfg, proxy.Options{Logger: slog.New(&testlog.Sink{})})
	if err != nil {
		t.Fatal(err)
	}
	addr, admin := p.Addr("web").String(), p.AdminAddr().String()
	inflight := make(chan *http.Response, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/slow")
		if err != nil {
			t.Error(err)
		}
		inflight <- resp
	}()
	<-b.slow
	done := make(chan error)
	go func() { done <- p.Shutdown(context.Background()) }()
	// Shutdown runs on another goroutine: wait until it drains.
	giveUp := time.After(30 * time.Second) // a bound, never expected
	for {
		resp, err := http.Get("http://" + admin + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 503 {
				break
			}
		}
		select {
		case <-giveUp:
			t.Fatal("healthz never reported draining")
		case <-time.After(5 * time.Millisecond):
		}
	}
	// Draining is reported before the listeners close (Shutdown closes
	// them on other goroutines): while the request is still in flight, new
	// connections must come to be refused.
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		select {
		case <-giveUp:
			t.Fatal("new connections were still accepted during shutdown")
		case <-time.After(5 * time.Millisecond):
		}
	}
	b.release <- struct{}{}
	resp := <-inflight
	if resp == nil || resp.StatusCode != 200 || resp.Header.Get("X-Anywasm-Plugin") != "headers" {
		t.Errorf("request in flight: %v", resp)
	} else {
		resp.Body.Close()
	}
	if err := <-done; err != nil {
		t.Error(err)
	}
}

// TestBadConfig: every refusal names the field.
func TestBadConfig(t *testing.T) {
	for _, c := range []struct{ config, want string }{
		{`listeners: []`, "listeners: none"},
		{"memory_limit_mb: -1\nlisteners: []", "memory_limit_mb: -1"},
		{`listners: []`, `listners: unknown field (the configuration has runtime, cache_dir`},
		{`listeners: [{address: "127.0.0.1:0", http: {cluster: echo, filtres: [], max_conections: 3, filters: [{name: x, vm_config: {cod: {}, code: {local: {filname: a}}}}]}}]`,
			"listeners[0].http.filtres: unknown field (listeners[0].http has cluster, route_config, max_buffer_bytes, filters"},
		{`listeners: [{address: "127.0.0.1:0", http: {cluster: echo, filtres: [], max_conections: 3}}]`, "listeners[0].http.max_conections: unknown field"},
		{`listeners: [{address: "127.0.0.1:0", http: {cluster: echo, filters: [{name: x, vm_config: {cod: {}, code: {local: {filename: a}}}}]}}]`,
			"listeners[0].http.filters[0].vm_config.cod: unknown field"},
		{`listeners: [{address: "127.0.0.1:0", http: {cluster: echo, filters: [{name: x, vm_config: {code: {local: {filname: a}}}}]}}]`,
			"listeners[0].http.filters[0].vm_config.code.local.filname: unknown field (listeners[0].http.filters[0].vm_config.code.local has filename, inline_bytes, inline_string)"},
		{`Runtime: wazero
listeners: []`, "Runtime: unknown field"},
		{"reload_interval: 1ns\nlisteners: []", "reload_interval: 1ns: want at least 100ms"},
		{`listeners: [{address: "127.0.0.1:0", http: {cluster: echo, filters: [{name: x, log_level: loud, vm_config: {code: {local: {filename: a.wasm}}}}]}}]`,
			`listeners[0].http.filters[0].log_level: log level "loud"`},
		{`listeners: [{address: "127.0.0.1:0", http: {cluster: echo, filters: [{name: x, pool_size: 1000000, vm_config: {code: {local: {filename: a.wasm}}}}]}}]`,
			"listeners[0].http.filters[0].pool_size: 1000000: want 1 to 1024"},
		{`listeners: [{address: "127.0.0.1:0", http: {cluster: echo, filters: [{name: x, snapshot: true, vm_config: {allow_precompiled: true, code: {local: {filename: a.wasm}}}}]}}]`,
			"listeners[0].http.filters[0].snapshot: cannot be combined with vm_config.allow_precompiled"},
		{`listeners: [{address: "127.0.0.1:0"}]`, "listeners[0]: neither http nor tcp"},
		{`listeners: [{address: "nope", http: {cluster: echo}}]`, "listeners[0].address"},
		{`listeners: [{address: "127.0.0.1:0", http: {cluster: nowhere}}]`, `listeners[0].http.cluster: unknown cluster "nowhere"`},
		{`listeners: [{address: "127.0.0.1:0", http: {cluster: t}}]
clusters: [{name: t, type: tcp, address: "127.0.0.1:1"}]`, `listeners[0].http.cluster: cluster "t" is of type tcp`},
		{`listeners: [{address: "127.0.0.1:0", http: {cluster: echo, filters: [{name: x, vm_config: {code: {local: {filename: a.wasm}}}, failure_policy: SOMETIMES}]}}]`,
			"listeners[0].http.filters[0].failure_policy"},
		{`listeners: [{address: "127.0.0.1:0", http: {cluster: echo, filters: [{name: x}]}}]`, "listeners[0].http.filters[0].vm_config.code.local.filename: missing"},
		{`listeners: [{address: "127.0.0.1:0", http: {cluster: echo, filters: [{name: x, vm_config: {runtime: v8, code: {local: {filename: a.wasm}}}}]}}]`,
			`listeners[0].http.filters[0].vm_config.runtime: runtime "v8" is not in this binary`},
		{`listeners: [{address: "127.0.0.1:0", http: {cluster: echo, filters: [{name: x, call_timeout: soon, vm_config: {code: {local: {filename: a.wasm}}}}]}}]`,
			"call_timeout"},
		{`listeners: [{address: "127.0.0.1:0", http: {cluster: echo, filters: [{name: x, failure_policy: FAIL_RELOAD, reload_config: {backoff: {base_interval: 0s}}, vm_config: {code: {local: {filename: a.wasm}}}}]}}]`,
			"listeners[0].http.filters[0].reload_config.backoff.base_interval: missing or under 1ms"},
		{`listeners: [{address: "127.0.0.1:0", http: {cluster: echo, filters: [{name: x, reload_config: {backoff: {base_interval: 1s, max_interval: often}}, vm_config: {code: {local: {filename: a.wasm}}}}]}}]`,
			"listeners[0].http.filters[0].reload_config.backoff.max_interval"},
		{`listeners: [{address: "127.0.0.1:0", http: {cluster: echo, filters: [{name: x, configuration: {"@type": "type.googleapis.com/google.protobuf.Struct", value: {}}, vm_config: {code: {local: {filename: a.wasm}}}}]}}]`,
			"listeners[0].http.filters[0].configuration: @type"},
		{"admin: {plugin_metrics_prefix: 9x_}\nlisteners: []", `admin.plugin_metrics_prefix: "9x_": want the start of a Prometheus metric name`},
		{"admin: {plugin_metrics_prefix: \"a-b\"}\nlisteners: []", `admin.plugin_metrics_prefix: "a-b": want`},
		{"admin: {plugin_metrics_prefix: \"a:b_\"}\nlisteners: []", `admin.plugin_metrics_prefix: "a:b_": want`},
		{"admin: {plugin_metrics_prefix: __x}\nlisteners: []", `admin.plugin_metrics_prefix: "__x": names starting with __ are reserved`},
		{"admin: {plugin_metrics_prefix: go_}\nlisteners: []", `admin.plugin_metrics_prefix: "go_": in go_, the namespace of Go's metrics`},
		{"admin: {plugin_metrics_prefix: anywasm_proxy_plugin_}\nlisteners: []", `admin.plugin_metrics_prefix: "anywasm_proxy_plugin_": in anywasm_proxy_`},
		{`clusters: [{name: a, address: "x:1"}, {name: a, type: grpc, address: "y:1"}]
listeners: [{address: "127.0.0.1:0", tcp: {cluster: a}}]`, `clusters[1].name: duplicate cluster "a"`},
		{`listeners: [{address: "127.0.0.1:0", http: {cluster: echo, max_request_headers_kb: 0}}]`, "listeners[0].http.max_request_headers_kb: 0: want 1 to 8192"},
		{`listeners: [{address: "127.0.0.1:0", http: {cluster: echo, max_headers_count: -5}}]`, "listeners[0].http.max_headers_count: -5"},
		{`listeners: [{address: "127.0.0.1:0", http: {cluster: echo, max_connections: 0}}]`, "listeners[0].http.max_connections: 0"},
		{`listeners: [{address: "127.0.0.1:0", http: {cluster: echo, stream_idle_timeout: later}}]`, "listeners[0].http.stream_idle_timeout"},
		{`listeners: [{address: "127.0.0.1:0", http: {cluster: echo, request_timeout: -1s}}]`, "listeners[0].http.request_timeout"},
		{`listeners: [{address: "127.0.0.1:0", tcp: {cluster: t, idle_timeout: x}}]
clusters: [{name: t, type: tcp, address: "127.0.0.1:1"}]`, "listeners[0].tcp.idle_timeout"},
	} {
		_, err := proxy.ParseConfig([]byte(c.config))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s\n  got  %v\n  want %s", c.config, err, c.want)
		}
	}
	// A plugin file that does not load fails Start, naming the filter.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "bad.wasm"), []byte("not wasm"), 0o644)
	cfg, err := proxy.ParseConfig([]byte(`listeners: [{address: "127.0.0.1:0", http: {cluster: echo, filters: [{name: bad, vm_config: {code: {local: {filename: ` + filepath.Join(dir, "bad.wasm") + `}}}}]}}]`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := proxy.Start(context.Background(), cfg, proxy.Options{Logger: slog.New(&testlog.Sink{})}); err == nil || !strings.Contains(err.Error(), "listeners[0].http.filters[0] (plugin bad") {
		t.Errorf("bad plugin: %v", err)
	}
	if _, err := proxy.Start(context.Background(), cfg, proxy.Options{Runtime: "v8"}); err == nil || !strings.Contains(err.Error(), "-runtime v8") {
		t.Errorf("bad -runtime: %v", err)
	}
	// A compilation cache directory others may write is refused, naming
	// the field and the directory.
	cache := filepath.Join(dir, "cache")
	os.Mkdir(cache, 0o777)
	os.Chmod(cache, 0o777)
	cfg.CacheDir = cache
	for _, rt := range engine.Runtimes() {
		_, err := proxy.Start(context.Background(), cfg, proxy.Options{Runtime: rt, Logger: slog.New(&testlog.Sink{})})
		if err == nil || !strings.HasPrefix(err.Error(), "cache_dir: ") || !strings.Contains(err.Error(), cache) ||
			!errors.Is(err, engine.ErrCompilationCache) {
			t.Errorf("%s: cache_dir writable by others: %v", rt, err)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	// Write beside and rename, as a deployment would, so that a reload
	// never reads half a file.
	tmp := to + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}

// TestMemoryLimit: a plugin that allocates without end fails against
// memory_limit_mb (503, VM replaced) instead of taking the host's memory;
// a runtime that cannot cap memory is refused at start.
func TestMemoryLimit(t *testing.T) {
	b := newBackend(t)
	forEachRuntime(t, func(t *testing.T, rt string) {
		config := oneFilter("memory_limit_mb: 64", b.URL, "oom", plugins.Path(t, "trap"))
		info, _ := engine.Lookup(rt)
		if !info.Capabilities.Has(engine.CapMemoryLimit) {
			cfg, err := proxy.ParseConfig([]byte(config))
			if err != nil {
				t.Fatal(err)
			}
			_, err = proxy.Start(context.Background(), cfg, proxy.Options{Runtime: rt, Logger: slog.New(&testlog.Sink{})})
			if err == nil || !strings.Contains(err.Error(), "memory_limit_mb: runtime "+rt) {
				t.Errorf("%s: %v", rt, err)
			}
			return
		}
		h := start(t, rt, config)
		if r := h.do("GET", h.url("web", "/"), "", "X-Crash", "oom"); r.status != 503 || !strings.Contains(r.body, "plugin oom failed") {
			t.Errorf("oom: %d %q", r.status, r.body)
		}
		if r := h.do("GET", h.url("web", "/after"), ""); r.status != 200 || r.body != "path=/after body=" {
			t.Errorf("after: %d %q", r.status, r.body)
		}
	})
}

// TestGCBallast: the runtimes get engine.Config.WithGCBallast's default,
// and gc_ballast: false turns it off.
func TestGCBallast(t *testing.T) {
	b := newBackend(t)
	forEachRuntime(t, func(t *testing.T, rt string) {
		for _, c := range []struct {
			top  string
			want bool
		}{{"", true}, {"gc_ballast: true", true}, {"gc_ballast: false", false}} {
			h := start(t, rt, oneFilter(c.top, b.URL, "edge", plugins.Path(t, "headers")))
			cfgs := proxy.RuntimeConfigs(h.p)
			if len(cfgs) == 0 {
				t.Fatalf("%q: no runtime opened", c.top)
			}
			for n, cfg := range cfgs {
				if cfg.GCBallast() != c.want {
					t.Errorf("%q: runtime %s has GCBallast() = %v, want %v", c.top, n, cfg.GCBallast(), c.want)
				}
			}
		}
	})
}

// TestPluginLogLevel: a filter's log_level keeps its trace lines whatever
// the proxy's level, names them TRACE, and is what proxy_get_log_level
// answers; the other filter keeps the proxy's level.
func TestPluginLogLevel(t *testing.T) {
	edge, err := filepath.Abs(filepath.Join("..", "..", "abi", "testdata", "edge.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	forEachRuntime(t, func(t *testing.T, rt string) {
		var out strings.Builder
		var mu sync.Mutex
		w := writerFunc(func(b []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(b) })
		logger := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: abi.ReplaceLevelNames}))
		cfg, err := proxy.ParseConfig([]byte(fmt.Sprintf(`
reload_interval: 0s
listeners:
  - name: web
    address: 127.0.0.1:0
    http:
      cluster: echo
      filters:
        - {name: traced, log_level: trace, configuration: g, vm_config: {vm_id: a, code: {local: {filename: %q}}}}
        - {name: plain, configuration: g, vm_config: {vm_id: b, code: {local: {filename: %[1]q}}}}
`, edge)))
		if err != nil {
			t.Fatal(err)
		}
		p, err := proxy.Start(context.Background(), cfg, proxy.Options{Runtime: rt, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Shutdown(context.Background())
		resp, err := http.Get("http://" + p.Addr("web").String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		mu.Lock()
		logs := out.String()
		mu.Unlock()
		if !strings.Contains(logs, `level=TRACE msg="a trace line" plugin=traced`) || strings.Contains(logs, `msg="a trace line" plugin=plain`) {
			t.Errorf("trace lines: want traced's only\n%s", logs)
		}
		if !strings.Contains(logs, `msg="level 0" plugin=traced`) || !strings.Contains(logs, `msg="level 2" plugin=plain`) {
			t.Errorf("proxy_get_log_level: want 0 (trace) for traced, 2 (info) for plain\n%s", logs)
		}
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
