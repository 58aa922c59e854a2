//go:build cgo

package wasmtime_test

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/engine/enginetest"
	"github.com/anywasm/anywasm/engine/wasmtime"
)

func TestConformance(t *testing.T) { enginetest.RunTiers(t, wasmtime.Name) }

// poolSize is the instance pool of the conformance run with a pool: more
// instances than any test of the suite holds at once.
const poolSize = 64

// TestConformancePool runs the suite, on every tier, with every runtime
// using Wasmtime's pooling allocator.
func TestConformancePool(t *testing.T) {
	info, err := engine.Lookup(wasmtime.Name)
	if err != nil {
		t.Fatal(err)
	}
	pool := func(c engine.Config) engine.Config { return c.WithInstancePool(poolSize) }
	resident := func(c engine.Config) engine.Config { return pool(c).WithInstancePoolKeepResident(1 << 20) }
	for _, tier := range info.Tiers {
		t.Run("tier="+tier, func(t *testing.T) { enginetest.RunWith(t, wasmtime.Name+":"+tier, pool) })
		t.Run("tier="+tier+"/keep-resident", func(t *testing.T) { enginetest.RunWith(t, wasmtime.Name+":"+tier, resident) })
	}
}

// TestPoolKeepResidentReset checks that an instance made in a slot another
// instance of the same module used sees the module's memory, not what the
// other left, when the slot keeps its memory resident: the image restored
// (the data segment, the byte the start function writes), the host's writes
// and growth undone, within and beyond the resident bytes; an instance of
// another module in between sees zeros; and after a guest that grew and
// wrote its memory and then trapped, its module's next instance sees the
// data segment, one page and its global's initial value. With one slot,
// every instance reuses it.
func TestPoolKeepResidentReset(t *testing.T) {
	ctx := context.Background()
	for _, keep := range []uint64{0, engine.PageSize, 16 << 20} {
		t.Run(fmt.Sprintf("keep=%d", keep), func(t *testing.T) {
			cfg := engine.NewConfig().WithInstancePool(1)
			if keep > 0 {
				cfg = cfg.WithInstancePoolKeepResident(keep)
			}
			rt := open(t, cfg)
			if got := rt.Config().InstancePoolKeepResident(); got != keep {
				t.Fatalf("InstancePoolKeepResident() = %d, want %d", got, keep)
			}
			m, err := rt.Compile(ctx, enginetest.Guest("snapshot"))
			if err != nil {
				t.Fatal(err)
			}
			imp, err := rt.NewImports(engine.HostModule{Name: "env", Functions: []engine.HostFunction{{
				Name: "hit", Type: engine.FuncType{Params: []engine.ValueType{engine.I32}},
				Func: func(context.Context, engine.Caller, []uint64) error { return nil },
			}}})
			if err != nil {
				t.Fatal(err)
			}
			small, err := rt.Compile(ctx, enginetest.Guest("small"))
			if err != nil {
				t.Fatal(err)
			}
			values, err := rt.Compile(ctx, enginetest.Guest("values"))
			if err != nil {
				t.Fatal(err)
			}
			vimp, err := rt.NewImports(valuesEnv())
			if err != nil {
				t.Fatal(err)
			}
			junk := bytes.Repeat([]byte{0xa5}, 3*engine.PageSize)
			for round := range 3 {
				inst, err := rt.Instantiate(ctx, m, imp)
				if err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				mem := inst.Memory()
				if mem.Size() != engine.PageSize {
					t.Fatalf("round %d: memory of %d bytes, want the module's 1 page", round, mem.Size())
				}
				b, ok := mem.Read(0, engine.PageSize)
				if !ok {
					t.Fatal("read of the first page failed")
				}
				want := make([]byte, engine.PageSize)
				copy(want[100:], "seed!") // the data segment; "!" is the start function's
				if !bytes.Equal(b, want) {
					i := 0
					for i < len(b) && b[i] == want[i] {
						i++
					}
					t.Fatalf("round %d: memory differs from the module's at byte %d: %#x, want %#x", round, i, b[i], want[i])
				}
				// Leave junk everywhere, in a memory grown to 4 pages.
				if _, ok := mem.Grow(3); !ok {
					t.Fatal("Grow(3) failed")
				}
				if !mem.Write(0, junk) || !mem.Write(3*engine.PageSize, junk[:engine.PageSize]) {
					t.Fatal("writes failed")
				}
				if err := inst.Close(ctx); err != nil {
					t.Fatal(err)
				}
				// Another module in the slot: a memory of zeros, then junk
				// for the next round.
				other, err := rt.Instantiate(ctx, small, nil)
				if err != nil {
					t.Fatalf("round %d, the small module: %v", round, err)
				}
				if b, ok := other.Memory().Read(0, engine.PageSize); !ok || !bytes.Equal(b, make([]byte, engine.PageSize)) {
					t.Fatalf("round %d: the small module's memory is not zero after the other module's instance", round)
				}
				if !other.Memory().Write(0, junk[:engine.PageSize]) {
					t.Fatal("write failed")
				}
				_ = other.Close(ctx)
				// A guest that grows and writes its memory itself, then
				// traps: its slot's next instance sees the module's memory
				// and a fresh global.
				vi, err := rt.Instantiate(ctx, values, vimp)
				if err != nil {
					t.Fatalf("round %d, the values module: %v", round, err)
				}
				if got := callResult(t, vi, "size"); got != 1 {
					t.Fatalf("round %d: values memory of %d pages, want 1", round, got)
				}
				if b, ok := vi.Memory().Read(1000, 8); !ok || string(b) != "anywasm\x00" {
					t.Fatalf("round %d: values memory at 1000 = %q, want its data segment", round, b)
				}
				if got := callResult(t, vi, "counter"); got != 0 {
					t.Fatalf("round %d: counter %d in a new instance, want 0", round, got)
				}
				_ = callResult(t, vi, "grow", 2)
				_ = callResult(t, vi, "store", 1000, 0x41414141)
				_ = callResult(t, vi, "store", 2*engine.PageSize+8, 0x41414141)
				if err := call(vi, "trap_unreachable"); err == nil {
					t.Fatal("trap_unreachable returned")
				}
				_ = vi.Close(ctx)
			}
		})
	}
}

// TestPoolExhausted checks that a pool of 2 refuses a third instance with
// ErrPoolExhausted naming its size, and makes one again once an instance is
// closed, also after instances that failed to instantiate.
func TestPoolExhausted(t *testing.T) {
	ctx := context.Background()
	rt := open(t, engine.NewConfig().WithInstancePool(2))
	m, err := rt.Compile(ctx, enginetest.Guest("small"))
	if err != nil {
		t.Fatal(err)
	}
	var insts []engine.Instance
	for range 2 {
		inst, err := rt.Instantiate(ctx, m, nil)
		if err != nil {
			t.Fatal(err)
		}
		insts = append(insts, inst)
	}
	for range 3 {
		_, err = rt.Instantiate(ctx, m, nil)
		if !errors.Is(err, engine.ErrPoolExhausted) || !strings.Contains(err.Error(), " 2 instances") {
			t.Fatalf("third Instantiate = %v, want ErrPoolExhausted naming the pool of 2", err)
		}
	}
	if err := insts[0].Close(ctx); err != nil {
		t.Fatal(err)
	}
	inst, err := rt.Instantiate(ctx, m, nil)
	if err != nil {
		t.Fatalf("Instantiate after a Close: %v", err)
	}
	if err := call(inst, "answer", 0); err != nil {
		t.Fatal(err)
	}
	// A start function that traps gives its slot back.
	sm, err := rt.Compile(ctx, enginetest.Guest("start"))
	if err != nil {
		t.Fatal(err)
	}
	_ = inst.Close(ctx)
	for range 3 {
		if _, err := rt.Instantiate(ctx, sm, nil); err == nil || errors.Is(err, engine.ErrPoolExhausted) {
			t.Fatalf("Instantiate of a trapping start function = %v, want its trap", err)
		}
	}
	if _, err := rt.Instantiate(ctx, m, nil); err != nil {
		t.Fatalf("Instantiate after failed instantiations: %v", err)
	}
}

// TestPoolLimits checks what a pool refuses: a module with two memories
// (Wasmtime's Compile names the limit of a slot, one memory), and a pool
// larger than MaxInstancePool.
func TestPoolLimits(t *testing.T) {
	ctx := context.Background()
	rt := open(t, engine.NewConfig().WithInstancePool(4))
	if _, err := rt.Compile(ctx, hostWasm); err == nil || !strings.Contains(err.Error(), "memories count of 2 exceeds the per-instance limit of 1") {
		t.Errorf("Compile of a module with 2 memories for a pool = %v, want an error naming the limit", err)
	}
	if _, err := engine.Open(wasmtime.Name, engine.NewConfig().WithInstancePool(wasmtime.MaxInstancePool+1)); !errors.Is(err, engine.ErrNotSupported) {
		t.Errorf("Open with a pool above MaxInstancePool = %v, want ErrNotSupported", err)
	}
}

var (
	//go:embed testdata/host.wasm
	hostWasm []byte
	//go:embed testdata/start.wasm
	startWasm []byte
)

// TestVersion checks that go.mod links the wasmtime-go release whose C
// library Version names.
func TestVersion(t *testing.T) {
	b, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if want := "github.com/bytecodealliance/wasmtime-go/v44 v" + wasmtime.Version; !strings.Contains(string(b), want) {
		t.Errorf("go.mod does not require %q", want)
	}
	info, err := engine.Lookup(wasmtime.Name)
	if err != nil || info.Version != wasmtime.Version {
		t.Errorf("Lookup = %+v, %v", info, err)
	}
}

// TestRunsWasmtime proves that the library running the guest is Wasmtime:
// the trap message is Wasmtime's own wording.
func TestRunsWasmtime(t *testing.T) {
	rt := open(t, engine.NewConfig())
	inst := instantiate(t, rt, enginetest.Guest("values"), valuesEnv())
	err := call(inst, "trap_unreachable")
	var tr *engine.Trap
	if !errors.As(err, &tr) || tr.Code != engine.TrapUnreachable {
		t.Fatalf("trap_unreachable = %v", err)
	}
	if !strings.Contains(tr.Message, "wasm `unreachable` instruction executed") || tr.Runtime != "wasmtime" {
		t.Errorf("Message = %q, Runtime = %q: not Wasmtime's wording", tr.Message, tr.Runtime)
	}
}

func open(t *testing.T, cfg engine.Config) *engine.Runtime {
	t.Helper()
	rt, err := engine.Open(wasmtime.Name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close(context.Background()) })
	return rt
}

func instantiate(t *testing.T, rt *engine.Runtime, wasm []byte, mods ...engine.HostModule) engine.Instance {
	t.Helper()
	ctx := context.Background()
	m, err := rt.Compile(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}
	var imp *engine.Imports
	if len(mods) > 0 {
		if imp, err = rt.NewImports(mods...); err != nil {
			t.Fatal(err)
		}
	}
	inst, err := rt.Instantiate(ctx, m, imp)
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

// callResult calls name with args and returns its first result (0 for
// none), failing t on an error.
func callResult(t *testing.T, inst engine.Instance, name string, args ...uint64) uint64 {
	t.Helper()
	stack := append(args, make([]uint64, 8)...) // room for the results: callCtx keeps this slice
	if err := call(inst, name, stack...); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return stack[0]
}

func call(inst engine.Instance, name string, stack ...uint64) error {
	return callCtx(context.Background(), inst, name, stack...)
}

func callCtx(ctx context.Context, inst engine.Instance, name string, stack ...uint64) error {
	f, err := inst.Function(name)
	if err != nil {
		return err
	}
	if n := f.Type().StackSize(); len(stack) < n {
		stack = append(stack, make([]uint64, n-len(stack))...)
	}
	return f.Call(ctx, stack)
}

func valuesEnv() engine.HostModule {
	nop := func(context.Context, engine.Caller, []uint64) error { return nil }
	i32, i64, f32, f64 := engine.I32, engine.I64, engine.F32, engine.F64
	return engine.HostModule{Name: "env", Functions: []engine.HostFunction{
		{Name: "echo", Type: engine.FuncType{Params: []engine.ValueType{i32, i64, f32, f64}, Results: []engine.ValueType{i32, i64, f32, f64}}, Func: nop},
		{Name: "fail", Func: nop},
		{Name: "reenter", Type: engine.FuncType{Params: []engine.ValueType{i32}, Results: []engine.ValueType{i32}}, Func: nop},
	}}
}

// hostEnv is the host module of testdata/host.wat. Each function calls the
// matching field of h, if set.
type hostFuncs struct {
	peek, seectx, closeme, spin func(ctx context.Context, c engine.Caller) error
	nest                        func(ctx context.Context, c engine.Caller, stack []uint64) error
}

func (h *hostFuncs) module() engine.HostModule {
	wrap := func(f *func(context.Context, engine.Caller) error) engine.HostFunc {
		return func(ctx context.Context, c engine.Caller, _ []uint64) error {
			if *f == nil {
				return nil
			}
			return (*f)(ctx, c)
		}
	}
	i32 := engine.I32
	return engine.HostModule{Name: "env", Functions: []engine.HostFunction{
		{Name: "peek", Func: wrap(&h.peek)},
		{Name: "seectx", Func: wrap(&h.seectx)},
		{Name: "closeme", Func: wrap(&h.closeme)},
		{Name: "spin", Func: wrap(&h.spin)},
		{Name: "nest", Type: engine.FuncType{Params: []engine.ValueType{i32}, Results: []engine.ValueType{i32}},
			Func: func(ctx context.Context, c engine.Caller, s []uint64) error {
				if h.nest == nil {
					return nil
				}
				return h.nest(ctx, c, s)
			}},
	}}
}

type ctxKey struct{}

// TestContextPerCall checks that host functions see the context of the
// innermost call, saved and restored around nested calls.
func TestContextPerCall(t *testing.T) {
	rt := open(t, engine.NewConfig())
	var seen []any
	h := &hostFuncs{}
	h.seectx = func(ctx context.Context, _ engine.Caller) error {
		seen = append(seen, ctx.Value(ctxKey{}))
		return nil
	}
	h.nest = func(_ context.Context, c engine.Caller, s []uint64) error {
		inner := context.WithValue(context.Background(), ctxKey{}, "inner")
		return callCtx(inner, c, "ctx_inner", s...)
	}
	inst := instantiate(t, rt, hostWasm, h.module())
	outer := context.WithValue(context.Background(), ctxKey{}, "outer")
	if err := callCtx(outer, inst, "ctx_outer"); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 3 || seen[0] != "outer" || seen[1] != "inner" || seen[2] != "outer" {
		t.Errorf("host functions saw contexts %v, want [outer inner outer]", seen)
	}
}

// TestMemorySeenByHost checks that a host function sees memory the guest
// grew in the same call, in every exported memory.
func TestMemorySeenByHost(t *testing.T) {
	rt := open(t, engine.NewConfig())
	h := &hostFuncs{}
	h.peek = func(_ context.Context, c engine.Caller) error {
		m := c.Memory()
		if m.Pages() != 2 {
			return errors.New("host sees " + string(rune('0'+m.Pages())) + " pages, want 2")
		}
		if !m.WriteUint8(2*engine.PageSize-1, 0x5a) {
			return errors.New("write to the grown page failed")
		}
		return nil
	}
	inst := instantiate(t, rt, hostWasm, h.module())
	if err := call(inst, "grow_then_peek"); err != nil {
		t.Fatal(err)
	}
	s := []uint64{2*engine.PageSize - 1}
	if f, _ := inst.Function("read8"); f.Call(context.Background(), s) != nil || s[0] != 0x5a {
		t.Errorf("guest read of the host's write = %#x", s[0])
	}
	second := inst.ExportedMemory("second")
	if second == nil || second.Pages() != 2 {
		t.Fatalf("ExportedMemory(second) = %v", second)
	}
	if prev, ok := second.Grow(3); !ok || prev != 2 || second.Size() != 5*engine.PageSize {
		t.Errorf("second.Grow(3) = %d %v, size %d", prev, ok, second.Size())
	}
	if !second.WriteUint64Le(5*engine.PageSize-8, 1) || second.WriteUint64Le(5*engine.PageSize-7, 1) {
		t.Error("bounds of the grown second memory are wrong")
	}
}

// TestDataSegment checks an active data segment (Wasmtime would use a
// copy-on-write image for it, which memories this package allocates cannot
// take: it must be turned off).
func TestDataSegment(t *testing.T) {
	rt := open(t, engine.NewConfig())
	inst := instantiate(t, rt, hostWasm, (&hostFuncs{}).module())
	if b, ok := inst.Memory().Read(64, 7); !ok || string(b) != "anywasm" {
		t.Errorf("data segment = %q %v", b, ok)
	}
}

// TestNarrowResult checks that an i32 result does not carry the upper half
// of the i64 argument that shared its slot.
func TestNarrowResult(t *testing.T) {
	rt := open(t, engine.NewConfig())
	inst := instantiate(t, rt, hostWasm, (&hostFuncs{}).module())
	f, _ := inst.Function("narrow")
	s := []uint64{0xdeadbeef_12345678}
	if err := f.Call(context.Background(), s); err != nil || s[0] != 0x12345678 {
		t.Errorf("narrow = %#x, %v", s[0], err)
	}
}

// TestStartFunctionUsesCaller checks that a host function called by the start
// function reaches the caller's memory and exports before Instantiate returns.
func TestStartFunctionUsesCaller(t *testing.T) {
	rt := open(t, engine.NewConfig())
	var got uint64
	inst := instantiate(t, rt, startWasm, engine.HostModule{Name: "env", Functions: []engine.HostFunction{{
		Name: "init",
		Func: func(ctx context.Context, c engine.Caller, _ []uint64) error {
			if m := c.Memory(); m == nil || !m.WriteUint32Le(0, 99) {
				return errors.New("no memory during start")
			}
			f, err := c.Function("seven")
			if err != nil {
				return err
			}
			s := []uint64{0}
			if err := f.Call(ctx, s); err != nil {
				return err
			}
			got = s[0]
			return nil
		},
	}}})
	if got != 7 {
		t.Errorf("seven() during start = %d", got)
	}
	if v, ok := inst.Memory().ReadUint32Le(0); !ok || v != 99 {
		t.Errorf("memory written during start = %d %v", v, ok)
	}
	if err := call(inst, "seven"); err != nil {
		t.Error(err)
	}
}

// TestCloseFromHost closes an instance from its own host function: the
// running call finishes, later calls fail with ErrClosed, nothing crashes.
func TestCloseFromHost(t *testing.T) {
	rt := open(t, engine.NewConfig())
	h := &hostFuncs{}
	h.closeme = func(ctx context.Context, c engine.Caller) error { return c.Close(ctx) }
	after := 0
	h.seectx = func(context.Context, engine.Caller) error { after++; return nil }
	inst := instantiate(t, rt, hostWasm, h.module())
	if err := call(inst, "close_self"); err != nil {
		t.Fatal(err)
	}
	if after != 1 {
		t.Errorf("the guest did not go on after Close")
	}
	if err := call(inst, "read8", 0); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("call after Close = %v", err)
	}
	if inst.Memory().Size() != 0 {
		t.Error("memory of a closed instance has a size")
	}
}

// TestNestedInterrupt: a host function calls back into the guest with a
// deadline; the inner call is interrupted and the outer call fails with the
// same TrapInterrupted.
func TestNestedInterrupt(t *testing.T) {
	rt := open(t, engine.NewConfig().WithInterruptOnContextDone(true))
	h := &hostFuncs{}
	h.spin = func(ctx context.Context, c engine.Caller) error {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		return callCtx(ctx, c, "forever")
	}
	inst := instantiate(t, rt, hostWasm, h.module())
	err := call(inst, "spin_inner")
	var tr *engine.Trap
	if !errors.As(err, &tr) || tr.Code != engine.TrapInterrupted || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("spin_inner = %v", err)
	}
	if tr.Message == "" || tr.Runtime != wasmtime.Name {
		t.Errorf("trap = %+v", tr)
	}
}

// TestHostErrorNested: a host error in a nested call reaches the outermost
// caller unchanged (errors.Is), wrapped in host error traps.
func TestHostErrorNested(t *testing.T) {
	rt := open(t, engine.NewConfig())
	boom := errors.New("boom")
	h := &hostFuncs{}
	h.nest = func(ctx context.Context, c engine.Caller, s []uint64) error {
		return callCtx(ctx, c, "ctx_inner", s...)
	}
	calls := 0
	h.seectx = func(context.Context, engine.Caller) error {
		calls++
		if calls == 2 { // the nested one
			return boom
		}
		return nil
	}
	inst := instantiate(t, rt, hostWasm, h.module())
	err := call(inst, "ctx_outer")
	var tr *engine.Trap
	if !errors.Is(err, boom) || !errors.As(err, &tr) || tr.Code != engine.TrapHostError {
		t.Errorf("nested host error = %v", err)
	}
	if !inst.Failed() || calls != 2 {
		t.Errorf("Failed() = %v after %d host calls, want true after 2", inst.Failed(), calls)
	}
}

// TestFuelPerTopLevelCall: fuel is reset for every top-level call; nested
// calls share the budget of the call they are nested in.
func TestFuelPerTopLevelCall(t *testing.T) {
	rt := open(t, engine.NewConfig().WithFuel(10_000))
	inst := instantiate(t, rt, hostWasm, (&hostFuncs{}).module())
	for i := 0; i < 100; i++ {
		if err := call(inst, "read8", 0); err != nil {
			t.Fatal(err)
		}
	}
	err := call(inst, "forever")
	var tr *engine.Trap
	if !errors.As(err, &tr) || tr.Code != engine.TrapOutOfFuel {
		t.Errorf("forever under fuel = %v", err)
	}
}

func TestMemoryLimitError(t *testing.T) {
	rt := open(t, engine.NewConfig().WithMemoryLimitPages(2))
	ctx := context.Background()
	m, err := rt.Compile(ctx, enginetest.Guest("bigmem"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = rt.Instantiate(ctx, m, nil)
	if err == nil || !strings.Contains(err.Error(), "memory minimum size of 100 pages exceeds memory limits") ||
		!strings.Contains(err.Error(), "limit is 2 pages") {
		t.Errorf("error = %v", err)
	}
}

func TestCompileErrors(t *testing.T) {
	rt := open(t, engine.NewConfig())
	// A function that returns an i64 where its type says i32.
	bad := []byte{0, 'a', 's', 'm', 1, 0, 0, 0, 1, 5, 1, 0x60, 0, 1, 0x7f, 3, 2, 1, 0, 0x0a, 6, 1, 4, 0, 0x42, 0, 0x0b}
	_, err := rt.Compile(context.Background(), bad)
	if err == nil || !strings.Contains(err.Error(), "invalid module: type mismatch: expected i32, found i64") {
		t.Errorf("error = %v", err)
	}
}

func TestAs(t *testing.T) {
	rt := open(t, engine.NewConfig())
	var e wasmtime.EnginePtr
	if !rt.As(&e) || e == nil {
		t.Error("Runtime.As(*EnginePtr) failed")
	}
	m, _ := rt.Compile(context.Background(), hostWasm)
	var mp wasmtime.ModulePtr
	if !m.As(&mp) || mp == nil {
		t.Error("Module.As(*ModulePtr) failed")
	}
	inst := instantiate(t, rt, hostWasm, (&hostFuncs{}).module())
	var s wasmtime.StorePtr
	var c wasmtime.ContextPtr
	var ip wasmtime.InstancePtr
	if !inst.As(&s) || !inst.As(&c) || !inst.As(&ip) || s == nil || c == nil || ip == nil {
		t.Error("Instance.As failed")
	}
	var wrong *int
	if rt.As(&wrong) || m.As(&wrong) || inst.As(&wrong) {
		t.Error("As accepted an unknown type")
	}
}

// TestAllocsHostMemory: a host function that reads guest memory allocates
// nothing, nor does a call with a deadline once the ticker runs. The guest
// grows its memory by a page on every call, so the GC ballast, which grows
// with it (conformance GCBallast), is off.
func TestAllocsHostMemory(t *testing.T) {
	rt := open(t, engine.NewConfig().WithGCBallast(false))
	h := &hostFuncs{}
	h.peek = func(_ context.Context, c engine.Caller) error {
		if _, ok := c.Memory().Read(0, 16); !ok {
			return errors.New("read")
		}
		return nil
	}
	inst := instantiate(t, rt, hostWasm, h.module())
	f, _ := inst.Function("grow_then_peek")
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() {
		if err := f.Call(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per call", n)
	}
}
