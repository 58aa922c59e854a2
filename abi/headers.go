package abi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Header is one entry of a header map. Proxy-Wasm keys are lower-case, as
// in HTTP/2; pseudo-headers (":method", ":path", ":authority", ":status")
// carry the request line and status.
type Header struct {
	Key, Value string
}

// Headers is an ordered header map; a key may appear more than once.
type Headers []Header

// Get returns the first value of key.
func (h Headers) Get(key string) (string, bool) {
	for i := range h {
		if h[i].Key == key {
			return h[i].Value, true
		}
	}
	return "", false
}

// Values returns every value of key.
func (h Headers) Values(key string) []string {
	var vs []string
	for i := range h {
		if h[i].Key == key {
			vs = append(vs, h[i].Value)
		}
	}
	return vs
}

// Add appends an entry.
func (h *Headers) Add(key, value string) { *h = append(*h, Header{key, value}) }

// Set replaces every entry of key with one entry, or appends it.
func (h *Headers) Set(key, value string) {
	for i := range *h {
		if (*h)[i].Key == key {
			(*h)[i].Value = value
			h.del(key, i+1)
			return
		}
	}
	h.Add(key, value)
}

// Del removes every entry of key.
func (h *Headers) Del(key string) { h.del(key, 0) }

func (h *Headers) del(key string, from int) {
	out := (*h)[:from]
	for _, e := range (*h)[from:] {
		if e.Key != key {
			out = append(out, e)
		}
	}
	clear((*h)[len(out):])
	*h = out
}

// delFold removes every entry whose key equals key ignoring ASCII case.
func delFold[T string | []byte](h *Headers, key T) {
	out := (*h)[:0]
	for _, e := range *h {
		if !keyEqual(key, e.Key) {
			out = append(out, e)
		}
	}
	clear((*h)[len(out):])
	*h = out
}

// Clone returns a copy.
func (h Headers) Clone() Headers { return append(Headers(nil), h...) }

// String formats the map as "k: v; k: v" for logs and test failures.
func (h Headers) String() string {
	var b strings.Builder
	for i, e := range h {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.Key)
		b.WriteString(": ")
		b.WriteString(e.Value)
	}
	return b.String()
}

// Header map serialization, as every SDK and proxy-wasm-cpp-host use it
// (little-endian):
//
//	u32 count
//	count x (u32 key_len, u32 value_len)
//	count x (key bytes, 0x00, value bytes, 0x00)
//
// For {":path": "/a", "x": "yz"} that is 2, (5,2), (1,2), ":path\0/a\0x\0yz\0":
// 4 + 16 + 17 = 37 bytes. An empty map is 4 zero bytes (SDKs also send 0
// bytes or a single 0x00; both decode as empty).

// SerializedSize returns the size of h serialized.
func (h Headers) SerializedSize() int {
	n := 4
	for i := range h {
		n += 8 + len(h[i].Key) + len(h[i].Value) + 2
	}
	return n
}

// SerializeTo writes h into b, which must be SerializedSize() long.
func (h Headers) SerializeTo(b []byte) {
	binary.LittleEndian.PutUint32(b, uint32(len(h)))
	sizes := b[4:]
	data := b[4+8*len(h):]
	for i := range h {
		binary.LittleEndian.PutUint32(sizes[8*i:], uint32(len(h[i].Key)))
		binary.LittleEndian.PutUint32(sizes[8*i+4:], uint32(len(h[i].Value)))
		n := copy(data, h[i].Key)
		data[n] = 0
		data = data[n+1:]
		n = copy(data, h[i].Value)
		data[n] = 0
		data = data[n+1:]
	}
}

// Limits bounds what a plugin may hand the host.
type Limits struct {
	// MaxHeaderMapBytes caps a serialized header map (default 1 MiB).
	MaxHeaderMapBytes int
	// MaxHeaderMapPairs caps the entries of a header map (default 1024).
	MaxHeaderMapPairs int
	// MaxPropertyBytes caps what one context keeps of proxy_set_property
	// (names and values; default 1 MiB) and MaxProperties the names it
	// sets, and the properties a root context declares (declare_property;
	// default 1024). Envoy has no bound; a call over them answers
	// INTERNAL_FAILURE (declare_property: BAD_ARGUMENT, as its other
	// refusals) and changes nothing.
	MaxPropertyBytes, MaxProperties int
	// MaxSharedDataBytes caps the shared data of one vm_id (keys and
	// values; default 64 MiB). Envoy has no bound; a set over it answers
	// INTERNAL_FAILURE and changes nothing.
	MaxSharedDataBytes int
	// MaxGRPCStreams caps the gRPC streams open at once in one VM, over
	// all its root contexts (default 1024; Envoy has no bound): a
	// proxy_grpc_stream over it is INTERNAL_FAILURE. A stream the server
	// closed and the plugin did not counts until the plugin closes or
	// cancels it, or until the limit is reached: then such streams are
	// forgotten first (proxy_grpc_close of one answers NOT_FOUND after).
	MaxGRPCStreams int
}

// DefaultLimits are proxy-wasm-cpp-host's limits for header maps, and
// anywasm's own for what cpp-host leaves unbounded.
var DefaultLimits = Limits{MaxHeaderMapBytes: 1 << 20, MaxHeaderMapPairs: 1024,
	MaxPropertyBytes: 1 << 20, MaxProperties: 1024, MaxSharedDataBytes: 64 << 20, MaxGRPCStreams: 1024}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxHeaderMapBytes, DefaultLimits.MaxHeaderMapBytes)
	def(&l.MaxHeaderMapPairs, DefaultLimits.MaxHeaderMapPairs)
	def(&l.MaxPropertyBytes, DefaultLimits.MaxPropertyBytes)
	def(&l.MaxProperties, DefaultLimits.MaxProperties)
	def(&l.MaxSharedDataBytes, DefaultLimits.MaxSharedDataBytes)
	def(&l.MaxGRPCStreams, DefaultLimits.MaxGRPCStreams)
	return l
}

var errSerialization = errors.New("malformed header map")

// ErrHeaderLimit is wrapped by the errors of header maps over Limits: a map
// DecodeHeaders refuses, and the cause of a stream failure when a plugin's
// change to a header map was refused.
var ErrHeaderLimit = errors.New("abi: header map limit")

// DecodeHeaders parses a serialized header map, refusing maps over the
// limits and any inconsistency.
func DecodeHeaders(b []byte, l Limits) (Headers, error) {
	l = l.withDefaults()
	if len(b) > l.MaxHeaderMapBytes {
		return nil, fmt.Errorf("%w: a map of %d bytes exceeds %d", ErrHeaderLimit, len(b), l.MaxHeaderMapBytes)
	}
	if len(b) == 0 || (len(b) == 1 && b[0] == 0) {
		return nil, nil
	}
	if len(b) < 4 {
		return nil, errSerialization
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n) > uint64(l.MaxHeaderMapPairs) {
		return nil, fmt.Errorf("%w: a map of %d pairs exceeds %d", ErrHeaderLimit, n, l.MaxHeaderMapPairs)
	}
	if uint64(len(b)) < 4+8*uint64(n) {
		return nil, errSerialization
	}
	sizes := b[4 : 4+8*n]
	data := b[4+8*n:]
	h := make(Headers, 0, n)
	for i := uint32(0); i < n; i++ {
		kl := uint64(binary.LittleEndian.Uint32(sizes[8*i:]))
		vl := uint64(binary.LittleEndian.Uint32(sizes[8*i+4:]))
		if uint64(len(data)) < kl+1+vl+1 || data[kl] != 0 || data[kl+1+vl] != 0 {
			return nil, errSerialization
		}
		h = append(h, Header{Key: string(data[:kl]), Value: string(data[kl+1 : kl+1+vl])})
		data = data[kl+1+vl+1:]
	}
	return h, nil
}
