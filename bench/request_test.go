package bench_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/internal/plugins"
)

// requestHeaders is a typical request: the pseudo-headers and seven others.
var requestHeaders = abi.Headers{
	{Key: ":method", Value: "GET"}, {Key: ":path", Value: "/api/v1/items?limit=10"}, {Key: ":authority", Value: "example.com"},
	{Key: "user-agent", Value: "anywasm-bench/1.0"}, {Key: "accept", Value: "application/json"},
	{Key: "accept-encoding", Value: "gzip, br"}, {Key: "x-request-id", Value: "5f1c7f04-3a51-4f6e-9a4c-3c8f2b7f7d10"},
	{Key: "x-forwarded-for", Value: "192.0.2.10"}, {Key: "cookie", Value: "session=abcdef0123456789"}, {Key: "te", Value: "trailers"},
}

var responseHeaders = abi.Headers{{Key: ":status", Value: "200"}, {Key: "content-type", Value: "application/json"}}

// quietLogger drops the plugin's per-request info log, as a production
// proxy at level warn would.
var quietLogger = slog.New(slog.DiscardHandler)

// requestEnv is the headers plugin loaded on one runtime.
func requestEnv(b testing.TB, name string, pool int) *abi.Plugin {
	return requestPlugin(b, name, "headers", pool)
}

// requestPlugins are the plugins of the Request family: the Go-SDK
// headers plugin (reads the 10 headers, adds two) and a third-party TinyGo
// plugin from ../shared/guests (mosn's add-req-header: replaces
// Wasm-Context with the context's number, a new value every request).
var requestPlugins = []string{"headers", "tinygo-add-header"}

// requestPlugin is one of requestPlugins loaded on one runtime; the TinyGo
// one is skipped when ../shared/guests is not beside the checkout.
func requestPlugin(b testing.TB, name, plugin string, pool int) *abi.Plugin {
	ctx := context.Background()
	var wasm []byte
	switch plugin {
	case "headers":
		wasm = plugins.Build(b, "headers")
	case "tinygo-add-header":
		var err error
		if wasm, err = os.ReadFile(filepath.Join("..", "..", "shared", "guests", "tinygo-add-req-header-abi020.wasm")); err != nil {
			b.Skipf("the TinyGo plugin (../shared/guests beside the checkout): %v", err)
		}
	default:
		b.Fatalf("no plugin %s", plugin)
	}
	rt, err := engine.Open(name, engine.NewConfig())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = rt.Close(ctx) })
	h := abi.NewHost(rt, abi.Options{Logger: quietLogger})
	b.Cleanup(func() { _ = h.Close(ctx) })
	p, err := h.Load(ctx, wasm, abi.PluginConfig{Name: plugin, VMID: "bench", PoolSize: pool})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// oneRequest is the whole plugin request path: context create, request
// headers (the plugin reads the 10 headers and adds one), response headers,
// done, log, delete. req and resp are reused by the caller, as a proxy
// reuses its buffers; their capacity leaves room for the header the plugin
// adds.
func oneRequest(b testing.TB, ctx context.Context, p *abi.Plugin, req, resp abi.Headers) {
	s, err := p.NewHTTPStream(ctx)
	if err != nil {
		b.Fatal(err)
	}
	req = append(req[:0], requestHeaders...)
	if a, err := s.RequestHeaders(ctx, req, true); err != nil || a != abi.ActionContinue {
		b.Fatalf("request headers: %v %v", a, err)
	}
	resp = append(resp[:0], responseHeaders...)
	if _, err := s.ResponseHeaders(ctx, resp, true); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRequest is one HTTP request through the Go-SDK headers plugin,
// serially on one VM, in parallel over GOMAXPROCS VMs (Envoy's one VM per
// worker), and in parallel over one VM (mode=parallel-1vm: every
// goroutine's streams convoy on that VM's lock, as in a proxy whose plugin
// has pool_size 1).
func BenchmarkRequest(b *testing.B) {
	for _, name := range benchTiers() {
		for _, plugin := range requestPlugins {
			b.Run("runtime="+name+"/plugin="+plugin+"/mode=serial", func(b *testing.B) {
				p := requestPlugin(b, name, plugin, 1)
				ctx := context.Background()
				req, resp := make(abi.Headers, 0, 16), make(abi.Headers, 0, 8)
				b.ReportAllocs()
				for b.Loop() {
					oneRequest(b, ctx, p, req, resp)
				}
			})
			for _, m := range []struct {
				mode string
				pool int
			}{{"parallel", runtime.GOMAXPROCS(0)}, {"parallel-1vm", 1}} {
				b.Run("runtime="+name+"/plugin="+plugin+"/mode="+m.mode, func(b *testing.B) {
					parallelRequests(b, requestPlugin(b, name, plugin, m.pool))
				})
			}
		}
	}
}

// TestRequestAllocs asserts what a request through the headers plugin
// and through the TinyGo plugin allocates on the Go heap: nothing. The
// headers a plugin adds are carved from the VM's chunk of pairs (abi's
// keyValue), a new 4 KiB chunk every few hundred pairs. wazero's guest memory lives on the Go heap, so
// its rare growth is allowed for by averaging over many requests after a
// warm-up.
func TestRequestAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the Go-SDK plugin")
	}
	for _, name := range engine.Runtimes() {
		for _, plugin := range requestPlugins {
			t.Run(name+"/"+plugin, func(t *testing.T) {
				p := requestPlugin(t, name, plugin, 1)
				ctx := context.Background()
				req, resp := make(abi.Headers, 0, 16), make(abi.Headers, 0, 8)
				for i := 0; i < 2000; i++ {
					oneRequest(t, ctx, p, req, resp)
				}
				allocs := testing.AllocsPerRun(500, func() { oneRequest(t, ctx, p, req, resp) })
				if allocs > 0.2 {
					t.Errorf("%.2f allocations per request, want 0", allocs)
				}
			})
		}
	}
}

// bodySize is the body of BenchmarkRequestBody.
const bodySize = 64 << 10

// bodyRequest is one request through the Go-SDK body plugin: headers, then
// a 64 KiB request body in one chunk that the plugin reads, upper-cases
// and writes back, then response headers, then close.
func bodyRequest(b testing.TB, ctx context.Context, p *abi.Plugin, body []byte, req, resp abi.Headers) {
	s, err := p.NewHTTPStream(ctx)
	if err != nil {
		b.Fatal(err)
	}
	req = append(req[:0], requestHeaders...)
	if _, err := s.RequestHeaders(ctx, req, false); err != nil {
		b.Fatal(err)
	}
	out, a, err := s.RequestBody(ctx, body, true)
	if err != nil || a != abi.ActionContinue || len(out) != len(body) {
		b.Fatalf("request body: %v %v, %d bytes", a, err, len(out))
	}
	resp = append(resp[:0], responseHeaders...)
	if _, err := s.ResponseHeaders(ctx, resp, true); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRequestBody is one request with a 64 KiB body through the
// Go-SDK body plugin, serially and in parallel over GOMAXPROCS VMs.
func BenchmarkRequestBody(b *testing.B) {
	body := make([]byte, bodySize)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	load := func(b *testing.B, name string, pool int) *abi.Plugin {
		ctx := context.Background()
		h := abi.NewHost(openRuntime(b, name, engine.NewConfig()), abi.Options{Logger: quietLogger})
		b.Cleanup(func() { _ = h.Close(ctx) })
		p, err := h.Load(ctx, plugins.Build(b, "body"), abi.PluginConfig{Name: "body", VMID: "bench", PoolSize: pool})
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	for _, name := range benchRuntimes() {
		b.Run("runtime="+name+"/plugin=body/body=64KiB/mode=serial", func(b *testing.B) {
			p := load(b, name, 1)
			ctx := context.Background()
			req, resp := make(abi.Headers, 0, 16), make(abi.Headers, 0, 8)
			b.SetBytes(bodySize)
			b.ReportAllocs()
			for b.Loop() {
				bodyRequest(b, ctx, p, body, req, resp)
			}
		})
		b.Run("runtime="+name+"/plugin=body/body=64KiB/mode=parallel", func(b *testing.B) {
			p := load(b, name, 0)
			ctx := context.Background()
			b.SetBytes(bodySize)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				req, resp := make(abi.Headers, 0, 16), make(abi.Headers, 0, 8)
				for pb.Next() {
					bodyRequest(b, ctx, p, body, req, resp)
				}
			})
		})
	}
}

// BenchmarkThroughput is BenchmarkRequest's parallel mode against
// GOMAXPROCS (procs=1, 2, 4, capped at twice the logical CPUs), one VM per
// proc: with -cpu unset, ns/op falling as procs grows is the scaling.
func BenchmarkThroughput(b *testing.B) {
	for _, name := range benchRuntimes() {
		for _, procs := range []int{1, 2, 4} {
			if procs > 1 && procs > 2*runtime.NumCPU() {
				continue
			}
			b.Run(fmt.Sprintf("runtime=%s/plugin=headers/procs=%d", name, procs), func(b *testing.B) {
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
				parallelRequests(b, requestEnv(b, name, procs))
			})
		}
	}
}

// parallelRequests runs oneRequest through p from b.RunParallel's
// goroutines, each with its own header slices.
func parallelRequests(b *testing.B, p *abi.Plugin) {
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := make(abi.Headers, 0, 16), make(abi.Headers, 0, 8)
		for pb.Next() {
			oneRequest(b, ctx, p, req, resp)
		}
	})
}
