package bench_test

import (
	"testing"

	"github.com/anywasm/anywasm/bench/internal/floor"
)

// BenchmarkFloor is the least a call costs on this machine: a Go function
// call, and a cgo call to an empty C function (what every call into a cgo
// runtime pays at least once).
func BenchmarkFloor(b *testing.B) {
	b.Run("call=go", func(b *testing.B) {
		for b.Loop() {
			floor.GoCall()
		}
	})
	if floor.HaveCgo {
		b.Run("call=cgo", func(b *testing.B) {
			for b.Loop() {
				floor.CgoCall()
			}
		})
	}
}
