package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// HostFunc is the Go code of a host function. Parameters are read from
// stack[0:len(params)] and results written to stack[0:len(results)] (see
// ValueType for the encoding). Do not keep stack, caller or ctx after
// returning.
//
// A non-nil error makes the guest's call fail with a *Trap of code
// TrapHostError wrapping it; return Exit(code) to end the guest with an exit
// code. A panic is recovered and becomes a TrapHostPanic trap. ctx is the
// context given to Function.Call.
type HostFunc func(ctx context.Context, caller Caller, stack []uint64) error

// HostFunction is a host function defined as data.
type HostFunction struct {
	Name string
	Type FuncType
	// ParamNames optionally names the parameters, for documentation.
	ParamNames []string
	Func       HostFunc

	qualified string
}

// QualifiedName returns "module.name" once the function is part of Imports.
func (f *HostFunction) QualifiedName() string { return f.qualified }

// HostModule is a named set of host functions, e.g. "env" or
// "wasi_snapshot_preview1".
type HostModule struct {
	Name      string
	Functions []HostFunction
}

// Imports is a validated set of host modules, prepared once and used for any
// number of instantiations. It is safe for concurrent use.
type Imports struct {
	rt     *Runtime
	mods   []*HostModule
	byName map[string]map[string]*HostFunction
	drv    drvHost

	mu     sync.Mutex
	closed bool
}

// NewImports validates host modules and prepares them for Instantiate:
// names must be non-empty and unique, every function must have a Func, and
// parameter and result types must be numeric. The definitions are copied.
func (r *Runtime) NewImports(mods ...HostModule) (*Imports, error) {
	im := &Imports{rt: r, byName: map[string]map[string]*HostFunction{}}
	for _, m := range mods {
		if m.Name == "" {
			return nil, errors.New("engine: host module with an empty name")
		}
		if _, dup := im.byName[m.Name]; dup {
			return nil, fmt.Errorf("engine: host module %q defined twice", m.Name)
		}
		c := &HostModule{Name: m.Name, Functions: make([]HostFunction, len(m.Functions))}
		fns := make(map[string]*HostFunction, len(m.Functions))
		for i, f := range m.Functions {
			q := m.Name + "." + f.Name
			switch {
			case f.Name == "":
				return nil, fmt.Errorf("engine: host module %q: function %d has an empty name", m.Name, i)
			case fns[f.Name] != nil:
				return nil, fmt.Errorf("engine: host function %s defined twice", q)
			case f.Func == nil:
				return nil, fmt.Errorf("engine: host function %s has a nil Func", q)
			case !f.Type.numeric():
				return nil, fmt.Errorf("engine: host function %s %s: only i32, i64, f32 and f64 are supported", q, f.Type)
			}
			f.Type = FuncType{Params: cloneTypes(f.Type.Params), Results: cloneTypes(f.Type.Results)}
			f.qualified = q
			c.Functions[i] = f
			fns[f.Name] = &c.Functions[i]
		}
		im.mods = append(im.mods, c)
		im.byName[m.Name] = fns
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	drv, err := r.rt.NewHost(im.mods)
	if err != nil {
		return nil, fmt.Errorf("engine: host modules (%s): %w", r.Name(), err)
	}
	im.drv = drv
	r.imports[im] = struct{}{}
	return im, nil
}

func cloneTypes(ts []ValueType) []ValueType {
	if len(ts) == 0 {
		return nil
	}
	return append([]ValueType(nil), ts...)
}

func (i *Imports) lookup(module, name string) *HostFunction { return i.byName[module][name] }

func (i *Imports) use() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.closed {
		return fmt.Errorf("engine: instantiate: imports %w", ErrClosed)
	}
	return nil
}

// Function returns the host function module.name, or nil.
func (i *Imports) Function(module, name string) *HostFunction { return i.lookup(module, name) }

// Close releases the prepared host modules. Instances already made keep
// working. Idempotent.
func (i *Imports) Close(ctx context.Context) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.closed {
		return nil
	}
	i.closed = true
	r := i.rt
	r.mu.Lock()
	delete(r.imports, i)
	r.mu.Unlock()
	return i.drv.Close(context.WithoutCancel(ctx))
}
