//go:build cgo

package wasmer

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anywasm/anywasm/engine"
)

func readWasm(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func open(t testing.TB, cfg engine.Config) *engine.Runtime {
	t.Helper()
	rt, err := engine.Open(Name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	return rt
}

func instantiate(t testing.TB, rt *engine.Runtime, name string, imports *engine.Imports) engine.Instance {
	t.Helper()
	ctx := context.Background()
	mod, err := rt.Compile(ctx, readWasm(t, name))
	if err != nil {
		t.Fatal(err)
	}
	inst, err := rt.Instantiate(ctx, mod, imports)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Close(ctx) })
	return inst
}

func fn(t testing.TB, inst engine.Instance, name string) engine.Function {
	t.Helper()
	f, err := inst.Function(name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func asTrap(t *testing.T, err error) *engine.Trap {
	t.Helper()
	var tr *engine.Trap
	if !errors.As(err, &tr) {
		t.Fatalf("error %v (%T) is not a *engine.Trap", err, err)
	}
	if tr.Runtime != Name {
		t.Errorf("Trap.Runtime = %q, want %q", tr.Runtime, Name)
	}
	return tr
}

func TestWatFilesAreCompiled(t *testing.T) {
	if _, err := exec.LookPath("wat2wasm"); err != nil {
		t.Skip("wat2wasm not installed")
	}
	wats, _ := filepath.Glob("testdata/*.wat")
	for _, w := range wats {
		out := filepath.Join(t.TempDir(), "x.wasm")
		if b, err := exec.Command("wat2wasm", w, "-o", out).CombinedOutput(); err != nil {
			t.Fatalf("wat2wasm %s: %v\n%s", w, err, b)
		}
		got, _ := os.ReadFile(out)
		want, _ := os.ReadFile(strings.TrimSuffix(w, ".wat") + ".wasm")
		if !bytes.Equal(got, want) {
			t.Errorf("%s.wasm is stale: run wat2wasm %s -o %s.wasm", strings.TrimSuffix(w, ".wat"), w, strings.TrimSuffix(w, ".wat"))
		}
	}
}

// TestIsWasmer proves that the library that runs is Wasmer 2.0, not
// another runtime's C API with the same wasm_* symbols.
func TestIsWasmer(t *testing.T) {
	info, err := engine.Lookup(Name)
	if err != nil {
		t.Fatal(err)
	}
	want := "2.0.0"
	if runtime.GOARCH == "arm64" {
		want = "1.0.2" // what wasmer-go v1.0.4 ships for linux-aarch64
	}
	if info.Version != want && !strings.HasPrefix(info.Version, want+"-rc") {
		t.Errorf("wasmer_version() = %q, want %s", info.Version, want)
	}
	if err := libraryCheck(); err != nil {
		t.Fatal(err)
	}
	rt := open(t, engine.NewConfig())
	inst := instantiate(t, rt, "traps", nil)
	err = fn(t, inst, "unreachable").Call(context.Background(), nil)
	tr := asTrap(t, err)
	if tr.Message != "unreachable" {
		t.Errorf("unreachable trap message = %q, want Wasmer's %q (Wasmtime says \"wasm `unreachable` instruction executed\")", tr.Message, "unreachable")
	}
}

func TestLibraryCheckRefusesOtherLibraries(t *testing.T) {
	lib := "/mod/wasmer-go@v1.0.4/wasmer/packaged/lib/linux-amd64/libwasmer.so"
	if err := checkLibrary(lib, lib, "2.0.0"); err != nil {
		t.Errorf("libwasmer.so refused: %v", err)
	}
	for _, c := range []struct{ eng, ver, v string }{
		{"/usr/local/bin/myprogram", lib, "2.0.0"}, // wasm_engine_new from a static library in the executable
		{lib, "/usr/local/bin/myprogram", "2.0.0"},
		{"", lib, "2.0.0"},
		{lib, lib, "3.1.0"},
		{lib, lib, "0.17.1"},
	} {
		err := checkLibrary(c.eng, c.ver, c.v)
		if err == nil || !strings.Contains(err.Error(), "refusing to run") {
			t.Errorf("checkLibrary(%q, %q, %q) = %v, want a refusal", c.eng, c.ver, c.v, err)
		}
	}
}

func TestUnsupportedConfigIsRefused(t *testing.T) {
	for _, cfg := range []engine.Config{
		engine.NewConfig().WithInterruptOnContextDone(true),
		engine.NewConfig().WithMemoryLimitPages(10),
		engine.NewConfig().WithInstancePool(4),
	} {
		if _, err := engine.Open(Name, cfg); !errors.Is(err, engine.ErrNotSupported) {
			t.Errorf("Open(%+v) = %v, want ErrNotSupported", cfg, err)
		}
	}
	if _, err := engine.Open(Name, engine.NewConfig().WithCompilationCache(t.TempDir())); err != nil {
		t.Errorf("cache refused: %v", err)
	}
	_, err := engine.Open(Name, engine.NewConfig().WithFuel(100))
	if capabilities().Has(engine.CapFuel) != (err == nil) {
		t.Errorf("fuel: %v with capabilities %v", err, capabilities())
	}
}

func TestTraps(t *testing.T) {
	rt := open(t, engine.NewConfig())
	for _, c := range []struct {
		export string
		code   engine.TrapCode
	}{
		{"unreachable", engine.TrapUnreachable},
		{"memory_oob", engine.TrapMemoryOutOfBounds},
		{"stack_overflow", engine.TrapStackOverflow},
		{"div_by_zero", engine.TrapIntegerDivideByZero},
		{"int_overflow", engine.TrapIntegerOverflow},
		{"invalid_conversion", engine.TrapInvalidConversion},
		{"type_mismatch", engine.TrapIndirectCallTypeMismatch},
		{"uninitialized_element", engine.TrapTableOutOfBounds},
		{"table_oob", engine.TrapTableOutOfBounds},
	} {
		t.Run(c.export, func(t *testing.T) {
			inst := instantiate(t, rt, "traps", nil)
			f := fn(t, inst, c.export)
			tr := asTrap(t, f.Call(context.Background(), nil))
			if tr.Code != c.code {
				t.Errorf("code = %v (message %q), want %v", tr.Code, tr.Message, c.code)
			}
			if !inst.Failed() {
				t.Error("instance not failed after a trap")
			}
			if err := f.Call(context.Background(), nil); !errors.Is(err, engine.ErrFailed) {
				t.Errorf("call after trap = %v, want ErrFailed", err)
			}
			if _, ok := inst.Memory().ReadUint32Le(0); !ok {
				t.Error("memory not readable after a trap")
			}
		})
	}
}

// TestStackOverflowOnManyThreads overflows the guest stack on goroutines
// running on different threads: Wasmer's signal handling must work on
// threads the Go runtime made.
func TestStackOverflowOnManyThreads(t *testing.T) {
	rt := open(t, engine.NewConfig())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			inst := instantiate(t, rt, "traps", nil)
			f, _ := inst.Function("stack_overflow")
			var tr *engine.Trap
			if err := f.Call(context.Background(), nil); !errors.As(err, &tr) || tr.Code != engine.TrapStackOverflow {
				t.Errorf("got %v, want a stack overflow trap", err)
			}
		})
	}
	wg.Wait()
}

func needFuel(t *testing.T) {
	if !capabilities().Has(engine.CapFuel) {
		t.Skip("this libwasmer has no metering middleware")
	}
}

func TestFuel(t *testing.T) {
	needFuel(t)
	ctx := context.Background()
	rt := open(t, engine.NewConfig().WithFuel(10_000))
	inst := instantiate(t, rt, "traps", nil)
	count := fn(t, inst, "count")
	// Each call gets the full fuel: 20 calls of 100 iterations exceed one
	// call's fuel in total but not each.
	for i := range 20 {
		stack := []uint64{100}
		if err := count.Call(ctx, stack); err != nil || stack[0] != 100 {
			t.Fatalf("call %d: %v, %d", i, err, stack[0])
		}
	}
	stack := []uint64{1_000_000}
	tr := asTrap(t, count.Call(ctx, stack))
	if tr.Code != engine.TrapOutOfFuel {
		t.Errorf("code = %v (%q), want out of fuel", tr.Code, tr.Message)
	}
	if !inst.Failed() {
		t.Error("not failed")
	}
	// An infinite loop ends.
	inst2 := instantiate(t, rt, "traps", nil)
	if tr := asTrap(t, fn(t, inst2, "loop").Call(ctx, nil)); tr.Code != engine.TrapOutOfFuel {
		t.Errorf("loop: code = %v, want out of fuel", tr.Code)
	}
	// A module that does not compile frees the engine made for it.
	if _, err := rt.Compile(ctx, []byte("\x00asm\x01\x00\x00\x00\x01\x02")); err == nil {
		t.Error("malformed module compiled")
	}
	// A genuine unreachable is still unreachable.
	inst3 := instantiate(t, rt, "traps", nil)
	if tr := asTrap(t, fn(t, inst3, "unreachable").Call(ctx, nil)); tr.Code != engine.TrapUnreachable {
		t.Errorf("unreachable with fuel: code = %v, want unreachable", tr.Code)
	}
}

func TestFuelNested(t *testing.T) {
	needFuel(t)
	ctx := context.Background()
	rt := open(t, engine.NewConfig().WithFuel(5_000))
	var count engine.Function
	var innerErr error
	imports, err := rt.NewImports(hostEnv(func(ctx context.Context, caller engine.Caller, stack []uint64) error {
		// The nested call gets its own fuel.
		s := []uint64{stack[0]}
		innerErr = count.Call(ctx, s)
		stack[0] = s[0]
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	inst := instantiate(t, rt, "host", imports)
	countInst := instantiate(t, rt, "traps", nil)
	count = fn(t, countInst, "count")
	stack := []uint64{200}
	if err := fn(t, inst, "call_reenter").Call(ctx, stack); err != nil || innerErr != nil || stack[0] != 1200 {
		t.Fatalf("nested call: %v, %v, %d", err, innerErr, stack[0])
	}
	// Re-entering the same instance restores the outer call's points.
	var loop engine.Function
	imports2, _ := rt.NewImports(hostEnv(func(ctx context.Context, caller engine.Caller, stack []uint64) error {
		return loop.Call(ctx, []uint64{stack[0]})
	}))
	inst2 := instantiate(t, rt, "host", imports2)
	loop = fn(t, inst2, "add1")
	for range 100 {
		stack := []uint64{1}
		if err := fn(t, inst2, "call_reenter").Call(ctx, stack); err != nil {
			t.Fatal(err)
		}
	}
}

// hostEnv returns the host module host.wat imports, with reenter as given
// and the others as identity or simple functions.
func hostEnv(reenter engine.HostFunc) engine.HostModule {
	id := func(ctx context.Context, _ engine.Caller, stack []uint64) error { return nil }
	return engine.HostModule{Name: "env", Functions: []engine.HostFunction{
		{Name: "i32", Type: engine.FuncType{Params: []engine.ValueType{engine.I32}, Results: []engine.ValueType{engine.I32}}, Func: func(ctx context.Context, _ engine.Caller, stack []uint64) error {
			stack[0] = engine.EncodeI32(engine.DecodeI32(stack[0]) * 2)
			return nil
		}},
		{Name: "i64", Type: engine.FuncType{Params: []engine.ValueType{engine.I64}, Results: []engine.ValueType{engine.I64}}, Func: func(ctx context.Context, _ engine.Caller, stack []uint64) error {
			stack[0] = engine.EncodeI64(int64(stack[0]) - 1)
			return nil
		}},
		{Name: "f32", Type: engine.FuncType{Params: []engine.ValueType{engine.F32}, Results: []engine.ValueType{engine.F32}}, Func: func(ctx context.Context, _ engine.Caller, stack []uint64) error {
			stack[0] = engine.EncodeF32(engine.DecodeF32(stack[0]) * 2)
			return nil
		}},
		{Name: "f64", Type: engine.FuncType{Params: []engine.ValueType{engine.F64}, Results: []engine.ValueType{engine.F64}}, Func: func(ctx context.Context, _ engine.Caller, stack []uint64) error {
			stack[0] = engine.EncodeF64(engine.DecodeF64(stack[0]) / 4)
			return nil
		}},
		{Name: "mixed", Type: engine.FuncType{
			Params:  []engine.ValueType{engine.I32, engine.I64, engine.F32, engine.F64},
			Results: []engine.ValueType{engine.F64, engine.F32, engine.I64, engine.I32}},
			Func: func(ctx context.Context, _ engine.Caller, s []uint64) error {
				s[0], s[1], s[2], s[3] = s[3], s[2], s[1], s[0]
				return nil
			}},
		{Name: "fail", Type: engine.FuncType{Params: []engine.ValueType{engine.I32}}, Func: func(ctx context.Context, _ engine.Caller, stack []uint64) error {
			switch stack[0] {
			case 0:
				return errHost
			case 1:
				panic("boom")
			case 2:
				return engine.Exit(3)
			}
			return nil
		}},
		{Name: "reenter", Type: engine.FuncType{Params: []engine.ValueType{engine.I32}, Results: []engine.ValueType{engine.I32}}, Func: reenter},
		{Name: "unused", Func: id},
	}}
}

var errHost = errors.New("host says no")

func TestHostFunctionValues(t *testing.T) {
	ctx := context.Background()
	rt := open(t, engine.NewConfig())
	imports, err := rt.NewImports(hostEnv(func(context.Context, engine.Caller, []uint64) error { return nil }))
	if err != nil {
		t.Fatal(err)
	}
	inst := instantiate(t, rt, "host", imports)
	call := func(name string, stack ...uint64) []uint64 {
		t.Helper()
		if err := fn(t, inst, name).Call(ctx, stack); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return stack
	}
	if got := engine.DecodeI32(call("call_i32", engine.EncodeI32(-21))[0]); got != -42 {
		t.Errorf("i32: %d", got)
	}
	if got := call("call_i32", engine.EncodeI32(-21))[0]; got>>32 != 0 {
		t.Errorf("i32 result not zero-extended: %#x", got)
	}
	if got := int64(call("call_i64", engine.EncodeI64(math.MinInt64+1))[0]); got != math.MinInt64 {
		t.Errorf("i64: %d", got)
	}
	if got := engine.DecodeF32(call("call_f32", engine.EncodeF32(1.25))[0]); got != 2.5 {
		t.Errorf("f32: %v", got)
	}
	if got := engine.DecodeF64(call("call_f64", engine.EncodeF64(-10))[0]); got != -2.5 {
		t.Errorf("f64: %v", got)
	}
	s := call("call_mixed", engine.EncodeI32(-7), engine.EncodeI64(1<<40), engine.EncodeF32(0.5), engine.EncodeF64(1e300))
	if engine.DecodeF64(s[0]) != 1e300 || engine.DecodeF32(s[1]) != 0.5 || s[2] != 1<<40 || engine.DecodeI32(s[3]) != -7 {
		t.Errorf("mixed: %#x", s)
	}
}

func TestHostFunctionErrors(t *testing.T) {
	ctx := context.Background()
	rt := open(t, engine.NewConfig())
	imports, err := rt.NewImports(hostEnv(func(context.Context, engine.Caller, []uint64) error { return nil }))
	if err != nil {
		t.Fatal(err)
	}
	for arg, code := range []engine.TrapCode{engine.TrapHostError, engine.TrapHostPanic, engine.TrapExit} {
		inst := instantiate(t, rt, "host", imports)
		tr := asTrap(t, fn(t, inst, "call_fail").Call(ctx, []uint64{uint64(arg)}))
		if tr.Code != code {
			t.Errorf("arg %d: code %v, want %v", arg, tr.Code, code)
		}
		switch code {
		case engine.TrapHostError:
			if !errors.Is(tr, errHost) {
				t.Errorf("host error lost: %v", tr)
			}
		case engine.TrapHostPanic:
			var p *engine.PanicError
			if !errors.As(tr, &p) || p.Value != "boom" || p.Function != "env.fail" {
				t.Errorf("panic: %v", tr)
			}
		case engine.TrapExit:
			if tr.ExitCode != 3 {
				t.Errorf("exit code %d", tr.ExitCode)
			}
		}
		if !inst.Failed() {
			t.Error("not failed")
		}
	}
}

func TestReentrancyAndCaller(t *testing.T) {
	ctx := context.WithValue(context.Background(), ctxKey{}, "outer")
	rt := open(t, engine.NewConfig())
	var inst engine.Instance
	var sawCaller, sawCtx bool
	imports, err := rt.NewImports(hostEnv(func(ctx context.Context, caller engine.Caller, stack []uint64) error {
		sawCaller = caller == inst
		sawCtx = ctx.Value(ctxKey{}) == "outer"
		// Call the guest's malloc, write through memory, read back in the guest.
		malloc, err := caller.Function("malloc")
		if err != nil {
			return err
		}
		s := []uint64{16}
		if err := malloc.Call(context.WithValue(ctx, ctxKey{}, "inner"), s); err != nil {
			return err
		}
		if ctx.Value(ctxKey{}) != "outer" {
			return errors.New("ctx changed")
		}
		p := uint32(s[0])
		if !caller.Memory().WriteUint32Le(p, uint32(stack[0])+1) {
			return errors.New("write failed")
		}
		load, _ := caller.Function("load32")
		s[0] = uint64(p)
		if err := load.Call(ctx, s); err != nil {
			return err
		}
		stack[0] = s[0]
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	inst = instantiate(t, rt, "host", imports)
	stack := []uint64{41}
	if err := fn(t, inst, "call_reenter").Call(ctx, stack); err != nil {
		t.Fatal(err)
	}
	if stack[0] != 1042 || !sawCaller || !sawCtx {
		t.Errorf("result %d, caller %v, ctx %v", stack[0], sawCaller, sawCtx)
	}
}

type ctxKey struct{}

func TestNestedTrapAndHostError(t *testing.T) {
	ctx := context.Background()
	rt := open(t, engine.NewConfig())
	imports, err := rt.NewImports(hostEnv(func(ctx context.Context, caller engine.Caller, stack []uint64) error {
		f, _ := caller.Function("unreachable")
		return f.Call(ctx, nil) // a trap in the nested call fails the outer one
	}))
	if err != nil {
		t.Fatal(err)
	}
	inst := instantiate(t, rt, "host", imports)
	err = fn(t, inst, "call_reenter").Call(ctx, []uint64{1})
	tr := asTrap(t, err)
	var inner *engine.Trap
	if tr.Code != engine.TrapHostError || !errors.As(tr.Cause, &inner) || inner.Code != engine.TrapUnreachable {
		t.Errorf("got %v", err)
	}
	if !inst.Failed() {
		t.Error("not failed")
	}
}

func TestMemory(t *testing.T) {
	ctx := context.Background()
	rt := open(t, engine.NewConfig())
	imports, _ := rt.NewImports(hostEnv(nil2))
	inst := instantiate(t, rt, "host", imports)
	mem := inst.Memory()
	if mem == nil || inst.ExportedMemory("mem2") == nil || inst.ExportedMemory("nope") != nil {
		t.Fatal("memory exports")
	}
	if mem.Size() != engine.PageSize || mem.Pages() != 1 {
		t.Errorf("size %d pages %d", mem.Size(), mem.Pages())
	}
	if !mem.WriteUint64Le(8, 0x0102030405060708) {
		t.Fatal("write")
	}
	if v, ok := mem.ReadUint8(8); !ok || v != 8 {
		t.Errorf("read8 %d %v", v, ok)
	}
	if _, ok := mem.ReadUint32Le(engine.PageSize - 3); ok {
		t.Error("read past the end succeeded")
	}
	// The guest grows memory: the view follows.
	stack := []uint64{2}
	if err := fn(t, inst, "grow").Call(ctx, stack); err != nil || stack[0] != 1 {
		t.Fatalf("grow: %v %d", err, stack[0])
	}
	if mem.Pages() != 3 {
		t.Errorf("pages after guest grow = %d", mem.Pages())
	}
	if !mem.WriteUint32Le(2*engine.PageSize+100, 77) {
		t.Error("write in grown memory failed")
	}
	stack[0] = 2*engine.PageSize + 100
	if err := fn(t, inst, "load32").Call(ctx, stack); err != nil || stack[0] != 77 {
		t.Errorf("load32: %v %d", err, stack[0])
	}
	if prev, ok := mem.Grow(1); !ok || prev != 3 || mem.Pages() != 4 {
		t.Errorf("Grow: %d %v %d", prev, ok, mem.Pages())
	}
	if _, ok := mem.Grow(100); ok {
		t.Error("Grow past the module's maximum succeeded")
	}
	if v, ok := mem.ReadUint64Le(8); !ok || v != 0x0102030405060708 {
		t.Errorf("read64 %#x", v)
	}
	inst.Close(ctx)
	if _, ok := mem.ReadUint8(0); ok {
		t.Error("memory readable after Close")
	}
	if _, ok := mem.Grow(1); ok {
		t.Error("Grow after Close")
	}
}

func nil2(context.Context, engine.Caller, []uint64) error { return nil }

func TestCallErrors(t *testing.T) {
	rt := open(t, engine.NewConfig())
	inst := instantiate(t, rt, "traps", nil)
	count := fn(t, inst, "count")
	if err := count.Call(context.Background(), nil); !errors.Is(err, engine.ErrStackSize) {
		t.Errorf("short stack: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := count.Call(ctx, []uint64{1}); err != context.Canceled {
		t.Errorf("cancelled ctx: %v", err)
	}
	if _, err := inst.Function("nope"); err == nil {
		t.Error("missing function found")
	}
	if err := inst.Close(ctx); err != nil {
		t.Error(err)
	}
	if err := inst.Close(ctx); err != nil {
		t.Error(err)
	}
	if err := count.Call(context.Background(), []uint64{1}); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("after close: %v", err)
	}
	if _, err := inst.Function("count"); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("Function after close: %v", err)
	}
}

func TestLifetimes(t *testing.T) {
	ctx := context.Background()
	rt, err := engine.Open(Name, engine.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	mod, err := rt.Compile(ctx, readWasm(t, "host"))
	if err != nil {
		t.Fatal(err)
	}
	imports, _ := rt.NewImports(hostEnv(nil2))
	inst, err := rt.Instantiate(ctx, mod, imports)
	if err != nil {
		t.Fatal(err)
	}
	imports.Close(ctx)
	mod.Close(ctx)
	runtime.GC()
	stack := []uint64{5}
	if err := fn(t, inst, "call_i32").Call(ctx, stack); err != nil || stack[0] != 10 {
		t.Fatalf("after Imports.Close and Module.Close: %v %d", err, stack[0])
	}
	var p any
	_ = p
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := rt.Close(cctx); err != nil {
		t.Fatal(err)
	}
	if err := fn2(inst).Call(ctx, stack); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("instance call after Runtime.Close: %v", err)
	}
	if err := rt.Close(ctx); err != nil {
		t.Error(err)
	}
}

func fn2(inst engine.Instance) engine.Function {
	f, err := inst.Function("call_i32")
	if err != nil {
		return closedFn{}
	}
	return f
}

type closedFn struct{ engine.Function }

func (closedFn) Call(context.Context, []uint64) error { return engine.ErrClosed }

func TestCloseInsideCall(t *testing.T) {
	ctx := context.Background()
	rt := open(t, engine.NewConfig())
	imports, _ := rt.NewImports(hostEnv(func(ctx context.Context, caller engine.Caller, stack []uint64) error {
		caller.Close(ctx)
		stack[0] = 1
		return nil
	}))
	inst := instantiate(t, rt, "host", imports)
	f := fn(t, inst, "call_reenter")
	if err := f.Call(ctx, []uint64{0}); err != nil {
		t.Fatalf("outer call: %v", err)
	}
	if err := f.Call(ctx, []uint64{0}); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("after close inside call: %v", err)
	}
}

func TestStartFunction(t *testing.T) {
	ctx := context.Background()
	rt := open(t, engine.NewConfig())
	mod, err := rt.Compile(ctx, readWasm(t, "start"))
	if err != nil {
		t.Fatal(err)
	}
	var got uint64
	var fail error
	imports, _ := rt.NewImports(engine.HostModule{Name: "env", Functions: []engine.HostFunction{{
		Name: "hook", Type: engine.FuncType{Params: []engine.ValueType{engine.I32}},
		Func: func(_ context.Context, _ engine.Caller, s []uint64) error { got = s[0]; return fail },
	}}})
	inst, err := rt.Instantiate(ctx, mod, imports)
	if err != nil || got != 7 {
		t.Fatalf("%v %d", err, got)
	}
	inst.Close(ctx)
	fail = errHost
	if _, err := rt.Instantiate(ctx, mod, imports); !errors.Is(err, errHost) {
		t.Errorf("start host error: %v", err)
	} else if tr := asTrap(t, err); tr.Code != engine.TrapHostError {
		t.Errorf("code %v", tr.Code)
	}
	tmod, _ := rt.Compile(ctx, readWasm(t, "starttrap"))
	if _, err := rt.Instantiate(ctx, tmod, nil); err == nil || asTrap(t, err).Code != engine.TrapUnreachable {
		t.Errorf("start trap: %v", err)
	}
	if _, err := rt.Compile(ctx, []byte("\x00asm\x01\x00\x00\x00\x05")); err == nil {
		t.Error("malformed module compiled")
	}
}

func TestAs(t *testing.T) {
	rt := open(t, engine.NewConfig())
	mod, _ := rt.Compile(context.Background(), readWasm(t, "traps"))
	inst := instantiate(t, rt, "traps", nil)
	for _, x := range []interface{ As(any) bool }{rt, mod, inst} {
		var p unsafePointer
		if !x.As(&p) || p == nil {
			t.Errorf("%T.As(*unsafe.Pointer) failed", x)
		}
		var s string
		if x.As(&s) {
			t.Errorf("%T.As(*string) succeeded", x)
		}
	}
}

// TestConcurrentInstances runs instances on several goroutines at once, with
// instances made and closed meanwhile (the registry grows and reuses slots).
func TestConcurrentInstances(t *testing.T) {
	ctx := context.Background()
	rt := open(t, engine.NewConfig())
	mod, err := rt.Compile(ctx, readWasm(t, "host"))
	if err != nil {
		t.Fatal(err)
	}
	imports, _ := rt.NewImports(hostEnv(nil2))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				inst, err := rt.Instantiate(ctx, mod, imports)
				if err != nil {
					t.Error(err)
					return
				}
				f, _ := inst.Function("loop_i32")
				stack := []uint64{uint64(10 + g + i)}
				n := stack[0]
				if err := f.Call(ctx, stack); err != nil || stack[0] != n*(n+1) {
					t.Errorf("loop_i32(%d) = %d, %v", n, stack[0], err)
				}
				inst.Close(ctx)
			}
		})
	}
	wg.Wait()
}

func liveInstances() int {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	n := 0
	if tab := registry.tab.Load(); tab != nil {
		for _, st := range *tab {
			if st != nil {
				n++
			}
		}
	}
	return n
}

// TestCleanupBackstop drops instances without closing them: a cleanup frees
// them once they are unreachable.
func TestCleanupBackstop(t *testing.T) {
	ctx := context.Background()
	rt := open(t, engine.NewConfig())
	mod, err := rt.Compile(ctx, readWasm(t, "traps"))
	if err != nil {
		t.Fatal(err)
	}
	before := liveInstances()
	func() {
		for range 10 {
			inst, err := rt.Instantiate(ctx, mod, nil)
			if err != nil {
				t.Fatal(err)
			}
			f, _ := inst.Function("count")
			if err := f.Call(ctx, []uint64{3}); err != nil {
				t.Fatal(err)
			}
		}
	}()
	if got := liveInstances(); got != before+10 {
		t.Fatalf("live instances %d, want %d", got, before+10)
	}
	for i := 0; i < 300 && liveInstances() > before; i++ {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if got := liveInstances(); got != before {
		t.Errorf("live instances after GC: %d, want %d", got, before)
	}
}

func TestMayGrowMemory(t *testing.T) {
	calls, err := os.ReadFile("../../bench/testdata/calls.wasm")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		wasm []byte
		want bool
	}{
		{"traps", readWasm(t, "traps"), false},
		{"calls", calls, false},
		{"host", readWasm(t, "host"), true}, // has memory.grow
		{"truncated", readWasm(t, "host")[:20], true},
		{"garbage", []byte("\x00asm\x01\x00\x00\x00\x0a\xff\xff\xff\xff\xff"), true},
	} {
		if got := mayGrowMemory(c.wasm); got != c.want {
			t.Errorf("%s: mayGrowMemory = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestGrowWithoutMemoryGrow: a module without memory.grow skips the size
// refresh on transitions; Memory.Grow must still keep the view right.
func TestGrowWithoutMemoryGrow(t *testing.T) {
	rt := open(t, engine.NewConfig())
	inst := instantiate(t, rt, "traps", nil)
	mem := inst.Memory()
	if prev, ok := mem.Grow(2); !ok || prev != 1 || mem.Size() != 3*engine.PageSize {
		t.Fatalf("Grow: %d %v %d", prev, ok, mem.Size())
	}
	if err := fn(t, inst, "count").Call(context.Background(), []uint64{5}); err != nil {
		t.Fatal(err)
	}
	if !mem.WriteUint32Le(3*engine.PageSize-4, 1) || mem.Pages() != 3 {
		t.Errorf("view after a call: %d pages", mem.Pages())
	}
}
