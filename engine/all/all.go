// Package all links every runtime a program may offer behind a -runtime
// flag. wasmtime and wasmer cannot share a binary (both define the standard
// wasm_* C symbols, and the wasmer path would silently run Wasmtime), so:
//
//   - default build: wazero + wasmtime (cgo) or wazero alone (CGO_ENABLED=0);
//   - -tags anywasm_wasmer: wazero + wasmer (cgo).
//
// Import it for its side effect: import _ "github.com/anywasm/anywasm/engine/all".
package all

import (
	_ "github.com/anywasm/anywasm/engine/wazero"
)
