//go:build cgo

package wasmtime

import (
	"context"
	goruntime "runtime"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/engine/enginetest"
)

// TestPrecompiledNoCompile checks that loading precompiled code compiles
// nothing, and that the refusals name Wasmtime's reasons.
func TestPrecompiledNoCompile(t *testing.T) {
	ctx := context.Background()
	if engine.PrecompiledPlatform(goruntime.GOOS, goruntime.GOARCH) == "" {
		t.Skip("no precompiled format on this platform")
	}
	rt, err := engine.Open(Name, engine.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	if got, want := rt.PrecompiledSectionName(), "precompiled_wasmtime_v"+Version+"_"+engine.PrecompiledPlatform(goruntime.GOOS, goruntime.GOARCH); got != want {
		t.Errorf("PrecompiledSectionName = %q, want %q", got, want)
	}
	out, err := rt.Precompile(ctx, enginetest.Guest("impostor"))
	if err != nil {
		t.Fatal(err)
	}
	code, _, _ := engine.CustomSection(out, rt.PrecompiledSectionName())

	rt2, err := engine.Open(Name, engine.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer rt2.Close(ctx)
	compiled, deserialized := stats.compiled.Load(), stats.deserialized.Load()
	m, err := rt2.CompilePrecompiled(ctx, enginetest.Guest("small"), code)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	if c, d := stats.compiled.Load()-compiled, stats.deserialized.Load()-deserialized; c != 0 || d != 1 {
		t.Errorf("CompilePrecompiled compiled %d modules and deserialized %d, want 0 and 1", c, d)
	}

	for what, tc := range map[string]struct {
		cfg  engine.Config
		code []byte
		want string
	}{
		"garbage":   {engine.NewConfig(), []byte("garbage"), "deserialize"},
		"fuel":      {engine.NewConfig().WithFuel(1000), code, "fuel"},
		"interrupt": {engine.NewConfig().WithInterruptOnContextDone(true), code, "epoch"},
	} {
		r, err := engine.Open(Name, tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		compiled := stats.compiled.Load()
		m, err := r.CompilePrecompiled(ctx, enginetest.Guest("small"), tc.code)
		if err != nil {
			t.Fatal(err)
		}
		loaded, why := m.Precompiled()
		if loaded || why == nil || !strings.Contains(why.Error(), tc.want) {
			t.Errorf("%s: Precompiled() = %v, %v; want a reason mentioning %q", what, loaded, why, tc.want)
		}
		t.Logf("%s: %v", what, why)
		if stats.compiled.Load() != compiled+1 {
			t.Errorf("%s: the bytecode was not compiled", what)
		}
		_ = r.Close(ctx)
	}
}
