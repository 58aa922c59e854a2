// Package enginetest is the conformance kit of package engine: one suite
// that every backend's own test runs, unchanged, in a line:
//
//	func TestConformance(t *testing.T) { enginetest.Run(t, "wazero") }
//
// It checks calls with every value type and multi-value results, host
// functions, host errors and panics, re-entrancy, memory and its bounds,
// every trap code, trap backtraces, import and module errors, post-MVP
// features, limits (or their refusal with ErrNotSupported), the state of an
// instance after a trap, Close semantics, concurrency and instantiate/close
// cycles, and the compilation cache's trust checks (a directory others could
// write is refused; a planted or untrusted entry is never run).
// RunDifferential runs the same guests on every runtime linked into the test
// binary and compares results and memory bytes.
//
// The guests are small .wat files in testdata, compiled with wabt's wat2wasm;
// the .wasm files are committed and embedded.
package enginetest

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/engine/internal/filecache"
)

//go:embed testdata/*.wasm
var guests embed.FS

// Guest returns the bytes of testdata/<name>.wasm.
func Guest(name string) []byte {
	b, err := guests.ReadFile("testdata/" + name + ".wasm")
	if err != nil {
		panic(err)
	}
	return b
}

var errBoom = errors.New("boom from the host")

// env returns the host module the values guest imports. reentered counts
// calls of env.reenter.
func env(reentered *int) engine.HostModule {
	i32, i64, f32, f64 := engine.I32, engine.I64, engine.F32, engine.F64
	return engine.HostModule{Name: "env", Functions: []engine.HostFunction{
		{
			Name: "echo",
			Type: engine.FuncType{Params: []engine.ValueType{i32, i64, f32, f64}, Results: []engine.ValueType{i32, i64, f32, f64}},
			Func: func(_ context.Context, _ engine.Caller, stack []uint64) error {
				// Transform each value so the test sees the host ran.
				stack[0] = engine.EncodeI32(engine.DecodeI32(stack[0]) + 1)
				stack[1] = engine.EncodeI64(int64(stack[1]) * 2)
				stack[2] = engine.EncodeF32(engine.DecodeF32(stack[2]) * 2)
				stack[3] = engine.EncodeF64(-engine.DecodeF64(stack[3]))
				return nil
			},
		},
		{
			Name: "fail",
			Func: func(context.Context, engine.Caller, []uint64) error { return errBoom },
		},
		{
			Name: "reenter",
			Type: engine.FuncType{Params: []engine.ValueType{i32}, Results: []engine.ValueType{i32}},
			Func: func(ctx context.Context, c engine.Caller, stack []uint64) error {
				*reentered++
				inner, err := c.Function("inner")
				if err != nil {
					return err
				}
				// Call back into the guest, twice, with nested stacks.
				s := []uint64{stack[0]}
				if err := inner.Call(ctx, s); err != nil {
					return err
				}
				s2 := []uint64{s[0]}
				if err := inner.Call(ctx, s2); err != nil {
					return err
				}
				stack[0] = s2[0]
				return nil
			},
		},
	}}
}

// Harness opens runtimes of one backend, on one tier, for the suite.
type harness struct {
	name string // as given to Run: the runtime, with its tier if one was given
	rt   string // the runtime's name (Runtime.Name)
	info engine.Info
	top  string // the name of the test that called Run
	// with adds the options given to RunWith to every configuration the
	// suite opens the runtime with; nil for none.
	with func(engine.Config) engine.Config
}

// config returns cfg with the options given to RunWith.
func (h *harness) config(cfg engine.Config) engine.Config {
	if h.with == nil {
		return cfg
	}
	return h.with(cfg)
}

func (h *harness) open(t testing.TB, cfg engine.Config) *engine.Runtime {
	t.Helper()
	rt, err := engine.Open(h.name, h.config(cfg))
	if err != nil {
		t.Fatalf("Open(%s): %v", h.name, err)
	}
	t.Cleanup(func() { _ = rt.Close(context.Background()) })
	return rt
}

// instance compiles and instantiates a guest in rt with the given host
// modules.
//
// On a runtime without CapMultiValue the guests "values" and "features" are
// their variants without multi-value (testdata/*_mvp.wat).
func instantiate(t testing.TB, rt *engine.Runtime, guest string, mods ...engine.HostModule) engine.Instance {
	t.Helper()
	ctx := context.Background()
	m, err := rt.Compile(ctx, Guest(guestFor(rt.Capabilities(), guest)))
	if err != nil {
		t.Fatalf("Compile(%s): %v", guest, err)
	}
	var imp *engine.Imports
	if len(mods) > 0 {
		if imp, err = rt.NewImports(mods...); err != nil {
			t.Fatalf("NewImports: %v", err)
		}
	}
	inst, err := rt.Instantiate(ctx, m, imp)
	if err != nil {
		t.Fatalf("Instantiate(%s): %v", guest, err)
	}
	t.Cleanup(func() { _ = inst.Close(context.Background()) })
	return inst
}

func call(t testing.TB, inst engine.Instance, name string, stack ...uint64) []uint64 {
	t.Helper()
	f, err := inst.Function(name)
	if err != nil {
		t.Fatalf("Function(%q): %v", name, err)
	}
	if n := f.Type().StackSize(); len(stack) < n {
		stack = append(stack, make([]uint64, n-len(stack))...)
	}
	if err := f.Call(context.Background(), stack); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return stack[:len(f.Type().Results)]
}

// RunTiers runs the conformance suite against every tier of the runtime
// registered as name, each in a subtest "tier=<tier>" (a runtime without
// tiers runs once, as Run).
func RunTiers(t *testing.T, name string) {
	info, err := engine.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Tiers) == 0 {
		Run(t, name)
		return
	}
	for _, tier := range info.Tiers {
		t.Run("tier="+tier, func(t *testing.T) { Run(t, name+":"+tier) })
	}
}

// guestFor returns the guest to run in place of guest on a runtime with
// capabilities c: the variant without multi-value of "values" and
// "features" on a runtime without CapMultiValue.
func guestFor(c engine.Capabilities, guest string) string {
	if !c.Has(engine.CapMultiValue) && (guest == "values" || guest == "features") {
		return guest + "_mvp"
	}
	return guest
}

// guest returns the bytes of the guest to run in place of guest (guestFor).
func (h *harness) guest(name string) []byte { return Guest(guestFor(h.info.Capabilities, name)) }

// mv reports whether the runtime has multi-value.
func (h *harness) mv() bool { return h.info.Capabilities.Has(engine.CapMultiValue) }

// Run runs the conformance suite against the runtime registered as name, on
// its default tier or on the tier name carries ("wazero:interpreter").
func Run(t *testing.T, name string) { RunWith(t, name, nil) }

// RunWith runs the conformance suite as Run does, with every configuration
// it opens the runtime with passed through with first, e.g. to run it with
// an option that must change nothing the suite checks
// (Config.WithInstancePool). with must not remove what the suite asked for.
func RunWith(t *testing.T, name string, with func(engine.Config) engine.Config) {
	info, err := engine.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv(childDirEnv) != "" {
		cacheChild(t, name)
		return
	}
	h := &harness{name: name, rt: info.Name, info: info, top: t.Name(), with: with}
	t.Run("Tier", h.testTier)
	t.Run("Info", h.testInfo)
	t.Run("MultiValue", h.testMultiValue)
	t.Run("ValueTypes", h.testValueTypes)
	t.Run("HostFunctions", h.testHostFunctions)
	t.Run("HostError", h.testHostError)
	t.Run("HostPanic", h.testHostPanic)
	t.Run("Exit", h.testExit)
	t.Run("Reentrancy", h.testReentrancy)
	t.Run("Memory", h.testMemory)
	t.Run("Traps", h.testTraps)
	t.Run("Frames", h.testFrames)
	t.Run("AfterTrap", h.testAfterTrap)
	t.Run("StartFunction", h.testStart)
	t.Run("Imports", h.testImports)
	t.Run("BadModules", h.testBadModules)
	t.Run("Features", h.testFeatures)
	t.Run("MemoryLimit", h.testMemoryLimit)
	t.Run("Interrupt", h.testInterrupt)
	t.Run("Fuel", h.testFuel)
	t.Run("InstancePool", h.testInstancePool)
	t.Run("GCBallast", h.testGCBallast)
	t.Run("CompilationCache", h.testCompilationCache)
	t.Run("CompilationCacheTrust", h.testCacheTrust)
	t.Run("Precompiled", h.testPrecompiled)
	t.Run("Snapshot", h.testSnapshot)
	t.Run("CallErrors", h.testCallErrors)
	t.Run("Close", h.testClose)
	t.Run("Concurrent", h.testConcurrent)
	t.Run("CloseRace", h.testCloseRace)
	t.Run("Cycles", h.testCycles)
	t.Run("ImportsCycles", h.testImportsCycles)
}

func (h *harness) testInfo(t *testing.T) {
	rt := h.open(t, engine.NewConfig())
	if rt.Name() != h.rt {
		t.Errorf("Name() = %q, want %q", rt.Name(), h.rt)
	}
	if rt.Version() == "" {
		t.Error("Version() is empty")
	}
	found := false
	for _, n := range engine.Runtimes() {
		found = found || n == h.rt
	}
	if !found {
		t.Errorf("Runtimes() = %v lacks %q", engine.Runtimes(), h.rt)
	}
	_, err := engine.Open("no-such-runtime", engine.NewConfig())
	if err == nil || !strings.Contains(err.Error(), h.rt) || !strings.Contains(err.Error(), "CGO_ENABLED") {
		t.Errorf("Open(unknown) = %v, want an error listing %q and a hint", err, h.rt)
	}
}

// testTier checks that the runtime runs the tier asked for, that the
// capabilities Open checks are the tier's, and that an unknown tier is
// refused with ErrNotSupported naming the runtime's tiers.
func (h *harness) testTier(t *testing.T) {
	rt := h.open(t, engine.NewConfig())
	if rt.Tier() != h.info.Tier || rt.Config().Tier() != h.info.Tier {
		t.Errorf("Tier() = %q, Config().Tier() = %q, want %q", rt.Tier(), rt.Config().Tier(), h.info.Tier)
	}
	if rt.Capabilities() != h.info.Capabilities {
		t.Errorf("Capabilities() = %s, want the tier's %s", rt.Capabilities(), h.info.Capabilities)
	}
	if len(h.info.Tiers) == 0 {
		if rt.Tier() != "" {
			t.Errorf("a runtime without tiers reports tier %q", rt.Tier())
		}
		return
	}
	if h.info.Tier == "" || !slices.Contains(h.info.Tiers, h.info.Tier) {
		t.Errorf("Lookup: tier %q is not among %v", h.info.Tier, h.info.Tiers)
	}
	// The tier given in the configuration, and in the name, agree.
	rt2 := h.open(t, engine.NewConfig().WithTier(h.info.Tier))
	if rt2.Tier() != h.info.Tier {
		t.Errorf("WithTier(%q): Tier() = %q", h.info.Tier, rt2.Tier())
	}
	if want, err := engine.CanonicalName(h.rt + ":" + h.info.Tier); err != nil ||
		(h.info.Tier == h.info.Tiers[0]) != (want == h.rt) {
		t.Errorf("CanonicalName(%s:%s) = %q, %v", h.rt, h.info.Tier, want, err)
	}
	for _, bad := range []string{h.rt + ":no-such-tier", h.rt + ":"} {
		_, err := engine.Open(bad, engine.NewConfig())
		if !errors.Is(err, engine.ErrNotSupported) || !strings.Contains(err.Error(), strings.Join(h.info.Tiers, ", ")) {
			t.Errorf("Open(%q) = %v, want ErrNotSupported naming the tiers %v", bad, err, h.info.Tiers)
		}
	}
	_, err := engine.Open(h.rt+":"+h.info.Tier, engine.NewConfig().WithTier("no-such-tier"))
	if err == nil {
		t.Errorf("Open with a name and a configuration naming different tiers succeeded")
	}
}

// testMultiValue: a runtime without multi-value refuses, at Compile, a
// module that has it; one with it compiles it.
func (h *harness) testMultiValue(t *testing.T) {
	rt := h.open(t, engine.NewConfig())
	m, err := rt.Compile(context.Background(), Guest("values"))
	if h.mv() {
		if err != nil {
			t.Errorf("Compile of a module with multi-value: %v", err)
		} else {
			_ = m.Close(context.Background())
		}
		return
	}
	if err == nil {
		t.Error("a runtime without CapMultiValue compiled a module with multi-value")
	}
}

func (h *harness) testValueTypes(t *testing.T) {
	rt := h.open(t, engine.NewConfig())
	n := 0
	inst := instantiate(t, rt, "values", env(&n))

	if got := call(t, inst, "i32_add", engine.EncodeI32(-7), engine.EncodeI32(3)); engine.DecodeI32(got[0]) != -4 {
		t.Errorf("i32_add(-7, 3) = %d", engine.DecodeI32(got[0]))
	}
	if got := call(t, inst, "i32_add", engine.EncodeU32(math.MaxUint32), 1); engine.DecodeU32(got[0]) != 0 {
		t.Errorf("i32_add wraps to %#x, want 0", got[0])
	}
	if got := call(t, inst, "i64_add", engine.EncodeI64(math.MaxInt64), 1); int64(got[0]) != math.MinInt64 {
		t.Errorf("i64_add overflow = %d", int64(got[0]))
	}
	if got := call(t, inst, "f32_mul", engine.EncodeF32(1.5), engine.EncodeF32(-4)); engine.DecodeF32(got[0]) != -6 {
		t.Errorf("f32_mul = %v", engine.DecodeF32(got[0]))
	}
	if got := call(t, inst, "f64_mul", engine.EncodeF64(math.Pi), engine.EncodeF64(2)); engine.DecodeF64(got[0]) != 2*math.Pi {
		t.Errorf("f64_mul = %v", engine.DecodeF64(got[0]))
	}
	if _, err := inst.Function("takes_ref"); err == nil {
		t.Error("Function(takes_ref) with an externref parameter: no error")
	}
	if _, err := inst.Function("no_such_export"); err == nil || !strings.Contains(err.Error(), "no_such_export") {
		t.Errorf("Function(no_such_export) = %v", err)
	}
	if !h.mv() {
		return
	}
	got := call(t, inst, "reverse", engine.EncodeI32(-1), engine.EncodeI64(-2), engine.EncodeF32(3.5), engine.EncodeF64(-4.25))
	if engine.DecodeF64(got[0]) != -4.25 || engine.DecodeF32(got[1]) != 3.5 || int64(got[2]) != -2 || engine.DecodeI32(got[3]) != -1 {
		t.Errorf("reverse = %#x", got)
	}
	got = call(t, inst, "five", 10)
	for i, v := range got {
		if v != uint64(10+i) {
			t.Errorf("five(10)[%d] = %d, want %d", i, v, 10+i)
		}
	}
	// NaN payloads and negative zero survive the stack.
	nan := math.Float64frombits(0x7ff8000000000001)
	got = call(t, inst, "reverse", 0, 0, engine.EncodeF32(float32(math.Copysign(0, -1))), engine.EncodeF64(nan))
	if got[0] != 0x7ff8000000000001 || uint32(got[1]) != 0x80000000 {
		t.Errorf("reverse(-0, nan) = %#x %#x", got[0], got[1])
	}
	f, _ := inst.Function("five")
	if s := f.Type().String(); s != "(i32) -> (i32, i32, i32, i32, i32)" {
		t.Errorf("five type = %s", s)
	}
	if f.Name() != "five" {
		t.Errorf("Name() = %q", f.Name())
	}
}

func (h *harness) testHostFunctions(t *testing.T) {
	rt := h.open(t, engine.NewConfig())
	n := 0
	inst := instantiate(t, rt, "values", env(&n))
	if !h.mv() {
		// Every value type through a host call needs multi-value here;
		// one value type each way is reentrancy's.
		if got := call(t, inst, "outer", 4); got[0] != 401 {
			t.Errorf("outer(4) = %d, want 401", got[0])
		}
		return
	}
	got := call(t, inst, "call_echo", engine.EncodeI32(-5), engine.EncodeI64(1<<40), engine.EncodeF32(0.25), engine.EncodeF64(8))
	if engine.DecodeI32(got[0]) != -4 || int64(got[1]) != 1<<41 || engine.DecodeF32(got[2]) != 0.5 || engine.DecodeF64(got[3]) != -8 {
		t.Errorf("call_echo = %#x", got)
	}
}

func expectTrap(t *testing.T, err error, code engine.TrapCode) *engine.Trap {
	t.Helper()
	var tr *engine.Trap
	if !errors.As(err, &tr) {
		t.Fatalf("error %v (%T) is not a *engine.Trap (want %s)", err, err, code)
	}
	if tr.Code != code {
		t.Fatalf("trap code = %s (message %q), want %s", tr.Code, tr.Message, code)
	}
	return tr
}

func callErr(t *testing.T, inst engine.Instance, name string, stack ...uint64) error {
	t.Helper()
	f, err := inst.Function(name)
	if err != nil {
		t.Fatalf("Function(%q): %v", name, err)
	}
	if n := f.Type().StackSize(); len(stack) < n {
		stack = append(stack, make([]uint64, n-len(stack))...)
	}
	return f.Call(context.Background(), stack)
}

func (h *harness) testHostError(t *testing.T) {
	rt := h.open(t, engine.NewConfig())
	n := 0
	inst := instantiate(t, rt, "values", env(&n))
	err := callErr(t, inst, "call_fail")
	tr := expectTrap(t, err, engine.TrapHostError)
	if !errors.Is(err, errBoom) {
		t.Errorf("errors.Is(%v, errBoom) = false", err)
	}
	if tr.Runtime != h.rt {
		t.Errorf("Trap.Runtime = %q, want %q", tr.Runtime, h.rt)
	}
}

func panicker(v any) engine.HostModule {
	return engine.HostModule{Name: "env", Functions: []engine.HostFunction{
		{Name: "echo", Type: engine.FuncType{Params: []engine.ValueType{engine.I32, engine.I64, engine.F32, engine.F64}, Results: []engine.ValueType{engine.I32, engine.I64, engine.F32, engine.F64}},
			Func: func(context.Context, engine.Caller, []uint64) error { panic(v) }},
		{Name: "fail", Func: func(context.Context, engine.Caller, []uint64) error { return engine.Exit(3) }},
		{Name: "reenter", Type: engine.FuncType{Params: []engine.ValueType{engine.I32}, Results: []engine.ValueType{engine.I32}},
			Func: func(_ context.Context, _ engine.Caller, stack []uint64) error {
				var m map[string]int
				m["nil map write"] = 1 // a runtime panic, not a deliberate one
				return nil
			}},
	}}
}

func (h *harness) testHostPanic(t *testing.T) {
	rt := h.open(t, engine.NewConfig())
	if h.mv() {
		inst := instantiate(t, rt, "values", panicker("host panic value"))
		err := callErr(t, inst, "call_echo")
		expectTrap(t, err, engine.TrapHostPanic)
		var p *engine.PanicError
		if !errors.As(err, &p) || p.Value != "host panic value" || p.Function != "env.echo" {
			t.Errorf("panic error = %#v", p)
		}
	}
	inst2 := instantiate(t, rt, "values", panicker(nil))
	err := callErr(t, inst2, "outer", 1)
	expectTrap(t, err, engine.TrapHostPanic)
	var re runtime.Error
	if !errors.As(err, &re) {
		t.Errorf("a runtime panic should unwrap to runtime.Error: %v", err)
	}
}

func (h *harness) testExit(t *testing.T) {
	rt := h.open(t, engine.NewConfig())
	inst := instantiate(t, rt, "values", panicker(nil))
	err := callErr(t, inst, "call_fail")
	tr := expectTrap(t, err, engine.TrapExit)
	if tr.ExitCode != 3 || !strings.Contains(err.Error(), "3") {
		t.Errorf("exit trap = %v (code %d), want code 3", err, tr.ExitCode)
	}
}

func (h *harness) testReentrancy(t *testing.T) {
	rt := h.open(t, engine.NewConfig())
	n := 0
	inst := instantiate(t, rt, "values", env(&n))
	// outer(x) = reenter(x)+1, reenter calls inner twice: inner(inner(x)) = 100x.
	got := call(t, inst, "outer", 3)
	if got[0] != 301 || n != 1 {
		t.Errorf("outer(3) = %d (reenter ran %d times), want 301 and 1", got[0], n)
	}
	if c := call(t, inst, "counter"); c[0] != 2 {
		t.Errorf("inner ran %d times, want 2", c[0])
	}
	// Deep nesting: a host function that recurses through the guest.
	depth := 0
	var rec engine.HostModule
	rec = engine.HostModule{Name: "env", Functions: []engine.HostFunction{
		env(&n).Functions[0], env(&n).Functions[1],
		{Name: "reenter", Type: engine.FuncType{Params: []engine.ValueType{engine.I32}, Results: []engine.ValueType{engine.I32}},
			Func: func(ctx context.Context, c engine.Caller, stack []uint64) error {
				depth++
				if stack[0] == 0 {
					return nil
				}
				outer, err := c.Function("outer")
				if err != nil {
					return err
				}
				s := []uint64{stack[0] - 1}
				if err := outer.Call(ctx, s); err != nil {
					return err
				}
				stack[0] = s[0]
				return nil
			}},
	}}
	inst2 := instantiate(t, rt, "values", rec)
	// outer(k) = reenter(k)+1 = outer(k-1)+1 ... depth k+1: result = 2k+... outer(0)=0+1.
	got = call(t, inst2, "outer", 20)
	if got[0] != 21 || depth != 21 {
		t.Errorf("outer(20) through 20 nested calls = %d (depth %d), want 21 (21)", got[0], depth)
	}
}

func (h *harness) testMemory(t *testing.T) {
	rt := h.open(t, engine.NewConfig())
	n := 0
	inst := instantiate(t, rt, "values", env(&n))
	mem := inst.Memory()
	if mem == nil {
		t.Fatal("Memory() = nil")
	}
	if mem.Size() != engine.PageSize || mem.Pages() != 1 {
		t.Fatalf("Size() = %d, Pages() = %d, want 65536 and 1", mem.Size(), mem.Pages())
	}
	if inst.ExportedMemory("memory") == nil || inst.ExportedMemory("nope") != nil {
		t.Error("ExportedMemory by name is wrong")
	}
	// The active data segment is in place.
	if b, ok := mem.Read(1000, 7); !ok || string(b) != "anywasm" {
		t.Errorf("data segment at 1000 = %q %v", b, ok)
	}
	// The host writes, the guest reads, and back.
	if !mem.WriteUint32Le(100, 0xdeadbeef) {
		t.Fatal("WriteUint32Le(100) failed")
	}
	if got := call(t, inst, "load", 100); got[0] != 0xdeadbeef {
		t.Errorf("guest load = %#x", got[0])
	}
	call(t, inst, "store", 200, 0x01020304)
	if v, ok := mem.ReadUint32Le(200); !ok || v != 0x01020304 {
		t.Errorf("host ReadUint32Le = %#x %v", v, ok)
	}
	if b, ok := mem.Read(200, 4); !ok || string(b) != "\x04\x03\x02\x01" {
		t.Errorf("Read = %q %v", b, ok)
	}
	if !mem.Write(300, []byte("hello")) {
		t.Error("Write failed")
	}
	if b, ok := mem.ReadUint8(304); !ok || b != 'o' {
		t.Errorf("ReadUint8 = %q", b)
	}
	if !mem.WriteUint8(305, '!') || !mem.WriteUint64Le(400, 1<<60|7) {
		t.Error("WriteUint8/WriteUint64Le failed")
	}
	if v, ok := mem.ReadUint64Le(400); !ok || v != 1<<60|7 {
		t.Errorf("ReadUint64Le = %#x", v)
	}
	// Bounds: every accessor refuses the last byte + 1 and offsets near 2^32.
	end := uint32(mem.Size())
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"Read end", func() bool { _, ok := mem.Read(end-4, 5); return ok }()},
		{"Read wrap", func() bool { _, ok := mem.Read(math.MaxUint32, 2); return ok }()},
		{"Write", mem.Write(end-1, []byte{1, 2})},
		{"ReadUint8", func() bool { _, ok := mem.ReadUint8(end); return ok }()},
		{"WriteUint8", mem.WriteUint8(end, 1)},
		{"ReadUint32Le", func() bool { _, ok := mem.ReadUint32Le(end - 3); return ok }()},
		{"WriteUint32Le", mem.WriteUint32Le(math.MaxUint32-1, 1)},
		{"ReadUint64Le", func() bool { _, ok := mem.ReadUint64Le(end - 7); return ok }()},
		{"WriteUint64Le", mem.WriteUint64Le(end-4, 1)},
	} {
		if c.ok {
			t.Errorf("%s out of bounds succeeded", c.name)
		}
	}
	if b, ok := mem.Read(end-4, 4); !ok || len(b) != 4 {
		t.Error("Read of the last 4 bytes failed")
	}
	if b, ok := mem.Read(end, 0); !ok || len(b) != 0 {
		t.Error("Read of 0 bytes at the end failed")
	}
	// Grow from the host, then from the guest; the maximum is 4 pages.
	if prev, ok := mem.Grow(1); !ok || prev != 1 {
		t.Errorf("Grow(1) = %d %v", prev, ok)
	}
	if mem.Pages() != 2 || mem.Size() != 2*engine.PageSize {
		t.Errorf("after Grow, Pages() = %d", mem.Pages())
	}
	if !mem.WriteUint32Le(2*engine.PageSize-4, 7) {
		t.Error("write to the grown page failed")
	}
	if got := call(t, inst, "grow", 1); got[0] != 2 {
		t.Errorf("guest memory.grow(1) = %d, want 2", int32(got[0]))
	}
	// The host sees the guest's growth.
	if mem.Pages() != 3 {
		t.Errorf("after guest grow, Pages() = %d, want 3", mem.Pages())
	}
	if !mem.WriteUint32Le(3*engine.PageSize-4, 9) {
		t.Error("host write to the page the guest grew failed")
	}
	if got := call(t, inst, "load", 3*engine.PageSize-4); got[0] != 9 {
		t.Errorf("guest read of host write in grown page = %d", got[0])
	}
	if _, ok := mem.Grow(2); ok {
		t.Error("Grow past the module's maximum (4 pages) succeeded")
	}
	if got := call(t, inst, "grow", 5); int32(got[0]) != -1 {
		t.Errorf("guest grow past max = %d, want -1", int32(got[0]))
	}
	if m := instantiate(t, rt, "features").Memory(); m == nil {
		t.Error("features guest has a memory")
	}
	if inst2 := instantiate(t, rt, "nomem"); inst2.Memory() != nil {
		t.Error("Memory() of a module without memory is not nil")
	}
}

func (h *harness) testTraps(t *testing.T) {
	rt := h.open(t, engine.NewConfig())
	n := 0
	for _, c := range []struct {
		fn    string
		code  engine.TrapCode
		stack []uint64
	}{
		{"trap_unreachable", engine.TrapUnreachable, nil},
		{"trap_memory", engine.TrapMemoryOutOfBounds, nil},
		{"trap_table", engine.TrapTableOutOfBounds, nil},
		{"trap_null", engine.TrapTableOutOfBounds, nil},
		{"trap_signature", engine.TrapIndirectCallTypeMismatch, nil},
		{"trap_stack", engine.TrapStackOverflow, nil},
		{"trap_div_zero", engine.TrapIntegerDivideByZero, []uint64{0}},
		{"trap_overflow", engine.TrapIntegerOverflow, nil},
		{"trap_conversion", engine.TrapInvalidConversion, nil},
	} {
		t.Run(c.fn, func(t *testing.T) {
			inst := instantiate(t, rt, "values", env(&n)) // a fresh instance: a trap fails it
			tr := expectTrap(t, callErr(t, inst, c.fn, c.stack...), c.code)
			if tr.Runtime != h.rt || tr.Message == "" {
				t.Errorf("trap Runtime %q Message %q", tr.Runtime, tr.Message)
			}
		})
	}
}

// framesEnv returns the host module of the frames guest: env.fail fails as
// fail says; env.reenter(n) calls the guest's outer(n-1), or inner(n) when n
// is 0, and fails with the error of that call, which it appends to nested.
func framesEnv(fail func() error, nested *[]error) engine.HostModule {
	return engine.HostModule{Name: "env", Functions: []engine.HostFunction{
		{Name: "fail", Func: func(context.Context, engine.Caller, []uint64) error { return fail() }},
		{Name: "reenter", Type: engine.FuncType{Params: []engine.ValueType{engine.I32}, Results: []engine.ValueType{engine.I32}},
			Func: func(ctx context.Context, c engine.Caller, stack []uint64) error {
				name, arg := "inner", stack[0]
				if arg > 0 {
					name, arg = "outer", arg-1
				}
				f, err := c.Function(name)
				if err != nil {
					return err
				}
				err = f.Call(ctx, []uint64{arg})
				if err != nil {
					*nested = append(*nested, err)
				}
				return err
			}},
	}}
}

// frame is what testFrames expects of a frame: a name, a function index,
// whether it is a host function, and, with CapFrameOffsets, the opcode at
// its offset (0x10 for a call).
type frame struct {
	name   string
	index  uint32
	host   bool
	opcode byte
}

const opCall = 0x10

// checkFrames checks tr's frames against want, innermost first; module is
// the guest's name section module name and wasm its bytes.
func (h *harness) checkFrames(t *testing.T, tr *engine.Trap, module string, wasm []byte, want ...frame) {
	t.Helper()
	if !h.info.Capabilities.Has(engine.CapCallerFrames) && len(want) > 1 {
		want = want[:1] // only the frame that trapped
	}
	if len(tr.Frames) != len(want) {
		t.Fatalf("%d frames %v, want %d %v (trap %v)", len(tr.Frames), tr.Frames, len(want), want, tr)
	}
	offsets := h.info.Capabilities.Has(engine.CapFrameOffsets)
	for i, f := range tr.Frames {
		w := want[i]
		if f.FuncIndex != w.index || f.Host != w.host {
			t.Errorf("frame %d = %+v, want function %d (host %v)", i, f, w.index, w.host)
		}
		switch {
		case w.host:
			if f.Module != "env" || f.Func != w.name || f.Offset != 0 {
				t.Errorf("host frame %d = %+v, want env.%s, offset 0", i, f, w.name)
			}
		case f.Module != module || f.Func != w.name:
			t.Errorf("frame %d = %+v, want module %q function %q", i, f, module, w.name)
		case !offsets && f.Offset != 0:
			t.Errorf("frame %d = %+v: an offset on a runtime without CapFrameOffsets", i, f)
		case offsets && (f.Offset == 0 || f.Offset >= uint64(len(wasm)) || wasm[f.Offset] != w.opcode):
			got := -1
			if f.Offset < uint64(len(wasm)) {
				got = int(wasm[f.Offset])
			}
			t.Errorf("frame %d = %+v: the opcode at its offset is %#x, want %#x", i, f, got, w.opcode)
		}
	}
}

// chain returns the frames part of a trap's Error() text, "outer -> inner",
// as the runtime reports it: the innermost frame only without
// CapCallerFrames.
func (h *harness) chain(full string) string {
	if h.info.Capabilities.Has(engine.CapCallerFrames) {
		return full
	}
	return full[strings.LastIndex(full, " -> ")+len(" -> "):]
}

// withoutFrames returns the text of tr's Error() without the backtrace.
func withoutFrames(tr *engine.Trap) string {
	c := *tr
	c.Frames = nil
	return c.Error()
}

func (h *harness) testFrames(t *testing.T) {
	rt := h.open(t, engine.NewConfig())
	named, anon := Guest("frames"), Guest("frames_nonames")
	var nested []error
	boom := func() error { return errBoom }
	run := func(t *testing.T, guest, fn string, fail func() error, stack ...uint64) *engine.Trap {
		t.Helper()
		nested = nil
		inst := instantiate(t, rt, guest, framesEnv(fail, &nested))
		err := callErr(t, inst, fn, stack...)
		var tr *engine.Trap
		if !errors.As(err, &tr) {
			t.Fatalf("%s: error %v (%T) is not a *engine.Trap", fn, err, err)
		}
		return tr
	}
	hostFrames := h.info.Capabilities.Has(engine.CapHostTrapFrames)

	t.Run("Names", func(t *testing.T) {
		tr := run(t, "frames", "trigger2", boom)
		expectTrap(t, tr, engine.TrapUnreachable)
		h.checkFrames(t, tr, "frames", named,
			frame{"one", 2, false, 0x00}, frame{"two", 3, false, opCall},
			frame{"three", 4, false, opCall}, frame{"trigger2", 5, false, opCall})
		want := withoutFrames(tr) + ": " + h.chain("trigger2 -> three -> two -> one")
		if got := tr.Error(); got != want || !strings.Contains(got, h.chain("trigger2 -> three -> two -> one")) {
			t.Errorf("Error() = %q, want %q", got, want)
		}
	})
	t.Run("NoNameSection", func(t *testing.T) {
		tr := run(t, "frames_nonames", "trigger2", boom)
		expectTrap(t, tr, engine.TrapUnreachable)
		h.checkFrames(t, tr, "", anon,
			frame{"", 2, false, 0x00}, frame{"", 3, false, opCall}, frame{"", 4, false, opCall}, frame{"", 5, false, opCall})
		if got := tr.Error(); !strings.HasSuffix(got, "): "+h.chain("func[5] -> func[4] -> func[3] -> func[2]")) {
			t.Errorf("Error() = %q, want it to end with the frames func[5] -> func[4] -> func[3] -> func[2]", got)
		}
	})
	t.Run("DivideByZero", func(t *testing.T) {
		tr := run(t, "frames", "trap_div", boom, 0)
		expectTrap(t, tr, engine.TrapIntegerDivideByZero)
		h.checkFrames(t, tr, "frames", named, frame{"divide", 6, false, 0x6e}, frame{"trap_div", 7, false, opCall})
		if !strings.HasSuffix(tr.Error(), ": "+h.chain("trap_div -> divide")) {
			t.Errorf("Error() = %q", tr.Error())
		}
	})
	t.Run("OutOfBounds", func(t *testing.T) {
		tr := run(t, "frames", "trap_oob", boom)
		expectTrap(t, tr, engine.TrapMemoryOutOfBounds)
		h.checkFrames(t, tr, "frames", named, frame{"load", 8, false, 0x28}, frame{"trap_oob", 9, false, opCall})
	})
	t.Run("MaxFrames", func(t *testing.T) {
		for _, n := range []uint64{engine.MaxFrames - 2, 40} {
			tr := run(t, "frames", "deep", boom, n)
			expectTrap(t, tr, engine.TrapUnreachable)
			// The innermost frames only: deep at unreachable, then its calls.
			want := []frame{{"deep", 13, false, 0x00}}
			for len(want) < min(int(n)+1, engine.MaxFrames) && h.info.Capabilities.Has(engine.CapCallerFrames) {
				want = append(want, frame{"deep", 13, false, opCall})
			}
			h.checkFrames(t, tr, "frames", named, want...)
			got, chain := tr.Error(), strings.Repeat(" -> deep", len(want))[4:]
			if len(want) == engine.MaxFrames {
				chain = "... -> " + chain
			}
			if got != withoutFrames(tr)+": "+chain {
				t.Errorf("deep(%d): Error() = %q, want the frames %q", n, got, chain)
			}
		}
	})
	t.Run("StackOverflow", func(t *testing.T) {
		// wazero's compiler gives no backtrace for a stack overflow.
		tr := run(t, "frames", "recurse", boom)
		expectTrap(t, tr, engine.TrapStackOverflow)
		if len(tr.Frames) > engine.MaxFrames {
			t.Errorf("%d frames, more than MaxFrames", len(tr.Frames))
		}
		for i, f := range tr.Frames {
			if f.Func != "recurse" || f.FuncIndex != 14 || f.Host {
				t.Fatalf("frame %d = %+v, want recurse (14)", i, f)
			}
		}
	})
	// A trap raised by a host function has the host function as its
	// innermost frame, then (CapHostTrapFrames) its callers.
	for _, c := range []struct {
		name string
		fail func() error
		code engine.TrapCode
	}{
		{"HostError", boom, engine.TrapHostError},
		{"HostPanic", func() error { panic("host panic value") }, engine.TrapHostPanic},
		{"Exit", func() error { return engine.Exit(3) }, engine.TrapExit},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, guest := range []string{"frames", "frames_nonames"} {
				tr := run(t, guest, "call_fail", c.fail)
				expectTrap(t, tr, c.code)
				want := []frame{{"fail", 0, true, 0}}
				suffix := ": env.fail"
				if hostFrames {
					caller := frame{"call_fail", 10, false, opCall}
					wasm, module := named, "frames"
					if guest == "frames_nonames" {
						caller.name, wasm, module = "", anon, ""
					}
					h.checkFrames(t, tr, module, wasm, append(want, caller)...)
					suffix = ": " + engine.Frame{Func: caller.name, FuncIndex: 10}.String() + " -> env.fail"
				} else {
					h.checkFrames(t, tr, "", nil, want...)
				}
				if got := tr.Error(); got != withoutFrames(tr)+suffix {
					t.Errorf("%s: Error() = %q, want the frames %q", guest, got, suffix[2:])
				}
			}
		})
	}
	// Re-entrancy: outer(n) -> env.reenter -> outer(n-1) -> ... -> outer(0)
	// -> env.reenter -> inner -> two -> one. Each call lists its own frames,
	// however deep the calls around it (25 is deeper than MaxFrames); each
	// host function fails with the trap of the call it made.
	t.Run("Reentrancy", func(t *testing.T) {
		for _, depth := range []uint64{2, 25} {
			tr := run(t, "frames", "outer", boom, depth)
			if len(nested) != int(depth)+1 {
				t.Fatalf("outer(%d): %d nested calls failed, want %d (top-level error %v)", depth, len(nested), depth+1, tr)
			}
			inner := expectTrap(t, nested[0], engine.TrapUnreachable)
			h.checkFrames(t, inner, "frames", named, frame{"one", 2, false, 0x00}, frame{"two", 3, false, opCall}, frame{"inner", 12, false, opCall})
			if !strings.HasSuffix(inner.Error(), ": "+h.chain("inner -> two -> one")) {
				t.Errorf("nested Error() = %q", inner.Error())
			}
			want := []frame{{"reenter", 1, true, 0}}
			if hostFrames {
				want = append(want, frame{"outer", 11, false, opCall})
			}
			for i, err := range append(nested[1:], error(tr)) {
				outer := expectTrap(t, err, engine.TrapHostError)
				h.checkFrames(t, outer, "frames", named, want...)
				if !errors.Is(outer, nested[i]) {
					t.Errorf("call %d: %v does not wrap the nested call's %v", i, outer, nested[i])
				}
			}
			if got := tr.Error(); !strings.Contains(got, ": "+h.chain("inner -> two -> one")) || !strings.HasSuffix(got, "env.reenter") {
				t.Errorf("Error() = %q, want the nested frames and then its own", got)
			}
		}
	})
	t.Run("StartFunction", func(t *testing.T) {
		ctx := context.Background()
		m, err := rt.Compile(ctx, Guest("start"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = rt.Instantiate(ctx, m, nil)
		tr := expectTrap(t, err, engine.TrapUnreachable)
		h.checkFrames(t, tr, "", Guest("start"), frame{"", 0, false, 0x00})
	})
	// Frames cost nothing on success.
	t.Run("NoAllocations", func(t *testing.T) {
		if !h.info.Capabilities.Has(engine.CapAllocFreeCalls) {
			t.Skipf("%s does not promise calls free of allocations", h.name)
		}
		inst := instantiate(t, rt, "frames", framesEnv(boom, &nested))
		f, err := inst.Function("trap_div")
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		stack := []uint64{1}
		if n := testing.AllocsPerRun(100, func() {
			stack[0] = 1
			if err := f.Call(ctx, stack); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%v allocations per successful call, want 0", n)
		}
	})
}

func (h *harness) testAfterTrap(t *testing.T) {
	rt := h.open(t, engine.NewConfig())
	n := 0
	inst := instantiate(t, rt, "values", env(&n))
	call(t, inst, "store", 8, 77)
	if inst.Failed() {
		t.Fatal("Failed() before any trap")
	}
	expectTrap(t, callErr(t, inst, "trap_unreachable"), engine.TrapUnreachable)
	if !inst.Failed() {
		t.Error("Failed() = false after a trap")
	}
	if err := callErr(t, inst, "nop"); !errors.Is(err, engine.ErrFailed) {
		t.Errorf("call after trap = %v, want ErrFailed", err)
	}
	if v, ok := inst.Memory().ReadUint32Le(8); !ok || v != 77 {
		t.Errorf("memory after trap = %d %v, want 77 (memory stays readable)", v, ok)
	}
	// Other instances of the same module are unaffected.
	inst2 := instantiate(t, rt, "values", env(&n))
	if got := call(t, inst2, "i32_add", 1, 2); got[0] != 3 {
		t.Error("a fresh instance after another's trap misbehaves")
	}
	// A host error fails the instance too.
	expectTrap(t, callErr(t, inst2, "call_fail"), engine.TrapHostError)
	if err := callErr(t, inst2, "nop"); !errors.Is(err, engine.ErrFailed) {
		t.Errorf("call after host error = %v, want ErrFailed", err)
	}
}

func (h *harness) testStart(t *testing.T) {
	rt := h.open(t, engine.NewConfig())
	ctx := context.Background()
	m, err := rt.Compile(ctx, Guest("start"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = rt.Instantiate(ctx, m, nil)
	expectTrap(t, err, engine.TrapUnreachable)

	got := uint64(0)
	inst := instantiate(t, rt, "startcall", engine.HostModule{Name: "env", Functions: []engine.HostFunction{{
		Name: "started", Type: engine.FuncType{Params: []engine.ValueType{engine.I32}},
		Func: func(_ context.Context, c engine.Caller, stack []uint64) error {
			if c == nil {
				return errors.New("nil caller in start function")
			}
			got = stack[0]
			return nil
		},
	}}})
	if got != 42 || inst == nil {
		t.Errorf("start function passed %d to the host, want 42", got)
	}
}

func (h *harness) testImports(t *testing.T) {
	rt := h.open(t, engine.NewConfig())
	ctx := context.Background()
	if !h.mv() {
		t.Skip("the import checks use multi-value")
	}
	m, err := rt.Compile(ctx, Guest("values"))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Imports()) != 3 || m.Imports()[0].Module != "env" || m.Imports()[0].Name != "echo" ||
		m.Imports()[0].Type.String() != "(i32, i64, f32, f64) -> (i32, i64, f32, f64)" {
		t.Errorf("Imports() = %+v", m.Imports())
	}
	if ft, ok := m.Info().ExportedFunction("five"); !ok || len(ft.Results) != 5 {
		t.Errorf("ExportedFunction(five) = %v %v", ft, ok)
	}
	if !m.Info().HasExport("memory", engine.ExternMemory) {
		t.Error("HasExport(memory) = false")
	}
	// Missing import: nil imports, and imports lacking one function.
	_, err = rt.Instantiate(ctx, m, nil)
	if err == nil || !strings.Contains(err.Error(), "env.echo") || !strings.Contains(err.Error(), "(i32, i64, f32, f64) -> (i32, i64, f32, f64)") {
		t.Errorf("missing import error = %v", err)
	}
	n := 0
	full := env(&n)
	partial := engine.HostModule{Name: "env", Functions: full.Functions[:2]}
	imp, err := rt.NewImports(partial)
	if err != nil {
		t.Fatal(err)
	}
	_, err = rt.Instantiate(ctx, m, imp)
	if err == nil || !strings.Contains(err.Error(), "missing import env.reenter (i32) -> (i32)") {
		t.Errorf("missing import error = %v", err)
	}
	// Wrong signature.
	wrong := engine.HostModule{Name: "env", Functions: append(append([]engine.HostFunction(nil), full.Functions[:2]...),
		engine.HostFunction{Name: "reenter", Type: engine.FuncType{Params: []engine.ValueType{engine.I64}, Results: []engine.ValueType{engine.I32}},
			Func: func(context.Context, engine.Caller, []uint64) error { return nil }})}
	imp, err = rt.NewImports(wrong)
	if err != nil {
		t.Fatal(err)
	}
	_, err = rt.Instantiate(ctx, m, imp)
	if err == nil || !strings.Contains(err.Error(), "env.reenter") || !strings.Contains(err.Error(), "(i64) -> (i32)") || !strings.Contains(err.Error(), "(i32) -> (i32)") {
		t.Errorf("wrong signature error = %v", err)
	}
	// Extra host functions and modules are fine.
	extra := env(&n)
	extra.Functions = append(extra.Functions, engine.HostFunction{Name: "unused", Func: func(context.Context, engine.Caller, []uint64) error { return nil }})
	imp, err = rt.NewImports(extra, engine.HostModule{Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Instantiate(ctx, m, imp); err != nil {
		t.Errorf("instantiate with extra host functions: %v", err)
	}
	// Invalid host definitions are refused.
	fn := func(context.Context, engine.Caller, []uint64) error { return nil }
	for name, mods := range map[string][]engine.HostModule{
		"empty module name": {{Name: ""}},
		"duplicate module":  {{Name: "a"}, {Name: "a"}},
		"empty func name":   {{Name: "a", Functions: []engine.HostFunction{{Func: fn}}}},
		"duplicate func":    {{Name: "a", Functions: []engine.HostFunction{{Name: "f", Func: fn}, {Name: "f", Func: fn}}}},
		"nil func":          {{Name: "a", Functions: []engine.HostFunction{{Name: "f"}}}},
		"reference param":   {{Name: "a", Functions: []engine.HostFunction{{Name: "f", Func: fn, Type: engine.FuncType{Params: []engine.ValueType{engine.ExternRef}}}}}},
	} {
		if _, err := rt.NewImports(mods...); err == nil {
			t.Errorf("NewImports(%s) succeeded", name)
		}
	}
}

func (h *harness) testBadModules(t *testing.T) {
	rt := h.open(t, engine.NewConfig())
	ctx := context.Background()
	valid := h.guest("values")
	for name, b := range map[string][]byte{
		"empty":          nil,
		"not wasm":       []byte("hello, world"),
		"bad version":    []byte("\x00asm\x02\x00\x00\x00"),
		"truncated":      valid[:len(valid)/2],
		"bad section":    append([]byte("\x00asm\x01\x00\x00\x00"), 0x01, 0xff, 0xff, 0xff, 0xff, 0x0f),
		"invalid body":   invalidBody(),
		"text format":    []byte("(module)"),
		"huge vector":    append([]byte("\x00asm\x01\x00\x00\x00"), 0x01, 0x05, 0xff, 0xff, 0xff, 0xff, 0x0f),
		"component-like": []byte("\x00asm\x0d\x00\x01\x00"),
	} {
		m, err := rt.Compile(ctx, b)
		if err == nil {
			_ = m.Close(ctx)
			t.Errorf("Compile(%s) succeeded", name)
			continue
		}
		if !strings.HasPrefix(err.Error(), "engine: compile ("+h.rt+")") {
			t.Errorf("Compile(%s) error %q lacks the engine prefix", name, err)
		}
	}
	// The minimal valid module compiles.
	if m, err := rt.Compile(ctx, []byte("\x00asm\x01\x00\x00\x00")); err != nil {
		t.Errorf("Compile(empty module) = %v", err)
	} else {
		_ = m.Close(ctx)
	}
}

// invalidBody is a well-formed module whose only function fails validation:
// it returns an i64 where its type says i32.
func invalidBody() []byte {
	return []byte{
		0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
		0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, // type () -> i32
		0x03, 0x02, 0x01, 0x00, // one function of type 0
		0x0a, 0x06, 0x01, 0x04, 0x00, 0x42, 0x00, 0x0b, // body: i64.const 0
	}
}

func (h *harness) testFeatures(t *testing.T) {
	rt := h.open(t, engine.NewConfig())
	inst := instantiate(t, rt, "features")
	if got := call(t, inst, "bulk"); got[0] != '!' {
		t.Errorf("bulk = %d, want '!'", got[0])
	}
	if b, ok := inst.Memory().Read(32, 8); !ok || string(b) != "hello!!!" {
		t.Errorf("bulk memory = %q", b)
	}
	if got := call(t, inst, "extend8", 0x80); engine.DecodeI32(got[0]) != -128 {
		t.Errorf("extend8(0x80) = %d", engine.DecodeI32(got[0]))
	}
	if got := call(t, inst, "extend32", 0xffffffff); int64(got[0]) != -1 {
		t.Errorf("extend32 = %d", int64(got[0]))
	}
	if got := call(t, inst, "sat", engine.EncodeF32(float32(math.Inf(1)))); engine.DecodeI32(got[0]) != math.MaxInt32 {
		t.Errorf("sat(+inf) = %d", engine.DecodeI32(got[0]))
	}
	if got := call(t, inst, "sat", engine.EncodeF32(float32(math.NaN()))); got[0] != 0 {
		t.Errorf("sat(nan) = %d", got[0])
	}
	// refs: call_indirect -> 2, table.size 4, both nulls -> 1 + 1.
	if got := call(t, inst, "refs"); got[0] != 8 {
		t.Errorf("refs = %d, want 8", got[0])
	}
	if !h.mv() {
		return
	}
	if got := call(t, inst, "multi_block"); got[0] != 42 {
		t.Errorf("multi_block = %d", got[0])
	}
}

func (h *harness) refuses(t *testing.T, cfg engine.Config) {
	t.Helper()
	_, err := engine.Open(h.name, h.config(cfg))
	if !errors.Is(err, engine.ErrNotSupported) {
		t.Errorf("Open with an unsupported limit = %v, want ErrNotSupported", err)
	}
}

// testInstancePool: a runtime without CapInstancePool refuses a pool; one
// with it refuses an instance beyond the pool with ErrPoolExhausted, and
// makes one again once an instance is closed.
func (h *harness) testInstancePool(t *testing.T) {
	cfg := engine.NewConfig().WithInstancePool(2)
	if !h.info.Capabilities.Has(engine.CapInstancePool) {
		h.refuses(t, cfg)
		return
	}
	if h.with != nil {
		// RunWith may set its own pool: this test needs a pool of 2.
		t.Skip("the pool test runs in Run only")
	}
	rt := h.open(t, cfg)
	a := instantiate(t, rt, "small")
	instantiate(t, rt, "small")
	m, err := rt.Compile(context.Background(), Guest("small"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Instantiate(context.Background(), m, nil); !errors.Is(err, engine.ErrPoolExhausted) {
		t.Fatalf("a third instance in a pool of 2: %v, want ErrPoolExhausted", err)
	}
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	c, err := rt.Instantiate(context.Background(), m, nil)
	if err != nil {
		t.Fatalf("Instantiate after a Close in a full pool: %v", err)
	}
	if got := call(t, c, "answer"); got[0] != 42 {
		t.Errorf("answer = %d", got[0])
	}
}

func (h *harness) testMemoryLimit(t *testing.T) {
	cfg := engine.NewConfig().WithMemoryLimitPages(2)
	if !h.info.Capabilities.Has(engine.CapMemoryLimit) {
		h.refuses(t, cfg)
		return
	}
	if _, err := engine.Open(h.name, h.config(engine.NewConfig().WithMemoryLimitPages(engine.MaxPages+1))); err == nil {
		t.Error("a limit above 65536 pages was accepted")
	}
	rt := h.open(t, cfg)
	n := 0
	inst := instantiate(t, rt, "values", env(&n))
	if got := call(t, inst, "grow", 1); got[0] != 1 {
		t.Errorf("grow(1) within the limit = %d", int32(got[0]))
	}
	if got := call(t, inst, "grow", 1); int32(got[0]) != -1 {
		t.Errorf("guest grow past the limit = %d, want -1", int32(got[0]))
	}
	if _, ok := inst.Memory().Grow(1); ok {
		t.Error("host Grow past the limit succeeded")
	}
	// A module whose minimum exceeds the limit is refused at compile or
	// instantiation, depending on the runtime.
	ctx := context.Background()
	if m, err := rt.Compile(ctx, Guest("bigmem")); err == nil {
		if inst, err := rt.Instantiate(ctx, m, nil); err == nil {
			_ = inst.Close(ctx)
			t.Error("a module needing 100 pages instantiated under a 2-page limit")
		}
	}
}

func (h *harness) testInterrupt(t *testing.T) {
	cfg := engine.NewConfig().WithInterruptOnContextDone(true)
	if !h.info.Capabilities.Has(engine.CapInterrupt) {
		h.refuses(t, cfg)
		return
	}
	before := runtime.NumGoroutine()
	rt := h.open(t, cfg)
	n := 0
	inst := instantiate(t, rt, "values", env(&n))
	f, err := inst.Function("loop_forever")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = f.Call(ctx, nil)
	expectTrap(t, err, engine.TrapInterrupted)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("errors.Is(%v, context.DeadlineExceeded) = false", err)
	}
	// Cancellation, from another goroutine.
	inst2 := instantiate(t, rt, "values", env(&n))
	f2, _ := inst2.Function("loop_forever")
	for delay := 20 * time.Millisecond; ; delay *= 2 {
		ctx2, cancel2 := context.WithCancel(context.Background())
		go func() { time.Sleep(delay); cancel2() }()
		err = f2.Call(ctx2, nil)
		// Cancelled before the call started (a slow machine, qemu): the
		// call was refused, not interrupted; try again with more time.
		if tr := (*engine.Trap)(nil); !errors.As(err, &tr) && errors.Is(err, context.Canceled) && delay < 5*time.Second {
			continue
		}
		break
	}
	expectTrap(t, err, engine.TrapInterrupted)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("errors.Is(%v, context.Canceled) = false", err)
	}
	// Calls that finish in time are unaffected, with or without a deadline.
	inst3 := instantiate(t, rt, "values", env(&n))
	ctx3, cancel3 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel3()
	for i := 0; i < 100; i++ {
		s := []uint64{1, 2}
		g, _ := inst3.Function("i32_add")
		if err := g.Call(ctx3, s); err != nil || s[0] != 3 {
			t.Fatalf("i32_add with a deadline = %v %d", err, s[0])
		}
	}
	// Calls under contexts that cannot be cancelled, on a runtime that
	// interrupts: a runtime may watch each call's context from another
	// goroutine after the call returned (wazero does), so whatever the
	// backend wraps the context in must stay valid (this crashed once).
	type key struct{}
	vctx := context.WithValue(context.Background(), key{}, 1)
	for i := 0; i < 20000; i++ {
		s := []uint64{1, 2}
		g, _ := inst3.Function("i32_add")
		c := context.Background()
		if i%2 == 1 {
			c = vctx
		}
		if err := g.Call(c, s); err != nil || s[0] != 3 {
			t.Fatalf("i32_add without a deadline = %v %d", err, s[0])
		}
	}
	// An already-cancelled context is refused before the call.
	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	g, _ := inst3.Function("nop")
	if err := g.Call(done, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("call with a cancelled context = %v", err)
	}
	if inst3.Failed() {
		t.Error("refusing a cancelled context failed the instance")
	}
	_ = inst.Close(context.Background())
	_ = inst2.Close(context.Background())
	_ = inst3.Close(context.Background())
	_ = rt.Close(context.Background())
	waitGoroutines(t, before)
}

func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	for i := 0; i < 500; i++ { // up to 10 s: goroutines end late under qemu
		if runtime.NumGoroutine() <= want+1 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("goroutines: %d, want at most %d", runtime.NumGoroutine(), want+1)
}

func (h *harness) testFuel(t *testing.T) {
	cfg := engine.NewConfig().WithFuel(1_000_000)
	if !h.info.Capabilities.Has(engine.CapFuel) {
		h.refuses(t, cfg)
		return
	}
	rt := h.open(t, cfg)
	n := 0
	inst := instantiate(t, rt, "values", env(&n))
	expectTrap(t, callErr(t, inst, "loop_forever"), engine.TrapOutOfFuel)
	// Fuel is per call: many cheap calls in a row all succeed.
	inst2 := instantiate(t, rt, "values", env(&n))
	for i := 0; i < 1000; i++ {
		if got := call(t, inst2, "i32_add", 1, 2); got[0] != 3 {
			t.Fatal("i32_add under fuel")
		}
	}
}

func (h *harness) testCompilationCache(t *testing.T) {
	dir := t.TempDir()
	cfg := engine.NewConfig().WithCompilationCache(dir)
	if !h.info.Capabilities.Has(engine.CapCompilationCache) {
		h.refuses(t, cfg)
		return
	}
	ctx := context.Background()
	for round := 0; round < 2; round++ {
		rt, err := engine.Open(h.name, h.config(cfg))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		inst := instantiate(t, rt, "values", env(&n))
		if got := call(t, inst, "outer", 2); got[0] != 201 {
			t.Errorf("round %d: outer(2) = %d", round, got[0])
		}
		_ = rt.Close(ctx)
		entries, _ := os.ReadDir(dir)
		if len(entries) == 0 {
			t.Errorf("round %d: the cache directory is empty", round)
		}
	}
	// Corrupt every entry in the cache: the runtime must recompile, not
	// crash. (A corrupt key file is refused: see testCacheDirectory.)
	corrupt(t, dir)
	rt, err := engine.Open(h.name, h.config(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	n := 0
	inst := instantiate(t, rt, "values", env(&n))
	if got := call(t, inst, "outer", 2); got[0] != 201 {
		t.Errorf("after corruption: outer(2) = %d", got[0])
	}
}

func corrupt(t *testing.T, dir string) {
	t.Helper()
	err := walk(dir, func(path string) {
		if filepath.Base(path) == filecache.KeyFile {
			return
		}
		b, err := os.ReadFile(path)
		if err != nil || len(b) == 0 {
			return
		}
		for i := len(b) / 3; i < len(b); i += 7 {
			b[i] ^= 0x5a
		}
		_ = os.WriteFile(path, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func walk(dir string, f func(string)) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := dir + string(os.PathSeparator) + e.Name()
		if e.IsDir() {
			if err := walk(p, f); err != nil {
				return err
			}
		} else {
			f(p)
		}
	}
	return nil
}

func (h *harness) testCallErrors(t *testing.T) {
	rt := h.open(t, engine.NewConfig())
	n := 0
	inst := instantiate(t, rt, "values", env(&n))
	fn, size := "five", 5 // five results
	if !h.mv() {
		fn, size = "i64_add", 2 // two parameters
	}
	f, _ := inst.Function(fn)
	if err := f.Call(context.Background(), make([]uint64, size-1)); !errors.Is(err, engine.ErrStackSize) {
		t.Errorf("Call with a short stack = %v, want ErrStackSize", err)
	}
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.Call(done, make([]uint64, size)); !errors.Is(err, context.Canceled) {
		t.Errorf("Call with a cancelled context = %v", err)
	}
	if inst.Failed() {
		t.Error("refused calls failed the instance")
	}
	if got := call(t, inst, "i32_add", 2, 3); got[0] != 5 {
		t.Error("instance unusable after refused calls")
	}
}

func (h *harness) testClose(t *testing.T) {
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	rt := h.open(t, engine.NewConfig())
	n := 0
	m, err := rt.Compile(ctx, h.guest("values"))
	if err != nil {
		t.Fatal(err)
	}
	imp, err := rt.NewImports(env(&n))
	if err != nil {
		t.Fatal(err)
	}
	inst, err := rt.Instantiate(ctx, m, imp)
	if err != nil {
		t.Fatal(err)
	}
	// Closing the module and the imports leaves the instance working,
	// host functions included.
	if err := m.Close(cancelled); err != nil {
		t.Errorf("Module.Close = %v", err)
	}
	if err := imp.Close(cancelled); err != nil {
		t.Errorf("Imports.Close = %v", err)
	}
	runtime.GC()
	if got := call(t, inst, "outer", 1); got[0] != 101 {
		t.Errorf("outer after Module/Imports.Close = %d", got[0])
	}
	if _, err := rt.Instantiate(ctx, m, nil); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("Instantiate of a closed module = %v", err)
	}
	f, _ := inst.Function("nop")
	for i := 0; i < 2; i++ {
		if err := inst.Close(cancelled); err != nil {
			t.Errorf("Instance.Close #%d = %v", i, err)
		}
		if err := m.Close(ctx); err != nil {
			t.Errorf("Module.Close #%d = %v", i, err)
		}
		if err := imp.Close(ctx); err != nil {
			t.Errorf("Imports.Close #%d = %v", i, err)
		}
	}
	if err := f.Call(ctx, nil); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("Call after Close = %v, want ErrClosed", err)
	}
	// Compiling the same bytes twice shares the code; closing one handle
	// leaves the other usable.
	m1, _ := rt.Compile(ctx, Guest("small"))
	m2, err := rt.Compile(ctx, Guest("small"))
	if err != nil {
		t.Fatal(err)
	}
	_ = m1.Close(ctx)
	i2, err := rt.Instantiate(ctx, m2, nil)
	if err != nil {
		t.Fatalf("instantiate the second handle after closing the first: %v", err)
	}
	if got := call(t, i2, "answer"); got[0] != 42 {
		t.Error("answer != 42")
	}
	// Closing the runtime closes everything it made; all of it idempotently.
	live := instantiate(t, rt, "small")
	for i := 0; i < 2; i++ {
		if err := rt.Close(cancelled); err != nil {
			t.Errorf("Runtime.Close #%d = %v", i, err)
		}
	}
	if _, err := rt.Compile(ctx, Guest("small")); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("Compile after Runtime.Close = %v", err)
	}
	if _, err := rt.NewImports(); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("NewImports after Runtime.Close = %v", err)
	}
	if _, err := rt.Instantiate(ctx, m2, nil); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("Instantiate after Runtime.Close = %v", err)
	}
	_ = live.Close(ctx) // after the runtime: still must not crash
	_ = i2.Close(ctx)
	_ = m2.Close(ctx)
}

func (h *harness) testConcurrent(t *testing.T) {
	rt := h.open(t, engine.NewConfig())
	ctx := context.Background()
	m, err := rt.Compile(ctx, h.guest("values"))
	if err != nil {
		t.Fatal(err)
	}
	const workers, calls = 8, 2000
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			n := 0
			imp, err := rt.NewImports(env(&n))
			if err != nil {
				errs <- err
				return
			}
			inst, err := rt.Instantiate(ctx, m, imp)
			if err != nil {
				errs <- err
				return
			}
			defer inst.Close(ctx)
			outer, _ := inst.Function("outer")
			mem := inst.Memory()
			s := make([]uint64, 1)
			for i := 0; i < calls; i++ {
				s[0] = uint64(w)
				if err := outer.Call(ctx, s); err != nil {
					errs <- err
					return
				}
				if s[0] != uint64(100*w+1) {
					errs <- fmt.Errorf("worker %d: outer = %d", w, s[0])
					return
				}
				mem.WriteUint32Le(uint32(4*w), uint32(i))
			}
			if n != calls {
				errs <- fmt.Errorf("worker %d: host ran %d times, want %d", w, n, calls)
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// testCloseRace closes instances on their own goroutines while another
// closes the runtime: both close paths must be safe together (-race).
func (h *harness) testCloseRace(t *testing.T) {
	ctx := context.Background()
	for round := 0; round < 5; round++ {
		rt, err := engine.Open(h.name, h.config(engine.NewConfig()))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		var insts []engine.Instance
		for i := 0; i < 8; i++ {
			insts = append(insts, instantiate(t, rt, "values", env(&n)))
		}
		var wg sync.WaitGroup
		for _, in := range insts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = in.Close(ctx)
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = rt.Close(ctx)
		}()
		wg.Wait()
	}
}

// rss returns the resident set size in bytes, or 0 where /proc is missing.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

func (h *harness) testCycles(t *testing.T) {
	cycles := 10_000
	if testing.Short() {
		cycles = 2_000
	}
	rt := h.open(t, engine.NewConfig())
	ctx := context.Background()
	m, err := rt.Compile(ctx, h.guest("values"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	imp, err := rt.NewImports(env(&n))
	if err != nil {
		t.Fatal(err)
	}
	cycle := func() {
		inst, err := rt.Instantiate(ctx, m, imp)
		if err != nil {
			t.Fatal(err)
		}
		f, _ := inst.Function("outer")
		s := []uint64{1}
		if err := f.Call(ctx, s); err != nil || s[0] != 101 {
			t.Fatalf("outer = %d %v", s[0], err)
		}
		if err := inst.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < cycles/10; i++ { // warm up
		cycle()
	}
	runtime.GC()
	goroutines, rss0 := runtime.NumGoroutine(), rss()
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	for i := 0; i < cycles; i++ {
		cycle()
	}
	runtime.GC()
	runtime.GC()
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	if g := runtime.NumGoroutine(); g > goroutines+2 {
		t.Errorf("goroutines grew from %d to %d over %d cycles", goroutines, g, cycles)
	}
	// Each leaked instance would keep at least its 64 KiB memory: 10,000
	// of them are 640 MiB. Allow 64 MiB of noise.
	const tolerance = 64 << 20
	if grew := int64(ms1.HeapInuse) - int64(ms0.HeapInuse); grew > tolerance {
		t.Errorf("Go heap grew by %d MiB over %d cycles", grew>>20, cycles)
	}
	if r := rss(); rss0 > 0 && r-rss0 > tolerance {
		t.Errorf("RSS grew by %d MiB over %d cycles", (r-rss0)>>20, cycles)
	}
}

// testImportsCycles makes and closes an import set and an instance of it
// 2,000 times: what an import set keeps after both are closed (wazero's
// compiled host modules did, ~8 KiB of heap each) must not add up. Its
// limit is tighter than testCycles': nothing here holds guest memory.
func (h *harness) testImportsCycles(t *testing.T) {
	cycles := 2_000
	if testing.Short() {
		cycles = 500
	}
	rt := h.open(t, engine.NewConfig())
	ctx := context.Background()
	m, err := rt.Compile(ctx, h.guest("values"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	cycle := func() {
		imp, err := rt.NewImports(env(&n))
		if err != nil {
			t.Fatal(err)
		}
		inst, err := rt.Instantiate(ctx, m, imp)
		if err != nil {
			t.Fatal(err)
		}
		f, _ := inst.Function("outer")
		s := []uint64{1}
		if err := f.Call(ctx, s); err != nil || s[0] != 101 {
			t.Fatalf("outer = %d %v", s[0], err)
		}
		// The import set first: the instance keeps what it needs.
		if err := imp.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if err := inst.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < cycles/10; i++ {
		cycle()
	}
	runtime.GC()
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	for i := 0; i < cycles; i++ {
		cycle()
	}
	runtime.GC()
	runtime.GC()
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	// 2 KiB per cycle would be 4 MiB.
	const tolerance = 4 << 20
	if grew := int64(ms1.HeapAlloc) - int64(ms0.HeapAlloc); grew > tolerance {
		t.Errorf("Go heap grew by %d KiB over %d import sets", grew>>10, cycles)
	}
}

// testGCBallast checks that the Go heap counts guest memory (a 6.25 MiB
// memory at start, 6.25 MiB more grown by the host, then by the guest): on
// wazero it is a Go []byte; on the other runtimes a ballast stands for it
// (engine.Config.WithGCBallast), which WithGCBallast(false) removes.
func (h *harness) testGCBallast(t *testing.T) {
	heap := func() int64 {
		// Twice: a ballast's blocks go back to a pool on Close, which the
		// collector empties in its second cycle.
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	const mib = 1 << 20
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprintf("on=%v", on), func(t *testing.T) {
			rt := h.open(t, engine.NewConfig().WithGCBallast(on))
			if rt.Config().GCBallast() != on {
				t.Fatalf("Config().GCBallast() = %v, want %v", rt.Config().GCBallast(), on)
			}
			// A memory that is Go heap counts whatever the setting.
			want := on || h.rt == "wazero"
			check := func(what string, before int64, size uint64) {
				t.Helper()
				grew := heap() - before
				if want && grew < int64(size)-mib/2 {
					t.Errorf("%s: the Go heap grew by %d bytes for %d bytes of guest memory", what, grew, size)
				}
				if !want && grew > mib {
					t.Errorf("%s: the Go heap grew by %d bytes with the ballast off", what, grew)
				}
			}
			before := heap()
			inst := instantiate(t, rt, "growmem")
			mem := inst.Memory()
			if _, ok := mem.Grow(99); !ok {
				t.Fatal("Grow(99) failed")
			}
			check("a memory grown by the host to 100 pages", before, mem.Size())
			before = heap()
			if got := call(t, inst, "grow", 100); got[0] != 100 {
				t.Fatalf("guest grow(100) = %d, want 100 (the previous size)", int32(got[0]))
			}
			check("100 pages grown by the guest", before, 100*engine.PageSize)
			size := int64(mem.Size())
			before = heap()
			_ = inst.Close(context.Background())
			if grew := heap() - before; want && h.rt != "wazero" && grew > -size+mib {
				t.Errorf("closing the instance freed %d bytes of the Go heap, want its %d bytes of memory", -grew, size)
			}
			runtime.KeepAlive(inst)
		})
	}
}
