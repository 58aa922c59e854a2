package abi_test

import (
	"encoding/binary"
	"errors"
	"slices"
	"testing"

	"github.com/anywasm/anywasm/abi"
)

// fuzzLimits are the limits FuzzHeaders decodes with: the defaults, and
// small ones the fuzzer reaches easily.
var fuzzLimits = []abi.Limits{abi.DefaultLimits, {MaxHeaderMapBytes: 96, MaxHeaderMapPairs: 3}}

// FuzzHeaders: DecodeHeaders never panics on arbitrary bytes and agrees with
// a reference decoder written from the format's definition (same maps
// accepted, same refusals, limits refused with ErrHeaderLimit); what it
// accepts serializes back and decodes to the same map; and a map built from
// the input serializes and decodes to itself, and is refused with
// ErrHeaderLimit by limits just below its size or pair count. Seeds:
// testdata/fuzz/FuzzHeaders.
func FuzzHeaders(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, l := range fuzzLimits {
			checkDecode(t, data, l)
		}
		h := headersFrom(data)
		b := serialize(h)
		got, err := abi.DecodeHeaders(b, abi.Limits{MaxHeaderMapBytes: len(b), MaxHeaderMapPairs: max(len(h), 1)})
		if err != nil || !sameMap(got, h) {
			t.Fatalf("DecodeHeaders(SerializeTo(%q)) = %q, %v", h, got, err)
		}
		if len(b) > 1 {
			if _, err := abi.DecodeHeaders(b, abi.Limits{MaxHeaderMapBytes: len(b) - 1}); !errors.Is(err, abi.ErrHeaderLimit) {
				t.Fatalf("a map of %d bytes with a limit of %d bytes: %v, want ErrHeaderLimit", len(b), len(b)-1, err)
			}
		}
		if len(h) > 1 { // a limit of 0 pairs means the default
			if _, err := abi.DecodeHeaders(b, abi.Limits{MaxHeaderMapPairs: len(h) - 1}); !errors.Is(err, abi.ErrHeaderLimit) {
				t.Fatalf("a map of %d pairs with a limit of %d pairs: %v, want ErrHeaderLimit", len(h), len(h)-1, err)
			}
		}
	})
}

// checkDecode decodes data with l and compares with the reference decoder.
func checkDecode(t *testing.T, data []byte, l abi.Limits) {
	t.Helper()
	got, err := abi.DecodeHeaders(data, l)
	want, limit, ok := refDecode(data, l)
	switch {
	case !ok && err == nil:
		t.Fatalf("limits %+v: DecodeHeaders(%q) accepted %q; the reference refuses it (limit: %v)", l, data, got, limit)
	case ok && err != nil:
		t.Fatalf("limits %+v: DecodeHeaders(%q): %v; the reference accepts %q", l, data, err, want)
	case !ok && errors.Is(err, abi.ErrHeaderLimit) != limit:
		t.Fatalf("limits %+v: DecodeHeaders(%q): %v; the reference says over a limit: %v", l, data, err, limit)
	case !ok:
		return
	case !sameMap(got, want):
		t.Fatalf("limits %+v: DecodeHeaders(%q) = %q, the reference %q", l, data, got, want)
	}
	// What was accepted serializes within the limits and decodes again to
	// the same map.
	b := serialize(got)
	if len(got) > 0 && len(b) > l.MaxHeaderMapBytes {
		t.Fatalf("accepted %q of %d serialized bytes over the limit %d", got, len(b), l.MaxHeaderMapBytes)
	}
	again, err := abi.DecodeHeaders(b, l)
	if err != nil || !sameMap(again, got) {
		t.Fatalf("round trip of %q through %q: %q, %v", got, b, again, err)
	}
}

// refDecode is the header map format decoded naively from its definition
// (PROXY-WASM-ABI.md, "Header map serialization"): ok false refuses,
// limit says whether for a limit.
func refDecode(b []byte, l abi.Limits) (h abi.Headers, limit, ok bool) {
	if len(b) > l.MaxHeaderMapBytes {
		return nil, true, false
	}
	if len(b) == 0 || (len(b) == 1 && b[0] == 0) {
		return nil, false, true
	}
	if len(b) < 4 {
		return nil, false, false
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n > l.MaxHeaderMapPairs {
		return nil, true, false
	}
	if len(b) < 4+8*n {
		return nil, false, false
	}
	pos := 4 + 8*n
	for i := range n {
		kl := int(binary.LittleEndian.Uint32(b[4+8*i:]))
		vl := int(binary.LittleEndian.Uint32(b[8+8*i:]))
		if kl < 0 || vl < 0 || pos+kl+1+vl+1 > len(b) {
			return nil, false, false
		}
		key := b[pos : pos+kl]
		pos += kl
		if b[pos] != 0 {
			return nil, false, false
		}
		pos++
		val := b[pos : pos+vl]
		pos += vl
		if b[pos] != 0 {
			return nil, false, false
		}
		pos++
		h = append(h, abi.Header{Key: string(key), Value: string(val)})
	}
	return h, false, true
}

func serialize(h abi.Headers) []byte {
	b := make([]byte, h.SerializedSize())
	h.SerializeTo(b)
	return b
}

// sameMap compares maps entry by entry (nil and empty are the same map).
func sameMap(a, b abi.Headers) bool { return slices.Equal(a, b) }

// headersFrom builds a header map from arbitrary bytes: each entry is a
// length byte, a key of that length mod 32, a length byte and a value of
// that length mod 64, as far as the bytes go; keys and values may hold any
// byte, NUL included.
func headersFrom(data []byte) abi.Headers {
	var h abi.Headers
	take := func(mod int) string {
		if len(data) == 0 {
			return ""
		}
		n := min(int(data[0])%mod, len(data)-1)
		s := string(data[1 : 1+n])
		data = data[1+n:]
		return s
	}
	for len(data) > 0 {
		k := take(32)
		h = append(h, abi.Header{Key: k, Value: take(64)})
	}
	return h
}
