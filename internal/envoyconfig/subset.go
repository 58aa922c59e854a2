package envoyconfig

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// opaque marks a field whose value is taken whole (metadata, a plugin's
// configuration): nothing in it is checked against the subset.
const opaque = true

// subset is what anywasm translates: per message type, the fields it
// reads (true: taken whole). A set field of a message that is not listed
// here, of a listed message, or of a type not listed at all, is refused
// with its path: nothing is ignored silently. Fields at their default
// (proto3 scalars at zero: codec_type AUTO, lb_policy ROUND_ROBIN, type
// STATIC) are not "set" and need no entry.
var subset = map[protoreflect.FullName]map[protoreflect.Name]bool{
	"envoy.config.bootstrap.v3.Bootstrap": {"node": false, "admin": false, "static_resources": false, "bootstrap_extensions": false, "dynamic_resources": false, "stats_config": false},
	// stats_config: tag extraction from the plugins' metric names, for the
	// admin's /stats/prometheus and /stats (internal/proxy/stats.go):
	// stats_tags and use_all_default_tags. stats_matcher,
	// histogram_bucket_settings and the rest are refused.
	"envoy.config.metrics.v3.StatsConfig":  {"stats_tags": false, "use_all_default_tags": false},
	"envoy.config.metrics.v3.TagSpecifier": {"tag_name": false, "regex": false, "fixed_value": false},
	// dynamic_resources: ads_config only, for the HTTP and network filters
	// discovered over ADS (ecds.go); lds_config and cds_config are refused.
	"envoy.config.bootstrap.v3.Bootstrap.DynamicResources": {"ads_config": false},
	"envoy.config.core.v3.Node":                            {"id": false, "cluster": false, "metadata": opaque},
	// access_log_path: where Envoy logs admin requests; anywasm logs none.
	// Envoy's examples set it, so it is accepted and unused.
	"envoy.config.bootstrap.v3.Admin":                     {"address": false, "access_log_path": false},
	"envoy.config.core.v3.Address":                        {"socket_address": false},
	"envoy.config.core.v3.SocketAddress":                  {"address": false, "port_value": false},
	"envoy.config.bootstrap.v3.Bootstrap.StaticResources": {"listeners": false, "clusters": false},
	"envoy.config.core.v3.TypedExtensionConfig":           {"name": false, "typed_config": false},
	"envoy.config.core.v3.Metadata":                       {"filter_metadata": opaque},
	"envoy.config.listener.v3.Listener":                   {"name": false, "address": false, "filter_chains": false, "metadata": false, "traffic_direction": false},
	"envoy.config.listener.v3.FilterChain":                {"filters": false},
	// config_discovery: a network Wasm filter from a control plane (ECDS,
	// as Envoy's NetworkFilterConfigProviderManagerImpl), before tcp_proxy.
	"envoy.config.listener.v3.Filter":                        {"name": false, "typed_config": false, "config_discovery": false},
	"envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy": {"stat_prefix": false, "cluster": false, "idle_timeout": false},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager": {
		"stat_prefix": false, "codec_type": false, "route_config": false, "http_filters": false,
		"max_request_headers_kb": false, "request_timeout": false, "request_headers_timeout": false,
		"stream_idle_timeout": false, "common_http_protocol_options": false, "http2_protocol_options": false,
		"server_name": false, "server_header_transformation": false,
	},
	"envoy.config.core.v3.HttpProtocolOptions":                               {"idle_timeout": false, "max_headers_count": false},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter": {"name": false, "typed_config": false, "config_discovery": false},
	// config_discovery (ECDS, ecds.go): over ADS or a gRPC stream of
	// its own, state of the world (GRPC) or delta (DELTA_GRPC), to an
	// envoy_grpc cluster. Without
	// apply_default_config_without_warming (which needs default_config,
	// as in Envoy) the listeners warm: bound, not listening, until the
	// first configuration, a rejected one, or initial_fetch_timeout
	// (default 15s, 0 none); then default_config serves, or the filter
	// answers 500 (HTTP) or closes the connection (network).
	"envoy.config.core.v3.ExtensionConfigSource":     {"config_source": false, "default_config": false, "apply_default_config_without_warming": false, "type_urls": false},
	"envoy.config.core.v3.ConfigSource":              {"ads": false, "api_config_source": false, "resource_api_version": false, "initial_fetch_timeout": false},
	"envoy.config.core.v3.AggregatedConfigSource":    {},
	"envoy.config.core.v3.ApiConfigSource":           {"api_type": false, "transport_api_version": false, "grpc_services": false},
	"envoy.config.core.v3.GrpcService":               {"envoy_grpc": false},
	"envoy.config.core.v3.GrpcService.EnvoyGrpc":     {"cluster_name": false},
	"envoy.extensions.filters.http.router.v3.Router": {},
	"envoy.config.route.v3.RouteConfiguration":       {"name": false, "virtual_hosts": false},
	"envoy.config.route.v3.VirtualHost":              {"name": false, "domains": false, "routes": false, "metadata": false},
	"envoy.config.route.v3.Route":                    {"name": false, "match": false, "route": false, "direct_response": false, "metadata": false},
	// RouteMatch: the path by prefix, exact path or RE2 regular expression
	// (case_sensitive for the first two), then headers and query
	// parameters (internal/proxy/match.go); connect_matcher,
	// path_separated_prefix, path_match_policy, runtime_fraction, grpc,
	// tls_context, dynamic_metadata, filter_state and cookies are refused.
	"envoy.config.route.v3.RouteMatch": {"prefix": false, "path": false, "safe_regex": false, "case_sensitive": false, "headers": false, "query_parameters": false},
	// HeaderMatcher: every form, Envoy's HeaderUtility semantics (values
	// of a repeated header joined with ",", pseudo-headers the request's).
	"envoy.config.route.v3.HeaderMatcher": {
		"name": false, "exact_match": false, "safe_regex_match": false, "range_match": false, "present_match": false,
		"prefix_match": false, "suffix_match": false, "contains_match": false, "string_match": false,
		"invert_match": false, "treat_missing_header_as_empty": false,
	},
	"envoy.config.route.v3.QueryParameterMatcher": {"name": false, "string_match": false, "present_match": false},
	// StringMatcher: all but custom (an extension).
	"envoy.type.matcher.v3.StringMatcher": {"exact": false, "prefix": false, "suffix": false, "safe_regex": false, "contains": false, "ignore_case": false},
	// RegexMatcher: RE2 syntax, run by Go's regexp (a full match).
	// google_re2 is accepted empty (its max_program_size is refused).
	"envoy.type.matcher.v3.RegexMatcher":                   {"google_re2": false, "regex": false},
	"envoy.type.matcher.v3.RegexMatcher.GoogleRE2":         {},
	"envoy.type.v3.Int64Range":                             {"start": false, "end": false},
	"envoy.config.route.v3.RouteAction":                    {"cluster": false},
	"envoy.config.route.v3.DirectResponseAction":           {"status": false, "body": false},
	"envoy.config.core.v3.DataSource":                      {"filename": false, "inline_bytes": false, "inline_string": false},
	"envoy.config.core.v3.AsyncDataSource":                 {"local": false, "remote": false},
	"envoy.config.core.v3.RemoteDataSource":                {"http_uri": false, "sha256": false, "retry_policy": false},
	"envoy.config.core.v3.HttpUri":                         {"uri": false, "cluster": false, "timeout": false},
	"envoy.config.core.v3.RetryPolicy":                     {"retry_back_off": false, "num_retries": false},
	"envoy.config.core.v3.BackoffStrategy":                 {"base_interval": false, "max_interval": false},
	"envoy.extensions.wasm.v3.CapabilityRestrictionConfig": {"allowed_capabilities": false},
	"envoy.extensions.wasm.v3.SanitizationConfig":          {},
	"envoy.extensions.filters.http.wasm.v3.Wasm":           {"config": false},
	"envoy.extensions.filters.network.wasm.v3.Wasm":        {"config": false},
	"envoy.extensions.wasm.v3.WasmService":                 {"config": false, "singleton": false},
	"envoy.extensions.wasm.v3.PluginConfig":                {"name": false, "root_id": false, "vm_config": false, "configuration": opaque, "fail_open": false, "failure_policy": false, "reload_config": false, "capability_restriction_config": false},
	"envoy.extensions.wasm.v3.ReloadConfig":                {"backoff": false},
	// nack_on_code_cache_miss: remote code not in the code cache fails the
	// load while one fetch fills the cache (internal/proxy remoteCode).
	"envoy.extensions.wasm.v3.VmConfig":             {"vm_id": false, "runtime": false, "code": false, "configuration": opaque, "environment_variables": false, "allow_precompiled": false, "nack_on_code_cache_miss": false},
	"envoy.extensions.wasm.v3.EnvironmentVariables": {"host_env_keys": false, "key_values": false},
	// Cluster: type STATIC (IP addresses), STRICT_DNS or LOGICAL_DNS (with
	// dns_refresh_rate, default 5 s, and dns_lookup_family); lb_policy
	// ROUND_ROBIN, RANDOM or LEAST_REQUEST (Envoy's defaults: 2 choices),
	// others refused by the translation (internal/proxy/upstream.go).
	"envoy.config.cluster.v3.Cluster": {"name": false, "type": false, "connect_timeout": false, "lb_policy": false, "load_assignment": false, "metadata": false, "typed_extension_protocol_options": false,
		"dns_refresh_rate": false, "dns_lookup_family": false},
	"envoy.config.endpoint.v3.ClusterLoadAssignment": {"cluster_name": false, "endpoints": false},
	// Every lb_endpoints entry of every LocalityLbEndpoints is an endpoint
	// of equal weight: locality, load_balancing_weight and priority are
	// refused.
	"envoy.config.endpoint.v3.LocalityLbEndpoints":                              {"lb_endpoints": false},
	"envoy.config.endpoint.v3.LbEndpoint":                                       {"endpoint": false},
	"envoy.config.endpoint.v3.Endpoint":                                         {"address": false},
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions":                    {"explicit_http_config": false},
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig": {"http_protocol_options": false, "http2_protocol_options": false},
	"envoy.config.core.v3.Http1ProtocolOptions":                                 {},
	// Http2ProtocolOptions: the fields below on a listener's
	// HttpConnectionManager; a cluster's (explicit_http_config) takes none.
	"envoy.config.core.v3.Http2ProtocolOptions": {"max_concurrent_streams": false, "initial_stream_window_size": false, "initial_connection_window_size": false},
}

// notSupported is the refusal of whatever the subset lacks.
const notSupported = "not supported by anywasm"

// checker walks a decoded bootstrap and refuses every set field outside
// the subset, and every Any whose message fails Envoy's validation.
type checker struct {
	errs        []error
	typedStruct map[string]bool // Anys written as TypedStructs: their fields are under .value
}

func (c *checker) fail(path, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

// message checks the set fields of m, in field number order.
func (c *checker) message(m protoreflect.Message, path string) {
	d := m.Descriptor()
	fields, ok := subset[d.FullName()]
	if !ok {
		c.fail(path, "%s: %s", d.FullName(), notSupported)
		return
	}
	var set []protoreflect.FieldDescriptor
	m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		set = append(set, fd)
		return true
	})
	slices.SortFunc(set, func(a, b protoreflect.FieldDescriptor) int { return int(a.Number() - b.Number()) })
	for _, fd := range set {
		fp := join(path, string(fd.Name()))
		whole, ok := fields[fd.Name()]
		switch {
		case !ok:
			c.fail(fp, notSupported)
			continue
		case whole:
			continue
		}
		v := m.Get(fd)
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				continue
			}
			var keys []string
			v.Map().Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
				keys = append(keys, k.String())
				return true
			})
			slices.Sort(keys)
			for _, k := range keys {
				c.value(v.Map().Get(protoreflect.ValueOfString(k).MapKey()).Message(), join(fp, k))
			}
		case fd.IsList():
			if fd.Message() == nil {
				continue
			}
			for i := range v.List().Len() {
				c.value(v.List().Get(i).Message(), fmt.Sprintf("%s[%d]", fp, i))
			}
		case fd.Message() != nil:
			c.value(v.Message(), fp)
		}
	}
}

// value checks a message value: an Any's content (validated as Envoy
// validates it when it loads the extension), a well-known type as a
// leaf, any other message by its fields.
func (c *checker) value(m protoreflect.Message, path string) {
	name := m.Descriptor().FullName()
	switch {
	case name == "google.protobuf.Any":
		a := m.Interface().(*anypb.Any)
		inner, err := a.UnmarshalNew()
		if err != nil {
			c.fail(join(path, "@type"), "%s: %v", a.GetTypeUrl(), err)
			return
		}
		if _, ok := subset[inner.ProtoReflect().Descriptor().FullName()]; !ok {
			field := "@type"
			if c.typedStruct[path] {
				field = "type_url"
			}
			c.fail(join(path, field), "%s: %s", a.GetTypeUrl(), notSupported)
			return
		}
		if c.typedStruct[path] {
			path = join(path, "value")
		}
		if v, ok := inner.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				c.fail(path, "Envoy's validation: %v", err)
			}
		}
		c.message(inner.ProtoReflect(), path)
	case strings.HasPrefix(string(name), "google.protobuf."):
	default:
		c.message(m, path)
	}
}

// unpack returns the message of an Any the checker accepted.
func unpack(a *anypb.Any) proto.Message {
	m, _ := a.UnmarshalNew()
	return m
}
