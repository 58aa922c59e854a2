package abi_test

import (
	"context"
	_ "embed"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
)

//go:embed testdata/hostile.wasm
var hostileWasm []byte

// TestHostilePointers: every hostcall given a pointer or length outside
// guest memory answers INVALID_MEMORY_ACCESS (WASI: EFAULT) and the host
// goes on; a hostcall anywasm lacks answers UNIMPLEMENTED.
func TestHostilePointers(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		logs := &logSink{}
		h := newHost(rt, logs)
		defer h.Close(ctx)
		p, err := h.Load(ctx, hostileWasm, abi.PluginConfig{Name: "hostile", Configuration: nil})
		if err != nil {
			t.Fatal(err)
		}
		s, err := p.NewHTTPStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.RequestHeaders(ctx, abi.Headers{{":path", "/"}}, true); err != nil || s.Err() != nil {
			t.Fatalf("%v %v", err, s.Err())
		}
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
		var statuses string
		logs.mu.Lock()
		for _, l := range logs.lines {
			if rest, ok := strings.CutPrefix(l, "INFO "); ok && len(rest) > 20 && rest[0] < 32 {
				statuses = rest
			}
		}
		logs.mu.Unlock()
		const n = 30
		if len(statuses) != n {
			t.Fatalf("got %d statuses %v, want %d; logs:\n%s", len(statuses), []byte(statuses), n, logs)
		}
		for i := 0; i < n-2; i++ {
			if abi.Status(statuses[i]) != abi.StatusInvalidMemoryAccess {
				t.Errorf("hostcall %d returned %s, want INVALID_MEMORY_ACCESS", i, abi.Status(statuses[i]))
			}
		}
		if abi.Status(statuses[n-2]) != abi.StatusUnimplemented {
			t.Errorf("proxy_anywasm_lacks_this returned %s, want UNIMPLEMENTED", abi.Status(statuses[n-2]))
		}
		if statuses[n-1] != 21 {
			t.Errorf("fd_write with a bad iovec returned errno %d, want 21 (EFAULT)", statuses[n-1])
		}
	})
}

// TestHostileAllocator: an allocator that returns 0 or a pointer outside
// memory, that calls a hostcall needing the allocator, or that changes the
// header map being serialized for it (this panicked the hostcall: index
// out of range; FuzzHostcalls found it), fails the plugin with an error
// that says so; nothing is written.
func TestHostileAllocator(t *testing.T) {
	for mode, want := range map[string]string{"x": "allocator returned 0", "xx": "outside its",
		"xxx":  "env.proxy_get_header_map_pairs called from inside the allocator (proxy_on_memory_allocate)",
		"xxxx": "env.proxy_add_header_map_value called from inside the allocator (proxy_on_memory_allocate)"} {
		forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
			ctx := context.Background()
			h := newHost(rt, &logSink{})
			defer h.Close(ctx)
			p, err := h.Load(ctx, hostileWasm, abi.PluginConfig{Name: "hostile", Configuration: []byte(mode)})
			if err != nil {
				t.Fatal(err)
			}
			s, err := p.NewHTTPStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(ctx)
			a, _ := s.RequestHeaders(ctx, abi.Headers{{":path", "/"}}, true)
			if s.Err() == nil || !strings.Contains(s.Err().Error(), want) || a != abi.ActionPause || s.LocalResponse().Status != 503 {
				t.Errorf("mode %q: %s %v, want an error containing %q and a 503", mode, a, s.Err(), want)
			}
		})
	}
}

//go:embed testdata/initcall.wasm
var initcallWasm []byte

// TestInitializerRestricted: in the module initializer only proxy_log (and
// WASI) may be called, as in proxy-wasm-cpp-host.
func TestInitializerRestricted(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		logs := &logSink{}
		h := newHost(rt, logs)
		defer h.Close(context.Background())
		_, err := h.Load(context.Background(), initcallWasm, abi.PluginConfig{Name: "initcall"})
		if err == nil || !strings.Contains(err.Error(), "proxy_set_tick_period_milliseconds called from the module's initializer") {
			t.Errorf("load = %v", err)
		}
		if !logs.has("INFO initializing") {
			t.Errorf("proxy_log in the initializer did not log:\n%s", logs)
		}
	})
}
