package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/internal/plugins"
	"github.com/anywasm/anywasm/internal/proxy"
)

// envoyYAML is an Envoy bootstrap as Envoy's docs write one: a listener
// through the Go-SDK headers plugin to a cluster, a route answered
// directly, an admin address.
const envoyYAML = `
static_resources:
  listeners:
    - name: ingress
      address:
        socket_address: {address: 127.0.0.1, port_value: 0}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: ingress_http
                codec_type: AUTO
                route_config:
                  name: local_route
                  virtual_hosts:
                    - name: all
                      domains: ["*"]
                      routes:
                        - match: {prefix: /static}
                          direct_response: {status: 200, body: {inline_string: "from envoy.yaml\n"}}
                        - match: {prefix: /}
                          route: {cluster: backend}
                http_filters:
                  - name: envoy.filters.http.wasm
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                      config:
                        name: headers
                        vm_config:
                          runtime: envoy.wasm.runtime.v8
                          code: {local: {filename: %q}}
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
    - name: backend
      connect_timeout: 1s
      type: STATIC
      load_assignment:
        cluster_name: backend
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address: {address: 127.0.0.1, port_value: %s}
admin:
  access_log_path: /dev/null
  address:
    socket_address: {address: 127.0.0.1, port_value: 0}
`

// TestEnvoyConfig starts the proxy from an Envoy file (found by its keys,
// -config-format auto) on every runtime (-runtime overrides the file's
// v8): a request goes through the headers plugin to the backend, a
// direct_response route answers after it, and the plugin runs on the
// runtime asked for.
func TestEnvoyConfig(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "backend %s seen=%s", r.URL.Path, r.Header.Get("X-Anywasm-Seen"))
	}))
	defer backend.Close()
	port := backend.URL[strings.LastIndexByte(backend.URL, ':')+1:]
	f := filepath.Join(t.TempDir(), "envoy.yaml")
	os.WriteFile(f, []byte(fmt.Sprintf(envoyYAML, plugins.Path(t, "headers"), port)), 0o644)

	for _, rt := range engine.Runtimes() {
		t.Run(rt, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			ready := make(chan *proxy.Proxy, 1)
			done := make(chan int)
			var logs bytes.Buffer
			go func() {
				done <- run(ctx, []string{"-config", f, "-runtime", rt, "-log-format", "json"}, io.Discard, &logs, ready)
			}()
			var p *proxy.Proxy
			select {
			case p = <-ready:
			case code := <-done:
				t.Fatalf("exited %d: %s", code, logs.String())
			}
			get := func(path string) (*http.Response, string) {
				t.Helper()
				resp, err := http.Get("http://" + p.Addr("ingress").String() + path)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp, string(b)
			}
			if resp, body := get("/hello"); resp.StatusCode != 200 || resp.Header.Get("X-Anywasm-Plugin") != "headers" ||
				!strings.HasPrefix(body, "backend /hello seen=") || body == "backend /hello seen=" {
				t.Errorf("through the plugin: %d %v %q", resp.StatusCode, resp.Header, body)
			}
			if resp, body := get("/static"); resp.StatusCode != 200 || body != "from envoy.yaml\n" || resp.Header.Get("X-Anywasm-Plugin") != "headers" {
				t.Errorf("direct_response: %d %v %q", resp.StatusCode, resp.Header, body)
			}
			_, body := func() (*http.Response, string) {
				resp, err := http.Get("http://" + p.AdminAddr().String() + "/plugins")
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp, string(b)
			}()
			var ps []map[string]any
			if err := json.Unmarshal([]byte(body), &ps); err != nil || len(ps) != 1 || ps[0]["runtime"] != rt || ps[0]["name"] != "headers" {
				t.Errorf("/plugins: %v %s", err, body)
			}
			cancel()
			if code := <-done; code != 0 {
				t.Errorf("exit %d", code)
			}
			for _, want := range []string{`"msg":"configuration read as an Envoy bootstrap"`,
				`"msg":"runtime envoy.wasm.runtime.v8 is Envoy's, not anywasm's: the plugin runs on the default runtime","plugin":"headers"`} {
				if !strings.Contains(logs.String(), want) {
					t.Errorf("no %s in the logs:\n%s", want, logs.String())
				}
			}
		})
	}

	// Named as the proxy's format, the file is refused by its first key;
	// an unknown format is a usage error.
	var errb bytes.Buffer
	if code := run(context.Background(), []string{"-config", f, "-config-format", "anywasm", "-check"}, io.Discard, &errb, nil); code != 1 ||
		!strings.Contains(errb.String(), "static_resources: unknown field") {
		t.Errorf("-config-format anywasm: %d %q", code, errb.String())
	}
	errb.Reset()
	if code := run(context.Background(), []string{"-config", f, "-config-format", "xds"}, io.Discard, &errb, nil); code != 2 {
		t.Errorf("-config-format xds: %d %q", code, errb.String())
	}
	// A refusal names the Envoy field.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(strings.Replace(fmt.Sprintf(envoyYAML, "x.wasm", port), "codec_type: AUTO", "codec_type: AUTO\n                use_remote_address: true", 1)), 0o644)
	errb.Reset()
	if code := run(context.Background(), []string{"-config", bad, "-check"}, io.Discard, &errb, nil); code != 1 ||
		!strings.Contains(errb.String(), "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.use_remote_address: not supported by anywasm") {
		t.Errorf("a refused field: %d %q", code, errb.String())
	}
}

// TestEnvoyStats runs an Envoy file written like the Go SDK's metrics
// example (stats_config.stats_tags with two regexes; our own plugin and
// file, internal/envoyconfig/testdata/metrics.yaml) on every runtime,
// sends requests with x-tag-value foo three times and bar five times, and
// reads the admin's /stats/prometheus as the SDK's e2e test does: the tags
// come out of the names, in the configuration's order, under the name
// without the wasmcustom namespace and without "envoy_".
func TestEnvoyStats(t *testing.T) {
	src, err := os.ReadFile("../../internal/envoyconfig/testdata/metrics.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "envoy.yaml")
	yaml := strings.Replace(string(src), "filename: tagged.wasm", fmt.Sprintf("filename: %q", plugins.Path(t, "tagged")), 1)
	if err := os.WriteFile(f, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, rt := range engine.Runtimes() {
		t.Run(rt, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			ready := make(chan *proxy.Proxy, 1)
			done := make(chan int)
			var logs bytes.Buffer
			go func() {
				done <- run(ctx, []string{"-config", f, "-runtime", rt, "-log-format", "json"}, io.Discard, &logs, ready)
			}()
			var p *proxy.Proxy
			select {
			case p = <-ready:
			case code := <-done:
				t.Fatalf("exited %d: %s", code, logs.String())
			}
			defer func() {
				cancel()
				if code := <-done; code != 0 {
					t.Errorf("exit %d: %s", code, logs.String())
				}
			}()
			for value, n := range map[string]int{"foo": 3, "bar": 5} {
				for range n {
					req, _ := http.NewRequest("GET", "http://"+p.Addr("main").String()+"/", nil)
					req.Header.Set("x-tag-value", value)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 || string(b) != "counted\n" {
						t.Fatalf("%s: %d %q", value, resp.StatusCode, b)
					}
				}
			}
			admin := func(path string) string {
				t.Helper()
				resp, err := http.Get("http://" + p.AdminAddr().String() + path)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 {
					t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
				}
				return string(b)
			}
			prom := admin("/stats/prometheus")
			// The SDK e2e test's check: these lines are in the output.
			for _, want := range []string{`tagged_requests{value="foo",reporter="anywasm"} 3`, `tagged_requests{value="bar",reporter="anywasm"} 5`} {
				if !slices.Contains(strings.Split(prom, "\n"), want) {
					t.Errorf("/stats/prometheus has no line %s:\n%s", want, prom)
				}
			}
			// And the whole of it, as Envoy writes it: the counters' family,
			// its stats by name, then the histogram (every value was 3).
			const wantProm = `# TYPE tagged_requests counter
tagged_requests{value="bar",reporter="anywasm"} 5
tagged_requests{value="foo",reporter="anywasm"} 3
# TYPE tagged_header_bytes histogram
tagged_header_bytes_bucket{reporter="anywasm",le="3"} 8
tagged_header_bytes_bucket{reporter="anywasm",le="+Inf"} 8
tagged_header_bytes_sum{reporter="anywasm"} 24
tagged_header_bytes_count{reporter="anywasm"} 8
`
			if prom != wantProm {
				t.Errorf("/stats/prometheus:\n%s\nwant\n%s", prom, wantProm)
			}
			if got, want := admin("/stats"), "wasmcustom.tagged_requests_value=bar_reporter=anywasm: 5\nwasmcustom.tagged_requests_value=foo_reporter=anywasm: 3\n"; got != want {
				t.Errorf("/stats:\n%s\nwant\n%s", got, want)
			}
			// /metrics is the proxy's own exposition, unchanged.
			if m := admin("/metrics"); !strings.Contains(m, `anywasm_plugin_tagged_requests_value_foo_reporter_anywasm_total{runtime="`+rt+`"} 3`) {
				t.Errorf("/metrics has no tagged counter:\n%s", m)
			}
		})
	}
}

// TestEnvoyPluginNameAndLogs: a Wasm filter whose config has no name is,
// as in Envoy, a plugin with an empty name: its plugin_name attribute is
// empty and -log-format envoy writes its logs as Envoy does, "wasm log:
// message"; a named one's as "wasm log NAME: message". The proxy still
// names the first after its filter (/plugins).
func TestEnvoyPluginNameAndLogs(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "plugin_name=%q", r.Header.Values("X-Plugin-Name"))
	}))
	defer backend.Close()
	port := backend.URL[strings.LastIndexByte(backend.URL, ':')+1:]
	filter := func(name string) string {
		n := ""
		if name != "" {
			n = "\n                        name: " + name
		}
		return fmt.Sprintf(`
                  - name: envoy.filters.http.wasm
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                      config:%s
                        configuration: {"@type": type.googleapis.com/google.protobuf.StringValue, value: "request plugin_name"}
                        vm_config: {runtime: envoy.wasm.runtime.v8, code: {local: {filename: %s}}}`, n, plugins.Path(t, "props"))
	}
	cfg := fmt.Sprintf(`static_resources:
  listeners:
    - name: ingress
      address: {socket_address: {address: 127.0.0.1, port_value: 0}}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: ingress
                route_config:
                  virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: backend}}]}]
                http_filters:%s%s
                  - name: envoy.filters.http.router
                    typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
    - name: backend
      load_assignment:
        cluster_name: backend
        endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}}]}]
`, filter(""), filter("named"), port)
	f := filepath.Join(t.TempDir(), "envoy.yaml")
	os.WriteFile(f, []byte(cfg), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *proxy.Proxy, 1)
	done := make(chan int)
	logs := &syncBuffer{}
	go func() {
		done <- run(ctx, []string{"-config", f, "-log-format", "envoy"}, io.Discard, logs, ready)
	}()
	var p *proxy.Proxy
	select {
	case p = <-ready:
	case code := <-done:
		t.Fatalf("exited %d: %s", code, logs.String())
	}
	resp, err := http.Get("http://" + p.Addr("ingress").String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit %d", code)
	}
	if string(body) != `plugin_name=["" "named"]` {
		t.Errorf("the plugins saw plugin_name %s", body)
	}
	out := logs.String()
	for _, want := range []string{
		"[info][wasm] wasm log: attr request plugin_name = hex:\n",
		"[info][wasm] wasm log named: attr request plugin_name = hex:6e616d6564\n",
		"[info][anywasm] proxy started ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the logs lack %q:\n%s", want, out)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the command's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
