package bench_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/abi/nethttp"
	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/internal/plugins"
)

// middlewareChains are the plugin chains of BenchmarkMiddleware by length:
// those of cmd/bench load.
var middlewareChains = map[int][]string{
	0: nil,
	1: {"headers"},
	3: {"headers", "local_response", "metrics"},
}

// middlewareHeaders are the request's headers besides Host: those cmd/bench
// load sends.
var middlewareHeaders = [][2]string{
	{"User-Agent", "anywasm-bench-load/1"},
	{"Accept", "*/*"},
	{"Accept-Language", "en"},
	{"X-Request-Id", "0123456789abcdef"},
	{"X-Forwarded-For", "192.0.2.1"},
	{"Cookie", "session=abcdef0123456789"},
}

// discardWriter is a ResponseWriter that keeps only its header map, reset
// per request.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(s int)           { w.status = s }

// BenchmarkMiddleware is cmd/bench load's request without the network:
// one GET through abi/nethttp's middleware and a chain of 0, 1 or 3 Go-SDK
// plugins to a handler that answers 64 bytes, serially, on one goroutine.
// The difference between plugins=1 and plugins=0 is what a plugin costs
// the proxy per request when nothing else competes for the CPU; cmd/bench
// load's proxy-cpu-ns/req is the same cost under load.
func BenchmarkMiddleware(b *testing.B) {
	body := []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n")
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	})
	for _, name := range benchRuntimes() {
		for _, n := range []int{0, 1, 3} {
			b.Run("runtime="+name+"/plugins="+strconv.Itoa(n), func(b *testing.B) {
				ctx := context.Background()
				h := abi.NewHost(openRuntime(b, name, engine.NewConfig()), abi.Options{Logger: quietLogger})
				b.Cleanup(func() { _ = h.Close(ctx) })
				var ps []*abi.Plugin
				for _, pn := range middlewareChains[n] {
					p, err := h.Load(ctx, plugins.Build(b, pn), abi.PluginConfig{Name: pn, VMID: "bench-" + pn, PoolSize: 1})
					if err != nil {
						b.Fatal(err)
					}
					ps = append(ps, p)
				}
				var hd http.Handler = next
				if n > 0 {
					hd = nethttp.New(next, nethttp.Plugins(ps...), nethttp.Options{Logger: quietLogger})
				}
				req := httptest.NewRequest("GET", "http://127.0.0.1/bench", nil)
				req.RequestURI = "/bench"
				for _, kv := range middlewareHeaders {
					req.Header.Set(kv[0], kv[1])
				}
				w := &discardWriter{h: http.Header{}}
				b.ReportAllocs()
				for b.Loop() {
					clear(w.h)
					w.status = 0
					hd.ServeHTTP(w, req)
					if w.status != 0 && w.status != http.StatusOK {
						b.Fatalf("status %d", w.status)
					}
				}
			})
		}
	}
}
