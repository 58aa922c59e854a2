//go:build cgo

package wasmtime

/*
#include "shim.h"
*/
import "C"

import (
	"crypto/sha256"
	goruntime "runtime"
	"unsafe"

	"github.com/anywasm/anywasm/engine/internal/filecache"
)

// The compilation cache (Config.WithCompilationCache).
//
// A cached file is Wasmtime's serialized module: native code that
// wasmtime_module_deserialize maps and runs without validating it. So the
// cache trusts only what it wrote itself (engine/internal/filecache):
//
//   - NewRuntime refuses, with engine.ErrCompilationCache, a directory not
//     owned by the effective uid or writable by group or others (after
//     following a symlink), or whose key file is malformed, not ours or not
//     private; it creates a missing directory with mode 0700 and the key
//     file (32 random bytes, mode 0600) on first use.
//   - A file is named and headed by a key, the SHA-256 of the module's
//     bytes, Wasmtime's version, GOOS/GOARCH and the engine settings that
//     change code generation (the tier, epoch interruption, fuel); it carries the
//     SHA-256 of its payload and an HMAC-SHA256, under the directory's key,
//     of its header (and so of the payload).
//   - A file that is not a regular file, is not owned by the effective uid,
//     is writable by group or others, or whose header, key, hash or HMAC
//     does not match is never deserialized: the module is compiled again
//     and the file rewritten. A file planted by another user, or copied from
//     another cache directory or machine, is such a file.
//   - Files are written atomically: a temporary file (mode 0600) in the
//     directory, then a rename. A write that fails after NewRuntime checked
//     the directory (a full disk) only costs a compilation next time.
//
// The directory is opened once, as an os.Root: every later access goes
// through that handle, so replacing a directory on the path afterwards
// redirects nothing. Anyone running as the same user can still write
// entries (they can read the key): the cache protects the process from
// other users, not from itself.

// cacheKey returns the key of wasm compiled with this runtime's settings.
func (r *runtime) cacheKey(wasm []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(filecache.Wasmtime.Magic))
	h.Write([]byte("wasmtime " + Version + " " + goruntime.GOOS + "/" + goruntime.GOARCH + " tier=" + r.tier))
	var flags [2]byte
	if r.interrupt {
		flags[0] = 1
	}
	if r.fuel > 0 {
		flags[1] = 1
	}
	h.Write(flags[:])
	h.Write(wasm)
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// cacheLoad returns the module cached under key, or nil.
func (r *runtime) cacheLoad(key [32]byte) *C.wasmtime_module_t {
	e, ok := r.cache.Load(filecache.Wasmtime, key)
	if !ok {
		return nil
	}
	var cm *C.wasmtime_module_t
	if err := C.wasmtime_module_deserialize(r.engine, (*C.uint8_t)(unsafe.Pointer(&e.Payload[0])), C.size_t(len(e.Payload)), &cm); err != nil {
		_ = errorText(err) // frees it; code of another engine configuration: recompile
		return nil
	}
	return cm
}

// cacheStore writes cm under key. Failures only cost a recompile later.
func (r *runtime) cacheStore(key [32]byte, cm *C.wasmtime_module_t) {
	var v C.wasm_byte_vec_t
	if err := C.wasmtime_module_serialize(cm, &v); err != nil {
		_ = errorText(err)
		return
	}
	defer C.wasm_byte_vec_delete(&v)
	if v.size == 0 {
		return
	}
	// Written straight from Wasmtime's buffer: Store keeps no reference.
	payload := unsafe.Slice((*byte)(unsafe.Pointer(v.data)), v.size)
	_ = r.cache.Store(filecache.Wasmtime, filecache.Entry{Key: key, Payload: payload})
}
