package bench_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/abi/nethttp"
	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/internal/loadreq"
	"github.com/anywasm/anywasm/internal/plugins"
)

// middlewareConns is the concurrency of BenchmarkMiddleware's parallel
// mode: cmd/bench load's connections.
const middlewareConns = 16

// coldBytes is the buffer BenchmarkMiddleware's mode=serial-cold writes
// through before every request: 4 MiB, four times the L2 cache per core of
// the machines of results/ (1 MiB on AMD EPYC, 2 MiB on Intel Xeon).
const coldBytes = 4 << 20

// BenchmarkMiddleware is cmd/bench load's request without the network:
// one GET through abi/nethttp's middleware and a chain of 0, 1 or 3 Go-SDK
// plugins to a handler that answers 64 bytes; mode=serial on one goroutine,
// mode=parallel from 16 goroutines (cmd/bench load's connections) over the
// same chain, every plugin with pool_size 1, as the proxy's default.
// The difference between plugins=1 and plugins=0 is what a plugin costs
// the proxy per request when nothing else competes for the CPU; cmd/bench
// load's proxy-cpu-ns/req is the same cost under load. cpu-ns/op is the
// process's CPU time per request (Unix): unlike ns/op it counts the
// garbage collector's work on the other cores, as proxy-cpu-ns/req does.
// mode=serial-cold is mode=serial with the data caches made cold before
// every request, as a proxy's are by the kernel's network stack and the
// rest of the process between two requests: the loop first writes one byte
// in every 64-byte line of a buffer of coldBytes (evicting L1 and L2, and
// part of L3); plugins=0/mode=serial-cold is that eviction's own cost, so
// the difference of plugins=1 from it is a plugin's cost with cold caches.
func BenchmarkMiddleware(b *testing.B) {
	body := loadreq.Body()
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	})
	serve := func(b *testing.B, hd http.Handler) func() {
		req := httptest.NewRequest("GET", "http://127.0.0.1"+loadreq.Path, nil)
		req.RequestURI = loadreq.Path
		for _, kv := range loadreq.Headers {
			req.Header.Set(kv[0], kv[1])
		}
		w := loadreq.NewDiscardWriter()
		return func() {
			w.Reset()
			hd.ServeHTTP(w, req)
			if w.Status != 0 && w.Status != http.StatusOK {
				b.Errorf("status %d", w.Status)
			}
		}
	}
	// chain loads runtime name's chain of n plugins once for both modes;
	// the parent benchmark's cleanup closes it.
	type key struct {
		name string
		n    int
	}
	chains := map[key]http.Handler{}
	chain := func(sb *testing.B, name string, n int) http.Handler {
		if n == 0 {
			return next // no filter: nothing of the runtime's is involved
		}
		if hd, ok := chains[key{name, n}]; ok {
			return hd
		}
		ctx := context.Background()
		rt, err := engine.Open(name, engine.NewConfig())
		if err != nil {
			sb.Fatal(err)
		}
		b.Cleanup(func() { _ = rt.Close(ctx) })
		h := abi.NewHost(rt, abi.Options{Logger: quietLogger})
		b.Cleanup(func() { _ = h.Close(ctx) })
		var ps []*abi.Plugin
		for _, pn := range loadreq.Chains[n] {
			p, err := h.Load(ctx, plugins.Build(sb, pn), abi.PluginConfig{Name: pn, VMID: "bench-" + pn, PoolSize: 1})
			if err != nil {
				sb.Fatal(err)
			}
			ps = append(ps, p)
		}
		hd := nethttp.New(next, nethttp.Plugins(ps...), nethttp.Options{Logger: quietLogger})
		chains[key{name, n}] = hd
		return hd
	}
	for _, name := range benchRuntimes() {
		for _, n := range []int{0, 1, 3} {
			for _, mode := range []string{"serial", "serial-cold", "parallel"} {
				b.Run("runtime="+name+"/plugins="+strconv.Itoa(n)+"/mode="+mode, func(b *testing.B) {
					hd := chain(b, name, n)
					b.ResetTimer() // the first mode to run loads the chain
					b.ReportAllocs()
					var cold []byte
					if mode == "serial-cold" {
						cold = make([]byte, coldBytes)
						for i := 0; i < len(cold); i += 64 {
							cold[i] = 1 // faulted in before the timer and the CPU clock start
						}
					}
					cpu0, cpuOK := processCPU()
					switch mode {
					case "serial":
						one := serve(b, hd)
						for b.Loop() {
							one()
						}
					case "serial-cold":
						one := serve(b, hd)
						for b.Loop() {
							for i := 0; i < len(cold); i += 64 {
								cold[i]++
							}
							one()
						}
					default:
						// cmd/bench load's 16 connections, each plugin with
						// pool_size 1, as the proxy's default.
						b.SetParallelism((middlewareConns + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
						b.RunParallel(func(pb *testing.PB) {
							one := serve(b, hd)
							for pb.Next() {
								one()
							}
						})
					}
					if cpu1, ok := processCPU(); cpuOK && ok {
						b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/op")
					}
				})
			}
		}
	}
}
