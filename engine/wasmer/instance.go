//go:build cgo

package wasmer

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/engine/internal/backend"
	"github.com/anywasm/anywasm/engine/internal/ballast"
	"github.com/anywasm/anywasm/engine/internal/memview"
	"github.com/anywasm/anywasm/engine/internal/seal"
)

// cval mirrors wasm_val_t: a kind byte, then an 8-byte union at offset 8.
// i32 and f32 live in the union's low 4 bytes (little-endian targets only).
type cval struct {
	kind uint8
	_    [7]byte
	of   uint64
}

// Compile-time checks that cval has wasm_val_t's layout.
var (
	_ [unsafe.Sizeof(C.wasm_val_t{}) - unsafe.Sizeof(cval{})]struct{}
	_ [unsafe.Sizeof(cval{}) - unsafe.Sizeof(C.wasm_val_t{})]struct{}
	_ [unsafe.Offsetof(C.wasm_val_t{}.of) - unsafe.Offsetof(cval{}.of)]struct{}
	_ [unsafe.Offsetof(cval{}.of) - unsafe.Offsetof(C.wasm_val_t{}.of)]struct{}
)

func valKind(t engine.ValueType) uint8 {
	switch t {
	case engine.I32:
		return C.WASM_I32
	case engine.I64:
		return C.WASM_I64
	case engine.F32:
		return C.WASM_F32
	default:
		return C.WASM_F64
	}
}

// valMask keeps the bits of a value the union holds: 4 bytes for i32 and f32,
// whose upper bytes Wasmer leaves undefined.
func valMask(t engine.ValueType) uint64 {
	if t == engine.I32 || t == engine.F32 {
		return 0xffff_ffff
	}
	return ^uint64(0)
}

// The registry maps the small integer that a host function's C env carries
// to its instance, without a map or cgo.Handle on the call path: a slice
// published atomically, grown by copying, with reused free slots.
var registry struct {
	mu   sync.Mutex
	tab  atomic.Pointer[[]*instState]
	free []uint32
}

func register(st *instState) uint32 {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	tab := registry.tab.Load()
	if tab == nil {
		t := make([]*instState, 0, 64)
		tab = &t
	}
	var id uint32
	if n := len(registry.free); n > 0 {
		id = registry.free[n-1]
		registry.free = registry.free[:n-1]
		(*tab)[id] = st
	} else {
		id = uint32(len(*tab))
		if len(*tab) < cap(*tab) {
			t := append(*tab, st)
			tab = &t
		} else {
			t := make([]*instState, len(*tab)+1, 2*cap(*tab))
			copy(t, *tab)
			t[id] = st
			tab = &t
		}
	}
	registry.tab.Store(tab)
	return id
}

func unregister(id uint32) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	(*registry.tab.Load())[id] = nil
	registry.free = append(registry.free, id)
}

func lookup(id uint32) *instState {
	tab := *registry.tab.Load()
	if int(id) < len(tab) {
		return tab[id]
	}
	return nil
}

// functypes interns function types for the life of the process: Wasmer
// 2.0 leaks about 40 bytes per value type each time a wasm_functype_t is made
// and deleted, which per instance would add up.
var functypes struct {
	mu sync.Mutex
	m  map[string]*C.wasm_functype_t
}

func functype(t engine.FuncType) (*C.wasm_functype_t, error) {
	sig := make([]byte, 0, 2+len(t.Params)+len(t.Results))
	sig = append(sig, byte(len(t.Params)))
	for _, v := range t.Params {
		sig = append(sig, valKind(v))
	}
	sig = append(sig, byte(len(t.Results)))
	for _, v := range t.Results {
		sig = append(sig, valKind(v))
	}
	functypes.mu.Lock()
	defer functypes.mu.Unlock()
	if ft := functypes.m[string(sig)]; ft != nil {
		return ft, nil
	}
	ft := C.aw_functype_new((*C.uint8_t)(unsafe.Pointer(&sig[0])))
	if ft == nil {
		return nil, fmt.Errorf("wasmer: cannot make the function type %s", t)
	}
	if functypes.m == nil {
		functypes.m = map[string]*C.wasm_functype_t{}
	}
	functypes.m[string(sig)] = ft
	return ft, nil
}

// hostFn is an imported host function as one instance calls it.
type hostFn struct {
	fn        *engine.HostFunction
	np, nr    int
	stackSize int
	pmask     []uint64
	rkind     []uint8
}

// instance is the engine.Instance handle. Everything else is in instState,
// which the registry and the runtime reference: the handle is referenced by
// them only while one of its calls runs, so an instance dropped without
// Close is freed by a cleanup (a backstop: Close it).
type instance struct {
	seal.Marker
	st *instState
}

type instState struct {
	rt   *wasmerRuntime
	c    *C.aw_inst
	cp   C.uintptr_t // c as an integer, for calls (see shim.h)
	id   uint32
	info *engine.ModuleInfo
	fuel uint64
	// mayGrow: the code may grow the memory, so host functions must pick up
	// the size the trampoline refreshed (see cmodule.mayGrow).
	mayGrow bool
	hosts   []hostFn
	calls   []*C.aw_call // freed with the instance

	// Per-call state, saved and restored around nested calls.
	ctx    context.Context
	caller *instance
	depth  int

	hostErr   error    // what a host function failed with, for its call
	hostIdx   uint32   // its import index, which is its function index (all imports are functions)
	hostStack []uint64 // host function stacks, nested calls stacked
	sp        int

	view memview.View
	base unsafe.Pointer
	size uintptr

	// ballast weighs, on the Go heap, as much as the memory is large
	// (engine.Config.WithGCBallast); weighs says it is on.
	ballast ballast.Ballast
	weighs  bool

	failed bool
	mu     sync.Mutex // guards closed and freed against Runtime.Close and cleanups
	closed bool
	freed  bool
}

func (r *wasmerRuntime) Instantiate(ctx context.Context, dm backend.Module, _ backend.Host, imports []*engine.HostFunction) (engine.Instance, error) {
	m := dm.(*module)
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return nil, engine.ErrClosed
	}
	st := &instState{rt: r, info: m.info, fuel: r.fuel, mayGrow: m.cm.mayGrow, weighs: r.ballast, hosts: make([]hostFn, len(imports))}
	types := make([]C.uintptr_t, len(imports)+1) // never empty
	nresults := make([]C.uint8_t, len(imports)+1)
	for i, f := range imports {
		h := hostFn{fn: f, np: len(f.Type.Params), nr: len(f.Type.Results), stackSize: f.Type.StackSize()}
		if h.np > 255 || h.nr > 255 {
			return nil, fmt.Errorf("wasmer: host function %s has too many parameters or results", f.QualifiedName())
		}
		for _, t := range f.Type.Params {
			h.pmask = append(h.pmask, valMask(t))
		}
		for _, t := range f.Type.Results {
			h.rkind = append(h.rkind, valKind(t))
		}
		ft, err := functype(f.Type)
		if err != nil {
			return nil, err
		}
		types[i] = C.uintptr_t(uintptr(unsafe.Pointer(ft)))
		nresults[i] = C.uint8_t(h.nr)
		st.hosts[i] = h
	}
	st.id = register(st)
	st.c = C.aw_inst_new(m.cm.store, C.uint32_t(st.id), C.size_t(len(imports)), &types[0], &nresults[0])
	if st.c == nil {
		unregister(st.id)
		return nil, errors.New("wasmer: cannot create the host functions")
	}
	st.cp = C.uintptr_t(uintptr(unsafe.Pointer(st.c)))
	in := &instance{st: st}
	st.ctx, st.caller, st.depth = ctx, in, 1
	var trap *C.wasm_trap_t
	var cerr *C.char
	mayGrow := C.int(0)
	if m.cm.mayGrow {
		mayGrow = 1
	}
	rc := C.aw_inst_start(st.c, m.cm.m, mayGrow, &trap, &cerr)
	st.ctx, st.caller, st.depth = nil, nil, 0
	goruntime.KeepAlive(m)
	switch rc {
	case 0:
	case 1:
		err := st.trap(trap, false)
		st.free()
		return nil, err
	default:
		st.free()
		return nil, fmt.Errorf("wasmer: %s", takeCString(cerr))
	}
	st.sync()
	r.mu.Lock()
	if r.closed || st.closed { // the runtime, or a host function in the start function, closed it
		r.mu.Unlock()
		st.free()
		return nil, engine.ErrClosed
	}
	r.instances[st] = struct{}{}
	r.mu.Unlock()
	goruntime.AddCleanup(in, func(st *instState) { st.close() }, st)
	return in, nil
}

// sync points the memory view at the guest memory's current base and size,
// which C refreshed after the last call or at the start of this callback.
func (st *instState) sync() {
	base, size := unsafe.Pointer(st.c.mem_base), uintptr(st.c.mem_size)
	if base != st.base || size != st.size {
		st.base, st.size = base, size
		st.view.Buf = unsafe.Slice((*byte)(base), size)
		if st.weighs {
			st.ballast.Track(uint64(size))
		}
	}
}

// close closes the instance; inside one of its own calls (from a host
// function) the C objects are freed when the outermost call returns.
func (st *instState) close() {
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return
	}
	st.closed = true
	now := st.depth == 0
	st.mu.Unlock()
	if now {
		st.free()
	}
	st.rt.forget(st)
}

func (st *instState) free() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.freed {
		return
	}
	st.freed, st.closed = true, true
	for _, c := range st.calls {
		C.aw_call_delete(c)
	}
	st.calls = nil
	C.aw_inst_delete(st.c)
	st.c = nil
	st.view.Buf, st.base, st.size = nil, nil, 0
	st.ballast.Drop()
	unregister(st.id)
}

// trap converts a trap that ended a call and marks the instance failed.
func (st *instState) trap(t *C.wasm_trap_t, exhausted bool) error {
	frames := st.frames(t)
	var n C.size_t
	s := C.aw_trap_take(t, &n)
	msg := C.GoStringN(s, C.int(n))
	C.free(unsafe.Pointer(s))
	st.failed = true
	if err := st.hostErr; err != nil {
		st.hostErr = nil
		tr := engine.HostTrap(Name, err)
		if tr.Frames == nil { // else a nested call's trap, passed on by a host function
			// Wasmer lists neither the host function nor (in 2.0) its callers.
			tr.Frames = append([]engine.Frame{st.info.Frame(st.hostIdx, 0)}, frames...)
			tr.Frames = tr.Frames[:min(len(tr.Frames), engine.MaxFrames)]
		}
		return tr
	}
	code := trapCode(msg)
	if exhausted {
		code = engine.TrapOutOfFuel
	}
	return &engine.Trap{Code: code, Runtime: Name, Message: msg, Frames: frames}
}

// frames returns the backtrace of t: function indexes and module offsets.
// Wasmer's backtrace of a call made by a host function stops at that call.
func (st *instState) frames(t *C.wasm_trap_t) []engine.Frame {
	var buf [engine.MaxFrames]C.aw_frame
	n := int(C.aw_trap_frames(t, &buf[0], C.size_t(len(buf))))
	if n == 0 {
		return nil
	}
	frames := make([]engine.Frame, n)
	for i, f := range buf[:n] {
		off := uint64(f.module_offset)
		if !st.rt.offsets {
			off = 0 // Singlepass's are not those of the trapping instruction
		}
		frames[i] = st.info.Frame(uint32(f.func_index), off)
	}
	return frames
}

// trapCode classifies Wasmer 2.0's trap messages (found by provoking each).
func trapCode(msg string) engine.TrapCode {
	switch {
	case msg == "unreachable":
		return engine.TrapUnreachable
	case strings.Contains(msg, "out of bounds memory access"):
		return engine.TrapMemoryOutOfBounds
	case strings.Contains(msg, "call stack exhausted"):
		return engine.TrapStackOverflow
	case strings.Contains(msg, "integer divide by zero"):
		return engine.TrapIntegerDivideByZero
	case strings.Contains(msg, "integer overflow"):
		return engine.TrapIntegerOverflow
	case strings.Contains(msg, "invalid conversion to integer"):
		return engine.TrapInvalidConversion
	case strings.Contains(msg, "indirect call type mismatch"):
		return engine.TrapIndirectCallTypeMismatch
	case strings.Contains(msg, "uninitialized element"),
		strings.Contains(msg, "undefined element"),
		strings.Contains(msg, "out of bounds table access"):
		return engine.TrapTableOutOfBounds
	}
	return engine.TrapUnknown
}

func (in *instance) Failed() bool { return in.st.failed }

// As accepts *unsafe.Pointer and sets it to the wasm_instance_t* (owned by
// the instance: valid until Close).
func (in *instance) As(target any) bool {
	if p, ok := target.(*unsafe.Pointer); ok && !in.st.closed {
		*p = unsafe.Pointer(in.st.c.instance)
		return true
	}
	return false
}

// Close frees the instance. Idempotent; ctx is not used.
func (in *instance) Close(context.Context) error {
	in.st.close()
	return nil
}

func (in *instance) Function(name string) (engine.Function, error) {
	st := in.st
	if st.closed {
		return nil, engine.ErrClosed
	}
	idx := -1
	for i, e := range st.info.Exports {
		if e.Name == name && e.Kind == engine.ExternFunc {
			idx = i
			break
		}
	}
	if idx < 0 {
		return nil, fmt.Errorf("engine: instance has no exported function %q", name)
	}
	t := st.info.Exports[idx].Type
	f := &function{inst: in, st: st, name: name, typ: t, np: len(t.Params), nr: len(t.Results), stackSize: t.StackSize()}
	var kinds []byte
	for _, v := range t.Params {
		if !v.IsNumeric() {
			return nil, fmt.Errorf("engine: exported function %q %s: only i32, i64, f32 and f64 can be called", name, t)
		}
		kinds = append(kinds, valKind(v))
	}
	for _, v := range t.Results {
		if !v.IsNumeric() {
			return nil, fmt.Errorf("engine: exported function %q %s: only i32, i64, f32 and f64 can be called", name, t)
		}
		kinds = append(kinds, valKind(v))
		f.rmask = append(f.rmask, valMask(v))
	}
	kinds = append(kinds, 0) // never empty
	pk := (*C.uint8_t)(unsafe.Pointer(&kinds[0]))
	rk := (*C.uint8_t)(unsafe.Pointer(&kinds[f.np]))
	f.c = C.aw_call_new(st.c, C.size_t(idx), C.size_t(f.np), pk, C.size_t(f.nr), rk)
	if f.c == nil {
		return nil, fmt.Errorf("wasmer: export %q is not a function of this instance", name)
	}
	f.cp = C.uintptr_t(uintptr(unsafe.Pointer(f.c)))
	f.vals = unsafe.Slice((*cval)(unsafe.Pointer(f.c.vals)), f.np+f.nr)
	st.calls = append(st.calls, f.c)
	return f, nil
}

type function struct {
	seal.Marker
	inst      *instance
	st        *instState
	c         *C.aw_call
	cp        C.uintptr_t // c as an integer
	vals      []cval      // C memory: arguments, then results
	rmask     []uint64
	name      string
	typ       engine.FuncType
	np, nr    int
	stackSize int
}

func (f *function) Name() string          { return f.name }
func (f *function) Type() engine.FuncType { return f.typ }

// Call implements engine.Function: one cgo call, no allocation.
func (f *function) Call(ctx context.Context, stack []uint64) error {
	st := f.st
	switch {
	case len(stack) < f.stackSize:
		return engine.ErrStackSize
	case st.closed:
		return engine.ErrClosed
	case st.failed:
		return engine.ErrFailed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	vals := f.vals
	for i := 0; i < f.np; i++ {
		vals[i].of = stack[i]
	}
	prevCtx, prevCaller := st.ctx, st.caller
	st.ctx, st.caller = ctx, f.inst
	st.depth++
	var t *C.wasm_trap_t
	exhausted := false
	if st.fuel == 0 {
		t = C.aw_call_run(st.cp, f.cp)
	} else {
		nested := C.int(0)
		if st.depth > 1 {
			nested = 1
		}
		t = C.aw_call_fuel(st.cp, f.cp, C.uint64_t(st.fuel), nested)
		exhausted = t != nil && st.c.exhausted != 0
	}
	st.depth--
	st.ctx, st.caller = prevCtx, prevCaller
	st.sync()
	var err error
	if t != nil {
		err = st.trap(t, exhausted)
	} else {
		vals = vals[f.np:]
		for i := 0; i < f.nr; i++ {
			stack[i] = vals[i].of & f.rmask[i]
		}
	}
	if st.closed && st.depth == 0 {
		st.free()
	}
	goruntime.KeepAlive(f)
	return err
}

//export awHostCall
func awHostCall(id, index C.uint32_t, args, results *C.wasm_val_t) C.int {
	st := lookup(uint32(id))
	if st == nil || int(index) >= len(st.hosts) {
		return 1
	}
	if st.mayGrow {
		st.sync() // the trampoline refreshed the C side
	}
	h := &st.hosts[index]
	if h.stackSize == 0 {
		if err := engine.CallHost(h.fn, st.ctx, st.caller, nil); err != nil {
			st.hostErr, st.hostIdx = err, uint32(index)
			return 1
		}
		return 0
	}
	sp := st.sp
	top := sp + h.stackSize
	if top > len(st.hostStack) {
		// Frames below keep their own windows of the old array.
		st.hostStack = make([]uint64, max(2*len(st.hostStack), top, 16))
	}
	stack := st.hostStack[sp:top:top]
	st.sp = top
	if h.np > 0 {
		in := unsafe.Slice((*cval)(unsafe.Pointer(args)), h.np)
		for i, m := range h.pmask {
			stack[i] = in[i].of & m
		}
	}
	err := engine.CallHost(h.fn, st.ctx, st.caller, stack)
	st.sp = sp
	if err != nil {
		st.hostErr, st.hostIdx = err, uint32(index)
		return 1
	}
	if h.nr > 0 {
		out := unsafe.Slice((*cval)(unsafe.Pointer(results)), h.nr)
		for i, k := range h.rkind {
			out[i].kind = k
			out[i].of = stack[i]
		}
	}
	return 0
}

func (in *instance) Memory() engine.Memory { return in.ExportedMemory("memory") }

// ExportedMemory returns the memory exported as name. Wasmer 2.0 runs
// without multi-memory, so every exported memory is the module's one memory.
func (in *instance) ExportedMemory(name string) engine.Memory {
	st := in.st
	if st.closed || st.c.memory == nil || !st.info.HasExport(name, engine.ExternMemory) {
		return nil
	}
	return &memory{inst: in, st: st}
}

// memory implements engine.Memory over the instance's view, which is
// refreshed after every call into the guest, at the start of every host
// function and after Grow: reads never cross cgo. A view returned by Read
// goes stale when the memory grows.
type memory struct {
	seal.Marker
	inst *instance // keeps the instance alive
	st   *instState
}

func (m *memory) Size() uint64  { return m.st.view.Size() }
func (m *memory) Pages() uint32 { return uint32(m.st.view.Size() / engine.PageSize) }

func (m *memory) Grow(delta uint32) (uint32, bool) {
	st := m.st
	if st.closed {
		return 0, false
	}
	var prev C.uint32_t
	ok := C.aw_memory_grow(st.c, C.uint32_t(delta), &prev) != 0
	st.sync()
	return uint32(prev), ok
}

func (m *memory) Read(off, n uint32) ([]byte, bool)       { return m.st.view.Read(off, n) }
func (m *memory) Write(off uint32, b []byte) bool         { return m.st.view.Write(off, b) }
func (m *memory) ReadUint8(off uint32) (byte, bool)       { return m.st.view.ReadUint8(off) }
func (m *memory) WriteUint8(off uint32, v byte) bool      { return m.st.view.WriteUint8(off, v) }
func (m *memory) ReadUint32Le(off uint32) (uint32, bool)  { return m.st.view.ReadUint32Le(off) }
func (m *memory) WriteUint32Le(off, v uint32) bool        { return m.st.view.WriteUint32Le(off, v) }
func (m *memory) ReadUint64Le(off uint32) (uint64, bool)  { return m.st.view.ReadUint64Le(off) }
func (m *memory) WriteUint64Le(off uint32, v uint64) bool { return m.st.view.WriteUint64Le(off, v) }
