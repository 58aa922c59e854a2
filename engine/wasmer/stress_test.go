//go:build cgo

package wasmer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/anywasm/anywasm/engine"
)

// TestStress makes a million calls in each direction with the GC forced
// every 100,000: every C object must stay owned while it is used.
func TestStress(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	ctx := context.Background()
	rt := open(t, engine.NewConfig())
	hostCalls := 0
	env := hostEnv(nil2)
	env.Functions[0].Func = func(_ context.Context, c engine.Caller, s []uint64) error {
		hostCalls++
		if hostCalls%100_000 == 0 {
			runtime.GC()
		}
		s[0] = 1
		return nil
	}
	imports, err := rt.NewImports(env)
	if err != nil {
		t.Fatal(err)
	}
	inst := instantiate(t, rt, "host", imports)
	add1 := fn(t, inst, "add1")
	stack := []uint64{0}
	for i := range 1_000_000 {
		if i%100_000 == 0 {
			runtime.GC()
		}
		if err := add1.Call(ctx, stack); err != nil {
			t.Fatal(err)
		}
	}
	if stack[0] != 1_000_000 {
		t.Errorf("add1 chain = %d", stack[0])
	}
	// Guest -> host: loop_i32 calls env.i32 n times.
	loop := fn(t, inst, "loop_i32")
	for range 10 {
		stack[0] = 100_000
		if err := loop.Call(ctx, stack); err != nil {
			t.Fatal(err)
		}
		if stack[0] != 100_000 {
			t.Fatalf("loop_i32 = %d", stack[0])
		}
	}
	if hostCalls != 1_000_000 {
		t.Errorf("host calls = %d", hostCalls)
	}
}

// TestZeroAllocsPerCall checks both directions allocate nothing per call.
func TestZeroAllocsPerCall(t *testing.T) {
	ctx := context.Background()
	rt := open(t, engine.NewConfig())
	imports, _ := rt.NewImports(hostEnv(nil2))
	inst := instantiate(t, rt, "host", imports)
	for _, c := range []struct {
		name  string
		stack []uint64
	}{
		{"add1", []uint64{1}},
		{"call_mixed", []uint64{1, 2, 3, 4}},
		{"loop_i32", []uint64{100}},
	} {
		f := fn(t, inst, c.name)
		arg := c.stack[0]
		if n := testing.AllocsPerRun(1000, func() {
			c.stack[0] = arg
			if err := f.Call(ctx, c.stack); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s: %v allocations per call", c.name, n)
		}
	}
}

// skipWasmer1 skips tests that instantiate thousands of times on Wasmer 1.0
// (the linux-aarch64 library), which does not unmap an instance's memory
// when it is deleted. Measured under qemu-aarch64: +2 mappings and ~40 MB per
// instantiate/close cycle with the compiled module cached, where Wasmer 2.0
// on amd64 adds none with the same code.
func skipWasmer1(t *testing.T) {
	if strings.HasPrefix(version(), "1.0.") {
		t.Skip("Wasmer 1.0 leaks every instance's memory")
	}
}

func countMappings(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Skip("no /proc/self/maps")
	}
	return bytes.Count(b, []byte("\n"))
}

// TestMappingsDoNotGrow opens, compiles, instantiates, calls and closes
// 2,000 times: Wasmer maps the code of every compile and load for good, so
// the process-wide module cache must compile the bytes once.
func TestMappingsDoNotGrow(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	skipWasmer1(t)
	ctx := context.Background()
	wasm := readWasm(t, "traps")
	hostWasm := readWasm(t, "host")
	dir := t.TempDir()
	cycle := func(i int) {
		cfg := engine.NewConfig()
		if i%2 == 1 {
			cfg = cfg.WithCompilationCache(dir)
		}
		rt, err := engine.Open(Name, cfg)
		if err != nil {
			t.Fatal(err)
		}
		mod, err := rt.Compile(ctx, wasm)
		if err != nil {
			t.Fatal(err)
		}
		inst, err := rt.Instantiate(ctx, mod, nil)
		if err != nil {
			t.Fatal(err)
		}
		f, _ := inst.Function("count")
		if err := f.Call(ctx, []uint64{10}); err != nil {
			t.Fatal(err)
		}
		// And an instance with host functions, called in both directions.
		hmod, err := rt.Compile(ctx, hostWasm)
		if err != nil {
			t.Fatal(err)
		}
		imports, err := rt.NewImports(hostEnv(nil2))
		if err != nil {
			t.Fatal(err)
		}
		hinst, err := rt.Instantiate(ctx, hmod, imports)
		if err != nil {
			t.Fatal(err)
		}
		f, _ = hinst.Function("loop_i32")
		if err := f.Call(ctx, []uint64{10}); err != nil {
			t.Fatal(err)
		}
		if err := rt.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		cycle(i)
	}
	runtime.GC()
	before := countMappings(t)
	for i := range 2000 {
		cycle(i)
	}
	runtime.GC()
	after := countMappings(t)
	// A compile costs 2 mappings: 2,000 cycles would add ~4,000.
	if after-before > 100 {
		t.Errorf("mappings grew from %d to %d over 2,000 cycles", before, after)
	}
	t.Logf("mappings: %d before, %d after 2,000 cycles", before, after)
}

// TestCompilationCacheAcrossProcesses compiles in child processes sharing a
// cache directory: the first compiles and writes, the second loads, a
// corrupt file is ignored and rewritten.
func TestCompilationCacheAcrossProcesses(t *testing.T) {
	if os.Getenv("ANYWASM_WASMER_CACHE_CHILD") != "" {
		cacheChild(t)
		return
	}
	dir := t.TempDir()
	run := func() string {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^TestCompilationCacheAcrossProcesses$", "-test.v")
		cmd.Env = append(os.Environ(), "ANYWASM_WASMER_CACHE_CHILD="+dir)
		out, err := cmd.CombinedOutput()
		if errors.Is(err, syscall.ENOEXEC) {
			t.Skipf("cannot start a child process here (qemu-user without binfmt?): %v", err)
		}
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if s, ok := strings.CutPrefix(strings.TrimSpace(l), "CHILD "); ok {
				return s
			}
		}
		t.Fatalf("no result from the child:\n%s", out)
		return ""
	}
	if got := run(); got != "compiled=1 loaded=0 result=55" {
		t.Errorf("first process: %s", got)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.wasmer"))
	if len(files) != 1 {
		t.Fatalf("cache files: %v", files)
	}
	if got := run(); got != "compiled=0 loaded=1 result=55" {
		t.Errorf("second process: %s", got)
	}
	// Corrupt the payload: ignored, compiled, rewritten.
	b, _ := os.ReadFile(files[0])
	b[len(b)-100] ^= 0xff
	os.WriteFile(files[0], b, 0o644)
	if got := run(); got != "compiled=1 loaded=0 result=55" {
		t.Errorf("corrupt file: %s", got)
	}
	if got := run(); got != "compiled=0 loaded=1 result=55" {
		t.Errorf("after rewriting a corrupt file: %s", got)
	}
	// A foreign file (truncated, or not ours) is ignored as well.
	os.WriteFile(files[0], []byte("not a cache file"), 0o644)
	if got := run(); got != "compiled=1 loaded=0 result=55" {
		t.Errorf("foreign file: %s", got)
	}
	if got := run(); got != "compiled=0 loaded=1 result=55" {
		t.Errorf("after rewrite: %s", got)
	}
}

func cacheChild(t *testing.T) {
	ctx := context.Background()
	dir := os.Getenv("ANYWASM_WASMER_CACHE_CHILD")
	rt := open(t, engine.NewConfig().WithCompilationCache(dir))
	inst := instantiate(t, rt, "traps", nil)
	stack := []uint64{55}
	if err := fn(t, inst, "count").Call(ctx, stack); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("CHILD compiled=%d loaded=%d result=%d\n", stats.compiled.Load(), stats.loaded.Load(), stack[0])
}

func rssKB(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, l := range strings.Split(string(b), "\n") {
		if s, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			var kb int
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(s), " kB"), &kb)
			return kb
		}
	}
	t.Skip("no VmRSS")
	return 0
}

// TestInstancesDoNotLeak instantiates and closes an instance with host
// functions (a multi-value one among them) 30,000 times: the resident
// memory outside the Go runtime must not grow with the count. (Making a wasm_functype_t per instance
// leaked ~1.2 KB per instance of this module: Wasmer 2.0 leaks value types.)
func TestInstancesDoNotLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	skipWasmer1(t)
	ctx := context.Background()
	rt := open(t, engine.NewConfig())
	mod, err := rt.Compile(ctx, readWasm(t, "host"))
	if err != nil {
		t.Fatal(err)
	}
	imports, _ := rt.NewImports(hostEnv(nil2))
	round := func() int {
		for range 10_000 {
			inst, err := rt.Instantiate(ctx, mod, imports)
			if err != nil {
				t.Fatal(err)
			}
			f, _ := inst.Function("loop_i32")
			if err := f.Call(ctx, []uint64{2}); err != nil {
				t.Fatal(err)
			}
			inst.Close(ctx)
		}
		return nonGoKB(t)
	}
	first := round()
	round()
	last := round()
	// The leak this guards against is ~12 MB per round, 24 MB here; what is
	// left (Wasmer's, or the C allocator's) is ~3 MB, plus noise.
	if last-first > 12_000 {
		t.Errorf("non-Go resident memory grew from %d kB to %d kB over 20,000 instances", first, last)
	}
	t.Logf("non-Go resident memory: %d kB, then %d kB", first, last)
}

func nonGoKB(t *testing.T) int {
	if raceEnabled {
		t.Skip("resident memory is not measurable under the race detector")
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return rssKB(t) - int(ms.Sys-ms.HeapReleased)/1024
}

// TestHostCallsDoNotLeak makes 3,000,000 host calls with a parameter and a
// result. Wasmer 2.0 allocates the args and results of every host call and
// never frees them (~80 bytes per call here, 240 MB in all); the trampoline
// frees them.
func TestHostCallsDoNotLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	ctx := context.Background()
	rt := open(t, engine.NewConfig())
	imports, _ := rt.NewImports(hostEnv(nil2))
	inst := instantiate(t, rt, "host", imports)
	loop := fn(t, inst, "loop_i32")
	if err := loop.Call(ctx, []uint64{100_000}); err != nil {
		t.Fatal(err)
	}
	before := nonGoKB(t)
	for range 30 {
		if err := loop.Call(ctx, []uint64{100_000}); err != nil {
			t.Fatal(err)
		}
	}
	after := nonGoKB(t)
	if after-before > 20_000 {
		t.Errorf("non-Go resident memory grew from %d kB to %d kB over 3,000,000 host calls", before, after)
	}
	t.Logf("non-Go resident memory: %d kB, then %d kB", before, after)
}
