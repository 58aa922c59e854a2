package proxy_test

import (
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/internal/plugins"
	"github.com/anywasm/anywasm/internal/proxy"
)

// TestRoutesAndAttributes: route_config routes by host and path (Envoy's
// domain order: exact, suffix and prefix wildcards, "*"), 404 for no
// route; the plugins read the node, the listener's metadata and
// direction, the route's and the cluster's names and metadata, the
// connection id and the upstream, from the configuration.
func TestRoutesAndAttributes(t *testing.T) {
	b := newBackend(t)
	reads := strings.Join([]string{
		"configure node/id", "configure listener_direction",
		"configure listener_metadata/filter_metadata/test/k",
		"request xds/route_name", "request xds/virtual_host_name", "request xds/cluster_name",
		"request route_metadata/filter_metadata/envoy.filters.http.wasm/auth",
		"request xds/cluster_metadata/filter_metadata/istio/app",
		"request connection/id", "request upstream/address",
		"response upstream/address", "response response/code_details", "request xds/node/metadata/zone",
	}, "\n")
	cfg := fmt.Sprintf(`
reload_interval: 0s
node: {id: edge-1, cluster: edge, metadata: {zone: z1}}
clusters:
  - {name: backend, address: %q, metadata: {filter_metadata: {istio: {app: be}}}}
listeners:
  - name: web
    address: 127.0.0.1:0
    traffic_direction: INBOUND
    metadata: {filter_metadata: {test: {k: lv}}}
    http:
      route_config:
        virtual_hosts:
          - name: api
            domains: [api.example.com, "*.api.example.com"]
            routes:
              - name: admin
                match: {prefix: /admin}
                route: {cluster: backend}
                metadata: {filter_metadata: {envoy.filters.http.wasm: {auth: x-token}}}
              - name: exact
                match: {path: /exact}
                route: {cluster: echo}
          - name: rest
            domains: ["*"]
            routes:
              - {name: all, match: {prefix: /}, route: {cluster: backend}}
      filters:
        - name: props
          configuration: %q
          vm_config: {vm_id: props, code: {local: {filename: %q}}}
`, b.URL[len("http://"):], reads, plugins.Path(t, "props"))
	forEachRuntime(t, func(t *testing.T, rt string) {
		h := start(t, rt, cfg)
		do := func(host, path string) reply {
			t.Helper()
			req, _ := http.NewRequest("GET", h.url("web", path), nil)
			req.Host = host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return reply{status: resp.StatusCode, header: resp.Header, body: string(body)}
		}
		if r := do("api.example.com", "/admin/x"); r.status != 200 || !strings.HasPrefix(r.body, "path=/admin/x") {
			t.Errorf("admin: %d %q", r.status, r.body)
		}
		hx := func(s string) string { return "hex:" + hex.EncodeToString([]byte(s)) }
		for _, want := range []string{
			"attr configure node/id = " + hx("edge-1"),
			"attr configure listener_direction = hex:0100000000000000",
			"attr configure listener_metadata/filter_metadata/test/k = " + hx("lv"),
			"attr request xds/route_name = " + hx("admin"),
			"attr request xds/virtual_host_name = " + hx("api"),
			"attr request xds/cluster_name = " + hx("backend"),
			"attr request route_metadata/filter_metadata/envoy.filters.http.wasm/auth = " + hx("x-token"),
			"attr request xds/cluster_metadata/filter_metadata/istio/app = " + hx("be"),
			"attr request xds/node/metadata/zone = " + hx("z1"),
			"attr request upstream/address = error:",
			"attr response upstream/address = " + hx(b.Listener.Addr().String()),
			"attr response response/code_details = " + hx("via_upstream"),
		} {
			if !h.logs.Has(want) {
				t.Errorf("no %q in the logs:\n%s", want, h.logs)
			}
		}
		if !h.logs.Has("attr request connection/id = hex:") {
			t.Errorf("no connection id:\n%s", h.logs)
		}
		// The echo cluster by exact path, under a suffix wildcard, with the
		// request's port ignored.
		if r := do("v2.api.example.com:8080", "/exact"); r.status != 200 || !strings.HasPrefix(r.body, "GET /exact HTTP/1.1") {
			t.Errorf("exact: %d %q", r.status, r.body)
		}
		if r := do("api.example.com", "/exact/more"); r.status != 404 {
			t.Errorf("no route: %d %q", r.status, r.body)
		}
		if !h.logs.Has("attr response response/code_details = " + hx("route_not_found")) {
			t.Errorf("no route_not_found details:\n%s", h.logs)
		}
		if r := do("other.test", "/anything"); r.status != 200 || !strings.HasPrefix(r.body, "path=/anything") {
			t.Errorf("catch-all: %d %q", r.status, r.body)
		}
		if !h.logs.Has("attr request xds/route_name = " + hx("all")) {
			t.Errorf("catch-all route name:\n%s", h.logs)
		}
	})
}

// TestDirectResponse: a route's direct_response answers after the plugins
// (which see it in their response callbacks, details direct_response, no
// cluster), beside a route to a cluster.
func TestDirectResponse(t *testing.T) {
	reads := "response response/code_details\nresponse xds/route_name\nresponse xds/cluster_name"
	cfg := fmt.Sprintf(`
reload_interval: 0s
listeners:
  - name: web
    address: 127.0.0.1:0
    http:
      route_config:
        virtual_hosts:
          - name: all
            domains: ["*"]
            routes:
              - {name: static, match: {prefix: /static}, direct_response: {status: 201, body: {inline_string: "example body\n"}}}
              - {name: empty, match: {path: /empty}, direct_response: {status: 204}}
              - {name: echo, match: {prefix: /}, route: {cluster: echo}}
      filters:
        - name: props
          configuration: %q
          vm_config: {vm_id: props, code: {local: {filename: %q}}}
`, reads, plugins.Path(t, "props"))
	forEachRuntime(t, func(t *testing.T, rt string) {
		h := start(t, rt, cfg)
		r := h.do("GET", h.url("web", "/static/x"), "")
		if r.status != 201 || r.body != "example body\n" || r.header.Get("Content-Type") != "text/plain" {
			t.Errorf("direct response: %d %v %q", r.status, r.header, r.body)
		}
		hx := func(s string) string { return "hex:" + hex.EncodeToString([]byte(s)) }
		for _, want := range []string{
			"attr response response/code_details = " + hx("direct_response"),
			"attr response xds/route_name = " + hx("static"),
			"attr response xds/cluster_name = error:",
		} {
			if !h.logs.Has(want) {
				t.Errorf("no %q in the logs:\n%s", want, h.logs)
			}
		}
		if r := h.do("GET", h.url("web", "/empty"), ""); r.status != 204 || r.body != "" {
			t.Errorf("no body: %d %q", r.status, r.body)
		}
		if r := h.do("GET", h.url("web", "/other"), ""); r.status != 200 || !strings.HasPrefix(r.body, "GET /other HTTP/1.1") {
			t.Errorf("echo: %d %q", r.status, r.body)
		}
	})
}

// TestRouteConfigRefused: route_config mistakes name their field.
func TestRouteConfigRefused(t *testing.T) {
	for _, c := range []struct{ http, want string }{
		{`{cluster: echo, route_config: {virtual_hosts: [{name: a, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: echo}}]}]}}`,
			"listeners[0].http.cluster: set with route_config"},
		{`{route_config: {virtual_hosts: []}}`, "listeners[0].http.route_config.virtual_hosts: none"},
		{`{route_config: {virtual_hosts: [{name: a, domains: [], routes: [{match: {prefix: /}, route: {cluster: echo}}]}]}}`,
			"listeners[0].http.route_config.virtual_hosts[0].domains: none"},
		{`{route_config: {virtual_hosts: [{name: a, domains: ["a*b"], routes: [{match: {prefix: /}, route: {cluster: echo}}]}]}}`,
			"virtual_hosts[0].domains[0]: \"a*b\": a wildcard goes at the start or the end only"},
		{`{route_config: {virtual_hosts: [{name: a, domains: ["*"], routes: [{match: {prefix: /, path: /x}, route: {cluster: echo}}]}]}}`,
			"virtual_hosts[0].routes[0].match: more than one of prefix, path and safe_regex"},
		{`{route_config: {virtual_hosts: [{name: a, domains: ["*"], routes: [{match: {prefix: x}, route: {cluster: echo}}]}]}}`,
			"routes[0].match: \"x\": a path starts with /"},
		{`{route_config: {virtual_hosts: [{name: a, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: nope}}]}]}}`,
			"routes[0].route.cluster: unknown cluster \"nope\""},
		{`{route_config: {virtual_hosts: [{name: a, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: echo}}]}, {name: b, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: echo}}]}]}}`,
			"virtual_hosts[1].domains[0]: \"*\" is in two virtual hosts"},
		{`{route_config: {virtual_hosts: [{name: a, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: echo}, direct_response: {status: 200}}]}]}}`,
			"routes[0].route.cluster: set with direct_response: give one"},
		{`{route_config: {virtual_hosts: [{name: a, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 99}}]}]}}`,
			"routes[0].direct_response.status: 99: want 200 to 599"},
		{`{route_config: {virtual_hosts: [{name: a, domains: ["*"], routes: [{match: {prefix: /}}]}]}}`,
			"routes[0].route.cluster: missing (or give direct_response)"},
	} {
		_, err := proxy.ParseConfig([]byte("listeners: [{address: \"127.0.0.1:0\", http: " + c.http + "}]\n"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.http, err, c.want)
		}
	}
	_, err := proxy.ParseConfig([]byte("listeners: [{address: \"127.0.0.1:0\", traffic_direction: SIDEWAYS, http: {cluster: echo}}]\n"))
	if err == nil || !strings.Contains(err.Error(), "listeners[0].traffic_direction: \"SIDEWAYS\"") {
		t.Errorf("traffic_direction: %v", err)
	}
}

// TestForeignFunctions: plugins get Envoy's foreign functions (CEL
// included); a filter's foreign_functions restricts them; an unknown name
// is refused at start.
func TestForeignFunctions(t *testing.T) {
	cfg := fmt.Sprintf(`
reload_interval: 0s
listeners:
  - name: all
    address: 127.0.0.1:0
    http:
      cluster: echo
      filters:
        - {name: all, vm_config: {vm_id: all, code: {local: {filename: %[1]q}}}}
  - name: some
    address: 127.0.0.1:0
    http:
      cluster: echo
      filters:
        - {name: some, foreign_functions: [compress], vm_config: {vm_id: some, code: {local: {filename: %[1]q}}}}
`, plugins.Path(t, "foreign"))
	forEachRuntime(t, func(t *testing.T, rt string) {
		h := start(t, rt, cfg)
		r := h.do("GET", h.url("all", "/x"), "", "X-Function", "expr_create", "X-Input", "request.path")
		if !strings.Contains(r.body, "x-output-hex: 00000000") {
			t.Errorf("expr_create: %d %q", r.status, r.body)
		}
		r = h.do("GET", h.url("all", "/x"), "", "X-Function", "expr_evaluate", "X-Input-Hex", "00000000")
		if !strings.Contains(r.body, "x-output: /x\n") {
			t.Errorf("expr_evaluate: %d %q", r.status, r.body)
		}
		r = h.do("GET", h.url("some", "/x"), "", "X-Function", "uncompress", "X-Input", "x")
		if !strings.Contains(r.body, "x-status: error status returned by host: not found") {
			t.Errorf("a function the filter does not allow: %d %q", r.status, r.body)
		}
		r = h.do("GET", h.url("some", "/x"), "", "X-Function", "compress", "X-Input", "x")
		if !strings.Contains(r.body, "x-output-hex: 78") { // zlib's header
			t.Errorf("compress: %d %q", r.status, r.body)
		}
	})
	_, err := proxy.ParseConfig([]byte(`listeners: [{address: "127.0.0.1:0", http: {cluster: echo, filters: [{name: a, foreign_functions: [nope], vm_config: {code: {local: {filename: a.wasm}}}}]}}]`))
	if err == nil || !strings.Contains(err.Error(), `listeners[0].http.filters[0].foreign_functions[0]: "nope": the proxy has clear_route_cache, compress, declare_property, expr_create`) {
		t.Errorf("unknown foreign function: %v", err)
	}
}
