//go:build cgo

package wasmer

import (
	"context"
	goruntime "runtime"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/engine/enginetest"
)

// TestPrecompiledNoCompile checks that loading precompiled code compiles
// nothing, that it is loaded once per process, and the refusals' reasons.
func TestPrecompiledNoCompile(t *testing.T) {
	ctx := context.Background()
	plat := engine.PrecompiledPlatform(goruntime.GOOS, goruntime.GOARCH)
	if plat == "" {
		t.Skip("no precompiled format on this platform")
	}
	rt, err := engine.Open(Name, engine.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	if got, want := rt.PrecompiledSectionName(), "precompiled_wasmer_v"+version()+"_"+plat; got != want {
		t.Errorf("PrecompiledSectionName = %q, want %q", got, want)
	}
	// A module of its own, so that no other test interned it already.
	wasm := []byte("\x00asm\x01\x00\x00\x00\x01\x05\x01\x60\x00\x01\x7f\x03\x02\x01\x00\x05\x03\x01\x00\x01" +
		"\x07\x13\x02\x06memory\x02\x00\x06answer\x00\x00\x0a\x07\x01\x05\x00\x41\xf1\x07\x0b") // answer: 1009
	out, err := rt.Precompile(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}
	code, _, _ := engine.CustomSection(out, rt.PrecompiledSectionName())
	compiled, deserialized := stats.compiled.Load(), stats.deserialized.Load()
	for i := 0; i < 2; i++ {
		r, err := engine.Open(Name, engine.NewConfig())
		if err != nil {
			t.Fatal(err)
		}
		m, err := r.CompilePrecompiled(ctx, enginetest.Guest("small"), code)
		if err != nil {
			t.Fatal(err)
		}
		inst, err := r.Instantiate(ctx, m, nil)
		if err != nil {
			t.Fatal(err)
		}
		f, _ := inst.Function("answer")
		s := []uint64{0}
		if err := f.Call(ctx, s); err != nil || s[0] != 1009 {
			t.Errorf("answer = %d, %v; want the precompiled code's 1009", s[0], err)
		}
		_ = r.Close(ctx)
	}
	if c, d := stats.compiled.Load()-compiled, stats.deserialized.Load()-deserialized; c != 0 || d != 1 {
		t.Errorf("two loads compiled %d modules and deserialized %d, want 0 and 1", c, d)
	}

	for what, tc := range map[string]struct {
		cfg  engine.Config
		code []byte
		want string
	}{
		"garbage": {engine.NewConfig(), []byte("garbage"), "deserialize"},
		"fuel":    {engine.NewConfig().WithFuel(1000), code, "fuel"},
	} {
		if tc.cfg.Fuel() != 0 && !capabilities().Has(engine.CapFuel) {
			continue
		}
		r, err := engine.Open(Name, tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		m, err := r.CompilePrecompiled(ctx, enginetest.Guest("small"), tc.code)
		if err != nil {
			t.Fatal(err)
		}
		loaded, why := m.Precompiled()
		t.Logf("%s: %v", what, why)
		if loaded || why == nil || !strings.Contains(why.Error(), tc.want) {
			t.Errorf("%s: Precompiled() = %v, %v; want a reason mentioning %q", what, loaded, why, tc.want)
		}
		_ = r.Close(ctx)
	}
}
