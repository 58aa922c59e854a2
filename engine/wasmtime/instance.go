//go:build cgo

package wasmtime

/*
#include "shim.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
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

// slots maps the slot numbers the C side knows instances by to the Go
// instances, for host calls and epoch callbacks. Readers (callbacks) load
// the table without a lock; writers hold mu and publish a grown table with a
// copy. A slot is written only while no callback of its instance can run.
var slots struct {
	mu   sync.Mutex
	tab  atomic.Pointer[[]*instance]
	free []uint32
}

func slotAlloc(in *instance) uint32 {
	slots.mu.Lock()
	defer slots.mu.Unlock()
	var tab []*instance
	if p := slots.tab.Load(); p != nil {
		tab = *p
	}
	var s uint32
	if n := len(slots.free); n > 0 {
		s = slots.free[n-1]
		slots.free = slots.free[:n-1]
	} else {
		s = uint32(len(tab))
		if int(s) == cap(tab) {
			grown := make([]*instance, len(tab), max(64, 2*cap(tab)))
			copy(grown, tab)
			tab = grown
		}
		tab = tab[:s+1]
		slots.tab.Store(&tab)
	}
	tab[s] = in
	return s
}

func slotFree(s uint32) {
	slots.mu.Lock()
	defer slots.mu.Unlock()
	(*slots.tab.Load())[s] = nil
	slots.free = append(slots.free, s)
}

func slotGet(s uint32) *instance { return (*slots.tab.Load())[s] }

// instance is an engine.Instance: one store and one instance in it.
type instance struct {
	seal.Marker
	rt  *runtime
	mod *module
	c   *C.aw_inst  // nil once freed
	cp  C.uintptr_t // c, for aw_call
	buf [][2]uint64
	// plain: calls need no fuel and no epoch deadline (the runtime has
	// neither), so they skip enter and leave.
	plain bool

	slot  uint32
	hosts []hostFn // per import

	// State of the calls in progress (an instance is used by one goroutine
	// at a time; nested calls come from host functions on that goroutine).
	ctx     context.Context // the ctx of the innermost call
	depth   int             // guest calls in progress if !plain, instantiation included
	hdepth  int             // host calls in progress
	armed   bool            // a call in progress armed the epoch deadline
	pending *engine.Trap    // why the innermost call is ending, set by Go callbacks
	// pendingHost is 1 + the import index of the host function that set
	// pending, 0 if none did. An import index is a function index: all
	// imports are functions.
	pendingHost uint32

	failed bool
	closed bool
	// closeMu orders Close against Runtime.Close from another goroutine
	// (calls must not be in flight then; closing is what may race).
	closeMu sync.Mutex

	funcs []*function // by index in mod.fexps, made by the first Function
	mems  []*memory

	// ballast weighs, on the Go heap, as much as the exported memories
	// (engine.Config.WithGCBallast); weighs says it is on.
	ballast ballast.Ballast
	weighs  bool
}

type hostFn struct {
	f *engine.HostFunction
	hostMeta
}

func (r *runtime) Instantiate(ctx context.Context, dm backend.Module, _ backend.Host, imports []*engine.HostFunction) (engine.Instance, error) {
	m := dm.(*module)
	cm, pre, err := m.acquire()
	if err != nil {
		return nil, err
	}
	defer m.release()
	if err := r.acquire(); err != nil {
		return nil, err
	}
	defer r.release()

	in := &instance{rt: r, mod: m, hosts: make([]hostFn, len(imports))}
	for i, f := range imports {
		if i >= m.ntypes || unsafe.Slice(m.types, m.ntypes)[i] == nil {
			return nil, fmt.Errorf("wasmtime: import %d (%s) cannot be bound", i, f.QualifiedName())
		}
		in.hosts[i] = hostFn{f: f, hostMeta: m.hosts[i]}
	}
	if err := r.takeSlot(); err != nil {
		return nil, err
	}
	in.slot = slotAlloc(in)
	in.c = C.aw_inst_new(r.engine, C.uint32_t(in.slot), C.size_t(m.bufLen), C.size_t(len(m.fexps)), C.size_t(len(m.mems)),
		C.int64_t(r.memLimit), C.bool(r.interrupt), C.uint64_t(r.fuel))
	if in.c == nil {
		slotFree(in.slot)
		r.giveSlot()
		return nil, errors.New("wasmtime: out of memory")
	}
	for i, name := range m.mems {
		if C.aw_set_mem_name(in.c, C.size_t(i), cstr(name), C.size_t(len(name))) == 0 {
			in.free()
			return nil, errors.New("wasmtime: out of memory")
		}
		in.mems = append(in.mems, &memory{in: in, name: name, idx: C.size_t(i), cm: &unsafe.Slice(in.c.mems, len(m.mems))[i]})
	}
	in.buf = unsafe.Slice((*[2]uint64)(unsafe.Pointer(in.c.buf)), int(in.c.buf_len))
	in.cp = C.uintptr_t(uintptr(unsafe.Pointer(in.c)))
	in.plain = r.fuel == 0 && !r.interrupt

	in.ctx = ctx
	flags, arm := in.enter(ctx)
	var rc C.int
	if pre != nil {
		stats.instantiatedPre.Add(1)
		rc = C.aw_instantiate_pre(in.c, pre, flags)
	} else {
		rc = C.aw_instantiate(in.c, cm, m.types, C.size_t(len(imports)), flags)
	}
	in.leave(arm)
	if rc != 0 {
		t := in.trap(ctx, rc)
		in.free()
		if rc == 2 && t.Code == engine.TrapUnknown {
			// Not a trap: Wasmtime refused the instance.
			return nil, r.instantiateError(t.Message)
		}
		return nil, t
	}
	in.ctx = nil
	if in.closed { // a host function of the start function closed it
		in.free()
		return nil, fmt.Errorf("wasmtime: instance %w during instantiation", engine.ErrClosed)
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		in.closed = true
		in.free()
		return nil, engine.ErrClosed
	}
	r.instances[in] = struct{}{}
	r.mu.Unlock()
	if r.ballast {
		// The ballast needs the memories' sizes: C keeps those of the
		// watched ones current.
		in.weighs = true
		for _, mem := range in.mems {
			mem.watch()
		}
		in.weigh()
	}
	return in, nil
}

// weigh makes the ballast as heavy as the exported memories are large. A
// memory only grows, so after the first calls of a guest this compares and
// returns.
func (in *instance) weigh() {
	if !in.weighs {
		return
	}
	var size uint64
	for _, m := range in.mems {
		size += uint64(m.cm.size)
	}
	in.ballast.Track(size)
}

// instantiateError is the error of an instantiation that failed without a
// trap, e.g. a memory above the limit.
func (r *runtime) instantiateError(msg string) error {
	if r.pool > 0 && strings.Contains(msg, "concurrent") {
		// Wasmtime's own pool ran out ("maximum concurrent ... limit"):
		// see setPool for how its slots can outnumber instances.
		return fmt.Errorf("wasmtime: %w: %s (the pool has %d instances)", engine.ErrPoolExhausted, oneLine(msg), r.pool)
	}
	if r.memLimit >= 0 && strings.Contains(msg, "memory") {
		return fmt.Errorf("wasmtime: %s (the memory limit is %d pages)", oneLine(msg), r.memLimit/engine.PageSize)
	}
	return fmt.Errorf("wasmtime: %s", oneLine(msg))
}

// cstr returns a C pointer to s's bytes, for a C function that copies them
// or reads them during the call (s holds no Go pointers).
func cstr(s string) *C.char { return (*C.char)(unsafe.Pointer(unsafe.StringData(s))) }

// enter makes ctx the instance's current context and returns the flags of
// the C call. Call leave(arm) after it.
func (in *instance) enter(ctx context.Context) (C.uint, bool) {
	var flags C.uint
	if in.depth == 0 && in.rt.fuel > 0 {
		flags |= C.AW_SET_FUEL
	}
	arm := false
	if in.rt.interrupt && !in.armed && ctx.Done() != nil {
		arm = true
		in.armed = true
		in.rt.arm()
		flags |= C.AW_ARM
	}
	in.depth++
	return flags, arm
}

func (in *instance) leave(arm bool) {
	in.depth--
	if arm {
		in.armed = false
		in.rt.disarm()
	}
}

// trap converts the outcome of a failed C call (rc 1: a trap, 2: an error)
// made with ctx into a *engine.Trap and marks the instance failed.
func (in *instance) trap(ctx context.Context, rc C.int) *engine.Trap {
	in.failed = true
	frames := in.frames()
	var v C.wasm_byte_vec_t
	code := C.aw_take_message(in.c, &v)
	msg := trapText(message(&v))
	if p := in.pending; p != nil {
		in.pending = nil
		host := in.pendingHost
		in.pendingHost = 0
		if p.Message == "" && p.Code == engine.TrapInterrupted {
			p.Message = msg
		}
		if p.Frames == nil { // else a nested call's trap, passed on by a host function
			if host > 0 {
				// Wasmtime's backtrace does not list host functions.
				frames = append([]engine.Frame{in.mod.info.Frame(host-1, 0)}, frames...)
				frames = frames[:min(len(frames), engine.MaxFrames)]
			}
			p.Frames = frames
		}
		return p
	}
	t := &engine.Trap{Code: engine.TrapUnknown, Runtime: Name, Message: msg, Frames: frames}
	switch code {
	case C.WASMTIME_TRAP_CODE_UNREACHABLE_CODE_REACHED:
		t.Code = engine.TrapUnreachable
	case C.WASMTIME_TRAP_CODE_MEMORY_OUT_OF_BOUNDS, C.WASMTIME_TRAP_CODE_HEAP_MISALIGNED:
		t.Code = engine.TrapMemoryOutOfBounds
	case C.WASMTIME_TRAP_CODE_TABLE_OUT_OF_BOUNDS, C.WASMTIME_TRAP_CODE_INDIRECT_CALL_TO_NULL:
		t.Code = engine.TrapTableOutOfBounds
	case C.WASMTIME_TRAP_CODE_BAD_SIGNATURE:
		t.Code = engine.TrapIndirectCallTypeMismatch
	case C.WASMTIME_TRAP_CODE_STACK_OVERFLOW:
		t.Code = engine.TrapStackOverflow
	case C.WASMTIME_TRAP_CODE_INTEGER_DIVISION_BY_ZERO:
		t.Code = engine.TrapIntegerDivideByZero
	case C.WASMTIME_TRAP_CODE_INTEGER_OVERFLOW:
		t.Code = engine.TrapIntegerOverflow
	case C.WASMTIME_TRAP_CODE_BAD_CONVERSION_TO_INTEGER:
		t.Code = engine.TrapInvalidConversion
	case C.WASMTIME_TRAP_CODE_INTERRUPT:
		t.Code = engine.TrapInterrupted
		t.Cause = ctx.Err()
	case C.WASMTIME_TRAP_CODE_OUT_OF_FUEL:
		t.Code = engine.TrapOutOfFuel
	}
	return t
}

// frames returns the backtrace of the failed C call; call it before
// aw_take_message. In a call that a host function of the instance made,
// Wasmtime's backtrace goes on through the enclosing calls in progress: they
// are cut off (see aw_own_frames), as the other runtimes do not list them
// (the enclosing call's trap will, if the host function fails with this
// one).
func (in *instance) frames() []engine.Frame {
	nested := in.hdepth > 0
	pending := in.pending // a nested cut calls the guest: it may reach an epoch deadline
	var buf [engine.MaxFrames]C.aw_frame
	n := int(C.aw_frames(in.c, in.rt.engine, &buf[0], C.size_t(len(buf)), C.bool(nested)))
	in.pending = pending
	if n == 0 {
		return nil
	}
	frames := make([]engine.Frame, n)
	for i, f := range buf[:n] {
		frames[i] = in.mod.info.Frame(uint32(f.func_index), uint64(f.module_offset))
	}
	return frames
}

// free releases the C side. The instance must not be running.
func (in *instance) free() {
	if in.c == nil {
		return
	}
	C.aw_inst_delete(in.c)
	in.rt.giveSlot()
	in.c = nil
	in.ballast.Drop()
	in.buf = nil
	slotFree(in.slot)
	in.hosts = nil
}

// Close frees the instance; called from one of its host functions, it frees
// it when the outermost call returns.
func (in *instance) Close(context.Context) error {
	in.closeMu.Lock()
	defer in.closeMu.Unlock()
	if in.closed {
		return nil
	}
	in.closed = true
	in.rt.forget(in)
	if in.depth == 0 && in.hdepth == 0 {
		in.free()
	}
	return nil
}

func (in *instance) Failed() bool { return in.failed }

func (in *instance) As(target any) bool {
	if in.c == nil {
		return false
	}
	switch p := target.(type) {
	case *StorePtr:
		*p = StorePtr(unsafe.Pointer(in.c.store))
	case *ContextPtr:
		*p = ContextPtr(unsafe.Pointer(in.c.ctx))
	case *InstancePtr:
		*p = InstancePtr(unsafe.Pointer(&in.c.instance))
	default:
		return false
	}
	return true
}

func (in *instance) Function(name string) (engine.Function, error) {
	k, ok := in.mod.funcs[name]
	if ok && in.funcs != nil && in.funcs[k] != nil {
		return in.funcs[k], nil
	}
	if in.c == nil {
		return nil, fmt.Errorf("wasmtime: function %q: instance %w", name, engine.ErrClosed)
	}
	if !ok {
		return nil, fmt.Errorf("wasmtime: no exported function %q", name)
	}
	fm := &in.mod.fexps[k]
	if !fm.numeric {
		return nil, fmt.Errorf("wasmtime: exported function %q %s: only i32, i64, f32 and f64 are supported", name, fm.typ)
	}
	if C.aw_lookup_func(in.c, C.size_t(k), cstr(name), C.size_t(len(name))) == 0 {
		return nil, fmt.Errorf("wasmtime: exported function %q is not available yet", name)
	}
	f := &function{in: in, meta: fm, idx: C.size_t(k), params: len(fm.typ.Params), size: fm.typ.StackSize(), rmask: fm.rmask}
	if in.funcs == nil {
		in.funcs = make([]*function, len(in.mod.fexps))
	}
	in.funcs[k] = f
	return f, nil
}

func (in *instance) Memory() engine.Memory { return in.ExportedMemory("memory") }

func (in *instance) ExportedMemory(name string) engine.Memory {
	for _, m := range in.mems {
		if m.name == name {
			m.watch()
			return m
		}
	}
	return nil
}

// watch makes C keep m's size current from now on.
func (m *memory) watch() {
	if !m.watched && m.in.c != nil {
		m.watched = true
		C.aw_watch(m.in.c, m.idx)
	}
}

// function is an engine.Function.
type function struct {
	seal.Marker
	in           *instance
	meta         *funcMeta
	idx          C.size_t
	params, size int
	rmask        []uint64 // per result: the bits of its value
}

func (f *function) Name() string          { return f.meta.name }
func (f *function) Type() engine.FuncType { return f.meta.typ }

func (f *function) Call(ctx context.Context, stack []uint64) error {
	in := f.in
	if in.closed || in.failed || len(stack) < f.size {
		return f.refuse()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	buf := in.buf
	for i, v := range stack[:f.params] {
		buf[i][0] = v
	}
	prev := in.ctx
	in.ctx = ctx
	var rc C.int
	if in.plain {
		// No depth: only fuel (not plain) and Close from a host function
		// (hdepth > 0 then) need it.
		rc = C.aw_call_plain(in.cp, f.idx, C.size_t(f.size))
	} else {
		flags, arm := in.enter(ctx)
		rc = C.aw_call(in.cp, f.idx, C.size_t(f.size), flags)
		in.leave(arm)
	}
	in.ctx = prev
	if rc != 0 {
		t := in.trap(ctx, rc)
		in.maybeFree()
		return t
	}
	in.weigh()
	for i, mask := range f.rmask {
		stack[i] = buf[i][0] & mask
	}
	if in.closed {
		in.maybeFree()
	}
	return nil
}

// refuse returns why a call cannot start.
func (f *function) refuse() error {
	switch {
	case f.in.closed:
		return engine.ErrClosed
	case f.in.failed:
		return engine.ErrFailed
	}
	return engine.ErrStackSize
}

// maybeFree frees an instance closed by one of its host functions once the
// outermost call returns.
func (in *instance) maybeFree() {
	if in.closed && in.depth == 0 && in.hdepth == 0 {
		in.free()
	}
}

// hostCall runs import index of the instance in slot; raw is Wasmtime's
// args_and_results buffer: as many 16-byte wasmtime_val_raw_t as the larger
// of the import's parameter and result counts, each holding an i32, i64,
// f32 or f64 in its first 8 bytes (the upper half of an i32 or f32 is not
// defined). It returns 1 when the call must trap (the trap is then in
// in.pending), else 0. It is the hot path of every guest -> host call: keep
// it lean.
//
// The host function's stack is Wasmtime's own buffer, compacted in place
// from 16-byte values to words (value i moves from word 2i to word i, in
// increasing i, so no value is overwritten before it is read) and expanded
// back afterwards in decreasing i. Nested calls get their own buffers from
// Wasmtime, so nothing needs saving.
func hostCall(slot, index uint32, raw unsafe.Pointer) int {
	in := (*slots.tab.Load())[slot]
	h := &in.hosts[index]
	w := unsafe.Slice((*uint64)(raw), 2*h.size)
	for i, mask := range h.mask {
		w[i] = w[2*i] & mask
	}
	stack := w[:h.size:h.size]
	for i := len(h.mask); i < len(stack); i++ {
		stack[i] = 0
	}
	in.hdepth++
	err := engine.CallHost(h.f, in.ctx, in, stack)
	in.hdepth--
	if err != nil {
		in.pending = engine.HostTrap(Name, err)
		in.pendingHost = index + 1
		return 1
	}
	for i := h.results - 1; i > 0; i-- {
		w[2*i] = w[i]
	}
	return 0
}

// epochDue is called when an armed store reaches its epoch deadline: it
// reports whether the call must stop because its context is done.
func epochDue(slot uint32) bool {
	in := slotGet(slot)
	if in.ctx == nil {
		return false
	}
	if err := in.ctx.Err(); err != nil {
		in.pending = &engine.Trap{Code: engine.TrapInterrupted, Runtime: Name, Cause: err}
		in.pendingHost = 0
		return true
	}
	return false
}

// memory is an engine.Memory over an aw_mem, whose base and size the C side
// keeps current.
type memory struct {
	seal.Marker
	in      *instance
	name    string
	idx     C.size_t
	cm      *C.aw_mem
	watched bool // handed out: C keeps cm.size current
}

// view returns the memory as a slice. It is current until the guest runs
// again or the memory grows.
func (m *memory) view() memview.View {
	if m.in.c == nil {
		return memview.View{}
	}
	cm := m.cm
	if cm.base == nil {
		return memview.View{}
	}
	return memview.View{Buf: unsafe.Slice((*byte)(unsafe.Pointer(cm.base)), int(cm.size))}
}

func (m *memory) Size() uint64  { v := m.view(); return v.Size() }
func (m *memory) Pages() uint32 { return uint32(m.Size() / engine.PageSize) }

// Grow grows the memory by delta pages; it fails past the module's maximum
// or the runtime's memory limit.
func (m *memory) Grow(delta uint32) (uint32, bool) {
	if m.in.c == nil || !bool(m.cm.resolved) {
		return 0, false
	}
	prev := C.aw_mem_grow(m.in.c, m.idx, C.uint64_t(delta))
	if prev < 0 {
		return 0, false
	}
	m.in.weigh()
	return uint32(prev), true
}

// Read returns a view of guest memory: it goes stale when the guest runs
// again (the memory may grow and move) and must not be used after Close.
func (m *memory) Read(off, n uint32) ([]byte, bool) { v := m.view(); return v.Read(off, n) }
func (m *memory) Write(off uint32, b []byte) bool   { v := m.view(); return v.Write(off, b) }
func (m *memory) ReadUint8(off uint32) (byte, bool) { v := m.view(); return v.ReadUint8(off) }
func (m *memory) WriteUint8(off uint32, b byte) bool {
	v := m.view()
	return v.WriteUint8(off, b)
}
func (m *memory) ReadUint32Le(off uint32) (uint32, bool) { v := m.view(); return v.ReadUint32Le(off) }
func (m *memory) WriteUint32Le(off, x uint32) bool {
	v := m.view()
	return v.WriteUint32Le(off, x)
}
func (m *memory) ReadUint64Le(off uint32) (uint64, bool) { v := m.view(); return v.ReadUint64Le(off) }
func (m *memory) WriteUint64Le(off uint32, x uint64) bool {
	v := m.view()
	return v.WriteUint64Le(off, x)
}
