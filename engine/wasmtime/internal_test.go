//go:build cgo

package wasmtime

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/engine/enginetest"
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
	path := r.cachePath(key)
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("cache holds %d files, want 2 (no temporary files)", len(entries))
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".cwasm") || strings.HasPrefix(e.Name(), ".tmp") {
			t.Errorf("unexpected file %s", e.Name())
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
	other, err := os.ReadFile(fuel.cachePath(fuel.cacheKey(wasm)))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, other, 0o600)
	if load() {
		t.Error("a file with another key was loaded")
	}
	// Another engine's code with this key's header: Wasmtime refuses it.
	payload := other[len(cacheMagic)+64:]
	writeFile(t, path, cacheFile(key, payload), 0o600)
	if load() {
		t.Error("code compiled with fuel was loaded by an engine without fuel")
	}
	// Compile recompiles and rewrites the file.
	compile(cfg)
	if !load() {
		t.Error("the rewritten file does not load")
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
