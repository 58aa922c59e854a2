// Package wazero is anywasm's pure-Go backend, built on
// github.com/tetratelabs/wazero. Importing it registers the runtime
// "wazero" with package engine. It needs no cgo.
//
// Capabilities: memory limit, interrupt (wazero closes the instance when the
// call's context is done), compilation cache, and the guest frames below a
// failing host function in a trap's backtrace. wazero has no fuel, and its
// backtraces have no code offsets.
//
// Tiers (engine.Config.WithTier): "compiler", wazero's optimizing compiler,
// the default where wazero supports it (amd64 with SSE4.1, arm64; on other
// platforms it is not offered), and "interpreter", which compiles nothing
// to native code: it compiles faster and runs guests many times slower,
// allocates on every call, and refuses a compilation cache (it has no
// native code to keep).
//
// Backtraces: wazero appends a "wasm stack trace:" (at most 30 frames) to the
// errors of a call, naming each function by its name section entry. This
// package compiles modules without their name section, so that wazero names
// every guest function by its index ("$12"), which Trap.Frames resolves
// through engine.ModuleInfo; as a consequence a *wazero.CompiledModule from
// Module.As has no function names. An interrupted call has no backtrace.
//
// # Compilation cache
//
// wazero's compiler caches native code in files it reads back without
// authenticating them, and its cache cannot be given another store (the
// interface is internal to wazero). So wazero never reads the directory of
// Config.WithCompilationCache: the entries there are anywasm's (shared with
// the other backends, engine/internal/filecache), each holding one file of
// wazero's and the name wazero gave it, and are authenticated:
//
//   - Open refuses, with engine.ErrCompilationCache, a directory not owned
//     by the effective uid or writable by group or others (after following
//     a symlink), and a key file that is malformed, not ours or not private;
//     it creates a missing directory with mode 0700.
//   - An entry is used only if it is a regular file of ours that group and
//     others cannot write, and its cache key (SHA-256 of the module's bytes,
//     wazero's version, GOOS/GOARCH, the tier and the interrupt setting), payload
//     SHA-256 and HMAC-SHA256 under the directory's key verify. A planted
//     entry, or one copied from another cache directory or machine, is
//     compiled again and rewritten.
//   - Each Runtime gives wazero a private staging directory of its own
//     (.wazero-<random>, mode 0700, in the cache directory; Close removes
//     it). Just before a compilation the verified entry's file is written
//     there for wazero to load; a file wazero writes there after compiling
//     becomes a new entry; the staging directory is emptied after every
//     compilation. Compilations of one Runtime with a cache run one at a
//     time, so that a file wazero writes is known to be the module just
//     compiled.
//
// anywasm reads and writes entries through a handle on the directory it
// checked, so no directory renamed or replaced above it redirects them.
// wazero opens the staged file by a path: on Linux, /proc/self/fd/<n> of a
// handle on the staging directory opened through that same handle, which
// nothing renamed on the way redirects either. What is not protected:
// where there is no /proc/self/fd (not Linux), wazero gets the plain path,
// and someone who can rename a directory above the cache directory (those
// are not checked) could substitute the staging directory between the
// check and wazero's read; and anyone running as the same user can read the
// key and write entries. A process that dies leaves its
// staging directory behind (at most one file in it); it is never read
// again and can be removed. Files in the cache directory's "wazero"
// subdirectory (where wazero kept its files before entries were
// authenticated) are never read.
//
// As accepts *wazero.Runtime (Runtime.As), *wazero.CompiledModule
// (Module.As) and *api.Module (Instance.As).
package wazero

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/klauspost/cpuid/v2"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/engine/internal/backend"
	"github.com/anywasm/anywasm/engine/internal/seal"
	"github.com/anywasm/anywasm/engine/internal/wasmbin"
)

// Name is the runtime name this package registers.
const Name = "wazero"

// Version is the version of github.com/tetratelabs/wazero this backend is
// built with. A test binary cannot read module versions from its build
// information, so it is a constant; a test checks it against go.mod.
const Version = "v1.12.0"

func init() { backend.Register(driver{}) }

type driver struct{}

func (driver) Name() string    { return Name }
func (driver) Version() string { return Version }
func (driver) Capabilities() engine.Capabilities {
	return driver{}.TierCapabilities(driver{}.Tiers()[0])
}

// The tiers: wazero's optimizing compiler (wazevo) and its interpreter.
const (
	TierCompiler    = "compiler"
	TierInterpreter = "interpreter"
)

// Tiers are the compiler, where wazero can compile for this platform (the
// default there), and the interpreter.
func (driver) Tiers() []string {
	if compilerSupported() {
		return []string{TierCompiler, TierInterpreter}
	}
	return []string{TierInterpreter}
}

// TierCapabilities: the interpreter has no native code to keep on disk, so
// it refuses a compilation cache, and it allocates on every call (in
// wazero's interpreter: callEngine.callNativeFunc).
func (driver) TierCapabilities(t string) engine.Capabilities {
	c := engine.CapMemoryLimit | engine.CapInterrupt | engine.CapHostTrapFrames | engine.CapMultiValue | engine.CapCallerFrames
	if t == TierCompiler {
		c |= engine.CapCompilationCache | engine.CapAllocFreeCalls
	}
	return c
}

func (driver) TierUnavailable(t string) string {
	if t == TierCompiler {
		return "wazero's compiler does not support " + goruntime.GOOS + "/" + goruntime.GOARCH + " or this CPU"
	}
	return ""
}

// compilerSupported is wazero's own test (internal/platform's
// compilerPlatformSupports for CoreFeaturesV2, which wazero.NewRuntimeConfig
// uses to choose its engine), which is internal to wazero: the compiler
// runs on amd64 with SSE4.1 and on arm64, on the systems it lists. A test
// checks it against the engine wazero's automatic configuration picks.
func compilerSupported() bool {
	switch goruntime.GOOS {
	case "linux", "darwin", "freebsd", "netbsd", "windows":
		if goruntime.GOARCH == "arm64" {
			return true
		}
		fallthrough
	case "dragonfly", "solaris", "illumos":
		return goruntime.GOARCH == "amd64" && cpuid.CPU.Supports(cpuid.SSE4)
	}
	return false
}

// runtimeConfig returns wazero's configuration for cfg, whose tier Open
// resolved: the tier is never left to wazero's automatic choice.
func runtimeConfig(cfg engine.Config) wazero.RuntimeConfig {
	var rc wazero.RuntimeConfig
	if cfg.Tier() == TierInterpreter {
		rc = wazero.NewRuntimeConfigInterpreter()
	} else {
		rc = wazero.NewRuntimeConfigCompiler()
	}
	rc = rc.WithCoreFeatures(api.CoreFeaturesV2)
	if p := cfg.MemoryLimitPages(); p != 0 {
		rc = rc.WithMemoryLimitPages(p)
	}
	if cfg.InterruptOnContextDone() {
		rc = rc.WithCloseOnContextDone(true)
	}
	return rc
}

func (driver) NewRuntime(cfg engine.Config) (backend.Runtime, error) {
	if cfg.Tier() == "" { // not through engine.Open (tests)
		cfg = cfg.WithTier(driver{}.Tiers()[0])
	}
	rc := runtimeConfig(cfg)
	var disk *diskCache
	if dir := cfg.CompilationCacheDir(); dir != "" {
		var err error
		if disk, err = openDiskCache(dir, cfg.InterruptOnContextDone(), cfg.Tier()); err != nil {
			return nil, err
		}
		rc = rc.WithCompilationCache(disk.cache)
	}
	ctx := context.Background()
	return &runtime{r: wazero.NewRuntimeWithConfig(ctx, rc), disk: disk,
		interrupt: cfg.InterruptOnContextDone()}, nil
}

type runtime struct {
	r    wazero.Runtime
	disk *diskCache // nil without a compilation cache
	// interrupt: wazero closes modules on context done, and so watches
	// the context of every call from a goroutine that may outlive it.
	interrupt bool

	mu     sync.Mutex
	closed bool
}

func (r *runtime) As(target any) bool {
	if p, ok := target.(*wazero.Runtime); ok {
		*p = r.r
		return true
	}
	return false
}

func (r *runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	err := r.r.Close(context.WithoutCancel(ctx))
	if r.disk != nil {
		err = errors.Join(err, r.disk.close(ctx))
	}
	return err
}

type module struct {
	cm   wazero.CompiledModule
	info *engine.ModuleInfo
}

func (m *module) Close(ctx context.Context) error { return m.cm.Close(context.WithoutCancel(ctx)) }

func (m *module) As(target any) bool {
	if p, ok := target.(*wazero.CompiledModule); ok {
		*p = m.cm
		return true
	}
	return false
}

func (r *runtime) Compile(ctx context.Context, wasm []byte, info *engine.ModuleInfo) (backend.Module, error) {
	// Without names wazero's backtraces name functions by index (see
	// framesOf).
	wasm = wasmbin.WithoutNames(wasm)
	var cm wazero.CompiledModule
	var err error
	if r.disk != nil {
		cm, err = r.disk.compile(ctx, r.r, wasm)
	} else {
		cm, err = r.r.CompileModule(ctx, wasm)
	}
	if err != nil {
		return nil, err
	}
	return &module{cm: cm, info: info}, nil
}

// host is a set of host modules, each compiled and instantiated once,
// anonymously, and linked to guests through wazero's import resolver. A host
// function finds its calling instance through the context of the call (see
// frame), so the same host module serves every instance. When the last
// instance using it and the Imports are closed, both the module instances
// and their compiled code are closed (wazero keeps compiled code, host
// modules' included, in its engine until it is closed or the runtime is).
type host struct {
	mods     map[string]api.Module
	compiled []wazero.CompiledModule

	mu     sync.Mutex
	refs   int // instances using it, plus one for the Imports handle
	closed bool
}

// hostFunc adapts an engine.HostFunction to wazero's GoModuleFunction.
type hostFunc struct{ f *engine.HostFunction }

// Call implements api.GoModuleFunction.
func (h hostFunc) Call(ctx context.Context, _ api.Module, stack []uint64) {
	fr, ok := ctx.(*frame)
	if !ok {
		panic(&engine.Trap{Code: engine.TrapHostError, Runtime: Name,
			Cause: fmt.Errorf("host function %s called outside an anywasm call", h.f.QualifiedName())})
	}
	// No recover here: a panic unwinds to wazero, which recovers it, and
	// toTrap makes it a TrapHostPanic naming in.hostFn. That saves the
	// deferred recover engine.CallHost costs on every call; the cgo
	// backends need it, wazero does not.
	in := fr.inst
	prev := in.hostFn
	in.hostFn = h.f
	err := h.f.Func(fr.Context, in, stack)
	in.hostFn = prev
	if err != nil {
		panic(engine.HostTrap(Name, err))
	}
}

var valueTypes = map[engine.ValueType]api.ValueType{
	engine.I32: api.ValueTypeI32, engine.I64: api.ValueTypeI64,
	engine.F32: api.ValueTypeF32, engine.F64: api.ValueTypeF64,
}

func toAPI(ts []engine.ValueType) []api.ValueType {
	out := make([]api.ValueType, len(ts))
	for i, t := range ts {
		out[i] = valueTypes[t]
	}
	return out
}

func (r *runtime) NewHost(mods []*engine.HostModule) (backend.Host, error) {
	ctx := context.Background()
	h := &host{mods: make(map[string]api.Module, len(mods)), refs: 1}
	for _, m := range mods {
		b := r.r.NewHostModuleBuilder(m.Name)
		for i := range m.Functions {
			f := &m.Functions[i]
			b.NewFunctionBuilder().
				WithGoModuleFunction(hostFunc{f}, toAPI(f.Type.Params), toAPI(f.Type.Results)).
				WithParameterNames(f.ParamNames...).
				Export(f.Name)
		}
		cm, err := b.Compile(ctx)
		if err != nil {
			h.release(ctx)
			return nil, err
		}
		h.compiled = append(h.compiled, cm)
		mod, err := r.r.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName("").WithStartFunctions())
		if err != nil {
			h.release(ctx)
			return nil, err
		}
		h.mods[m.Name] = mod
	}
	return h, nil
}

func (h *host) acquire() {
	h.mu.Lock()
	h.refs++
	h.mu.Unlock()
}

func (h *host) release(ctx context.Context) {
	h.mu.Lock()
	h.refs--
	done := h.refs == 0 && !h.closed
	if done {
		h.closed = true
	}
	h.mu.Unlock()
	if done {
		ctx = context.WithoutCancel(ctx)
		for _, m := range h.mods {
			_ = m.Close(ctx)
		}
		for _, cm := range h.compiled {
			_ = cm.Close(ctx)
		}
	}
}

// Close releases the Imports' hold; instances still using it keep it alive.
func (h *host) Close(ctx context.Context) error {
	h.release(ctx)
	return nil
}

func (r *runtime) Instantiate(ctx context.Context, m backend.Module, dh backend.Host, _ []*engine.HostFunction) (engine.Instance, error) {
	cm := m.(*module).cm
	in := &instance{rt: r, info: m.(*module).info}
	if dh != nil {
		in.host = dh.(*host)
		in.host.acquire()
		mods := in.host.mods
		ctx = experimental.WithImportResolver(ctx, func(name string) api.Module { return mods[name] })
	}
	for i := range in.frames {
		in.frames[i].inst = in
	}
	fr, _ := in.enter(ctx)
	mod, err := r.r.InstantiateModule(fr, cm, wazero.NewModuleConfig().WithName("").WithStartFunctions())
	in.leave(fr)
	if err != nil {
		if in.host != nil {
			in.host.release(ctx)
		}
		var t *engine.Trap
		if t = in.toTrap(ctx, err); t.Code != engine.TrapUnknown || isWasmError(err) {
			return nil, t
		}
		return nil, err
	}
	in.mod = mod
	return in, nil
}

// frame is the context a call into the guest runs under. Host functions
// receive it from wazero and find their calling instance in it without a map
// lookup; they are then given the caller's own context. An instance keeps a
// few frames inline for nested (re-entrant) calls, so calls do not allocate.
type frame struct {
	context.Context
	inst       *instance
	background bool // Context is context.Background() or TODO(): no values
}

// Value implements context.Context; wazero asks for its experimental keys on
// every call, which the common background context answers without a call.
func (f *frame) Value(key any) any {
	if f.background {
		return nil
	}
	return f.Context.Value(key)
}

const inlineFrames = 8

type instance struct {
	seal.Marker
	rt   *runtime
	info *engine.ModuleInfo
	mod  api.Module
	host *host

	frames [inlineFrames]frame
	depth  int

	failed bool
	closed bool
	mem    *memory
	hostFn *engine.HostFunction // the host function running, if any
}

// enter returns the frame for a call under ctx. A call with a context that
// cannot be cancelled uses the instance's inline frame for its depth. On a
// runtime that interrupts, wazero watches the context of every call from
// another goroutine that may outlive the call, so there every call (and
// elsewhere any nested deeper than inlineFrames) gets a frame of its own,
// never reused.
func (in *instance) enter(ctx context.Context) (fr *frame, cancellable bool) {
	d := in.depth
	in.depth++
	t := ctxType(ctx)
	bg := t == backgroundType || t == todoType
	if !bg && ctx.Done() != nil {
		return &frame{Context: ctx, inst: in}, true
	}
	if in.rt.interrupt {
		return &frame{Context: ctx, inst: in, background: bg}, false
	}
	if d < inlineFrames {
		fr := &in.frames[d]
		fr.Context, fr.background = ctx, bg
		return fr, false
	}
	return &frame{Context: ctx, inst: in, background: bg}, false
}

// ctxType returns the dynamic type word of a context. context.Background()
// and context.TODO() are the only values of their (zero-size, unexported)
// types, so the type word alone recognizes them; comparing the interfaces
// with == would call into the runtime on every call.
func ctxType(c context.Context) unsafe.Pointer {
	return *(*unsafe.Pointer)(unsafe.Pointer(&c))
}

var backgroundType, todoType = ctxType(context.Background()), ctxType(context.TODO())

// leave ends a call entered with enter.
func (in *instance) leave(fr *frame) {
	in.depth--
	if d := in.depth; d < inlineFrames && fr == &in.frames[d] {
		fr.Context = nil // do not keep the caller's context alive
	}
}

func (in *instance) Failed() bool { return in.failed }

func (in *instance) As(target any) bool {
	if p, ok := target.(*api.Module); ok {
		*p = in.mod
		return true
	}
	return false
}

func (in *instance) Close(ctx context.Context) error {
	if in.closed {
		return nil
	}
	in.closed = true
	err := in.mod.Close(context.WithoutCancel(ctx))
	if in.host != nil {
		in.host.release(ctx)
	}
	return err
}

func (in *instance) Function(name string) (engine.Function, error) {
	if in.closed {
		return nil, engine.ErrClosed
	}
	f := in.mod.ExportedFunction(name)
	if f == nil {
		return nil, fmt.Errorf("engine: instance has no exported function %q", name)
	}
	def := f.Definition()
	t := engine.FuncType{Params: fromAPI(def.ParamTypes()), Results: fromAPI(def.ResultTypes())}
	for _, v := range append(append([]engine.ValueType(nil), t.Params...), t.Results...) {
		if !v.IsNumeric() {
			return nil, fmt.Errorf("engine: exported function %q %s: only i32, i64, f32 and f64 can be called", name, t)
		}
	}
	return &function{inst: in, fn: f, name: name, typ: t, stackSize: t.StackSize()}, nil
}

func fromAPI(ts []api.ValueType) []engine.ValueType {
	out := make([]engine.ValueType, len(ts))
	for i, t := range ts {
		out[i] = engine.ValueType(t)
	}
	return out
}

func (in *instance) Memory() engine.Memory {
	if in.mem == nil {
		m := in.mod.ExportedMemory("memory")
		if m == nil {
			return nil
		}
		in.mem = &memory{m: m}
	}
	return in.mem
}

func (in *instance) ExportedMemory(name string) engine.Memory {
	if name == "memory" {
		return in.Memory()
	}
	if m := in.mod.ExportedMemory(name); m != nil {
		return &memory{m: m}
	}
	return nil
}

type function struct {
	seal.Marker
	inst      *instance
	fn        api.Function
	name      string
	typ       engine.FuncType
	stackSize int
}

func (f *function) Name() string          { return f.name }
func (f *function) Type() engine.FuncType { return f.typ }

// Call implements engine.Function.
func (f *function) Call(ctx context.Context, stack []uint64) error {
	in := f.inst
	switch {
	case in.closed:
		return engine.ErrClosed
	case in.failed:
		return engine.ErrFailed
	case len(stack) < f.stackSize:
		return engine.ErrStackSize
	}
	fr, cancellable := in.enter(ctx)
	if cancellable {
		if err := ctx.Err(); err != nil {
			in.leave(fr)
			return err
		}
	}
	err := f.fn.CallWithStack(fr, stack)
	in.leave(fr)
	if err != nil {
		in.failed = true
		return in.toTrap(ctx, err)
	}
	return nil
}

// wazero's runtime errors (internal/wasmruntime), by message.
var wasmErrors = map[string]engine.TrapCode{
	"unreachable":                   engine.TrapUnreachable,
	"out of bounds memory access":   engine.TrapMemoryOutOfBounds,
	"invalid table access":          engine.TrapTableOutOfBounds,
	"indirect call type mismatch":   engine.TrapIndirectCallTypeMismatch,
	"stack overflow":                engine.TrapStackOverflow,
	"integer divide by zero":        engine.TrapIntegerDivideByZero,
	"integer overflow":              engine.TrapIntegerOverflow,
	"invalid conversion to integer": engine.TrapInvalidConversion,
}

const wasmErrorPrefix = "wasm error: "

// recoveredSuffix is how wazero (internal/wasmdebug) marks a panic it
// recovered from a host function: "<value> (recovered by wazero)\n..."; an
// error value is wrapped with %w.
const recoveredSuffix = " (recovered by wazero)"

func isWasmError(err error) bool { return strings.Contains(err.Error(), wasmErrorPrefix) }

// toTrap converts an error returned by wazero into a *engine.Trap with the
// backtrace wazero gave. An interrupted call has none, and a TrapInterrupted
// that a host function passed on from a nested call (engine.HostTrap passes
// it on as it is) keeps the nested call's frames: none.
func (in *instance) toTrap(ctx context.Context, err error) *engine.Trap {
	t := in.classify(ctx, err)
	if t.Frames == nil && t.Code != engine.TrapInterrupted {
		t.Frames = in.framesOf(err)
	}
	return t
}

// wasmTrace starts the backtrace wazero (internal/wasmdebug) appends to an
// error: one line per frame, innermost first, each a tab and the function's
// debug name, "<module>.<name>(<params>) <results>", where the name is the
// name section's or, without one, "$<function index>". Source lines (from
// DWARF) follow a frame with two tabs; after 30 frames a line says more may
// be omitted; a Go stack may follow after an empty line.
const wasmTrace = "\nwasm stack trace:\n"

// framesOf parses the backtrace of err. The module was compiled without its
// name section and instantiated without a name, so a guest function is
// ".$<index>"; a host function is "<host module>.<name>" (its host module's
// name section), looked up among the module's imports.
func (in *instance) framesOf(err error) []engine.Frame {
	msg := err.Error()
	i := strings.LastIndex(msg, wasmTrace) // after any nested call's trace in the cause's text
	if i < 0 {
		return nil
	}
	var frames []engine.Frame
	for _, line := range strings.Split(msg[i+len(wasmTrace):], "\n") {
		fn, ok := strings.CutPrefix(line, "\t")
		if !ok {
			break // the end of the trace
		}
		if len(frames) == engine.MaxFrames {
			break
		}
		if f, ok := in.frameOf(fn); ok {
			frames = append(frames, f)
		}
	}
	return frames
}

// frameOf returns the frame of one line of a wazero backtrace, without its
// leading tab; ok is false for a line that is not a frame.
func (in *instance) frameOf(fn string) (engine.Frame, bool) {
	if rest, ok := strings.CutPrefix(fn, ".$"); ok {
		end := strings.IndexByte(rest, '(')
		if end < 0 {
			return engine.Frame{}, false
		}
		idx, err := strconv.ParseUint(rest[:end], 10, 32)
		if err != nil {
			return engine.Frame{}, false
		}
		return in.info.Frame(uint32(idx), 0), true
	}
	var idx uint32 // function index of the import
	for _, im := range in.info.Imports {
		if im.Kind != engine.ExternFunc {
			continue
		}
		if len(fn) > len(im.Module)+len(im.Name)+1 && fn[len(im.Module)] == '.' &&
			strings.HasPrefix(fn, im.Module) && strings.HasPrefix(fn[len(im.Module)+1:], im.Name+"(") {
			return in.info.Frame(idx, 0), true
		}
		idx++
	}
	return engine.Frame{}, false
}

// classify converts an error returned by wazero into a *engine.Trap.
func (in *instance) classify(ctx context.Context, err error) *engine.Trap {
	var t *engine.Trap
	if errors.As(err, &t) { // a host function's trap, re-raised through wazero
		return t
	}
	msg := err.Error()
	if i := strings.Index(msg, recoveredSuffix); i >= 0 { // a host function panicked
		p := &engine.PanicError{Value: msg[:i]}
		if v := errors.Unwrap(err); v != nil { // the panic value was an error
			p.Value = v
		}
		if in.hostFn != nil {
			p.Function = in.hostFn.QualifiedName()
		}
		first, _, _ := strings.Cut(msg, "\n")
		return &engine.Trap{Code: engine.TrapHostPanic, Runtime: Name, Message: first, Cause: p}
	}
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		switch exit.ExitCode() {
		case sys.ExitCodeDeadlineExceeded:
			return &engine.Trap{Code: engine.TrapInterrupted, Runtime: Name, Message: err.Error(), Cause: context.DeadlineExceeded}
		case sys.ExitCodeContextCanceled:
			cause := ctx.Err()
			if cause == nil {
				cause = context.Canceled
			}
			return &engine.Trap{Code: engine.TrapInterrupted, Runtime: Name, Message: err.Error(), Cause: cause}
		}
		return &engine.Trap{Code: engine.TrapExit, Runtime: Name, Message: err.Error(), ExitCode: exit.ExitCode(), Cause: err}
	}
	msg = err.Error()
	if i := strings.Index(msg, wasmErrorPrefix); i >= 0 {
		msg = msg[i+len(wasmErrorPrefix):]
	}
	first, _, _ := strings.Cut(msg, "\n")
	if code, ok := wasmErrors[first]; ok {
		return &engine.Trap{Code: code, Runtime: Name, Message: first}
	}
	return &engine.Trap{Code: engine.TrapUnknown, Runtime: Name, Message: first, Cause: err}
}

// memory adapts api.Memory; wazero's accessors are already bounds-checked.
type memory struct {
	seal.Marker
	m api.Memory
}

func (m *memory) Size() uint64  { return uint64(m.m.Size()) }
func (m *memory) Pages() uint32 { return uint32(uint64(m.m.Size()) / engine.PageSize) }
func (m *memory) Grow(delta uint32) (uint32, bool) {
	return m.m.Grow(delta)
}
func (m *memory) Read(off, n uint32) ([]byte, bool)      { return m.m.Read(off, n) }
func (m *memory) Write(off uint32, b []byte) bool        { return m.m.Write(off, b) }
func (m *memory) ReadUint8(off uint32) (byte, bool)      { return m.m.ReadByte(off) }
func (m *memory) WriteUint8(off uint32, v byte) bool     { return m.m.WriteByte(off, v) }
func (m *memory) ReadUint32Le(off uint32) (uint32, bool) { return m.m.ReadUint32Le(off) }
func (m *memory) WriteUint32Le(off, v uint32) bool       { return m.m.WriteUint32Le(off, v) }
func (m *memory) ReadUint64Le(off uint32) (uint64, bool) { return m.m.ReadUint64Le(off) }
func (m *memory) WriteUint64Le(off uint32, v uint64) bool {
	return m.m.WriteUint64Le(off, v)
}
