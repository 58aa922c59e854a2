package envoyconfig

import (
	"fmt"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpwasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"

	"github.com/anywasm/anywasm/internal/proxy"
)

// wasmFilter is the one type a discovered filter may have: an HTTP Wasm
// filter.
const wasmFilter = "envoy.extensions.filters.http.wasm.v3.Wasm"

// typeURLPrefix is the prefix of the type URLs of Envoy's types.
const typeURLPrefix = "type.googleapis.com/"

// discovered translates an HTTP filter written with config_discovery
// (envoy.config.core.v3.ExtensionConfigSource): the proxy keeps its
// place, with default_config's plugin or none, and the subscription
// (ecds.go) fills it. name is the filter's: the TypedExtensionConfig's.
func (t *translator) discovered(cd *corev3.ExtensionConfigSource, path, name string) proxy.Plugin {
	d := &proxy.Discovery{Name: name}
	for i, u := range cd.GetTypeUrls() {
		if u != typeURLPrefix+wasmFilter {
			t.fail(fmt.Sprintf("%s.type_urls[%d]", path, i), "%s: %s (a discovered filter is a Wasm filter, %s%s)", u, notSupported, typeURLPrefix, wasmFilter)
		}
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
		d.Source = proxy.ConfigSource{Cluster: t.ads, ADS: true}
	case cs.GetApiConfigSource() != nil:
		d.Source = proxy.ConfigSource{Cluster: t.apiConfigSource(cs.GetApiConfigSource(), cp+".api_config_source")}
	default:
		t.fail(cp, "%s (ads or api_config_source; path, path_config_source and self are not)", notSupported)
	}
	p := proxy.Plugin{Name: name}
	if dc := cd.GetDefaultConfig(); dc != nil {
		dp := path + ".default_config"
		if w, ok := t.typed(dc, dp, wasmFilter).(*httpwasmv3.Wasm); ok {
			p = t.plugin(w.GetConfig(), t.in(dp)+".config", name)
			d.Default = true
		}
	}
	if !cd.GetApplyDefaultConfigWithoutWarming() {
		// Envoy holds the listener back (warming) until the first
		// configuration, or initial_fetch_timeout; anywasm serves at once.
		t.notes = append(t.notes, Note{Field: path + ".apply_default_config_without_warming", Plugin: name,
			Message: "false: anywasm does not warm listeners; the filter serves at once, with default_config or answering 500 until its configuration arrives"})
	}
	p.Discovery = d
	return p
}

// apiConfigSource checks a management server's ApiConfigSource (gRPC,
// state of the world, one envoy_grpc cluster) and returns its cluster.
func (t *translator) apiConfigSource(a *corev3.ApiConfigSource, path string) string {
	switch a.GetApiType() {
	case corev3.ApiConfigSource_GRPC:
	default:
		t.fail(path+".api_type", "%s: %s (GRPC: state of the world over gRPC)", a.GetApiType(), notSupported)
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
		return ""
	case len(gs) > 1:
		t.fail(path+".grpc_services[1]", "a second gRPC service: %s", notSupported)
		return ""
	}
	name := gs[0].GetEnvoyGrpc().GetClusterName()
	if name == "" {
		t.fail(path+".grpc_services[0].envoy_grpc.cluster_name", "missing")
		return ""
	}
	t.clusterRef(name, path+".grpc_services[0].envoy_grpc.cluster_name", t.xds)
	return name
}

// ExtensionConfig translates a TypedExtensionConfig a control plane sent
// for a discovered filter: its typed_config must be of a type the
// filter's type_urls allow (anywasm's: the Wasm filter), within the
// subset and valid by Envoy's validation; it is translated as a
// typed_config's. Notes are what Parse's are.
func ExtensionConfig(tec *corev3.TypedExtensionConfig) (proxy.Plugin, []Note, error) {
	if tec.GetTypedConfig() == nil {
		return proxy.Plugin{}, nil, fmt.Errorf("typed_config: missing")
	}
	// Envoy's check, with its message (validateTypeUrlHelper in
	// source/common/filter/config_discovery_impl.cc).
	if got := strings.TrimPrefix(tec.GetTypedConfig().GetTypeUrl(), typeURLPrefix); got != wasmFilter {
		return proxy.Plugin{}, nil, fmt.Errorf("Error: filter config has type URL %s but expect %s.", got, wasmFilter)
	}
	c := &checker{typedStruct: map[string]bool{}}
	c.message(tec.ProtoReflect(), "")
	if len(c.errs) > 0 {
		return proxy.Plugin{}, nil, joinErrs(c.errs)
	}
	t := &translator{typedStruct: map[string]bool{}}
	w, _ := t.typed(tec.GetTypedConfig(), "typed_config", wasmFilter).(*httpwasmv3.Wasm)
	var p proxy.Plugin
	if w != nil {
		p = t.plugin(w.GetConfig(), "typed_config.config", tec.GetName())
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
