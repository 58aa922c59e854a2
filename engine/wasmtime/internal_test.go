//go:build cgo

package wasmtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/engine/enginetest"
	"github.com/anywasm/anywasm/engine/internal/filecache"
)

func TestHeaderVersion(t *testing.T) {
	if v := headerVersion(); v != Version {
		t.Errorf("WASMTIME_VERSION = %q, Version = %q", v, Version)
	}
}

func instantiateGuest(t *testing.T, rt *engine.Runtime, wasm []byte) engine.Instance {
	t.Helper()
	ctx := context.Background()
	m, err := rt.Compile(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := rt.Instantiate(ctx, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

// TestTicker checks that the epoch ticker runs only while a call with a
// cancellable context runs.
func TestTicker(t *testing.T) {
	rt, err := engine.Open(Name, engine.NewConfig().WithInterruptOnContextDone(true))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(context.Background())
	inst := instantiateGuest(t, rt, enginetest.Guest("small"))
	r := inst.(*instance).rt
	ticking := func() bool {
		r.tmu.Lock()
		defer r.tmu.Unlock()
		return r.ticking
	}
	f, _ := inst.Function("answer")
	s := []uint64{0}
	for i := 0; i < 100; i++ {
		if err := f.Call(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
	if ticking() {
		t.Fatal("the ticker runs after calls with context.Background()")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := f.Call(ctx, s); err != nil {
		t.Fatal(err)
	}
	for i := 0; ticking(); i++ {
		if i == 1000 {
			t.Fatal("the ticker still runs 10s after the last call")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCacheFiles checks what the compilation cache writes and that it loads
// only its own, intact files.
func TestCacheFiles(t *testing.T) {
	dir := t.TempDir()
	wasm := enginetest.Guest("values")
	ctx := context.Background()
	compile := func(cfg engine.Config) {
		t.Helper()
		rt, err := engine.Open(Name, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer rt.Close(ctx)
		if _, err := rt.Compile(ctx, wasm); err != nil {
			t.Fatal(err)
		}
	}
	cfg := engine.NewConfig().WithCompilationCache(dir)
	compile(cfg)
	compile(cfg.WithFuel(1000)) // another configuration: another key

	r := newRuntime(t, cfg)
	key := r.cacheKey(wasm)
	path := filepath.Join(dir, filecache.Wasmtime.FileName(key))
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 3 {
		t.Fatalf("cache holds %v, want the key file and 2 entries (no temporary files)", names)
	}
	for _, n := range names {
		if n != filecache.KeyFile && (!strings.HasSuffix(n, ".cwasm") || strings.HasPrefix(n, ".tmp")) {
			t.Errorf("unexpected file %s", n)
		}
	}
	load := func() bool {
		m := r.cacheLoad(key)
		if m != nil {
			deleteModule(m)
		}
		return m != nil
	}
	if !load() {
		t.Fatal("the cached module does not load")
	}
	good, _ := os.ReadFile(path)

	// A flipped bit in the payload.
	bad := append([]byte(nil), good...)
	bad[len(bad)-100] ^= 1
	writeFile(t, path, bad, 0o600)
	if load() {
		t.Error("a corrupted file was loaded")
	}
	// A file others may write.
	writeFile(t, path, good, 0o666)
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if load() {
		t.Error("a group- and world-writable file was loaded")
	}
	// Another key's file under this name (header mismatch).
	fuel := newRuntime(t, cfg.WithFuel(1000))
	other, err := os.ReadFile(filepath.Join(dir, filecache.Wasmtime.FileName(fuel.cacheKey(wasm))))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, other, 0o600)
	if load() {
		t.Error("a file with another key was loaded")
	}
	// Another engine's code under this key, authenticated: Wasmtime
	// refuses it.
	e, ok := fuel.cache.Load(filecache.Wasmtime, fuel.cacheKey(wasm))
	if !ok {
		t.Fatal("the fuel runtime's entry does not load")
	}
	if err := r.cache.Store(filecache.Wasmtime, filecache.Entry{Key: key, Payload: e.Payload}); err != nil {
		t.Fatal(err)
	}
	if load() {
		t.Error("code compiled with fuel was loaded by an engine without fuel")
	}
	// Compile recompiles and rewrites the file.
	compile(cfg)
	if !load() {
		t.Error("the rewritten file does not load")
	}
}

// TestCacheSharedByRuntimes opens two runtimes on a new cache directory at
// once (both find the key missing): what one compiles, the other loads.
func TestCacheSharedByRuntimes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	cfg := engine.NewConfig().WithCompilationCache(dir)
	var rts [2]*engine.Runtime
	var wg sync.WaitGroup
	for i := range rts {
		wg.Go(func() {
			rt, err := engine.Open(Name, cfg)
			if err != nil {
				t.Error(err)
				return
			}
			t.Cleanup(func() { rt.Close(context.Background()) })
			rts[i] = rt
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	compiled, loaded := stats.compiled.Load(), stats.loaded.Load()
	for i, rt := range rts {
		f, _ := instantiateGuest(t, rt, enginetest.Guest("small")).Function("answer")
		s := []uint64{0}
		if err := f.Call(context.Background(), s); err != nil || s[0] != 42 {
			t.Fatalf("runtime %d: answer = %d, %v", i, s[0], err)
		}
	}
	if c, l := stats.compiled.Load()-compiled, stats.loaded.Load()-loaded; c != 1 || l != 1 {
		t.Errorf("two runtimes sharing a cache directory compiled %d times and loaded %d times, want 1 and 1", c, l)
	}
}

func newRuntime(t *testing.T, cfg engine.Config) *runtime {
	t.Helper()
	dr, err := driver{}.NewRuntime(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dr.Close(context.Background()) })
	return dr.(*runtime)
}

func writeFile(t *testing.T, path string, b []byte, mode os.FileMode) {
	t.Helper()
	_ = os.Remove(path)
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
}

// TestInstancePre checks that instances are made from the module's
// InstancePre, that one InstancePre serves different host functions, that
// a name imported twice reaches its host function through both imports, and
// that an instance outlives the Close of its module (which deletes the
// InstancePre).
func TestInstancePre(t *testing.T) {
	ctx := context.Background()
	wasm, err := os.ReadFile("testdata/dupimport.wasm")
	if err != nil {
		t.Fatal(err)
	}
	rt, err := engine.Open(Name, engine.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	m, err := rt.Compile(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}
	var got [2][]uint64
	inst := make([]engine.Instance, 2)
	before := stats.instantiatedPre.Load()
	for k := range inst {
		imp, err := rt.NewImports(engine.HostModule{Name: "env", Functions: []engine.HostFunction{{
			Name: "count", Type: engine.FuncType{Params: []engine.ValueType{engine.I32}},
			Func: func(_ context.Context, _ engine.Caller, s []uint64) error {
				got[k] = append(got[k], s[0])
				return nil
			},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		if inst[k], err = rt.Instantiate(ctx, m, imp); err != nil {
			t.Fatal(err)
		}
	}
	if n := stats.instantiatedPre.Load() - before; n != 2 {
		t.Errorf("%d of 2 instances were made from the InstancePre", n)
	}
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for k, in := range inst {
		for _, name := range []string{"call_a", "call_b", "call_a"} {
			f, err := in.Function(name)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Call(ctx, nil); err != nil {
				t.Fatalf("instance %d: %s: %v", k, name, err)
			}
		}
		_ = in.Close(ctx)
	}
	want := []uint64{1, 2, 1}
	for k := range got {
		if !slices.Equal(got[k], want) {
			t.Errorf("instance %d's host function saw %v, want %v", k, got[k], want)
		}
	}
}

// TestPoolExhaustedInWasmtime checks that Wasmtime's own pool running out,
// before the count of instances does (here: the count is raised past the
// pool's memories), is reported as ErrPoolExhausted too.
func TestPoolExhaustedInWasmtime(t *testing.T) {
	ctx := context.Background()
	rt, err := engine.Open(Name, engine.NewConfig().WithInstancePool(1))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	m, err := rt.Compile(ctx, enginetest.Guest("snapshot"))
	if err != nil {
		t.Fatal(err)
	}
	imp := enginetestImports(t, rt, m)
	a, err := rt.Instantiate(ctx, m, imp)
	if err != nil {
		t.Fatal(err)
	}
	r := a.(*instance).rt
	r.mu.Lock()
	r.pool = 2 // the Go count allows a second instance; Wasmtime has one memory
	r.mu.Unlock()
	_, err = rt.Instantiate(ctx, m, imp)
	if !errors.Is(err, engine.ErrPoolExhausted) || !strings.Contains(err.Error(), "concurrent") {
		t.Errorf("Instantiate beyond Wasmtime's memories = %v, want ErrPoolExhausted with Wasmtime's reason", err)
	}
}

// enginetestImports defines m's imports as host functions that do nothing.
func enginetestImports(t *testing.T, rt *engine.Runtime, m *engine.Module) *engine.Imports {
	t.Helper()
	var fns []engine.HostFunction
	for _, im := range m.Imports() {
		if im.Module != "env" {
			t.Fatalf("import %s.%s", im.Module, im.Name)
		}
		fns = append(fns, engine.HostFunction{Name: im.Name, Type: im.Type,
			Func: func(context.Context, engine.Caller, []uint64) error { return nil }})
	}
	if len(fns) == 0 {
		return nil
	}
	imp, err := rt.NewImports(engine.HostModule{Name: "env", Functions: fns})
	if err != nil {
		t.Fatal(err)
	}
	return imp
}
