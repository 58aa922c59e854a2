package engine

import (
	"fmt"
	"strings"
)

// Capabilities is a set of limits a backend can enforce and features it
// has.
type Capabilities uint32

// The capabilities.
const (
	// CapMemoryLimit: Config.WithMemoryLimitPages caps every memory.
	CapMemoryLimit Capabilities = 1 << iota
	// CapInterrupt: a call whose context is cancelled or times out while the
	// guest runs is stopped with TrapInterrupted.
	CapInterrupt
	// CapFuel: Config.WithFuel bounds the instructions of each call.
	CapFuel
	// CapCompilationCache: Config.WithCompilationCache keeps compiled code on
	// disk between processes.
	CapCompilationCache
	// CapFrameOffsets: the frames of a Trap carry code offsets
	// (Frame.Offset).
	CapFrameOffsets
	// CapHostTrapFrames: a trap raised by a host function lists, below the
	// host function's frame, the guest frames that called it.
	CapHostTrapFrames
	// CapAllocFreeCalls: Function.Call allocates nothing on the Go heap
	// when the call succeeds (wazero's interpreter allocates on every
	// call).
	CapAllocFreeCalls
	// CapMultiValue: functions and blocks may have several results (the
	// multi-value proposal). Without it Compile refuses a module that
	// uses it.
	CapMultiValue
	// CapCallerFrames: a trap's frames list the guest functions that
	// called the one that trapped; without it, Frames holds that one only.
	CapCallerFrames
	// CapInstancePool: Config.WithInstancePool makes instances in slots
	// the runtime reserves once (wasmtime's pooling allocator).
	CapInstancePool
)

var capNames = []struct {
	c    Capabilities
	name string
}{
	{CapMemoryLimit, "memory-limit"},
	{CapInterrupt, "interrupt"},
	{CapFuel, "fuel"},
	{CapCompilationCache, "compilation-cache"},
	{CapFrameOffsets, "frame-offsets"},
	{CapHostTrapFrames, "host-trap-frames"},
	{CapAllocFreeCalls, "alloc-free-calls"},
	{CapMultiValue, "multi-value"},
	{CapCallerFrames, "caller-frames"},
	{CapInstancePool, "instance-pool"},
}

// Has reports whether every capability in x is in c.
func (c Capabilities) Has(x Capabilities) bool { return c&x == x }

// String lists the capabilities, e.g. "memory-limit,interrupt".
func (c Capabilities) String() string {
	var names []string
	for _, n := range capNames {
		if c&n.c != 0 {
			names = append(names, n.name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

// Config configures a Runtime. It is immutable: each WithX method returns a
// modified copy and never fails; Open validates the whole configuration once
// and refuses, with ErrNotSupported, any limit the runtime cannot enforce.
//
// The zero Config is the default configuration (NewConfig returns it).
type Config struct {
	memoryLimitPages uint32
	interrupt        bool
	fuel             uint64
	cacheDir         string
	tier             string
	instancePool     int
	poolResident     uint64
	noBallast        bool
}

// NewConfig returns the default configuration: no memory limit beyond the
// module's own maximum, calls not interruptible, no fuel, no disk cache.
func NewConfig() Config { return Config{} }

// WithMemoryLimitPages caps every memory of every instance at pages 64 KiB
// pages; memory.grow beyond it fails (returns -1) and instantiation of a
// module whose minimum exceeds it fails. 0 means no limit (65536 pages).
// Needs CapMemoryLimit.
func (c Config) WithMemoryLimitPages(pages uint32) Config { c.memoryLimitPages = pages; return c }

// WithInterruptOnContextDone makes a running guest stop with TrapInterrupted
// when the context given to Function.Call is cancelled or its deadline
// passes. Without it the context is only checked by host functions. Needs
// CapInterrupt. It costs a little on every call made with a context that can
// be cancelled, and nothing on calls with context.Background().
func (c Config) WithInterruptOnContextDone(on bool) Config { c.interrupt = on; return c }

// WithFuel gives every call of an exported function this many units of fuel
// (roughly, WebAssembly instructions); the call traps with TrapOutOfFuel when
// they run out. 0 disables fuel. Needs CapFuel.
func (c Config) WithFuel(perCall uint64) Config { c.fuel = perCall; return c }

// WithCompilationCache keeps compiled code in dir, so that a later process
// compiling the same bytes with the same runtime version loads it instead.
// "" disables the disk cache. Needs CapCompilationCache.
//
// The cached code is native code, so the directory must be private: Open
// creates it (mode 0700) if it does not exist, and refuses, with an error
// wrapping ErrCompilationCache, a directory that is not owned by the
// process's effective user or that group or others may write. Every entry
// is authenticated with an HMAC-SHA256 key kept in the directory (created
// with mode 0600 on first use); an entry that does not verify, is not a
// regular file, is not owned by the user or may be written by others is
// never loaded: the module is compiled again and the entry rewritten.
func (c Config) WithCompilationCache(dir string) Config { c.cacheDir = dir; return c }

// WithTier selects the runtime's compiler tier by name: wazero "compiler"
// (its default where wazero can compile for the platform) or
// "interpreter"; wasmtime "cranelift" (default) or "pulley" (Wasmtime's
// portable interpreter); wasmer "cranelift" (default) or "singlepass".
// "" is the runtime's default tier. A tier the runtime lacks in this
// binary, or a limit the tier cannot enforce, is refused by Open with
// ErrNotSupported, naming the tiers it has. The name given to Open may
// carry the tier instead ("wasmtime:pulley"); the two must then agree.
func (c Config) WithTier(name string) Config { c.tier = name; return c }

// WithInstancePool makes the runtime reserve, when it opens, the address
// space and metadata of n instances, and make every instance in one of these
// slots instead of mapping its memory and tables anew: instantiation is
// cheaper, and at most n instances (open, not yet closed) exist at once.
// Instantiate beyond that fails with an error wrapping ErrPoolExhausted;
// closing an instance frees its slot. 0, the default, disables the pool.
// Needs CapInstancePool (wasmtime only: its pooling allocator; see the
// engine/wasmtime package comment for the limits a slot puts on a module).
// Open refuses a negative n.
func (c Config) WithInstancePool(n int) Config { c.instancePool = n; return c }

// WithInstancePoolKeepResident makes a slot of the instance pool keep up to
// bytes of its memory resident when its instance is closed, reset in place
// (the pages the instance wrote are copied back from the module's image or
// zeroed) instead of handed back to the kernel, so that the next instance
// in that slot does not fault those pages in again. It trades resident
// memory (up to bytes per slot that was ever used, held while the runtime
// is open) for faster new instances: a new VM of the Go-SDK headers plugin
// from its snapshot takes about a third of the time (README, "Instance
// pool"). 0, the default, gives every page back. Needs WithInstancePool:
// Open refuses it without a pool.
func (c Config) WithInstancePoolKeepResident(bytes uint64) Config { c.poolResident = bytes; return c }

// InstancePoolKeepResident returns the bytes of memory a freed pool slot
// keeps resident (WithInstancePoolKeepResident).
func (c Config) InstancePoolKeepResident() uint64 { return c.poolResident }

// WithGCBallast, on by default, gives every instance of a runtime whose guest
// memory is not on the Go heap (wasmtime, wasmer) a pointer-free Go
// allocation as large as that memory, so that the Go garbage collector
// paces itself as it does with wazero, whose guest memory is a Go []byte.
// Without it a process running a plugin of 17 MiB of linear memory on
// wasmtime collects its heap several times as often per unit of work as the
// same process on wazero. The ballast is never written, so it costs little
// resident memory of its own; the garbage its larger heap goal allows does
// (as on wazero). Turn it off where GOMEMLIMIT is set for the Go heap alone:
// the ballast counts toward it. wazero ignores the setting.
func (c Config) WithGCBallast(on bool) Config { c.noBallast = !on; return c }

// GCBallast reports whether instances carry a GC ballast (WithGCBallast).
func (c Config) GCBallast() bool { return !c.noBallast }

// InstancePool returns the number of instance slots, 0 for no pool.
func (c Config) InstancePool() int { return c.instancePool }

// Tier returns the tier asked for: "" before Open (the runtime's default);
// Runtime.Config().Tier() is the tier the runtime runs.
func (c Config) Tier() string { return c.tier }

// MemoryLimitPages returns the memory cap in pages, 0 for none.
func (c Config) MemoryLimitPages() uint32 { return c.memoryLimitPages }

// InterruptOnContextDone reports whether calls are interruptible.
func (c Config) InterruptOnContextDone() bool { return c.interrupt }

// Fuel returns the per-call fuel, 0 for none.
func (c Config) Fuel() uint64 { return c.fuel }

// CompilationCacheDir returns the disk cache directory, "" for none.
func (c Config) CompilationCacheDir() string { return c.cacheDir }

// Required returns the capabilities this configuration needs.
func (c Config) Required() Capabilities {
	var r Capabilities
	if c.memoryLimitPages != 0 {
		r |= CapMemoryLimit
	}
	if c.interrupt {
		r |= CapInterrupt
	}
	if c.fuel != 0 {
		r |= CapFuel
	}
	if c.cacheDir != "" {
		r |= CapCompilationCache
	}
	if c.instancePool != 0 {
		r |= CapInstancePool
	}
	return r
}

// validate checks the configuration against a backend's capabilities (of
// its tier).
func (c Config) validate(name string, has Capabilities) error {
	if c.memoryLimitPages > MaxPages {
		return fmt.Errorf("engine: memory limit of %d pages exceeds the 32-bit maximum of %d pages", c.memoryLimitPages, MaxPages)
	}
	if c.instancePool < 0 {
		return fmt.Errorf("engine: WithInstancePool(%d): want 0 (no pool) or more instances", c.instancePool)
	}
	if c.poolResident != 0 && c.instancePool == 0 {
		return fmt.Errorf("engine: WithInstancePoolKeepResident(%d) needs an instance pool (WithInstancePool)", c.poolResident)
	}
	if missing := c.Required() &^ has; missing != 0 {
		return fmt.Errorf("engine: runtime %q cannot enforce %s (it offers: %s): %w", name, missing, has, ErrNotSupported)
	}
	return nil
}
