//go:build cgo

package wasmtime

// This file holds the Go functions C calls. A file with //export may only
// declare C in its preamble, so the C that calls them is in shim.c.

/*
#include "shim.h"
*/
import "C"

import "unsafe"

// awHostCall is called by the trampoline of an imported function: slot
// identifies the instance, index the import, raw is Wasmtime's
// args_and_results buffer (16-byte values, as many as the larger of the
// import's parameter and result counts). It returns nonzero when the guest
// must trap.
//
//export awHostCall
func awHostCall(slot, index C.uint32_t, raw unsafe.Pointer) C.int {
	return C.int(hostCall(uint32(slot), uint32(index), raw))
}

// awEpoch is called when an armed store reaches its epoch deadline; nonzero
// stops the guest.
//
//export awEpoch
func awEpoch(slot C.uint32_t) C.int {
	if epochDue(uint32(slot)) {
		return 1
	}
	return 0
}
