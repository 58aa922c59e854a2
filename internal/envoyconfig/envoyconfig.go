// Package envoyconfig reads Envoy's own configuration, a bootstrap
// (envoy.config.bootstrap.v3.Bootstrap in YAML or JSON), into the proxy's
// (internal/proxy.Config), so that a file written for Envoy runs in
// cmd/anywasm-proxy unchanged.
//
// The file is decoded with Envoy's types (go-control-plane) and checked
// with Envoy's generated validation; then every set field is checked
// against the subset anywasm translates (subset.go): anything else is
// refused with its path and "not supported by anywasm", never ignored.
// What the subset holds is in README.md ("Envoy's configuration").
package envoyconfig

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/config/metrics/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	httpwasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	netwasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/wasm/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/internal/proxy"
)

// Note is something the translation chose that the operator should know
// (a runtime anywasm does not have, say); the command logs notes at info.
type Note struct {
	Field   string // Envoy's path: static_resources.listeners[0]...
	Plugin  string // the plugin's name, when the note is about one
	Message string
}

// Load reads an Envoy bootstrap file and translates it (Parse). Plugin
// filenames are used as written: Envoy resolves a relative one from its
// working directory, not from the file's.
func Load(path string) (*proxy.Config, []Note, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("envoyconfig: %w", err)
	}
	c, notes, err := Parse(b)
	if err != nil {
		return nil, nil, fmt.Errorf("envoyconfig: %s: %w", path, err)
	}
	return c, notes, nil
}

// Parse decodes an Envoy bootstrap (YAML or JSON), refuses what anywasm
// does not translate, naming each field by its path, and returns the
// proxy's configuration, validated.
func Parse(b []byte) (*proxy.Config, []Note, error) {
	bs, typedStruct, o, err := decode(b)
	if err != nil {
		return nil, nil, err
	}
	c := &checker{typedStruct: typedStruct}
	c.message(bs.ProtoReflect(), "")
	if len(c.errs) > 0 {
		return nil, nil, errors.Join(c.errs...)
	}
	t := &translator{typedStruct: typedStruct}
	cfg := t.bootstrap(bs)
	if o != nil {
		t.errs = append(t.errs, o.apply(cfg)...)
	}
	if len(t.errs) > 0 {
		return nil, nil, errors.Join(t.errs...)
	}
	if err := cfg.Validate(); err != nil {
		// The translation checks what it can in Envoy's terms; this is
		// what is left, named in the proxy's.
		return nil, nil, fmt.Errorf("the translated configuration: %w", err)
	}
	return cfg, t.notes, nil
}

type translator struct {
	errs        []error
	notes       []Note
	typedStruct map[string]bool // Anys written as TypedStructs
	// clusters are the clusters of static_resources (name to index);
	// tcp are those a tcp_proxy names, routed those a route names.
	clusters map[string]int
	tcp      map[string]string // cluster to the field that names it
	routed   map[string]string
	xds      map[string]string // the management servers' clusters
	// ads is dynamic_resources.ads_config's cluster ("" without one);
	// adsDelta says it is DELTA_GRPC.
	ads      string
	adsDelta bool
}

func (t *translator) fail(path, format string, args ...any) {
	t.errs = append(t.errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

func (t *translator) bootstrap(bs *bootstrapv3.Bootstrap) *proxy.Config {
	cfg := &proxy.Config{}
	if n := bs.GetNode(); n != nil {
		cfg.Node = &proxy.Node{ID: n.GetId(), Cluster: n.GetCluster()}
		if n.GetMetadata() != nil {
			cfg.Node.Metadata = n.GetMetadata().AsMap()
		}
	}
	if a := bs.GetAdmin(); a != nil && a.GetAddress() != nil {
		cfg.Admin.Address = t.address(a.GetAddress(), "admin.address")
	}
	if sc := bs.GetStatsConfig(); sc != nil {
		cfg.Stats = statsConfig(sc)
		if err := cfg.Stats.Check("stats_config"); err != nil {
			t.errs = append(t.errs, err)
		}
	}
	for i, e := range bs.GetBootstrapExtensions() {
		f := fmt.Sprintf("bootstrap_extensions[%d]", i)
		svc, ok := t.typed(e.GetTypedConfig(), f+".typed_config", "envoy.extensions.wasm.v3.WasmService").(*wasmv3.WasmService)
		if !ok {
			continue
		}
		p := t.plugin(svc.GetConfig(), t.in(f+".typed_config")+".config", e.GetName())
		cfg.WasmServices = append(cfg.WasmServices, proxy.WasmService{Plugin: p, Singleton: svc.GetSingleton()})
	}
	sr := bs.GetStaticResources()
	t.clusters = map[string]int{}
	t.tcp, t.routed, t.xds = map[string]string{}, map[string]string{}, map[string]string{}
	for i, c := range sr.GetClusters() {
		t.clusters[c.GetName()] = i
	}
	if a := bs.GetDynamicResources().GetAdsConfig(); a != nil {
		t.ads, t.adsDelta = t.apiConfigSource(a, "dynamic_resources.ads_config")
	}
	for i, l := range sr.GetListeners() {
		cfg.Listeners = append(cfg.Listeners, t.listener(l, fmt.Sprintf("static_resources.listeners[%d]", i)))
	}
	for i, c := range sr.GetClusters() {
		cfg.Clusters = append(cfg.Clusters, t.cluster(c, fmt.Sprintf("static_resources.clusters[%d]", i)))
	}
	return cfg
}

// in is the path of the fields of the Any at path: under .value when it
// was written as a TypedStruct.
func (t *translator) in(path string) string {
	if t.typedStruct[path] {
		return path + ".value"
	}
	return path
}

// typed returns the message of an Any if it is of the type wanted (one
// of), else refuses it.
func (t *translator) typed(a *anypb.Any, path string, want ...string) proto.Message {
	if a == nil {
		t.fail(path, "missing (want %s)", orList(want))
		return nil
	}
	m := unpack(a)
	name := string(m.ProtoReflect().Descriptor().FullName())
	if !slices.Contains(want, name) {
		t.fail(path, "%s here: %s (want %s)", name, notSupported, orList(want))
		return nil
	}
	return m
}

func orList(s []string) string {
	switch len(s) {
	case 1:
		return s[0]
	case 2:
		return s[0] + " or " + s[1]
	}
	return fmt.Sprint(s)
}

// address is a socket address as host:port.
func (t *translator) address(a *corev3.Address, path string) string {
	sa := a.GetSocketAddress()
	if sa == nil {
		t.fail(path+".socket_address", "missing")
		return ""
	}
	return net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
}

func metadata(m *corev3.Metadata) *proxy.Metadata {
	if m == nil || len(m.GetFilterMetadata()) == 0 {
		return nil
	}
	md := &proxy.Metadata{FilterMetadata: map[string]map[string]any{}}
	for k, s := range m.GetFilterMetadata() {
		md.FilterMetadata[k] = s.AsMap()
	}
	return md
}

func (t *translator) listener(l *listenerv3.Listener, path string) proxy.Listener {
	out := proxy.Listener{Name: l.GetName(), Metadata: metadata(l.GetMetadata())}
	if l.GetAddress() == nil {
		t.fail(path+".address", "missing")
	} else {
		out.Address = t.address(l.GetAddress(), path+".address")
	}
	if d := l.GetTrafficDirection(); d != corev3.TrafficDirection_UNSPECIFIED {
		out.TrafficDirection = d.String()
	}
	chains := l.GetFilterChains()
	switch {
	case len(chains) == 0:
		t.fail(path+".filter_chains", "none")
		return out
	case len(chains) > 1:
		t.fail(fmt.Sprintf("%s.filter_chains[1]", path), "a second filter chain: %s (a listener has one)", notSupported)
		return out
	}
	path += ".filter_chains[0].filters"
	fs := chains[0].GetFilters()
	if len(fs) == 0 {
		t.fail(path, "none")
		return out
	}
	const (
		hcm  = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
		nwsm = "envoy.extensions.filters.network.wasm.v3.Wasm"
		tcpp = "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
	)
	last := len(fs) - 1
	lastPath := fmt.Sprintf("%s[%d]", path, last)
	if len(fs) == 1 && typeOf(fs[0].GetTypedConfig()) == hcm {
		m, _ := t.typed(fs[0].GetTypedConfig(), lastPath+".typed_config", hcm).(*hcmv3.HttpConnectionManager)
		if m != nil {
			out.HTTP = t.http(m, t.in(lastPath+".typed_config"))
		}
		return out
	}
	tcp := &proxy.TCPOptions{}
	for i, f := range fs[:last] {
		fp := fmt.Sprintf("%s[%d]", path, i)
		if cd := f.GetConfigDiscovery(); cd != nil {
			// A network Wasm filter from a control plane (Envoy's
			// network filter ECDS, NetworkFilterConfigProviderManagerImpl).
			tcp.Filters = append(tcp.Filters, t.discovered(cd, fp+".config_discovery", f.GetName(), networkWasmFilter))
			continue
		}
		w, ok := t.typed(f.GetTypedConfig(), fp+".typed_config", nwsm).(*netwasmv3.Wasm)
		if ok {
			tcp.Filters = append(tcp.Filters, t.plugin(w.GetConfig(), t.in(fp+".typed_config")+".config", f.GetName()))
		}
	}
	if fs[last].GetConfigDiscovery() != nil {
		t.fail(lastPath+".config_discovery", "the terminal filter from a control plane: %s (config_discovery is for the network Wasm filters before tcp_proxy)", notSupported)
		return out
	}
	want := []string{tcpp}
	if last == 0 {
		want = []string{hcm, tcpp}
	}
	if p, ok := t.typed(fs[last].GetTypedConfig(), lastPath+".typed_config", want...).(*tcpproxyv3.TcpProxy); ok {
		tcp.Cluster = p.GetCluster()
		t.clusterRef(tcp.Cluster, t.in(lastPath+".typed_config")+".cluster", t.tcp)
		tcp.IdleTimeout = duration(p.GetIdleTimeout())
	}
	out.TCP = tcp
	return out
}

func typeOf(a *anypb.Any) string {
	if a == nil {
		return ""
	}
	return string(a.MessageName())
}

// clusterRef records a listener's or route's use of a cluster; an unknown
// one is refused, as Envoy refuses it.
func (t *translator) clusterRef(name, path string, uses map[string]string) {
	if _, ok := t.clusters[name]; !ok {
		t.fail(path, "unknown cluster %q", name)
		return
	}
	if _, ok := uses[name]; !ok {
		uses[name] = path
	}
}

func duration(d *durationpb.Duration) *proxy.Duration {
	if d == nil {
		return nil
	}
	s := proxy.Duration(d.AsDuration().String())
	return &s
}

func uint32p(v *wrapperspb.UInt32Value) *int {
	if v == nil {
		return nil
	}
	i := int(v.GetValue())
	return &i
}

func (t *translator) http(m *hcmv3.HttpConnectionManager, path string) *proxy.HTTPOptions {
	o := &proxy.HTTPOptions{
		MaxRequestHeadersKB:   uint32p(m.GetMaxRequestHeadersKb()),
		RequestTimeout:        duration(m.GetRequestTimeout()),
		RequestHeadersTimeout: duration(m.GetRequestHeadersTimeout()),
		StreamIdleTimeout:     duration(m.GetStreamIdleTimeout()),
	}
	// Envoy's defaults: server_name "envoy", OVERWRITE.
	o.ServerName = m.GetServerName()
	if o.ServerName == "" {
		o.ServerName = "envoy"
	}
	o.ServerHeaderTransformation = m.GetServerHeaderTransformation().String()
	switch c := m.GetCodecType(); c {
	case hcmv3.HttpConnectionManager_AUTO:
	case hcmv3.HttpConnectionManager_HTTP1, hcmv3.HttpConnectionManager_HTTP2:
		o.CodecType = c.String()
	default:
		t.fail(path+".codec_type", "%s: %s (AUTO, HTTP1 or HTTP2)", c, notSupported)
	}
	if h2 := m.GetHttp2ProtocolOptions(); h2 != nil {
		o.HTTP2ProtocolOptions = &proxy.HTTP2ProtocolOptions{
			MaxConcurrentStreams:        uint32p(h2.GetMaxConcurrentStreams()),
			InitialStreamWindowSize:     uint32p(h2.GetInitialStreamWindowSize()),
			InitialConnectionWindowSize: uint32p(h2.GetInitialConnectionWindowSize()),
		}
	}
	if c := m.GetCommonHttpProtocolOptions(); c != nil {
		o.IdleTimeout = duration(c.GetIdleTimeout())
		o.MaxHeadersCount = uint32p(c.GetMaxHeadersCount())
	}
	const (
		hwsm   = "envoy.extensions.filters.http.wasm.v3.Wasm"
		router = "envoy.extensions.filters.http.router.v3.Router"
	)
	fs := m.GetHttpFilters()
	if len(fs) == 0 || typeOf(fs[len(fs)-1].GetTypedConfig()) != router {
		t.fail(path+".http_filters", "the last filter must be envoy.filters.http.router (%s)", router)
	}
	for i, f := range fs {
		fp := fmt.Sprintf("%s.http_filters[%d]", path, i)
		if cd := f.GetConfigDiscovery(); cd != nil {
			o.Filters = append(o.Filters, t.discovered(cd, fp+".config_discovery", f.GetName(), wasmFilter))
			continue
		}
		if i == len(fs)-1 && typeOf(f.GetTypedConfig()) == router {
			_, _ = t.typed(f.GetTypedConfig(), fp+".typed_config", router).(*routerv3.Router)
			continue
		}
		if w, ok := t.typed(f.GetTypedConfig(), fp+".typed_config", hwsm).(*httpwasmv3.Wasm); ok {
			o.Filters = append(o.Filters, t.plugin(w.GetConfig(), t.in(fp+".typed_config")+".config", f.GetName()))
		}
	}
	rc := m.GetRouteConfig()
	if rc == nil {
		t.fail(path+".route_config", "missing (rds and scoped_routes are %s)", notSupported)
		return o
	}
	o.RouteConfig = t.routes(rc, path+".route_config")
	return o
}

func (t *translator) routes(rc *routev3.RouteConfiguration, path string) *proxy.RouteConfig {
	out := &proxy.RouteConfig{}
	for i, vh := range rc.GetVirtualHosts() {
		vp := fmt.Sprintf("%s.virtual_hosts[%d]", path, i)
		v := proxy.VirtualHost{Name: vh.GetName(), Domains: vh.GetDomains(), Metadata: metadata(vh.GetMetadata())}
		for j, r := range vh.GetRoutes() {
			rp := fmt.Sprintf("%s.routes[%d]", vp, j)
			pr := proxy.Route{Name: r.GetName(), Metadata: metadata(r.GetMetadata())}
			pr.Match = t.match(r.GetMatch(), rp+".match")
			switch {
			case r.GetRoute() != nil:
				pr.Route.Cluster = r.GetRoute().GetCluster()
				t.clusterRef(pr.Route.Cluster, rp+".route.cluster", t.routed)
			case r.GetDirectResponse() != nil:
				d := r.GetDirectResponse()
				pr.DirectResponse = &proxy.DirectResponse{Status: int(d.GetStatus())}
				if b := d.GetBody(); b != nil {
					s, ok := b.GetSpecifier().(*corev3.DataSource_InlineString)
					if !ok {
						t.fail(rp+".direct_response.body", "%s (a body is inline_string)", notSupported)
					} else {
						pr.DirectResponse.Body = &struct {
							InlineString string `json:"inline_string"`
						}{s.InlineString}
					}
				}
			}
			v.Routes = append(v.Routes, pr)
		}
		out.VirtualHosts = append(out.VirtualHosts, v)
	}
	return out
}

// match translates a RouteMatch (the checker refused the path specifiers
// and fields outside the subset).
func (t *translator) match(m *routev3.RouteMatch, path string) proxy.RouteMatch {
	var out proxy.RouteMatch
	switch ps := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		// An empty prefix takes every path, as "/" does.
		out.Prefix = cmp.Or(ps.Prefix, "/")
	case *routev3.RouteMatch_Path:
		out.Path = ps.Path
	case *routev3.RouteMatch_SafeRegex:
		out.SafeRegex = t.regex(ps.SafeRegex, path+".safe_regex")
	}
	if cs := m.GetCaseSensitive(); cs != nil {
		v := cs.GetValue()
		out.CaseSensitive = &v
	}
	for i, h := range m.GetHeaders() {
		hp := fmt.Sprintf("%s.headers[%d]", path, i)
		hm := proxy.HeaderMatcher{Name: h.GetName(), InvertMatch: h.GetInvertMatch(), TreatMissingHeaderAsEmpty: h.GetTreatMissingHeaderAsEmpty()}
		switch sp := h.GetHeaderMatchSpecifier().(type) {
		case *routev3.HeaderMatcher_ExactMatch:
			hm.ExactMatch = &sp.ExactMatch
		case *routev3.HeaderMatcher_PrefixMatch:
			hm.PrefixMatch = &sp.PrefixMatch
		case *routev3.HeaderMatcher_SuffixMatch:
			hm.SuffixMatch = &sp.SuffixMatch
		case *routev3.HeaderMatcher_ContainsMatch:
			hm.ContainsMatch = &sp.ContainsMatch
		case *routev3.HeaderMatcher_SafeRegexMatch:
			hm.SafeRegexMatch = t.regex(sp.SafeRegexMatch, hp+".safe_regex_match")
		case *routev3.HeaderMatcher_RangeMatch:
			hm.RangeMatch = &proxy.Int64Range{Start: sp.RangeMatch.GetStart(), End: sp.RangeMatch.GetEnd()}
		case *routev3.HeaderMatcher_PresentMatch:
			hm.PresentMatch = &sp.PresentMatch
		case *routev3.HeaderMatcher_StringMatch:
			hm.StringMatch = t.stringMatcher(sp.StringMatch, hp+".string_match")
		}
		out.Headers = append(out.Headers, hm)
	}
	for i, q := range m.GetQueryParameters() {
		qm := proxy.QueryParameterMatcher{Name: q.GetName()}
		switch sp := q.GetQueryParameterMatchSpecifier().(type) {
		case *routev3.QueryParameterMatcher_StringMatch:
			qm.StringMatch = t.stringMatcher(sp.StringMatch, fmt.Sprintf("%s.query_parameters[%d].string_match", path, i))
		case *routev3.QueryParameterMatcher_PresentMatch:
			qm.PresentMatch = &sp.PresentMatch
		}
		out.QueryParameters = append(out.QueryParameters, qm)
	}
	return out
}

// regex is a RegexMatcher, checked here to name Envoy's path (the proxy
// compiles it again).
func (t *translator) regex(r *matcherv3.RegexMatcher, path string) *proxy.RegexMatcher {
	if _, err := regexp.Compile(r.GetRegex()); err != nil {
		t.fail(path+".regex", "%q: %v", r.GetRegex(), err)
	}
	return &proxy.RegexMatcher{Regex: r.GetRegex()}
}

func (t *translator) stringMatcher(m *matcherv3.StringMatcher, path string) *proxy.StringMatcher {
	out := &proxy.StringMatcher{IgnoreCase: m.GetIgnoreCase()}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		out.Exact = &p.Exact
	case *matcherv3.StringMatcher_Prefix:
		out.Prefix = &p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		out.Suffix = &p.Suffix
	case *matcherv3.StringMatcher_Contains:
		out.Contains = &p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		out.SafeRegex = t.regex(p.SafeRegex, path+".safe_regex")
	}
	return out
}

// Envoy's runtimes; wasmtime is anywasm's too (when the binary has it),
// the others run on the default runtime (-runtime, or wazero).
const runtimePrefix = "envoy.wasm.runtime."

var envoyRuntimes = []string{"v8", "wasmtime", "wamr", "wavm", "null"}

// plugin translates a Wasm filter's or service's PluginConfig; name is
// the filter's (or extension's) name, the plugin's when config.name is
// empty (Envoy's plugin name is then empty; anywasm's proxy names every
// plugin).
func (t *translator) plugin(pc *wasmv3.PluginConfig, path, name string) proxy.Plugin {
	p := proxy.Plugin{Name: pc.GetName(), RootID: pc.GetRootId(), FailOpen: pc.GetFailOpen()}
	if p.Name == "" {
		// The proxy names the plugin after its filter; the plugin itself
		// sees Envoy's name, empty (its plugin_name attribute, its logs'
		// prefix: PluginBase::makeLogPrefix).
		p.Name = name
		p.PluginName = new(string)
	}
	if fp := pc.GetFailurePolicy(); fp != wasmv3.FailurePolicy_UNSPECIFIED {
		p.FailurePolicy = fp.String()
	}
	if rc := pc.GetReloadConfig(); rc != nil {
		// Envoy's PluginConfig constructor reads backoff.base_interval
		// only (default 1000 ms) for its JitteredLowerBoundBackOffStrategy.
		p.ReloadConfig = &proxy.ReloadConfig{}
		if b := rc.GetBackoff(); b != nil {
			p.ReloadConfig.Backoff = &proxy.BackoffStrategy{BaseInterval: duration(b.GetBaseInterval()), MaxInterval: duration(b.GetMaxInterval())}
		}
	}
	p.Configuration = t.value(pc.GetConfiguration(), path+".configuration")
	vm := pc.GetVmConfig()
	if vm == nil {
		t.fail(path+".vm_config", "missing")
		return p
	}
	vp := path + ".vm_config"
	p.VMConfig.VMID = vm.GetVmId()
	// Envoy's createWasm passes it to WasmBase::load (cpp-host's
	// src/wasm.cc); abi.PluginConfig.AllowPrecompiled does the same.
	p.VMConfig.AllowPrecompiled = vm.GetAllowPrecompiled()
	switch rt := vm.GetRuntime(); {
	case rt == runtimePrefix+"wasmtime" && slices.Contains(engine.Runtimes(), "wasmtime"):
		p.VMConfig.Runtime = "wasmtime"
	case rt == runtimePrefix+"wasmtime":
		t.notes = append(t.notes, Note{Field: vp + ".runtime", Plugin: p.Name,
			Message: fmt.Sprintf("runtime %s is not in this binary: the plugin runs on the default runtime", rt)})
	case strings.HasPrefix(rt, runtimePrefix) && slices.Contains(envoyRuntimes, strings.TrimPrefix(rt, runtimePrefix)):
		t.notes = append(t.notes, Note{Field: vp + ".runtime", Plugin: p.Name,
			Message: fmt.Sprintf("runtime %s is Envoy's, not anywasm's: the plugin runs on the default runtime", rt)})
	default:
		t.fail(vp+".runtime", "%q: want one of Envoy's, %s%v", rt, runtimePrefix, envoyRuntimes)
	}
	if r := vm.GetCode().GetRemote(); r != nil {
		// Envoy's createWasm fetches it through a RemoteAsyncDataProvider;
		// the proxy fetches it at load (internal/proxy/remote.go).
		rc := &proxy.RemoteCode{Sha256: r.GetSha256()}
		rc.HTTPURI.URI = r.GetHttpUri().GetUri()
		rc.HTTPURI.Cluster = r.GetHttpUri().GetCluster()
		rc.HTTPURI.Timeout = duration(r.GetHttpUri().GetTimeout())
		if rp := r.GetRetryPolicy(); rp != nil {
			rc.RetryPolicy = &proxy.RetryPolicy{}
			if n := rp.GetNumRetries(); n != nil {
				v := n.GetValue()
				rc.RetryPolicy.NumRetries = &v
			}
			if b := rp.GetRetryBackOff(); b != nil {
				rc.RetryPolicy.RetryBackOff = &proxy.BackoffStrategy{BaseInterval: duration(b.GetBaseInterval()), MaxInterval: duration(b.GetMaxInterval())}
			}
		}
		p.VMConfig.Code.Remote = rc
	}
	if cr := pc.GetCapabilityRestrictionConfig(); cr != nil {
		p.CapabilityRestrictionConfig = &proxy.CapabilityRestrictionConfig{AllowedCapabilities: map[string]struct{}{}}
		for k := range cr.GetAllowedCapabilities() {
			p.CapabilityRestrictionConfig.AllowedCapabilities[k] = struct{}{}
		}
	}
	local := vm.GetCode().GetLocal()
	switch s := local.GetSpecifier().(type) {
	case *corev3.DataSource_Filename:
		p.VMConfig.Code.Local.Filename = s.Filename
	case *corev3.DataSource_InlineBytes:
		p.VMConfig.Code.Local.InlineBytes = s.InlineBytes
	case *corev3.DataSource_InlineString:
		p.VMConfig.Code.Local.InlineString = s.InlineString
	case nil:
		if vm.GetCode().GetRemote() == nil {
			t.fail(vp+".code.local", "missing (or give code.remote)")
		}
	default:
		t.fail(vp+".code.local", "%s (filename, inline_bytes or inline_string)", notSupported)
	}
	p.VMConfig.Configuration = t.value(vm.GetConfiguration(), vp+".configuration")
	p.VMConfig.NackOnCodeCacheMiss = vm.GetNackOnCodeCacheMiss()
	if e := vm.GetEnvironmentVariables(); e != nil {
		p.VMConfig.EnvironmentVariables = &proxy.Environment{HostEnvKeys: e.GetHostEnvKeys(), KeyValues: e.GetKeyValues()}
	}
	return p
}

// value is a configuration as Envoy hands it to the plugin (anyToBytes in
// source/extensions/common/wasm): a StringValue's string, a BytesValue's
// bytes, else the Any's value, the message in protobuf's encoding.
func (t *translator) value(a *anypb.Any, path string) proxy.Value {
	var v proxy.Value
	if a == nil {
		return v
	}
	var j []byte
	switch m := unpack(a).(type) {
	case *wrapperspb.StringValue:
		j, _ = json.Marshal(m.GetValue())
	case *wrapperspb.BytesValue:
		j = bytesValue(m.GetValue())
	default:
		j = bytesValue(a.GetValue())
	}
	if err := v.UnmarshalJSON(j); err != nil {
		t.fail(path, "%v", err)
	}
	return v
}

// bytesValue is the proxy's form of bytes: a BytesValue Any.
func bytesValue(b []byte) []byte {
	j, _ := json.Marshal(map[string]string{"@type": "type.googleapis.com/google.protobuf.BytesValue", "value": base64.StdEncoding.EncodeToString(b)})
	return j
}

func (t *translator) cluster(c *clusterv3.Cluster, path string) proxy.Cluster {
	out := proxy.Cluster{Name: c.GetName(), Type: "http", Metadata: metadata(c.GetMetadata())}
	switch c.GetType() {
	case clusterv3.Cluster_STATIC:
	case clusterv3.Cluster_STRICT_DNS:
		out.Discovery = "strict_dns"
	case clusterv3.Cluster_LOGICAL_DNS:
		out.Discovery = "logical_dns"
	default:
		t.fail(path+".type", "%s: %s (STATIC, STRICT_DNS or LOGICAL_DNS)", c.GetType(), notSupported)
	}
	switch c.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN:
	case clusterv3.Cluster_RANDOM, clusterv3.Cluster_LEAST_REQUEST:
		out.LbPolicy = c.GetLbPolicy().String()
	default:
		t.fail(path+".lb_policy", "%s: %s (ROUND_ROBIN, RANDOM or LEAST_REQUEST)", c.GetLbPolicy(), notSupported)
	}
	if c.GetType() == clusterv3.Cluster_STRICT_DNS || c.GetType() == clusterv3.Cluster_LOGICAL_DNS {
		out.DNSRefreshRate = duration(c.GetDnsRefreshRate())
		if f := c.GetDnsLookupFamily(); f != clusterv3.Cluster_AUTO {
			out.DNSLookupFamily = f.String()
		}
	}
	var eps []string
	var epPaths []string
	for i, le := range c.GetLoadAssignment().GetEndpoints() {
		for j, lb := range le.GetLbEndpoints() {
			ep := fmt.Sprintf("%s.load_assignment.endpoints[%d].lb_endpoints[%d]", path, i, j)
			a := lb.GetEndpoint().GetAddress()
			if a == nil {
				t.fail(ep+".endpoint.address", "missing")
				continue
			}
			addr := t.address(a, ep+".endpoint.address")
			if host, _, err := net.SplitHostPort(addr); err == nil && c.GetType() == clusterv3.Cluster_STATIC {
				if _, err := netip.ParseAddr(host); err != nil {
					// Envoy's StaticClusterImpl takes IP addresses only.
					t.fail(ep+".endpoint.address.socket_address.address", "%q: a STATIC cluster's endpoints are IP addresses (STRICT_DNS or LOGICAL_DNS resolve host names)", host)
				}
			}
			eps = append(eps, addr)
			epPaths = append(epPaths, ep)
		}
	}
	switch {
	case len(eps) == 0 && len(epPaths) == 0:
		t.fail(path+".load_assignment", "no endpoint (anywasm needs one)")
	case c.GetType() == clusterv3.Cluster_LOGICAL_DNS && len(eps) > 1:
		// Envoy's LogicalDnsCluster::create: "LOGICAL_DNS clusters must
		// have a single locality_lb_endpoint and a single lb_endpoint".
		t.fail(epPaths[1], "a second endpoint: a LOGICAL_DNS cluster has exactly one")
	case len(eps) == 1:
		out.Address = eps[0]
	default:
		out.Endpoints = eps
	}
	for _, k := range sortedKeys(c.GetTypedExtensionProtocolOptions()) {
		kp := join(path+".typed_extension_protocol_options", k)
		o, ok := t.typed(c.GetTypedExtensionProtocolOptions()[k], kp, "envoy.extensions.upstreams.http.v3.HttpProtocolOptions").(*upstreamhttpv3.HttpProtocolOptions)
		if h2 := o.GetExplicitHttpConfig().GetHttp2ProtocolOptions(); ok && h2 != nil {
			out.Type = "grpc"
			// The subset's Http2ProtocolOptions fields are a listener's.
			h2p := t.in(kp) + ".explicit_http_config.http2_protocol_options"
			h2.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
				t.fail(join(h2p, string(fd.Name())), "on a cluster: %s", notSupported)
				return true
			})
		}
	}
	tcpUse, tcp := t.tcp[out.Name]
	routeUse, route := t.routed[out.Name]
	if xdsUse, ok := t.xds[out.Name]; ok && (out.Type != "grpc" || tcp) {
		t.fail(path, "cluster %q is a management server's (%s): it needs HTTP/2 (typed_extension_protocol_options, explicit_http_config.http2_protocol_options) and no tcp_proxy", out.Name, xdsUse)
	} else if ok && len(out.Endpoints) > 1 {
		t.fail(epPaths[1], "a second endpoint of a management server's cluster (%s): %s (its stream goes to one address)", xdsUse, notSupported)
	}
	switch {
	case tcp && route:
		t.fail(path, "cluster %q is a tcp_proxy's (%s) and a route's (%s): anywasm's clusters are one or the other", out.Name, tcpUse, routeUse)
	case tcp && out.Type == "grpc":
		t.fail(path, "cluster %q is HTTP/2 and a tcp_proxy's (%s)", out.Name, tcpUse)
	case tcp:
		out.Type = "tcp"
	case route && out.Type == "grpc":
		// An HTTP/2 cluster is the proxy's grpc cluster: for the plugins'
		// gRPC calls, not for routes.
		t.fail(path+".typed_extension_protocol_options", "HTTP/2 upstreams of routes are %s (an HTTP/2 cluster is for the plugins' gRPC calls; route %s)", notSupported, routeUse)
	}
	return out
}

// statsConfig translates stats_config's tag extraction (stats_tags,
// use_all_default_tags) into the proxy's stats, which the caller checks
// (proxy.Stats.Check) under Envoy's field names.
func statsConfig(sc *metricsv3.StatsConfig) *proxy.Stats {
	st := &proxy.Stats{}
	if u := sc.GetUseAllDefaultTags(); u != nil {
		v := u.GetValue()
		st.UseAllDefaultTags = &v
	}
	for _, ts := range sc.GetStatsTags() {
		tag := proxy.StatsTag{TagName: ts.GetTagName()}
		switch v := ts.GetTagValue().(type) {
		case *metricsv3.TagSpecifier_Regex:
			tag.Regex = v.Regex
		case *metricsv3.TagSpecifier_FixedValue:
			fixed := v.FixedValue
			tag.FixedValue = &fixed
		}
		st.StatsTags = append(st.StatsTags, tag)
	}
	return st
}
