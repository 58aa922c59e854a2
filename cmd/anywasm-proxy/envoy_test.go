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
	"strings"
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
