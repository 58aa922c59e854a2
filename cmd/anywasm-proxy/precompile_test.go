package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/engine"
)

// graft returns wasm with a custom section appended.
func graft(wasm []byte, name string, contents []byte) []byte {
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

const precompiledAnywasm = `
listeners:
  - name: l
    address: "127.0.0.1:0"
    http:
      cluster: echo
      filters:
        - name: whoami
          vm_config:
            allow_precompiled: %v
            code: {local: {filename: %q}}
`

const precompiledEnvoy = `
static_resources:
  listeners:
    - name: l
      address:
        socket_address: {address: 127.0.0.1, port_value: 0}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: l
                route_config:
                  virtual_hosts:
                    - name: all
                      domains: ["*"]
                      routes:
                        - match: {prefix: /}
                          direct_response: {status: 200}
                http_filters:
                  - name: envoy.filters.http.wasm
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                      config:
                        name: whoami
                        vm_config:
                          runtime: envoy.wasm.runtime.v8
                          allow_precompiled: %v
                          code: {local: {filename: %q}}
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
`

// TestPrecompile makes a module with "anywasm-proxy precompile", grafts its
// precompiled code (module A's) onto module B's bytecode, and loads it
// through the proxy in both configuration formats: with allow_precompiled
// the plugin that runs is A (the precompiled code was loaded), without it
// B (the section was ignored), as in Envoy. A runtime without a precompiled
// format (wazero) is refused by precompile and always runs B.
func TestPrecompile(t *testing.T) {
	a, err := os.ReadFile("../../abi/testdata/whoami.wasm")
	if err != nil {
		t.Fatal(err)
	}
	b := bytes.Replace(a, []byte("whoami=A"), []byte("whoami=B"), 1)
	dir := t.TempDir()
	in := filepath.Join(dir, "a.wasm")
	if err := os.WriteFile(in, a, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, rtName := range engine.Runtimes() {
		t.Run(rtName, func(t *testing.T) {
			rt, err := engine.Open(rtName, engine.NewConfig())
			if err != nil {
				t.Fatal(err)
			}
			section := rt.PrecompiledSectionName()
			_ = rt.Close(ctx)

			out := filepath.Join(dir, rtName+"-a.wasm")
			var stdout, stderr bytes.Buffer
			code := run(ctx, []string{"precompile", "-runtime", rtName, "-o", out, in}, &stdout, &stderr, nil)
			var grafted []byte
			if section == "" {
				if code != 1 || !strings.Contains(stderr.String(), "no precompiled format") {
					t.Fatalf("precompile on %s: %d %q", rtName, code, stderr.String())
				}
				grafted = graft(b, "precompiled_wasmtime_v44.0.0_linux_x86_64", []byte("native code"))
			} else {
				if code != 0 || !strings.Contains(stdout.String(), section) {
					t.Fatalf("precompile: %d %q %q", code, stdout.String(), stderr.String())
				}
				pa, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				sec, found, err := engine.CustomSection(pa, section)
				if err != nil || !found {
					t.Fatalf("no section %s in the output: %v", section, err)
				}
				if s, _ := engine.StripPrecompiled(pa); !bytes.Equal(s, a) {
					t.Error("precompile changed the bytecode")
				}
				grafted = graft(b, section, sec)
			}
			file := filepath.Join(dir, rtName+"-grafted.wasm")
			if err := os.WriteFile(file, grafted, 0o644); err != nil {
				t.Fatal(err)
			}
			for _, format := range []struct{ name, tmpl string }{{"anywasm", precompiledAnywasm}, {"envoy", precompiledEnvoy}} {
				for _, allow := range []bool{true, false} {
					want := "whoami=B"
					if allow && section != "" {
						want = "whoami=A"
					}
					cfg := filepath.Join(dir, fmt.Sprintf("%s-%s-%v.yaml", rtName, format.name, allow))
					if err := os.WriteFile(cfg, fmt.Appendf(nil, format.tmpl, allow, file), 0o644); err != nil {
						t.Fatal(err)
					}
					var stdout, stderr bytes.Buffer
					code := run(ctx, []string{"-config", cfg, "-config-format", format.name, "-runtime", rtName, "-check"}, &stdout, &stderr, nil)
					if code != 0 {
						t.Fatalf("%s, allow_precompiled %v: exit %d: %s", format.name, allow, code, stderr.String())
					}
					if !strings.Contains(stderr.String(), want) || strings.Contains(stderr.String(), "precompiled code was not used") {
						t.Errorf("%s, allow_precompiled %v: want %s and no fallback in the log:\n%s", format.name, allow, want, stderr.String())
					}
				}
			}
		})
	}
}

func TestPrecompileUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"precompile", "in.wasm"}, &out, &errb, nil); code != 2 || !strings.Contains(errb.String(), "usage: anywasm-proxy precompile") {
		t.Errorf("no -o: %d %q", code, errb.String())
	}
	if code := run(context.Background(), []string{"precompile", "-o", "x", filepath.Join(t.TempDir(), "missing.wasm")}, &out, &errb, nil); code != 1 {
		t.Errorf("missing input: %d", code)
	}
}
