//go:build cgo && anywasm_wasmer

package bench_test

import (
	"testing"

	"github.com/anywasm/anywasm/bench/internal/wasmerraw"
	_ "github.com/anywasm/anywasm/engine/wasmer"
)

// wasmer's raw path: Wasmer's C API called from Go through one small C
// function per operation (bench/internal/wasmerraw), and wasm_func_new
// callbacks that call an exported Go function.
func init() {
	raws["wasmer"] = rawImpl{
		callEmpty: func(b *testing.B) {
			wasmerRawSetup(b)
			for b.Loop() {
				wasmerraw.CallEmpty()
			}
		},
		callAdd: func(b *testing.B) {
			wasmerRawSetup(b)
			for b.Loop() {
				if wasmerraw.CallAdd(1, 2) != 3 {
					b.Fatal("add")
				}
			}
		},
		hostNop: func(b *testing.B) {
			wasmerRawSetup(b)
			b.ReportAllocs()
			b.ResetTimer()
			wasmerraw.LoopNop(int32(b.N))
		},
		hostAdd: func(b *testing.B) {
			wasmerRawSetup(b)
			b.ReportAllocs()
			b.ResetTimer()
			wasmerraw.LoopAdd(int32(b.N))
		},
	}
}

var wasmerRawReady bool

func wasmerRawSetup(b *testing.B) {
	if wasmerRawReady {
		return
	}
	if err := wasmerraw.Setup(callsWasm); err != nil {
		b.Fatal(err)
	}
	wasmerRawReady = true
}
