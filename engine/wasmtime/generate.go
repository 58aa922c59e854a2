//go:build cgo

package wasmtime

// capi.h holds the declarations of Wasmtime's C API that shim.c and
// bench/internal/wasmtimeraw use, generated from the headers the
// wasmtime-go module ships (capi.names lists what to take).
//go:generate go run ../internal/cdecl -module github.com/bytecodealliance/wasmtime-go/v44 -include build/include -header wasmtime.h -names capi.names -o capi.h
