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

//go:generate go run golang.org/x/tools/cmd/stringer@v0.52.0 -linecomment -type Status,LogLevel,MetricType,Action,Version,FailurePolicy,ServiceMode -output enums_string.go

// Status is a Proxy-Wasm status code, returned by every hostcall.
type Status uint32

// The status codes.
const (
	StatusOK                   Status = 0  // OK
	StatusNotFound             Status = 1  // NOT_FOUND
	StatusBadArgument          Status = 2  // BAD_ARGUMENT
	StatusSerializationFailure Status = 3  // SERIALIZATION_FAILURE
	StatusParseFailure         Status = 4  // PARSE_FAILURE
	StatusInvalidMemoryAccess  Status = 6  // INVALID_MEMORY_ACCESS
	StatusEmpty                Status = 7  // EMPTY
	StatusCasMismatch          Status = 8  // CAS_MISMATCH
	StatusInternalFailure      Status = 10 // INTERNAL_FAILURE
	StatusUnimplemented        Status = 12 // UNIMPLEMENTED
)

// LogLevel is a Proxy-Wasm log level.
type LogLevel uint32

// The log levels.
const (
	LogTrace    LogLevel = iota // trace
	LogDebug                    // debug
	LogInfo                     // info
	LogWarn                     // warn
	LogError                    // error
	LogCritical                 // critical
)

// bufferType selects a buffer for proxy_get_buffer_bytes and friends.
type bufferType uint32

// The buffer types.
const (
	bufferHTTPRequestBody          bufferType = 0
	bufferHTTPResponseBody         bufferType = 1
	bufferDownstreamData           bufferType = 2
	bufferUpstreamData             bufferType = 3
	bufferHTTPCallResponseBody     bufferType = 4
	bufferGRPCReceiveBuffer        bufferType = 5
	bufferVMConfiguration          bufferType = 6
	bufferPluginConfiguration      bufferType = 7
	bufferForeignFunctionArguments bufferType = 8
)

// mapType selects a header map.
type mapType uint32

// The map types.
const (
	mapHTTPRequestHeaders       mapType = 0
	mapHTTPRequestTrailers      mapType = 1
	mapHTTPResponseHeaders      mapType = 2
	mapHTTPResponseTrailers     mapType = 3
	mapGRPCInitialMetadata      mapType = 4
	mapGRPCTrailingMetadata     mapType = 5
	mapHTTPCallResponseHeaders  mapType = 6
	mapHTTPCallResponseTrailers mapType = 7
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
	MetricCounter   MetricType = 0 // counter
	MetricGauge     MetricType = 1 // gauge
	MetricHistogram MetricType = 2 // histogram
)

// Action is what a stream callback tells the host to do next.
type Action uint32

// The actions.
const (
	// ActionContinue passes the data on.
	ActionContinue Action = 0 // continue
	// ActionPause holds the data until the plugin continues the stream, sends
	// a local response or the stream ends.
	ActionPause Action = 1 // pause
)

// Version is a Proxy-Wasm ABI version.
type Version uint8

// The ABI versions a plugin may declare.
const (
	VersionUnknown Version = iota // unknown
	Version010                    // 0.1.0
	Version020                    // 0.2.0
	Version021                    // 0.2.1
)
