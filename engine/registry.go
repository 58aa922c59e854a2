package engine

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

var (
	driversMu sync.RWMutex
	drivers   = map[string]Driver{}
)

// Register makes a backend available to Open under d.Name(). Backends call it
// from init. It panics if d is nil or the name is taken, as database/sql does.
func Register(d Driver) {
	if d == nil {
		panic("engine: Register of a nil driver")
	}
	name := d.Name()
	driversMu.Lock()
	defer driversMu.Unlock()
	if _, dup := drivers[name]; dup {
		panic("engine: Register called twice for runtime " + name)
	}
	drivers[name] = d
}

// Runtimes returns the sorted names of the runtimes compiled into this
// binary, e.g. for a -runtime flag's help.
func Runtimes() []string {
	driversMu.RLock()
	defer driversMu.RUnlock()
	names := make([]string, 0, len(drivers))
	for n := range drivers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Info describes a registered runtime.
type Info struct {
	Name         string
	Version      string
	Capabilities Capabilities
}

// Lookup returns the description of a compiled-in runtime.
func Lookup(name string) (Info, error) {
	d, err := driver(name)
	if err != nil {
		return Info{}, err
	}
	return Info{Name: d.Name(), Version: d.Version(), Capabilities: d.Capabilities()}, nil
}

func driver(name string) (Driver, error) {
	driversMu.RLock()
	d, ok := drivers[name]
	driversMu.RUnlock()
	if ok {
		return d, nil
	}
	have := Runtimes()
	list := "none"
	if len(have) > 0 {
		list = strings.Join(have, ", ")
	}
	return nil, fmt.Errorf("engine: unknown runtime %q (compiled in: %s); import its package "+
		"(github.com/anywasm/anywasm/engine/%s, or engine/all), and for wasmtime or wasmer build "+
		"with CGO_ENABLED=1 (engine/all links wasmer instead of wasmtime with -tags anywasm_wasmer)",
		name, list, name)
}

// Open returns a Runtime of the named backend. It refuses, with an error
// wrapping ErrNotSupported, a configuration that asks for a limit the backend
// cannot enforce.
func Open(name string, cfg Config) (*Runtime, error) {
	d, err := driver(name)
	if err != nil {
		return nil, err
	}
	if err := cfg.validate(name, d.Capabilities()); err != nil {
		return nil, err
	}
	rt, err := d.NewRuntime(cfg)
	if err != nil {
		return nil, fmt.Errorf("engine: open %s: %w", name, err)
	}
	return &Runtime{drv: d, rt: rt, cfg: cfg, modules: map[[32]byte]*moduleEntry{}, imports: map[*Imports]struct{}{}}, nil
}
