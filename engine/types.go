package engine

//go:generate go run golang.org/x/tools/cmd/stringer@v0.52.0 -linecomment -type ValueType,ExternKind -output enums_string.go

import (
	"math"
	"strings"
)

// ValueType is a WebAssembly value type, encoded as in the binary format.
//
// Values travel between the host and the guest as uint64 words on a stack
// (see Function.Call and HostFunc): i64 and f64 use all 64 bits; i32 and f32
// use the low 32 bits, and the high 32 bits of an i32 or f32 a runtime hands
// back are undefined (wazero leaves old bits there, as its API documents):
// always convert with the Encode and Decode helpers, which mask.
type ValueType byte

// The value types. Only the numeric types may appear in the signature of a
// host function or of an exported function called through Function.Call;
// modules that use reference types internally (tables, ref.func, ...) are
// accepted.
const (
	I32       ValueType = 0x7f // i32
	I64       ValueType = 0x7e // i64
	F32       ValueType = 0x7d // f32
	F64       ValueType = 0x7c // f64
	V128      ValueType = 0x7b // v128
	FuncRef   ValueType = 0x70 // funcref
	ExternRef ValueType = 0x6f // externref
)

// IsNumeric reports whether v is i32, i64, f32 or f64.
func (v ValueType) IsNumeric() bool { return v == I32 || v == I64 || v == F32 || v == F64 }

// FuncType is a function signature.
type FuncType struct {
	Params  []ValueType
	Results []ValueType
}

// String formats the signature as "(i32, i64) -> (f32)".
func (t FuncType) String() string {
	var b strings.Builder
	writeTypes(&b, t.Params)
	b.WriteString(" -> ")
	writeTypes(&b, t.Results)
	return b.String()
}

func writeTypes(b *strings.Builder, ts []ValueType) {
	b.WriteByte('(')
	for i, v := range ts {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(v.String())
	}
	b.WriteByte(')')
}

// Equal reports whether t and o have the same parameters and results.
func (t FuncType) Equal(o FuncType) bool {
	return equalTypes(t.Params, o.Params) && equalTypes(t.Results, o.Results)
}

func equalTypes(a, b []ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// StackSize is the length a stack must have to call a function of this type:
// the larger of the parameter and result counts.
func (t FuncType) StackSize() int { return max(len(t.Params), len(t.Results)) }

// numeric reports whether every parameter and result is numeric.
func (t FuncType) numeric() bool {
	for _, v := range t.Params {
		if !v.IsNumeric() {
			return false
		}
	}
	for _, v := range t.Results {
		if !v.IsNumeric() {
			return false
		}
	}
	return true
}

// EncodeI32 encodes an i32 for the stack.
func EncodeI32(v int32) uint64 { return uint64(uint32(v)) }

// DecodeI32 decodes an i32 from the stack.
func DecodeI32(v uint64) int32 { return int32(uint32(v)) }

// EncodeU32 encodes an unsigned i32 for the stack.
func EncodeU32(v uint32) uint64 { return uint64(v) }

// DecodeU32 decodes an unsigned i32 from the stack.
func DecodeU32(v uint64) uint32 { return uint32(v) }

// EncodeI64 encodes an i64 for the stack.
func EncodeI64(v int64) uint64 { return uint64(v) }

// EncodeF32 encodes an f32 for the stack.
func EncodeF32(v float32) uint64 { return uint64(math.Float32bits(v)) }

// DecodeF32 decodes an f32 from the stack.
func DecodeF32(v uint64) float32 { return math.Float32frombits(uint32(v)) }

// EncodeF64 encodes an f64 for the stack.
func EncodeF64(v float64) uint64 { return math.Float64bits(v) }

// DecodeF64 decodes an f64 from the stack.
func DecodeF64(v uint64) float64 { return math.Float64frombits(v) }

// ExternKind is the kind of an import or export.
type ExternKind byte

// The extern kinds, encoded as in the binary format.
const (
	ExternFunc   ExternKind = 0 // func
	ExternTable  ExternKind = 1 // table
	ExternMemory ExternKind = 2 // memory
	ExternGlobal ExternKind = 3 // global
	ExternTag    ExternKind = 4 // tag
)

// Import describes one import of a module. Type is set for functions only.
type Import struct {
	Module string
	Name   string
	Kind   ExternKind
	Type   FuncType
}

// Export describes one export of a module. Type is set for functions only.
type Export struct {
	Name string
	Kind ExternKind
	Type FuncType
}

// PageSize is the size of a WebAssembly memory page: 64 KiB.
const PageSize = 65536

// MaxPages is the largest number of pages a 32-bit memory can have (4 GiB).
const MaxPages = 65536
