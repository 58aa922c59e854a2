//go:build cgo

package wasmtime

/*
#include "shim.h"
*/
import "C"

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"unsafe"

	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/engine/internal/backend"
	"github.com/anywasm/anywasm/engine/internal/cshape"
)

// Precompiled code (backend.Precompiler): Wasmtime's serialized
// modules (wasmtime_module_serialize), in the custom section
// proxy-wasm-cpp-host's Wasmtime runtime names
// (Wasmtime::getPrecompiledSectionName in src/wasmtime/wasmtime.cc):
// "precompiled_wasmtime_v" + Version + "_" + platform, e.g.
// "precompiled_wasmtime_v44.0.0_linux_x86_64". Wasmtime refuses, with an
// error, bytes that are not a serialized module and modules serialized by
// another Wasmtime version or an engine whose settings differ (fuel, epoch
// interruption, target CPU features); it does not check the code itself.
// Unlike cpp-host, the module's imports and exports must also be those of
// the bytecode (anywasm calls it through the signatures it parsed there).

var _ backend.Precompiler = (*runtime)(nil)

// PrecompiledSectionName is cpp-host's section name for this Wasmtime on
// its default tier, Cranelift (the only one cpp-host runs). Code of
// another tier is in a section of its own, named with the tier after the
// runtime ("precompiled_wasmtime_pulley_v44.0.0_linux_x86_64"), so that a
// module can carry both and neither tier is offered the other's code
// (Wasmtime refuses it anyway: the target differs).
func (r *runtime) PrecompiledSectionName() string {
	p := engine.PrecompiledPlatform(goruntime.GOOS, goruntime.GOARCH)
	if p == "" {
		return ""
	}
	rt := "wasmtime"
	if r.tier != TierCranelift {
		rt += "_" + r.tier
	}
	return "precompiled_" + rt + "_v" + Version + "_" + p
}

// Serialize returns wasmtime_module_serialize of m.
func (r *runtime) Serialize(_ context.Context, dm backend.Module) ([]byte, error) {
	m, ok := dm.(*module)
	if !ok {
		return nil, errors.New("wasmtime: serialize: not a wasmtime module")
	}
	cm, _, err := m.acquire()
	if err != nil {
		return nil, err
	}
	defer m.release()
	var v C.wasm_byte_vec_t
	if werr := C.wasmtime_module_serialize(cm, &v); werr != nil {
		return nil, fmt.Errorf("wasmtime: serialize: %s", oneLine(errorText(werr)))
	}
	defer C.wasm_byte_vec_delete(&v)
	return C.GoBytes(unsafe.Pointer(v.data), C.int(v.size)), nil
}

// Deserialize loads a serialized module with wasmtime_module_deserialize
// and checks that its imports and exports are info's.
func (r *runtime) Deserialize(_ context.Context, pre []byte, info *engine.ModuleInfo) (backend.Module, error) {
	if len(pre) == 0 {
		return nil, errors.New("wasmtime: empty precompiled code")
	}
	if err := r.acquire(); err != nil {
		return nil, err
	}
	defer r.release()
	var cm *C.wasmtime_module_t
	werr := C.wasmtime_module_deserialize(r.engine, (*C.uint8_t)(unsafe.Pointer(&pre[0])), C.size_t(len(pre)), &cm)
	goruntime.KeepAlive(pre)
	if werr != nil {
		return nil, fmt.Errorf("wasmtime: deserialize: %s", oneLine(errorText(werr)))
	}
	if got, want := shape(cm), cshape.Of(info); !bytes.Equal(got, want) {
		deleteModule(cm)
		return nil, errors.New("wasmtime: the precompiled module's imports or exports differ from its bytecode's")
	}
	m, err := r.newModule(cm, info)
	if err != nil {
		return nil, err
	}
	stats.deserialized.Add(1)
	return m, nil
}

// shape returns aw_module_shape of cm.
func shape(cm *C.wasmtime_module_t) []byte {
	buf := make([]byte, 4096)
	for {
		n := int(C.aw_module_shape(cm, (*C.uint8_t)(unsafe.Pointer(&buf[0])), C.size_t(len(buf))))
		if n <= len(buf) {
			return buf[:n]
		}
		buf = make([]byte, n)
	}
}
