package envoyconfig

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpwasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	netwasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/wasm/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/anywasm/anywasm/internal/proxy"
)

// The types a discovered filter may have: the HTTP Wasm filter (an HTTP
// filter's config_discovery) and the network Wasm filter (a listener
// filter's).
const (
	wasmFilter        = "envoy.extensions.filters.http.wasm.v3.Wasm"
	networkWasmFilter = "envoy.extensions.filters.network.wasm.v3.Wasm"
)

// typeURLPrefix is the prefix of the type URLs of Envoy's types.
const typeURLPrefix = "type.googleapis.com/"

// initialFetchTimeout is ConfigSource.initial_fetch_timeout's default
// (Envoy's Utility::configSourceInitialFetchTimeout: 15000 ms).
const initialFetchTimeout = 15 * time.Second

// discovered translates a filter written with config_discovery
// (envoy.config.core.v3.ExtensionConfigSource) whose configuration is of
// type want (wasmFilter or networkWasmFilter): the proxy keeps its
// place, with default_config's plugin or none, and the subscription
// (ecds.go) fills it. name is the filter's: the TypedExtensionConfig's.
// Without apply_default_config_without_warming the filter warms: the
// listeners wait for its first configuration, a rejected one or
// initial_fetch_timeout (Envoy's FilterConfigProviderManagerImpl adds
// the subscription's init target to the listener's init manager).
func (t *translator) discovered(cd *corev3.ExtensionConfigSource, path, name, want string) proxy.Plugin {
	d := &proxy.Discovery{Name: name, Type: want}
	for i, u := range cd.GetTypeUrls() {
		if u != typeURLPrefix+want {
			t.fail(fmt.Sprintf("%s.type_urls[%d]", path, i), "%s: %s (a discovered filter here is a Wasm filter, %s%s)", u, notSupported, typeURLPrefix, want)
		}
	}
	if cd.GetApplyDefaultConfigWithoutWarming() && cd.GetDefaultConfig() == nil {
		// Envoy's message (processDynamicFilterConfig).
		t.fail(path+".apply_default_config_without_warming", "Error: filter config %s applied without warming but has no default config.", name)
	}
	cs := cd.GetConfigSource()
	cp := path + ".config_source"
	switch v := cs.GetResourceApiVersion(); v {
	case corev3.ApiVersion_AUTO, corev3.ApiVersion_V3:
	default:
		t.fail(cp+".resource_api_version", "%s: %s (V3)", v, notSupported)
	}
	switch {
	case cs.GetAds() != nil:
		if t.ads == "" {
			t.fail(cp+".ads", "no dynamic_resources.ads_config: ADS needs one")
		}
		d.Source = proxy.ConfigSource{Cluster: t.ads, ADS: true, Delta: t.adsDelta}
	case cs.GetApiConfigSource() != nil:
		cluster, delta := t.apiConfigSource(cs.GetApiConfigSource(), cp+".api_config_source")
		d.Source = proxy.ConfigSource{Cluster: cluster, Delta: delta}
	default:
		t.fail(cp, "%s (ads or api_config_source; path, path_config_source and self are not)", notSupported)
	}
	d.InitialFetchTimeout = initialFetchTimeout
	if ft := cs.GetInitialFetchTimeout(); ft != nil {
		// 0 (or less): no timeout, as Envoy's GrpcSubscriptionImpl
		// starts no timer.
		d.InitialFetchTimeout = max(ft.AsDuration(), 0)
	}
	d.Warm = !cd.GetApplyDefaultConfigWithoutWarming()
	p := proxy.Plugin{Name: name}
	if dc := cd.GetDefaultConfig(); dc != nil {
		dp := path + ".default_config"
		if pc := t.wasmConfig(dc, dp, want); pc != nil {
			p = t.plugin(pc, t.in(dp)+".config", name)
			d.Default = true
		}
	}
	p.Discovery = d
	return p
}

// wasmConfig returns the PluginConfig of an HTTP or network Wasm
// filter's configuration of type want (refusing another type).
func (t *translator) wasmConfig(a *anypb.Any, path, want string) *wasmv3.PluginConfig {
	switch w := t.typed(a, path, want).(type) {
	case *httpwasmv3.Wasm:
		return w.GetConfig()
	case *netwasmv3.Wasm:
		return w.GetConfig()
	}
	return nil
}

// apiConfigSource checks a management server's ApiConfigSource (gRPC,
// state of the world or delta, one envoy_grpc cluster) and returns its
// cluster, and whether it is delta xDS.
func (t *translator) apiConfigSource(a *corev3.ApiConfigSource, path string) (_ string, delta bool) {
	switch a.GetApiType() {
	case corev3.ApiConfigSource_GRPC:
	case corev3.ApiConfigSource_DELTA_GRPC:
		delta = true
	default:
		t.fail(path+".api_type", "%s: %s (GRPC or DELTA_GRPC: xDS over gRPC, state of the world or delta)", a.GetApiType(), notSupported)
	}
	switch v := a.GetTransportApiVersion(); v {
	case corev3.ApiVersion_AUTO, corev3.ApiVersion_V3:
	default:
		t.fail(path+".transport_api_version", "%s: %s (V3)", v, notSupported)
	}
	gs := a.GetGrpcServices()
	switch {
	case len(gs) == 0:
		t.fail(path+".grpc_services", "none (one envoy_grpc)")
		return "", delta
	case len(gs) > 1:
		t.fail(path+".grpc_services[1]", "a second gRPC service: %s", notSupported)
		return "", delta
	}
	name := gs[0].GetEnvoyGrpc().GetClusterName()
	if name == "" {
		t.fail(path+".grpc_services[0].envoy_grpc.cluster_name", "missing")
		return "", delta
	}
	t.clusterRef(name, path+".grpc_services[0].envoy_grpc.cluster_name", t.xds)
	return name, delta
}

// ExtensionConfig translates a TypedExtensionConfig a control plane sent
// for a discovered filter: its typed_config must be of each type its
// filters allow (wants: wasmFilter for an HTTP filter, networkWasmFilter
// for a network filter; Envoy checks every provider of the
// subscription), within the subset and valid by Envoy's validation; it
// is translated as a typed_config's. Notes are what Parse's are.
func ExtensionConfig(tec *corev3.TypedExtensionConfig, wants ...string) (proxy.Plugin, []Note, error) {
	if tec.GetTypedConfig() == nil {
		return proxy.Plugin{}, nil, fmt.Errorf("typed_config: missing")
	}
	if len(wants) == 0 {
		wants = []string{wasmFilter}
	}
	// Envoy's check, with its message (validateTypeUrlHelper in
	// source/common/filter/config_discovery_impl.cc).
	got := strings.TrimPrefix(tec.GetTypedConfig().GetTypeUrl(), typeURLPrefix)
	for _, want := range wants {
		if got != want {
			return proxy.Plugin{}, nil, fmt.Errorf("Error: filter config has type URL %s but expect %s.", got, want)
		}
	}
	c := &checker{typedStruct: map[string]bool{}}
	c.message(tec.ProtoReflect(), "")
	if len(c.errs) > 0 {
		return proxy.Plugin{}, nil, joinErrs(c.errs)
	}
	t := &translator{typedStruct: map[string]bool{}}
	var p proxy.Plugin
	if pc := t.wasmConfig(tec.GetTypedConfig(), "typed_config", got); pc != nil {
		p = t.plugin(pc, "typed_config.config", tec.GetName())
	}
	if len(t.errs) > 0 {
		return proxy.Plugin{}, nil, joinErrs(t.errs)
	}
	return p, t.notes, nil
}

// joinErrs joins errors on "; ", for one line in a NACK's error_detail.
func joinErrs(errs []error) error {
	s := make([]string, len(errs))
	for i, e := range errs {
		s[i] = e.Error()
	}
	return fmt.Errorf("%s", strings.Join(slices.Compact(s), "; "))
}
