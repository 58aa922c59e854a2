// Package loadreq is the request of cmd/bench load: its path, headers and
// answer, and the plugin chains it goes through. The benchmarks and tests
// that measure the same request in process (bench's BenchmarkMiddleware,
// abi/nethttp's TestMiddlewareAllocs) take it from here, so that their
// figures stay comparable with the proxy's.
package loadreq

import (
	"bytes"
	"net/http"
)

// Path is the request's path.
const Path = "/bench"

// Headers are the request's headers besides Host.
var Headers = [][2]string{
	{"User-Agent", "anywasm-bench-load/1"},
	{"Accept", "*/*"},
	{"Accept-Language", "en"},
	{"X-Request-Id", "0123456789abcdef"},
	{"X-Forwarded-For", "192.0.2.1"},
	{"Cookie", "session=abcdef0123456789"},
}

// Chains are the plugin chains by length: the Go-SDK test plugins of
// abi/testdata/plugins. local_response denies only requests carrying
// x-deny, which the request never has.
var Chains = map[int][]string{
	0: nil,
	1: {"headers"},
	3: {"headers", "local_response", "metrics"},
}

// Body returns what the upstream answers: 64 bytes.
func Body() []byte { return append(bytes.Repeat([]byte("a"), 63), '\n') }

// DiscardWriter is an http.ResponseWriter that keeps only its header map
// and status, reset by Reset, so that a benchmark counts only what the
// handler allocates.
type DiscardWriter struct {
	H      http.Header
	Status int
}

// NewDiscardWriter returns a DiscardWriter with an empty header map.
func NewDiscardWriter() *DiscardWriter { return &DiscardWriter{H: http.Header{}} }

func (w *DiscardWriter) Header() http.Header         { return w.H }
func (w *DiscardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *DiscardWriter) WriteHeader(s int)           { w.Status = s }

// Reset empties the header map (keeping its storage) and the status.
func (w *DiscardWriter) Reset() {
	clear(w.H)
	w.Status = 0
}
