package proxy_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/internal/plugins"
	"github.com/anywasm/anywasm/internal/proxy"
)

// TestRuntimeTiers: a runtime name may carry a tier, at the top level, per
// plugin and in Options.Runtime (-runtime); two plugins on two tiers of one
// runtime each get a runtime of their own, shown in /plugins and in the
// plugin metrics' runtime label; a tier the runtime lacks is refused,
// naming the field and the tiers there are.
func TestRuntimeTiers(t *testing.T) {
	wasm := plugins.Path(t, "metrics")
	for _, rt := range engine.Runtimes() {
		info, err := engine.Lookup(rt)
		if err != nil || len(info.Tiers) < 2 {
			continue
		}
		other := info.Tiers[len(info.Tiers)-1]
		t.Run(rt, func(t *testing.T) {
			cfg := fmt.Sprintf(`
runtime: %[1]s:%[2]s
admin: {address: "127.0.0.1:0"}
listeners:
  - name: a
    address: 127.0.0.1:0
    http:
      cluster: echo
      filters: [{name: a, vm_config: {runtime: %[1]s, code: {local: {filename: %[3]q}}}}]
  - name: b
    address: 127.0.0.1:0
    http:
      cluster: echo
      filters: [{name: b, vm_config: {code: {local: {filename: %[3]q}}}}]
`, rt, other, wasm)
			h := start(t, "", cfg)
			h.do("GET", h.url("a", "/x"), "")
			for range 2 {
				h.do("GET", h.url("b", "/yy"), "")
			}
			full := rt + ":" + other
			got := map[string]string{}
			for _, p := range h.plugins() {
				got[fmt.Sprint(p["name"])] = fmt.Sprintf("%v/%v", p["runtime"], p["tier"])
			}
			if want := (map[string]string{"a": rt + "/" + info.Tiers[0], "b": full + "/" + other}); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("/plugins runtimes %v, want %v", got, want)
			}
			m := h.do("GET", "http://"+h.p.AdminAddr().String()+"/metrics", "").body
			for _, want := range []string{
				fmt.Sprintf(`anywasm_plugin_anywasm_requests_total{runtime=%q} 1`, rt),
				fmt.Sprintf(`anywasm_plugin_anywasm_requests_total{runtime=%q} 2`, full),
			} {
				if !strings.Contains(m, want) {
					t.Errorf("metrics lack %s", want)
				}
			}

			// -runtime with a tier puts every plugin on it.
			h2 := start(t, full, cfg)
			for _, p := range h2.plugins() {
				if p["runtime"] != full {
					t.Errorf("-runtime %s: plugin %v on %v", full, p["name"], p["runtime"])
				}
			}
		})
	}
}

// TestRuntimeTierRefused: a tier the runtime lacks is refused in the
// configuration (naming the field) and in -runtime, naming the tiers.
func TestRuntimeTierRefused(t *testing.T) {
	info, err := engine.Lookup("wazero")
	if err != nil {
		t.Fatal(err)
	}
	tiers := strings.Join(info.Tiers, ", ")
	for _, c := range []struct{ config, want string }{
		{"runtime: wazero:turbo\nlisteners: []", `runtime: runtime "wazero:turbo": engine: runtime "wazero" has no tier "turbo"; its tiers here: ` + tiers},
		{`listeners: [{address: "127.0.0.1:0", http: {cluster: echo, filters: [{name: x, vm_config: {runtime: "envoy.wasm.runtime.wazero:", code: {local: {filename: a.wasm}}}}]}}]`,
			`listeners[0].http.filters[0].vm_config.runtime: runtime "envoy.wasm.runtime.wazero:": engine: runtime "wazero" has no tier ""`},
	} {
		_, err := proxy.ParseConfig([]byte(c.config))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s\n  got  %v\n  want %s", c.config, err, c.want)
		}
	}
	cfg, err := proxy.ParseConfig([]byte(oneFilter("", "", "x", "a.wasm")))
	if err != nil {
		t.Fatal(err)
	}
	_, err = proxy.Start(t.Context(), cfg, proxy.Options{Runtime: "wazero:turbo"})
	if err == nil || !strings.Contains(err.Error(), "-runtime wazero:turbo") || !strings.Contains(err.Error(), tiers) {
		t.Errorf("Start with -runtime wazero:turbo = %v", err)
	}
	if got := proxy.RuntimeName("wazero:" + info.Tiers[0]); got != "wazero" {
		t.Errorf("RuntimeName(wazero:%s) = %q, want wazero", info.Tiers[0], got)
	}
	if !slices.Contains(info.Tiers, "interpreter") || proxy.RuntimeName("envoy.wasm.runtime.wazero:interpreter") != "wazero:interpreter" {
		t.Errorf("RuntimeName of the interpreter: %q", proxy.RuntimeName("envoy.wasm.runtime.wazero:interpreter"))
	}
}
