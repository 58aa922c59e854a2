package enginetest

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/engine"
)

// withSection returns wasm with a custom section name holding contents
// appended: how a module carries precompiled code (sizes are encoded as
// LEB128, whatever their length).
func withSection(wasm []byte, name string, contents []byte) []byte {
	leb := func(b []byte, v int) []byte {
		for v >= 0x80 {
			b = append(b, byte(v)|0x80)
			v >>= 7
		}
		return append(b, byte(v))
	}
	body := append(leb(nil, len(name)), name...)
	body = append(body, contents...)
	out := append(bytes.Clone(wasm), 0)
	out = leb(out, len(body))
	return append(out, body...)
}

// precompiled compiles bytecode wasm with precompiled code pre and returns
// the module and what Precompiled reports.
func precompiled(t *testing.T, rt *engine.Runtime, wasm, pre []byte) (*engine.Module, bool, error) {
	t.Helper()
	m, err := rt.CompilePrecompiled(context.Background(), wasm, pre)
	if err != nil {
		t.Fatalf("CompilePrecompiled: %v", err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	loaded, why := m.Precompiled()
	return m, loaded, why
}

func answer(t *testing.T, rt *engine.Runtime, m *engine.Module) uint64 {
	t.Helper()
	inst, err := rt.Instantiate(context.Background(), m, nil)
	if err != nil {
		t.Fatalf("Instantiate: %v", err)
	}
	defer inst.Close(context.Background())
	return call(t, inst, "answer")[0]
}

// testPrecompiled checks precompiled code (Envoy's allow_precompiled): a
// runtime with a format loads its own precompiled code in place of the
// bytecode's, and compiles the bytecode when the code is not its own; a
// runtime without one always compiles the bytecode.
func (h *harness) testPrecompiled(t *testing.T) {
	ctx := context.Background()
	rt := h.open(t, engine.NewConfig())
	small, impostor := Guest("small"), Guest("impostor") // answer 42 and 666
	name := rt.PrecompiledSectionName()
	if name == "" {
		if _, err := rt.Precompile(ctx, small); !errors.Is(err, engine.ErrNotSupported) {
			t.Errorf("Precompile without a precompiled format = %v, want ErrNotSupported", err)
		}
		m, loaded, why := precompiled(t, rt, small, []byte("\x00asm precompiled code of some runtime"))
		if loaded || !errors.Is(why, engine.ErrNotSupported) {
			t.Errorf("Precompiled() = %v, %v; want false and ErrNotSupported", loaded, why)
		}
		if got := answer(t, rt, m); got != 42 {
			t.Errorf("answer = %d, want the bytecode's 42", got)
		}
		return
	}
	// cpp-host's name on the default tier; the tier after the runtime's
	// name on another.
	want := h.rt
	if len(h.info.Tiers) > 0 && h.info.Tier != h.info.Tiers[0] {
		want += "_" + h.info.Tier
	}
	if !strings.HasPrefix(name, engine.PrecompiledPrefix+want+"_v"+h.info.Version+"_") {
		t.Errorf("PrecompiledSectionName = %q, want %s%s_v%s_<platform>", name, engine.PrecompiledPrefix, want, h.info.Version)
	}

	// Precompile appends the section, replacing its own and keeping others.
	other := withSection(impostor, "precompiled_other_v1_x", []byte("other"))
	out, err := rt.Precompile(ctx, withSection(other, name, []byte("stale")))
	if err != nil {
		t.Fatal(err)
	}
	code, found, err := engine.CustomSection(out, name)
	if err != nil || !found || len(code) < 16 || bytes.Equal(code, []byte("stale")) {
		t.Fatalf("Precompile's output: section %q found %v (%d bytes), %v", name, found, len(code), err)
	}
	if o, _, _ := engine.CustomSection(out, "precompiled_other_v1_x"); string(o) != "other" {
		t.Errorf("Precompile dropped another runtime's section (%q)", o)
	}
	if s, err := engine.StripPrecompiled(out); err != nil || !bytes.Equal(s, impostor) {
		t.Errorf("StripPrecompiled(Precompile(impostor)) is not impostor: %v", err)
	}

	// impostor's code grafted onto small's bytecode: the precompiled code
	// runs, as in Envoy (cpp-host's Wasmtime::load never compiles the
	// bytecode when the precompiled code loads). In a fresh runtime too.
	for _, r := range []*engine.Runtime{rt, h.open(t, engine.NewConfig())} {
		m, loaded, why := precompiled(t, r, small, code)
		if !loaded || why != nil {
			t.Errorf("Precompiled() = %v, %v; want true", loaded, why)
		}
		if got := answer(t, r, m); got != 666 {
			t.Errorf("answer = %d, want the precompiled code's 666", got)
		}
	}
	// Without precompiled code, the bytecode.
	m, err := rt.CompilePrecompiled(ctx, small, nil)
	if err != nil {
		t.Fatal(err)
	}
	if loaded, why := m.Precompiled(); loaded || why != nil {
		t.Errorf("Precompiled() with no code = %v, %v", loaded, why)
	}
	if got := answer(t, rt, m); got != 42 {
		t.Errorf("answer = %d, want 42", got)
	}
	_ = m.Close(ctx)

	// Code that is not this runtime's loads nothing: the bytecode is
	// compiled, and Precompiled says why.
	for what, bad := range map[string][]byte{
		"garbage":     []byte("this is not precompiled code"),
		"wasm":        small,
		"zeros":       make([]byte, 4096),
		"another ELF": append([]byte("\x7fELF\x02\x01\x01\x00"), make([]byte, 200)...),
		"wrong shape": h.precompile(t, rt, Guest("nomem")), // exports f, not memory and answer
	} {
		m, loaded, why := precompiled(t, rt, small, bad)
		if loaded || why == nil {
			t.Errorf("%s: Precompiled() = %v, %v; want false and a reason", what, loaded, why)
		}
		if got := answer(t, rt, m); got != 42 {
			t.Errorf("%s: answer = %d, want the bytecode's 42", what, got)
		}
	}

	// Code compiled without fuel is not loaded by a runtime with fuel: its
	// loops would not count fuel.
	if h.info.Capabilities.Has(engine.CapFuel) {
		values := h.precompile(t, rt, h.guest("values"))
		frt := h.open(t, engine.NewConfig().WithFuel(1_000_000))
		m, loaded, why := precompiled(t, frt, h.guest("values"), values)
		if loaded || why == nil {
			t.Errorf("fuel: Precompiled() = %v, %v; want false and a reason", loaded, why)
		}
		n := 0
		imp, err := frt.NewImports(env(&n))
		if err != nil {
			t.Fatal(err)
		}
		inst, err := frt.Instantiate(ctx, m, imp)
		if err != nil {
			t.Fatal(err)
		}
		defer inst.Close(ctx)
		expectTrap(t, callErr(t, inst, "loop_forever"), engine.TrapOutOfFuel)
	}
}

// precompile returns rt's precompiled code for wasm.
func (h *harness) precompile(t *testing.T, rt *engine.Runtime, wasm []byte) []byte {
	t.Helper()
	out, err := rt.Precompile(context.Background(), wasm)
	if err != nil {
		t.Fatal(err)
	}
	code, found, err := engine.CustomSection(out, rt.PrecompiledSectionName())
	if err != nil || !found {
		t.Fatalf("no precompiled section: %v", err)
	}
	return code
}
