package abi_test

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/internal/memcheck"
	"github.com/anywasm/anywasm/internal/plugins"
)

//go:embed testdata/lifecycle.wasm
var lifecycleWasm []byte

// countingHandler counts log records and keeps nothing, so that logging
// takes its whole path without the test's memory growing with the logs.
type countingHandler struct{ n *atomic.Int64 }

func (countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(context.Context, slog.Record) error {
	h.n.Add(1)
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

// cycleStream runs one request through p: request headers, response
// headers, close. If header is set, the plugin must have copied :path to it.
func cycleStream(t *testing.T, ctx context.Context, p *abi.Plugin, header string) {
	t.Helper()
	s, err := p.NewHTTPStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RequestHeaders(ctx, abi.Headers{{":method", "GET"}, {":path", "/cycle"}, {":authority", "example.com"}}, true); err != nil || s.Err() != nil {
		t.Fatalf("request headers: %v %v", err, s.Err())
	}
	if header != "" {
		if got := get(s.RequestHeaderMap(), header); got != "/cycle" {
			t.Fatalf("%s = %q, want /cycle", header, got)
		}
	}
	if _, err := s.ResponseHeaders(ctx, abi.Headers{{":status", "200"}}, true); err != nil || s.Err() != nil {
		t.Fatalf("response headers: %v %v", err, s.Err())
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// skipMemoryTest skips a test that measures memory where it cannot.
func skipMemoryTest(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: many load/close cycles")
	}
	if memcheck.RaceEnabled {
		t.Skip("the race detector's own memory grows with every allocation: heap and RSS measurements mean nothing")
	}
}

// wasmerFuncrefs is what Wasmer 2.0 keeps, in resident memory, of every
// instance for good: an entry in its engine-wide FuncDataRegistry for each
// imported function and each table element, keyed by the instance's
// address and never removed (wasmerio/wasmer#2638, fixed in Wasmer 2.1,
// which no wasmer-go release ships; engine/wasmer documents it). About 100
// bytes per function, fewer when the allocator gives a new instance the
// address of a freed one. The RSS limits allow for it on wasmer; the Go
// heap must stay flat there too.
func wasmerFuncrefs(rt string, vms, funcs int) int64 {
	if rt != "wasmer" {
		return 0
	}
	return int64(vms) * int64(funcs) * 100
}

// TestLoadCloseCycles loads and closes a plugin 1,000 times on every
// runtime, each time creating its VM (Load does) and running a stream
// through it, and checks that the Go heap, the resident set and the
// goroutines stay flat: whatever one load keeps after its plugin is closed
// adds up 1,000 times. The plugin (testdata/lifecycle.wat) leaves every kind
// of host state a plugin can: WASI output, logs, a metric, shared data, a
// shared queue, a tick, a property, headers. Each cycle also loads it with a
// configuration it refuses, which must leave nothing either.
//
// The code is compiled again in every cycle on wazero and wasmtime (the last
// handle to it is closed with the plugin); Wasmer 2.0 cannot free compiled
// code (see engine/wasmer), so engine/wasmer compiles each distinct module
// once per process and this test compiles it once there.
func TestLoadCloseCycles(t *testing.T) {
	skipMemoryTest(t)
	const cycles = 1000
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		var logs atomic.Int64
		h := abi.NewHost(rt, abi.Options{Logger: slog.New(countingHandler{&logs})})
		t.Cleanup(func() { _ = h.Close(context.Background()) })
		cfg := abi.PluginConfig{Name: "lifecycle", RootID: "lifecycle", VMID: "lifecycle", Configuration: []byte("configured")}
		// With no configuration the plugin refuses to load: in a group of its
		// own, and beside a plugin that stays loaded in its VM.
		refused := abi.PluginConfig{Name: "refused", VMID: "refused"}
		anchor, err := h.Load(ctx, lifecycleWasm, abi.PluginConfig{Name: "anchor", RootID: "anchor", VMID: "anchor", Configuration: []byte("configured")})
		if err != nil {
			t.Fatal(err)
		}
		refusedRoot := abi.PluginConfig{Name: "refused-root", RootID: "refused", VMID: "anchor"}
		cycle := func() {
			p, err := h.Load(ctx, lifecycleWasm, cfg)
			if err != nil {
				t.Fatal(err)
			}
			cycleStream(t, ctx, p, "x-lifecycle")
			if err := p.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := h.Load(ctx, lifecycleWasm, refused); err == nil || !strings.Contains(err.Error(), "refused its configuration") {
				t.Fatalf("a plugin refusing its configuration: %v", err)
			}
			if _, err := h.Load(ctx, lifecycleWasm, refusedRoot); err == nil || !strings.Contains(err.Error(), "refused its configuration") {
				t.Fatalf("a plugin refusing its configuration in a VM of another: %v", err)
			}
		}
		const warmup = cycles / 10 // pools, caches and maps reach their size
		for range warmup {
			cycle()
		}
		before := memcheck.Take()
		for range cycles {
			cycle()
		}
		after := memcheck.Take()
		// Neither the closed plugin nor the refused ones leave their code or
		// root contexts.
		if n := abi.Groups(h); n != 1 {
			t.Errorf("the host holds %d VM groups, want 1 (the anchor's)", n)
		}
		if n := abi.RootContexts(anchor); n != 1 {
			t.Errorf("the anchor's VM has %d root contexts, want 1", n)
		}
		// Three lines per cycle: "initialized" (stdout) twice, "configured";
		// two for the anchor.
		if n, want := logs.Load(), int64(3*(warmup+cycles)+2); n != want {
			t.Errorf("%d log lines, want %d", n, want)
		}
		if mv, ok := h.Metrics().Get("lifecycle_streams"); !ok || mv.Value != warmup+cycles {
			t.Errorf("lifecycle_streams = %+v, want %d", mv, warmup+cycles)
		}
		// The leaks this found cost, per cycle, 8 KiB of heap and 19 KiB of
		// RSS on wazero (its compiled host modules) and a whole VM on every
		// runtime (the shared queue's owners): 1,000 of the smallest are
		// 8 MiB of heap.
		memcheck.Check(t, rt.Name(), cycles, before, after, memcheck.Limits{
			Heap: 1 << 20, RSS: 4<<20 + wasmerFuncrefs(rt.Name(), 2*cycles, 12), Goroutines: 2})
	})
}

// TestLoadCloseCyclesGoSDK is TestLoadCloseCycles with a real Go-SDK plugin
// (Go's wasip1 runtime and the SDK in every VM), 100 times. A second plugin
// of the same code in another vm_id stays loaded, so the module stays
// compiled: the cycles measure load, VM, stream and close, not a compile of
// 2.7 MB of code each time.
func TestLoadCloseCyclesGoSDK(t *testing.T) {
	skipMemoryTest(t)
	const cycles = 100
	wasm := plugins.Build(t, "headers")
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		var logs atomic.Int64
		h := abi.NewHost(rt, abi.Options{Logger: slog.New(countingHandler{&logs})})
		t.Cleanup(func() { _ = h.Close(context.Background()) })
		if _, err := h.Load(ctx, wasm, abi.PluginConfig{Name: "anchor", VMID: "anchor"}); err != nil {
			t.Fatal(err)
		}
		cfg := abi.PluginConfig{Name: "headers", VMID: "cycle"}
		cycle := func() {
			p, err := h.Load(ctx, wasm, cfg)
			if err != nil {
				t.Fatal(err)
			}
			cycleStream(t, ctx, p, "")
			if err := p.Close(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for range cycles / 10 {
			cycle()
		}
		before := memcheck.Take()
		for range cycles {
			cycle()
		}
		after := memcheck.Take()
		if n := abi.Groups(h); n != 1 {
			t.Errorf("the host holds %d VM groups, want 1 (the anchor)", n)
		}
		// A leaked VM of this plugin keeps megabytes (its Go heap): 100 of
		// them are hundreds of MiB; wazero's compiled host modules kept 12
		// KiB of heap per cycle. RSS varies by up to 5 MiB from run to run.
		// The plugin has 1,705 table elements and 21 imports.
		memcheck.Check(t, rt.Name(), cycles, before, after, memcheck.Limits{
			Heap: 512 << 10, RSS: 8<<20 + wasmerFuncrefs(rt.Name(), cycles, 1705+21), Goroutines: 2})
	})
}

// TestLoadCloseConcurrent loads and closes plugins of one vm_id and code
// from several goroutines at once, so that loads keep meeting the closes of
// the group's last plugin (and the refusals of its first): a load must
// never join a group being closed, and every plugin it returns must run.
func TestLoadCloseConcurrent(t *testing.T) {
	rounds := 200
	if testing.Short() {
		rounds = 50
	}
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		var logs atomic.Int64
		h := abi.NewHost(rt, abi.Options{Logger: slog.New(countingHandler{&logs})})
		t.Cleanup(func() { _ = h.Close(context.Background()) })
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				cfg := abi.PluginConfig{Name: fmt.Sprint("p", w), RootID: fmt.Sprint("root", w), VMID: "shared", Configuration: []byte("configured")}
				for i := range rounds {
					if w == 3 && i%2 == 0 { // a refused plugin now and then
						if _, err := h.Load(ctx, lifecycleWasm, abi.PluginConfig{Name: "refused", RootID: "refused", VMID: "shared"}); err == nil || !strings.Contains(err.Error(), "refused its configuration") {
							t.Errorf("a plugin refusing its configuration: %v", err)
							return
						}
						continue
					}
					p, err := h.Load(ctx, lifecycleWasm, cfg)
					if err != nil {
						t.Errorf("load %d of %s: %v", i, cfg.Name, err)
						return
					}
					s, err := p.NewHTTPStream(ctx)
					if err != nil {
						t.Errorf("stream %d of %s: %v", i, cfg.Name, err)
						return
					}
					if _, err := s.RequestHeaders(ctx, abi.Headers{{":path", "/"}}, true); err != nil || s.Err() != nil {
						t.Errorf("request %d of %s: %v %v", i, cfg.Name, err, s.Err())
					}
					_ = s.Close(ctx)
					if err := p.Close(ctx); err != nil {
						t.Errorf("close %d of %s: %v", i, cfg.Name, err)
						return
					}
				}
			})
		}
		wg.Wait()
		if n := abi.Groups(h); n != 0 {
			t.Errorf("the host holds %d VM groups after every plugin closed", n)
		}
	})
}
