package engine

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"

	"github.com/anywasm/anywasm/engine/internal/wasmbin"
)

// Runtime compiles and instantiates modules with one backend. It is safe for
// concurrent use. Close it when done: it closes every module, import set and
// instance it made.
type Runtime struct {
	drv  drvDriver
	rt   drvRuntime
	cfg  Config
	caps Capabilities // of the tier

	mu      sync.Mutex
	modules map[[32]byte]*moduleEntry
	imports map[*Imports]struct{}
	closed  bool
}

// Name returns the backend's name.
func (r *Runtime) Name() string { return r.drv.Name() }

// Version returns the version of the runtime library.
func (r *Runtime) Version() string { return r.drv.Version() }

// Tier returns the compiler tier the runtime runs (Config.WithTier), ""
// for a runtime without tiers.
func (r *Runtime) Tier() string { return r.cfg.tier }

// Capabilities returns what the backend can enforce on its tier.
func (r *Runtime) Capabilities() Capabilities { return r.caps }

// Config returns the configuration the runtime was opened with.
func (r *Runtime) Config() Config { return r.cfg }

// As sets target to the backend's native runtime object; see the backend's
// documentation for the types it accepts.
func (r *Runtime) As(target any) bool { return r.rt.As(target) }

// Close closes the runtime and everything it made. It is idempotent and
// succeeds on a cancelled context.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	mods, imps := r.modules, r.imports
	r.modules, r.imports = nil, nil
	r.mu.Unlock()
	var errs []error
	for i := range imps {
		errs = append(errs, i.Close(ctx))
	}
	for _, e := range mods {
		errs = append(errs, e.drv.Close(context.WithoutCancel(ctx)))
	}
	errs = append(errs, r.rt.Close(context.WithoutCancel(ctx)))
	return errors.Join(errs...)
}

// ModuleInfo is what a module imports and exports, and the names of its
// name section.
type ModuleInfo struct {
	Imports []Import
	Exports []Export
	funcs   map[string]int // export name -> index in Exports, functions only

	name        string   // the name section's module name
	funcNames   []string // the name section's function names, by function index; nil if none
	funcImports []int    // index in Imports of each imported function, by function index
}

// FuncName returns the name of function idx (an index of the module's
// function index space, imported functions first) in the module's name
// section, or "" if it has none there.
func (i *ModuleInfo) FuncName(idx uint32) string {
	if uint64(idx) < uint64(len(i.funcNames)) {
		return i.funcNames[idx]
	}
	return ""
}

// Frame returns the backtrace frame of function idx at code offset offset:
// a guest function named from the name section, or, for an imported
// function, a host frame named by its import (with offset 0). Backends build
// Trap.Frames with it, so names resolve the same way on every runtime.
func (i *ModuleInfo) Frame(idx uint32, offset uint64) Frame {
	if uint64(idx) < uint64(len(i.funcImports)) {
		im := i.Imports[i.funcImports[idx]]
		return Frame{Module: im.Module, Func: im.Name, FuncIndex: idx, Host: true}
	}
	return Frame{Module: i.name, Func: i.FuncName(idx), FuncIndex: idx, Offset: offset}
}

// ExportedFunction returns the type of the exported function name.
func (i *ModuleInfo) ExportedFunction(name string) (FuncType, bool) {
	if k, ok := i.funcs[name]; ok {
		return i.Exports[k].Type, true
	}
	return FuncType{}, false
}

// HasExport reports whether the module exports name with kind k.
func (i *ModuleInfo) HasExport(name string, k ExternKind) bool {
	for _, e := range i.Exports {
		if e.Name == name && e.Kind == k {
			return true
		}
	}
	return false
}

func parseModuleInfo(wasm []byte) (*ModuleInfo, error) {
	m, err := wasmbin.Parse(wasm)
	if err != nil {
		return nil, err
	}
	conv := func(ft wasmbin.FuncType) FuncType {
		t := FuncType{Params: make([]ValueType, len(ft.Params)), Results: make([]ValueType, len(ft.Results))}
		for i, v := range ft.Params {
			t.Params[i] = ValueType(v)
		}
		for i, v := range ft.Results {
			t.Results[i] = ValueType(v)
		}
		return t
	}
	info := &ModuleInfo{funcs: map[string]int{}, name: m.Name, funcNames: m.FuncNames}
	for k, im := range m.Imports {
		x := Import{Module: im.Module, Name: im.Name, Kind: ExternKind(im.Kind)}
		if im.Kind == wasmbin.KindFunc {
			info.funcImports = append(info.funcImports, k)
			ft, ok := m.Types, uint64(im.Type) < uint64(len(m.Types))
			if !ok {
				return nil, fmt.Errorf("malformed module: import %s.%s: type index %d out of range", im.Module, im.Name, im.Type)
			}
			x.Type = conv(ft[im.Type])
		}
		info.Imports = append(info.Imports, x)
	}
	for _, ex := range m.Exports {
		x := Export{Name: ex.Name, Kind: ExternKind(ex.Kind)}
		if ex.Kind == wasmbin.KindFunc {
			ft, ok := m.FuncTypeOf(ex.Index)
			if !ok {
				return nil, fmt.Errorf("malformed module: export %q: function index %d out of range", ex.Name, ex.Index)
			}
			x.Type = conv(ft)
			info.funcs[ex.Name] = len(info.Exports)
		}
		info.Exports = append(info.Exports, x)
	}
	return info, nil
}

type moduleEntry struct {
	key  [32]byte
	drv  drvModule
	info *ModuleInfo
	refs int

	precompiled bool  // loaded from precompiled code (CompilePrecompiled)
	fallback    error // why CompilePrecompiled compiled the bytecode instead
}

// Module is a compiled module. Compiling the same bytes again in the same
// Runtime returns another handle to the same compiled code: it is compiled
// once (wasmer leaks native code on every compile, so this matters).
type Module struct {
	rt     *Runtime
	e      *moduleEntry
	mu     sync.Mutex
	closed bool
}

// Compile validates and compiles a WebAssembly binary. A malformed or
// invalid module is refused with an error that says why. Custom sections
// are compiled as they are (runtimes ignore them); to load a module that
// may carry precompiled code as Envoy does, see CompilePrecompiled.
func (r *Runtime) Compile(ctx context.Context, wasm []byte) (*Module, error) {
	return r.compile(ctx, sha256.Sum256(wasm), wasm, func(info *ModuleInfo) (built, error) {
		dm, err := r.rt.Compile(ctx, wasm, info)
		return built{dm: dm}, err
	})
}

// built is what a compile's build function made.
type built struct {
	dm          drvModule
	precompiled bool  // loaded from precompiled code
	fallback    error // why precompiled code given was not used
}

// compile returns the module cached under key, or parses wasm and builds
// it with build and caches it.
func (r *Runtime) compile(ctx context.Context, key [32]byte, wasm []byte, build func(*ModuleInfo) (built, error)) (*Module, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	if e, ok := r.modules[key]; ok {
		e.refs++
		r.mu.Unlock()
		return &Module{rt: r, e: e}, nil
	}
	r.mu.Unlock()

	info, err := parseModuleInfo(wasm)
	if err != nil {
		return nil, fmt.Errorf("engine: compile (%s): %w", r.Name(), err)
	}
	b, err := build(info)
	if err != nil {
		return nil, fmt.Errorf("engine: compile (%s): %w", r.Name(), err)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		_ = b.dm.Close(context.Background())
		return nil, ErrClosed
	}
	if e, ok := r.modules[key]; ok { // compiled concurrently: keep the first
		_ = b.dm.Close(context.Background())
		e.refs++
		return &Module{rt: r, e: e}, nil
	}
	e := &moduleEntry{key: key, drv: b.dm, info: info, refs: 1, precompiled: b.precompiled, fallback: b.fallback}
	r.modules[key] = e
	return &Module{rt: r, e: e}, nil
}

// Info returns the module's imports and exports.
func (m *Module) Info() *ModuleInfo { return m.e.info }

// Imports returns the module's imports.
func (m *Module) Imports() []Import { return m.e.info.Imports }

// Exports returns the module's exports.
func (m *Module) Exports() []Export { return m.e.info.Exports }

// As sets target to the backend's native compiled module.
func (m *Module) As(target any) bool { return m.e.drv.As(target) }

// Close releases the handle; the compiled code is freed when the last handle
// to it is closed. Instances made from it stay valid. Idempotent.
func (m *Module) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	r := m.rt
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	m.e.refs--
	if m.e.refs > 0 {
		r.mu.Unlock()
		return nil
	}
	delete(r.modules, m.e.key)
	r.mu.Unlock()
	return m.e.drv.Close(context.WithoutCancel(ctx))
}

// Instantiate instantiates m, resolving its imports from imports (which may
// be nil for a module that imports nothing). Every import must be a function
// defined in imports with exactly the type the module expects: a missing or
// mistyped import is refused with an error naming module.function and both
// signatures. Start functions run; a trap in one is returned as a *Trap.
func (r *Runtime) Instantiate(ctx context.Context, m *Module, imports *Imports) (Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	rtClosed := r.closed
	r.mu.Unlock()
	if rtClosed {
		return nil, fmt.Errorf("engine: instantiate: runtime %w", ErrClosed)
	}
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed || m.rt != r {
		if m.rt != r {
			return nil, errors.New("engine: instantiate: module was compiled by another Runtime")
		}
		return nil, fmt.Errorf("engine: instantiate: module %w", ErrClosed)
	}
	if imports != nil && imports.rt != r {
		return nil, errors.New("engine: instantiate: imports belong to another Runtime")
	}
	resolved := make([]*HostFunction, len(m.e.info.Imports))
	for i, im := range m.e.info.Imports {
		if im.Kind != ExternFunc {
			return nil, fmt.Errorf("engine: instantiate: import %s.%s is a %s; only function imports are supported", im.Module, im.Name, im.Kind)
		}
		var f *HostFunction
		if imports != nil {
			f = imports.lookup(im.Module, im.Name)
		}
		if f == nil {
			return nil, fmt.Errorf("engine: instantiate: missing import %s.%s %s", im.Module, im.Name, im.Type)
		}
		if !f.Type.Equal(im.Type) {
			return nil, fmt.Errorf("engine: instantiate: import %s.%s: module expects %s, host function has %s", im.Module, im.Name, im.Type, f.Type)
		}
		resolved[i] = f
	}
	var host drvHost
	if imports != nil {
		if err := imports.use(); err != nil {
			return nil, err
		}
		host = imports.drv
	}
	inst, err := r.rt.Instantiate(ctx, m.e.drv, host, resolved)
	if err != nil {
		var t *Trap
		if errors.As(err, &t) {
			return nil, err
		}
		return nil, fmt.Errorf("engine: instantiate (%s): %w", r.Name(), err)
	}
	return inst, nil
}
