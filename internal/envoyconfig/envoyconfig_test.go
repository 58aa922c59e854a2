package envoyconfig_test

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/anywasm/anywasm/engine"
	_ "github.com/anywasm/anywasm/engine/all"
	"github.com/anywasm/anywasm/internal/envoyconfig"
	"github.com/anywasm/anywasm/internal/proxy"
)

// wasmtime is what envoy.wasm.runtime.wasmtime becomes in this binary.
func wasmtime() string {
	if slices.Contains(engine.Runtimes(), "wasmtime") {
		return "wasmtime"
	}
	return `""`
}

// TestTranslate translates Envoy files, written as Envoy's docs and the Go
// SDK's examples write them, into the proxy's configuration, written in
// the proxy's own format.
func TestTranslate(t *testing.T) {
	for _, c := range []struct {
		file, want string
		notes      []string // fields
	}{
		{"headers.yaml", `
node: {id: edge-1, cluster: edge, metadata: {zone: z1}}
admin: {address: "127.0.0.1:9901"}
listeners:
  - name: ingress
    address: 127.0.0.1:10000
    http:
      server_name: envoy
      server_header_transformation: OVERWRITE
      route_config:
        virtual_hosts:
          - {name: backend, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: upstream}}]}
      filters:
        - name: headers
          root_id: headers_root
          configuration: "{\"header\": \"x-wasm-header\", \"value\": \"demo\"}\n"
          vm_config: {vm_id: headers_vm, code: {local: {filename: headers.wasm}}}
  - name: static
    address: 127.0.0.1:10001
    http:
      server_name: envoy
      server_header_transformation: OVERWRITE
      route_config:
        virtual_hosts:
          - {name: static, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 200, body: {inline_string: "static body\n"}}}]}
clusters:
  - {name: upstream, type: http, address: 127.0.0.1:10001}
`, []string{"static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.value.config.vm_config.runtime"}},
		{"metrics.yaml", `
admin: {address: "127.0.0.1:0"}
stats:
  use_all_default_tags: true
  stats_tags:
    - {tag_name: value, regex: "(_value=([a-z]+))"}
    - {tag_name: reporter, regex: "(_reporter=([a-z]+))"}
listeners:
  - name: main
    address: 127.0.0.1:0
    http:
      server_name: envoy
      server_header_transformation: OVERWRITE
      route_config:
        virtual_hosts:
          - {name: local_service, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 200, body: {inline_string: "counted\n"}}}]}
      filters:
        - {name: envoy.filters.http.wasm, vm_config: {code: {local: {filename: tagged.wasm}}}}
`, []string{"static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.value.config.vm_config.runtime"}},
		{"shared_queue.yaml", `
admin: {address: "127.0.0.1:8001"}
wasm_services:
  - name: receiver-requests
    singleton: true
    configuration: http_request_headers
    vm_config: {vm_id: receiver, code: {local: {filename: receiver.wasm}}}
  - name: envoy.bootstrap.wasm
    configuration: tcp_data_hashes
    vm_config: {vm_id: receiver, runtime: ` + wasmtime() + `, code: {local: {filename: receiver.wasm}}}
listeners:
  - name: http
    address: 0.0.0.0:18000
    http:
      server_name: envoy
      server_header_transformation: OVERWRITE
      route_config:
        virtual_hosts:
          - {name: local, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 200}}]}
      filters:
        - {name: sender-http, configuration: http, vm_config: {vm_id: sender, code: {local: {filename: sender.wasm}}}}
  - name: tcp
    address: 0.0.0.0:18001
    tcp:
      cluster: admin
      filters:
        - {name: sender-tcp, configuration: tcp, vm_config: {vm_id: sender, code: {local: {filename: sender.wasm}}}}
clusters:
  - {name: admin, type: tcp, address: "localhost:8001", discovery: strict_dns}
`, nil},
		{"network.yaml", `
listeners:
  - name: main
    address: "[::1]:18000"
    tcp:
      cluster: web_service
      idle_timeout: 1m30s
      filters:
        - {name: envoy.filters.network.wasm, vm_config: {code: {local: {filename: /plugins/network.wasm}}}}
        - {name: counter, fail_open: true, vm_config: {vm_id: counter, code: {local: {inline_bytes: AGFzbQEAAAA=}}}}
clusters:
  - name: web_service
    type: tcp
    address: backend.internal:8099
    discovery: logical_dns
    metadata: {filter_metadata: {location: {cloud_provider: aws, region: ap-northeast-1}}}
`, []string{
			"static_resources.listeners[0].filter_chains[0].filters[0].typed_config.config.vm_config.runtime",
			"static_resources.listeners[0].filter_chains[0].filters[1].typed_config.config.vm_config.runtime",
		}},
		{"properties.yaml", `
listeners:
  - name: main
    address: 127.0.0.1:18000
    traffic_direction: INBOUND
    metadata: {filter_metadata: {envoy.filters.http.wasm: {tier: edge}}}
    http:
      server_name: envoy
      server_header_transformation: OVERWRITE
      codec_type: HTTP1
      max_request_headers_kb: 32
      max_headers_count: 50
      request_timeout: 30s
      request_headers_timeout: 5s
      stream_idle_timeout: 2m0s
      idle_timeout: 10m0s
      route_config:
        virtual_hosts:
          - name: local_service
            domains: [example.com, "*.example.com"]
            metadata: {filter_metadata: {envoy.filters.http.wasm: {vhost: local}}}
            routes:
              - {name: one, match: {prefix: /one}, route: {cluster: web_service}, metadata: {filter_metadata: {envoy.filters.http.wasm: {auth: cookie}}}}
              - {match: {path: /two}, route: {cluster: web_service}, metadata: {filter_metadata: {envoy.filters.http.wasm: {auth: authorization}}}}
              - {match: {prefix: /}, route: {cluster: web_service}}
      filters:
        - name: properties
          failure_policy: FAIL_RELOAD
          reload_config: {backoff: {base_interval: 250ms}}
          vm_config:
            vm_id: props
            runtime: ` + wasmtime() + `
            code: {local: {filename: properties.wasm}}
            configuration: {"@type": type.googleapis.com/google.protobuf.BytesValue, value: dm0tY29uZg==}
            environment_variables: {host_env_keys: [HOME], key_values: {MODE: test}}
clusters:
  - {name: web_service, type: http, address: 127.0.0.1:8099}
  - {name: grpc_service, type: grpc, address: 127.0.0.1:50051}
`, nil},
	} {
		t.Run(c.file, func(t *testing.T) {
			b, err := os.ReadFile("testdata/" + c.file)
			if err != nil {
				t.Fatal(err)
			}
			got, notes, err := envoyconfig.Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			want, err := proxy.ParseConfig([]byte(c.want))
			if err != nil {
				t.Fatalf("the expected configuration: %v", err)
			}
			if g, w := asJSON(t, got), asJSON(t, want); !reflect.DeepEqual(g, w) {
				gj, _ := json.MarshalIndent(g, "", "  ")
				wj, _ := json.MarshalIndent(w, "", "  ")
				t.Errorf("got\n%s\nwant\n%s", gj, wj)
			}
			var fields []string
			for _, n := range notes {
				if !strings.Contains(n.Message, "runs on the default runtime") || n.Plugin == "" {
					t.Errorf("note %+v", n)
				}
				if !strings.Contains(n.Message, "not in this binary") { // wasmtime, in a binary without it
					fields = append(fields, n.Field)
				}
			}
			if c.notes == nil && c.file == "shared_queue.yaml" {
				c.notes = []string{"bootstrap_extensions[0].typed_config.config.vm_config.runtime",
					"static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.config.vm_config.runtime",
					"static_resources.listeners[1].filter_chains[0].filters[0].typed_config.config.vm_config.runtime"}
			}
			if !slices.Equal(fields, c.notes) {
				t.Errorf("notes %q, want %q", fields, c.notes)
			}
		})
	}
}

func asJSON(t *testing.T, c *proxy.Config) any {
	t.Helper()
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(j, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// base is a small Envoy file that translates; the refusal cases edit it.
const base = `
static_resources:
  listeners:
    - name: web
      address: {socket_address: {address: 127.0.0.1, port_value: 10000}}
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
                          code: {local: {filename: headers.wasm}}
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
    - name: backend
      load_assignment:
        cluster_name: backend
        endpoints:
          - lb_endpoints:
              - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8080}}}
`

// TestRefused: what anywasm does not translate is refused with its path,
// never ignored; so is what Envoy itself refuses.
func TestRefused(t *testing.T) {
	if _, _, err := envoyconfig.Parse([]byte(base)); err != nil {
		t.Fatalf("base: %v", err)
	}
	const hcm = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"
	for _, c := range []struct {
		name, old, new, want string
	}{
		{"access_log", "stat_prefix: web\n", "stat_prefix: web\n                access_log: [{name: x, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]\n",
			hcm + ".access_log: not supported by anywasm"},
		{"an unknown @type", "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n                      config:", "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors\n                      config:",
			hcm + ".http_filters[0].typed_config.@type: type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors: not supported by anywasm"},
		{"a type of the wrong place", "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n                      config:\n                        name: headers\n                        vm_config:\n                          runtime: envoy.wasm.runtime.v8\n                          code: {local: {filename: headers.wasm}}",
			"type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
			hcm + ".http_filters[0].typed_config: envoy.extensions.filters.http.router.v3.Router here: not supported by anywasm (want envoy.extensions.filters.http.wasm.v3.Wasm)"},
		{"no router", "                  - name: envoy.filters.http.router\n                    typed_config:\n                      \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n", "",
			hcm + ".http_filters: the last filter must be envoy.filters.http.router"},
		{"a second filter chain", "  clusters:", "        - filters: []\n  clusters:",
			"static_resources.listeners[0].filter_chains[1]: a second filter chain: not supported by anywasm"},
		{"filter_chain_match", "        - filters:\n", "        - filter_chain_match: {server_names: [a.example.com]}\n          filters:\n",
			"static_resources.listeners[0].filter_chains[0].filter_chain_match: not supported by anywasm"},
		{"Envoy's validation of an extension", "stat_prefix: web\n", "\n",
			hcm + ": Envoy's validation: invalid HttpConnectionManager.StatPrefix"},
		{"Envoy's validation of the bootstrap", "port_value: 10000", "port_value: 70000",
			"Envoy's validation: invalid Bootstrap.StaticResources"},
		{"a field Envoy does not have", "stat_prefix: web\n", "stat_prefx: web\n",
			hcm + ".stat_prefx: unknown field (not in Envoy's envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager)"},
		{"an HTTP/3 listener", "stat_prefix: web\n", "stat_prefix: web\n                codec_type: http3\n",
			hcm + ".codec_type: HTTP3: not supported by anywasm (AUTO, HTTP1 or HTTP2)"},
		{"a listener's HTTP/2 option on a cluster", "    - name: backend\n", "    - name: backend\n      typed_extension_protocol_options: {envoy.extensions.upstreams.http.v3.HttpProtocolOptions: {\"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, explicit_http_config: {http2_protocol_options: {max_concurrent_streams: 10}}}}\n",
			"static_resources.clusters[0].typed_extension_protocol_options.envoy.extensions.upstreams.http.v3.HttpProtocolOptions.explicit_http_config.http2_protocol_options.max_concurrent_streams: on a cluster: not supported by anywasm"},
		{"an HTTP/2 option not in the subset", "stat_prefix: web\n", "stat_prefix: web\n                http2_protocol_options: {hpack_table_size: 100}\n",
			hcm + ".http2_protocol_options.hpack_table_size: not supported by anywasm"},
		{"a gRPC route match", "match: {prefix: /}", "match: {prefix: /, grpc: {}}",
			hcm + ".route_config.virtual_hosts[0].routes[0].match.grpc: not supported by anywasm"},
		{"a runtime_fraction match", "match: {prefix: /}", "match: {prefix: /, runtime_fraction: {default_value: {numerator: 50}}}",
			hcm + ".route_config.virtual_hosts[0].routes[0].match.runtime_fraction: not supported by anywasm"},
		{"a path_separated_prefix match", "match: {prefix: /}", "match: {path_separated_prefix: /api}",
			hcm + ".route_config.virtual_hosts[0].routes[0].match.path_separated_prefix: not supported by anywasm"},
		{"a custom string matcher", "match: {prefix: /}", "match: {prefix: /, headers: [{name: x-a, string_match: {custom: {name: x, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}]}",
			hcm + ".route_config.virtual_hosts[0].routes[0].match.headers[0].string_match.custom: not supported by anywasm"},
		{"a regex program size", "match: {prefix: /}", "match: {safe_regex: {google_re2: {max_program_size: 100}, regex: \"/a.*\"}}",
			hcm + ".route_config.virtual_hosts[0].routes[0].match.safe_regex.google_re2.max_program_size: not supported by anywasm"},
		{"a bad header regex", "match: {prefix: /}", "match: {prefix: /, headers: [{name: x-a, safe_regex_match: {regex: \"a(\"}}]}",
			hcm + ".route_config.virtual_hosts[0].routes[0].match.headers[0].safe_regex_match.regex: \"a(\": error parsing regexp"},
		{"two header specifiers", "match: {prefix: /}", "match: {prefix: /, headers: [{name: x-a, exact_match: a, present_match: true}]}",
			"oneof envoy.config.route.v3.HeaderMatcher.header_match_specifier is already set"},
		{"a RING_HASH cluster", "    - name: backend\n", "    - name: backend\n      lb_policy: RING_HASH\n",
			"static_resources.clusters[0].lb_policy: RING_HASH: not supported by anywasm (ROUND_ROBIN, RANDOM or LEAST_REQUEST)"},
		{"least_request_lb_config", "    - name: backend\n", "    - name: backend\n      lb_policy: LEAST_REQUEST\n      least_request_lb_config: {choice_count: 3}\n",
			"static_resources.clusters[0].least_request_lb_config: not supported by anywasm"},
		{"an endpoint weight", "              - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8080}}}\n",
			"              - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8080}}}\n                load_balancing_weight: 3\n",
			"static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].load_balancing_weight: not supported by anywasm"},
		{"a locality priority", "          - lb_endpoints:\n", "          - priority: 1\n            lb_endpoints:\n",
			"static_resources.clusters[0].load_assignment.endpoints[0].priority: not supported by anywasm"},
		{"health checks", "    - name: backend\n", "    - name: backend\n      health_checks: [{timeout: 1s, interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1, tcp_health_check: {}}]\n",
			"static_resources.clusters[0].health_checks: not supported by anywasm"},
		{"dns_failure_refresh_rate", "    - name: backend\n", "    - name: backend\n      type: STRICT_DNS\n      dns_failure_refresh_rate: {base_interval: 1s}\n",
			"static_resources.clusters[0].dns_failure_refresh_rate: not supported by anywasm"},
		{"a STATIC host name", "address: 127.0.0.1, port_value: 8080", "address: backend.internal, port_value: 8080",
			`static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address: "backend.internal": a STATIC cluster's endpoints are IP addresses`},
		{"a prefix rewrite", "route: {cluster: backend}", "route: {cluster: backend, prefix_rewrite: /v2}",
			hcm + ".route_config.virtual_hosts[0].routes[0].route.prefix_rewrite: not supported by anywasm"},
		{"an unknown cluster", "route: {cluster: backend}", "route: {cluster: elsewhere}",
			hcm + `.route_config.virtual_hosts[0].routes[0].route.cluster: unknown cluster "elsewhere"`},
		{"two LOGICAL_DNS endpoints", "              - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8080}}}\n",
			"              - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8080}}}\n              - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8081}}}\n      type: LOGICAL_DNS\n",
			"static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[1]: a second endpoint: a LOGICAL_DNS cluster has exactly one"},
		{"an EDS cluster", "    - name: backend\n", "    - name: backend\n      type: EDS\n",
			"static_resources.clusters[0].type: EDS: not supported by anywasm"},
		{"a runtime Envoy does not have", "runtime: envoy.wasm.runtime.v8", "runtime: envoy.wasm.runtime.quickjs",
			hcm + `.http_filters[0].typed_config.config.vm_config.runtime: "envoy.wasm.runtime.quickjs": want one of Envoy's`},
		{"remote code's retry_on", "code: {local: {filename: headers.wasm}}", "code: {remote: {http_uri: {uri: \"https://x/p.wasm\", cluster: backend, timeout: 1s}, sha256: ab, retry_policy: {retry_on: 5xx}}}",
			hcm + ".http_filters[0].typed_config.config.vm_config.code.remote.retry_policy.retry_on: not supported by anywasm"},
		{"remote code without sha256", "code: {local: {filename: headers.wasm}}", "code: {remote: {http_uri: {uri: \"https://x/p.wasm\", cluster: backend, timeout: 1s}}}",
			"Sha256: value length must be at least 1 runes"},
		{"stats_config.stats_matcher", "static_resources:\n", "stats_config: {stats_matcher: {reject_all: true}}\nstatic_resources:\n",
			"stats_config.stats_matcher: not supported by anywasm"},
		{"stats_config.histogram_bucket_settings", "static_resources:\n", "stats_config: {histogram_bucket_settings: [{match: {prefix: x}, buckets: [1, 2]}]}\nstatic_resources:\n",
			"stats_config.histogram_bucket_settings: not supported by anywasm"},
		{"a stats_tags regex Go cannot compile", "static_resources:\n", "stats_config: {stats_tags: [{tag_name: v, regex: '(x'}]}\nstatic_resources:\n",
			"stats_config.stats_tags[0].regex: \"(x\": error parsing regexp: missing closing )"},
		{"a stats_tags lookahead", "static_resources:\n", "stats_config: {stats_tags: [{tag_name: v, regex: '(?=a)(a)'}]}\nstatic_resources:\n",
			"stats_config.stats_tags[0].regex: \"(?=a)(a)\": \"(?=\" at offset 0: only (?:...) groups: flags, named groups, lookarounds are not supported by anywasm"},
		{"a stats_tags name with no default", "static_resources:\n", "stats_config: {stats_tags: [{tag_name: mine}]}\nstatic_resources:\n",
			"stats_config.stats_tags[0]: no regex specified for tag specifier and no default regex for name: \"mine\""},
		{"a TLS cluster", "    - name: backend\n", "    - name: backend\n      transport_socket: {name: envoy.transport_sockets.tls}\n",
			"static_resources.clusters[0].transport_socket: not supported by anywasm"},
		{"a second Bootstrap section", "static_resources:\n", "layered_runtime: {layers: [{name: static, static_layer: {}}]}\nstatic_resources:\n",
			"layered_runtime: not supported by anywasm"},
		{"a TypedStruct of an unknown type", "\"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n                      config:",
			"\"@type\": type.googleapis.com/udpa.type.v1.TypedStruct\n                      type_url: type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua\n                      value:\n                       config:",
			hcm + ".http_filters[0].typed_config.type_url: type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua: not supported by anywasm"},
		{"a field under a TypedStruct", "\"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n                      config:\n                        name: headers\n",
			"\"@type\": type.googleapis.com/udpa.type.v1.TypedStruct\n                      type_url: type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n                      value:\n                       config:\n                        name: headers\n                        allow_on_headers_stop_iteration: true\n",
			hcm + ".http_filters[0].typed_config.value.config.allow_on_headers_stop_iteration: not supported by anywasm"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(base, c.old) {
				t.Fatalf("the base has no %q", c.old)
			}
			_, _, err := envoyconfig.Parse([]byte(strings.Replace(base, c.old, c.new, 1)))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%v\nwant %q", err, c.want)
			}
		})
	}
}

// TestIsBootstrap: an Envoy file is told from the proxy's own by its
// top-level keys.
func TestIsBootstrap(t *testing.T) {
	own, err := os.ReadFile("../../examples/proxy/proxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		file string
		want bool
	}{
		{base, true},
		{"bootstrap_extensions: []\n", true},
		{string(own), false},
		{"node: {id: a}\nadmin: {address: 127.0.0.1:9901}\nlisteners: []\n", false},
	} {
		got, err := envoyconfig.IsBootstrap([]byte(c.file))
		if err != nil || got != c.want {
			t.Errorf("%.40q: %v %v, want %v", c.file, got, err, c.want)
		}
	}
}

// TestSubset: every message and field the subset names is Envoy's (a
// misspelt name would refuse what it means to accept).
func TestSubset(t *testing.T) {
	for name, fields := range envoyconfig.Subset() {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		md, ok := d.(protoreflect.MessageDescriptor)
		if !ok {
			t.Errorf("%s is not a message", name)
			continue
		}
		for f := range fields {
			if md.Fields().ByName(f) == nil {
				t.Errorf("%s has no field %s", name, f)
			}
		}
	}
}

// TestRemoteCodeAndCapabilities: vm_config.code.remote and
// capability_restriction_config translate into the proxy's fields of the
// same names.
func TestRemoteCodeAndCapabilities(t *testing.T) {
	const sum = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	b := strings.Replace(base, "code: {local: {filename: headers.wasm}}",
		"code: {remote: {http_uri: {uri: \"http://plugins.example/p.wasm\", cluster: backend, timeout: 2s}, sha256: "+sum+
			", retry_policy: {retry_back_off: {base_interval: 0.1s, max_interval: 3s}, num_retries: 4}}}", 1)
	b = strings.Replace(b, "                        vm_config:\n",
		"                        capability_restriction_config: {allowed_capabilities: {proxy_log: {}, fd_write: {}}}\n                        vm_config:\n", 1)
	if b == base {
		t.Fatal("the base changed")
	}
	cfg, _, err := envoyconfig.Parse([]byte(b))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Listeners[0].HTTP.Filters[0]
	r := p.VMConfig.Code.Remote
	if r == nil || p.VMConfig.Code.Local.Filename != "" {
		t.Fatalf("code: %+v", p.VMConfig.Code)
	}
	got, _ := json.Marshal(r)
	want := `{"http_uri":{"uri":"http://plugins.example/p.wasm","cluster":"backend","timeout":"2s"},"sha256":"` + sum +
		`","retry_policy":{"retry_back_off":{"base_interval":"100ms","max_interval":"3s"},"num_retries":4}}`
	if string(got) != want {
		t.Errorf("remote:\n%s\nwant\n%s", got, want)
	}
	if c := p.CapabilityRestrictionConfig; c == nil || len(c.AllowedCapabilities) != 2 {
		t.Errorf("capability_restriction_config: %+v", c)
	} else if _, ok := c.AllowedCapabilities["fd_write"]; !ok {
		t.Errorf("capability_restriction_config: %+v", c)
	}
}

// TestAllowPrecompiled: vm_config.allow_precompiled translates into the
// proxy's field of the same name (false when absent).
func TestAllowPrecompiled(t *testing.T) {
	b := strings.Replace(base, "code: {local: {filename: headers.wasm}}",
		"code: {local: {filename: headers.wasm}}\n                          allow_precompiled: true", 1)
	if b == base {
		t.Fatal("the base changed")
	}
	for want, src := range map[bool]string{true: b, false: base} {
		cfg, _, err := envoyconfig.Parse([]byte(src))
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.Listeners[0].HTTP.Filters[0].VMConfig.AllowPrecompiled; got != want {
			t.Errorf("allow_precompiled = %v, want %v", got, want)
		}
	}
}
