package abi_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/internal/plugins"
)

// serviceHost is a host with ManualTicks and the service plugin's binary.
func serviceHost(t *testing.T, rt *engine.Runtime, opts abi.Options) (*abi.Host, []byte, *logSink) {
	t.Helper()
	logs := &logSink{}
	opts.Logger = newSlog(logs)
	h := abi.NewHost(rt, opts)
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	return h, plugins.Build(t, "service"), logs
}

func mustLoad(t *testing.T, h *abi.Host, wasm []byte, cfg abi.PluginConfig, logs *logSink) *abi.Plugin {
	t.Helper()
	p, err := h.Load(context.Background(), wasm, cfg)
	if err != nil {
		t.Fatalf("load %s: %v\nlogs:\n%s", cfg.Name, err, logs)
	}
	return p
}

func sharedValue(h *abi.Host, vmID, key string) string {
	v, _, _ := h.SharedData(vmID, key)
	return string(v)
}

func metricValue(h *abi.Host, name string) int64 {
	for _, m := range h.Metrics().Snapshot() {
		if m.Name == name {
			return m.Value
		}
	}
	return -1
}

// request runs a request through a filter and returns its request headers
// as the plugin left them.
func request(t *testing.T, p *abi.Plugin, path string) abi.Headers {
	t.Helper()
	ctx := context.Background()
	s, err := p.NewHTTPStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RequestHeaders(ctx, abi.Headers{{Key: ":path", Value: path}}, true); err != nil || s.Err() != nil {
		t.Fatalf("request %s: %v %v", path, err, s.Err())
	}
	hs := s.RequestHeaderMap()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return hs
}

// TestServicePerWorker: a per-worker service (Envoy's WasmService with
// singleton: false) is started on all PoolSize VMs at Load, each with its
// root context and its own ticks, without any stream; a filter of the same
// vm_id and code shares those VMs (as Envoy's per-worker VMs hold both) and
// its requests reach the service over a shared queue; the service answers
// on another queue from its ticks; Close runs proxy_on_done on every VM.
func TestServicePerWorker(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		h, wasm, logs := serviceHost(t, rt, abi.Options{ManualTicks: true})
		svc := mustLoad(t, h, wasm, abi.PluginConfig{Name: "svc", VMID: "pw", Configuration: []byte("service"),
			Service: abi.PerWorkerService, PoolSize: 3}, logs)
		if n := svc.VMs(); n != 3 {
			t.Fatalf("service VMs = %d, want 3 (every VM of its pool at Load)", n)
		}
		if n := abi.RootContexts(svc); n != 3 {
			t.Errorf("root contexts = %d, want 3", n)
		}
		if _, err := svc.NewHTTPStream(ctx); !errors.Is(err, abi.ErrService) {
			t.Errorf("NewHTTPStream on a service: %v, want ErrService", err)
		}
		if _, _, err := svc.NewTCPStream(ctx); !errors.Is(err, abi.ErrService) {
			t.Errorf("NewTCPStream on a service: %v, want ErrService", err)
		}
		// Ticks on every VM, with no stream ever made.
		if n := svc.Tick(ctx); n != 3 {
			t.Fatalf("Tick ran %d ticks, want 3 (one per VM)\n%s", n, logs)
		}
		if got := sharedValue(h, "pw", "service.ticks"); got != "3" {
			t.Errorf("service.ticks = %q, want 3\n%s", got, logs)
		}

		filter := mustLoad(t, h, wasm, abi.PluginConfig{Name: "filter", VMID: "pw", Configuration: []byte("filter")}, logs)
		if n := abi.Groups(h); n != 1 {
			t.Errorf("groups = %d, want 1: the filter shares the per-worker service's VMs", n)
		}
		if n := abi.RootContexts(filter); n != 6 {
			t.Errorf("root contexts = %d, want 6 (service and filter on each of 3 VMs)", n)
		}
		for i := range 4 {
			request(t, filter, "/r"+strconv.Itoa(i))
		}
		eventually(t, func() bool { return sharedValue(h, "pw", "service.items") == "4" },
			"the service to dequeue 4 items (service.items %q)\n%s", sharedValue(h, "pw", "service.items"), logs)
		if got := metricValue(h, "service_items"); got != 4 {
			t.Errorf("service_items = %d, want 4", got)
		}
		for i := range 4 {
			if !logs.hasLine("INFO service: got /r" + strconv.Itoa(i)) {
				t.Errorf("the service did not log /r%d\n%s", i, logs)
			}
		}
		// The other way: each VM's tick enqueues "tick N" for the filter.
		if n := svc.Tick(ctx); n != 3 {
			t.Fatalf("Tick ran %d ticks, want 3", n)
		}
		for _, want := range []string{"INFO filter: got tick 4", "INFO filter: got tick 5", "INFO filter: got tick 6"} {
			eventually(t, func() bool { return logs.hasLine(want) }, "%q\n%s", want, logs)
		}
		if got := request(t, filter, "/after"); get(got, "x-service-items") == "" {
			t.Errorf("no x-service-items: %v", got)
		}

		if err := svc.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if n := len(logs.find("INFO service: done")); n != 3 {
			t.Errorf("proxy_on_done ran %d times for the service, want 3 (one per VM)\n%s", n, logs)
		}
		if n := svc.Tick(ctx); n != 0 {
			t.Errorf("Tick after Close ran %d ticks", n)
		}
		if n := abi.RootContexts(filter); n != 3 {
			t.Errorf("root contexts after the service closed = %d, want 3 (the filter's)", n)
		}
		request(t, filter, "/still") // the filter goes on
		if err := filter.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if n := abi.Groups(h); n != 0 {
			t.Errorf("groups after both closed = %d, want 0", n)
		}
	})
}

// TestServiceSingleton: a singleton service (singleton: true) has one VM
// of its own, which a filter of the same vm_id and code does not share
// however many VMs the filter grows to; they exchange queue items both
// ways and share data.
func TestServiceSingleton(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		h, wasm, logs := serviceHost(t, rt, abi.Options{ManualTicks: true})
		svc := mustLoad(t, h, wasm, abi.PluginConfig{Name: "svc", VMID: "one", Configuration: []byte("service"),
			Service: abi.SingletonService}, logs)
		filter := mustLoad(t, h, wasm, abi.PluginConfig{Name: "filter", VMID: "one", Configuration: []byte("filter")}, logs)
		if n := abi.Groups(h); n != 2 {
			t.Errorf("groups = %d, want 2: a singleton service's VM is its own", n)
		}
		request(t, filter, "/x")
		eventually(t, func() bool { return sharedValue(h, "one", "service.last") == "/x" },
			"service.last = /x\n%s", logs)
		if n := svc.Tick(ctx); n != 1 {
			t.Fatalf("Tick ran %d ticks, want 1", n)
		}
		eventually(t, func() bool { return logs.hasLine("INFO filter: got tick 1") }, "the filter to get tick 1\n%s", logs)
		hs := request(t, filter, "/y")
		if got := get(hs, "x-service-reply"); got != "tick 1" {
			t.Errorf("x-service-reply = %q, want tick 1 (%v)", got, hs)
		}
		if got := get(hs, "x-service-items"); got != "1" {
			t.Errorf("x-service-items = %q, want 1", got)
		}

		// A filter of the same code with a pool of 2, grown to 2 VMs by
		// two streams at once: the service still has one VM.
		wide := mustLoad(t, h, wasm, abi.PluginConfig{Name: "wide", VMID: "one", Configuration: []byte("filter"), PoolSize: 2}, logs)
		s1, err := wide.NewHTTPStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s2, err := wide.NewHTTPStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_ = s1.Close(ctx)
		_ = s2.Close(ctx)
		if n := wide.VMs(); n != 2 {
			t.Errorf("filter VMs = %d, want 2", n)
		}
		if n, r := svc.VMs(), abi.RootContexts(svc); n != 1 || r != 1 {
			t.Errorf("singleton service: %d VMs, %d root contexts; want 1, 1", n, r)
		}

		if _, err := h.Load(ctx, wasm, abi.PluginConfig{Name: "two", VMID: "one", Configuration: []byte("service"),
			Service: abi.SingletonService, PoolSize: 2}); !errors.Is(err, abi.ErrPoolSize) {
			t.Errorf("a singleton service with PoolSize 2: %v, want ErrPoolSize", err)
		}
		if err := svc.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if n := len(logs.find("INFO service: done")); n != 1 {
			t.Errorf("proxy_on_done ran %d times for the service, want 1\n%s", n, logs)
		}
	})
}

// TestServiceTimerTicks: without ManualTicks a service's ticks come from
// timers on each of its VMs, with no stream.
func TestServiceTimerTicks(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		h, wasm, logs := serviceHost(t, rt, abi.Options{})
		mustLoad(t, h, wasm, abi.PluginConfig{Name: "svc", VMID: "timed", Configuration: []byte("service tick=1"),
			Service: abi.PerWorkerService, PoolSize: 2}, logs)
		eventually(t, func() bool {
			n, _ := strconv.Atoi(sharedValue(h, "timed", "service.ticks"))
			return n >= 4
		}, "4 ticks from the timers\n%s", logs)
	})
}

// TestServiceFailures: a service that traps in proxy_on_vm_start or
// proxy_on_configure fails Load, naming the callback and the trap, on any
// of its VMs; one that traps in proxy_on_tick loses that VM and nothing
// else, and with FailReload gets a new one.
func TestServiceFailures(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		h, wasm, logs := serviceHost(t, rt, abi.Options{ManualTicks: true})
		for _, c := range []struct {
			name     string
			cfg      abi.PluginConfig
			callback string
		}{
			{"vm_start", abi.PluginConfig{VMConfiguration: []byte("panic"), Configuration: []byte("service"), Service: abi.SingletonService}, "proxy_on_vm_start"},
			{"configure", abi.PluginConfig{Configuration: []byte("service panic-configure"), Service: abi.PerWorkerService, PoolSize: 2}, "proxy_on_configure"},
		} {
			c.cfg.Name, c.cfg.VMID = "bad-"+c.name, "bad"
			_, err := h.Load(ctx, wasm, c.cfg)
			var pe *abi.PluginError
			if !errors.As(err, &pe) || pe.Callback != c.callback || !strings.Contains(err.Error(), "[unreachable]") {
				t.Errorf("%s: Load = %v, want a PluginError in %s [unreachable]", c.name, err, c.callback)
			}
		}
		if n := abi.Groups(h); n != 0 {
			t.Errorf("groups after failed loads = %d, want 0", n)
		}

		// A trap in a tick: the VM fails, the host and the other plugins go on.
		svc := mustLoad(t, h, wasm, abi.PluginConfig{Name: "svc", VMID: "tk", Configuration: []byte("service panic-tick"),
			Service: abi.PerWorkerService, PoolSize: 2}, logs)
		filter := mustLoad(t, h, wasm, abi.PluginConfig{Name: "filter", VMID: "tk2", Configuration: []byte("filter")}, logs)
		if n := svc.Tick(ctx); n != 2 {
			t.Fatalf("Tick ran %d ticks, want 2", n)
		}
		if n := svc.VMs(); n != 0 {
			t.Errorf("service VMs after both trapped = %d, want 0 (FailClosed: not replaced, as Envoy)", n)
		}
		if !logs.has("failed in proxy_on_tick") && !logs.has("plugin failed") {
			t.Errorf("the trap was not logged\n%s", logs)
		}
		if n := svc.Tick(ctx); n != 0 {
			t.Errorf("Tick on failed VMs ran %d ticks", n)
		}
		request(t, filter, "/ok")
		if err := svc.Close(ctx); err != nil {
			t.Errorf("Close after the traps: %v", err)
		}

		// FailReload: the failed VMs are replaced, as many as the service
		// runs on, with its root context started again on each (its ticks
		// set: Tick finds them).
		re := mustLoad(t, h, wasm, abi.PluginConfig{Name: "re", VMID: "re", Configuration: []byte("service panic-tick"),
			Service: abi.PerWorkerService, PoolSize: 2, FailurePolicy: abi.FailReload}, logs)
		if n := re.Tick(ctx); n != 2 {
			t.Fatalf("Tick ran %d ticks, want 2", n)
		}
		eventually(t, func() bool { return re.VMs() == 2 }, "2 new VMs\n%s", logs)
		if n := re.Tick(ctx); n != 2 {
			t.Errorf("Tick on the new VMs ran %d ticks, want 2", n)
		}
		if err := re.Close(ctx); err != nil {
			t.Fatal(err)
		}
	})
}
