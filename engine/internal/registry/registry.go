// Package registry holds the registered backends between
// engine/internal/backend, which registers them, and engine, which opens
// them. It sits below both because backend imports engine (its interfaces
// speak engine's types) and engine cannot import backend.
package registry

import (
	"slices"
	"sync"
)

var (
	mu      sync.RWMutex
	drivers = map[string]any{}
)

// Add registers d under name. It panics if d is nil or the name is taken,
// as database/sql's Register does.
func Add(name string, d any) {
	if d == nil {
		panic("engine: Register of a nil driver")
	}
	mu.Lock()
	defer mu.Unlock()
	if _, dup := drivers[name]; dup {
		panic("engine: Register called twice for runtime " + name)
	}
	drivers[name] = d
}

// Get returns the driver registered under name.
func Get(name string) (any, bool) {
	mu.RLock()
	defer mu.RUnlock()
	d, ok := drivers[name]
	return d, ok
}

// Names returns the registered names, sorted.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	names := make([]string, 0, len(drivers))
	for n := range drivers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Remove unregisters name; for tests.
func Remove(name string) {
	mu.Lock()
	defer mu.Unlock()
	delete(drivers, name)
}
