package abi_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
	_ "github.com/anywasm/anywasm/engine/all"
	"github.com/anywasm/anywasm/internal/testrt"
)

// logSink collects plugin logs.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (s *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (s *logSink) Handle(_ context.Context, r slog.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, abi.LevelName(r.Level)+" "+r.Message)
	return nil
}
func (s *logSink) WithAttrs([]slog.Attr) slog.Handler { return s }
func (s *logSink) WithGroup(string) slog.Handler      { return s }

func (s *logSink) has(sub string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

// hasLine reports whether a line is exactly line.
func (s *logSink) hasLine(line string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lines {
		if l == line {
			return true
		}
	}
	return false
}

// find returns the lines containing sub.
func (s *logSink) find(sub string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range s.lines {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

// forEachRuntime runs f once per runtime compiled into the test binary.
func forEachRuntime(t *testing.T, f func(t *testing.T, rt *engine.Runtime)) {
	for _, name := range engine.Runtimes() {
		t.Run(name, func(t *testing.T) {
			rt, err := engine.Open(name, testrt.Config())
			if err != nil {
				t.Fatal(err)
			}
			// A cleanup, not a defer: cleanups run last-in first-out, so
			// hosts a test registers are closed before their runtime (a
			// host's background deliveries may still be calling in).
			t.Cleanup(func() { _ = rt.Close(context.Background()) })
			f(t, rt)
		})
	}
}

func sharedGuest(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "shared", "guests", name))
	if err != nil {
		t.Skipf("third-party guest %s not found (../shared/guests beside the checkout): %v", name, err)
	}
	return b
}

func newHost(rt *engine.Runtime, logs *logSink) *abi.Host {
	return abi.NewHost(rt, abi.Options{Logger: slog.New(logs)})
}

// TestEnvoyCppExample runs Envoy's own C++ example plugin: the behaviour
// Envoy's verify script checks.
func TestEnvoyCppExample(t *testing.T) {
	wasm := sharedGuest(t, "envoy-wasm-cc-example.wasm")
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		logs := &logSink{}
		h := newHost(rt, logs)
		defer h.Close(ctx)
		p, err := h.Load(ctx, wasm, abi.PluginConfig{Name: "example", RootID: "my_root_id", VMID: "vm"})
		if err != nil {
			t.Fatal(err)
		}
		if p.ABIVersion() != abi.Version021 {
			t.Errorf("ABI version %s, want 0.2.1", p.ABIVersion())
		}
		s, err := p.NewHTTPStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if a, err := s.RequestHeaders(ctx, abi.Headers{{":method", "GET"}, {":path", "/"}, {":authority", "example"}}, true); err != nil || a != abi.ActionContinue {
			t.Fatalf("request headers: %v %v", a, err)
		}
		a, err := s.ResponseHeaders(ctx, abi.Headers{{":status", "200"}, {"content-length", "5"}, {"content-type", "text/html"}}, false)
		if err != nil || a != abi.ActionContinue {
			t.Fatalf("response headers: %v %v (%v)", a, err, s.Err())
		}
		rh := s.ResponseHeaderMap()
		if v, _ := rh.Get("x-wasm-custom"); v != "FOO" { // the plugin says X-Wasm-custom; keys are lower-cased
			t.Errorf("x-wasm-custom = %q; headers %s", v, rh)
		}
		if v, _ := rh.Get("content-type"); v != "text/plain; charset=utf-8" {
			t.Errorf("content-type = %q", v)
		}
		if _, ok := rh.Get("content-length"); ok {
			t.Errorf("content-length not removed: %s", rh)
		}
		out, a, err := s.ResponseBody(ctx, []byte("hello"), true)
		if err != nil || a != abi.ActionContinue || string(out) != "Hello, world" {
			t.Errorf("response body = %q %v %v", out, a, err)
		}
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"onStart", "onCreate", "onDelete"} {
			if !logs.has(want) {
				t.Errorf("no log containing %q in:\n%s", want, logs)
			}
		}
	})
}

// TestEnvoyCppExampleWrongRoot: the example registers its contexts under
// root id my_root_id; the C++ SDK gives any other root id plain contexts
// that change nothing. plugin_root_id is what selects them.
func TestEnvoyCppExampleWrongRoot(t *testing.T) {
	wasm := sharedGuest(t, "envoy-wasm-cc-example.wasm")
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		h := newHost(rt, &logSink{})
		defer h.Close(ctx)
		p, err := h.Load(ctx, wasm, abi.PluginConfig{Name: "example", RootID: "other_root", VMID: "vm"})
		if err != nil {
			t.Fatal(err)
		}
		s, err := p.NewHTTPStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close(ctx)
		if _, err := s.ResponseHeaders(ctx, abi.Headers{{":status", "200"}}, true); err != nil {
			t.Fatal(err)
		}
		if _, ok := s.ResponseHeaderMap().Get("x-wasm-custom"); ok {
			t.Error("root id other_root ran my_root_id's stream context")
		}
	})
}

// TestTinyGoAddHeader runs the TinyGo plugins of mosn's proxy-wasm-go-host,
// ABI 0.2.0 and 0.1.0: each replaces request header Wasm-Context with its
// HTTP context id.
func TestTinyGoAddHeader(t *testing.T) {
	for _, c := range []struct {
		file string
		abi  abi.Version
	}{
		{"tinygo-add-req-header-abi020.wasm", abi.Version020},
		{"tinygo-add-req-header-abi010.wasm", abi.Version010},
	} {
		t.Run(c.abi.String(), func(t *testing.T) {
			wasm := sharedGuest(t, c.file)
			forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
				ctx := context.Background()
				logs := &logSink{}
				h := newHost(rt, logs)
				defer h.Close(ctx)
				p, err := h.Load(ctx, wasm, abi.PluginConfig{Name: "add-header", VMID: "vm"})
				if err != nil {
					t.Fatal(err)
				}
				if p.ABIVersion() != c.abi {
					t.Errorf("ABI %s, want %s", p.ABIVersion(), c.abi)
				}
				for i := 0; i < 3; i++ {
					s, err := p.NewHTTPStream(ctx)
					if err != nil {
						t.Fatal(err)
					}
					a, err := s.RequestHeaders(ctx, abi.Headers{{":path", "/"}, {"wasm-context", "none"}}, true)
					if err != nil || a != abi.ActionContinue {
						t.Fatalf("request headers: %v %v (%v)", a, err, s.Err())
					}
					got, _ := s.RequestHeaderMap().Get("wasm-context")
					if _, err := strconv.Atoi(got); err != nil {
						t.Errorf("Wasm-Context = %q, want a context id; headers %s", got, s.RequestHeaderMap())
					}
					if err := s.Close(ctx); err != nil {
						t.Fatal(err)
					}
				}
			})
		})
	}
}

// TestMosnPlugins loads mosn's own 0.1.0 test plugins (TinyGo and C++) and
// runs request callbacks through them.
func TestMosnPlugins(t *testing.T) {
	for _, file := range []string{"tinygo-mosn-test-abi010.wasm", "emscripten-mosn-test-abi010.wasm"} {
		t.Run(file, func(t *testing.T) {
			wasm := sharedGuest(t, file)
			forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
				ctx := context.Background()
				logs := &logSink{}
				h := newHost(rt, logs)
				defer h.Close(ctx)
				p, err := h.Load(ctx, wasm, abi.PluginConfig{Name: "mosn", VMID: "vm"})
				if err != nil {
					t.Fatal(err)
				}
				if p.ABIVersion() != abi.Version010 {
					t.Errorf("ABI %s", p.ABIVersion())
				}
				s, err := p.NewHTTPStream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := s.RequestHeaders(ctx, abi.Headers{{":path", "/"}, {"k", "v"}}, false); err != nil {
					t.Fatal(err)
				}
				if _, _, err := s.RequestBody(ctx, []byte("body"), true); err != nil {
					t.Fatal(err)
				}
				if s.Err() != nil {
					t.Errorf("plugin failed: %v\nlogs:\n%s", s.Err(), logs)
				}
				if err := s.Close(ctx); err != nil {
					t.Fatalf("close: %v\nlogs:\n%s", err, logs)
				}
			})
		})
	}
}

// TestNoABIMarker: a module with no ABI marker is refused at load with a
// clear error, on every runtime.
func TestNoABIMarker(t *testing.T) {
	wasm := sharedGuest(t, "istio-stats-2020-noabi.wasm")
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		h := newHost(rt, &logSink{})
		defer h.Close(context.Background())
		_, err := h.Load(context.Background(), wasm, abi.PluginConfig{Name: "istio"})
		if err == nil || !strings.Contains(err.Error(), "ABI version marker") || !strings.Contains(err.Error(), "istio") {
			t.Errorf("load = %v, want a refusal naming the missing ABI version marker", err)
		}
	})
}

var _ = bytes.Equal

type slogLoggerT = slog.Logger

func newSlog(s *logSink) *slog.Logger { return slog.New(s) }
