//go:build cgo

// Package wasmtimeraw is the baseline of the Wasmtime transition benchmarks:
// the same calls as engine/wasmtime makes, straight through Wasmtime's C API
// from Go, with nothing else. Host->guest is one cgo call of a C function
// that calls wasmtime_func_call_unchecked on a C buffer the Go side fills and
// reads; guest->host is a C trampoline calling one exported Go function that
// reads its arguments from Wasmtime's buffer and writes its result there.
package wasmtimeraw

/*
#cgo CFLAGS: -I${SRCDIR}/../../../engine/wasmtime
#include "raw.h"
*/
import "C"

import (
	"errors"
	"unsafe"

	_ "github.com/bytecodealliance/wasmtime-go/v44" // link flags
)

// Instance is the bench guest (bench/testdata/calls.wasm) instantiated with
// env.nop and env.add.
type Instance struct {
	r  *C.raw
	rp C.uintptr_t // r, for raw_call
}

// New compiles and instantiates the bench guest.
func New(wasm []byte) (*Instance, error) {
	r := C.raw_new((*C.uint8_t)(unsafe.Pointer(&wasm[0])), C.size_t(len(wasm)))
	if r == nil {
		return nil, errors.New("wasmtimeraw: setup failed")
	}
	return &Instance{r: r, rp: C.uintptr_t(uintptr(unsafe.Pointer(r)))}, nil
}

// Close frees the instance.
func (i *Instance) Close() { C.raw_delete(i.r) }

const (
	fnEmpty = iota
	fnAdd
	fnLoopNop
	fnLoopAdd
	fnLoopEmpty
)

// call calls export fn with n values in the buffer and reports success.
func (i *Instance) call(fn int, n C.size_t) bool { return C.raw_call(i.rp, C.int(fn), n) != 0 }

func (i *Instance) slot(k int) *uint64 { return (*uint64)(unsafe.Pointer(&i.r.buf[k])) }

// Empty calls empty().
func (i *Instance) Empty() bool { return i.call(fnEmpty, 0) }

// Add calls add(a, b) and returns its result.
func (i *Instance) Add(a uint32, b uint64) (uint64, bool) {
	*i.slot(0), *i.slot(1) = uint64(a), b
	ok := i.call(fnAdd, 2)
	return *i.slot(0), ok
}

// LoopNop calls loop_nop(n): n calls of env.nop.
func (i *Instance) LoopNop(n uint32) bool {
	*i.slot(0) = uint64(n)
	return i.call(fnLoopNop, 1)
}

// LoopAdd calls loop_add(n): n calls of env.add.
func (i *Instance) LoopAdd(n uint32) (uint64, bool) {
	*i.slot(0) = uint64(n)
	ok := i.call(fnLoopAdd, 1)
	return *i.slot(0), ok
}

// LoopEmpty calls loop_empty(n), the loop without calls.
func (i *Instance) LoopEmpty(n uint32) bool {
	*i.slot(0) = uint64(n)
	return i.call(fnLoopEmpty, 1)
}

//export rawNop
func rawNop() {}

//export rawAdd
func rawAdd(args unsafe.Pointer) {
	v := (*[2][2]uint64)(args)
	v[0][0] = uint64(uint32(v[0][0])) + v[1][0]
}
