package bench_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/internal/plugins"
)

// ccGuest is Envoy's C++ example plugin, built with Emscripten; benchmarks
// that use it are skipped where ../shared/guests is absent.
const ccGuest = "../../shared/guests/envoy-wasm-cc-example.wasm"

// guest is a module for the cold-start and memory benchmarks.
type guest struct {
	name string
	wasm func(testing.TB) []byte
}

var guests = []guest{
	{"tiny", func(testing.TB) []byte { return callsWasm }},
	{"go-headers", func(tb testing.TB) []byte { return plugins.Build(tb, "headers") }},
	{"cc-envoy", func(tb testing.TB) []byte {
		b, err := os.ReadFile(ccGuest)
		if err != nil {
			tb.Skipf("no C++ guest: %v", err)
		}
		return b
	}},
}

var uniq atomic.Uint64

// unique returns wasm with a custom section that makes its bytes (and so its
// hash) new, so that engine.Runtime's per-runtime compile dedup does not
// answer from memory.
func unique(wasm []byte) []byte {
	name := "anywasm-bench-" + strconv.FormatUint(uniq.Add(1), 10)
	var body []byte
	body = binary.AppendUvarint(body, uint64(len(name)))
	body = append(body, name...)
	body = append(body, 0) // a payload: wazero v1.12.0 refuses an empty one at the end of a module
	out := append([]byte(nil), wasm...)
	out = append(out, 0)
	out = binary.AppendUvarint(out, uint64(len(body)))
	return append(out, body...)
}

func openRuntime(tb testing.TB, name string, cfg engine.Config) *engine.Runtime {
	rt, err := engine.Open(name, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = rt.Close(context.Background()) })
	return rt
}

// BenchmarkCompile is a cold compile of each guest (cache=none), and a load
// of the same guest from the runtime's disk compile cache in a fresh runtime
// (cache=disk; the time includes opening that runtime).
func BenchmarkCompile(b *testing.B) {
	ctx := context.Background()
	for _, name := range benchTiers() {
		for _, g := range guests {
			b.Run("runtime="+name+"/guest="+g.name+"/cache=none", func(b *testing.B) {
				wasm := g.wasm(b)
				rt := openRuntime(b, name, engine.NewConfig())
				for b.Loop() {
					m, err := rt.Compile(ctx, unique(wasm))
					if err != nil {
						b.Fatal(err)
					}
					_ = m.Close(ctx)
				}
			})
			if info, _ := engine.Lookup(name); !info.Capabilities.Has(engine.CapCompilationCache) {
				continue // wazero's interpreter: no native code to cache
			}
			b.Run("runtime="+name+"/guest="+g.name+"/cache=disk", func(b *testing.B) {
				wasm := g.wasm(b)
				cfg := engine.NewConfig().WithCompilationCache(b.TempDir())
				warm := openRuntime(b, name, cfg)
				if _, err := warm.Compile(ctx, wasm); err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					rt, err := engine.Open(name, cfg)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := rt.Compile(ctx, wasm); err != nil {
						b.Fatal(err)
					}
					_ = rt.Close(ctx)
				}
			})
		}
	}
}

// BenchmarkInstantiate is the tiny guest instantiated and closed
// (op=instantiate); for the Go-SDK headers plugin, the compiled module
// instantiated and closed with no-op host functions, without running its
// initializer or any proxy-wasm call (op=instantiate); both again in a
// runtime with an instance pool, where the runtime has one
// (op=instantiate-pooled, engine.Config.WithInstancePool); a plugin loaded into a
// new abi.Host from an already compiled module, i.e. instantiate plus
// _initialize, proxy_on_vm_start and proxy_on_configure
// (op=instantiate+init); the same from the plugin's pre-initialized
// snapshot (abi.PluginConfig.Snapshot; made and compiled once, outside the
// loop), i.e. instantiate, a no-op _initialize, proxy_on_vm_start and
// proxy_on_configure (op=snapshot); a new VM in a loaded plugin's pool,
// made for a stream when every VM has one (op=new-vm: instantiate,
// _initialize, the root context's proxy_on_context_create,
// proxy_on_vm_start and proxy_on_configure, and the stream's
// proxy_on_context_create), and the same from the plugin's snapshot
// (op=new-vm-snapshot), which leave out the per-Load costs (hashing the
// module's bytes, the host modules) that op=instantiate+init and
// op=snapshot include, both again where the runtime has an instance pool,
// in one whose slots keep their memory resident (op=new-vm-pooled,
// op=new-vm-snapshot-pooled: engine.Config.WithInstancePoolKeepResident,
// slots reused batch after batch; the new-vm ops report minflt/op, the
// minor page faults per new VM); and a stream taking a VM from a loaded plugin's pool
// and giving it back (op=pool-take: proxy_on_context_create, then
// proxy_on_done, _log, _delete).
func BenchmarkInstantiate(b *testing.B) {
	ctx := context.Background()
	for _, name := range benchTiers() {
		b.Run("runtime="+name+"/guest=tiny/op=instantiate", func(b *testing.B) {
			rt := openRuntime(b, name, engine.NewConfig())
			m, err := rt.Compile(ctx, callsWasm)
			if err != nil {
				b.Fatal(err)
			}
			imp, err := rt.NewImports(hostEnv())
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				inst, err := rt.Instantiate(ctx, m, imp)
				if err != nil {
					b.Fatal(err)
				}
				_ = inst.Close(ctx)
			}
		})
		b.Run("runtime="+name+"/guest=go-headers/op=instantiate", func(b *testing.B) {
			rt := openRuntime(b, name, engine.NewConfig())
			m, err := rt.Compile(ctx, plugins.Build(b, "headers"))
			if err != nil {
				b.Fatal(err)
			}
			imp := stubImports(b, rt, m)
			for b.Loop() {
				inst, err := rt.Instantiate(ctx, m, imp)
				if err != nil {
					b.Fatal(err)
				}
				_ = inst.Close(ctx)
			}
		})
		if info, _ := engine.Lookup(name); info.Capabilities.Has(engine.CapInstancePool) {
			b.Run("runtime="+name+"/guest=tiny/op=instantiate-pooled", func(b *testing.B) {
				instantiatePooled(b, name, callsWasm, func(rt *engine.Runtime, _ *engine.Module) *engine.Imports {
					imp, err := rt.NewImports(hostEnv())
					if err != nil {
						b.Fatal(err)
					}
					return imp
				})
			})
			b.Run("runtime="+name+"/guest=go-headers/op=instantiate-pooled", func(b *testing.B) {
				instantiatePooled(b, name, plugins.Build(b, "headers"), func(rt *engine.Runtime, m *engine.Module) *engine.Imports {
					return stubImports(b, rt, m)
				})
			})
		}
		b.Run("runtime="+name+"/guest=go-headers/op=instantiate+init", func(b *testing.B) {
			wasm := plugins.Build(b, "headers")
			rt := openRuntime(b, name, engine.NewConfig())
			m, err := rt.Compile(ctx, wasm) // held, so every Load reuses the compiled code
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close(ctx)
			for b.Loop() {
				h := abi.NewHost(rt, abi.Options{Logger: quietLogger})
				if _, err := h.Load(ctx, wasm, abi.PluginConfig{Name: "headers", VMID: "bench"}); err != nil {
					b.Fatal(err)
				}
				_ = h.Close(ctx)
			}
		})
		b.Run("runtime="+name+"/guest=go-headers/op=snapshot", func(b *testing.B) {
			rt := openRuntime(b, name, engine.NewConfig())
			h := abi.NewHost(rt, abi.Options{Logger: quietLogger})
			snap, err := h.Snapshot(ctx, plugins.Build(b, "headers"), abi.PluginConfig{Name: "headers", VMID: "bench"})
			_ = h.Close(ctx)
			if err != nil {
				b.Fatal(err)
			}
			m, err := rt.Compile(ctx, snap) // held, so every Load reuses the compiled code
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close(ctx)
			for b.Loop() {
				h := abi.NewHost(rt, abi.Options{Logger: quietLogger})
				if _, err := h.Load(ctx, snap, abi.PluginConfig{Name: "headers", VMID: "bench"}); err != nil {
					b.Fatal(err)
				}
				_ = h.Close(ctx)
			}
		})
		pooled := false
		if info, _ := engine.Lookup(name); info.Capabilities.Has(engine.CapInstancePool) {
			pooled = true
		}
		for _, snapshot := range []bool{false, true} {
			op := "new-vm"
			if snapshot {
				op = "new-vm-snapshot"
			}
			b.Run("runtime="+name+"/guest=go-headers/op="+op, func(b *testing.B) { newVMs(b, name, engine.NewConfig(), snapshot) })
			if pooled {
				cfg := engine.NewConfig().WithInstancePool(newVMPool).WithInstancePoolKeepResident(newVMKeepResident)
				b.Run("runtime="+name+"/guest=go-headers/op="+op+"-pooled", func(b *testing.B) { newVMs(b, name, cfg, snapshot) })
			}
		}
		b.Run("runtime="+name+"/guest=go-headers/op=pool-take", func(b *testing.B) {
			p := requestEnv(b, name, 1)
			b.ReportAllocs()
			for b.Loop() {
				s, err := p.NewHTTPStream(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Close(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// instantiatePooled times op=instantiate in a runtime with an instance pool
// (engine.Config.WithInstancePool) of poolBench slots.
func instantiatePooled(b *testing.B, name string, wasm []byte, imports func(*engine.Runtime, *engine.Module) *engine.Imports) {
	const poolBench = 16
	ctx := context.Background()
	rt := openRuntime(b, name, engine.NewConfig().WithInstancePool(poolBench))
	m, err := rt.Compile(ctx, wasm)
	if err != nil {
		b.Fatal(err)
	}
	imp := imports(rt, m)
	for b.Loop() {
		inst, err := rt.Instantiate(ctx, m, imp)
		if err != nil {
			b.Fatal(err)
		}
		_ = inst.Close(ctx)
	}
}

// stubImports defines every function m imports as a host function that
// does nothing: enough to instantiate m, not to run it.
func stubImports(tb testing.TB, rt *engine.Runtime, m *engine.Module) *engine.Imports {
	var mods []engine.HostModule
	at := map[string]int{}
	seen := map[[2]string]bool{}
	for _, im := range m.Imports() {
		if seen[[2]string{im.Module, im.Name}] {
			continue // Go's wasip1 port imports some functions twice
		}
		seen[[2]string{im.Module, im.Name}] = true
		i, ok := at[im.Module]
		if !ok {
			i = len(mods)
			at[im.Module] = i
			mods = append(mods, engine.HostModule{Name: im.Module})
		}
		mods[i].Functions = append(mods[i].Functions, engine.HostFunction{
			Name: im.Name, Type: im.Type,
			Func: func(context.Context, engine.Caller, []uint64) error { return nil },
		})
	}
	imp, err := rt.NewImports(mods...)
	if err != nil {
		tb.Fatal(err)
	}
	return imp
}

// The instance pool of op=new-vm-pooled and op=new-vm-snapshot-pooled: room
// for a batch of newVMs and the snapshot's probe, and slots that keep 16 MiB
// resident, more than the headers plugin's memory (3 to 8 MiB), so that a
// slot's next VM faults in none of its pages.
const (
	newVMPool         = 64
	newVMKeepResident = 16 << 20
)

// newVMs times the VM a stream makes in a plugin's pool when every VM has a
// stream: batches of vmBatch, each in a plugin loaded (untimed) with room
// for them, in a runtime opened with cfg; with snapshot, the plugin is the
// module's snapshot (Host.Snapshot, the group module of a plugin loaded
// with Snapshot).
func newVMs(b *testing.B, name string, cfg engine.Config, snapshot bool) {
	const vmBatch = 16
	ctx := context.Background()
	wasm := plugins.Build(b, "headers")
	rt := openRuntime(b, name, cfg)
	if snapshot {
		// The snapshot a plugin with Snapshot makes, made once: a plugin
		// loaded with Snapshot in each batch would make (and, its bytes
		// new, compile) its own.
		h := abi.NewHost(rt, abi.Options{Logger: quietLogger})
		snap, err := h.Snapshot(ctx, wasm, abi.PluginConfig{Name: "headers", VMID: "bench"})
		_ = h.Close(ctx)
		if err != nil {
			b.Fatal(err)
		}
		wasm = snap
	}
	m, err := rt.Compile(ctx, wasm) // held, so every Load reuses the compiled code
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close(ctx)
	var h *abi.Host
	var p *abi.Plugin
	var streams []*abi.HTTPStream
	done := func() {
		for _, s := range streams {
			_ = s.Close(ctx)
		}
		streams = streams[:0]
		if h != nil {
			_ = h.Close(ctx)
		}
	}
	defer done()
	fresh := func() {
		done()
		h = abi.NewHost(rt, abi.Options{Logger: quietLogger})
		var err error
		if p, err = h.Load(ctx, wasm, abi.PluginConfig{Name: "headers", VMID: "bench", PoolSize: vmBatch + 1}); err != nil {
			b.Fatal(err)
		}
		s, err := p.NewHTTPStream(ctx) // the loaded VM is busy: the next stream makes one
		if err != nil {
			b.Fatal(err)
		}
		streams = append(streams, s)
	}
	b.StopTimer()
	fresh()
	b.StartTimer()
	// minflt/op: the minor page faults of the new VMs, without those of
	// the untimed loads.
	f0, faultsOK := minorFaults()
	var untimed int64
	for b.Loop() {
		if len(streams) > vmBatch {
			b.StopTimer()
			a, _ := minorFaults()
			fresh()
			z, _ := minorFaults()
			untimed += z - a
			b.StartTimer()
		}
		s, err := p.NewHTTPStream(ctx)
		if err != nil {
			b.Fatal(err)
		}
		streams = append(streams, s)
	}
	if f1, ok := minorFaults(); faultsOK && ok {
		b.ReportMetric(float64(f1-f0-untimed)/float64(b.N), "minflt/op")
	}
}

// usage is the process's resident set and the Go heap in use.
type usage struct{ rss, heap int64 }

// measure collects garbage and reads RSS from /proc/self/statm (rss is -1
// where there is none) and the Go heap from runtime.MemStats.
func measure() usage {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	u := usage{rss: -1, heap: int64(ms.HeapAlloc)}
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			if pages, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				u.rss = pages * int64(os.Getpagesize())
			}
		}
	}
	return u
}

// BenchmarkMemory measures what one VM (per=vm: an instance of the tiny
// guest; a loaded Go-SDK plugin VM, initialized) and one compiled module
// (per=module) cost, directly: the growth of the process's RSS (C and
// guest memory included) and of the Go heap, averaged over n of them,
// reported as rss-B/vm (or /module) and goheap-B/... . -benchmem sees only
// the Go heap, which misses Wasmtime's and Wasmer's native memory and
// their guest memory; wazero's guest memory is on the Go heap, and so is
// the GC ballast of a wasmtime or wasmer instance (engine.Config.
// WithGCBallast, as large as its guest memory and never written: counted
// in goheap-B). ns/op is the time to make n of them.
func BenchmarkMemory(b *testing.B) {
	ctx := context.Background()
	for _, name := range benchRuntimes() {
		b.Run("runtime="+name+"/guest=tiny/per=vm", func(b *testing.B) {
			const n = 50
			rt := openRuntime(b, name, engine.NewConfig())
			m, err := rt.Compile(ctx, callsWasm)
			if err != nil {
				b.Fatal(err)
			}
			imp, err := rt.NewImports(hostEnv())
			if err != nil {
				b.Fatal(err)
			}
			memoryLoop(b, n, "vm", func() func() {
				insts := make([]engine.Instance, n)
				for i := range insts {
					if insts[i], err = rt.Instantiate(ctx, m, imp); err != nil {
						b.Fatal(err)
					}
				}
				return func() {
					for _, inst := range insts {
						_ = inst.Close(ctx)
					}
				}
			})
		})
		b.Run("runtime="+name+"/guest=go-headers/per=vm", func(b *testing.B) {
			const n = 4
			wasm := plugins.Build(b, "headers")
			rt := openRuntime(b, name, engine.NewConfig())
			m, err := rt.Compile(ctx, wasm)
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close(ctx)
			memoryLoop(b, n, "vm", func() func() {
				h := abi.NewHost(rt, abi.Options{Logger: quietLogger})
				for i := range n { // one VMID each: one VM each, sharing the code
					if _, err := h.Load(ctx, wasm, abi.PluginConfig{Name: "headers", VMID: fmt.Sprint("vm", i)}); err != nil {
						b.Fatal(err)
					}
				}
				return func() { _ = h.Close(ctx) }
			})
		})
		for _, g := range guests {
			b.Run("runtime="+name+"/guest="+g.name+"/per=module", func(b *testing.B) {
				n := 1
				if g.name == "tiny" {
					n = 20
				}
				wasm := g.wasm(b)
				rt := openRuntime(b, name, engine.NewConfig())
				memoryLoop(b, n, "module", func() func() {
					mods := make([]*engine.Module, n)
					for i := range mods {
						var err error
						if mods[i], err = rt.Compile(ctx, unique(wasm)); err != nil {
							b.Fatal(err)
						}
					}
					return func() {
						for _, m := range mods {
							_ = m.Close(ctx)
						}
					}
				})
			})
		}
	}
}

// memoryLoop runs make (which makes n objects and returns a function that
// frees them) once per iteration and reports the mean growth per object.
func memoryLoop(b *testing.B, n int, unit string, make func() (free func())) {
	var rss, heap, iters int64
	for b.Loop() {
		b.StopTimer()
		before := measure()
		b.StartTimer()
		free := make()
		b.StopTimer()
		after := measure()
		free()
		b.StartTimer()
		rss += after.rss - before.rss
		heap += after.heap - before.heap
		iters++
	}
	per := float64(iters) * float64(n)
	if rss >= 0 && runtime.GOOS == "linux" {
		b.ReportMetric(float64(rss)/per, "rss-B/"+unit)
	}
	b.ReportMetric(float64(heap)/per, "goheap-B/"+unit)
}
