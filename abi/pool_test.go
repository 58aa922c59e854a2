package abi_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/internal/plugins"
	"github.com/anywasm/anywasm/internal/testrt"
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
		// Another plugin with the same root id gets a root context of its
		// own (cpp-host keys root contexts by plugin, not by root id).
		c, err := h.Load(ctx, wasm, abi.PluginConfig{Name: "c", RootID: "root-a", VMID: "shared"})
		if err != nil || c == a {
			t.Fatalf("a second plugin with root id root-a: %v (the same plugin: %v)", err, c == a)
		}
		defer c.Close(ctx)
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

// TestPoolGrowsOnDemand: a pool makes a VM only when every live VM has a
// stream (streams one after another share one VM, whatever PoolSize says),
// never more than PoolSize, and a burst of concurrent streams is served by
// the VMs there are while more are made.
func TestPoolGrowsOnDemand(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		f := load(t, rt, "headers", abi.PluginConfig{PoolSize: 3}, abi.Options{})
		for range 10 {
			f.close(f.stream())
		}
		if n := f.p.VMs(); n != 1 {
			t.Errorf("after streams one at a time: %d VMs, want 1", n)
		}
		var held []*abi.HTTPStream
		for range 2 {
			held = append(held, f.stream())
		}
		if n := f.p.VMs(); n != 2 {
			t.Errorf("with 2 streams open: %d VMs, want 2", n)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		for range 50 {
			wg.Go(func() {
				s := f.stream()
				mu.Lock()
				held = append(held, s)
				mu.Unlock()
			})
		}
		wg.Wait()
		if n := f.p.VMs(); n != 3 {
			t.Errorf("with 52 streams open and PoolSize 3: %d VMs, want 3", n)
		}
		for _, s := range held {
			f.requestHeaders(s, reqHeaders(4), true)
			f.close(s)
		}
	})
}

// TestPoolSizeBounded: a PoolSize over MaxPoolSize, or one the machine's
// memory cannot hold at the runtime's memory limit, is refused at Load.
func TestPoolSizeBounded(t *testing.T) {
	rt, err := engine.Open("wazero", testrt.Config().WithMemoryLimitPages(65536)) // 4 GiB per VM
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(context.Background())
	h := abi.NewHost(rt, abi.Options{Logger: newSlog(&logSink{})})
	defer h.Close(context.Background())
	wasm := plugins.Build(t, "headers")
	for _, n := range []int{abi.MaxPoolSize + 1, abi.MaxPoolSize} {
		_, err := h.Load(context.Background(), wasm, abi.PluginConfig{Name: fmt.Sprint("p", n), VMID: fmt.Sprint(n), PoolSize: n})
		if !errors.Is(err, abi.ErrPoolSize) {
			t.Errorf("PoolSize %d: %v, want ErrPoolSize", n, err)
		}
	}
}
