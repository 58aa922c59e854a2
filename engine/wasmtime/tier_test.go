//go:build cgo

package wasmtime

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	goruntime "runtime"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/engine/enginetest"
)

// efPulley64 is Wasmtime's EF_WASMTIME_PULLEY64 (crates/environ/src/obj.rs):
// the e_flags bit of an object of Pulley bytecode (whose machine Wasmtime
// writes as EM_RISCV).
const efPulley64 = 1 << 3

// artifactOf compiles a guest on a tier and returns Wasmtime's serialized
// module (an ELF object holding the compiled code), parsed, and its bytes.
func artifactOf(t *testing.T, tier string) (*elf.File, []byte) {
	t.Helper()
	ctx := context.Background()
	rt, err := engine.Open(Name, engine.NewConfig().WithTier(tier))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	out, err := rt.Precompile(ctx, enginetest.Guest("small"))
	if err != nil {
		t.Fatal(err)
	}
	art, ok, err := engine.CustomSection(out, rt.PrecompiledSectionName())
	if err != nil || !ok {
		t.Fatalf("no precompiled section: %v", err)
	}
	art = bytes.Clone(art)
	f, err := elf.NewFile(bytes.NewReader(art))
	if err != nil {
		t.Fatalf("the serialized module is not ELF: %v", err)
	}
	return f, art
}

// TestTierCode checks, by the code Wasmtime produced, that each tier is the
// one configured: Cranelift's is native code for this machine, Pulley's is
// Pulley bytecode.
func TestTierCode(t *testing.T) {
	native := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "riscv64": elf.EM_RISCV, "s390x": elf.EM_S390}[goruntime.GOARCH]
	cl, clb := artifactOf(t, TierCranelift)
	if cl.Machine != native {
		t.Errorf("cranelift: machine %v, want %v", cl.Machine, native)
	}
	if flags := elfFlags(t, cl, clb); flags&efPulley64 != 0 {
		t.Errorf("cranelift: e_flags %#x has the Pulley bit", flags)
	}
	pl, plb := artifactOf(t, TierPulley)
	if flags := elfFlags(t, pl, plb); flags&efPulley64 == 0 {
		t.Errorf("pulley: e_flags %#x lack the Pulley bit (machine %v)", flags, pl.Machine)
	}
}

// elfFlags returns e_flags of a 64-bit ELF object (debug/elf does not
// expose it): the 4 bytes at offset 48 of the header.
func elfFlags(t *testing.T, f *elf.File, b []byte) uint32 {
	t.Helper()
	if f.Class != elf.ELFCLASS64 || len(b) < 52 {
		t.Fatalf("not a 64-bit ELF object: %v", f.Class)
	}
	return f.ByteOrder.Uint32(b[48:52])
}

// TestTierPrecompiledApart: each tier has its own precompiled section, and
// code of one tier given to the other is refused (the bytecode is compiled).
func TestTierPrecompiledApart(t *testing.T) {
	ctx := context.Background()
	open := func(tier string) *engine.Runtime {
		rt, err := engine.Open(Name, engine.NewConfig().WithTier(tier))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rt.Close(ctx) })
		return rt
	}
	cl, pl := open(TierCranelift), open(TierPulley)
	if cl.PrecompiledSectionName() == pl.PrecompiledSectionName() {
		t.Fatalf("both tiers name their precompiled code %q", cl.PrecompiledSectionName())
	}
	if !strings.Contains(pl.PrecompiledSectionName(), "_pulley_") {
		t.Errorf("Pulley's section %q does not name the tier", pl.PrecompiledSectionName())
	}
	for _, c := range []struct{ from, to *engine.Runtime }{{cl, pl}, {pl, cl}} {
		_, art := artifactOf(t, c.from.Tier())
		m, err := c.to.CompilePrecompiled(ctx, enginetest.Guest("small"), art)
		if err != nil {
			t.Fatal(err)
		}
		if loaded, why := m.Precompiled(); loaded || why == nil {
			t.Errorf("%s loaded %s's code: %v %v", c.to.Tier(), c.from.Tier(), loaded, why)
		}
		_ = m.Close(ctx)
	}
}

// TestTierCacheKey: the disk cache keys entries by tier.
func TestTierCacheKey(t *testing.T) {
	w := enginetest.Guest("small")
	a, b := &runtime{tier: TierCranelift}, &runtime{tier: TierPulley}
	if a.cacheKey(w) == b.cacheKey(w) {
		t.Error("the cache key of a module is the same on both tiers")
	}
}

// TestWinchRefused: Winch cannot be selected through Wasmtime 44's C API;
// Open says so.
func TestWinchRefused(t *testing.T) {
	_, err := engine.Open("wasmtime:winch", engine.NewConfig())
	if !errors.Is(err, engine.ErrNotSupported) || !strings.Contains(err.Error(), "cranelift, pulley") || !strings.Contains(err.Error(), "C API") {
		t.Errorf("Open(wasmtime:winch) = %v, want ErrNotSupported naming the tiers and why", err)
	}
}
