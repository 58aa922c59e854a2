//go:build cgo

package wasmtime

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/engine/internal/backend"
)

// module is a backend.Module: a wasmtime_module_t and what instantiation needs.
type module struct {
	rt   *runtime
	info *engine.ModuleInfo

	// types holds a wasm_functype_t per import (a C array, nil entries for
	// imports that are not functions with numeric types).
	types  **C.wasm_functype_t
	ntypes int
	hosts  []hostMeta // per import

	funcs  map[string]int // exported function name -> index in exports
	fexps  []funcMeta
	mems   []string // names of exported memories
	bufLen int      // call buffer length: the largest exported stack

	// pre is the module linked with a host function per import
	// (wasmtime_linker_instantiate_pre), made once so that Instantiate
	// neither makes the host functions in each store nor type-checks the
	// imports again (wasmtime_instance_pre_instantiate). The host functions
	// find their instance through the store's data, so pre serves every
	// set of host functions. nil if it could not be made: Instantiate then
	// makes the host functions per store (aw_instantiate).
	pre *C.wasmtime_instance_pre_t

	mu     sync.Mutex
	m      *C.wasmtime_module_t
	users  int // Instantiate calls in progress
	closed bool
}

// hostMeta is what a host call needs about an import's signature.
type hostMeta struct {
	results, size int
	mask          []uint64 // per parameter: the bits of its value
}

// funcMeta is an exported function's signature.
type funcMeta struct {
	name    string
	typ     engine.FuncType
	numeric bool
	rmask   []uint64 // per result: the bits of its value
}

// valueMask returns the bits of a raw value that hold a value of type v:
// Wasmtime leaves the upper half of an i32 or f32 undefined.
func valueMask(v engine.ValueType) uint64 {
	if v == engine.I32 || v == engine.F32 {
		return 0xffffffff
	}
	return ^uint64(0)
}

func valkind(v engine.ValueType) (C.uint8_t, bool) {
	switch v {
	case engine.I32:
		return C.WASM_I32, true
	case engine.I64:
		return C.WASM_I64, true
	case engine.F32:
		return C.WASM_F32, true
	case engine.F64:
		return C.WASM_F64, true
	}
	return 0, false
}

func numeric(t engine.FuncType) bool {
	for _, v := range t.Params {
		if !v.IsNumeric() {
			return false
		}
	}
	for _, v := range t.Results {
		if !v.IsNumeric() {
			return false
		}
	}
	return true
}

func (r *runtime) Compile(_ context.Context, wasm []byte, info *engine.ModuleInfo) (backend.Module, error) {
	if err := r.acquire(); err != nil {
		return nil, err
	}
	defer r.release()
	var cm *C.wasmtime_module_t
	var key [32]byte
	if r.cache != nil {
		key = r.cacheKey(wasm)
		if cm = r.cacheLoad(key); cm != nil {
			stats.loaded.Add(1)
		}
	}
	if cm == nil {
		stats.compiled.Add(1)
		var p *C.uint8_t
		if len(wasm) > 0 {
			p = (*C.uint8_t)(unsafe.Pointer(&wasm[0]))
		}
		if err := C.wasmtime_module_new(r.engine, p, C.size_t(len(wasm)), &cm); err != nil {
			msg := oneLine(errorText(err))
			// The validator's own message is clearer than the compiler's.
			if verr := C.wasmtime_module_validate(r.engine, p, C.size_t(len(wasm))); verr != nil {
				return nil, fmt.Errorf("wasmtime: invalid module: %s", oneLine(errorText(verr)))
			}
			return nil, fmt.Errorf("wasmtime: compile: %s", msg)
		}
		if r.cache != nil {
			r.cacheStore(key, cm)
		}
	}
	return r.newModule(cm, info)
}

// newModule makes the backend.Module of cm, which it owns (and frees on
// failure).
func (r *runtime) newModule(cm *C.wasmtime_module_t, info *engine.ModuleInfo) (*module, error) {
	m := &module{rt: r, info: info, m: cm, funcs: map[string]int{}, bufLen: 1}
	if err := m.prepare(); err != nil {
		m.free()
		return nil, err
	}
	return m, nil
}

// stats counts compilations, disk cache loads, precompiled code loads and
// instances made from an InstancePre, for tests.
var stats struct{ compiled, loaded, deserialized, instantiatedPre atomic.Int64 }

// oneLine joins Wasmtime's multi-line error text ("what\n\nCaused by:\n
// 0: why\n 1: because") into one line: "what: why: because".
func oneLine(s string) string {
	head, causes := splitError(s)
	return strings.Join(append([]string{head}, causes...), ": ")
}

// trapText is the text of a trap: the causes of Wasmtime's message, without
// its head ("error while executing at wasm backtrace:") and backtrace.
func trapText(s string) string {
	head, causes := splitError(s)
	if len(causes) == 0 {
		return head
	}
	return strings.Join(causes, ": ")
}

func splitError(s string) (head string, causes []string) {
	s = strings.TrimSpace(s)
	body, rest, found := strings.Cut(s, "Caused by:")
	lines := strings.Split(strings.TrimSpace(body), "\n")
	head = strings.TrimSpace(lines[0])
	if !found {
		return strings.Join(strings.Fields(body), " "), nil
	}
	for _, l := range strings.Split(rest, "\n") {
		l = strings.TrimSpace(l)
		if i := strings.Index(l, ": "); i > 0 && strings.Trim(l[:i], "0123456789") == "" {
			l = l[i+2:]
		}
		if l != "" {
			causes = append(causes, l)
		}
	}
	return head, causes
}

// prepare builds the import function types and the export tables.
func (m *module) prepare() error {
	n := len(m.info.Imports)
	m.hosts = make([]hostMeta, n)
	if n > 0 {
		m.types = (**C.wasm_functype_t)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof((*C.wasm_functype_t)(nil)))))
		if m.types == nil {
			return fmt.Errorf("wasmtime: out of memory")
		}
		m.ntypes = n
	}
	types := unsafe.Slice(m.types, m.ntypes)
	for i, im := range m.info.Imports {
		if im.Kind != engine.ExternFunc || !numeric(im.Type) {
			continue // Instantiate refuses such imports before the driver
		}
		ps := make([]C.uint8_t, len(im.Type.Params)+1)
		rs := make([]C.uint8_t, len(im.Type.Results)+1)
		h := hostMeta{results: len(im.Type.Results), size: im.Type.StackSize(), mask: make([]uint64, len(im.Type.Params))}
		for k, v := range im.Type.Params {
			ps[k], _ = valkind(v)
			h.mask[k] = valueMask(v)
		}
		for k, v := range im.Type.Results {
			rs[k], _ = valkind(v)
		}
		types[i] = C.aw_functype(&ps[0], C.size_t(len(im.Type.Params)), &rs[0], C.size_t(len(im.Type.Results)))
		if types[i] == nil {
			return fmt.Errorf("wasmtime: out of memory")
		}
		m.hosts[i] = h
	}
	m.pre = m.instancePre()
	for _, ex := range m.info.Exports {
		switch ex.Kind {
		case engine.ExternFunc:
			f := funcMeta{name: ex.Name, typ: ex.Type, numeric: numeric(ex.Type)}
			for _, v := range ex.Type.Results {
				f.rmask = append(f.rmask, valueMask(v))
			}
			if f.numeric {
				m.bufLen = max(m.bufLen, ex.Type.StackSize())
			}
			m.funcs[ex.Name] = len(m.fexps)
			m.fexps = append(m.fexps, f)
		case engine.ExternMemory:
			m.mems = append(m.mems, ex.Name)
		}
	}
	return nil
}

// instancePre returns the module's InstancePre, nil if an import cannot be
// bound (Instantiate refuses the module) or Wasmtime refuses it (Instantiate
// reports why, from wasmtime_instance_new).
func (m *module) instancePre() *C.wasmtime_instance_pre_t {
	types := unsafe.Slice(m.types, m.ntypes)
	for i := range m.info.Imports {
		if types[i] == nil {
			return nil
		}
	}
	l := C.wasmtime_linker_new(m.rt.engine)
	if l == nil {
		return nil
	}
	defer C.wasmtime_linker_delete(l)
	type name struct{ module, name string }
	defined := make(map[name]bool, len(m.info.Imports))
	for i, im := range m.info.Imports {
		// A module may import a name twice (Go's wasip1 port does);
		// engine.Instantiate binds both to the same host function, and
		// the linker holds one definition: the first import's index.
		if defined[name{im.Module, im.Name}] {
			continue
		}
		defined[name{im.Module, im.Name}] = true
		if err := C.aw_linker_define(l, cstr(im.Module), C.size_t(len(im.Module)), cstr(im.Name), C.size_t(len(im.Name)),
			types[i], C.uint32_t(i)); err != nil {
			C.wasmtime_error_delete(err)
			return nil
		}
	}
	var pre *C.wasmtime_instance_pre_t
	if err := C.wasmtime_linker_instantiate_pre(l, m.m, &pre); err != nil {
		C.wasmtime_error_delete(err)
		return nil
	}
	return pre
}

// acquire keeps the compiled module alive for an instantiation.
func (m *module) acquire() (*C.wasmtime_module_t, *C.wasmtime_instance_pre_t, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, nil, fmt.Errorf("wasmtime: module %w", engine.ErrClosed)
	}
	m.users++
	return m.m, m.pre, nil
}

func (m *module) release() {
	m.mu.Lock()
	m.users--
	free := m.closed && m.users == 0
	m.mu.Unlock()
	if free {
		m.free()
	}
}

// Close frees the compiled module, now or when the last instantiation in
// progress returns. Instances keep what they need: a store holds its own
// reference to the module's code and host functions.
func (m *module) Close(context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	free := m.users == 0
	m.mu.Unlock()
	if free {
		m.free()
	}
	return nil
}

func (m *module) free() {
	for _, t := range unsafe.Slice(m.types, m.ntypes) {
		if t != nil {
			C.wasm_functype_delete(t)
		}
	}
	C.free(unsafe.Pointer(m.types))
	m.types, m.ntypes = nil, 0
	if m.pre != nil {
		// Instances made from it keep what they need: their store holds
		// the module's code and the host functions.
		C.wasmtime_instance_pre_delete(m.pre)
		m.pre = nil
	}
	if m.m != nil {
		deleteModule(m.m)
		m.m = nil
	}
}

func deleteModule(m *C.wasmtime_module_t) { C.wasmtime_module_delete(m) }

func (m *module) As(target any) bool {
	if p, ok := target.(*ModulePtr); ok {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.closed {
			return false
		}
		*p = ModulePtr(unsafe.Pointer(m.m))
		return true
	}
	return false
}
