package abi_test

import (
	"bytes"
	"context"
	_ "embed"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
)

//go:embed testdata/whoami.wasm
var whoamiA []byte

// withSection appends a custom section (a module carrying precompiled code).
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

// TestAllowPrecompiled loads, as Envoy does with allow_precompiled, the
// precompiled code of module A grafted onto the bytecode of module B (A
// with another data byte): with AllowPrecompiled the code that runs is A's
// (the precompiled code was loaded, the bytecode not compiled), without it
// B's (the section was stripped and ignored); code the runtime refuses
// falls back to B's bytecode with a warning, and a runtime without a
// precompiled format (wazero) always runs B.
func TestAllowPrecompiled(t *testing.T) {
	whoamiB := bytes.Replace(whoamiA, []byte("whoami=A"), []byte("whoami=B"), 1)
	if bytes.Equal(whoamiA, whoamiB) {
		t.Fatal("no whoami=A in the guest")
	}
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		name := rt.PrecompiledSectionName()
		var grafted []byte
		if name == "" {
			// A section for a runtime this one is not: never looked up.
			grafted = withSection(whoamiB, "precompiled_wasmtime_v44.0.0_linux_x86_64", []byte("native code"))
		} else {
			out, err := rt.Precompile(ctx, whoamiA)
			if err != nil {
				t.Fatal(err)
			}
			code, _, _ := engine.CustomSection(out, name)
			grafted = withSection(whoamiB, name, code)
		}
		garbage := withSection(whoamiB, "precompiled_x", nil)
		if name != "" {
			garbage = withSection(whoamiB, name, []byte("not native code"))
		}
		// One host for every case: plugins with the same code and
		// another AllowPrecompiled must not share VMs.
		logs := &logSink{}
		h := newHost(rt, logs)
		defer h.Close(ctx)
		for i, tc := range []struct {
			code  []byte
			allow bool
			want  string
			warn  bool
		}{
			{grafted, true, "whoami=A", false},
			{grafted, false, "whoami=B", false},
			{garbage, true, "whoami=B", true},
			{garbage, false, "whoami=B", false},
			{whoamiB, true, "whoami=B", false},
		} {
			if name == "" {
				tc.want, tc.warn = "whoami=B", false
			}
			logs.mu.Lock()
			logs.lines = nil
			logs.mu.Unlock()
			p, err := h.Load(ctx, tc.code, abi.PluginConfig{Name: "whoami", AllowPrecompiled: tc.allow})
			if err != nil {
				t.Fatalf("case %d: %v", i, err)
			}
			defer p.Close(ctx)
			if !logs.hasLine("INFO " + tc.want) {
				t.Errorf("case %d (allow %v): no line %q:\n%s", i, tc.allow, tc.want, logs)
			}
			if got := logs.has("precompiled code was not used"); got != tc.warn {
				t.Errorf("case %d (allow %v): warned %v, want %v:\n%s", i, tc.allow, got, tc.warn, logs)
			}
		}
	})
}

// TestPrecompiledCorruptModule: a module whose section table lies is
// refused with Envoy's message, whatever AllowPrecompiled says; the
// stripping never reads past the bytes there are.
func TestPrecompiledCorruptModule(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		h := newHost(rt, &logSink{})
		defer h.Close(ctx)
		for what, code := range map[string][]byte{
			"section past the end":  append(bytes.Clone(whoamiA), 0, 0x10, 3, 'a', 'b', 'c'),
			"name past the section": append(bytes.Clone(whoamiA), 0, 2, 0x7f, 'a'),
			"unterminated size":     append(bytes.Clone(whoamiA), 0, 0x80, 0x80),
			"huge size":             append(bytes.Clone(whoamiA), 0, 0xff, 0xff, 0xff, 0xff, 0x0f),
		} {
			for _, allow := range []bool{false, true} {
				_, err := h.Load(ctx, code, abi.PluginConfig{Name: "corrupt", AllowPrecompiled: allow})
				if err == nil || !strings.Contains(err.Error(), "Failed to parse corrupted Wasm module") {
					t.Errorf("%s (allow %v): Load = %v", what, allow, err)
				}
			}
		}
	})
}
