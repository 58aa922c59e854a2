//go:build cgo

package wasmtime

/*
#include "shim.h"
*/
import "C"

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	goruntime "runtime"
	"unsafe"
)

// The compilation cache (Config.WithCompilationCache).
//
// A cached file is Wasmtime's serialized module: native code that
// wasmtime_module_deserialize maps and runs without validating it. Only files
// this cache wrote are loaded: a file is named and headed by a key, the
// SHA-256 of the module's bytes, Wasmtime's version, GOOS/GOARCH and the
// engine settings that change code generation (epoch interruption, fuel); it
// carries the SHA-256 of its payload, and a file that is not a regular file,
// is writable by group or others, or whose header, key or hash do not match
// is ignored and the module recompiled (and the file rewritten). The hash
// detects corruption, not an attacker: anyone who can write to the cache
// directory can make this process run native code of their choice, so the
// directory must be private to the user (it is created with mode 0700).
// Files are written atomically: a temporary file in the directory, then a
// rename.

const cacheMagic = "anywasm-wasmtime-cache-1\n"

// cacheKey returns the key of wasm compiled with this runtime's settings.
func (r *runtime) cacheKey(wasm []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(cacheMagic))
	h.Write([]byte("wasmtime " + Version + " " + goruntime.GOOS + "/" + goruntime.GOARCH))
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

func (r *runtime) cachePath(key [32]byte) string {
	return filepath.Join(r.cacheDir, hex.EncodeToString(key[:])+".cwasm")
}

// cacheLoad returns the module cached under key, or nil.
func (r *runtime) cacheLoad(key [32]byte) *C.wasmtime_module_t {
	path := r.cachePath(key)
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o022 != 0 {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	payload, ok := cacheParse(b, key)
	if !ok || len(payload) == 0 {
		return nil
	}
	var cm *C.wasmtime_module_t
	if err := C.wasmtime_module_deserialize(r.engine, (*C.uint8_t)(unsafe.Pointer(&payload[0])), C.size_t(len(payload)), &cm); err != nil {
		_ = errorText(err) // frees it; a stale or foreign file: recompile
		return nil
	}
	return cm
}

// cacheParse checks a cache file's header and returns its payload.
func cacheParse(b []byte, key [32]byte) ([]byte, bool) {
	n := len(cacheMagic)
	if len(b) < n+64 || string(b[:n]) != cacheMagic || !bytes.Equal(b[n:n+32], key[:]) {
		return nil, false
	}
	payload := b[n+64:]
	sum := sha256.Sum256(payload)
	if !bytes.Equal(b[n+32:n+64], sum[:]) {
		return nil, false
	}
	return payload, true
}

// cacheFile returns the contents of the file for key: the magic, the key,
// the payload's SHA-256 and the payload.
func cacheFile(key [32]byte, payload []byte) []byte {
	sum := sha256.Sum256(payload)
	b := make([]byte, 0, len(cacheMagic)+64+len(payload))
	b = append(b, cacheMagic...)
	b = append(b, key[:]...)
	b = append(b, sum[:]...)
	return append(b, payload...)
}

// cacheStore writes cm under key. Failures only cost a recompile later.
func (r *runtime) cacheStore(key [32]byte, cm *C.wasmtime_module_t) {
	var v C.wasm_byte_vec_t
	if err := C.wasmtime_module_serialize(cm, &v); err != nil {
		_ = errorText(err)
		return
	}
	payload := C.GoBytes(unsafe.Pointer(v.data), C.int(v.size))
	C.wasm_byte_vec_delete(&v)
	if err := os.MkdirAll(r.cacheDir, 0o700); err != nil {
		return
	}
	f, err := os.CreateTemp(r.cacheDir, ".tmp-*.cwasm") // mode 0600
	if err != nil {
		return
	}
	_, werr := f.Write(cacheFile(key, payload))
	cerr := f.Close()
	if werr != nil || cerr != nil || os.Rename(f.Name(), r.cachePath(key)) != nil {
		_ = os.Remove(f.Name())
	}
}
