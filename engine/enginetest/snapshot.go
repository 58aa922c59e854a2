package enginetest

import (
	"bytes"
	"context"
	"errors"

	"strings"
	"testing"

	"github.com/anywasm/anywasm/engine"
)

// testSnapshot makes a snapshot of testdata/snapshot.wat after its start
// function and initializer ran, and checks that an instance of the snapshot
// starts with the same globals and memory, runs no start function, and
// that its initializer exports do nothing.
func (h *harness) testSnapshot(t *testing.T) {
	if !h.mv() {
		// The guest's state export returns the globals as five values.
		t.Skip("the snapshot guest needs multi-value, which this runtime lacks (CapMultiValue)")
	}
	ctx := context.Background()
	rt := h.open(t, engine.NewConfig())
	var hits []uint32
	host := engine.HostModule{Name: "env", Functions: []engine.HostFunction{{
		Name: "hit", Type: engine.FuncType{Params: []engine.ValueType{engine.I32}},
		Func: func(_ context.Context, _ engine.Caller, s []uint64) error {
			hits = append(hits, engine.DecodeU32(s[0]))
			return nil
		},
	}}}
	imp, err := rt.NewImports(host)
	if err != nil {
		t.Fatal(err)
	}
	probe, err := engine.NewSnapshotProbe(Guest("snapshot"))
	if err != nil {
		t.Fatal(err)
	}
	inst := instantiateBytes(t, rt, probe.Wasm(), imp)
	call(t, inst, "_initialize")
	call(t, inst, "main", 0, 0)
	if want := []uint32{1, 2, 3}; !equalU32(hits, want) {
		t.Fatalf("hits = %v, want %v", hits, want)
	}
	wantState := call(t, inst, "state")
	mem, _ := inst.Memory().Read(0, uint32(inst.Memory().Size()))
	wantMem := bytes.Clone(mem)
	snap, err := probe.Snapshot(ctx, inst, "_initialize", "main")
	if err != nil {
		t.Fatal(err)
	}

	hits = nil
	s := instantiateBytes(t, rt, snap, imp)
	if len(hits) != 0 {
		t.Errorf("the snapshot's instantiation called the host %v: its start function ran", hits)
	}
	got := call(t, s, "state")
	if !equalU64(got, wantState) {
		t.Errorf("state = %#x, want %#x (the initialized instance's)", got, wantState)
	}
	if c, w, hf, f, fixed := engine.DecodeI32(got[0]), int64(got[1]), engine.DecodeF32(got[2]), engine.DecodeF64(got[3]), engine.DecodeI32(got[4]); c != 2 || w != 0x123456789abcdef0 || hf != -0.5 || f != 1e300 || fixed != 77 {
		t.Errorf("globals = %d, %#x, %v, %v, %d; want 2, 0x123456789abcdef0, -0.5, 1e300, 77", c, w, hf, f, fixed)
	}
	if m := s.Memory(); m.Pages() != 3 {
		t.Errorf("the snapshot has %d pages, want 3", m.Pages())
	} else if b, _ := m.Read(0, uint32(m.Size())); !bytes.Equal(b, wantMem) {
		t.Error("the snapshot's memory differs from the initialized instance's")
	}
	if _, ok := s.Memory().Grow(5); !ok {
		t.Error("the snapshot lost its memory's maximum room (8 pages)")
	}
	if _, ok := s.Memory().Grow(1); ok {
		t.Error("the snapshot's memory grew past the module's maximum of 8 pages")
	}
	call(t, s, "_initialize")
	if r := call(t, s, "main", 1, 2); engine.DecodeI32(r[0]) != 0 || len(hits) != 0 {
		t.Errorf("the snapshot's initializer is not a no-op: main = %d, hits %v", engine.DecodeI32(r[0]), hits)
	}
	if got := call(t, s, "state"); !equalU64(got, wantState) {
		t.Errorf("after the no-op initializer, state = %#x, want %#x", got, wantState)
	}

	// Refusals.
	_, err = engine.NewSnapshotProbe(Guest("snapshot_refused"))
	if !errors.Is(err, engine.ErrNotSnapshotable) || !strings.Contains(err.Error(), "memory.init") && !strings.Contains(err.Error(), "passive") {
		t.Errorf("NewSnapshotProbe(passive data) = %v, want ErrNotSnapshotable naming memory.init or the passive segment", err)
	}
	plain := instantiateBytes(t, rt, Guest("snapshot"), imp)
	if _, err := probe.Snapshot(ctx, plain, "_initialize"); err == nil {
		t.Error("Snapshot of an instance of another module (no getters) succeeded")
	}
}

func instantiateBytes(t *testing.T, rt *engine.Runtime, wasm []byte, imp *engine.Imports) engine.Instance {
	t.Helper()
	ctx := context.Background()
	m, err := rt.Compile(ctx, wasm)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	t.Cleanup(func() { _ = m.Close(ctx) })
	inst, err := rt.Instantiate(ctx, m, imp)
	if err != nil {
		t.Fatalf("Instantiate: %v", err)
	}
	t.Cleanup(func() { _ = inst.Close(ctx) })
	return inst
}

func equalU32(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// equalU64 compares the results of "state" (i32, i64, f32, f64, i32) by
// their bits, without the undefined high halves of the 32-bit ones.
func equalU64(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		mask := ^uint64(0)
		if i%2 == 0 {
			mask = 0xffffffff
		}
		if a[i]&mask != b[i]&mask {
			return false
		}
	}
	return true
}
