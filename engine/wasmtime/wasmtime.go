//go:build cgo

// Package wasmtime is anywasm's Wasmtime backend. Importing it registers the
// runtime "wasmtime" with package engine. It needs cgo and links Wasmtime's
// static C library through github.com/bytecodealliance/wasmtime-go/v44, but
// calls Wasmtime's C API directly from its own C code: wasmtime-go's Go API
// boxes every value and allocates on every call, which this package does not.
//
// A binary must not link this package and engine/wasmer together: both
// libraries define the standard wasm_* C symbols (use engine/all).
//
// Capabilities: memory limit (a store limiter), interrupt (epoch
// interruption: while a call with a cancellable context runs, a goroutine
// advances the engine's epoch every millisecond and the store checks the
// call's context), fuel, and a compilation cache on disk that loads only
// entries it wrote itself, authenticated (see cache.go). Precompiled code
// (Runtime.Precompile, CompilePrecompiled) is Wasmtime's serialized module
// in proxy-wasm-cpp-host's section "precompiled_wasmtime_v<Version>_<platform>"
// (see precompiled.go).
//
// Instance pool (engine.Config.WithInstancePool(n), engine.CapInstancePool):
// Wasmtime's pooling allocator (wasmtime_pooling_allocation_config_new,
// wasmtime_pooling_allocation_strategy_set) with n slots, each of one memory
// (max_memories_per_module 1; max_memory_size is the memory limit, 4 GiB
// without one) and up to 4 tables (Wasmtime's default 20000 elements each),
// and 2n core instances (see setPool). Compile refuses, with Wasmtime's
// message naming the limit, a module a slot cannot hold; Instantiate refuses
// the instance n+1 with engine.ErrPoolExhausted. Memories are initialized
// copy-on-write from an image of the module's data segments
// (wasmtime_config_memory_init_cow_set, on by default in Wasmtime 44), with
// or without the pool. engine.Config.WithInstancePoolKeepResident is the
// pool's linear_memory_keep_resident: a freed slot resets that much of its
// memory in place and keeps it resident for the next instance.
//
// Tiers (engine.Config.WithTier): "cranelift", the default, and "pulley",
// Wasmtime's portable interpreter (the pulley64 target): much slower calls,
// the same capabilities. "winch" is refused: Wasmtime 44's C API has no way
// to select it (see TierWinch).
//
// As accepts *EnginePtr (Runtime.As), *ModulePtr (Module.As), and *StorePtr,
// *ContextPtr or *InstancePtr (Instance.As): the C pointers of Wasmtime's C
// API. They stay owned by anywasm: do not free them, and do not use them
// after the owning object is closed.
//
// Implementation notes. Each instance has its own wasmtime_store_t. Calls use
// wasmtime_func_call_unchecked with a per-instance C buffer. Instances are
// made from an InstancePre that Compile builds once per module
// (wasmtime_linker_instantiate_pre over a linker that defines every import
// with wasmtime_linker_define_func_unchecked; then
// wasmtime_instance_pre_instantiate per instance): one C trampoline per
// import whose env is the import index, finding the instance through the
// store's data (wasmtime_context_get_data), so one InstancePre serves every
// set of host functions, and a store gets its host functions without making
// them or type-checking the imports again. A host call reaches the Go
// function through one exported Go function and a slice index: no maps, no
// cgo.Handle, no allocation. Memories never move (the engine sets
// memory_may_move to false; 32-bit memories fit Wasmtime's 4 GiB
// reservation), and the C side refreshes the size of the exported memories
// after every guest call and before every host callback, so Memory accessors
// read plain C fields and never cross cgo. Go panics in host functions are
// recovered by engine.CallHost before they reach Wasmtime's frames.
//
// Backtraces come from wasm_trap_trace or wasmtime_error_wasm_trace (for
// errors, such as a failing host function or an interrupt): function indexes
// and module offsets; names are resolved by engine.ModuleInfo, not by
// Wasmtime.
//
// Instances not closed are freed by Runtime.Close; this package sets no
// finalizers (the table the trampoline uses to find instances keeps them
// reachable, so a finalizer could never run).
package wasmtime

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
	"unsafe"

	// Link flags (libwasmtime.a) and headers' version; see shim.h.
	_ "github.com/bytecodealliance/wasmtime-go/v44"

	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/engine/internal/backend"
	"github.com/anywasm/anywasm/engine/internal/filecache"
)

// Name is the runtime name this package registers.
const Name = "wasmtime"

// Version is the version of Wasmtime this package runs: WASMTIME_VERSION of
// the C library linked through github.com/bytecodealliance/wasmtime-go/v44
// v44.0.0 (the library has no function that reports it; a test checks this
// constant against the header the library ships with).
const Version = "44.0.0"

// headerVersion is WASMTIME_VERSION as compiled into shim.c.
func headerVersion() string { return C.GoString(C.aw_version()) }

// Native C pointers, for As. They are owned by anywasm.
type (
	// EnginePtr is a *wasm_engine_t (Runtime.As).
	EnginePtr unsafe.Pointer
	// ModulePtr is a *wasmtime_module_t (Module.As).
	ModulePtr unsafe.Pointer
	// StorePtr is the instance's *wasmtime_store_t (Instance.As).
	StorePtr unsafe.Pointer
	// ContextPtr is the instance's *wasmtime_context_t (Instance.As).
	ContextPtr unsafe.Pointer
	// InstancePtr is a *wasmtime_instance_t, valid with the instance's
	// context (Instance.As).
	InstancePtr unsafe.Pointer
)

func init() { backend.Register(driver{}) }

type driver struct{}

func (driver) Name() string                      { return Name }
func (driver) Version() string                   { return Version }
func (driver) Capabilities() engine.Capabilities { return driver{}.TierCapabilities(TierCranelift) }

// The tiers: Cranelift, Wasmtime's optimizing compiler to native code, and
// Pulley, Wasmtime's portable interpreter (Cranelift compiles the module to
// Pulley bytecode, which Wasmtime interprets).
const (
	TierCranelift = "cranelift"
	TierPulley    = "pulley"
	// TierWinch, Wasmtime's baseline compiler, is in the library but
	// cannot be selected: Wasmtime 44's C API (wasmtime_config_strategy_set)
	// takes only WASMTIME_STRATEGY_AUTO and WASMTIME_STRATEGY_CRANELIFT,
	// and another value is undefined behaviour on its Rust side.
	TierWinch = "winch"
)

// Tiers are Cranelift (the default) and Pulley, on a platform whose
// pointers are 64 bits (the pulley64 target; Go's ports of Wasmtime's
// library all are).
func (driver) Tiers() []string { return []string{TierCranelift, TierPulley} }

// TierCapabilities are the same on both tiers: the conformance suite runs
// every one on each.
func (driver) TierCapabilities(string) engine.Capabilities {
	return engine.CapMemoryLimit | engine.CapInterrupt | engine.CapFuel | engine.CapCompilationCache |
		engine.CapFrameOffsets | engine.CapHostTrapFrames | engine.CapAllocFreeCalls |
		engine.CapMultiValue | engine.CapCallerFrames | engine.CapInstancePool
}

func (driver) TierUnavailable(t string) string {
	if t == TierWinch {
		return "Wasmtime " + Version + "'s C API cannot select Winch: wasmtime_config_strategy_set takes only AUTO and CRANELIFT"
	}
	return ""
}

// pulleyTarget is the target triple of Pulley on this platform: every
// platform the library is shipped for is 64-bit little-endian.
const pulleyTarget = "pulley64"

func (driver) NewRuntime(cfg engine.Config) (backend.Runtime, error) {
	if cfg.Tier() == "" { // not through engine.Open (tests)
		cfg = cfg.WithTier(TierCranelift)
	}
	var cache *filecache.Dir
	if dir := cfg.CompilationCacheDir(); dir != "" {
		d, err := filecache.Open(dir)
		if err != nil {
			return nil, err
		}
		cache = d
	}
	c := C.wasm_config_new()
	if c == nil {
		closeCache(cache)
		return nil, errors.New("wasmtime: wasm_config_new failed")
	}
	// These change the generated code: the cache key includes them.
	if cfg.Tier() == TierPulley {
		target := C.CString(pulleyTarget)
		werr := C.wasmtime_config_target_set(c, target)
		C.free(unsafe.Pointer(target))
		if werr != nil {
			C.wasm_config_delete(c)
			closeCache(cache)
			return nil, fmt.Errorf("wasmtime: target %s: %s", pulleyTarget, errorText(werr))
		}
	}
	if cfg.InterruptOnContextDone() {
		C.wasmtime_config_epoch_interruption_set(c, true)
	}
	if cfg.Fuel() > 0 {
		C.wasmtime_config_consume_fuel_set(c, true)
	}
	// Memories never move (32-bit memories fit Wasmtime's default 4 GiB
	// reservation): C refreshes only their size on transitions.
	C.wasmtime_config_memory_may_move_set(c, false)
	// Copy-on-write memory images: a module's data segments become an
	// image, built when the module is compiled or deserialized, that each
	// instance maps instead of copying (with the pool, a slot keeps the
	// image mapped for the next instance of the same module). It is
	// Wasmtime 44's default (config.h: "This option defaults to true");
	// set here so that it does not depend on that.
	C.wasmtime_config_memory_init_cow_set(c, true)
	pool := cfg.InstancePool()
	if pool > 0 {
		if pool > MaxInstancePool {
			C.wasm_config_delete(c)
			closeCache(cache)
			return nil, fmt.Errorf("wasmtime: an instance pool of %d instances: at most %d (each reserves %d GiB of address space): %w",
				pool, MaxInstancePool, (memoryReservation+memoryGuard)>>30, engine.ErrNotSupported)
		}
		maxMem := uint64(engine.MaxPages) * engine.PageSize
		if p := cfg.MemoryLimitPages(); p != 0 {
			maxMem = uint64(p) * engine.PageSize
		}
		setPool(c, pool, maxMem, cfg.InstancePoolKeepResident())
	}
	e := C.wasm_engine_new_with_config(c) // takes c
	if e == nil {
		closeCache(cache)
		return nil, errors.New("wasmtime: wasm_engine_new_with_config failed")
	}
	r := &runtime{
		engine:    e,
		tier:      cfg.Tier(),
		interrupt: cfg.InterruptOnContextDone(),
		fuel:      cfg.Fuel(),
		memLimit:  -1,
		pool:      pool,
		ballast:   cfg.GCBallast(),
		cache:     cache,
		instances: map[*instance]struct{}{},
	}
	if p := cfg.MemoryLimitPages(); p != 0 {
		r.memLimit = int64(p) * engine.PageSize
	}
	return r, nil
}

// MaxInstancePool is the largest instance pool (engine.Config.WithInstancePool)
// Open accepts: each slot reserves Wasmtime's 4 GiB memory reservation and
// its guard, and Wasmtime's C API cannot report that it failed to reserve
// them (wasm_engine_new_with_config has no error).
const MaxInstancePool = 10000

// Wasmtime 44's defaults for 64-bit hosts (Config::memory_reservation,
// Config::memory_guard_size), which the engine does not change.
const (
	memoryReservation = 4 << 30
	memoryGuard       = 32 << 20
)

// Limits of a pool slot, beyond its memory (see setPool).
const (
	poolTablesPerModule = 4
)

// setPool makes the engine use Wasmtime's pooling allocator
// (wasmtime_pooling_allocation_strategy_set) with n slots whose memory can
// grow to maxMem bytes (the memory limit, so that the store limiter, not
// the pool, refuses a larger memory, and with the same error). A slot holds
// one instance with one memory and up to poolTablesPerModule tables of
// Wasmtime's default 20000 elements; a module that needs more cannot be
// instantiated (the error is Wasmtime's, naming the limit). Core instances
// are 2n: a failing nested call instantiates a probe in its store (see
// aw_probe in shim.c), which holds a core instance, not a memory, until the
// store is deleted; the n slots themselves are counted by Instantiate.
// keep is linear_memory_keep_resident: the bytes of a freed slot's memory
// Wasmtime resets in place (restoring the image, zeroing the rest) instead
// of decommitting them with madvise.
func setPool(c *C.wasm_config_t, n int, maxMem, keep uint64) {
	p := C.wasmtime_pooling_allocation_config_new()
	C.wasmtime_pooling_allocation_config_total_core_instances_set(p, C.uint32_t(2*n))
	C.wasmtime_pooling_allocation_config_total_memories_set(p, C.uint32_t(n))
	C.wasmtime_pooling_allocation_config_max_memories_per_module_set(p, 1)
	C.wasmtime_pooling_allocation_config_total_tables_set(p, C.uint32_t(poolTablesPerModule*n))
	C.wasmtime_pooling_allocation_config_max_tables_per_module_set(p, poolTablesPerModule)
	C.wasmtime_pooling_allocation_config_max_memory_size_set(p, C.size_t(maxMem))
	if keep > 0 {
		C.wasmtime_pooling_allocation_config_linear_memory_keep_resident_set(p, C.size_t(min(keep, maxMem)))
	}
	C.wasmtime_pooling_allocation_strategy_set(c, p) // copies p
	C.wasmtime_pooling_allocation_config_delete(p)
}

// runtime is a backend.Runtime: one wasm_engine_t.
type runtime struct {
	engine    *C.wasm_engine_t
	tier      string
	interrupt bool
	fuel      uint64
	memLimit  int64          // bytes, -1 for none
	pool      int            // slots of the instance pool, 0 for none
	ballast   bool           // instances carry a GC ballast (engine.Config.WithGCBallast)
	cache     *filecache.Dir // nil without a compilation cache

	mu        sync.Mutex
	closed    bool
	users     int // Compile and Instantiate calls using engine
	instances map[*instance]struct{}
	pooled    int // stores holding a slot of the pool (instances not freed)

	// The epoch ticker runs while armed > 0.
	tmu     sync.Mutex
	armed   int
	ticking bool
	tdone   chan struct{} // closed when the running ticker exits
}

// acquire keeps the engine alive for a Compile or Instantiate.
func (r *runtime) acquire() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return engine.ErrClosed
	}
	r.users++
	return nil
}

func (r *runtime) release() {
	r.mu.Lock()
	r.users--
	free := r.closed && r.users == 0 && r.engine != nil
	e := r.engine
	if free {
		r.engine = nil
	}
	r.mu.Unlock()
	if free {
		r.free(e)
	}
}

// free deletes the engine and closes the cache directory, once nothing
// uses them.
func (r *runtime) free(e *C.wasm_engine_t) {
	C.wasm_engine_delete(e)
	closeCache(r.cache)
}

func closeCache(d *filecache.Dir) {
	if d != nil {
		_ = d.Close()
	}
}

func (r *runtime) As(target any) bool {
	if p, ok := target.(*EnginePtr); ok {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.engine == nil {
			return false
		}
		*p = EnginePtr(unsafe.Pointer(r.engine))
		return true
	}
	return false
}

// Close closes every instance of the runtime, stops the ticker and frees the
// engine (at once, or when the last Compile or Instantiate still running
// returns).
func (r *runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	insts := make([]*instance, 0, len(r.instances))
	for in := range r.instances {
		insts = append(insts, in)
	}
	r.mu.Unlock()
	for _, in := range insts {
		_ = in.Close(ctx)
	}
	r.tmu.Lock()
	done := r.tdone
	ticking := r.ticking
	r.tmu.Unlock()
	if ticking {
		<-done // the ticker sees closed within a tick
	}
	r.mu.Lock()
	free := r.users == 0 && r.engine != nil
	e := r.engine
	if free {
		r.engine = nil
	}
	r.mu.Unlock()
	if free {
		r.free(e)
	}
	return nil
}

// takeSlot reserves a slot of the instance pool for a new store, if the
// runtime has a pool.
func (r *runtime) takeSlot() error {
	if r.pool == 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pooled >= r.pool {
		return fmt.Errorf("wasmtime: %w: its %d instances (Config.WithInstancePool) are all in use; close one first",
			engine.ErrPoolExhausted, r.pool)
	}
	r.pooled++
	return nil
}

// giveSlot frees the slot of a deleted store.
func (r *runtime) giveSlot() {
	if r.pool == 0 {
		return
	}
	r.mu.Lock()
	r.pooled--
	r.mu.Unlock()
}

func (r *runtime) forget(in *instance) {
	r.mu.Lock()
	delete(r.instances, in)
	r.mu.Unlock()
}

// arm registers a running call with a cancellable context: the ticker runs
// while there is one. The ticker holds the engine like a Compile does.
func (r *runtime) arm() {
	r.tmu.Lock()
	r.armed++
	if !r.ticking && r.acquire() == nil {
		r.ticking = true
		r.tdone = make(chan struct{})
		go r.tick(r.engine, r.tdone)
	}
	r.tmu.Unlock()
}

func (r *runtime) disarm() {
	r.tmu.Lock()
	r.armed--
	r.tmu.Unlock()
}

// tick advances the engine's epoch every millisecond while calls are armed;
// each armed store's deadline callback then checks its call's context.
func (r *runtime) tick(e *C.wasm_engine_t, done chan struct{}) {
	defer close(done)
	defer r.release()
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for range t.C {
		r.mu.Lock()
		closed := r.closed
		r.mu.Unlock()
		r.tmu.Lock()
		if r.armed == 0 || closed {
			r.ticking = false
			r.tmu.Unlock()
			return
		}
		r.tmu.Unlock()
		C.wasmtime_engine_increment_epoch(e)
	}
}

// host is the backend.Host: host functions are bound per instance (see
// Instantiate), so there is nothing to prepare or free.
type host struct{}

func (host) Close(context.Context) error { return nil }

func (r *runtime) NewHost([]*engine.HostModule) (backend.Host, error) { return host{}, nil }

// message converts a wasm_byte_vec_t message to a string, without its
// trailing NUL, and deletes the vector.
func message(v *C.wasm_byte_vec_t) string {
	if v.data == nil {
		return ""
	}
	s := C.GoStringN(v.data, C.int(v.size))
	C.wasm_byte_vec_delete(v)
	for len(s) > 0 && s[len(s)-1] == 0 {
		s = s[:len(s)-1]
	}
	return s
}

// errorText returns err's message and deletes err.
func errorText(err *C.wasmtime_error_t) string {
	var v C.wasm_byte_vec_t
	C.aw_error_message(err, &v)
	return message(&v)
}
