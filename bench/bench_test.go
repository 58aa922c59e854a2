// Package bench_test measures anywasm against each runtime's raw path.
//
// Each runtime compiled into the test binary is measured; a cgo runtime's
// file registers its raw path (the runtime's C API called straight from Go)
// in raws. The two cgo runtimes are never linked together: the default build
// measures wazero and wasmtime, -tags anywasm_wasmer measures wazero and
// wasmer.
//
//	go test -run '^$' -bench . -benchmem -count 10 ./bench/ > new.txt
//	benchstat -col /impl new.txt
package bench_test

import (
	"context"
	_ "embed"
	"testing"

	"github.com/anywasm/anywasm/engine"
	_ "github.com/anywasm/anywasm/engine/all"
)

//go:embed testdata/calls.wasm
var callsWasm []byte

// rawImpl is a runtime's raw path for the transition benchmarks.
type rawImpl struct {
	callEmpty, callAdd func(b *testing.B) // host -> guest, one call per op
	hostNop, hostAdd   func(b *testing.B) // guest -> host, one transition per op
}

var raws = map[string]rawImpl{}

// anyEnv is the calls guest instantiated through anywasm.
type anyEnv struct {
	inst                                    engine.Instance
	empty, add, loopNop, loopAdd, loopEmpty engine.Function
}

func hostEnv() engine.HostModule {
	return engine.HostModule{Name: "env", Functions: []engine.HostFunction{
		{Name: "nop", Func: func(context.Context, engine.Caller, []uint64) error { return nil }},
		{Name: "add", Type: engine.FuncType{Params: []engine.ValueType{engine.I32, engine.I64}, Results: []engine.ValueType{engine.I64}},
			Func: func(_ context.Context, _ engine.Caller, s []uint64) error {
				s[0] = uint64(uint32(s[0])) + s[1]
				return nil
			}},
	}}
}

func newAny(tb testing.TB, name string) *anyEnv {
	tb.Helper()
	ctx := context.Background()
	rt, err := engine.Open(name, engine.NewConfig())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = rt.Close(ctx) })
	m, err := rt.Compile(ctx, callsWasm)
	if err != nil {
		tb.Fatal(err)
	}
	imp, err := rt.NewImports(hostEnv())
	if err != nil {
		tb.Fatal(err)
	}
	inst, err := rt.Instantiate(ctx, m, imp)
	if err != nil {
		tb.Fatal(err)
	}
	e := &anyEnv{inst: inst}
	for _, f := range []struct {
		p    *engine.Function
		name string
	}{{&e.empty, "empty"}, {&e.add, "add"}, {&e.loopNop, "loop_nop"}, {&e.loopAdd, "loop_add"}, {&e.loopEmpty, "loop_empty"}} {
		if *f.p, err = inst.Function(f.name); err != nil {
			tb.Fatal(err)
		}
	}
	return e
}

func callLoop(b *testing.B, f engine.Function, stack []uint64) {
	ctx := context.Background()
	for b.Loop() {
		if err := f.Call(ctx, stack); err != nil {
			b.Fatal(err)
		}
	}
}

// transitions calls a loop_* export once with n = b.N, so that ns/op is the
// cost of one guest -> host transition.
func transitions(b *testing.B, f engine.Function) {
	stack := []uint64{uint64(b.N)}
	b.ReportAllocs()
	b.ResetTimer()
	if err := f.Call(context.Background(), stack); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkCall is host -> guest: an empty function, and one with two
// arguments and a result.
func BenchmarkCall(b *testing.B) {
	for _, name := range benchTiers() {
		raw := raws[name]
		b.Run("runtime="+name+"/impl=anywasm/op=empty", func(b *testing.B) {
			callLoop(b, newAny(b, name).empty, make([]uint64, 1))
		})
		if raw.callEmpty != nil {
			b.Run("runtime="+name+"/impl=raw/op=empty", raw.callEmpty)
		}
		b.Run("runtime="+name+"/impl=anywasm/op=add", func(b *testing.B) {
			callLoop(b, newAny(b, name).add, []uint64{1, 2})
		})
		if raw.callAdd != nil {
			b.Run("runtime="+name+"/impl=raw/op=add", raw.callAdd)
		}
	}
}

// BenchmarkHostCall is guest -> host, measured per transition. op=none is
// the guest's loop without a call: subtract it to isolate the transition.
func BenchmarkHostCall(b *testing.B) {
	for _, name := range benchTiers() {
		raw := raws[name]
		b.Run("runtime="+name+"/impl=anywasm/op=none", func(b *testing.B) {
			transitions(b, newAny(b, name).loopEmpty)
		})
		b.Run("runtime="+name+"/impl=anywasm/op=nop", func(b *testing.B) {
			transitions(b, newAny(b, name).loopNop)
		})
		if raw.hostNop != nil {
			b.Run("runtime="+name+"/impl=raw/op=nop", raw.hostNop)
		}
		b.Run("runtime="+name+"/impl=anywasm/op=add", func(b *testing.B) {
			transitions(b, newAny(b, name).loopAdd)
		})
		if raw.hostAdd != nil {
			b.Run("runtime="+name+"/impl=raw/op=add", raw.hostAdd)
		}
	}
}

// TestZeroAllocs asserts that calls in both directions allocate nothing, on
// every runtime in the binary.
func TestZeroAllocs(t *testing.T) {
	ctx := context.Background()
	for _, name := range engine.Runtimes() {
		t.Run(name, func(t *testing.T) {
			e := newAny(t, name)
			for _, c := range []struct {
				name  string
				f     engine.Function
				stack []uint64
			}{
				{"empty", e.empty, make([]uint64, 1)},
				{"add", e.add, []uint64{1, 2}},
				{"loop_nop(100)", e.loopNop, []uint64{100}},
				{"loop_add(100)", e.loopAdd, []uint64{100}},
			} {
				arg := c.stack[0]
				allocs := testing.AllocsPerRun(1000, func() {
					c.stack[0] = arg
					if err := c.f.Call(ctx, c.stack); err != nil {
						t.Fatal(err)
					}
				})
				if allocs != 0 {
					t.Errorf("%s: %v allocations per call, want 0", c.name, allocs)
				}
			}
		})
	}
}
