// Package abi is the Proxy-Wasm host (ABI 0.1.0, 0.2.0 and 0.2.1), written
// once against package engine and never against one runtime. Plugins built
// by the Proxy-Wasm SDKs (Rust, C++, Go, TinyGo, AssemblyScript) run
// unchanged on every runtime engine offers.
//
// The embedder never touches guest memory: it loads a plugin with Host.Load,
// then drives typed streams (HTTPStream, TCPStream) whose methods are the
// Proxy-Wasm callbacks. The hostcalls, WASI, shared data, queues, metrics,
// ticks and HTTP callouts are implemented here.
package abi

import "fmt"

// Status is a Proxy-Wasm status code, returned by every hostcall.
type Status uint32

// The status codes.
const (
	StatusOK                   Status = 0
	StatusNotFound             Status = 1
	StatusBadArgument          Status = 2
	StatusSerializationFailure Status = 3
	StatusParseFailure         Status = 4
	StatusInvalidMemoryAccess  Status = 6
	StatusEmpty                Status = 7
	StatusCasMismatch          Status = 8
	StatusInternalFailure      Status = 10
	StatusUnimplemented        Status = 12
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "OK"
	case StatusNotFound:
		return "NOT_FOUND"
	case StatusBadArgument:
		return "BAD_ARGUMENT"
	case StatusSerializationFailure:
		return "SERIALIZATION_FAILURE"
	case StatusParseFailure:
		return "PARSE_FAILURE"
	case StatusInvalidMemoryAccess:
		return "INVALID_MEMORY_ACCESS"
	case StatusEmpty:
		return "EMPTY"
	case StatusCasMismatch:
		return "CAS_MISMATCH"
	case StatusInternalFailure:
		return "INTERNAL_FAILURE"
	case StatusUnimplemented:
		return "UNIMPLEMENTED"
	}
	return fmt.Sprintf("Status(%d)", uint32(s))
}

// LogLevel is a Proxy-Wasm log level.
type LogLevel uint32

// The log levels.
const (
	LogTrace LogLevel = iota
	LogDebug
	LogInfo
	LogWarn
	LogError
	LogCritical
)

func (l LogLevel) String() string {
	switch l {
	case LogTrace:
		return "trace"
	case LogDebug:
		return "debug"
	case LogInfo:
		return "info"
	case LogWarn:
		return "warn"
	case LogError:
		return "error"
	case LogCritical:
		return "critical"
	}
	return fmt.Sprintf("LogLevel(%d)", uint32(l))
}

// BufferType selects a buffer for proxy_get_buffer_bytes and friends.
type BufferType uint32

// The buffer types.
const (
	BufferHTTPRequestBody          BufferType = 0
	BufferHTTPResponseBody         BufferType = 1
	BufferDownstreamData           BufferType = 2
	BufferUpstreamData             BufferType = 3
	BufferHTTPCallResponseBody     BufferType = 4
	BufferGRPCReceiveBuffer        BufferType = 5
	BufferVMConfiguration          BufferType = 6
	BufferPluginConfiguration      BufferType = 7
	BufferForeignFunctionArguments BufferType = 8
)

// MapType selects a header map.
type MapType uint32

// The map types.
const (
	MapHTTPRequestHeaders       MapType = 0
	MapHTTPRequestTrailers      MapType = 1
	MapHTTPResponseHeaders      MapType = 2
	MapHTTPResponseTrailers     MapType = 3
	MapGRPCInitialMetadata      MapType = 4
	MapGRPCTrailingMetadata     MapType = 5
	MapHTTPCallResponseHeaders  MapType = 6
	MapHTTPCallResponseTrailers MapType = 7
)

// StreamType is the argument of proxy_continue_stream and proxy_close_stream.
type StreamType uint32

// The stream types.
const (
	StreamHTTPRequest  StreamType = 0
	StreamHTTPResponse StreamType = 1
	StreamDownstream   StreamType = 2
	StreamUpstream     StreamType = 3
)

// PeerType says which side closed a TCP connection.
type PeerType uint32

// The peer types.
const (
	PeerUnknown PeerType = 0
	PeerLocal   PeerType = 1
	PeerRemote  PeerType = 2
)

// MetricType is the type of a metric a plugin defines.
type MetricType uint32

// The metric types.
const (
	MetricCounter   MetricType = 0
	MetricGauge     MetricType = 1
	MetricHistogram MetricType = 2
)

func (t MetricType) String() string {
	switch t {
	case MetricCounter:
		return "counter"
	case MetricGauge:
		return "gauge"
	case MetricHistogram:
		return "histogram"
	}
	return fmt.Sprintf("MetricType(%d)", uint32(t))
}

// Action is what a stream callback tells the host to do next.
type Action uint32

// The actions.
const (
	// ActionContinue passes the data on.
	ActionContinue Action = 0
	// ActionPause holds the data until the plugin continues the stream, sends
	// a local response or the stream ends.
	ActionPause Action = 1
)

func (a Action) String() string {
	switch a {
	case ActionContinue:
		return "continue"
	case ActionPause:
		return "pause"
	}
	return fmt.Sprintf("Action(%d)", uint32(a))
}

// Version is a Proxy-Wasm ABI version.
type Version uint8

// The ABI versions a plugin may declare.
const (
	VersionUnknown Version = iota
	Version010
	Version020
	Version021
)

func (v Version) String() string {
	switch v {
	case Version010:
		return "0.1.0"
	case Version020:
		return "0.2.0"
	case Version021:
		return "0.2.1"
	}
	return "unknown"
}
