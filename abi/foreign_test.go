package abi_test

import (
	"bytes"
	"compress/zlib"
	"context"
	_ "embed"
	"encoding/hex"
	"io"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
)

//go:embed testdata/foreign.wasm
var foreignWasm []byte

// callForeign runs one request through the foreign plugin with headers and
// returns its request headers after.
func callForeign(f *fixture, hdr ...string) abi.Headers {
	f.t.Helper()
	s := f.stream()
	defer f.close(s)
	h := abi.Headers{{":path", "/p"}, {":method", "GET"}}
	for i := 0; i+1 < len(hdr); i += 2 {
		h = append(h, abi.Header{Key: hdr[i], Value: hdr[i+1]})
	}
	f.requestHeaders(s, h, true)
	return s.RequestHeaderMap()
}

// TestEnvoyForeignFunctions: Envoy's compress and uncompress (zlib),
// declare_property (a readonly property is set once per stream),
// clear_route_cache, and PluginConfig.ForeignFunctions (not listed:
// NOT_FOUND), from a Go-SDK plugin.
func TestEnvoyForeignFunctions(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		f := load(t, rt, "foreign", abi.PluginConfig{}, abi.Options{ForeignFunctions: abi.EnvoyForeignFunctions()})
		h := callForeign(f, "x-function", "compress", "x-input", "hello hello hello")
		z, err := hex.DecodeString(get(h, "x-output-hex"))
		if err != nil {
			t.Fatalf("compress: %v %v", h, err)
		}
		r, err := zlib.NewReader(bytes.NewReader(z))
		if err != nil {
			t.Fatalf("compress gave no zlib: %v", err)
		}
		if b, _ := io.ReadAll(r); string(b) != "hello hello hello" {
			t.Errorf("compress round trip: %q", b)
		}
		if h := callForeign(f, "x-function", "uncompress", "x-input-hex", hex.EncodeToString(z)); get(h, "x-output") != "hello hello hello" {
			t.Errorf("uncompress: %v", h)
		}
		if h := callForeign(f, "x-function", "uncompress", "x-input", "not zlib"); get(h, "x-status") != "unknown status code: 3" {
			t.Errorf("uncompress of garbage: %v, want SERIALIZATION_FAILURE", h)
		}
		if h := callForeign(f, "x-function", "clear_route_cache"); get(h, "x-status") != "<none>" {
			t.Errorf("clear_route_cache: %v", h)
		}
		if h := callForeign(f, "x-function", "no_such_function"); !strings.Contains(get(h, "x-status"), "not found") {
			t.Errorf("unknown function: %v", h)
		}
		// declare_property(name "ro", readonly true): a second declaration
		// is BAD_ARGUMENT; the property is set once per stream.
		args := "0a02726f1001" // DeclarePropertyArguments{name: "ro", readonly: true}
		if h := callForeign(f, "x-function", "declare_property", "x-input-hex", args); get(h, "x-status") != "<none>" {
			t.Errorf("declare_property: %v", h)
		}
		if h := callForeign(f, "x-function", "declare_property", "x-input-hex", args); !strings.Contains(get(h, "x-status"), "bad argument") {
			t.Errorf("declare_property again: %v", h)
		}
		if h := callForeign(f, "x-function", "declare_property", "x-input-hex", "0aff"); !strings.Contains(get(h, "x-status"), "bad argument") {
			t.Errorf("declare_property of a broken message: %v", h)
		}
		s := f.stream()
		f.requestHeaders(s, abi.Headers{{":path", "/"}, {"x-set-property", "ro=1"}, {"x-function", "clear_route_cache"}}, true)
		if got := get(s.RequestHeaderMap(), "x-set-status"); got != "ok" {
			t.Errorf("first set of a readonly property: %s", got)
		}
		f.close(s)

		only := load(t, rt, "foreign", abi.PluginConfig{Name: "only", ForeignFunctions: []string{"compress"}},
			abi.Options{ForeignFunctions: abi.EnvoyForeignFunctions()})
		if h := callForeign(only, "x-function", "uncompress", "x-input", "x"); !strings.Contains(get(h, "x-status"), "not found") {
			t.Errorf("a function the plugin may not call: %v", h)
		}
		if h := callForeign(only, "x-function", "compress", "x-input", "x"); get(h, "x-output-hex") == "<none>" {
			t.Errorf("a function the plugin may call: %v", h)
		}
	})
}

// TestDeclaredReadonlyProperty: a readonly property set twice in one
// stream: the second is BAD_ARGUMENT (Envoy's CelState::setValue).
func TestDeclaredReadonlyProperty(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		f := load(t, rt, "foreign", abi.PluginConfig{}, abi.Options{ForeignFunctions: abi.EnvoyForeignFunctions()})
		callForeign(f, "x-function", "declare_property", "x-input-hex", "0a02726f1001")
		s := f.stream()
		defer f.close(s)
		f.requestHeaders(s, abi.Headers{{":path", "/"}, {"x-set-property", "ro=1"}, {"x-function", "clear_route_cache"}}, false)
		if got := get(s.RequestHeaderMap(), "x-set-status"); got != "ok" {
			t.Fatalf("first set: %s", got)
		}
		f.requestHeaders(s, abi.Headers{{":path", "/"}, {"x-set-property", "ro=2"}, {"x-function", "clear_route_cache"}}, false)
		if got := get(s.RequestHeaderMap(), "x-set-status"); !strings.Contains(got, "bad argument") {
			t.Errorf("second set of a readonly property: %s", got)
		}
	})
}

// TestOnForeignFunction: Plugin.CallForeignFunction runs
// proxy_on_foreign_function with the arguments as buffer type 8, which is
// NOT_FOUND outside it.
func TestOnForeignFunction(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		logs := &logSink{}
		h := abi.NewHost(rt, abi.Options{Logger: slogLogger(logs)})
		t.Cleanup(func() { _ = h.Close(context.Background()) })
		p, err := h.Load(context.Background(), foreignWasm, abi.PluginConfig{Name: "ff"})
		if err != nil {
			t.Fatal(err)
		}
		n, err := p.CallForeignFunction(context.Background(), 7, []byte("event-data"))
		if n != 1 || err != nil || !logs.hasLine("INFO event-data") {
			t.Errorf("CallForeignFunction: %d %v; logs:\n%s", n, err, logs)
		}
		s, err := p.NewHTTPStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.RequestHeaders(context.Background(), abi.Headers{{":path", "/"}}, true); err != nil {
			t.Fatal(err)
		}
		_ = s.Close(context.Background())
		if !logs.hasLine("INFO status 1") {
			t.Errorf("buffer 8 outside a foreign function call: logs:\n%s", logs)
		}
		// A plugin without the callback: nothing runs.
		q, err := h.Load(context.Background(), edgeWasm, abi.PluginConfig{Name: "edge", VMID: "edge", Configuration: []byte("g")})
		if err != nil {
			t.Fatal(err)
		}
		if n, err := q.CallForeignFunction(context.Background(), 1, nil); n != 0 || err != nil {
			t.Errorf("without proxy_on_foreign_function: %d %v", n, err)
		}
	})
}

// TestPropertyLimits: what one context keeps of proxy_set_property, and
// what a root context declares, is bounded (Limits.MaxProperties,
// MaxPropertyBytes): a call over a bound is refused and changes nothing.
func TestPropertyLimits(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		f := load(t, rt, "foreign", abi.PluginConfig{}, abi.Options{ForeignFunctions: abi.EnvoyForeignFunctions(),
			Limits: abi.Limits{MaxProperties: 2, MaxPropertyBytes: 8}})
		s := f.stream()
		defer f.close(s)
		for _, c := range []struct{ set, want string }{
			{"a=1", "ok"},             // 2 bytes
			{"b=1", "ok"},             // 4
			{"c=1", "internal"},       // a third name
			{"a=1234567", "internal"}, // 10 bytes
			{"a=12345", "ok"},         // 8
		} {
			f.requestHeaders(s, abi.Headers{{":path", "/"}, {"x-set-property", c.set}, {"x-function", "clear_route_cache"}}, false)
			if got := get(s.RequestHeaderMap(), "x-set-status"); !strings.Contains(got, c.want) {
				t.Errorf("set %s: %s, want %s", c.set, got, c.want)
			}
		}
		for i, c := range []struct{ args, want string }{
			{"0a0178", "<none>"}, // name "x"
			{"0a0179", "<none>"}, // "y"
			{"0a017a", "bad argument"},
		} {
			if h := callForeign(f, "x-function", "declare_property", "x-input-hex", c.args); !strings.Contains(get(h, "x-status"), c.want) {
				t.Errorf("declaration %d: %v, want %s", i, h, c.want)
			}
		}
	})
}
