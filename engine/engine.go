// Package engine is anywasm's runtime-neutral WebAssembly VM interface:
// compile a module, define host modules as data, instantiate, call exports
// through a caller-owned stack, read and write guest memory, enforce limits.
//
// Backends live in subpackages and register themselves by name when
// imported: engine/wazero (pure Go), engine/wasmtime and engine/wasmer (cgo).
// The two cgo backends must never be linked into one binary (both define the
// standard wasm_* C symbols); engine/all picks the right set.
//
//	rt, err := engine.Open("wazero", engine.NewConfig())
//	mod, err := rt.Compile(ctx, wasm)
//	imports, err := rt.NewImports(engine.HostModule{Name: "env", Functions: fns})
//	inst, err := rt.Instantiate(ctx, mod, imports)
//	add, err := inst.Function("add")
//	stack := []uint64{1, 2}
//	err = add.Call(ctx, stack) // stack[0] holds the result
//
// Backends, and the handles (Instance, Function, Memory), are implemented
// only in this module: the driver API is internal (engine/internal/backend
// states the policy and why; RATIONALE.md "Backends are sealed").
// An Instance and what it returns are not safe for concurrent use: give each
// goroutine its own instance. Runtime, Module and Imports are safe for
// concurrent use.
package engine

import (
	"context"

	"github.com/anywasm/anywasm/engine/internal/seal"
)

// Instance is an instantiated module. It is also the Caller that host
// functions receive, so they can reach the guest's memory and exports
// (calling back into the guest from a host function is allowed).
//
// After a call traps, every further call fails with ErrFailed; memory stays
// readable. Close releases the instance; it is idempotent and safe on a
// cancelled context.
type Instance interface {
	seal.Sealed
	// Function returns the exported function name. Its parameter and result
	// types must be numeric. Look functions up once and keep them.
	Function(name string) (Function, error)
	// Memory returns the memory exported as "memory", or nil if none.
	Memory() Memory
	// ExportedMemory returns the memory exported under name, or nil.
	ExportedMemory(name string) Memory
	// Failed reports whether a call of this instance trapped.
	Failed() bool
	Close(ctx context.Context) error
	// As sets target to the backend's native object if target is a pointer
	// to a type the backend documents, and reports whether it did.
	As(target any) bool
}

// Caller is the instance that called a host function.
type Caller = Instance

// Function is an exported function of an instance.
type Function interface {
	seal.Sealed
	// Name returns the export name.
	Name() string
	// Type returns the signature.
	Type() FuncType
	// Call calls the function. The parameters are read from stack[0:len(params)]
	// and the results written to stack[0:len(results)]; len(stack) must be at
	// least Type().StackSize(). Call allocates nothing on success on a
	// runtime with CapAllocFreeCalls (every one but wazero's interpreter). It
	// returns a *Trap if the guest trapped, ErrFailed if an earlier call of
	// the instance trapped, ErrClosed after Close, and ctx.Err() if ctx is
	// done before the call starts.
	Call(ctx context.Context, stack []uint64) error
}

// Memory is a guest's linear memory. Every accessor is bounds-checked and
// reports failure with ok = false; none panics.
//
// Slices returned by Read are views of guest memory, not copies: they see
// later writes by the guest and go stale (and must not be used) after the
// memory grows, which a guest may do in any call. Copy what you keep.
type Memory interface {
	seal.Sealed
	// Size returns the size in bytes.
	Size() uint64
	// Pages returns the size in 64 KiB pages.
	Pages() uint32
	// Grow grows the memory by delta pages and returns the previous size in
	// pages; ok is false if the memory's maximum or the configured limit
	// would be exceeded.
	Grow(delta uint32) (previous uint32, ok bool)
	// Read returns a view of length bytes at offset.
	Read(offset, length uint32) ([]byte, bool)
	// Write copies b to offset.
	Write(offset uint32, b []byte) bool
	ReadUint8(offset uint32) (byte, bool)
	WriteUint8(offset uint32, v byte) bool
	ReadUint32Le(offset uint32) (uint32, bool)
	WriteUint32Le(offset, v uint32) bool
	ReadUint64Le(offset uint32) (uint64, bool)
	WriteUint64Le(offset uint32, v uint64) bool
}
