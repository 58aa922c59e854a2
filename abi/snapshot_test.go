package abi_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/internal/plugins"
)

// countingRandom is random_get's source, counting the reads.
type countingRandom struct {
	mu sync.Mutex
	n  int
}

func (c *countingRandom) Read(b []byte) (int, error) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return rand.Read(b)
}

func (c *countingRandom) reads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// TestSnapshotVMsRunNoInitializer: with Snapshot, the Go runtime's
// initializer (which draws its seeds with random_get) runs once, when the
// plugin is loaded; the VMs made later run none of it. Without Snapshot
// each VM runs it.
func TestSnapshotVMsRunNoInitializer(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		for _, snapshot := range []bool{false, true} {
			rnd := &countingRandom{}
			f := load(t, rt, "headers", abi.PluginConfig{Snapshot: snapshot, PoolSize: 3}, abi.Options{Random: rnd})
			atLoad := rnd.reads()
			if atLoad == 0 {
				t.Fatalf("snapshot %v: the initializer drew no random bytes: the test cannot tell initializers apart", snapshot)
			}
			// Three streams at once: three VMs.
			var streams []*abi.HTTPStream
			for range 3 {
				s := f.stream()
				h := abi.Headers{}
				h.Add(":path", "/")
				f.requestHeaders(s, h, true)
				streams = append(streams, s)
			}
			for _, s := range streams {
				f.close(s)
			}
			if got := abi.VMs(f.p); got != 3 {
				t.Fatalf("snapshot %v: %d VMs, want 3", snapshot, got)
			}
			more := rnd.reads() - atLoad
			switch {
			case snapshot && more != 0:
				t.Errorf("VMs made from the snapshot drew random bytes %d times: their initializer ran", more)
			case !snapshot && more == 0:
				t.Errorf("VMs made without a snapshot drew no random bytes: the test cannot tell initializers apart")
			}
		}
	})
}

// TestSnapshotRefusals: modules a snapshot cannot capture fail Load with
// the reason; Snapshot with AllowPrecompiled is refused.
func TestSnapshotRefusals(t *testing.T) {
	passive, err := os.ReadFile("../engine/enginetest/testdata/snapshot_refused.wasm")
	if err != nil {
		t.Fatal(err)
	}
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		logs := &logSink{}
		h := newHost(rt, logs)
		defer h.Close(ctx)
		_, err := h.Load(ctx, passive, abi.PluginConfig{Name: "passive", Snapshot: true})
		if !errors.Is(err, engine.ErrNotSnapshotable) || !strings.Contains(err.Error(), `plugin "passive"`) || !strings.Contains(err.Error(), "memory.init") {
			t.Errorf("Load(passive data, Snapshot) = %v, want ErrNotSnapshotable naming the plugin and memory.init", err)
		}
		if abi.Groups(h) != 0 {
			t.Errorf("a refused snapshot left %d groups", abi.Groups(h))
		}
		// An initializer that fails fails the snapshot's Load as it fails
		// a plain one, with the restriction named.
		initcall, err := os.ReadFile("testdata/initcall.wasm")
		if err != nil {
			t.Fatal(err)
		}
		_, plainErr := h.Load(ctx, initcall, abi.PluginConfig{Name: "initcall"})
		_, snapErr := h.Load(ctx, initcall, abi.PluginConfig{Name: "initcall", Snapshot: true})
		if plainErr == nil || snapErr == nil || !strings.Contains(snapErr.Error(), `abi: plugin "initcall" failed in _initialize`) ||
			!strings.Contains(snapErr.Error(), "proxy_set_tick_period_milliseconds called from the module's initializer") {
			t.Errorf("a failing initializer: Load = %v; with Snapshot %v", plainErr, snapErr)
		}
		if n := len(logs.find("initializing")); n != 2 {
			t.Errorf("the initializer logged %d times, want 2 (once per Load):\n%s", n, logs)
		}
		_, err = h.Load(ctx, plugins.Build(t, "headers"), abi.PluginConfig{Name: "pre", Snapshot: true, AllowPrecompiled: true})
		if err == nil || !strings.Contains(err.Error(), "Snapshot and AllowPrecompiled cannot be combined") {
			t.Errorf("Load(Snapshot, AllowPrecompiled) = %v", err)
		}
	})
}

// TestSnapshotGroups: a snapshot is made per environment (which the
// initializer may read), and snapshot VMs are not shared with others.
func TestSnapshotGroups(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		h := newHost(rt, &logSink{})
		defer h.Close(ctx)
		wasm := plugins.Build(t, "headers")
		load := func(name string, snapshot bool, env map[string]string) {
			t.Helper()
			if _, err := h.Load(ctx, wasm, abi.PluginConfig{Name: name, VMID: "vm", Snapshot: snapshot, Environment: env}); err != nil {
				t.Fatal(err)
			}
		}
		load("a", false, map[string]string{"K": "1"})
		load("b", false, map[string]string{"K": "2"}) // as before: one group
		load("c", true, map[string]string{"K": "1"})
		load("d", true, map[string]string{"K": "1"})
		load("e", true, map[string]string{"K": "2"})
		if got := abi.Groups(h); got != 3 {
			t.Errorf("%d groups, want 3: the plain one, and a snapshot per environment", got)
		}
	})
}

// TestHostSnapshot: Host.Snapshot's module is a plugin of its own, which
// runs no initializer.
func TestHostSnapshot(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		rnd := &countingRandom{}
		logs := &logSink{}
		h := abi.NewHost(rt, abi.Options{Logger: slogLogger(logs), Random: rnd})
		defer h.Close(ctx)
		snap, err := h.Snapshot(ctx, plugins.Build(t, "headers"), abi.PluginConfig{Name: "headers"})
		if err != nil {
			t.Fatal(err)
		}
		before := rnd.reads()
		p, err := h.Load(ctx, snap, abi.PluginConfig{Name: "headers", VMID: "snap"})
		if err != nil {
			t.Fatal(err)
		}
		if rnd.reads() != before {
			t.Errorf("loading the snapshot module ran its initializer")
		}
		s, err := p.NewHTTPStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		hd := abi.Headers{}
		hd.Add(":path", "/snap")
		if _, err := s.RequestHeaders(ctx, hd, true); err != nil || s.Err() != nil {
			t.Fatalf("request headers: %v, %v\n%s", err, s.Err(), logs)
		}
		_ = s.Close(ctx)
		if len(logs.find("/snap")) == 0 {
			t.Errorf("the snapshot plugin did not log the request:\n%s", logs)
		}
	})
}

// zeroRandom gives random_get zeros: both runs of a guest draw the same.
type zeroRandom struct{}

func (zeroRandom) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// TestSnapshotThirdPartyGuests: third-party guests with an initializer
// (Emscripten, TinyGo, Rust SDKs) load from a snapshot and do for a
// request, on two VMs, what they do without one: the same action,
// headers and logs.
func TestSnapshotThirdPartyGuests(t *testing.T) {
	guests := []string{"envoy-wasm-cc-example.wasm", "emscripten-mosn-test-abi010.wasm", "rust-sdk-http-headers-abi021.wasm",
		"tinygo-add-req-header-abi010.wasm", "tinygo-add-req-header-abi020.wasm", "tinygo-mosn-test-abi010.wasm"}
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		for _, name := range guests {
			wasm := sharedGuest(t, name)
			run := func(snapshot bool) string {
				ctx := context.Background()
				logs := &logSink{}
				clock := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
				h := abi.NewHost(rt, abi.Options{Logger: slogLogger(logs), Random: zeroRandom{}, Now: func() time.Time { return clock }})
				defer h.Close(ctx)
				p, err := h.Load(ctx, wasm, abi.PluginConfig{Name: "g", RootID: "my_root_id", VMID: "vm", PoolSize: 2, Snapshot: snapshot})
				if err != nil {
					t.Fatalf("%s, snapshot %v: %v", name, snapshot, err)
				}
				var out []string
				var streams []*abi.HTTPStream
				for i := range 2 { // two streams at once: two VMs
					s, err := p.NewHTTPStream(ctx)
					if err != nil {
						t.Fatal(err)
					}
					streams = append(streams, s)
					hd := abi.Headers{}
					hd.Add(":path", "/x")
					hd.Add(":method", "GET")
					hd.Add(":authority", "example.com")
					a, err := s.RequestHeaders(ctx, hd, true)
					out = append(out, fmt.Sprintf("stream %d: %v %v %v %v", i, a, err, s.Err(), s.RequestHeaderMap()))
				}
				for _, s := range streams {
					_ = s.Close(ctx)
				}
				if got := abi.VMs(p); got != 2 {
					t.Errorf("%s, snapshot %v: %d VMs, want 2", name, snapshot, got)
				}
				return strings.Join(out, "\n") + "\n" + logs.String()
			}
			plain, snap := run(false), run(true)
			if plain != snap {
				t.Errorf("%s: with a snapshot:\n%s\nwithout:\n%s", name, snap, plain)
			}
		}
	})
}

// TestSnapshotInitializerTimeout: the snapshot's initializer runs under the
// plugin's CallTimeout, as a plain VM's does.
func TestSnapshotInitializerTimeout(t *testing.T) {
	spin, err := os.ReadFile("testdata/spininit.wasm")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range engine.Runtimes() {
		t.Run(name, func(t *testing.T) {
			info, _ := engine.Lookup(name)
			if !info.Capabilities.Has(engine.CapInterrupt) {
				t.Skipf("%s cannot interrupt a guest", name)
			}
			ctx := context.Background()
			rt, err := engine.Open(name, engine.NewConfig().WithInterruptOnContextDone(true))
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Close(ctx)
			h := newHost(rt, &logSink{})
			defer h.Close(ctx)
			_, err = h.Load(ctx, spin, abi.PluginConfig{Name: "spin", Snapshot: true, CallTimeout: 100 * time.Millisecond})
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `plugin "spin" failed in _initialize`) {
				t.Errorf("Load = %v, want the initializer's deadline exceeded", err)
			}
		})
	}
}
