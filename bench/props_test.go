package bench_test

import (
	"context"
	_ "embed"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
)

// propsWasm reads nine attributes in its request headers callback
// (testdata/props.wat): request.path, .method, .host, source.address,
// request.time, plugin_name, connection.id, request.headers.x-request-id
// and request.headers (the whole map, serialized),
// trapping unless each is found.
//
//go:embed testdata/props.wasm
var propsWasm []byte

// propsEnv is the props guest loaded on one runtime, and the StreamInfo
// its streams read (as abi/nethttp fills it for a request).
func propsEnv(b testing.TB, name string) (*abi.Plugin, *abi.StreamInfo) {
	ctx := context.Background()
	rt, err := engine.Open(name, engine.NewConfig())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = rt.Close(ctx) })
	h := abi.NewHost(rt, abi.Options{Logger: quietLogger})
	b.Cleanup(func() { _ = h.Close(ctx) })
	p, err := h.Load(ctx, propsWasm, abi.PluginConfig{Name: "props", VMID: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	return p, &abi.StreamInfo{SourceAddress: "192.0.2.10:54321", DestinationAddress: "198.51.100.1:8080",
		ConnectionID: 42, Protocol: "HTTP/1.1"}
}

// propsRequest is one stream through the props guest: context create,
// request headers (nine proxy_get_property), done, log, delete.
func propsRequest(b testing.TB, ctx context.Context, p *abi.Plugin, info *abi.StreamInfo, req abi.Headers) {
	s, err := p.NewHTTPStreamInfo(ctx, info)
	if err != nil {
		b.Fatal(err)
	}
	req = append(req[:0], requestHeaders...)
	if a, err := s.RequestHeaders(ctx, req, true); err != nil || a != abi.ActionContinue || s.Err() != nil {
		b.Fatalf("request headers: %v %v %v", a, err, s.Err())
	}
	if err := s.Close(ctx); err != nil {
		b.Fatal(err)
	}
}

// TestPropertyAllocs asserts that reading attributes allocates nothing on
// the host: the nine reads of a stream, with the stream itself, make no
// Go heap allocation (averaged, after a warm-up, for wazero's rare guest
// memory growth).
func TestPropertyAllocs(t *testing.T) {
	for _, name := range engine.Runtimes() {
		t.Run(name, func(t *testing.T) {
			p, info := propsEnv(t, name)
			ctx := context.Background()
			req := make(abi.Headers, 0, 16)
			for range 2000 {
				propsRequest(t, ctx, p, info, req)
			}
			if allocs := testing.AllocsPerRun(500, func() { propsRequest(t, ctx, p, info, req) }); allocs > 0.2 {
				t.Errorf("%.2f allocations per stream of nine attribute reads, want 0", allocs)
			}
		})
	}
}

// BenchmarkProperties is one stream that reads nine attributes.
func BenchmarkProperties(b *testing.B) {
	for _, name := range benchRuntimes() {
		b.Run("runtime="+name+"/reads=9", func(b *testing.B) {
			p, info := propsEnv(b, name)
			ctx := context.Background()
			req := make(abi.Headers, 0, 16)
			b.ReportAllocs()
			for b.Loop() {
				propsRequest(b, ctx, p, info, req)
			}
		})
	}
}
