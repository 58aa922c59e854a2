package abitest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/anywasm/anywasm/abi"
)

// Script is a conformance script: how to load the plugin, what the host
// offers it, and the exchanges to drive it through. Its JSON form uses the
// json tags below; unknown fields are refused.
type Script struct {
	// The plugin configuration (abi.PluginConfig).
	Name            string            `json:"name,omitempty"`
	RootID          string            `json:"root_id,omitempty"`
	VMID            string            `json:"vm_id,omitempty"`
	Configuration   string            `json:"configuration,omitempty"`
	VMConfiguration string            `json:"vm_configuration,omitempty"`
	Environment     map[string]string `json:"environment,omitempty"`
	// FailurePolicy is "fail_closed" (default), "fail_open" or "fail_reload".
	FailurePolicy string `json:"failure_policy,omitempty"`

	// Host fixtures. Properties are answered by path, its segments joined
	// with "." ("anywasm.custom" answers ["anywasm", "custom"]).
	Properties       map[string]string  `json:"properties,omitempty"`
	ForeignFunctions map[string]Foreign `json:"foreign_functions,omitempty"`
	// Upstreams are the clusters HTTP callouts may name, each answered by a
	// canned response, in process. A callout to another cluster fails.
	Upstreams map[string]Upstream `json:"upstreams,omitempty"`

	// WaitTimeoutMS bounds the wait for a paused stream (default 5000).
	WaitTimeoutMS int `json:"wait_timeout_ms,omitempty"`
	// CallTimeoutMS bounds each callback on runtimes that can interrupt a
	// guest (default 10000; others run without a bound).
	CallTimeoutMS int `json:"call_timeout_ms,omitempty"`
	// IgnoreLogs leaves out of the transcript the logs containing any of
	// these strings: timer-driven logs (proxy_on_tick) whose timing varies.
	IgnoreLogs []string `json:"ignore_logs,omitempty"`

	// Load is what loading the plugin must give.
	Load LoadExpect `json:"load,omitzero"`
	// Exchanges run in order, each on a new stream of the same plugin.
	Exchanges []Exchange `json:"exchanges"`
}

// Foreign is the fixed answer of a foreign function.
type Foreign struct {
	Result string `json:"result,omitempty"`
	Error  string `json:"error,omitempty"` // non-empty: the call fails
}

// Upstream is the canned response of a cluster.
type Upstream struct {
	Status   int     `json:"status,omitempty"` // default 200
	Headers  Headers `json:"headers,omitempty"`
	Body     string  `json:"body,omitempty"`
	Trailers Headers `json:"trailers,omitempty"`
	Error    string  `json:"error,omitempty"` // non-empty: the callout fails
	// DelayMS delays the answer (bounded by the callout's own timeout).
	DelayMS int `json:"delay_ms,omitempty"`
}

// LoadExpect is what loading the plugin must give.
type LoadExpect struct {
	ABIVersion string      `json:"abi_version,omitempty"` // "0.1.0", "0.2.0", "0.2.1"
	Error      string      `json:"error,omitempty"`       // non-empty: Load must fail with this in its error
	Logs       []LogExpect `json:"logs,omitempty"`
}

// Exchange is one HTTP request/response or one TCP connection.
type Exchange struct {
	Name   string         `json:"name"`
	Steps  []Step         `json:"steps"`
	Expect ExchangeExpect `json:"expect,omitzero"`
}

// The calls of a step. An exchange uses the HTTP calls or the TCP ones;
// a TCP exchange starts with NewConnection.
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
)

// Step is one callback of an exchange.
type Step struct {
	Call string `json:"call"`
	// Headers are the headers or trailers of a *_headers or *_trailers call.
	Headers Headers `json:"headers,omitempty"`
	// Body is the chunk of a body or TCP data call.
	Body        string `json:"body,omitempty"`
	EndOfStream bool   `json:"end_of_stream,omitempty"`
	// Peer is the closing side of a *_close call: "unknown" (default),
	// "local" or "remote".
	Peer   string `json:"peer,omitempty"`
	Expect Expect `json:"expect,omitzero"`
}

// Expect is what a step must give. Zero fields are not checked, except
// that a plugin failure is always an error unless Fail expects it.
//
// A step that pauses is waited for (abi's Wait, bounded by the script's
// wait timeout) before checking, as a proxy would, unless it is a body or
// TCP data chunk before the end of the stream: then the host keeps
// buffering and the next chunk runs the callback again.
type Expect struct {
	// Action is the callback's result: "continue" or "pause".
	Action string `json:"action,omitempty"`
	// Headers, if non-nil, must equal the step's header map (the request's
	// or response's headers or trailers, as the plugin left them),
	// ignoring the order of different keys.
	Headers Headers `json:"headers,omitempty"`
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
	// Fail says the plugin must fail during this step.
	Fail *FailExpect `json:"fail,omitempty"`
}

// LocalResponseExpect is a local response the plugin must send.
type LocalResponseExpect struct {
	Status  int     `json:"status,omitempty"`
	Headers Headers `json:"headers,omitempty"` // must be among its headers
	Body    *string `json:"body,omitempty"`
}

// LogExpect matches a log whose message contains Contains, at Level
// ("trace", "debug", "info", "warn", "error", "critical") if set.
type LogExpect struct {
	Contains string `json:"contains"`
	Level    string `json:"level,omitempty"`
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
	// SharedData by key, in the plugin's vm_id.
	SharedData map[string]string `json:"shared_data,omitempty"`
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

// LoadScript reads a script from a JSON file.
func LoadScript(path string) (*Script, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := ParseScript(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
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
	peers    = map[string]abi.PeerType{"": abi.PeerUnknown, "unknown": abi.PeerUnknown, "local": abi.PeerLocal, "remote": abi.PeerRemote}
	policies = map[string]abi.FailurePolicy{"": abi.FailClosed, "fail_closed": abi.FailClosed,
		"fail_open": abi.FailOpen, "fail_reload": abi.FailReload}
	levels = map[string]bool{"": true, "trace": true, "debug": true, "info": true, "warn": true, "error": true, "critical": true}
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

// Validate checks the script for mistakes Check would otherwise trip on.
func (s *Script) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if _, ok := policies[s.FailurePolicy]; !ok {
		bad("failure_policy %q: want fail_closed, fail_open or fail_reload", s.FailurePolicy)
	}
	checkLogs := func(where string, logs []LogExpect) {
		for _, l := range logs {
			if !levels[l.Level] {
				bad("%s: log level %q: want trace, debug, info, warn, error or critical", where, l.Level)
			}
		}
	}
	checkLogs("load", s.Load.Logs)
	if s.Load.Error != "" && len(s.Exchanges) > 0 {
		bad("load: a script whose load must fail can have no exchanges")
	}
	for i, e := range s.Exchanges {
		ex := fmt.Sprintf("exchange %d (%q)", i+1, e.Name)
		tcp := e.isTCP()
		for j, st := range e.Steps {
			where := fmt.Sprintf("%s, step %d (%s)", ex, j+1, st.Call)
			switch {
			case !httpCalls[st.Call] && !tcpCalls[st.Call]:
				bad("%s: unknown call", where)
			case tcp != tcpCalls[st.Call]:
				bad("%s: HTTP and TCP calls in one exchange", where)
			case tcp && (st.Call == NewConnection) != (j == 0):
				bad("%s: a TCP exchange starts with new_connection, once", where)
			}
			if _, ok := peers[st.Peer]; !ok {
				bad("%s: peer %q: want unknown, local or remote", where, st.Peer)
			}
			if a := st.Expect.Action; a != "" && a != "continue" && a != "pause" {
				bad("%s: action %q: want continue or pause", where, a)
			}
			checkLogs(where, st.Expect.Logs)
		}
		checkLogs(ex, e.Expect.Logs)
	}
	if len(errs) > 0 {
		return fmt.Errorf("abitest: invalid script: %w", errors.Join(errs...))
	}
	return nil
}
