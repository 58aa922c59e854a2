//go:build cgo && !anywasm_wasmer

package abitest

// engine/all should link wasmtime in this build but does not yet: link it
// here, so that the kit compares every runtime the build can have.
import _ "github.com/anywasm/anywasm/engine/wasmtime"
