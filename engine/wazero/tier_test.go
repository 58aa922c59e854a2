package wazero

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/engine/enginetest"
)

// nativeFiles compiles a guest with rc and a wazero compilation cache in a
// fresh directory, and returns how many files wazero wrote there: wazero's
// compiler writes the native code of every module it compiles, its
// interpreter writes nothing. It is wazero's own signal of the engine a
// configuration runs.
func nativeFiles(t *testing.T, rc wazero.RuntimeConfig) int {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	cache, err := wazero.NewCompilationCacheWithDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close(ctx)
	r := wazero.NewRuntimeWithConfig(ctx, rc.WithCompilationCache(cache))
	defer r.Close(ctx)
	if _, err := r.CompileModule(ctx, enginetest.Guest("small")); err != nil {
		t.Fatal(err)
	}
	n := 0
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

// TestTierEngine checks that each tier's configuration runs the engine it
// names, by what wazero itself does with it, and that the compiler is
// offered exactly where wazero's automatic choice picks it.
func TestTierEngine(t *testing.T) {
	tiers := driver{}.Tiers()
	for _, tier := range tiers {
		n := nativeFiles(t, runtimeConfig(engine.NewConfig().WithTier(tier)))
		if (tier == TierCompiler) != (n > 0) {
			t.Errorf("tier %s: wazero wrote %d files of native code", tier, n)
		}
	}
	auto := nativeFiles(t, wazero.NewRuntimeConfig()) > 0
	if offered := slices.Contains(tiers, TierCompiler); offered != auto || offered != compilerSupported() {
		t.Errorf("compiler offered: %v; wazero's automatic configuration compiles: %v", offered, auto)
	}
	if tiers[len(tiers)-1] != TierInterpreter {
		t.Errorf("Tiers() = %v lacks the interpreter", tiers)
	}
}

// TestTierCacheKey: entries of the disk cache are keyed by tier (the
// interpreter refuses a cache today; the key keeps a future one apart).
func TestTierCacheKey(t *testing.T) {
	a := &diskCache{tier: TierCompiler}
	b := &diskCache{tier: TierInterpreter}
	if w := enginetest.Guest("small"); a.key(w) == b.key(w) {
		t.Error("the cache key of a module is the same on both tiers")
	}
}

// TestInterpreterRefusesCache: the interpreter has no native code to keep.
func TestInterpreterRefusesCache(t *testing.T) {
	_, err := engine.Open("wazero:interpreter", engine.NewConfig().WithCompilationCache(t.TempDir()))
	if err == nil {
		t.Fatal("the interpreter accepted a compilation cache")
	}
	if !errors.Is(err, engine.ErrNotSupported) {
		t.Errorf("err = %v, want ErrNotSupported", err)
	}
}

// TestInstancePoolRefused: wazero has no instance pool, on either tier.
func TestInstancePoolRefused(t *testing.T) {
	for _, name := range []string{"wazero", "wazero:interpreter"} {
		_, err := engine.Open(name, engine.NewConfig().WithInstancePool(4))
		if !errors.Is(err, engine.ErrNotSupported) || !strings.Contains(err.Error(), "instance-pool") {
			t.Errorf("Open(%s) with an instance pool = %v, want ErrNotSupported naming it", name, err)
		}
	}
}
