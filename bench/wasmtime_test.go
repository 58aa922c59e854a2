//go:build cgo && !anywasm_wasmer

package bench_test

import (
	"testing"

	"github.com/anywasm/anywasm/bench/internal/wasmtimeraw"
	_ "github.com/anywasm/anywasm/engine/wasmtime"
)

// Wasmtime's raw path: wasmtime_func_call_unchecked called from Go, and
// unchecked host functions whose C trampoline calls one exported Go function
// (bench/internal/wasmtimeraw).
func init() {
	raws["wasmtime"] = rawImpl{
		callEmpty: func(b *testing.B) {
			r := wasmtimeRaw(b)
			for b.Loop() {
				if !r.Empty() {
					b.Fatal("trap")
				}
			}
		},
		callAdd: func(b *testing.B) {
			r := wasmtimeRaw(b)
			for b.Loop() {
				if v, ok := r.Add(1, 2); !ok || v != 3 {
					b.Fatal("add")
				}
			}
		},
		hostNop: func(b *testing.B) {
			r := wasmtimeRaw(b)
			b.ReportAllocs()
			b.ResetTimer()
			if !r.LoopNop(uint32(b.N)) {
				b.Fatal("trap")
			}
		},
		hostAdd: func(b *testing.B) {
			r := wasmtimeRaw(b)
			b.ReportAllocs()
			b.ResetTimer()
			if _, ok := r.LoopAdd(uint32(b.N)); !ok {
				b.Fatal("trap")
			}
		},
	}
}

func wasmtimeRaw(b *testing.B) *wasmtimeraw.Instance {
	r, err := wasmtimeraw.New(callsWasm)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(r.Close)
	return r
}
