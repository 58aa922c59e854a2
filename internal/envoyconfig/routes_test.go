package envoyconfig_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anywasm/anywasm/internal/envoyconfig"
	"github.com/anywasm/anywasm/internal/proxy"
)

// routesBootstrap routes by header, method, regular expression and query
// parameter, to clusters of several endpoints under each lb_policy and
// discovery type; %s are the three upstreams' ports.
const routesBootstrap = `
static_resources:
  listeners:
    - name: web
      address: {socket_address: {address: 127.0.0.1, port_value: 0}}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: web
                route_config:
                  virtual_hosts:
                    - name: all
                      domains: ["*"]
                      routes:
                        - match:
                            prefix: /
                            headers:
                              - {name: x-version, string_match: {exact: V2, ignore_case: true}}
                              - {name: x-canary, present_match: true, invert_match: true}
                          route: {cluster: random}
                        - match:
                            safe_regex: {google_re2: {}, regex: "/items/[0-9]+"}
                            query_parameters: [{name: debug, present_match: true}]
                          route: {cluster: least}
                        - match:
                            prefix: /Static
                            case_sensitive: false
                            headers: [{name: ":method", exact_match: GET}]
                          direct_response: {status: 200, body: {inline_string: static}}
                        - match: {prefix: ""}
                          route: {cluster: rr}
                http_filters:
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
    - name: rr
      load_assignment:
        cluster_name: rr
        endpoints:
          - lb_endpoints:
              - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %[1]s}}}
              - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %[2]s}}}
          - lb_endpoints:
              - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %[3]s}}}
    - name: random
      type: STRICT_DNS
      lb_policy: RANDOM
      dns_refresh_rate: 2s
      dns_lookup_family: V4_ONLY
      load_assignment:
        cluster_name: random
        endpoints:
          - lb_endpoints:
              - endpoint: {address: {socket_address: {address: localhost, port_value: %[1]s}}}
              - endpoint: {address: {socket_address: {address: localhost, port_value: %[2]s}}}
              - endpoint: {address: {socket_address: {address: localhost, port_value: %[3]s}}}
    - name: least
      type: LOGICAL_DNS
      lb_policy: LEAST_REQUEST
      load_assignment:
        cluster_name: least
        endpoints:
          - lb_endpoints:
              - endpoint: {address: {socket_address: {address: localhost, port_value: %[3]s}}}
`

// TestTranslateRoutesAndEndpoints: the bootstrap above becomes this, in
// the proxy's own format.
func TestTranslateRoutesAndEndpoints(t *testing.T) {
	got, _, err := envoyconfig.Parse(fmt.Appendf(nil, routesBootstrap, "8001", "8002", "8003"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := proxy.ParseConfig([]byte(`
listeners:
  - name: web
    address: 127.0.0.1:0
    http:
      server_name: envoy
      server_header_transformation: OVERWRITE
      route_config:
        virtual_hosts:
          - name: all
            domains: ["*"]
            routes:
              - match:
                  prefix: /
                  headers:
                    - {name: x-version, string_match: {exact: V2, ignore_case: true}}
                    - {name: x-canary, present_match: true, invert_match: true}
                route: {cluster: random}
              - match:
                  safe_regex: {regex: "/items/[0-9]+"}
                  query_parameters: [{name: debug, present_match: true}]
                route: {cluster: least}
              - match:
                  prefix: /Static
                  case_sensitive: false
                  headers: [{name: ":method", exact_match: GET}]
                direct_response: {status: 200, body: {inline_string: static}}
              - match: {prefix: /}
                route: {cluster: rr}
clusters:
  - {name: rr, type: http, endpoints: ["127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003"]}
  - {name: random, type: http, endpoints: ["localhost:8001", "localhost:8002", "localhost:8003"], lb_policy: RANDOM,
     discovery: strict_dns, dns_refresh_rate: 2s, dns_lookup_family: V4_ONLY}
  - {name: least, type: http, address: "localhost:8003", lb_policy: LEAST_REQUEST, discovery: logical_dns}
`))
	if err != nil {
		t.Fatalf("the expected configuration: %v", err)
	}
	if g, w := asJSON(t, got), asJSON(t, want); !reflect.DeepEqual(g, w) {
		gj, _ := json.MarshalIndent(g, "", "  ")
		wj, _ := json.MarshalIndent(w, "", "  ")
		t.Errorf("got\n%s\nwant\n%s", gj, wj)
	}
}

// TestRoutesAndEndpoints runs the bootstrap above: each route takes what
// its match says, round robin gives each of three endpoints (over two
// localities) a third of 30 requests, STRICT_DNS resolves localhost for
// each of its endpoints and RANDOM reaches them all.
func TestRoutesAndEndpoints(t *testing.T) {
	var mu sync.Mutex
	count := map[string]int{}
	var ports []any
	for i := range 3 {
		name := fmt.Sprintf("b%d", i)
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			count[name]++
			mu.Unlock()
			io.WriteString(w, name)
		}))
		t.Cleanup(s.Close)
		ports = append(ports, s.Listener.Addr().String()[strings.LastIndexByte(s.Listener.Addr().String(), ':')+1:])
	}
	cfg, _, err := envoyconfig.Parse(fmt.Appendf(nil, routesBootstrap, ports...))
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.Start(context.Background(), cfg, proxy.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	do := func(method, path string, hdr ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+p.Addr("web").String()+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Add(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	reset := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		c := count
		count = map[string]int{}
		return c
	}
	for range 30 {
		if code, _ := do("GET", "/"); code != 200 {
			t.Fatalf("rr: %d", code)
		}
	}
	if c := reset(); c["b0"] != 10 || c["b1"] != 10 || c["b2"] != 10 {
		t.Errorf("round robin: %v, want 10 each", c)
	}
	for range 60 {
		if code, _ := do("GET", "/", "X-Version", "v2"); code != 200 {
			t.Fatalf("random: %d", code)
		}
	}
	if c := reset(); c["b0"] == 0 || c["b1"] == 0 || c["b2"] == 0 {
		t.Errorf("random over strict_dns: %v, want every endpoint", c)
	}
	for _, c := range []struct {
		method, path string
		hdr          []string
		want         string
	}{
		{"GET", "/items/7?debug=1", nil, "b2"}, // least: its one endpoint
		{"GET", "/items/7?debug=1", []string{"X-Version", "V2", "X-Canary", "y"}, "b2"},
		{"GET", "/static/a", nil, "static"},
		{"POST", "/static/a", nil, ""}, // to rr: any of the three
	} {
		code, body := do(c.method, c.path, c.hdr...)
		if code != 200 || (c.want != "" && body != c.want) || (c.want == "" && !strings.HasPrefix(body, "b")) {
			t.Errorf("%s %s %v: %d %q, want %q", c.method, c.path, c.hdr, code, body, c.want)
		}
	}
}
