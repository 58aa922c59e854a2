//go:build cgo && !anywasm_wasmer

package all

import _ "github.com/anywasm/anywasm/engine/wasmtime"
