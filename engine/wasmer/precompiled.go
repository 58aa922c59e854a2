//go:build cgo

package wasmer

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	goruntime "runtime"
	"unsafe"

	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/engine/internal/backend"
	"github.com/anywasm/anywasm/engine/internal/cshape"
)

// Precompiled code (backend.Precompiler): Wasmer's serialized modules
// (wasm_module_serialize), in a custom section named in the style of
// proxy-wasm-cpp-host's runtimes (Envoy has no Wasmer runtime, so no name
// of its own): "precompiled_wasmer_v" + the library's wasmer_version() +
// "_" + platform, e.g. "precompiled_wasmer_v2.0.0_linux_x86_64".
//
// Wasmer 2.0 refuses bytes that do not start with its artifact header, but
// trusts everything after the header: a truncated or altered artifact of
// the right version may crash the process, as any precompiled code may do
// whatever native code does. Deserialized modules are interned for the
// life of the process by the SHA-256 of their bytes, as compiled ones are
// (see "Engines and compiled code"). A Runtime with fuel never uses
// precompiled code: Wasmer cannot tell whether an artifact was compiled
// with its metering, and code without it would neither count nor stop.

var _ backend.Precompiler = (*wasmerRuntime)(nil)

// PrecompiledSectionName is "precompiled_wasmer_v<version>_<platform>" on
// the default tier, Cranelift, and names the tier after the runtime on
// another ("precompiled_wasmer_singlepass_v2.0.0_linux_x86_64"). Wasmer's
// artifacts do not say which compiler made them, and Wasmer loads one
// compiler's artifact in an engine of another: the section's name is all
// that keeps the tiers' code apart.
func (r *wasmerRuntime) PrecompiledSectionName() string {
	p := engine.PrecompiledPlatform(goruntime.GOOS, goruntime.GOARCH)
	if p == "" {
		return ""
	}
	rt := "wasmer"
	if r.eng.tier != TierCranelift {
		rt += "_" + r.eng.tier
	}
	return "precompiled_" + rt + "_v" + version() + "_" + p
}

// Serialize returns wasm_module_serialize of m.
func (r *wasmerRuntime) Serialize(_ context.Context, dm backend.Module) ([]byte, error) {
	m, ok := dm.(*module)
	if !ok {
		return nil, errors.New("wasmer: serialize: not a wasmer module")
	}
	var out C.wasm_byte_vec_t
	C.aw_serialize(m.cm.m, &out)
	if out.data == nil || out.size == 0 {
		return nil, errors.New("wasmer: serialize failed")
	}
	defer C.wasm_byte_vec_delete(&out)
	return C.GoBytes(unsafe.Pointer(out.data), C.int(out.size)), nil
}

// Deserialize loads a serialized module with wasm_module_deserialize and
// checks that its imports and exports are info's.
func (r *wasmerRuntime) Deserialize(_ context.Context, pre []byte, info *engine.ModuleInfo) (backend.Module, error) {
	if r.fuel != 0 {
		return nil, errors.New("wasmer: precompiled code is not used with fuel (Wasmer cannot tell whether it was compiled with its metering)")
	}
	if len(pre) == 0 {
		return nil, errors.New("wasmer: empty precompiled code")
	}
	h := sha256.New()
	h.Write([]byte("anywasm wasmer precompiled\x00"))
	h.Write(pre)
	var key [32]byte
	h.Sum(key[:0])
	e := r.eng
	cm, _, err := e.intern(key, func() (*cmodule, error) {
		var cerr *C.char
		m := C.aw_deserialize(e.store, (*C.char)(unsafe.Pointer(&pre[0])), C.size_t(len(pre)), &cerr)
		goruntime.KeepAlive(pre)
		if m == nil {
			return nil, fmt.Errorf("wasmer: deserialize: %s", takeCString(cerr))
		}
		stats.deserialized.Add(1)
		// The code's memory.grow is not known: always ask Wasmer.
		return &cmodule{key: key, m: m, store: e.store, mayGrow: true}, nil
	})
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(shape(cm.m), cshape.Of(info)) {
		return nil, errors.New("wasmer: the precompiled module's imports or exports differ from its bytecode's")
	}
	return &module{cm: cm, info: info}, nil
}

// shape returns aw_module_shape of m.
func shape(m *C.wasm_module_t) []byte {
	buf := make([]byte, 4096)
	for {
		n := int(C.aw_module_shape(m, (*C.uint8_t)(unsafe.Pointer(&buf[0])), C.size_t(len(buf))))
		if n <= len(buf) {
			return buf[:n]
		}
		buf = make([]byte, n)
	}
}
