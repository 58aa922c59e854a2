package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/anywasm/anywasm/engine/internal/wasmbin"
)

// ErrNotSnapshotable is wrapped by NewSnapshotProbe's error for a module
// whose state after its initializer a snapshot cannot hold.
var ErrNotSnapshotable = wasmbin.ErrNotSnapshotable

// SnapshotProbe prepares a pre-initialized snapshot of a module, the Wizer
// technique, on any runtime: Wasm is a copy of the module that also exports
// a getter function for each mutable global and its memory; instantiate it
// with the imports the module needs, run its initializer, and Snapshot reads
// the instance's globals and memory and returns a module whose data
// segments and global initializers hold them, without a start section, and
// whose initializer exports do nothing. Instances of that module begin
// where the initializer left the instrumented one.
//
// Only the module's memory and mutable numeric globals are captured: a
// module whose state may lie elsewhere is refused by NewSnapshotProbe
// (ErrNotSnapshotable): an imported memory, global or table; not exactly
// one memory; a shared or 64-bit memory; passive data segments; the
// instructions memory.init, data.drop, table.set, table.grow, table.fill,
// table.copy, table.init and elem.drop anywhere in its code (tables are not
// captured); a mutable global of type v128 or a reference type.
//
// A SnapshotProbe is safe for concurrent use.
type SnapshotProbe struct {
	p *wasmbin.Probe
}

// NewSnapshotProbe checks wasm and instruments it.
func NewSnapshotProbe(wasm []byte) (*SnapshotProbe, error) {
	p, err := wasmbin.Instrument(wasm)
	if err != nil {
		return nil, fmt.Errorf("engine: snapshot: %w", err)
	}
	return &SnapshotProbe{p: p}, nil
}

// Wasm returns the instrumented module. It must not be modified.
func (s *SnapshotProbe) Wasm() []byte { return s.p.Wasm }

// Snapshot reads the globals and the memory of inst, an instance of Wasm()
// whose initializer ran, and returns the snapshot module: the original
// module with that state, and with each export named in noops (the
// initializer functions that ran, e.g. _initialize) pointing at a function
// of its type that does nothing and returns zeros, so that a host that
// calls them as usual runs nothing. inst is not changed.
func (s *SnapshotProbe) Snapshot(ctx context.Context, inst Instance, noops ...string) ([]byte, error) {
	if inst.Failed() {
		return nil, errors.New("engine: snapshot: the instance failed")
	}
	st := wasmbin.State{Globals: make([]uint64, len(s.p.Globals)), NoOps: noops}
	var stack [1]uint64
	for i, g := range s.p.Globals {
		f, err := inst.Function(g.Export)
		if err != nil {
			return nil, fmt.Errorf("engine: snapshot: global %d: %w (not an instance of the probe's module?)", g.Index, err)
		}
		if err := f.Call(ctx, stack[:]); err != nil {
			return nil, fmt.Errorf("engine: snapshot: reading global %d: %w", g.Index, err)
		}
		v := stack[0]
		if g.Type == byte(I32) || g.Type == byte(F32) {
			v &= 0xffffffff
		}
		st.Globals[i] = v
	}
	mem := inst.ExportedMemory(wasmbin.SnapshotMemoryExport)
	if mem == nil {
		return nil, errors.New("engine: snapshot: the instance exports no memory " + wasmbin.SnapshotMemoryExport + " (not an instance of the probe's module?)")
	}
	size := mem.Size()
	st.Memory = make([]byte, 0, size)
	const chunk = 1 << 30
	for off := uint64(0); off < size; off += chunk {
		n := min(size-off, chunk)
		b, ok := mem.Read(uint32(off), uint32(n))
		if !ok {
			return nil, fmt.Errorf("engine: snapshot: reading memory at %d", off)
		}
		st.Memory = append(st.Memory, b...)
	}
	out, err := s.p.Snapshot(st)
	if err != nil {
		return nil, fmt.Errorf("engine: snapshot: %w", err)
	}
	return out, nil
}
