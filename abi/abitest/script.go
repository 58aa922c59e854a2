package abitest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/anywasm/anywasm/abi"
)

// Script is a conformance script: how to load the plugin (or plugins),
// what the host offers them, and the exchanges to drive them through. Its
// JSON form uses the json tags below; unknown fields are refused.
type Script struct {
	// The plugin configuration (abi.PluginConfig) of a script with one
	// plugin, and the defaults of each entry of Plugins.
	Name            string            `json:"name,omitempty"`
	RootID          string            `json:"root_id,omitempty"`
	VMID            string            `json:"vm_id,omitempty"`
	Configuration   string            `json:"configuration,omitempty"`
	VMConfiguration string            `json:"vm_configuration,omitempty"`
	Environment     map[string]string `json:"environment,omitempty"`
	// FailurePolicy is "fail_closed" (default), "fail_open" or "fail_reload".
	FailurePolicy string `json:"failure_policy,omitempty"`
	// LogLevel, if set, is the plugin's own log level (abi's
	// PluginConfig.LogLevel): "trace" ... "critical".
	LogLevel string `json:"log_level,omitempty"`

	// Plugins, if set, are several plugins loaded into one host, in order
	// (plugins of one vm_id share shared data and queues; the same code
	// loaded twice with two configurations gets two root contexts). Each
	// exchange names the plugin it runs through; the fields above are the
	// defaults of every entry.
	Plugins []PluginSpec `json:"plugins,omitempty"`

	// Host fixtures. Properties answer proxy_get_property; see Properties
	// for the two JSON forms.
	Properties       Properties         `json:"properties,omitempty"`
	ForeignFunctions map[string]Foreign `json:"foreign_functions,omitempty"`
	// Upstreams are the clusters HTTP callouts may name, each answered by a
	// canned response, in process. A callout to another cluster is refused
	// when dispatched (the upstreams implement abi.ClusterChecker), as
	// Envoy refuses a cluster it does not know.
	Upstreams map[string]Upstream `json:"upstreams,omitempty"`

	// WaitTimeoutMS bounds the wait for a paused stream, for callout
	// answers and for awaited logs (default 5000).
	WaitTimeoutMS int `json:"wait_timeout_ms,omitempty"`
	// CallTimeoutMS bounds each callback on runtimes that can interrupt a
	// guest (default 10000; others run without a bound).
	CallTimeoutMS int `json:"call_timeout_ms,omitempty"`
	// NoCallTimeout runs callbacks without a bound on every runtime, as
	// Envoy does.
	NoCallTimeout bool `json:"no_call_timeout,omitempty"`
	// Snapshot loads every plugin from a pre-initialized snapshot (abi's
	// PluginConfig.Snapshot): a plugin's transcript must not change with
	// it.
	Snapshot bool `json:"snapshot,omitempty"`
	// IgnoreLogs leaves out of the transcript the logs containing any of
	// these strings.
	IgnoreLogs []string `json:"ignore_logs,omitempty"`
	// AsyncLogs are logs containing any of these strings that the host
	// writes at a time of its own (proxy_on_queue_ready runs when the host
	// delivers a queue's items): they are kept out of the steps' records
	// and checked by await steps.
	AsyncLogs []string `json:"async_logs,omitempty"`

	// Load is what loading the plugin must give (a script with one plugin;
	// each entry of Plugins has its own).
	Load LoadExpect `json:"load,omitzero"`
	// Exchanges run in order, each on a new stream (or none: an exchange of
	// tick, release and await steps only).
	Exchanges []Exchange `json:"exchanges"`

	dir string // the script file's directory (LoadScript)
}

// PluginSpec is one plugin of a script with several. Empty fields take the
// script's value.
type PluginSpec struct {
	// Name names the plugin in exchanges (required, unique) and is its
	// plugin_name.
	Name            string            `json:"name"`
	RootID          string            `json:"root_id,omitempty"`
	VMID            string            `json:"vm_id,omitempty"`
	Configuration   string            `json:"configuration,omitempty"`
	VMConfiguration string            `json:"vm_configuration,omitempty"`
	Environment     map[string]string `json:"environment,omitempty"`
	FailurePolicy   string            `json:"failure_policy,omitempty"`
	LogLevel        string            `json:"log_level,omitempty"`
	// Wasm is the plugin's code, a file (relative to the script's
	// directory); empty: the plugin Check is given. Code, in a Go script,
	// is the code itself.
	Wasm string `json:"wasm,omitempty"`
	Code []byte `json:"-"`
	// Load is what loading this plugin must give.
	Load LoadExpect `json:"load,omitzero"`
}

// Foreign is the fixed answer of a foreign function
// (proxy_call_foreign_function).
type Foreign struct {
	Result string `json:"result,omitempty"`
	Error  string `json:"error,omitempty"` // non-empty: the call fails (INTERNAL_FAILURE)
}

// Upstream is a cluster's canned answers. Answers are tried in order (the
// first whose Path equals the request's path, without its query, or whose
// Prefix starts it); the Upstream's own fields answer any other path.
type Upstream struct {
	Status   int     `json:"status,omitempty"` // default 200
	Headers  Headers `json:"headers,omitempty"`
	Body     string  `json:"body,omitempty"`
	Trailers Headers `json:"trailers,omitempty"`
	Error    string  `json:"error,omitempty"` // non-empty: the callout fails
	// Hold keeps the answer until a release step (deterministic delays).
	Hold bool `json:"hold,omitempty"`
	// DelayMS delays the answer by wall-clock time (bounded by the
	// callout's own timeout); prefer Hold.
	DelayMS int      `json:"delay_ms,omitempty"`
	Answers []Answer `json:"answers,omitempty"`
}

// Answer is a canned answer for some paths of a cluster.
type Answer struct {
	Path     string  `json:"path,omitempty"`   // the request's path, exactly
	Prefix   string  `json:"prefix,omitempty"` // or a prefix of it
	Status   int     `json:"status,omitempty"` // default 200
	Headers  Headers `json:"headers,omitempty"`
	Body     string  `json:"body,omitempty"`
	Trailers Headers `json:"trailers,omitempty"`
	// Error, if non-empty, makes the call fail: the plugin's
	// proxy_on_http_call_response sees 0 headers.
	Error   string `json:"error,omitempty"`
	Hold    bool   `json:"hold,omitempty"`
	DelayMS int    `json:"delay_ms,omitempty"`
}

// answer picks the answer for a request path.
func (u *Upstream) answer(path string) (Answer, string) {
	for i, a := range u.Answers {
		if (a.Path != "" && a.Path == path) || (a.Prefix != "" && strings.HasPrefix(path, a.Prefix)) {
			return a, fmt.Sprintf("answer %d", i+1)
		}
	}
	return Answer{Status: u.Status, Headers: u.Headers, Body: u.Body, Trailers: u.Trailers, Error: u.Error,
		Hold: u.Hold, DelayMS: u.DelayMS}, "default answer"
}

// LoadExpect is what loading a plugin must give.
type LoadExpect struct {
	ABIVersion string      `json:"abi_version,omitempty"` // "0.1.0", "0.2.0", "0.2.1"
	Error      string      `json:"error,omitempty"`       // non-empty: Load must fail with this in its error
	Logs       []LogExpect `json:"logs,omitempty"`
	// TickPeriodMS, if set, is the tick period the plugin must have set
	// once loaded (0: none).
	TickPeriodMS *int `json:"tick_period_ms,omitempty"`
	// Unimplemented are hostcalls the plugin must import that the host
	// does not implement (linked to stubs returning UNIMPLEMENTED).
	Unimplemented []string `json:"unimplemented,omitempty"`
	// Fail says the plugin must fail while loading (a trap in
	// proxy_on_vm_start, say); Error then need not be set.
	Fail *FailExpect `json:"fail,omitempty"`
}

// Exchange is one HTTP request/response or one TCP connection, or (with
// only tick, release and await steps) no stream at all.
type Exchange struct {
	Name string `json:"name"`
	// Plugin names the plugin of Plugins the exchange runs through
	// (default: the first).
	Plugin string         `json:"plugin,omitempty"`
	Steps  []Step         `json:"steps"`
	Expect ExchangeExpect `json:"expect,omitzero"`
}

// The calls of a step. An exchange uses the HTTP calls or the TCP ones;
// a TCP exchange starts with NewConnection. Tick, Release, Await and Wait
// may appear in any exchange (Wait only after a stream call).
const (
	RequestHeaders   = "request_headers"
	RequestBody      = "request_body"
	RequestTrailers  = "request_trailers"
	ResponseHeaders  = "response_headers"
	ResponseBody     = "response_body"
	ResponseTrailers = "response_trailers"

	NewConnection   = "new_connection"
	DownstreamData  = "downstream_data"
	UpstreamData    = "upstream_data"
	DownstreamClose = "downstream_close"
	UpstreamClose   = "upstream_close"

	// Tick runs the plugin's proxy_on_tick Times times (default 1), now:
	// the host runs no timer of its own.
	Tick = "tick"
	// Release releases the held callout answers of Cluster (all clusters
	// if empty) whose request path is Path (any if empty), and waits until
	// the plugin has handled them.
	Release = "release"
	// Wait waits until the plugin continues the paused Direction of the
	// stream (default: the previous stream step's), answers or fails it.
	Wait = "wait"
	// Await waits until every log the step expects has been written
	// (async logs included), bounded by the script's wait timeout.
	Await = "await"
)

// Step is one callback of an exchange, or one act of the host.
type Step struct {
	Call string `json:"call"`
	// Headers are the headers or trailers of a *_headers or *_trailers call.
	Headers Headers `json:"headers,omitempty"`
	// Body is the chunk of a body or TCP data call.
	Body        string `json:"body,omitempty"`
	EndOfStream bool   `json:"end_of_stream,omitempty"`
	// Peer is the closing side of a *_close call: "unknown" (default),
	// "local" or "remote".
	Peer string `json:"peer,omitempty"`
	// Times is the number of ticks of a tick step (default 1).
	Times int `json:"times,omitempty"`
	// Plugin, for a tick step, is the plugin ticked (default: the
	// exchange's).
	Plugin string `json:"plugin,omitempty"`
	// Cluster and Path select the held answers a release step releases.
	Cluster string `json:"cluster,omitempty"`
	Path    string `json:"path,omitempty"`
	// Direction of a wait step: "request", "response", "downstream" or
	// "upstream".
	Direction string `json:"direction,omitempty"`
	Expect    Expect `json:"expect,omitzero"`
}

// Expect is what a step must give. Zero fields are not checked, except
// that a plugin failure is always an error unless Fail expects it.
//
// A step that pauses is waited for (abi's Wait, bounded by the script's
// wait timeout) before checking, as a proxy would, unless it is a body or
// TCP data chunk before the end of the stream (then the host keeps
// buffering and the next chunk runs the callback again) or StaysPaused is
// set. Every step ends once the plugin has handled the answers of the
// callouts it made (held answers excepted).
type Expect struct {
	// Action is the callback's result: "continue" or "pause". For a wait
	// step: "continue" once the plugin continued the stream.
	Action string `json:"action,omitempty"`
	// StaysPaused: the step pauses and is not waited for; the stream must
	// still be paused at the end of the step (a later tick, release or
	// wait step goes on with it).
	StaysPaused bool `json:"stays_paused,omitempty"`
	// Headers, if non-nil, must equal the step's header map (the request's
	// or response's headers or trailers, as the plugin left them),
	// ignoring the order of different keys. An empty map ({} or []) says
	// the map must be empty, and stays so in the JSON form (omitzero).
	Headers Headers `json:"headers,omitzero"`
	// HeadersContain must be among those headers (keys ignore case).
	HeadersContain Headers `json:"headers_contain,omitempty"`
	// HeadersLack must be absent from them.
	HeadersLack []string `json:"headers_lack,omitempty"`
	// Body, if non-nil, is the bytes a body or data step passes on.
	Body *string `json:"body,omitempty"`
	// LocalResponse must have been sent by the end of the step.
	LocalResponse   *LocalResponseExpect `json:"local_response,omitempty"`
	NoLocalResponse bool                 `json:"no_local_response,omitempty"`
	// Logs must each match a log written during the step.
	Logs []LogExpect `json:"logs,omitempty"`
	// Fail says the plugin must fail during this step (in any callback:
	// proxy_on_context_create of the exchange's first step, a tick, a
	// callout answer).
	Fail *FailExpect `json:"fail,omitempty"`
	// Callouts are HTTP callouts the plugin must make during the step.
	Callouts []CalloutExpect `json:"callouts,omitempty"`
	// Ticks is the number of ticks a tick step must run (default: Times;
	// a plugin with no tick period runs none).
	Ticks *int `json:"ticks,omitempty"`
	// TickPeriodMS, if set, is the plugin's tick period after the step.
	TickPeriodMS *int `json:"tick_period_ms,omitempty"`
}

// CalloutExpect matches HTTP callouts (proxy_http_call). Empty fields match
// anything.
type CalloutExpect struct {
	Cluster string `json:"cluster,omitempty"`
	Method  string `json:"method,omitempty"`
	// Path is the request's :path (with its query).
	Path      string  `json:"path,omitempty"`
	Authority string  `json:"authority,omitempty"`
	Headers   Headers `json:"headers,omitempty"` // must be among the request's headers
	Body      *string `json:"body,omitempty"`
	Trailers  Headers `json:"trailers,omitempty"` // must be among its trailers
	// TimeoutMS is the timeout the plugin gave (0: none). The host hands
	// it over as a deadline: the callout's must lie within the second
	// before it.
	TimeoutMS *int `json:"timeout_ms,omitempty"`
	// Count, if set, is the exact number of callouts that match; otherwise
	// at least one must.
	Count *int `json:"count,omitempty"`
}

// LocalResponseExpect is a local response the plugin must send.
type LocalResponseExpect struct {
	Status  int     `json:"status,omitempty"`
	Headers Headers `json:"headers,omitempty"` // must be among its headers
	Body    *string `json:"body,omitempty"`
}

// LogExpect matches a log whose message contains Contains, at Level
// ("trace", "debug", "info", "warn", "error", "critical") if set, written
// by Plugin (a name of Plugins) if set.
type LogExpect struct {
	Contains string `json:"contains"`
	Level    string `json:"level,omitempty"`
	Plugin   string `json:"plugin,omitempty"`
}

// FailExpect is a plugin failure: Trap is an engine.TrapCode's name
// ("unreachable", "interrupted", ...), Callback the Proxy-Wasm callback
// that failed; empty fields match anything.
type FailExpect struct {
	Trap     string `json:"trap,omitempty"`
	Callback string `json:"callback,omitempty"`
}

// ExchangeExpect is checked once the exchange's stream is closed.
type ExchangeExpect struct {
	// Logs must each match a log of the exchange (any step, or the close).
	Logs []LogExpect `json:"logs,omitempty"`
	// Metrics by name. Value is a counter's or gauge's value, a
	// histogram's sum; Count a histogram's number of values.
	Metrics map[string]MetricExpect `json:"metrics,omitempty"`
	// SharedData by key, in the exchange's plugin's vm_id.
	SharedData map[string]string `json:"shared_data,omitempty"`
	// Callouts are HTTP callouts the exchange must have made (any step).
	Callouts []CalloutExpect `json:"callouts,omitempty"`
}

// MetricExpect is a metric's value; nil fields are not checked.
type MetricExpect struct {
	Value *int64  `json:"value,omitempty"`
	Count *uint64 `json:"count,omitempty"`
}

// Headers is an ordered header map. In JSON it is an object, whose keys
// keep their order, or an array of [key, value] pairs (for repeated keys).
type Headers []abi.Header

// UnmarshalJSON accepts an object or an array of pairs; null is nil and
// {} a non-nil empty map.
func (h *Headers) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case nil:
		*h = nil
		return nil
	case json.Delim('['):
		var pairs [][2]string
		if err := json.Unmarshal(b, &pairs); err != nil {
			return fmt.Errorf("headers: want an object or [key, value] pairs: %w", err)
		}
		out := Headers{}
		for _, p := range pairs {
			out = append(out, abi.Header{Key: p[0], Value: p[1]})
		}
		*h = out
		return nil
	case json.Delim('{'):
		out := Headers{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return err
			}
			var v string
			if err := dec.Decode(&v); err != nil {
				return fmt.Errorf("header %q: %w", k, err)
			}
			out = append(out, abi.Header{Key: k.(string), Value: v})
		}
		*h = out
		return nil
	}
	return fmt.Errorf("headers: want an object or [key, value] pairs, not %v", tok)
}

// MarshalJSON writes an object, or pairs when a key repeats; nil is null.
func (h Headers) MarshalJSON() ([]byte, error) {
	if h == nil {
		return []byte("null"), nil
	}
	seen := map[string]bool{}
	for _, e := range h {
		if seen[e.Key] {
			pairs := make([][2]string, len(h))
			for i, e := range h {
				pairs[i] = [2]string{e.Key, e.Value}
			}
			return json.Marshal(pairs)
		}
		seen[e.Key] = true
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range h {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(e.Key)
		v, _ := json.Marshal(e.Value)
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// LoadScript reads a script from a JSON file. The wasm files its plugins
// name are relative to the script's directory.
func LoadScript(path string) (*Script, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := ParseScript(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s.dir = filepath.Dir(path)
	return s, nil
}

// ParseScript parses and validates a JSON script.
func ParseScript(b []byte) (*Script, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s Script
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("abitest: script: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("abitest: script: data after the script's JSON object")
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

var (
	httpCalls = map[string]bool{RequestHeaders: true, RequestBody: true, RequestTrailers: true,
		ResponseHeaders: true, ResponseBody: true, ResponseTrailers: true}
	tcpCalls = map[string]bool{NewConnection: true, DownstreamData: true, UpstreamData: true,
		DownstreamClose: true, UpstreamClose: true}
	hostCalls = map[string]bool{Tick: true, Release: true, Wait: true, Await: true}
	peers     = map[string]abi.PeerType{"": abi.PeerUnknown, "unknown": abi.PeerUnknown, "local": abi.PeerLocal, "remote": abi.PeerRemote}
	policies  = map[string]abi.FailurePolicy{"": abi.FailClosed, "fail_closed": abi.FailClosed,
		"fail_open": abi.FailOpen, "fail_reload": abi.FailReload}
	levels     = map[string]bool{"": true, "trace": true, "debug": true, "info": true, "warn": true, "error": true, "critical": true}
	directions = map[string]abi.StreamType{"request": abi.StreamHTTPRequest, "response": abi.StreamHTTPResponse,
		"downstream": abi.StreamDownstream, "upstream": abi.StreamUpstream}
)

// isTCP reports whether the exchange is a TCP connection.
func (e *Exchange) isTCP() bool {
	for _, st := range e.Steps {
		if tcpCalls[st.Call] {
			return true
		}
	}
	return false
}

// hasStream reports whether the exchange has a stream: an HTTP or TCP
// call.
func (e *Exchange) hasStream() bool {
	for _, st := range e.Steps {
		if httpCalls[st.Call] || tcpCalls[st.Call] {
			return true
		}
	}
	return false
}

// plugins returns the script's plugins, each with the script's defaults
// filled in; one from the top-level fields when Plugins is empty.
func (s *Script) plugins() []PluginSpec {
	if len(s.Plugins) == 0 {
		return []PluginSpec{{Name: s.Name, RootID: s.RootID, VMID: s.VMID, Configuration: s.Configuration,
			VMConfiguration: s.VMConfiguration, Environment: s.Environment, FailurePolicy: s.FailurePolicy,
			LogLevel: s.LogLevel, Load: s.Load}}
	}
	out := make([]PluginSpec, len(s.Plugins))
	for i, p := range s.Plugins {
		def := func(v *string, d string) {
			if *v == "" {
				*v = d
			}
		}
		def(&p.RootID, s.RootID)
		def(&p.VMID, s.VMID)
		def(&p.Configuration, s.Configuration)
		def(&p.VMConfiguration, s.VMConfiguration)
		def(&p.FailurePolicy, s.FailurePolicy)
		def(&p.LogLevel, s.LogLevel)
		if p.Environment == nil {
			p.Environment = s.Environment
		}
		if p.Wasm != "" && s.dir != "" && !filepath.IsAbs(p.Wasm) {
			p.Wasm = filepath.Join(s.dir, p.Wasm)
		}
		out[i] = p
	}
	return out
}

// Validate checks the script for mistakes Check would otherwise trip on.
func (s *Script) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	checkLogs := func(where string, logs []LogExpect) {
		for _, l := range logs {
			if !levels[l.Level] {
				bad("%s: log level %q: want trace, debug, info, warn, error or critical", where, l.Level)
			}
		}
	}
	names := map[string]bool{}
	for i, p := range s.plugins() {
		where := "plugin"
		if len(s.Plugins) > 0 {
			where = fmt.Sprintf("plugins[%d] (%q)", i, p.Name)
			switch {
			case p.Name == "":
				bad("%s: a name is needed", where)
			case names[p.Name]:
				bad("%s: a second plugin of that name", where)
			}
		}
		names[p.Name] = true
		if _, ok := policies[p.FailurePolicy]; !ok {
			bad("%s: failure_policy %q: want fail_closed, fail_open or fail_reload", where, p.FailurePolicy)
		}
		if p.LogLevel != "" {
			if _, err := abi.ParseLogLevel(p.LogLevel); err != nil {
				bad("%s: log_level %q: want trace, debug, info, warn, error or critical", where, p.LogLevel)
			}
		}
		load := "load"
		if len(s.Plugins) > 0 {
			load = where + ": load"
		}
		checkLogs(load, p.Load.Logs)
		if (p.Load.Error != "" || p.Load.Fail != nil) && len(s.Exchanges) > 0 {
			bad("%s: a script whose load must fail can have no exchanges", load)
		}
	}
	if len(s.Plugins) > 0 && !s.Load.isZero() {
		bad("load: a script with plugins has a load expectation per plugin")
	}
	if err := s.Properties.validate(); err != nil {
		bad("properties: %v", err)
	}
	plugin := func(where, name string) {
		if name != "" && !names[name] {
			bad("%s: plugin %q: no such plugin", where, name)
		}
	}
	for i, e := range s.Exchanges {
		ex := fmt.Sprintf("exchange %d (%q)", i+1, e.Name)
		plugin(ex, e.Plugin)
		tcp := e.isTCP()
		stream := false // a stream call came before
		for j, st := range e.Steps {
			where := fmt.Sprintf("%s, step %d (%s)", ex, j+1, st.Call)
			switch {
			case hostCalls[st.Call]:
			case !httpCalls[st.Call] && !tcpCalls[st.Call]:
				bad("%s: unknown call", where)
			case tcp != tcpCalls[st.Call]:
				bad("%s: HTTP and TCP calls in one exchange", where)
			case tcp && (st.Call == NewConnection) != !stream:
				bad("%s: a TCP exchange starts with new_connection, once", where)
			}
			if _, ok := peers[st.Peer]; !ok {
				bad("%s: peer %q: want unknown, local or remote", where, st.Peer)
			}
			if a := st.Expect.Action; a != "" && a != "continue" && a != "pause" {
				bad("%s: action %q: want continue or pause", where, a)
			}
			if st.Times < 0 || (st.Times != 0 && st.Call != Tick) {
				bad("%s: times is for tick steps, and at least 1", where)
			}
			if st.Plugin != "" && st.Call != Tick {
				bad("%s: plugin is for tick steps (an exchange names its plugin)", where)
			}
			plugin(where, st.Plugin)
			if (st.Cluster != "" || st.Path != "") && st.Call != Release {
				bad("%s: cluster and path are for release steps", where)
			}
			if st.Direction != "" {
				d, ok := directions[st.Direction]
				switch {
				case st.Call != Wait:
					bad("%s: direction is for wait steps", where)
				case !ok:
					bad("%s: direction %q: want request, response, downstream or upstream", where, st.Direction)
				case tcp != (d == abi.StreamDownstream || d == abi.StreamUpstream):
					bad("%s: direction %q is not of this exchange's stream", where, st.Direction)
				}
			}
			if st.Call == Wait && !stream {
				bad("%s: a wait step follows a stream step", where)
			}
			if st.Expect.StaysPaused && st.Expect.Action == "continue" {
				bad("%s: stays_paused with action continue", where)
			}
			if st.Expect.Ticks != nil && st.Call != Tick {
				bad("%s: ticks is for tick steps", where)
			}
			if st.Call == Await && len(st.Expect.Logs) == 0 {
				bad("%s: an await step expects logs", where)
			}
			checkLogs(where, st.Expect.Logs)
			for _, l := range st.Expect.Logs {
				plugin(where, l.Plugin)
			}
			if httpCalls[st.Call] || tcpCalls[st.Call] {
				stream = true
			}
		}
		checkLogs(ex, e.Expect.Logs)
	}
	for name, up := range s.Upstreams {
		for i, a := range up.Answers {
			if (a.Path == "") == (a.Prefix == "") {
				bad("upstreams %q: answers[%d]: give a path or a prefix", name, i)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("abitest: invalid script: %w", errors.Join(errs...))
	}
	return nil
}

func (l *LoadExpect) isZero() bool {
	return l.ABIVersion == "" && l.Error == "" && len(l.Logs) == 0 && l.TickPeriodMS == nil &&
		len(l.Unimplemented) == 0 && l.Fail == nil
}
