package abi_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/internal/plugins"
)

// TestSharedVM: two plugins with the same vm_id and code share the VMs,
// each with its own root context (plugin_root_id answers differently), and
// share shared data.
func TestSharedVM(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		h := abi.NewHost(rt, abi.Options{Logger: newSlog(&logSink{})})
		defer h.Close(ctx)
		wasm := plugins.Build(t, "props")
		a, err := h.Load(ctx, wasm, abi.PluginConfig{Name: "a", RootID: "root-a", VMID: "shared"})
		if err != nil {
			t.Fatal(err)
		}
		b, err := h.Load(ctx, wasm, abi.PluginConfig{Name: "b", RootID: "root-b", VMID: "shared"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Load(ctx, wasm, abi.PluginConfig{Name: "c", RootID: "root-a", VMID: "shared"}); err == nil {
			t.Error("a second plugin with root id root-a loaded into the same VM")
		}
		for _, c := range []struct {
			p    *abi.Plugin
			root string
		}{{a, "root-a"}, {b, "root-b"}, {a, "root-a"}} {
			s, err := c.p.NewHTTPStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.RequestHeaders(ctx, abi.Headers{{":path", "/"}}, true); err != nil || s.Err() != nil {
				t.Fatal(err, s.Err())
			}
			if got := get(s.RequestHeaderMap(), "x-root-id"); got != c.root {
				t.Errorf("x-root-id = %s, want %s", got, c.root)
			}
			if err := s.Close(ctx); err != nil {
				t.Fatal(err)
			}
		}
		// Closing one plugin leaves the other running.
		if err := a.Close(ctx); err != nil {
			t.Fatal(err)
		}
		s, err := b.NewHTTPStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close(ctx)
		if _, err := s.RequestHeaders(ctx, abi.Headers{{":path", "/"}}, true); err != nil || s.Err() != nil {
			t.Fatal(err, s.Err())
		}
	})
}

// TestConcurrentStreams: many goroutines, each running requests through a
// pool of VMs (-race checks the host's own synchronization); shared data is
// consistent at the end.
func TestConcurrentStreams(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		h := abi.NewHost(rt, abi.Options{Logger: newSlog(&logSink{})})
		defer h.Close(ctx)
		p, err := h.Load(ctx, plugins.Build(t, "shared"), abi.PluginConfig{Name: "shared", VMID: "conc", PoolSize: 3})
		if err != nil {
			t.Fatal(err)
		}
		const workers, perWorker = 6, 40
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < perWorker; i++ {
					s, err := p.NewHTTPStream(ctx)
					if err != nil {
						errs <- err
						return
					}
					_, err = s.RequestHeaders(ctx, abi.Headers{{":path", fmt.Sprintf("/%d/%d", w, i)}}, true)
					if err == nil {
						err = s.Err()
					}
					if err == nil {
						err = s.Close(ctx)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// Every increment is a CAS on data the VMs share; the plugin retries
		// once, so under contention some may be lost, never invented.
		v, _, ok := h.SharedData("conc", "hits")
		var n int
		fmt.Sscan(string(v), &n)
		if !ok || n < 1 || n > workers*perWorker {
			t.Errorf("hits = %q", v)
		}
		t.Logf("%d of %d increments landed", n, workers*perWorker)
	})
}
