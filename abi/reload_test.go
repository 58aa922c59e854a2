package abi_test

import (
	"testing"
	"time"

	"github.com/anywasm/anywasm/abi"
)

// TestJitteredLowerBound: FailReload's interval is in [base, 1.5 base), as
// Envoy's JitteredLowerBoundBackOffStrategy, and jittered: both halves of
// the range come up in 1000 draws.
func TestJitteredLowerBound(t *testing.T) {
	for _, base := range []time.Duration{time.Second, 3 * time.Millisecond, time.Nanosecond} {
		var low, high bool
		for range 1000 {
			d := abi.JitteredLowerBound(base)
			if d < base || (d >= base+base/2 && base > 1) {
				t.Fatalf("base %s: %s outside [base, 1.5 base)", base, d)
			}
			low = low || d < base+base/4
			high = high || d >= base+base/4
		}
		if base > time.Millisecond && !(low && high) {
			t.Errorf("base %s: not jittered (low %v, high %v)", base, low, high)
		}
	}
}
