package proxy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
)

// Config is the proxy's configuration file (YAML or JSON: YAML is read as
// JSON, with the same field names). Plugin entries have the shape of
// Envoy's Wasm filter configuration (envoy.extensions.wasm.v3.PluginConfig).
type Config struct {
	// Runtime is the runtime of plugins whose vm_config names none, as
	// VMConfig.Runtime. Default wazero.
	Runtime string `json:"runtime,omitempty"`
	// CacheDir, when set, keeps compiled plugins on disk across restarts.
	CacheDir string `json:"cache_dir,omitempty"`
	// MemoryLimitMB caps each plugin VM's memory: a plugin that grows past
	// it fails (its failure policy applies) instead of taking the host's
	// memory. 0 means the module's own maximum (up to 4 GiB). Runtimes that
	// cannot cap memory (wasmer) are refused when it is set.
	MemoryLimitMB int `json:"memory_limit_mb,omitempty"`
	// GCBallast, default true, gives each VM of a runtime whose guest
	// memory is outside the Go heap (wasmtime, wasmer) a Go-heap ballast
	// of its size, so the proxy's garbage collector paces itself as with
	// wazero (engine.Config.WithGCBallast). false where GOMEMLIMIT is set
	// for the Go heap alone.
	GCBallast *bool      `json:"gc_ballast,omitempty"`
	Admin     Admin      `json:"admin"`
	Listeners []Listener `json:"listeners"`
	Clusters  []Cluster  `json:"clusters,omitempty"`
	// ReloadInterval is how often plugin files are checked for changes
	// (a changed file is loaded and swapped in without dropping requests);
	// "0s" checks only on SIGHUP. Default 1s.
	ReloadInterval *Duration `json:"reload_interval,omitempty"`
	// ShutdownTimeout bounds the graceful shutdown. Default 10s.
	ShutdownTimeout *Duration `json:"shutdown_timeout,omitempty"`
	// Node is the proxy's identity, Envoy's node (the plugins' attributes
	// node and xds.node).
	Node *Node `json:"node,omitempty"`
	// WasmServices are plugins attached to no listener: Envoy's
	// bootstrap_extensions of type envoy.extensions.wasm.v3.WasmService.
	// They start with the proxy (before the listeners' filters), run
	// their root context only (ticks, callouts, shared data and queues
	// with the filters of their vm_id, metrics, logs), and are reloaded
	// and closed as filters are.
	WasmServices []WasmService `json:"wasm_services,omitempty"`
	// Stats is Envoy's bootstrap stats_config, as far as it concerns the
	// plugins' metrics: how the admin's Envoy-format endpoints
	// (/stats/prometheus, /stats) turn a metric's name into a name and
	// tags. /metrics does not use it.
	Stats *Stats `json:"stats,omitempty"`
}

// Stats is the part of Envoy's envoy.config.metrics.v3.StatsConfig that
// anywasm implements: tag extraction from the plugins' metric names.
// Envoy names a plugin metric "wasmcustom.<name>" and extracts tags from
// that whole name: the default extractors first (unless
// use_all_default_tags is false), then stats_tags in order (Envoy's
// TagProducerImpl). See stats.go.
type Stats struct {
	// StatsTags are Envoy's stats_tags (TagSpecifier), applied in order.
	StatsTags []StatsTag `json:"stats_tags,omitempty"`
	// UseAllDefaultTags is Envoy's use_all_default_tags: nil or true adds
	// Envoy's default tag extractors (of which only envoy.response_code,
	// envoy.response_code_class and envoy.local_http_ratelimit_prefix can
	// match a plugin metric's name; see defaultExtractors).
	UseAllDefaultTags *bool `json:"use_all_default_tags,omitempty"`
}

// StatsTag is Envoy's envoy.config.metrics.v3.TagSpecifier: a tag named
// TagName whose value is either extracted by Regex (the first capture
// group is removed from the name; the tag's value is the second group if
// the regex has one, else the first) or FixedValue, added to every
// metric. With neither, TagName must name one of Envoy's default
// extractors, which is then added (again).
type StatsTag struct {
	TagName string `json:"tag_name"`
	// Regex is Go's RE2 syntax (Envoy's is ECMAScript, std::regex): the
	// common subset (groups, (?:...), classes, anchors, quantifiers,
	// \d \w \s) means the same in both; lookaheads and backreferences,
	// which RE2 lacks, and RE2's own flags and named groups, which
	// ECMAScript lacks, are refused.
	Regex      string  `json:"regex,omitempty"`
	FixedValue *string `json:"fixed_value,omitempty"`
}

// WasmService is Envoy's envoy.extensions.wasm.v3.WasmService: the
// filters' plugin block (Envoy's config) and singleton.
type WasmService struct {
	Plugin
	// Singleton runs the service on one VM of its own (Envoy: on the main
	// thread). False (Envoy's default) runs it on pool_size VMs (Envoy:
	// one per worker thread), which it shares with the filters of the
	// same vm_id, code and VM configuration.
	Singleton bool `json:"singleton,omitempty"`
}

// Node is Envoy's config.core.v3.Node: id, cluster and metadata (a
// google.protobuf.Struct: any JSON object).
type Node struct {
	ID       string         `json:"id,omitempty"`
	Cluster  string         `json:"cluster,omitempty"`
	Metadata map[string]any `json:"metadata,omitempty"`
}

// Metadata is Envoy's config.core.v3.Metadata: filter_metadata, a JSON
// object per filter name (typed_filter_metadata is not supported). The
// plugins read it as the attributes listener_metadata, xds.route_metadata,
// xds.cluster_metadata...
type Metadata struct {
	FilterMetadata map[string]map[string]any `json:"filter_metadata,omitempty"`
}

func (m *Metadata) abi() abi.Metadata {
	if m == nil {
		return nil
	}
	return abi.Metadata(m.FilterMetadata)
}

// Admin is the admin endpoint: /healthz, /metrics (Prometheus text format),
// /plugins, and Envoy's /stats/prometheus and /stats for the plugins'
// metrics (see Stats).
type Admin struct {
	Address string `json:"address"`
	// Pprof serves Go's profiles under /debug/pprof/ (net/http/pprof).
	Pprof bool `json:"pprof,omitempty"`
	// PluginMetricsPrefix goes in front of the name of every metric a
	// plugin defines (promcollector.DefaultPrefix, "anywasm_plugin_", when
	// empty), so that plugins cannot take the names of the proxy's own
	// families. [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" and not in
	// the proxy's namespaces (go_, process_, anywasm_proxy_).
	PluginMetricsPrefix string `json:"plugin_metrics_prefix,omitempty"`
}

// Listener accepts downstream connections: HTTP, through HTTP plugins to an
// HTTP cluster, or TCP, through network plugins to a TCP cluster.
type Listener struct {
	Name    string       `json:"name"`
	Address string       `json:"address"`
	HTTP    *HTTPOptions `json:"http,omitempty"`
	TCP     *TCPOptions  `json:"tcp,omitempty"`
	// Metadata and TrafficDirection (INBOUND, OUTBOUND or UNSPECIFIED,
	// the default) are Envoy's listener fields: the plugins' attributes
	// listener_metadata and listener_direction.
	Metadata         *Metadata `json:"metadata,omitempty"`
	TrafficDirection string    `json:"traffic_direction,omitempty"`
}

// direction is TrafficDirection as abi's.
func (l *Listener) direction() (abi.TrafficDirection, error) {
	switch l.TrafficDirection {
	case "", "UNSPECIFIED":
		return abi.DirectionUnspecified, nil
	case "INBOUND":
		return abi.DirectionInbound, nil
	case "OUTBOUND":
		return abi.DirectionOutbound, nil
	}
	return 0, fmt.Errorf("%q: want INBOUND, OUTBOUND or UNSPECIFIED", l.TrafficDirection)
}

// HTTPOptions are an HTTP listener's.
type HTTPOptions struct {
	// Cluster receives the requests the plugins let through; "echo"
	// answers instead with what it received (for examples and load tests)
	// when no cluster of that name is defined. Give either Cluster or
	// RouteConfig.
	Cluster string `json:"cluster,omitempty"`
	// RouteConfig routes requests by host, path, headers and query
	// parameters, as Envoy's HttpConnectionManager route_config (a
	// subset: virtual hosts by domain, routes by RouteMatch to a cluster
	// or a direct response, with names and metadata for the plugins'
	// attributes). A request no route takes is answered 404.
	RouteConfig *RouteConfig `json:"route_config,omitempty"`
	// MaxBufferBytes bounds the body a paused plugin may buffer (default
	// 1 MiB): 413 for a request, 500 for a response.
	MaxBufferBytes int      `json:"max_buffer_bytes,omitempty"`
	Filters        []Plugin `json:"filters,omitempty"`

	// The limits of Envoy's HttpConnectionManager, with its names; unset
	// means the default (README, "Limits").

	// MaxRequestHeadersKB bounds the request line and headers (431 above
	// it; default 60, at most 8192).
	MaxRequestHeadersKB *int `json:"max_request_headers_kb,omitempty"`
	// MaxHeadersCount bounds the number of request headers (431 above it;
	// default 100).
	MaxHeadersCount *int `json:"max_headers_count,omitempty"`
	// RequestHeadersTimeout bounds the time to receive the request headers
	// (default 10s; "0s" disables).
	RequestHeadersTimeout *Duration `json:"request_headers_timeout,omitempty"`
	// RequestTimeout bounds the time to receive the whole request, body
	// included (408; default 5m; "0s" disables).
	RequestTimeout *Duration `json:"request_timeout,omitempty"`
	// StreamIdleTimeout ends an exchange with no activity downstream or
	// upstream for that long (408, or a reset once the response started;
	// default 5m; "0s" disables).
	StreamIdleTimeout *Duration `json:"stream_idle_timeout,omitempty"`
	// IdleTimeout closes a keep-alive connection idle that long between
	// requests (default 1h).
	IdleTimeout *Duration `json:"idle_timeout,omitempty"`
	// MaxConnections bounds the listener's connections (default: what the
	// file descriptor limit allows, shared by the listeners, at most
	// 50000). At the limit a new connection closes the one idle longest,
	// or is refused.
	MaxConnections *int `json:"max_connections,omitempty"`
	// CodecType is Envoy's codec_type: AUTO (default: HTTP/1.1, and
	// HTTP/2 with prior knowledge, told apart by the connection preface as
	// Envoy's AUTO codec does on a plaintext connection), HTTP1 or HTTP2
	// (prior knowledge only). The listeners are plaintext: no TLS, no ALPN,
	// no h2c upgrade (Envoy has none either).
	CodecType string `json:"codec_type,omitempty"`
	// HTTP2ProtocolOptions are Envoy's http2_protocol_options (a subset).
	HTTP2ProtocolOptions *HTTP2ProtocolOptions `json:"http2_protocol_options,omitempty"`
	// ServerName and ServerHeaderTransformation are Envoy's server_name
	// and server_header_transformation: the Server header of the
	// listener's responses, set after its plugins (they never see it).
	// OVERWRITE (the default when ServerName is set) replaces it,
	// APPEND_IF_ABSENT adds it when the response has none, PASS_THROUGH
	// (the default without ServerName) leaves it. An Envoy file's
	// listeners get Envoy's default, server_name "envoy", OVERWRITE.
	ServerName                 string `json:"server_name,omitempty"`
	ServerHeaderTransformation string `json:"server_header_transformation,omitempty"`
}

// serverHeader returns the listener's Server header policy: the name, and
// OVERWRITE, APPEND_IF_ABSENT or PASS_THROUGH.
func (o *HTTPOptions) serverHeader() (string, string) {
	t := o.ServerHeaderTransformation
	if t == "" {
		t = "PASS_THROUGH"
		if o.ServerName != "" {
			t = "OVERWRITE"
		}
	}
	return o.ServerName, t
}

// HTTP2ProtocolOptions are the HTTP/2 settings of an HTTP listener, with
// Envoy's names. Envoy's defaults (2^31-1 streams, 256 MiB windows) are
// "none" for an edge proxy; the defaults here are its edge-proxy
// recommendation (docs: "Configuring Envoy as an edge proxy").
type HTTP2ProtocolOptions struct {
	// MaxConcurrentStreams bounds the streams a connection has open at
	// once (default 100; 1 to 2147483647).
	MaxConcurrentStreams *int `json:"max_concurrent_streams,omitempty"`
	// InitialStreamWindowSize is a stream's flow-control window, the body
	// a client may send ahead (default 65536; Envoy's range 65535 to
	// 2147483647, at most 4 MiB - 1 here, Go's bound).
	InitialStreamWindowSize *int `json:"initial_stream_window_size,omitempty"`
	// InitialConnectionWindowSize is the connection's (default 1048576;
	// same range).
	InitialConnectionWindowSize *int `json:"initial_connection_window_size,omitempty"`
}

// Envoy's edge-proxy recommendation for HTTP/2, and Go's bound on the
// windows (http.HTTP2Config).
const (
	defaultMaxConcurrentStreams        = 100
	defaultInitialStreamWindowSize     = 65536
	defaultInitialConnectionWindowSize = 1 << 20
	maxHTTP2Window                     = 4<<20 - 1
)

// RouteConfig is Envoy's config.route.v3.RouteConfiguration (a subset).
type RouteConfig struct {
	VirtualHosts []VirtualHost `json:"virtual_hosts"`
}

// VirtualHost is Envoy's config.route.v3.VirtualHost (a subset). Domains
// are matched as Envoy does: an exact host, "*.suffix", "prefix.*" or
// "*" (the port of the request's host is ignored when no domain has one).
type VirtualHost struct {
	Name     string    `json:"name"`
	Domains  []string  `json:"domains"`
	Routes   []Route   `json:"routes"`
	Metadata *Metadata `json:"metadata,omitempty"`
}

// Route is Envoy's config.route.v3.Route (a subset): the first route whose
// match takes the request sends it to route.cluster, or answers it with
// direct_response.
type Route struct {
	Name  string     `json:"name,omitempty"`
	Match RouteMatch `json:"match"`
	Route struct {
		Cluster string `json:"cluster"`
	} `json:"route"`
	// DirectResponse answers the request itself, after the plugins (Envoy's
	// DirectResponseAction); give it or route.cluster.
	DirectResponse *DirectResponse `json:"direct_response,omitempty"`
	Metadata       *Metadata       `json:"metadata,omitempty"`
}

// RouteMatch is Envoy's config.route.v3.RouteMatch (a subset): one of
// prefix, path (the path without its query) and safe_regex (a regular
// expression the whole path without its query must match), and then every
// header and query parameter matcher. Matchers are compiled when the
// configuration loads (route.go, match.go).
type RouteMatch struct {
	Prefix    string        `json:"prefix,omitempty"`
	Path      string        `json:"path,omitempty"`
	SafeRegex *RegexMatcher `json:"safe_regex,omitempty"`
	// CaseSensitive (default true) is for prefix and path; false compares
	// them ignoring ASCII case. A regular expression has its own flags.
	CaseSensitive   *bool                   `json:"case_sensitive,omitempty"`
	Headers         []HeaderMatcher         `json:"headers,omitempty"`
	QueryParameters []QueryParameterMatcher `json:"query_parameters,omitempty"`
}

// HeaderMatcher is Envoy's config.route.v3.HeaderMatcher: the request
// header name (case-insensitive; the pseudo-headers :authority, :method,
// :path and :scheme are the request's) and one of exact_match,
// prefix_match, suffix_match, contains_match (Envoy's deprecated forms),
// string_match, safe_regex_match, range_match and present_match (none:
// present_match true). Several values of a header are joined with ","
// before they are matched. A missing header matches nothing (not even
// inverted) but present_match: false, unless treat_missing_header_as_empty
// (then it is matched as ""). invert_match inverts the result.
type HeaderMatcher struct {
	Name                      string         `json:"name"`
	ExactMatch                *string        `json:"exact_match,omitempty"`
	PrefixMatch               *string        `json:"prefix_match,omitempty"`
	SuffixMatch               *string        `json:"suffix_match,omitempty"`
	ContainsMatch             *string        `json:"contains_match,omitempty"`
	SafeRegexMatch            *RegexMatcher  `json:"safe_regex_match,omitempty"`
	RangeMatch                *Int64Range    `json:"range_match,omitempty"`
	PresentMatch              *bool          `json:"present_match,omitempty"`
	StringMatch               *StringMatcher `json:"string_match,omitempty"`
	InvertMatch               bool           `json:"invert_match,omitempty"`
	TreatMissingHeaderAsEmpty bool           `json:"treat_missing_header_as_empty,omitempty"`
}

// QueryParameterMatcher is Envoy's config.route.v3.QueryParameterMatcher:
// the first value of the query parameter name (decoded) against
// string_match, or present_match (whether it is there); neither: present.
type QueryParameterMatcher struct {
	Name         string         `json:"name"`
	StringMatch  *StringMatcher `json:"string_match,omitempty"`
	PresentMatch *bool          `json:"present_match,omitempty"`
}

// StringMatcher is Envoy's type.matcher.v3.StringMatcher: one of exact,
// prefix, suffix, contains and safe_regex; ignore_case (ASCII) applies to
// all but safe_regex.
type StringMatcher struct {
	Exact      *string       `json:"exact,omitempty"`
	Prefix     *string       `json:"prefix,omitempty"`
	Suffix     *string       `json:"suffix,omitempty"`
	Contains   *string       `json:"contains,omitempty"`
	SafeRegex  *RegexMatcher `json:"safe_regex,omitempty"`
	IgnoreCase bool          `json:"ignore_case,omitempty"`
}

// RegexMatcher is Envoy's type.matcher.v3.RegexMatcher: an RE2 regular
// expression (Go's regexp, RE2's syntax), which must match the whole value.
type RegexMatcher struct {
	Regex string `json:"regex"`
}

// Int64Range is Envoy's type.v3.Int64Range: [start, end).
type Int64Range struct {
	Start int64 `json:"start"`
	End   int64 `json:"end"`
}

// DirectResponse is Envoy's config.route.v3.DirectResponseAction: a status
// (200 to 599) and an optional body (body.inline_string).
type DirectResponse struct {
	Status int `json:"status"`
	Body   *struct {
		InlineString string `json:"inline_string"`
	} `json:"body,omitempty"`
}

// TCPOptions are a TCP listener's.
type TCPOptions struct {
	Cluster        string   `json:"cluster"`
	MaxBufferBytes int      `json:"max_buffer_bytes,omitempty"`
	Filters        []Plugin `json:"filters,omitempty"`
	// IdleTimeout closes a connection with no data either way for that
	// long (Envoy's tcp_proxy idle_timeout; default 1h; "0s" disables).
	IdleTimeout *Duration `json:"idle_timeout,omitempty"`
	// MaxConnections bounds the listener's connections, as for HTTP; at
	// the limit a new connection is refused.
	MaxConnections *int `json:"max_connections,omitempty"`
}

// Cluster is a named upstream: of listeners (http, tcp) and of the plugins'
// callouts (http: proxy_http_call; grpc: proxy_grpc_call).
type Cluster struct {
	Name string `json:"name"`
	// Type is http (default), grpc or tcp.
	Type string `json:"type,omitempty"`
	// Address is the cluster's one endpoint, host:port; for http a URL
	// ("http://host:port") works too. Give it or Endpoints.
	Address string `json:"address,omitempty"`
	// Endpoints are the cluster's endpoints, each as Address: a request
	// (an HTTP exchange, a TCP connection, a plugin's callout) goes to one
	// of them, chosen by LbPolicy.
	Endpoints []string `json:"endpoints,omitempty"`
	// LbPolicy is Envoy's: ROUND_ROBIN (default), RANDOM, or LEAST_REQUEST
	// (the one with fewer requests in flight of two picked at random).
	LbPolicy string `json:"lb_policy,omitempty"`
	// Discovery is Envoy's cluster type, how endpoints become addresses:
	// static (default: each endpoint is dialed as written, a host name
	// resolved at each connection), strict_dns (every address of every
	// endpoint's host name is an endpoint, resolved again every
	// dns_refresh_rate) or logical_dns (one endpoint; the first address
	// of its host name, resolved again every dns_refresh_rate).
	Discovery string `json:"discovery,omitempty"`
	// DNSRefreshRate is how often strict_dns and logical_dns resolve
	// (default 5s, at least 1ms).
	DNSRefreshRate *Duration `json:"dns_refresh_rate,omitempty"`
	// DNSLookupFamily is Envoy's: AUTO (default: IPv6 addresses if there
	// are any, else IPv4), V4_ONLY, V6_ONLY, V4_PREFERRED (IPv4 if any,
	// else IPv6) or ALL.
	DNSLookupFamily string `json:"dns_lookup_family,omitempty"`
	// Metadata is the plugins' xds.cluster_metadata.
	Metadata *Metadata `json:"metadata,omitempty"`
}

// Plugin is one Wasm filter, in the shape of Envoy's PluginConfig.
type Plugin struct {
	Name          string   `json:"name"`
	RootID        string   `json:"root_id,omitempty"`
	VMConfig      VMConfig `json:"vm_config"`
	Configuration Value    `json:"configuration,omitempty"`
	// FailurePolicy is FAIL_CLOSED (default), FAIL_OPEN or FAIL_RELOAD.
	FailurePolicy string `json:"failure_policy,omitempty"`
	// FailOpen is Envoy's older boolean form of FAIL_OPEN.
	FailOpen bool `json:"fail_open,omitempty"`
	// ReloadConfig is Envoy's reload_config: with FAIL_RELOAD, a failed VM
	// is replaced no sooner than a random interval in [base, 1.5 base)
	// after it was made (abi.FailReload), base being backoff.base_interval
	// (default 1s). Envoy reads nothing else of it (max_interval is
	// accepted and unused there too).
	ReloadConfig *ReloadConfig `json:"reload_config,omitempty"`
	// PoolSize is the number of VMs requests are spread over (default 1).
	PoolSize int `json:"pool_size,omitempty"`
	// Snapshot makes the plugin's VMs from a pre-initialized snapshot
	// (abi.PluginConfig.Snapshot): the module's initializer runs once, at
	// load, and every VM starts from the memory and globals it left, so a
	// new VM costs an instantiation. Every VM then shares what the
	// initializer computed (random seeds, clock readings, the
	// environment). A module the technique cannot capture is refused at
	// load, with the reason. Not with vm_config.allow_precompiled.
	Snapshot bool `json:"snapshot,omitempty"`
	// CallTimeout bounds each callback ("100ms"); needs a runtime that
	// can interrupt a guest.
	CallTimeout *Duration `json:"call_timeout,omitempty"`
	// LogLevel is the plugin's own log level (trace, debug, info, warn,
	// error, critical; Envoy has a level per component): its logs at this
	// level and above are written whatever -log-level says, and
	// proxy_get_log_level answers it. Default: -log-level's.
	LogLevel string `json:"log_level,omitempty"`
	// ForeignFunctions, when given, are the only foreign functions the
	// plugin may call (others are NOT_FOUND; [] allows none). Default:
	// every one the proxy has, as Envoy registers them for every plugin:
	// compress, uncompress, declare_property, clear_route_cache,
	// expr_create, expr_evaluate, expr_delete.
	ForeignFunctions *[]string `json:"foreign_functions,omitempty"`
	// CapabilityRestrictionConfig is Envoy's: the keys of
	// allowed_capabilities are the only hostcalls, WASI functions and
	// callbacks the module is linked to (abi.PluginConfig.AllowedCapabilities);
	// none: all.
	CapabilityRestrictionConfig *CapabilityRestrictionConfig `json:"capability_restriction_config,omitempty"`
	// Discovery, set by internal/envoyconfig for an HTTP or network filter
	// written with Envoy's config_discovery (ECDS), makes the plugin one a
	// control plane sends (UpdateFilter). The fields above are then its
	// default_config's, or empty: until the first configuration arrives
	// an HTTP filter answers 500 and a network filter closes the
	// connection (Envoy's MissingConfigFilter, and its network filter
	// chain without a filter's configuration).
	Discovery *Discovery `json:"-"`
	// PluginName, when set, is the name the plugin itself sees (its
	// plugin_name attribute, the prefix of its logs) instead of Name: set
	// by internal/envoyconfig to Envoy's, empty, for a Wasm filter whose
	// config names none (Name is then the filter's).
	PluginName *string `json:"-"`
}

// CapabilityRestrictionConfig is Envoy's (envoy.extensions.wasm.v3): a map
// of capability names (proxy_log, fd_write, proxy_on_request_headers, ...)
// to a SanitizationConfig, which has no fields.
type CapabilityRestrictionConfig struct {
	AllowedCapabilities map[string]struct{} `json:"allowed_capabilities,omitempty"`
}

// Discovery is a filter whose plugin comes from a control plane, over
// Envoy's extension config discovery (envoy.config.core.v3.
// ExtensionConfigSource). The proxy keeps the filter's place and swaps in
// what UpdateFilter gives it; the subscription itself is
// internal/envoyconfig's.
type Discovery struct {
	// Name is the TypedExtensionConfig's name: the filter's.
	Name string
	// Type is the configuration's type the filter takes (its type_urls):
	// Envoy's HTTP or network Wasm filter.
	Type string
	// Default says the plugin fields hold default_config's plugin.
	Default bool
	// Warm says the filter holds the listeners back until its first
	// configuration, a rejected one, or InitialFetchTimeout (Envoy's
	// warming, without apply_default_config_without_warming): the
	// proxy's listeners are bound but do not listen until every warming
	// filter is ready (MarkWarm, or a successful UpdateFilter).
	Warm bool
	// InitialFetchTimeout is the config source's initial_fetch_timeout
	// (Envoy's default 15s; 0: none): when it ends without a
	// configuration, the subscription ends the filter's warming.
	InitialFetchTimeout time.Duration
	// Source is the management server.
	Source ConfigSource
}

// ConfigSource is the management server of a discovered filter: a grpc
// cluster of the configuration, over ADS (dynamic_resources.ads_config)
// or its own stream, state of the world or delta (DELTA_GRPC).
type ConfigSource struct {
	Cluster string
	ADS     bool
	Delta   bool
}

// VMConfig is Envoy's VmConfig.
type VMConfig struct {
	VMID string `json:"vm_id,omitempty"`
	// Runtime is wazero, wasmtime or wasmer, with a compiler tier after a
	// colon if wanted ("wazero:interpreter", engine.Config.WithTier); Envoy's
	// "envoy.wasm.runtime.<name>" is accepted too.
	Runtime              string       `json:"runtime,omitempty"`
	Code                 Code         `json:"code"`
	Configuration        Value        `json:"configuration,omitempty"`
	EnvironmentVariables *Environment `json:"environment_variables,omitempty"`
	// AllowPrecompiled is Envoy's allow_precompiled: the module's
	// precompiled code for the plugin's runtime, in the custom section
	// that runtime names (anywasm-proxy precompile makes such modules), is
	// loaded instead of compiling the bytecode, which is compiled if the
	// runtime refuses it (abi.PluginConfig.AllowPrecompiled). Precompiled
	// code is native code run unchecked: only for code you trust.
	AllowPrecompiled bool `json:"allow_precompiled,omitempty"`
	// NackOnCodeCacheMiss is Envoy's nack_on_code_cache_miss: remote code
	// not in the cache (in memory, or cache_dir's) fails the load at once
	// while one fetch fills the cache in the background, so that the same
	// configuration sent again loads (a discovered filter's update is
	// NACKed; a configured filter fails the start).
	NackOnCodeCacheMiss bool `json:"nack_on_code_cache_miss,omitempty"`
}

// Code locates the module: Envoy's {local: {filename: ...}}, or holds it:
// {local: {inline_bytes: BASE64}} or {local: {inline_string: ...}} (code
// given inline is never reloaded), or fetches it: {remote: {http_uri:
// {uri, cluster, timeout}, sha256, retry_policy}} (never reloaded: its
// sha256 pins it).
type Code struct {
	Local struct {
		Filename     string `json:"filename,omitempty"`
		InlineBytes  []byte `json:"inline_bytes,omitempty"`
		InlineString string `json:"inline_string,omitempty"`
	} `json:"local"`
	Remote *RemoteCode `json:"remote,omitempty"`
}

// inline returns the module given inline; nil for a file.
func (c *Code) inline() []byte {
	switch {
	case c.Local.InlineBytes != nil:
		return c.Local.InlineBytes
	case c.Local.InlineString != "":
		return []byte(c.Local.InlineString)
	}
	return nil
}

// Environment is Envoy's EnvironmentVariables: host variables passed on by
// name, and fixed values.
type Environment struct {
	HostEnvKeys []string          `json:"host_env_keys,omitempty"`
	KeyValues   map[string]string `json:"key_values,omitempty"`
}

// Value is a configuration: a string, an Envoy Any holding a StringValue
// ({"@type": "type.googleapis.com/google.protobuf.StringValue", "value":
// "..."}) or a BytesValue (its value in base64, as protojson writes it),
// or any other JSON value, which the plugin gets serialized.
type Value struct {
	raw json.RawMessage
}

// UnmarshalJSON implements json.Unmarshaler.
func (v *Value) UnmarshalJSON(b []byte) error {
	v.raw = append(json.RawMessage(nil), b...)
	return nil
}

// MarshalJSON implements json.Marshaler.
func (v Value) MarshalJSON() ([]byte, error) {
	if v.raw == nil {
		return []byte("null"), nil
	}
	return v.raw, nil
}

// Bytes returns what the plugin gets.
func (v Value) Bytes() ([]byte, error) {
	b := bytes.TrimSpace(v.raw)
	if len(b) == 0 || string(b) == "null" {
		return nil, nil
	}
	switch b[0] {
	case '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, err
		}
		return []byte(s), nil
	case '{':
		var a struct {
			Type  string          `json:"@type"`
			Value json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(b, &a); err == nil && a.Type != "" {
			var s string
			switch {
			case strings.HasSuffix(a.Type, "google.protobuf.StringValue"):
				if err := json.Unmarshal(a.Value, &s); err != nil {
					return nil, fmt.Errorf("value of a StringValue: %w", err)
				}
				return []byte(s), nil
			case strings.HasSuffix(a.Type, "google.protobuf.BytesValue"):
				// protojson's form: base64, standard or URL-safe, padded or
				// not.
				if err := json.Unmarshal(a.Value, &s); err != nil {
					return nil, fmt.Errorf("value of a BytesValue: %w", err)
				}
				s = strings.TrimRight(s, "=")
				enc := base64.RawStdEncoding
				if strings.ContainsAny(s, "-_") {
					enc = base64.RawURLEncoding
				}
				v, err := enc.DecodeString(s)
				if err != nil {
					return nil, fmt.Errorf("value of a BytesValue: %w", err)
				}
				return v, nil
			}
			return nil, fmt.Errorf("@type %q: only google.protobuf.StringValue and BytesValue are understood (or give a string or any JSON value)", a.Type)
		}
	}
	return b, nil
}

// Duration is a duration written as Go does ("250ms", "1.5s"); Validate
// parses it, so that an error names the field.
type Duration string

// Get returns the duration; 0 when empty or invalid (Validate refuses
// those).
func (d *Duration) Get() time.Duration {
	if d == nil {
		return 0
	}
	v, _ := time.ParseDuration(string(*d))
	return v
}

func (d *Duration) check() error {
	if d == nil {
		return nil
	}
	v, err := time.ParseDuration(string(*d))
	if err != nil {
		return fmt.Errorf("%q: want a duration such as \"250ms\" or \"2s\"", string(*d))
	}
	if v < 0 {
		return fmt.Errorf("%q: negative", string(*d))
	}
	return nil
}

// LoadConfig reads and validates a configuration file. Relative plugin
// filenames are relative to the file's directory.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	abs := func(f *string) {
		if *f != "" && !filepath.IsAbs(*f) {
			*f = filepath.Join(dir, *f)
		}
	}
	for _, l := range c.Listeners {
		for i := range l.filters() {
			abs(&l.filters()[i].VMConfig.Code.Local.Filename)
		}
	}
	for i := range c.WasmServices {
		abs(&c.WasmServices[i].VMConfig.Code.Local.Filename)
	}
	if c.CacheDir != "" && !filepath.IsAbs(c.CacheDir) {
		c.CacheDir = filepath.Join(dir, c.CacheDir)
	}
	return c, nil
}

// ParseConfig parses and validates a configuration (YAML or JSON). Unknown
// fields are refused; every error names the field.
func ParseConfig(b []byte) (*Config, error) {
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, err
	}
	var raw any
	if err := json.Unmarshal(j, &raw); err != nil {
		return nil, err
	}
	if errs := unknownFields(raw, reflect.TypeFor[Config](), ""); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	var c Config
	if err := json.Unmarshal(j, &c); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// unknownFields returns an error for every key of v, decoded JSON, that
// type t does not have, named by its path (listeners[0].http.filtres).
// Keys are matched exactly (encoding/json would also take "Runtime" for
// "runtime"). Values of a type that decodes itself (Value) are not looked
// into; a value of the wrong JSON type is left to json.Unmarshal.
func unknownFields(v any, t reflect.Type, path string) []error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(reflect.TypeFor[json.Unmarshaler]()) {
		return nil
	}
	var errs []error
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		fields := map[string]reflect.Type{}
		var names []string
		jsonFields(t, fields, &names)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			field := k
			if path != "" {
				field = path + "." + k
			}
			ft, ok := fields[k]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: unknown field (%s has %s)", field, describe(path), strings.Join(names, ", ")))
				continue
			}
			errs = append(errs, unknownFields(m[k], ft, field)...)
		}
	case reflect.Slice:
		if l, ok := v.([]any); ok {
			for i, e := range l {
				errs = append(errs, unknownFields(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
			}
		}
	case reflect.Map:
		if m, ok := v.(map[string]any); ok {
			for _, k := range slices.Sorted(maps.Keys(m)) {
				errs = append(errs, unknownFields(m[k], t.Elem(), path+"."+k)...)
			}
		}
	}
	return errs
}

// jsonFields adds the JSON fields of struct type t to fields and names,
// those of embedded structs without a name too (encoding/json flattens
// them: WasmService's Plugin).
func jsonFields(t reflect.Type, fields map[string]reflect.Type, names *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			jsonFields(f.Type, fields, names)
			continue
		}
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		fields[name] = f.Type
		*names = append(*names, name)
	}
}

func describe(path string) string {
	if path == "" {
		return "the configuration"
	}
	return path
}

func (l *Listener) filters() []Plugin {
	switch {
	case l.HTTP != nil:
		return l.HTTP.Filters
	case l.TCP != nil:
		return l.TCP.Filters
	}
	return nil
}

// RuntimeName maps a configured runtime name to an engine name: Envoy's
// "envoy.wasm.runtime.<name>" is <name>, and a name with a tier
// ("wasmtime:pulley") is in engine.CanonicalName's form, so that one
// runtime on one tier is one name (a host) however it is spelt
// ("wasmtime:cranelift" is "wasmtime"). A name the engine refuses is
// returned as it is (Validate refuses it).
func RuntimeName(s string) string {
	s = strings.TrimPrefix(s, "envoy.wasm.runtime.")
	if c, err := engine.CanonicalName(s); err == nil {
		return c
	}
	return s
}

// checkRuntimeName returns why the engine refuses a configured runtime name
// (a runtime not in this binary, or a tier it lacks), or nil.
func checkRuntimeName(name string) error {
	rt, _ := engine.SplitName(strings.TrimPrefix(name, "envoy.wasm.runtime."))
	known := engine.Runtimes()
	if !slices.Contains(known, rt) {
		return fmt.Errorf("runtime %q is not in this binary (it has %s; wasmer needs -tags anywasm_wasmer, the cgo runtimes CGO_ENABLED=1)",
			name, strings.Join(known, ", "))
	}
	if _, err := engine.CanonicalName(strings.TrimPrefix(name, "envoy.wasm.runtime.")); err != nil {
		return fmt.Errorf("runtime %q: %w", name, err)
	}
	return nil
}

// ReloadConfig is Envoy's envoy.extensions.wasm.v3.ReloadConfig.
type ReloadConfig struct {
	Backoff *BackoffStrategy `json:"backoff,omitempty"`
}

// base is the reload interval's base: backoff.base_interval, 0 for the
// default (abi.DefaultReloadBackoff, Envoy's 1s).
func (r *ReloadConfig) base() time.Duration {
	if r == nil || r.Backoff == nil {
		return 0
	}
	return r.Backoff.BaseInterval.Get()
}

// FailurePolicy returns the plugin's policy.
func (p *Plugin) Policy() (abi.FailurePolicy, error) {
	switch p.FailurePolicy {
	case "":
		if p.FailOpen {
			return abi.FailOpen, nil
		}
		return abi.FailClosed, nil
	case "FAIL_CLOSED", "UNSPECIFIED":
		return abi.FailClosed, nil
	case "FAIL_OPEN":
		return abi.FailOpen, nil
	case "FAIL_RELOAD":
		return abi.FailReload, nil
	}
	return 0, fmt.Errorf("%q: want FAIL_CLOSED, FAIL_OPEN or FAIL_RELOAD", p.FailurePolicy)
}

// minReloadInterval bounds how often plugin files are polled.
const minReloadInterval = 100 * time.Millisecond

// EchoCluster is the built-in HTTP upstream that answers with what it got.
const EchoCluster = "echo"

// Validate checks the configuration; the error names the field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	checkRuntime := func(field, name string) {
		if name == "" {
			return
		}
		if err := checkRuntimeName(name); err != nil {
			bad(field, "%v", err)
		}
	}
	checkRuntime("runtime", c.Runtime)
	if c.MemoryLimitMB < 0 || c.MemoryLimitMB > 4096 {
		bad("memory_limit_mb", "%d: want 1 to 4096 (or 0: no limit)", c.MemoryLimitMB)
	}
	if err := c.ReloadInterval.check(); err != nil {
		bad("reload_interval", "%v", err)
	} else if d := c.ReloadInterval.Get(); d > 0 && d < minReloadInterval {
		bad("reload_interval", "%s: want at least %s (or 0s: on SIGHUP only)", d, minReloadInterval)
	}
	if err := c.ShutdownTimeout.check(); err != nil {
		bad("shutdown_timeout", "%v", err)
	}
	if c.Admin.Address != "" {
		if _, _, err := net.SplitHostPort(c.Admin.Address); err != nil {
			bad("admin.address", "%v", err)
		}
	}
	if err := checkMetricsPrefix(c.Admin.PluginMetricsPrefix); err != nil {
		bad("admin.plugin_metrics_prefix", "%v", err)
	}
	if _, err := newTagProducer(c.Stats, "stats"); err != nil {
		errs = append(errs, err)
	}
	clusters := map[string]*Cluster{}
	for i := range c.Clusters {
		cl := &c.Clusters[i]
		f := fmt.Sprintf("clusters[%d]", i)
		if cl.Name == "" {
			bad(f+".name", "missing")
		} else if clusters[cl.Name] != nil {
			bad(f+".name", "duplicate cluster %q", cl.Name)
		}
		clusters[cl.Name] = cl
		switch cl.Type {
		case "":
			cl.Type = "http"
		case "http", "grpc", "tcp":
		default:
			bad(f+".type", "%q: want http, grpc or tcp", cl.Type)
		}
		checkEndpoints(bad, f, cl)
	}
	if len(c.Listeners) == 0 {
		bad("listeners", "none: the proxy needs at least one")
	}
	names := map[string]bool{}
	addrs := map[string]bool{c.Admin.Address: c.Admin.Address != ""}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		f := fmt.Sprintf("listeners[%d]", i)
		if l.Name == "" {
			l.Name = fmt.Sprintf("listener%d", i)
		}
		if names[l.Name] {
			bad(f+".name", "duplicate listener %q", l.Name)
		}
		names[l.Name] = true
		if _, _, err := net.SplitHostPort(l.Address); err != nil {
			bad(f+".address", "%v", err)
		} else if addrs[l.Address] && !strings.HasSuffix(l.Address, ":0") {
			bad(f+".address", "%s is used twice", l.Address)
		}
		addrs[l.Address] = true
		var cluster, want string
		switch {
		case l.HTTP != nil && l.TCP != nil:
			bad(f, "both http and tcp: a listener is one or the other")
			continue
		case l.HTTP != nil:
			if _, err := l.direction(); err != nil {
				bad(f+".traffic_direction", "%v", err)
			}
			f += ".http"
			o := l.HTTP
			cluster, want = o.Cluster, "http"
			if o.RouteConfig != nil {
				if o.Cluster != "" {
					bad(f+".cluster", "set with route_config: give one (route_config's routes name their clusters)")
				}
				cluster = "" // checked per route
				checkRoutes(bad, f+".route_config", o.RouteConfig, clusters)
			}
			if o.MaxBufferBytes < 0 {
				bad(f+".max_buffer_bytes", "negative")
			}
			checkRange(bad, f+".max_request_headers_kb", o.MaxRequestHeadersKB, 1, 8192)
			checkRange(bad, f+".max_headers_count", o.MaxHeadersCount, 1, 1<<20)
			checkRange(bad, f+".max_connections", o.MaxConnections, 1, 1<<24)
			switch name, t := o.serverHeader(); t {
			case "PASS_THROUGH":
			case "OVERWRITE", "APPEND_IF_ABSENT":
				if name == "" {
					bad(f+".server_name", "missing: server_header_transformation %s sets the Server header to it", t)
				}
			default:
				bad(f+".server_header_transformation", "%q: want OVERWRITE, APPEND_IF_ABSENT or PASS_THROUGH", t)
			}
			switch o.CodecType {
			case "", "AUTO", "HTTP1", "HTTP2":
			default:
				bad(f+".codec_type", "%q: want AUTO, HTTP1 or HTTP2 (HTTP3 is not supported by anywasm)", o.CodecType)
			}
			if h2 := o.HTTP2ProtocolOptions; h2 != nil {
				if o.CodecType == "HTTP1" {
					bad(f+".http2_protocol_options", "set with codec_type HTTP1")
				}
				checkRange(bad, f+".http2_protocol_options.max_concurrent_streams", h2.MaxConcurrentStreams, 1, 1<<31-1)
				checkRange(bad, f+".http2_protocol_options.initial_stream_window_size", h2.InitialStreamWindowSize, 65535, maxHTTP2Window)
				checkRange(bad, f+".http2_protocol_options.initial_connection_window_size", h2.InitialConnectionWindowSize, 65535, maxHTTP2Window)
			}
			for _, d := range []struct {
				name string
				d    *Duration
			}{{"request_headers_timeout", o.RequestHeadersTimeout}, {"request_timeout", o.RequestTimeout},
				{"stream_idle_timeout", o.StreamIdleTimeout}, {"idle_timeout", o.IdleTimeout}} {
				if err := d.d.check(); err != nil {
					bad(f+"."+d.name, "%v", err)
				}
			}
		case l.TCP != nil:
			if _, err := l.direction(); err != nil {
				bad(f+".traffic_direction", "%v", err)
			}
			f += ".tcp"
			cluster, want = l.TCP.Cluster, "tcp"
			if l.TCP.MaxBufferBytes < 0 {
				bad(f+".max_buffer_bytes", "negative")
			}
			checkRange(bad, f+".max_connections", l.TCP.MaxConnections, 1, 1<<24)
			if err := l.TCP.IdleTimeout.check(); err != nil {
				bad(f+".idle_timeout", "%v", err)
			}
		default:
			bad(f, "neither http nor tcp")
			continue
		}
		cl := clusters[cluster]
		switch {
		case cluster == "" && l.HTTP != nil && l.HTTP.RouteConfig != nil:
		case cluster == "":
			bad(f+".cluster", "missing")
		case cl == nil && !(want == "http" && cluster == EchoCluster):
			bad(f+".cluster", "unknown cluster %q (clusters: %s)", cluster, clusterNames(c.Clusters))
		case cl != nil && cl.Type != want:
			bad(f+".cluster", "cluster %q is of type %s, a %s listener needs %s", cluster, cl.Type, want, want)
		}
		for j := range l.filters() {
			fp := &l.filters()[j]
			if d := fp.Discovery; d != nil {
				if d.Name == "" {
					bad(fmt.Sprintf("%s.filters[%d].name", f, j), "missing (a discovered filter is named by its configuration's name)")
				}
				if cl := clusters[d.Source.Cluster]; cl == nil || cl.Type != "grpc" {
					bad(fmt.Sprintf("%s.filters[%d]", f, j), "the management server's cluster %q is not a grpc cluster", d.Source.Cluster)
				}
				if !d.Default {
					continue
				}
			}
			checkPlugin(bad, checkRuntime, fmt.Sprintf("%s.filters[%d]", f, j), fp, clusters)
		}
	}
	for i := range c.WasmServices {
		sv := &c.WasmServices[i]
		f := fmt.Sprintf("wasm_services[%d]", i)
		checkPlugin(bad, checkRuntime, f, &sv.Plugin, clusters)
		if sv.Singleton && sv.PoolSize > 1 {
			bad(f+".pool_size", "%d with singleton: true: a singleton service runs on one VM (give 0 or 1, or singleton: false for one VM per worker)", sv.PoolSize)
		}
	}
	return errors.Join(errs...)
}

// checkPlugin checks a filter's or a service's plugin block; f is its field.
func checkPlugin(bad func(field, format string, args ...any), checkRuntime func(field, name string), f string, p *Plugin, clusters map[string]*Cluster) {
	if p.Name == "" {
		bad(f+".name", "missing")
	}
	switch l := &p.VMConfig.Code.Local; {
	case p.VMConfig.Code.Remote != nil:
		if l.Filename != "" || l.InlineBytes != nil || l.InlineString != "" {
			bad(f+".vm_config.code", "give one of local and remote")
		}
		checkRemote(bad, f+".vm_config.code.remote", p.VMConfig.Code.Remote, clusters)
	case l.Filename == "" && l.InlineBytes == nil && l.InlineString == "":
		bad(f+".vm_config.code.local.filename", "missing (or give inline_bytes or inline_string)")
	case (l.Filename != "") && (l.InlineBytes != nil || l.InlineString != "") || l.InlineBytes != nil && l.InlineString != "":
		bad(f+".vm_config.code.local", "give one of filename, inline_bytes and inline_string")
	}
	checkRuntime(f+".vm_config.runtime", p.VMConfig.Runtime)
	if _, err := p.Policy(); err != nil {
		bad(f+".failure_policy", "%v", err)
	}
	if r := p.ReloadConfig; r != nil && r.Backoff != nil {
		bf := f + ".reload_config.backoff"
		if err := r.Backoff.BaseInterval.check(); err != nil {
			bad(bf+".base_interval", "%v", err)
		} else if r.Backoff.BaseInterval.Get() < time.Millisecond {
			bad(bf+".base_interval", "missing or under 1ms (Envoy requires at least 1ms)")
		}
		if err := r.Backoff.MaxInterval.check(); err != nil {
			bad(bf+".max_interval", "%v", err)
		}
	}
	if err := p.CallTimeout.check(); err != nil {
		bad(f+".call_timeout", "%v", err)
	}
	if p.LogLevel != "" {
		if _, err := abi.ParseLogLevel(p.LogLevel); err != nil {
			bad(f+".log_level", "%v", err)
		}
	}
	if p.ForeignFunctions != nil {
		for k, name := range *p.ForeignFunctions {
			if _, ok := ForeignFunctions()[name]; !ok {
				bad(fmt.Sprintf("%s.foreign_functions[%d]", f, k), "%q: the proxy has %s", name, strings.Join(sortedNames(ForeignFunctions()), ", "))
			}
		}
	}
	if p.PoolSize < 0 || p.PoolSize > abi.MaxPoolSize {
		bad(f+".pool_size", "%d: want 1 to %d (or 0: 1)", p.PoolSize, abi.MaxPoolSize)
	}
	if p.Snapshot && p.VMConfig.AllowPrecompiled {
		bad(f+".snapshot", "cannot be combined with vm_config.allow_precompiled: the precompiled code is the original module's, not the snapshot's")
	}
	if _, err := p.Configuration.Bytes(); err != nil {
		bad(f+".configuration", "%v", err)
	}
	if _, err := p.VMConfig.Configuration.Bytes(); err != nil {
		bad(f+".vm_config.configuration", "%v", err)
	}
}

// checkRoutes checks a route_config: every virtual host has domains (each
// domain once in the listener) and routes, every route one match and a
// known http cluster.
func checkRoutes(bad func(field, format string, args ...any), f string, rc *RouteConfig, clusters map[string]*Cluster) {
	if len(rc.VirtualHosts) == 0 {
		bad(f+".virtual_hosts", "none")
	}
	domains := map[string]bool{}
	for i := range rc.VirtualHosts {
		vh := &rc.VirtualHosts[i]
		vf := fmt.Sprintf("%s.virtual_hosts[%d]", f, i)
		if len(vh.Domains) == 0 {
			bad(vf+".domains", "none (\"*\" takes every host)")
		}
		for j, d := range vh.Domains {
			d = strings.ToLower(d)
			switch {
			case d == "":
				bad(fmt.Sprintf("%s.domains[%d]", vf, j), "empty")
			case strings.Count(d, "*") > 1 || (strings.Contains(d, "*") && d != "*" && !strings.HasPrefix(d, "*") && !strings.HasSuffix(d, "*")):
				bad(fmt.Sprintf("%s.domains[%d]", vf, j), "%q: a wildcard goes at the start or the end only", d)
			case domains[d]:
				bad(fmt.Sprintf("%s.domains[%d]", vf, j), "%q is in two virtual hosts", d)
			}
			domains[d] = true
		}
		if len(vh.Routes) == 0 {
			bad(vf+".routes", "none")
		}
		for j := range vh.Routes {
			r := &vh.Routes[j]
			rf := fmt.Sprintf("%s.routes[%d]", vf, j)
			compileRouteMatch(bad, rf+".match", &r.Match)
			name := r.Route.Cluster
			cl := clusters[name]
			if d := r.DirectResponse; d != nil {
				if name != "" {
					bad(rf+".route.cluster", "set with direct_response: give one")
				}
				if d.Status < 200 || d.Status > 599 {
					bad(rf+".direct_response.status", "%d: want 200 to 599", d.Status)
				}
				continue
			}
			switch {
			case name == "":
				bad(rf+".route.cluster", "missing (or give direct_response)")
			case cl == nil && name != EchoCluster:
				bad(rf+".route.cluster", "unknown cluster %q", name)
			case cl != nil && cl.Type != "http":
				bad(rf+".route.cluster", "cluster %q is of type %s, a route needs http", name, cl.Type)
			}
		}
	}
}

// checkEndpoints checks a cluster's endpoints and how they are balanced
// and resolved.
func checkEndpoints(bad func(field, format string, args ...any), f string, cl *Cluster) {
	switch {
	case cl.Address != "" && len(cl.Endpoints) > 0:
		bad(f+".endpoints", "set with address: give one")
	case cl.Address == "" && len(cl.Endpoints) == 0:
		bad(f+".address", "missing (or give endpoints)")
	}
	for i, e := range cl.endpoints() {
		ef := fmt.Sprintf("%s.endpoints[%d]", f, i)
		if cl.Address != "" {
			ef = f + ".address"
		}
		host, _, err := splitEndpoint(cl.Type, e)
		switch {
		case err != nil:
			bad(ef, "%v", err)
		case host == "":
			bad(ef, "%q: no host", e)
		}
	}
	switch cl.LbPolicy {
	case "", "ROUND_ROBIN", "RANDOM", "LEAST_REQUEST":
	default:
		bad(f+".lb_policy", "%q: want ROUND_ROBIN, RANDOM or LEAST_REQUEST", cl.LbPolicy)
	}
	switch cl.Discovery {
	case "", "static":
		if cl.DNSRefreshRate != nil || cl.DNSLookupFamily != "" {
			bad(f+".discovery", "static: dns_refresh_rate and dns_lookup_family are for strict_dns and logical_dns")
		}
	case "logical_dns":
		if n := len(cl.endpoints()); n != 1 {
			// Envoy's LogicalDnsCluster: "LOGICAL_DNS clusters must have a single host".
			bad(f+".endpoints", "logical_dns: %d endpoints, a logical_dns cluster has exactly one", n)
		}
		fallthrough
	case "strict_dns":
		if err := cl.DNSRefreshRate.check(); err != nil {
			bad(f+".dns_refresh_rate", "%v", err)
		} else if cl.DNSRefreshRate != nil && cl.DNSRefreshRate.Get() < time.Millisecond {
			bad(f+".dns_refresh_rate", "%s: want at least 1ms", cl.DNSRefreshRate.Get())
		}
		if _, ok := lookupFamilies[cl.DNSLookupFamily]; !ok {
			bad(f+".dns_lookup_family", "%q: want AUTO, V4_ONLY, V6_ONLY, V4_PREFERRED or ALL", cl.DNSLookupFamily)
		}
	default:
		bad(f+".discovery", "%q: want static, strict_dns or logical_dns", cl.Discovery)
	}
}

// endpoints are the cluster's endpoints as written: address, or endpoints.
func (c *Cluster) endpoints() []string {
	if c.Address != "" {
		return []string{c.Address}
	}
	return c.Endpoints
}

// splitEndpoint splits an endpoint into its host and the rest of it: for
// an http cluster, an http(s) URL or host:port (scheme http); else
// host:port.
func splitEndpoint(typ, e string) (host, port string, err error) {
	addr := e
	if (typ == "http" || typ == "") && strings.Contains(e, "://") {
		u, err := url.Parse(e)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return "", "", fmt.Errorf("%q: want host:port or an http(s) URL", e)
		}
		if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			// The endpoint is an address: the request keeps its own path.
			return "", "", fmt.Errorf("%q: a URL with a path, query or user: want scheme://host:port", e)
		}
		addr = u.Host
		if u.Port() == "" {
			if u.Scheme == "https" {
				addr = net.JoinHostPort(u.Hostname(), "443")
			} else {
				addr = net.JoinHostPort(u.Hostname(), "80")
			}
		}
	}
	return net.SplitHostPort(addr)
}

// checkRange refuses a set value outside [lo, hi].
func checkRange(bad func(field, format string, args ...any), field string, v *int, lo, hi int) {
	if v != nil && (*v < lo || *v > hi) {
		bad(field, "%d: want %d to %d", *v, lo, hi)
	}
}

func clusterNames(cs []Cluster) string {
	var s []string
	for _, c := range cs {
		s = append(s, c.Name)
	}
	if len(s) == 0 {
		return "none defined"
	}
	return strings.Join(s, ", ")
}

// checkMetricsPrefix refuses a plugin metrics prefix that is not the start
// of a Prometheus metric name an exporter may use, or that is in a
// namespace of the proxy's own families ("" is the default).
func checkMetricsPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	for i, r := range prefix {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_' || i > 0 && r >= '0' && r <= '9') {
			return fmt.Errorf("%q: want the start of a Prometheus metric name, [a-zA-Z_][a-zA-Z0-9_]* (colons are for recording rules)", prefix)
		}
	}
	if strings.HasPrefix(prefix, "__") {
		return fmt.Errorf("%q: names starting with __ are reserved for Prometheus' internal use", prefix)
	}
	for _, ns := range hostNamespaces {
		if strings.HasPrefix(prefix, ns.prefix) {
			return fmt.Errorf("%q: in %s, the namespace of %s: every plugin metric there would be left out", prefix, ns.prefix, ns.of)
		}
	}
	return nil
}
