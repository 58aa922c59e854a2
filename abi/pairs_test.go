package abi

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestAppendHeaderPairs: the in-place serialization of a header map is
// headerPairs' (Envoy's HeadersWrapper: a name once, values joined by ",")
// for maps with repeated names, empty values and more entries than the
// in-place bound, appended after what the buffer held.
func TestAppendHeaderPairs(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 70 {
		h := make(Headers, n)
		for i := range h {
			h[i] = Header{Key: fmt.Sprintf("k%d", r.IntN(max(n/2, 1))), Value: fmt.Sprintf("%x", r.Uint32()>>(r.IntN(33)))}
			if r.IntN(5) == 0 {
				h[i].Value = ""
			}
		}
		want := headerPairs(h)
		got := appendHeaderPairs([]byte("pre"), h)
		if !bytes.Equal(got[3:], want) || string(got[:3]) != "pre" {
			t.Fatalf("%d entries %v:\n got  %q\n want %q", n, h, got, want)
		}
	}
	if got := appendHeaderPairs(nil, Headers{{"a", "1"}, {"b", "2"}, {"a", "3"}}); !bytes.Equal(got,
		[]byte("\x02\x00\x00\x00\x01\x00\x00\x00\x03\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00a\x001,3\x00b\x002\x00")) {
		t.Errorf("a=1,3 b=2: %q", got)
	}
}
