package abi_test

import (
	"context"
	_ "embed"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
)

//go:embed testdata/caps.wasm
var capsWasm []byte

// TestAllowedCapabilities: with AllowedCapabilities, an import it does not
// list is linked to proxy-wasm-cpp-host's restricted stub (logged at error;
// INTERNAL_FAILURE for a hostcall, ENOTCAPABLE for WASI; proc_exit returns)
// and a callback it does not list is never called; without, all are real.
func TestAllowedCapabilities(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		for _, tc := range []struct {
			name    string
			caps    []string
			want    []string
			mustNot []string
		}{
			{
				name: "restricted",
				caps: []string{"proxy_log", "proxy_on_vm_start", "proxy_log"},
				want: []string{"INFO tick=10", "INFO random=76", "INFO after proc_exit",
					"ERROR Attempted call to restricted proxy-wasm capability: proxy_set_tick_period_milliseconds",
					"ERROR Attempted call to restricted WASI capability: random_get",
					"ERROR Attempted call to restricted WASI capability: proc_exit"},
				mustNot: []string{"INFO configured"},
			},
			{
				name:    "all",
				want:    []string{"INFO tick=0", "INFO random=0", "INFO configured"},
				mustNot: []string{"INFO after proc_exit", "ERROR Attempted call to restricted"},
			},
			{
				name:    "allowed",
				caps:    []string{"proxy_log", "proxy_on_vm_start", "proxy_on_configure", "proxy_set_tick_period_milliseconds", "random_get"},
				want:    []string{"INFO tick=0", "INFO random=0", "INFO configured"},
				mustNot: []string{"ERROR Attempted call to restricted"},
			},
		} {
			t.Run(tc.name, func(t *testing.T) {
				logs := &logSink{}
				h := newHost(rt, logs)
				defer h.Close(ctx)
				p, err := h.Load(ctx, capsWasm, abi.PluginConfig{Name: "caps", AllowedCapabilities: tc.caps})
				if err != nil {
					t.Fatal(err)
				}
				defer p.Close(ctx)
				for _, l := range tc.want {
					if !logs.hasLine(l) {
						t.Errorf("no line %q:\n%s", l, logs)
					}
				}
				for _, l := range tc.mustNot {
					if logs.has(l) {
						t.Errorf("a line has %q:\n%s", l, logs)
					}
				}
			})
		}
	})
}

// TestAllowedCapabilitiesNotShared: plugins of one module and vm_id but
// other capabilities do not share VMs (each is linked its own way).
func TestAllowedCapabilitiesNotShared(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		logs := &logSink{}
		h := newHost(rt, logs)
		defer h.Close(ctx)
		p1, err := h.Load(ctx, capsWasm, abi.PluginConfig{Name: "all"})
		if err != nil {
			t.Fatal(err)
		}
		defer p1.Close(ctx)
		p2, err := h.Load(ctx, capsWasm, abi.PluginConfig{Name: "restricted", AllowedCapabilities: []string{"proxy_log", "proxy_on_vm_start"}})
		if err != nil {
			t.Fatal(err)
		}
		defer p2.Close(ctx)
		if !logs.hasLine("INFO random=76") || !logs.hasLine("INFO random=0") {
			t.Errorf("the second plugin reused the first one's VM:\n%s", logs)
		}
	})
}
