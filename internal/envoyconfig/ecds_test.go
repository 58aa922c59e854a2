package envoyconfig_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpwasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	netwasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/wasm/v3"
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
	"google.golang.org/protobuf/types/known/durationpb"
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
	dreqs chan *discoveryv3.DeltaDiscoveryRequest // delta xDS's
	srv   *grpc.Server
}

func startManagementServer(t *testing.T, ads bool, addr string, cache cachev3.SnapshotCache, reqs chan *discoveryv3.DiscoveryRequest) *managementServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	dreqs := make(chan *discoveryv3.DeltaDiscoveryRequest, 100)
	cb := serverv3.CallbackFuncs{StreamRequestFunc: func(_ int64, r *discoveryv3.DiscoveryRequest) error {
		select {
		case reqs <- r:
		case <-ctx.Done():
		}
		return nil
	}, StreamDeltaRequestFunc: func(_ int64, r *discoveryv3.DeltaDiscoveryRequest) error {
		select {
		case dreqs <- r:
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
	return &managementServer{addr: ln.Addr().String(), cache: cache, reqs: reqs, dreqs: dreqs, srv: g}
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

// nextDelta is next for delta xDS's requests.
func (m *managementServer) nextDelta(t *testing.T, what string, match func(*discoveryv3.DeltaDiscoveryRequest) bool) *discoveryv3.DeltaDiscoveryRequest {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		select {
		case r := <-m.dreqs:
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
	m.pushVM(t, v, &wasmv3.VmConfig{Runtime: "envoy.wasm.runtime.v8", Code: &corev3.AsyncDataSource{
		Specifier: &corev3.AsyncDataSource_Local{Local: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}}}}, conf)
}

// pushVM sets version v of the HTTP filter's TypedExtensionConfig: a
// Wasm filter of vm_config vm and plugin configuration conf.
func (m *managementServer) pushVM(t *testing.T, v string, vm *wasmv3.VmConfig, conf string) {
	t.Helper()
	m.pushTEC(t, v, &corev3.TypedExtensionConfig{Name: "ecds_filter", TypedConfig: mustAny(t, &httpwasmv3.Wasm{Config: pluginConfig(t, vm, conf)})})
}

func pluginConfig(t *testing.T, vm *wasmv3.VmConfig, conf string) *wasmv3.PluginConfig {
	return &wasmv3.PluginConfig{Name: "ecds", Configuration: mustAny(t, wrapperspb.String(conf)), Vm: &wasmv3.PluginConfig_VmConfig{VmConfig: vm}}
}

func (m *managementServer) pushTEC(t *testing.T, v string, tecs ...types.Resource) {
	t.Helper()
	snap, err := cachev3.NewSnapshot(v, map[resourcev3.Type][]types.Resource{resourcev3.ExtensionConfigType: tecs})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.cache.SetSnapshot(t.Context(), "ecds-node", snap); err != nil {
		t.Fatal(err)
	}
}

// ack waits for the ACK of version v.
func (m *managementServer) ack(t *testing.T, v string) *discoveryv3.DiscoveryRequest {
	t.Helper()
	return m.next(t, "ACK of version "+v, func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetResponseNonce() != "" && r.GetErrorDetail() == nil && r.GetVersionInfo() == v
	})
}

// nack waits for a NACK whose error has text: a NACK names the version it
// refuses only in its error's text (its version_info is the last
// accepted).
func (m *managementServer) nack(t *testing.T, v, text string) *discoveryv3.DiscoveryRequest {
	t.Helper()
	return m.next(t, "NACK of version "+v+" with "+text, func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetErrorDetail() != nil && strings.Contains(r.GetErrorDetail().GetMessage(), text)
	})
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
                {{SOURCE}}
                resource_api_version: V3{{TIMEOUT}}{{DISCOVERY}}
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
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: {{BACKEND}}}}}}]}]
  - name: xds_cluster
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment:
      cluster_name: xds_cluster
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: {{XDS}}}}}}]}]
{{DYNAMIC}}`

const ecdsTCPBootstrap = `
node: {id: ecds-node, cluster: test}
static_resources:
  listeners:
  - name: tcp
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: ecds_tcp
        config_discovery:
          config_source:
            {{SOURCE}}
            resource_api_version: V3{{TIMEOUT}}{{DISCOVERY}}
          type_urls: [type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm]
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: backend
  clusters:
  - name: backend
    type: STATIC
    load_assignment:
      cluster_name: backend
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: {{BACKEND}}}}}}]}]
  - name: xds_cluster
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment:
      cluster_name: xds_cluster
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: {{XDS}}}}}}]}]
{{DYNAMIC}}`

// ecdsOptions shape a test's bootstrap: over ADS or the filter's own
// stream; initial_fetch_timeout (none written when empty); more lines of
// config_discovery (default_config, apply_default_config_without_warming),
// each starting with a newline and indented as its fields; a TCP listener
// (ecdsTCPBootstrap) instead of the HTTP one, its backend given.
type ecdsOptions struct {
	ads       bool
	delta     bool // api_type DELTA_GRPC
	timeout   string
	discovery string
	tcp       bool
	backend   int
	// cacheDir is the proxy's cache_dir (compiled plugins, remote
	// modules); by default compileCache.
	cacheDir string
}

// compileCache is the cache_dir of the xDS tests: the compilation cache
// they share, to keep them fast (TestECDSRemote has its own: remote
// modules are cached there too).
var compileCache = sync.OnceValue(func() string {
	d, err := os.MkdirTemp("", "anywasm-ecds-test-")
	if err != nil {
		panic(err)
	}
	return d
})

func TestMain(m *testing.M) {
	code := m.Run()
	if d := compileCache(); d != "" {
		_ = os.RemoveAll(d)
	}
	os.Exit(code)
}

type ecdsEnv struct {
	m *managementServer
	p *proxy.Proxy
}

// startECDS starts go-control-plane's management server and a proxy
// whose filter it configures, with Discover running; the first request
// the server gets is checked (the filter's name, no version, no nonce,
// the node).
func startECDS(t *testing.T, rt string, o ecdsOptions) *ecdsEnv {
	t.Helper()
	reqs := make(chan *discoveryv3.DiscoveryRequest, 100)
	m := startManagementServer(t, o.ads, "127.0.0.1:0", cachev3.NewSnapshotCache(o.ads, cachev3.IDHash{}, nil), reqs)
	apiType := "GRPC"
	if o.delta {
		apiType = "DELTA_GRPC"
	}
	source, dynamic := "api_config_source: {api_type: "+apiType+", transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]}", ""
	if o.ads {
		source = "ads: {}"
		dynamic = "dynamic_resources:\n  ads_config: {api_type: " + apiType + ", transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]}\n"
	}
	_, xdsPort, _ := net.SplitHostPort(m.addr)
	tmpl, indent, name := ecdsBootstrap, "                ", "ecds_filter"
	if o.tcp {
		tmpl, indent, name = ecdsTCPBootstrap, "            ", "ecds_tcp"
	}
	timeout := ""
	if o.timeout != "" {
		timeout = "\n" + indent + "initial_fetch_timeout: " + o.timeout
	}
	discovery := strings.ReplaceAll(o.discovery, "\n", "\n"+indent[2:])
	b := strings.NewReplacer("{{SOURCE}}", source, "{{TIMEOUT}}", timeout, "{{DISCOVERY}}", discovery,
		"{{BACKEND}}", fmt.Sprint(o.backend), "{{XDS}}", xdsPort, "{{DYNAMIC}}", dynamic).Replace(tmpl)
	cfg, _, err := envoyconfig.Parse([]byte(b))
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	cfg.Admin.Address = "127.0.0.1:0" // /healthz tells warming
	cfg.CacheDir = o.cacheDir
	if cfg.CacheDir == "" {
		cfg.CacheDir = compileCache()
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(tlog{t}, nil))
	}
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
	if o.delta {
		first := m.nextDelta(t, "first request", func(*discoveryv3.DeltaDiscoveryRequest) bool { return true })
		if first.GetTypeUrl() != resourcev3.ExtensionConfigType || !slices.Equal(first.GetResourceNamesSubscribe(), []string{name}) ||
			len(first.GetInitialResourceVersions()) != 0 || first.GetResponseNonce() != "" || first.GetNode().GetId() != "ecds-node" {
			t.Fatalf("first request: %v", first)
		}
		return &ecdsEnv{m: m, p: p}
	}
	first := m.next(t, "first request", func(*discoveryv3.DiscoveryRequest) bool { return true })
	if first.GetTypeUrl() != resourcev3.ExtensionConfigType || !slices.Equal(first.GetResourceNames(), []string{name}) ||
		first.GetVersionInfo() != "" || first.GetResponseNonce() != "" || first.GetNode().GetId() != "ecds-node" {
		t.Fatalf("first request: %v", first)
	}
	return &ecdsEnv{m: m, p: p}
}

// tlog writes the proxy's log to the test's.
type tlog struct{ t *testing.T }

func (l tlog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// httpBackend answers "backend\n" on /, and serves modules on
// /plugins/NAME (modules), counting the requests for each (fetches); a
// module in failFirst answers 503 that many times first.
type httpBackend struct {
	srv       *httptest.Server
	mu        sync.Mutex
	modules   map[string][]byte
	fetches   map[string]int
	failFirst map[string]int
}

func newHTTPBackend(t *testing.T) *httpBackend {
	b := &httpBackend{modules: map[string][]byte{}, fetches: map[string]int{}, failFirst: map[string]int{}}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := strings.CutPrefix(r.URL.Path, "/plugins/")
		if !ok {
			_, _ = io.WriteString(w, "backend\n")
			return
		}
		b.mu.Lock()
		b.fetches[name]++
		mod, fail := b.modules[name], b.failFirst[name]
		if fail > 0 {
			b.failFirst[name]--
		}
		b.mu.Unlock()
		switch {
		case mod == nil:
			http.NotFound(w, r)
		case fail > 0:
			http.Error(w, "try again", http.StatusServiceUnavailable)
		default:
			_, _ = w.Write(mod)
		}
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *httpBackend) port() int { return b.srv.Listener.Addr().(*net.TCPAddr).Port }

func (b *httpBackend) fetched(name string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.fetches[name]
}

// get sends GET / to the HTTP listener: status, x-config, body.
func (e *ecdsEnv) get(t *testing.T) (int, string, string) {
	t.Helper()
	resp, err := http.Get("http://" + e.p.Addr("http").String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("x-config"), string(b)
}

// want checks that traffic goes through the plugin configured as config.
func (e *ecdsEnv) want(t *testing.T, step, config string) {
	t.Helper()
	if code, got, body := e.get(t); code != 200 || got != config || body != "backend\n" {
		t.Fatalf("%s: %d, x-config %q, body %q; want 200, x-config %q, the backend's body", step, code, got, body, config)
	}
}

// wantMissing checks that the filter answers as one without
// configuration: Envoy's MissingConfigFilter, 500 with no body.
func (e *ecdsEnv) wantMissing(t *testing.T, step string) {
	t.Helper()
	if code, got, body := e.get(t); code != 500 || got != "" || body != "" {
		t.Fatalf("%s: %d, x-config %q, body %q; want 500, no body", step, code, got, body)
	}
}

// refused checks that the listener is warming: bound (its address known)
// but not listening, so that a connection is refused.
func (e *ecdsEnv) refused(t *testing.T, listener, step string) {
	t.Helper()
	if !e.p.Warming() {
		t.Fatalf("%s: the proxy does not report warming", step)
	}
	if code, body := e.healthz(t); code != 503 || body != "warming\n" {
		t.Fatalf("%s: /healthz %d %q, want 503 warming", step, code, body)
	}
	if runtime.GOOS != "linux" {
		return // the socket listens there; connections wait in its backlog
	}
	c, err := net.Dial("tcp", e.p.Addr(listener).String())
	if err == nil {
		c.Close()
		t.Fatalf("%s: the warming listener accepted a connection", step)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("%s: %v, want connection refused", step, err)
	}
}

// healthz gets the admin endpoint's /healthz.
func (e *ecdsEnv) healthz(t *testing.T) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + e.p.AdminAddr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// served waits until the listener accepts connections (a bounded wait
// for the end of warming by initial_fetch_timeout, not a timing the test
// relies on).
func (e *ecdsEnv) served(t *testing.T, listener, step string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := net.Dial("tcp", e.p.Addr(listener).String())
		if err == nil {
			c.Close()
			if code, body := e.healthz(t); code != 200 || body != "ok\n" {
				t.Fatalf("%s: serving, /healthz %d %q, want 200 ok", step, code, body)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the listener never served: %v", step, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestECDS configures a Wasm filter from go-control-plane's management
// server, over its own ECDS stream and over ADS, on each runtime: the
// listener warming (connection refused) until the first configuration,
// v1 and v2 ACKed and seen by traffic, a v3 whose plugin fails to
// configure and a v4 whose file does not exist NACKed with the error
// while traffic stays on v2, the stream broken and opened again with v2
// still serving, and a v5 after the reconnection.
func TestECDS(t *testing.T) {
	path := plugins.Path(t, "config")
	for _, rt := range runtimes() {
		for _, ads := range []bool{false, true} {
			name := rt + "/ecds"
			if ads {
				name = rt + "/ads"
			}
			t.Run(name, func(t *testing.T) { testECDS(t, rt, ads, path) })
		}
	}
}

// runtimes are the runtimes the xDS tests run on: wazero and wasmtime
// (when the binary has it).
func runtimes() []string {
	var rs []string
	for _, rt := range engine.Runtimes() {
		if rt == "wazero" || rt == "wasmtime" {
			rs = append(rs, rt)
		}
	}
	return rs
}

func testECDS(t *testing.T, rt string, ads bool, path string) {
	backend := newHTTPBackend(t)
	// No initial_fetch_timeout: the listener warms until v1.
	e := startECDS(t, rt, ecdsOptions{ads: ads, timeout: "0s", backend: backend.port()})
	m := e.m
	e.refused(t, "http", "before the first configuration")

	m.push(t, "1", path, "one")
	m.ack(t, "1")
	e.want(t, "v1", "one")

	m.push(t, "2", path, "two")
	m.ack(t, "2")
	e.want(t, "v2", "two")

	m.push(t, "3", path, "fail") // the config plugin refuses "fail"
	r := m.nack(t, "3", "proxy_on_configure returned false")
	if r.GetVersionInfo() != "2" || r.GetResponseNonce() == "" || r.GetErrorDetail().GetCode() != 13 ||
		!strings.Contains(r.GetErrorDetail().GetMessage(), "ecds_filter: listeners[0].http.filters[0] (plugin ecds") {
		t.Fatalf("NACK of v3: version_info %q, nonce %q, error_detail %v", r.GetVersionInfo(), r.GetResponseNonce(), r.GetErrorDetail())
	}
	t.Logf("v3 NACK: %s", r.GetErrorDetail().GetMessage())
	e.want(t, "after v3's NACK", "two")

	missing := filepath.Join(t.TempDir(), "missing.wasm")
	m.push(t, "4", missing, "four")
	r = m.nack(t, "4", missing)
	if r.GetVersionInfo() != "2" || !strings.Contains(r.GetErrorDetail().GetMessage(), missing+": no such file or directory") {
		t.Fatalf("NACK of v4: version_info %q, error_detail %v", r.GetVersionInfo(), r.GetErrorDetail())
	}
	t.Logf("v4 NACK: %s", r.GetErrorDetail().GetMessage())
	e.want(t, "after v4's NACK", "two")

	// The stream breaks: the server goes, and comes back on the same
	// address; the running plugin serves meanwhile, and the new stream
	// starts from the version last accepted.
	m.srv.Stop()
	e.want(t, "with the management server gone", "two")
	cache := cachev3.NewSnapshotCache(ads, cachev3.IDHash{}, nil)
	m2 := startManagementServer(t, ads, m.addr, cache, m.reqs)
	again := m2.next(t, "request of the new stream", func(r *discoveryv3.DiscoveryRequest) bool { return r.GetResponseNonce() == "" })
	if again.GetVersionInfo() != "2" {
		t.Fatalf("the new stream's first request: version_info %q, want the last accepted, 2", again.GetVersionInfo())
	}
	e.want(t, "after the reconnection", "two")
	m2.push(t, "5", path, "five")
	m2.ack(t, "5")
	e.want(t, "v5", "five")
}

// defaultConfig is a config_discovery default_config: the config plugin
// at path, configured "default".
func defaultConfig(path string) string {
	return `
default_config:
  "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
  config:
    name: ecds
    configuration: {"@type": type.googleapis.com/google.protobuf.StringValue, value: default}
    vm_config: {runtime: envoy.wasm.runtime.v8, code: {local: {filename: "` + path + `"}}}`
}

// TestECDSWarming: Envoy's listener warming for a discovered filter, on
// each runtime. Without apply_default_config_without_warming the
// listener is bound but refuses connections until the first
// configuration, a rejected one (FilterConfigSubscription's
// onConfigUpdateFailed marks it ready) or initial_fetch_timeout; then
// the filter serves default_config if it has one, else answers 500
// (MissingConfigFilter). With apply_default_config_without_warming and
// default_config it serves the default at once.
func TestECDSWarming(t *testing.T) {
	path := plugins.Path(t, "config")
	for _, rt := range runtimes() {
		t.Run(rt+"/rejected", func(t *testing.T) {
			// No timeout: only the NACK ends the warming.
			backend := newHTTPBackend(t)
			e := startECDS(t, rt, ecdsOptions{timeout: "0s", backend: backend.port()})
			e.refused(t, "http", "before the first configuration")
			e.m.push(t, "1", path, "fail")
			e.m.nack(t, "1", "proxy_on_configure returned false")
			e.served(t, "http", "after the NACK")
			e.wantMissing(t, "after the NACK, no configuration")
			e.m.push(t, "2", path, "two")
			e.m.ack(t, "2")
			e.want(t, "v2", "two")
		})
		t.Run(rt+"/timeout", func(t *testing.T) {
			backend := newHTTPBackend(t)
			e := startECDS(t, rt, ecdsOptions{timeout: "0.05s", backend: backend.port()})
			e.served(t, "http", "after initial_fetch_timeout")
			if e.p.Warming() {
				t.Fatal("serving, yet the proxy reports warming")
			}
			e.wantMissing(t, "after initial_fetch_timeout, no configuration")
			e.m.push(t, "1", path, "one")
			e.m.ack(t, "1")
			e.want(t, "v1", "one")
		})
		t.Run(rt+"/default_rejected", func(t *testing.T) {
			// default_config loaded, yet the listener warms.
			backend := newHTTPBackend(t)
			e := startECDS(t, rt, ecdsOptions{timeout: "0s", discovery: defaultConfig(path), backend: backend.port()})
			e.refused(t, "http", "with default_config, before the first configuration")
			e.m.push(t, "1", path, "fail")
			e.m.nack(t, "1", "proxy_on_configure returned false")
			e.served(t, "http", "after the NACK")
			e.want(t, "after the NACK: the default", "default")
			e.m.push(t, "2", path, "two")
			e.m.ack(t, "2")
			e.want(t, "v2", "two")
		})
		t.Run(rt+"/default_timeout", func(t *testing.T) {
			backend := newHTTPBackend(t)
			e := startECDS(t, rt, ecdsOptions{timeout: "0.05s", discovery: defaultConfig(path), backend: backend.port()})
			e.served(t, "http", "after initial_fetch_timeout")
			e.want(t, "after initial_fetch_timeout: the default", "default")
		})
		t.Run(rt+"/default_without_warming", func(t *testing.T) {
			backend := newHTTPBackend(t)
			e := startECDS(t, rt, ecdsOptions{timeout: "0s", discovery: defaultConfig(path) + "\napply_default_config_without_warming: true", backend: backend.port()})
			if e.p.Warming() {
				t.Fatal("apply_default_config_without_warming: the proxy reports warming")
			}
			e.want(t, "before the first configuration: the default", "default")
			e.m.push(t, "1", path, "one")
			e.m.ack(t, "1")
			e.want(t, "v1", "one")
		})
	}
}

// remoteVM is a vm_config whose code is fetched from the backend's
// /plugins/name with the module's sha256.
func remoteVM(name string, mod []byte, nack bool, retries uint32) *wasmv3.VmConfig {
	sum := sha256.Sum256(mod)
	return &wasmv3.VmConfig{Runtime: "envoy.wasm.runtime.v8", NackOnCodeCacheMiss: nack, Code: &corev3.AsyncDataSource{
		Specifier: &corev3.AsyncDataSource_Remote{Remote: &corev3.RemoteDataSource{
			HttpUri: &corev3.HttpUri{Uri: "http://plugins.example/plugins/" + name, HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: "backend"},
				Timeout: durationpb.New(10 * time.Second)},
			Sha256: hex.EncodeToString(sum[:]),
			RetryPolicy: &corev3.RetryPolicy{NumRetries: wrapperspb.UInt32(retries),
				RetryBackOff: &corev3.BackoffStrategy{BaseInterval: durationpb.New(time.Millisecond), MaxInterval: durationpb.New(10 * time.Millisecond)}},
		}}}}
}

// withSection returns a copy of a module with a custom section named
// name appended: another sha256, the same plugin.
func withSection(mod []byte, name string) []byte {
	body := append(append([]byte{byte(len(name))}, name...), "payload"...)
	out := append(slices.Clone(mod), 0, byte(len(body)))
	return append(out, body...)
}

// TestECDSRemote: a discovered configuration's remote code, fetched
// through its cluster, on each runtime: v1 fetched after a 503 (its
// retry_policy) and ACKed; v2 of the same sha256 loaded from the code
// cache (no fetch); v3 whose module does not have its sha256 NACKed
// naming both;
// v4 with nack_on_code_cache_miss NACKed at once while the fetch goes on
// in the background, then ACKed when the management server sends it
// again and it is in the cache (one fetch); v5 whose module is not
// there (404) NACKed, the running plugin kept; v6 good again.
func TestECDSRemote(t *testing.T) {
	mod := plugins.Build(t, "config")
	for _, rt := range runtimes() {
		t.Run(rt, func(t *testing.T) {
			backend := newHTTPBackend(t)
			backend.modules["one.wasm"] = mod
			backend.failFirst["one.wasm"] = 1
			other := withSection(mod, "anywasm-test-other")
			backend.modules["other.wasm"] = other
			cache := t.TempDir()
			e := startECDS(t, rt, ecdsOptions{timeout: "0s", backend: backend.port(), cacheDir: cache})
			m := e.m

			m.pushVM(t, "1", remoteVM("one.wasm", mod, false, 2), "one")
			m.ack(t, "1")
			e.want(t, "v1", "one")
			if n := backend.fetched("one.wasm"); n != 2 {
				t.Fatalf("v1: %d requests for the module, want 2 (a 503, then the module)", n)
			}
			sum := sha256.Sum256(mod)
			if b, err := os.ReadFile(filepath.Join(cache, "remote", hex.EncodeToString(sum[:])+".wasm")); err != nil || !bytes.Equal(b, mod) {
				t.Fatalf("v1: the module is not in cache_dir: %v", err)
			}

			m.pushVM(t, "2", remoteVM("one.wasm", mod, false, 2), "two")
			m.ack(t, "2")
			e.want(t, "v2", "two")
			if n := backend.fetched("one.wasm"); n != 2 {
				t.Fatalf("v2: %d requests for the module, want 2 (v2 from the code cache)", n)
			}

			// other.wasm with another module's sha256 (not mod's: a
			// module of the code cache is found by its sha256 alone).
			bad := remoteVM("other.wasm", withSection(mod, "anywasm-test-bad"), false, 0)
			m.pushVM(t, "3", bad, "three")
			got := sha256.Sum256(other)
			r := m.nack(t, "3", "the module's sha256 is "+hex.EncodeToString(got[:]))
			t.Logf("v3 NACK: %s", r.GetErrorDetail().GetMessage())
			e.want(t, "after v3's NACK", "two")

			backend.mu.Lock()
			before := backend.fetches["other.wasm"]
			backend.mu.Unlock()
			m.pushVM(t, "4", remoteVM("other.wasm", other, true, 0), "four")
			r = m.nack(t, "4", "is not in the code cache (nack_on_code_cache_miss): fetching it in the background")
			if r.GetVersionInfo() != "2" {
				t.Fatalf("v4's NACK: version_info %q, want 2", r.GetVersionInfo())
			}
			t.Logf("v4 NACK: %s", r.GetErrorDetail().GetMessage())
			// go-control-plane's cache answers each NACK with v4 again:
			// once the background fetch is in the cache, v4 loads.
			m.ack(t, "4")
			e.want(t, "v4, from the code cache", "four")
			if n := backend.fetched("other.wasm") - before; n != 1 {
				t.Fatalf("v4: %d fetches of the module, want 1 (the background one)", n)
			}

			m.pushVM(t, "5", remoteVM("gone.wasm", withSection(mod, "anywasm-test-gone"), false, 0), "five")
			r = m.nack(t, "5", "status 404, want 200")
			t.Logf("v5 NACK: %s", r.GetErrorDetail().GetMessage())
			e.want(t, "after v5's NACK", "four")

			m.pushVM(t, "6", remoteVM("one.wasm", mod, false, 0), "six")
			m.ack(t, "6")
			e.want(t, "v6", "six")
		})
	}
}

// tcpEcho is a TCP server that echoes what it reads.
func tcpEcho(t *testing.T) int {
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
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// pushTCP sets version v of the network filter's configuration: the tcp
// plugin with plugin configuration prefix.
func (m *managementServer) pushTCP(t *testing.T, v, path, prefix string) {
	t.Helper()
	vm := &wasmv3.VmConfig{Runtime: "envoy.wasm.runtime.v8", Code: &corev3.AsyncDataSource{
		Specifier: &corev3.AsyncDataSource_Local{Local: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}}}}
	m.pushTEC(t, v, &corev3.TypedExtensionConfig{Name: "ecds_tcp", TypedConfig: mustAny(t, &netwasmv3.Wasm{Config: pluginConfig(t, vm, prefix)})})
}

// exchange sends "ping" on c and reads the echo, through the tcp plugin:
// its prefix then ping, upper-cased.
func exchange(t *testing.T, c net.Conn) string {
	t.Helper()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Minute))
	var got []byte
	buf := make([]byte, 64)
	for !strings.HasSuffix(string(got), "PING") {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("read %q: %v", got, err)
		}
	}
	return string(got)
}

// TestECDSNetwork: a network Wasm filter from the management server
// (Filter.config_discovery on a TCP listener), on each runtime: the
// listener warms (refused); a v1 the plugin refuses is NACKed, which ends
// the warming, and a connection is then closed at once (Envoy's network
// filter chain without the filter's configuration); v2 ACKed and
// traffic through it; a connection opened on v2 keeps v2 when v3 is
// swapped in, while a new one gets v3.
func TestECDSNetwork(t *testing.T) {
	path := plugins.Path(t, "tcp")
	for _, rt := range runtimes() {
		t.Run(rt, func(t *testing.T) {
			e := startECDS(t, rt, ecdsOptions{tcp: true, timeout: "0s", backend: tcpEcho(t)})
			m := e.m
			e.refused(t, "tcp", "before the first configuration")

			m.pushTCP(t, "1", path, "fail")
			m.nack(t, "1", "proxy_on_configure returned false")
			e.served(t, "tcp", "after the NACK")
			c, err := net.Dial("tcp", e.p.Addr("tcp").String())
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(time.Minute))
			if n, err := c.Read(make([]byte, 1)); err == nil || n != 0 {
				t.Fatalf("without configuration: read %d bytes, %v; want the connection closed", n, err)
			}
			c.Close()

			m.pushTCP(t, "2", path, "two:")
			m.ack(t, "2")
			old, err := net.Dial("tcp", e.p.Addr("tcp").String())
			if err != nil {
				t.Fatal(err)
			}
			defer old.Close()
			if got := exchange(t, old); got != "TWO:PING" {
				t.Fatalf("v2: %q, want TWO:PING", got)
			}

			m.pushTCP(t, "3", path, "three:")
			m.ack(t, "3")
			c, err = net.Dial("tcp", e.p.Addr("tcp").String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := exchange(t, c); got != "THREE:PING" {
				t.Fatalf("v3: %q, want THREE:PING", got)
			}
			// The connection of v2 keeps its plugin: a later chunk is
			// not prefixed again, and upper-cased by v2's plugin.
			if got := exchange(t, old); got != "PING" {
				t.Fatalf("the connection opened on v2, after v3: %q, want PING", got)
			}
		})
	}
}

// TestECDSDelta: delta xDS (api_type DELTA_GRPC), over its own stream
// and over ADS, on each runtime, a filter with default_config that warms:
// the first request subscribes to the filter's name with the node and no
// initial versions; refused while warming; v1 ACKed (the response's
// nonce, no error) and seen; a v2 the plugin refuses NACKed, v1 kept; v3
// ACKed; the stream broken and opened again: the new stream's first
// request gives v3's resource version (initial_resource_versions); v4 on
// the new server ACKed; the resource removed from the snapshot: the
// filter goes back to its default_config (Envoy's onConfigRemoved).
func TestECDSDelta(t *testing.T) {
	path := plugins.Path(t, "config")
	for _, rt := range runtimes() {
		for _, ads := range []bool{false, true} {
			name := rt + "/delta"
			if ads {
				name = rt + "/delta_ads"
			}
			t.Run(name, func(t *testing.T) { testECDSDelta(t, rt, ads, path) })
		}
	}
}

func testECDSDelta(t *testing.T, rt string, ads bool, path string) {
	backend := newHTTPBackend(t)
	e := startECDS(t, rt, ecdsOptions{ads: ads, delta: true, timeout: "0s", discovery: defaultConfig(path), backend: backend.port()})
	m := e.m
	ack := func(m *managementServer, step string) *discoveryv3.DeltaDiscoveryRequest {
		t.Helper()
		return m.nextDelta(t, "ACK of "+step, func(r *discoveryv3.DeltaDiscoveryRequest) bool {
			return r.GetResponseNonce() != "" && r.GetErrorDetail() == nil
		})
	}
	e.refused(t, "http", "before the first configuration")

	m.push(t, "1", path, "one")
	ack(m, "v1")
	e.want(t, "v1", "one")

	m.push(t, "2", path, "fail")
	r := m.nextDelta(t, "NACK of v2", func(r *discoveryv3.DeltaDiscoveryRequest) bool { return r.GetErrorDetail() != nil })
	if r.GetResponseNonce() == "" || r.GetErrorDetail().GetCode() != 13 || !strings.Contains(r.GetErrorDetail().GetMessage(), "proxy_on_configure returned false") {
		t.Fatalf("NACK of v2: nonce %q, error_detail %v", r.GetResponseNonce(), r.GetErrorDetail())
	}
	e.want(t, "after v2's NACK", "one")

	m.push(t, "3", path, "three")
	ack(m, "v3")
	e.want(t, "v3", "three")

	m.srv.Stop()
	e.want(t, "with the management server gone", "three")
	m2 := startManagementServer(t, ads, m.addr, cachev3.NewSnapshotCache(ads, cachev3.IDHash{}, nil), m.reqs)
	again := m2.nextDelta(t, "first request of the new stream", func(r *discoveryv3.DeltaDiscoveryRequest) bool { return r.GetResponseNonce() == "" })
	if v := again.GetInitialResourceVersions()["ecds_filter"]; v == "" || !slices.Equal(again.GetResourceNamesSubscribe(), []string{"ecds_filter"}) {
		t.Fatalf("the new stream's first request: %v; want ecds_filter with v3's version in initial_resource_versions", again)
	}
	m2.push(t, "4", path, "four")
	ack(m2, "v4")
	e.want(t, "v4", "four")

	m2.pushTEC(t, "5") // no resource: removed
	ack(m2, "the removal")
	e.want(t, "after the removal: the default", "default")
}

// TestECDSRefused: what config_discovery anywasm does not do is refused
// by its field.
func TestECDSRefused(t *testing.T) {
	const grpcSource = "api_config_source: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]}"
	fill := func(tmpl string) string {
		return strings.NewReplacer("{{SOURCE}}", grpcSource, "{{TIMEOUT}}", "", "{{DISCOVERY}}", "", "{{BACKEND}}", "8080", "{{XDS}}", "18000", "{{DYNAMIC}}", "").Replace(tmpl)
	}
	base := fill(ecdsBootstrap)
	if _, _, err := envoyconfig.Parse([]byte(base)); err != nil {
		t.Fatalf("base: %v", err)
	}
	const f = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].config_discovery"
	for _, c := range []struct{ name, old, new, want string }{
		{"rest", "api_type: GRPC", "api_type: REST", f + ".config_source.api_config_source.api_type: REST: not supported by anywasm"},
		{"ads without ads_config", grpcSource, "ads: {}", f + ".config_source.ads: no dynamic_resources.ads_config"},
		{"another type", "type_urls: [type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm]", "type_urls: [type.googleapis.com/envoy.extensions.filters.http.router.v3.Router]",
			f + ".type_urls[0]: type.googleapis.com/envoy.extensions.filters.http.router.v3.Router: not supported by anywasm"},
		{"google_grpc", "{envoy_grpc: {cluster_name: xds_cluster}}", "{google_grpc: {target_uri: x, stat_prefix: x}}",
			f + ".config_source.api_config_source.grpc_services[0].google_grpc: not supported by anywasm"},
		{"apply_default_config_without_warming without default_config", "type_urls: [", "apply_default_config_without_warming: true\n              type_urls: [",
			f + ".apply_default_config_without_warming: Error: filter config ecds_filter applied without warming but has no default config."},
		{"a network filter's type", "type_urls: [type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm]", "type_urls: [type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm]",
			f + ".type_urls[0]: type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm: not supported by anywasm"},
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
	tcp := fill(ecdsTCPBootstrap)
	if _, _, err := envoyconfig.Parse([]byte(tcp)); err != nil {
		t.Fatalf("tcp base: %v", err)
	}
	const nf = "static_resources.listeners[0].filter_chains[0].filters"
	for _, c := range []struct{ name, old, new, want string }{
		{"an HTTP filter's type", "type_urls: [type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm]", "type_urls: [type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm]",
			nf + "[0].config_discovery.type_urls[0]: type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm: not supported by anywasm"},
		{"the terminal filter", `typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: backend`, `config_discovery: {config_source: {ads: {}}, type_urls: [type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy]}`,
			nf + "[1].config_discovery: the terminal filter from a control plane: not supported by anywasm"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(tcp, c.old) {
				t.Fatalf("the tcp base has no %q", c.old)
			}
			_, _, err := envoyconfig.Parse([]byte(strings.Replace(tcp, c.old, c.new, 1)))
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

// TestECDSOwnKnobs: the anywasm block's knobs of a discovered filter
// (Envoy has no names for them, so a control plane sends none) apply to
// every plugin the control plane sends: pool_size 3 on the update.
func TestECDSOwnKnobs(t *testing.T) {
	const grpcSource = "api_config_source: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]}"
	b := "anywasm: {plugins: {ecds_filter: {pool_size: 3}}}\n" + strings.NewReplacer("{{SOURCE}}", grpcSource, "{{TIMEOUT}}", "",
		"{{DISCOVERY}}", "", "{{BACKEND}}", "8080", "{{XDS}}", "18000", "{{DYNAMIC}}", "").Replace(ecdsBootstrap)
	cfg, _, err := envoyconfig.Parse([]byte(b))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Admin.Address = "127.0.0.1:0"
	cfg.CacheDir = compileCache()
	p, err := proxy.Start(t.Context(), cfg, proxy.Options{Runtime: "wazero", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	f := &proxy.Plugin{Name: "ecds_filter"}
	f.VMConfig.Code.Local.Filename = plugins.Path(t, "config")
	if err := p.UpdateFilter(t.Context(), "ecds_filter", f); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + p.AdminAddr().String() + "/plugins")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got []map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0]["pool_size"] != float64(3) || got[0]["discovered"] != "ecds_filter" {
		t.Errorf("/plugins: %v", got)
	}
	if f.PoolSize != 0 {
		t.Errorf("UpdateFilter changed its argument: %+v", f)
	}
}
