package proxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anywasm/anywasm/internal/plugins"
	"github.com/anywasm/anywasm/internal/proxy"
	"github.com/anywasm/anywasm/internal/testlog"
	"github.com/anywasm/anywasm/internal/testrt"
)

// until waits for cond, checking it again every few milliseconds, until
// the test's deadline: the test waits for an event, not for a time.
func until(t *testing.T, cond func() bool, format string, args ...any) {
	t.Helper()
	for !cond() {
		select {
		case <-t.Context().Done():
			t.Fatalf("gave up waiting for "+format, args...)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// serviceConfig: a per-worker service (vm_id pw, 2 VMs, no ticks) and a
// singleton one (vm_id one, ticking every ms, from file single), and on
// the listener a filter for each vm_id (the service plugin's filter role).
func serviceConfig(file, single string) string {
	return fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
reload_interval: 0s
wasm_services:
  - name: workers
    vm_config: {vm_id: pw, code: {local: {filename: %[1]q}}}
    configuration: "service tick=0"
    pool_size: 2
  - name: single
    singleton: true
    vm_config: {vm_id: one, code: {local: {filename: %[2]q}}}
    configuration: "service tick=1"
listeners:
  - name: web
    address: 127.0.0.1:0
    http:
      cluster: echo
      filters:
        - name: to-workers
          vm_config: {vm_id: pw, code: {local: {filename: %[1]q}}}
          configuration: filter
        - name: to-single
          vm_config: {vm_id: one, code: {local: {filename: %[1]q}}}
          configuration: filter
`, file, single)
}

func (h *harness) plugins() []map[string]any {
	h.t.Helper()
	var ps []map[string]any
	if err := json.Unmarshal([]byte(h.do("GET", "http://"+h.p.AdminAddr().String()+"/plugins", "").body), &ps); err != nil {
		h.t.Fatal(err)
	}
	return ps
}

// TestServiceProxy: wasm_services start with the proxy (a per-worker one
// on pool_size VMs, a singleton on one) and show in /plugins; requests
// through the filters reach both services over shared queues (their
// counter, on /metrics, counts the items of both); the singleton's ticks
// come back to its filter over another queue, which answers requests with
// them; a changed service file is reloaded; shutdown runs proxy_on_done
// on every service VM.
func TestServiceProxy(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt string) {
		file := plugins.Path(t, "service")
		single := filepath.Join(t.TempDir(), "single.wasm")
		copyFile(t, file, single)
		h := start(t, rt, serviceConfig(file, single))

		ps := h.plugins()
		if len(ps) != 4 {
			t.Fatalf("/plugins lists %d plugins, want 4: %v", len(ps), ps)
		}
		for i, want := range []struct {
			field     string
			singleton bool
			vms       float64
		}{{"wasm_services[0]", false, 2}, {"wasm_services[1]", true, 1}} {
			if p := ps[i]; p["service"] != want.field || p["singleton"] != want.singleton || p["vms"] != want.vms || p["filter"] != nil {
				t.Errorf("plugins[%d] = %v, want service %s, singleton %v, %v VMs", i, p, want.field, want.singleton, want.vms)
			}
		}
		if ps[2]["filter"] != "listeners[0].http.filters[0]" {
			t.Errorf("plugins[2] = %v", ps[2])
		}

		for _, path := range []string{"/a", "/b", "/c"} {
			if r := h.do("GET", h.url("web", path), ""); r.status != 200 {
				t.Fatalf("%s: %d %q", path, r.status, r.body)
			}
		}
		// Each request is enqueued for each service: 6 items on the one
		// counter both define.
		items := func() float64 {
			m := h.scrape()["anywasm_plugin_service_items_total"]
			if m == nil || len(m.GetMetric()) != 1 {
				return 0
			}
			return m.GetMetric()[0].GetCounter().GetValue()
		}
		until(t, func() bool { return items() >= 6 }, "6 items dequeued by the services (%v)\n%s", items(), h.logs)
		if n := items(); n != 6 {
			t.Errorf("service_items = %v, want 6", n)
		}
		for _, path := range []string{"/a", "/b", "/c"} {
			if n := h.logs.Count("service: got " + path); n != 2 {
				t.Errorf("%s dequeued %d times, want 2 (once per service)\n%s", path, n, h.logs)
			}
		}

		// The other way: the singleton's ticks reach its filter's root.
		if err := h.logs.Wait(t.Context(), "filter: got tick"); err != nil {
			t.Fatal(err)
		}
		// (The filter reads the count before it enqueues /d, and each
		// service logs "got" after counting.)
		r := h.do("GET", h.url("web", "/d"), "")
		if !strings.Contains(r.body, "x-service-reply: tick ") || !strings.Contains(r.body, "x-service-items: 3") ||
			strings.Contains(r.body, "x-service-items: 4") {
			t.Errorf("the filters did not pass on what the services sent and counted:\n%s", r.body)
		}

		// Reload: a changed service file replaces the service, whose old
		// VM is closed (proxy_on_done).
		copyFile(t, plugins.Path(t, "tick"), single)
		if n := h.p.Reload(context.Background()); n != 1 {
			t.Fatalf("reloaded %d plugins, want 1\n%s", n, h.logs)
		}
		proxy.WaitRetired(h.p)
		if n := h.logs.Count("service: done"); n != 1 {
			t.Errorf("proxy_on_done ran %d times after the reload, want 1 (the old singleton)\n%s", n, h.logs)
		}
		if p := h.plugins()[1]; p["generation"] != 2.0 || p["vms"] != 1.0 {
			t.Errorf("the reloaded service: %v", p)
		}
		if err := h.logs.Wait(t.Context(), "INFO tick 1"); err != nil { // the new plugin's ticks
			t.Fatal(err)
		}

		if err := h.p.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := h.logs.Count("service: done"); n != 3 {
			t.Errorf("proxy_on_done ran %d times for the services, want 3 (2 per-worker VMs, 1 old singleton)\n%s", n, h.logs)
		}
		if n := h.logs.Count("filter: done"); n != 3 {
			t.Errorf("proxy_on_done ran %d times for the filters, want 3 (on the 2 VMs of pw, 1 of one)\n%s", n, h.logs)
		}
	})
}

// TestServiceConfig: bad wasm_services entries are refused, each naming
// its field.
func TestServiceConfig(t *testing.T) {
	base := `
listeners: [{address: 127.0.0.1:0, http: {cluster: echo}}]
wasm_services:
`
	for _, c := range []struct{ service, want string }{
		{`[{name: s, singleton: true, pool_size: 2, vm_config: {code: {local: {filename: x.wasm}}}}]`,
			"wasm_services[0].pool_size: 2 with singleton: true"},
		{`[{vm_config: {code: {local: {filename: x.wasm}}}}]`, "wasm_services[0].name: missing"},
		{`[{name: s, vm_config: {code: {local: {filename: x.wasm}}}}, {name: t}]`, "wasm_services[1].vm_config.code.local.filename: missing"},
		{`[{name: s, singelton: true, vm_config: {code: {local: {filename: x.wasm}}}}]`, "wasm_services[0].singelton: unknown field"},
		{`[{name: s, pool_size: 2000, vm_config: {code: {local: {filename: x.wasm}}}}]`, "wasm_services[0].pool_size: 2000: want 1 to 1024"},
		{`[{name: s, failure_policy: NEVER, vm_config: {code: {local: {filename: x.wasm}}}}]`, "wasm_services[0].failure_policy:"},
		{`[{name: s, vm_config: {runtime: nope, code: {local: {filename: x.wasm}}}}]`, "wasm_services[0].vm_config.runtime:"},
	} {
		_, err := proxy.ParseConfig([]byte(base + "  " + c.service))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.service, err, c.want)
		}
	}
	// The plugin block's fields are a service's, singleton beside them.
	cfg, err := proxy.ParseConfig([]byte(base + `  [{name: s, root_id: r, singleton: true, pool_size: 1, log_level: debug,
    configuration: {"@type": type.googleapis.com/google.protobuf.StringValue, value: x},
    vm_config: {vm_id: v, code: {local: {filename: x.wasm}}}}]`))
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.WasmServices[0]; !s.Singleton || s.RootID != "r" || s.VMConfig.VMID != "v" {
		t.Errorf("parsed %+v", s)
	}
}

// TestServiceStartFailures: a service that traps in proxy_on_vm_start or
// proxy_on_configure fails the start, naming the service and the callback;
// one that traps in proxy_on_tick loses its VM and the proxy goes on.
func TestServiceStartFailures(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt string) {
		file := plugins.Path(t, "service")
		for _, c := range []struct{ conf, vmConf, callback string }{
			{"service panic-configure", "", "proxy_on_configure"},
			{"service", "panic", "proxy_on_vm_start"},
		} {
			svc := fmt.Sprintf(`{name: bad, singleton: true, configuration: %q, vm_config: {configuration: %q, code: {local: {filename: %q}}}}`,
				c.conf, c.vmConf, file)
			cfg, err := proxy.ParseConfig([]byte(fmt.Sprintf(`
listeners: [{address: 127.0.0.1:0, http: {cluster: echo}}]
wasm_services: [%s]
`, svc)))
			if err != nil {
				t.Fatal(err)
			}
			cfg.CacheDir = testrt.Dir()
			_, err = proxy.Start(context.Background(), cfg, proxy.Options{Runtime: rt, Logger: slog.New(&testlog.Sink{})})
			if err == nil || !strings.Contains(err.Error(), "wasm_services[0] (plugin bad") ||
				!strings.Contains(err.Error(), c.callback+" [unreachable]") {
				t.Errorf("%s: start: %v, want an error naming wasm_services[0] and %s [unreachable]", c.callback, err, c.callback)
			}
		}

		h := start(t, rt, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
wasm_services:
  - name: crashing
    singleton: true
    configuration: "service panic-tick tick=1"
    vm_config: {vm_id: c, code: {local: {filename: %[1]q}}}
listeners:
  - name: web
    address: 127.0.0.1:0
    http:
      cluster: echo
      filters:
        - name: f
          configuration: filter
          vm_config: {vm_id: c, code: {local: {filename: %[1]q}}}
`, file))
		if err := h.logs.Wait(t.Context(), "plugin failed"); err != nil {
			t.Fatal(err)
		}
		until(t, func() bool { return h.plugins()[0]["vms"] == 0.0 }, "the service's VM to be gone")
		if r := h.do("GET", h.url("web", "/x"), ""); r.status != 200 {
			t.Errorf("after the service trapped: %d %q", r.status, r.body)
		}
		if r := h.do("GET", "http://"+h.p.AdminAddr().String()+"/healthz", ""); r.status != 200 {
			t.Errorf("healthz after the service trapped: %d", r.status)
		}
	})
}
