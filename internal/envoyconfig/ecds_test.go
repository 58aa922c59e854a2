package envoyconfig_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpwasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	extensionv3 "github.com/envoyproxy/go-control-plane/envoy/service/extension/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/internal/envoyconfig"
	"github.com/anywasm/anywasm/internal/plugins"
	"github.com/anywasm/anywasm/internal/proxy"
)

// managementServer is go-control-plane's own xDS server on a loopback
// port, its requests (OnStreamRequest) in reqs.
type managementServer struct {
	addr  string
	cache cachev3.SnapshotCache
	reqs  chan *discoveryv3.DiscoveryRequest
	srv   *grpc.Server
}

func startManagementServer(t *testing.T, ads bool, addr string, cache cachev3.SnapshotCache, reqs chan *discoveryv3.DiscoveryRequest) *managementServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	cb := serverv3.CallbackFuncs{StreamRequestFunc: func(_ int64, r *discoveryv3.DiscoveryRequest) error {
		select {
		case reqs <- r:
		case <-ctx.Done():
		}
		return nil
	}}
	xds := serverv3.NewServer(t.Context(), cache, cb)
	g := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, xds)
	extensionv3.RegisterExtensionConfigDiscoveryServiceServer(g, xds)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	return &managementServer{addr: ln.Addr().String(), cache: cache, reqs: reqs, srv: g}
}

// next returns the next request the server gets that match accepts,
// failing the test if none comes within a minute (a hang, not a timing
// the test relies on).
func (m *managementServer) next(t *testing.T, what string, match func(*discoveryv3.DiscoveryRequest) bool) *discoveryv3.DiscoveryRequest {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		select {
		case r := <-m.reqs:
			if match(r) {
				return r
			}
		case <-deadline:
			t.Fatalf("the management server got no %s", what)
		}
	}
}

// push sets version v of the filter's TypedExtensionConfig: the config
// plugin at path with plugin configuration conf.
func (m *managementServer) push(t *testing.T, v, path, conf string) {
	t.Helper()
	w := &httpwasmv3.Wasm{Config: &wasmv3.PluginConfig{
		Name:          "ecds",
		Configuration: mustAny(t, wrapperspb.String(conf)),
		Vm: &wasmv3.PluginConfig_VmConfig{VmConfig: &wasmv3.VmConfig{Runtime: "envoy.wasm.runtime.v8", Code: &corev3.AsyncDataSource{
			Specifier: &corev3.AsyncDataSource_Local{Local: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}}}}},
	}}
	tec := &corev3.TypedExtensionConfig{Name: "ecds_filter", TypedConfig: mustAny(t, w)}
	snap, err := cachev3.NewSnapshot(v, map[resourcev3.Type][]types.Resource{resourcev3.ExtensionConfigType: {tec}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.cache.SetSnapshot(t.Context(), "ecds-node", snap); err != nil {
		t.Fatal(err)
	}
}

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

const ecdsBootstrap = `
node: {id: ecds-node, cluster: test}
static_resources:
  listeners:
  - name: http
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          http_filters:
          - name: ecds_filter
            config_discovery:
              config_source:
                %s
                resource_api_version: V3
              apply_default_config_without_warming: true
              type_urls: [type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm]
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{match: {prefix: /}, route: {cluster: backend}}]
  clusters:
  - name: backend
    type: STATIC
    load_assignment:
      cluster_name: backend
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}}]}]
  - name: xds_cluster
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment:
      cluster_name: xds_cluster
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}}]}]
%s`

// TestECDS configures a Wasm filter from go-control-plane's management
// server, over its own ECDS stream and over ADS, on each runtime: 500
// before the first configuration (Envoy's MissingConfigFilter), v1 and v2
// ACKed and seen by traffic, a v3 whose plugin fails to configure and a
// v4 whose file does not exist NACKed with the error while traffic stays
// on v2, the stream broken and opened again with v2 still serving, and a
// v5 after the reconnection.
func TestECDS(t *testing.T) {
	path := plugins.Path(t, "config")
	for _, rt := range engine.Runtimes() {
		if rt != "wazero" && rt != "wasmtime" {
			continue
		}
		for _, ads := range []bool{false, true} {
			name := rt + "/ecds"
			if ads {
				name = rt + "/ads"
			}
			t.Run(name, func(t *testing.T) { testECDS(t, rt, ads, path) })
		}
	}
}

func testECDS(t *testing.T, rt string, ads bool, path string) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "backend\n") }))
	t.Cleanup(backend.Close)
	reqs := make(chan *discoveryv3.DiscoveryRequest, 100)
	m := startManagementServer(t, ads, "127.0.0.1:0", cachev3.NewSnapshotCache(ads, cachev3.IDHash{}, nil), reqs)
	source, dynamic := "api_config_source: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]}", ""
	if ads {
		source = "ads: {}"
		dynamic = "dynamic_resources:\n  ads_config: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]}\n"
	}
	_, xdsPort, _ := net.SplitHostPort(m.addr)
	backendAddr := backend.Listener.Addr().(*net.TCPAddr)
	var port int
	fmt.Sscan(xdsPort, &port)
	cfg, _, err := envoyconfig.Parse(fmt.Appendf(nil, ecdsBootstrap, source, backendAddr.Port, port, dynamic))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := proxy.Start(t.Context(), cfg, proxy.Options{Runtime: rt, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { envoyconfig.Discover(ctx, p, cfg, log) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		_ = p.Shutdown(context.Background())
	})
	url := "http://" + p.Addr("http").String() + "/"
	get := func() (int, string, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("x-config"), string(b)
	}
	want := func(step, config string) {
		t.Helper()
		if code, got, body := get(); code != 200 || got != config || body != "backend\n" {
			t.Fatalf("%s: %d, x-config %q, body %q; want 200, x-config %q, the backend's body", step, code, got, body, config)
		}
	}
	ack := func(v string) *discoveryv3.DiscoveryRequest {
		t.Helper()
		return m.next(t, "ACK of version "+v, func(r *discoveryv3.DiscoveryRequest) bool {
			return r.GetResponseNonce() != "" && r.GetErrorDetail() == nil && r.GetVersionInfo() == v
		})
	}
	// A NACK names the version it refuses only in its error's text (its
	// version_info is the last accepted).
	nack := func(v, text string) *discoveryv3.DiscoveryRequest {
		t.Helper()
		return m.next(t, "NACK of version "+v, func(r *discoveryv3.DiscoveryRequest) bool {
			return r.GetErrorDetail() != nil && strings.Contains(r.GetErrorDetail().GetMessage(), text)
		})
	}

	first := m.next(t, "first request", func(*discoveryv3.DiscoveryRequest) bool { return true })
	if first.GetTypeUrl() != resourcev3.ExtensionConfigType || !slices.Equal(first.GetResourceNames(), []string{"ecds_filter"}) ||
		first.GetVersionInfo() != "" || first.GetResponseNonce() != "" || first.GetNode().GetId() != "ecds-node" {
		t.Fatalf("first request: %v", first)
	}
	// Before the first configuration: Envoy's MissingConfigFilter, 500
	// with no body.
	if code, got, body := get(); code != 500 || got != "" || body != "" {
		t.Fatalf("before the first configuration: %d, x-config %q, body %q; want 500, no body", code, got, body)
	}

	m.push(t, "1", path, "one")
	ack("1")
	want("v1", "one")

	m.push(t, "2", path, "two")
	ack("2")
	want("v2", "two")

	m.push(t, "3", path, "fail") // the config plugin refuses "fail"
	r := nack("3", "proxy_on_configure returned false")
	if r.GetVersionInfo() != "2" || r.GetResponseNonce() == "" || r.GetErrorDetail().GetCode() != 13 ||
		!strings.Contains(r.GetErrorDetail().GetMessage(), "ecds_filter: listeners[0].http.filters[0] (plugin ecds") {
		t.Fatalf("NACK of v3: version_info %q, nonce %q, error_detail %v", r.GetVersionInfo(), r.GetResponseNonce(), r.GetErrorDetail())
	}
	t.Logf("v3 NACK: %s", r.GetErrorDetail().GetMessage())
	want("after v3's NACK", "two")

	missing := filepath.Join(t.TempDir(), "missing.wasm")
	m.push(t, "4", missing, "four")
	r = nack("4", missing)
	if r.GetVersionInfo() != "2" || !strings.Contains(r.GetErrorDetail().GetMessage(), missing+": no such file or directory") {
		t.Fatalf("NACK of v4: version_info %q, error_detail %v", r.GetVersionInfo(), r.GetErrorDetail())
	}
	t.Logf("v4 NACK: %s", r.GetErrorDetail().GetMessage())
	want("after v4's NACK", "two")

	// The stream breaks: the server goes, and comes back on the same
	// address; the running plugin serves meanwhile, and the new stream
	// starts from the version last accepted.
	m.srv.Stop()
	want("with the management server gone", "two")
	cache := cachev3.NewSnapshotCache(ads, cachev3.IDHash{}, nil)
	m2 := startManagementServer(t, ads, m.addr, cache, reqs)
	again := m2.next(t, "request of the new stream", func(r *discoveryv3.DiscoveryRequest) bool { return r.GetResponseNonce() == "" })
	if again.GetVersionInfo() != "2" {
		t.Fatalf("the new stream's first request: version_info %q, want the last accepted, 2", again.GetVersionInfo())
	}
	want("after the reconnection", "two")
	m2.push(t, "5", path, "five")
	m2.next(t, "ACK of version 5", func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetResponseNonce() != "" && r.GetErrorDetail() == nil && r.GetVersionInfo() == "5"
	})
	want("v5", "five")
}

// TestECDSRefused: what config_discovery anywasm does not do is refused
// by its field.
func TestECDSRefused(t *testing.T) {
	const grpcSource = "api_config_source: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]}"
	base := fmt.Sprintf(ecdsBootstrap, grpcSource, 8080, 18000, "")
	if _, _, err := envoyconfig.Parse([]byte(base)); err != nil {
		t.Fatalf("base: %v", err)
	}
	const f = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].config_discovery"
	for _, c := range []struct{ name, old, new, want string }{
		{"delta", "api_type: GRPC", "api_type: DELTA_GRPC", f + ".config_source.api_config_source.api_type: DELTA_GRPC: not supported by anywasm"},
		{"ads without ads_config", grpcSource, "ads: {}", f + ".config_source.ads: no dynamic_resources.ads_config"},
		{"another type", "type_urls: [type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm]", "type_urls: [type.googleapis.com/envoy.extensions.filters.http.router.v3.Router]",
			f + ".type_urls[0]: type.googleapis.com/envoy.extensions.filters.http.router.v3.Router: not supported by anywasm"},
		{"google_grpc", "{envoy_grpc: {cluster_name: xds_cluster}}", "{google_grpc: {target_uri: x, stat_prefix: x}}",
			f + ".config_source.api_config_source.grpc_services[0].google_grpc: not supported by anywasm"},
		{"initial_fetch_timeout", "resource_api_version: V3", "resource_api_version: V3\n                initial_fetch_timeout: 1s", f + ".config_source.initial_fetch_timeout: not supported by anywasm"},
		{"an HTTP/1 management server", "explicit_http_config: {http2_protocol_options: {}}", "explicit_http_config: {http_protocol_options: {}}",
			`static_resources.clusters[1]: cluster "xds_cluster" is a management server's`},
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
	lds := base + "dynamic_resources:\n  lds_config: {ads: {}}\n"
	if _, _, err := envoyconfig.Parse([]byte(lds)); err == nil || !strings.Contains(err.Error(), "dynamic_resources.lds_config: not supported by anywasm") {
		t.Errorf("lds_config: %v", err)
	}
}
