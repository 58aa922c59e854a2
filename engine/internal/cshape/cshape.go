// Package cshape describes a module's imports and exports in the byte form
// the cgo backends' C function aw_module_shape writes from the standard
// wasm.h type API (wasm_module_imports, wasm_module_exports): a backend
// that loads precompiled code compares the two, so that code whose imports
// or exports differ from what the engine parsed from the bytecode is never
// called through the bytecode's signatures. The C side, shared by both
// backends, is cshape.h (aw_shape).
//
// The form: the import count (uint32 little-endian), then per import its
// module and name (each a uint32 length and the bytes) and its type; the
// export count, then per export its name and its type. A type is its
// wasm_externkind_t (func 0, global 1, table 2, memory 3, tag 4) and, for a
// function, its parameter count, parameter wasm_valkind_t bytes, result
// count and result bytes.
package cshape

import (
	"encoding/binary"

	"github.com/anywasm/anywasm/engine"
)

// Of returns the shape of info.
func Of(info *engine.ModuleInfo) []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, uint32(len(info.Imports)))
	for _, im := range info.Imports {
		b = name(b, im.Module)
		b = name(b, im.Name)
		b = extern(b, im.Kind, im.Type)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(info.Exports)))
	for _, ex := range info.Exports {
		b = name(b, ex.Name)
		b = extern(b, ex.Kind, ex.Type)
	}
	return b
}

func name(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func extern(b []byte, k engine.ExternKind, t engine.FuncType) []byte {
	switch k {
	case engine.ExternFunc:
		b = append(b, 0)
		for _, vs := range [][]engine.ValueType{t.Params, t.Results} {
			b = binary.LittleEndian.AppendUint32(b, uint32(len(vs)))
			for _, v := range vs {
				b = append(b, valkind(v))
			}
		}
		return b
	case engine.ExternGlobal:
		return append(b, 1)
	case engine.ExternTable:
		return append(b, 2)
	case engine.ExternMemory:
		return append(b, 3)
	case engine.ExternTag:
		return append(b, 4)
	}
	return append(b, 0xff)
}

// valkind is wasm.h's wasm_valkind_t of v (Wasmtime's WASMTIME_V128 for
// v128); 0xff, which matches nothing, for another type.
func valkind(v engine.ValueType) byte {
	switch v {
	case engine.I32:
		return 0
	case engine.I64:
		return 1
	case engine.F32:
		return 2
	case engine.F64:
		return 3
	case engine.V128:
		return 4
	case engine.ExternRef:
		return 128
	case engine.FuncRef:
		return 129
	}
	return 0xff
}
