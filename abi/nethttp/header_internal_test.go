package nethttp

import (
	"net/http"
	"slices"
	"testing"

	"github.com/anywasm/anywasm/abi"
)

// TestToHeaderSharedValues checks that the values toHeader puts in one
// allocation behave as http.Header.Add's: a repeated key keeps both
// values, and adding to one key later never changes another's.
func TestToHeaderSharedValues(t *testing.T) {
	h := abi.Headers{{Key: ":status", Value: "404"}, {Key: "x-a", Value: "1"}, {Key: "content-type", Value: "text/plain"},
		{Key: "x-a", Value: "3"}, {Key: "x-b", Value: "2"}, {Key: "Mixed-CASE", Value: "m"}}
	out := http.Header{}
	if status := toHeader(out, h, 200); status != 404 {
		t.Errorf("status %d, want 404", status)
	}
	want := http.Header{}
	for _, kv := range h[1:] {
		want.Add(kv.Key, kv.Value)
	}
	out.Add("X-B", "added")
	out.Add("Content-Type", "added")
	want.Add("X-B", "added")
	want.Add("Content-Type", "added")
	for k, vs := range want {
		if !slices.Equal(out[k], vs) {
			t.Errorf("%s: %q, want %q", k, out[k], vs)
		}
	}
	if len(out) != len(want) {
		t.Errorf("keys %v, want %v", out, want)
	}
	if canonical("x-request-id") != "X-Request-Id" || canonical("x-anywasm-seen") != "X-Anywasm-Seen" || canonical("bad key") != "bad key" {
		t.Errorf("canonical: %q %q %q", canonical("x-request-id"), canonical("x-anywasm-seen"), canonical("bad key"))
	}
	if itoaStatus(200) != "200" || itoaStatus(599) != "599" || itoaStatus(999) != "999" || itoaStatus(42) != "42" {
		t.Error("itoaStatus")
	}
}
