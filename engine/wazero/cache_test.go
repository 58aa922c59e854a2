package wazero

import (
	"context"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/engine/enginetest"
	"github.com/anywasm/anywasm/engine/internal/filecache"
)

func newRuntime(t *testing.T, cfg engine.Config) *runtime {
	t.Helper()
	dr, err := driver{}.NewRuntime(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dr.Close(context.Background()) })
	return dr.(*runtime)
}

// answer compiles and instantiates a guest in r and calls its "answer".
func answer(t *testing.T, r *runtime, guest string) uint64 {
	t.Helper()
	ctx := context.Background()
	m, err := r.Compile(ctx, enginetest.Guest(guest), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	inst, err := r.Instantiate(ctx, m, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close(ctx)
	f, err := inst.Function("answer")
	if err != nil {
		t.Fatal(err)
	}
	s := []uint64{0}
	if err := f.Call(ctx, s); err != nil {
		t.Fatal(err)
	}
	return s[0]
}

// TestCacheSharedByRuntimes: what one runtime compiles, another sharing the
// directory loads; wazero never sees the cache directory itself, and
// Close leaves only the key and the entries.
func TestCacheSharedByRuntimes(t *testing.T) {
	dir := t.TempDir()
	cfg := engine.NewConfig().WithCompilationCache(dir)
	r1, r2 := newRuntime(t, cfg), newRuntime(t, cfg)
	if r1.disk.stageName == r2.disk.stageName {
		t.Fatal("two runtimes share a staging directory")
	}
	if got := answer(t, r1, "small"); got != 42 || r1.disk.stored != 1 || r1.disk.hits != 0 {
		t.Fatalf("first runtime: answer %d, stored %d, hits %d; want 42, 1, 0", got, r1.disk.stored, r1.disk.hits)
	}
	if got := answer(t, r2, "small"); got != 42 || r2.disk.stored != 0 || r2.disk.hits != 1 {
		t.Fatalf("second runtime: answer %d, stored %d, hits %d; want 42, 0, 1", got, r2.disk.stored, r2.disk.hits)
	}
	// The module closed, the same runtime loads it from disk again.
	if got := answer(t, r2, "small"); got != 42 || r2.disk.hits != 2 {
		t.Fatalf("second runtime, again: answer %d, hits %d; want 42, 2", got, r2.disk.hits)
	}
	// Staging directories are empty between compilations.
	for _, r := range []*runtime{r1, r2} {
		if fs := r.disk.files(); len(fs) != 0 {
			t.Errorf("staging directory holds %v", fs)
		}
	}
	r1.Close(context.Background())
	r2.Close(context.Background())
	names := entries(t, dir)
	if len(names) != 2 || !slices.Contains(names, filecache.KeyFile) ||
		!slices.ContainsFunc(names, func(n string) bool { return strings.HasSuffix(n, filecache.Wazero.Ext) }) {
		t.Errorf("after Close the directory holds %v, want the key file and one entry", names)
	}
}

// TestCacheEntryWazeroRefuses: an authentic entry whose file wazero cannot
// read (wazero then fails the compilation instead of compiling) is
// compiled afresh and rewritten.
func TestCacheEntryWazeroRefuses(t *testing.T) {
	dir := t.TempDir()
	cfg := engine.NewConfig().WithCompilationCache(dir)
	r := newRuntime(t, cfg)
	answer(t, r, "small")
	key := r.disk.key(enginetest.Guest("small"))
	e, ok := r.disk.dir.Load(filecache.Wazero, key)
	if !ok {
		t.Fatal("no entry")
	}
	if err := r.disk.dir.Store(filecache.Wazero, filecache.Entry{Key: key, Name: e.Name, Payload: []byte("not wazero's format")}); err != nil {
		t.Fatal(err)
	}
	r2 := newRuntime(t, cfg)
	if got := answer(t, r2, "small"); got != 42 || r2.disk.stored != 1 {
		t.Fatalf("answer %d, stored %d; want 42, 1", got, r2.disk.stored)
	}
	if e2, ok := r2.disk.dir.Load(filecache.Wazero, key); !ok || string(e2.Payload) != string(e.Payload) {
		t.Error("the entry was not rewritten with wazero's file")
	}
}

// TestCacheOldLayoutIgnored: files in dir/wazero, where this package let
// wazero keep its unauthenticated files before, are never read.
func TestCacheOldLayoutIgnored(t *testing.T) {
	dir := t.TempDir()
	cfg := engine.NewConfig().WithCompilationCache(dir)
	r := newRuntime(t, cfg)
	answer(t, r, "small")
	answer(t, r, "impostor")
	smallKey := r.disk.key(enginetest.Guest("small"))
	small, ok1 := r.disk.dir.Load(filecache.Wazero, smallKey)
	impostor, ok2 := r.disk.dir.Load(filecache.Wazero, r.disk.key(enginetest.Guest("impostor")))
	if !ok1 || !ok2 {
		t.Fatal("missing entries")
	}
	// The impostor's code in wazero's format, where the old layout kept
	// small's; and no entry for small.
	old := filepath.Join(dir, "wazero", filepath.FromSlash(small.Name))
	if err := os.MkdirAll(filepath.Dir(old), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(old, impostor.Payload, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, filecache.Wazero.FileName(smallKey))); err != nil {
		t.Fatal(err)
	}
	if got := answer(t, newRuntime(t, cfg), "small"); got != 42 {
		t.Errorf("answer = %d, want 42", got)
	}
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

// TestCacheDirectoryReplaced: once a Runtime is open, renaming its cache
// directory and putting another in its place (what someone who may write
// the parent directory could do) redirects neither anywasm's reads nor
// wazero's.
func TestCacheDirectoryReplaced(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	cfg := engine.NewConfig().WithCompilationCache(dir)
	r0 := newRuntime(t, cfg)
	answer(t, r0, "small")
	answer(t, r0, "impostor")
	small, ok1 := r0.disk.dir.Load(filecache.Wazero, r0.disk.key(enginetest.Guest("small")))
	impostor, ok2 := r0.disk.dir.Load(filecache.Wazero, r0.disk.key(enginetest.Guest("impostor")))
	if !ok1 || !ok2 {
		t.Fatal("missing entries")
	}
	r := newRuntime(t, cfg)
	if goruntime.GOOS == "linux" && !strings.HasPrefix(r.disk.wazeroPath, "/proc/self/fd/") {
		t.Errorf("wazero uses the staging directory by its path %s, not through a handle", r.disk.wazeroPath)
	}
	if err := os.Rename(dir, dir+".moved"); err != nil {
		t.Fatal(err)
	}
	// The impostor's code where wazero would look for small's if it went
	// by the path.
	fake := filepath.Join(dir, r.disk.stageName, filepath.FromSlash(small.Name))
	if err := os.MkdirAll(filepath.Dir(fake), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fake, impostor.Payload, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := answer(t, r, "small"); got != 42 || r.disk.hits != 1 {
		t.Errorf("answer = %d, hits = %d; want 42 from the real cache directory", got, r.disk.hits)
	}
}

// TestCacheKeyHasWazeroFileVersion: the key names the version wazero puts
// in its files' directory (some test binaries have no build information,
// and wazero says "dev"): an entry stored under one is found by binaries
// of that version only, instead of being recompiled and overwritten by the
// others (which made every test package that shares the test cache
// recompile the Go-SDK plugins on every run).
func TestCacheKeyHasWazeroFileVersion(t *testing.T) {
	dir := t.TempDir()
	r := newRuntime(t, engine.NewConfig().WithCompilationCache(dir))
	if got := answer(t, r, "small"); got != 42 || r.disk.stored != 1 {
		t.Fatalf("answer %d, stored %d", got, r.disk.stored)
	}
	e, ok := r.disk.dir.Load(filecache.Wazero, r.disk.key(enginetest.Guest("small")))
	if !ok {
		t.Fatal("no entry under the key")
	}
	if want := "wazero-" + wazeroFileVersion() + "-" + goruntime.GOARCH + "-" + goruntime.GOOS + "/"; !strings.HasPrefix(e.Name, want) {
		t.Errorf("entry %q: wazero's directory is not %q", e.Name, want)
	}
	saved := wazeroFileVersion
	t.Cleanup(func() { wazeroFileVersion = saved })
	wazeroFileVersion = func() string { return "other" }
	if _, ok := r.disk.dir.Load(filecache.Wazero, r.disk.key(enginetest.Guest("small"))); ok {
		t.Error("another wazero file version finds the entry")
	}
}
