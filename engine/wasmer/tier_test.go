//go:build cgo

package wasmer

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/engine/enginetest"
)

func openTier(t *testing.T, tier string) *engine.Runtime {
	t.Helper()
	rt, err := engine.Open(Name, engine.NewConfig().WithTier(tier))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close(context.Background()) })
	return rt
}

// TestTiersOfLibrary: the tiers are the compilers libwasmer reports; the
// linux-amd64 library of wasmer-go v1.0.4 has Cranelift and Singlepass,
// not LLVM, which Open refuses saying so.
func TestTiersOfLibrary(t *testing.T) {
	ts := driver{}.Tiers()
	if len(ts) == 0 || ts[0] != TierCranelift {
		t.Fatalf("Tiers() = %v, want Cranelift first", ts)
	}
	for _, c := range compilers {
		if got := slices.Contains(ts, c.tier); got != compilerAvailable(c.c) {
			t.Errorf("tier %s offered: %v; wasmer_is_compiler_available: %v", c.tier, got, !got)
		}
	}
	if slices.Contains(ts, TierLLVM) {
		return
	}
	_, err := engine.Open("wasmer:llvm", engine.NewConfig())
	if !errors.Is(err, engine.ErrNotSupported) || !strings.Contains(err.Error(), "built without it") {
		t.Errorf("Open(wasmer:llvm) = %v, want ErrNotSupported saying the library lacks it", err)
	}
}

// TestTierCompiler checks that each tier compiles with its compiler, by
// what Wasmer itself does: Wasmer 2.0's Singlepass refuses multi-value,
// Cranelift compiles it.
func TestTierCompiler(t *testing.T) {
	ctx := context.Background()
	for _, tier := range (driver{}).Tiers() {
		if tier == TierLLVM {
			continue
		}
		_, err := openTier(t, tier).Compile(ctx, enginetest.Guest("values"))
		if (tier == TierSinglepass) != (err != nil) {
			t.Errorf("tier %s: Compile of a multi-value module: %v", tier, err)
		}
	}
}

// TestTierEngines: each tier has engines of its own, and the disk cache
// keys entries by tier.
func TestTierEngines(t *testing.T) {
	if !slices.Contains(driver{}.Tiers(), TierSinglepass) {
		t.Skip("no Singlepass in this libwasmer")
	}
	a, err := engineFor(TierCranelift, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := engineFor(TierSinglepass, 0)
	if err != nil {
		t.Fatal(err)
	}
	if a == b || a.engine == b.engine {
		t.Fatal("the tiers share an engine")
	}
	if k := [32]byte{1}; a.cacheKey(k) == b.cacheKey(k) {
		t.Error("the cache key of a module is the same on both tiers")
	}
}

// TestTierPrecompiledApart: each tier's precompiled code has a section of
// its own. Wasmer itself does not keep them apart: it loads Singlepass's
// artifact in a Cranelift engine (which is why the names differ).
func TestTierPrecompiledApart(t *testing.T) {
	if !slices.Contains(driver{}.Tiers(), TierSinglepass) {
		t.Skip("no Singlepass in this libwasmer")
	}
	ctx := context.Background()
	cl, sp := openTier(t, TierCranelift), openTier(t, TierSinglepass)
	if cl.PrecompiledSectionName() == sp.PrecompiledSectionName() || !strings.Contains(sp.PrecompiledSectionName(), "_singlepass_") {
		t.Fatalf("section names %q and %q", cl.PrecompiledSectionName(), sp.PrecompiledSectionName())
	}
	small := enginetest.Guest("small")
	out, err := sp.Precompile(ctx, small)
	if err != nil {
		t.Fatal(err)
	}
	art, ok, err := engine.CustomSection(out, sp.PrecompiledSectionName())
	if err != nil || !ok {
		t.Fatalf("no Singlepass section: %v", err)
	}
	if _, ok, _ := engine.CustomSection(out, cl.PrecompiledSectionName()); ok {
		t.Error("Singlepass's Precompile wrote Cranelift's section")
	}
	m, err := cl.CompilePrecompiled(ctx, small, bytes.Clone(art))
	if err != nil {
		t.Fatal(err)
	}
	if loaded, why := m.Precompiled(); !loaded {
		t.Errorf("Wasmer now refuses another compiler's artifact (%v): PrecompiledSectionName's documentation says it does not", why)
	}
}
