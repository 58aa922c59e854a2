// Package plugins builds the Proxy-Wasm test plugins of abi/testdata/plugins
// for tests, and caches the binaries.
//
// The plugins are main packages of a nested Go module that uses the
// Proxy-Wasm Go SDK (abi/testdata/plugins/README.md says what each one does).
// They are built with
//
//	GOOS=wasip1 GOARCH=wasm go build -trimpath -buildmode=c-shared
//
// at most once per test process, and the .wasm is kept across processes in
// os.UserCacheDir()/anywasm/plugins, under a key that hashes the plugin
// module's go.mod and go.sum, every file of the plugin's directory, the Go
// version, GOFLAGS and GOEXPERIMENT. Parallel test processes may build the
// same plugin at once: each builds into its own temporary directory and
// renames the result into place atomically.
//
// The package needs the go command in PATH (go test puts its own first) and,
// on a machine that has never built the plugins, the SDK module in the module
// cache or a reachable module proxy.
package plugins

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

// buildFlags are the go build arguments before -o; part of the cache key.
var buildFlags = []string{"build", "-trimpath", "-buildmode=c-shared"}

// wasmMagic starts every WebAssembly binary.
var wasmMagic = []byte("\x00asm")

// Build returns the binary of the named plugin, building it if needed. A
// build error fails the test with the compiler's output. The returned slice
// is shared by every caller in the process: do not modify it.
func Build(tb testing.TB, name string) []byte {
	tb.Helper()
	r := defaultCache.result(name)
	if r.err != nil {
		tb.Fatal(r.err)
	}
	return r.data
}

// Path returns the path of the named plugin's binary in the cache, building
// it if needed. A build error fails the test with the compiler's output.
// The file is shared with other processes: do not modify it.
func Path(tb testing.TB, name string) string {
	tb.Helper()
	r := defaultCache.result(name)
	if r.err != nil {
		tb.Fatal(r.err)
	}
	return r.path
}

// Names returns the names of all plugins, sorted: the directories of the
// plugin module that hold Go files. It panics if the module cannot be found,
// so that a broken checkout cannot make a test over Names pass vacuously.
func Names() []string {
	names, err := names()
	if err != nil {
		panic(err)
	}
	return names
}

// Dir returns the directory of the plugin module (abi/testdata/plugins).
func Dir() (string, error) {
	moduleDirOnce.Do(func() { moduleDir, moduleDirErr = findModuleDir() })
	return moduleDir, moduleDirErr
}

var (
	moduleDirOnce sync.Once
	moduleDir     string
	moduleDirErr  error
)

// DirEnv names the environment variable that, when set, is the plugin
// module's directory. cmd/bench sets it for the benchmarks it runs from the
// module cache, outside a checkout: the plugin module is a nested module,
// so it is not in the module zip of github.com/anywasm/anywasm, and the go
// command downloads it apart.
const DirEnv = "ANYWASM_PLUGINS_DIR"

// findModuleDir locates abi/testdata/plugins: $ANYWASM_PLUGINS_DIR when set,
// else from this source file's path, so it works from any package's test.
// Under -trimpath the recorded path is not a file system path; then the
// main module is asked of the go command, run in the test's working
// directory (inside the main module).
func findModuleDir() (string, error) {
	if dir := os.Getenv(DirEnv); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
			return "", fmt.Errorf("plugins: $%s: plugin module not found: %w", DirEnv, err)
		}
		return dir, nil
	}
	var abiDir string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		abiDir = filepath.Join(filepath.Dir(file), "..", "..", "abi")
	} else {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		gomod := strings.TrimSpace(string(out))
		if err != nil || gomod == "" || gomod == os.DevNull {
			return "", fmt.Errorf("plugins: cannot locate the main module (go env GOMOD: %q, %v)", gomod, err)
		}
		abiDir = filepath.Join(filepath.Dir(gomod), "abi")
	}
	dir := filepath.Join(abiDir, "testdata", "plugins")
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return "", fmt.Errorf("plugins: plugin module not found: %w", err)
	}
	return dir, nil
}

func names() ([]string, error) {
	dir, err := Dir()
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("plugins: %w", err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		gofiles, _ := filepath.Glob(filepath.Join(dir, e.Name(), "*.go"))
		if len(gofiles) > 0 {
			names = append(names, e.Name())
		}
	}
	return names, nil // ReadDir sorts by name
}

// goVersion is `go env GOVERSION`, asked once per process.
var goVersion = sync.OnceValues(func() (string, error) {
	out, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		return "", fmt.Errorf("plugins: go env GOVERSION: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
})

// cache builds plugins into one directory and remembers, per process, what
// it built.
type cache struct {
	dir func() (string, error) // the directory of the cached binaries

	mu      sync.Mutex
	results map[string]*result
}

// result is the outcome of one plugin's build, computed once per process.
type result struct {
	once sync.Once
	path string
	data []byte
	err  error
}

var defaultCache = &cache{dir: userCacheDir}

// userCacheDir is os.UserCacheDir()/anywasm/plugins, or a directory under
// os.TempDir() when there is no user cache directory.
func userCacheDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		base = filepath.Join(os.TempDir(), "anywasm-cache")
	}
	return filepath.Join(base, "anywasm", "plugins"), nil
}

func (c *cache) result(name string) *result {
	c.mu.Lock()
	if c.results == nil {
		c.results = make(map[string]*result)
	}
	r, ok := c.results[name]
	if !ok {
		r = new(result)
		c.results[name] = r
	}
	c.mu.Unlock()
	r.once.Do(func() {
		r.path, r.err = c.build(name)
		if r.err == nil {
			r.data, r.err = os.ReadFile(r.path)
		}
	})
	return r
}

// build returns the path of the named plugin's binary in the cache directory,
// running go build only when the cache holds no binary for the current key.
func (c *cache) build(name string) (string, error) {
	all, err := names()
	if err != nil {
		return "", err
	}
	if !slices.Contains(all, name) {
		return "", fmt.Errorf("plugins: unknown plugin %q (have %s)", name, strings.Join(all, ", "))
	}
	modDir, _ := Dir() // names succeeded, so Dir did
	key, err := cacheKey(modDir, name)
	if err != nil {
		return "", err
	}
	cacheDir, err := c.dir()
	if err != nil {
		return "", err
	}
	final := filepath.Join(cacheDir, name+"-"+key[:32]+".wasm")
	if isWasm(final) {
		return final, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("plugins: %w", err)
	}
	// Test processes of several packages start at once and want the same
	// plugins: the first builds each, the others wait for it (a lock per
	// plugin and key) rather than build it again.
	unlock, err := lockFile(filepath.Join(cacheDir, name+"-"+key[:32]+".lock"))
	if err != nil {
		return "", fmt.Errorf("plugins: %w", err)
	}
	defer unlock()
	if isWasm(final) { // built while this process waited
		return final, nil
	}
	tmp, err := os.MkdirTemp(cacheDir, name+".build-")
	if err != nil {
		return "", fmt.Errorf("plugins: %w", err)
	}
	defer os.RemoveAll(tmp)
	// go build refuses to overwrite a file it did not write, so it writes
	// into a fresh directory, and the result is renamed into place.
	out := filepath.Join(tmp, name+".wasm")
	args := append(slices.Clone(buildFlags), "-o", out, "./"+name)
	cmd := exec.Command("go", args...)
	cmd.Dir = modDir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOWORK=off")
	if output, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("plugins: building %s: go %s: %w\n%s", name, strings.Join(args, " "), err, output)
	}
	if err := os.Rename(out, final); err != nil {
		if isWasm(final) { // another process won the race
			return final, nil
		}
		return "", fmt.Errorf("plugins: %w", err)
	}
	return final, nil
}

// cacheKey hashes everything that decides the named plugin's binary.
func cacheKey(modDir, name string) (string, error) {
	ver, err := goVersion()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "anywasm plugin cache v1\ngo %s\nGOOS=wasip1 GOARCH=wasm\nGOFLAGS=%s\nGOEXPERIMENT=%s\nflags %q\n",
		ver, os.Getenv("GOFLAGS"), os.Getenv("GOEXPERIMENT"), buildFlags)
	files := []string{"go.mod", "go.sum"}
	err = filepath.WalkDir(filepath.Join(modDir, name), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(modDir, path)
		files = append(files, rel)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("plugins: %w", err)
	}
	for _, rel := range files { // WalkDir visits in lexical order
		data, err := os.ReadFile(filepath.Join(modDir, rel))
		if err != nil {
			return "", fmt.Errorf("plugins: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", filepath.ToSlash(rel), len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// isWasm reports whether path is a readable file that starts like a
// WebAssembly binary. Files only appear in the cache by rename, so one that
// starts right is whole.
func isWasm(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, len(wasmMagic))
	if _, err := io.ReadFull(f, head); err != nil {
		return false
	}
	return bytes.Equal(head, wasmMagic)
}
