//go:build cgo

// Package wasmerraw is the baseline of the wasmer benchmarks: the calls
// guest driven through Wasmer's C API straight from Go, with nothing of
// anywasm. Each call is one cgo call into a C function that calls
// wasm_func_call with arguments on the C stack; host functions are
// wasm_func_new callbacks that call one exported Go function each (and free
// the vectors Wasmer 2.0 leaks, as any long-running program must).
package wasmerraw

/*
#cgo CFLAGS: -I${SRCDIR}/../../../engine/wasmer
#include "raw.h"
*/
import "C"

import (
	"fmt"
	"unsafe"

	_ "github.com/wasmerio/wasmer-go/wasmer" // link flags for libwasmer
)

// Setup compiles and instantiates the calls guest (once per process).
func Setup(wasm []byte) error {
	if rc := C.raw_setup((*C.char)(unsafe.Pointer(&wasm[0])), C.size_t(len(wasm))); rc != 0 {
		return fmt.Errorf("wasmerraw: setup failed (%d)", rc)
	}
	return nil
}

// CallEmpty calls the export empty.
func CallEmpty() { C.raw_call_empty() }

// CallAdd calls the export add(a, b).
func CallAdd(a int32, b int64) int64 { return int64(C.raw_call_add(C.int32_t(a), C.int64_t(b))) }

// LoopNop calls loop_nop(n): n calls of env.nop.
func LoopNop(n int32) { C.raw_loop_nop(C.int32_t(n)) }

// LoopAdd calls loop_add(n): n calls of env.add.
func LoopAdd(n int32) int64 { return int64(C.raw_loop_add(C.int32_t(n))) }

//export rawHostNop
func rawHostNop() {}

//export rawHostAdd
func rawHostAdd(a C.int32_t, b C.int64_t) C.int64_t { return C.int64_t(uint32(a)) + b }
