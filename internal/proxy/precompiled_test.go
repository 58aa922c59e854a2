package proxy_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/anywasm/anywasm/engine"
)

// TestAllowPrecompiled serves requests through two filters of one module,
// module B's bytecode carrying module A's precompiled code for the
// runtime: the one with vm_config.allow_precompiled runs A (the precompiled
// code), the other B (the section stripped and ignored), as Envoy does. On
// a runtime without a precompiled format (wazero) both run B.
func TestAllowPrecompiled(t *testing.T) {
	a, err := os.ReadFile(filepath.Join("..", "..", "abi", "testdata", "whoami.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	b := bytes.Replace(a, []byte("whoami=A"), []byte("whoami=B"), 1)
	forEachRuntime(t, func(t *testing.T, rtName string) {
		ctx := context.Background()
		rt, err := engine.Open(rtName, engine.NewConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer rt.Close(ctx)
		name := rt.PrecompiledSectionName()
		code := b
		if name != "" {
			out, err := rt.Precompile(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			sec, _, _ := engine.CustomSection(out, name)
			// B's bytecode, then A's section: Precompile(B) would
			// replace it, so graft it by hand.
			code = append(bytes.Clone(b), out[len(a):]...)
			if got, _, _ := engine.CustomSection(code, name); !bytes.Equal(got, sec) {
				t.Fatal("grafting failed")
			}
		}
		file := filepath.Join(t.TempDir(), "whoami.wasm")
		if err := os.WriteFile(file, code, 0o644); err != nil {
			t.Fatal(err)
		}
		h := start(t, rtName, fmt.Sprintf(`
reload_interval: 0s
listeners:
  - name: web
    address: 127.0.0.1:0
    http:
      cluster: echo
      filters:
        - {name: pre, vm_config: {vm_id: a, allow_precompiled: true, code: {local: {filename: %q}}}}
        - {name: plain, vm_config: {vm_id: b, code: {local: {filename: %[1]q}}}}
`, file))
		if r := h.do("GET", h.url("web", "/"), ""); r.status != http.StatusOK {
			t.Errorf("status %d", r.status)
		}
		wantA, wantB := 1, 1 // pre runs A, plain B
		if name == "" {
			wantA, wantB = 0, 2
		}
		if a, b := h.logs.Count("whoami=A"), h.logs.Count("whoami=B"); a != wantA || b != wantB {
			t.Errorf("whoami=A logged %d times, whoami=B %d; want %d and %d:\n%s", a, b, wantA, wantB, h.logs)
		}
		if h.logs.Has("precompiled code was not used") {
			t.Errorf("a fallback:\n%s", h.logs)
		}
	})
}
