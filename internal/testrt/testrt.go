// Package testrt gives the tests of this module one compile cache, shared
// by every test process of the user: a Go-SDK test plugin (2.3 to 2.7 MB)
// is then compiled once per runtime and code, not once per test, per
// runtime and per package, which was most of the suite's time (above all
// under the race detector, which slows wazero's compiler several times).
//
// The directory is os.UserCacheDir()/anywasm/test-compile-cache (or
// os.TempDir()/anywasm-test-compile-cache-<uid> without a user cache
// directory), private to the user; the runtimes' compile caches trust only
// entries they wrote there (engine/internal/filecache). Entries not written
// for 14 days are removed when a process first uses it.
package testrt

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/anywasm/anywasm/engine"
)

var (
	once sync.Once
	dir  string
)

// Dir returns the shared compile cache directory, creating it.
func Dir() string {
	once.Do(func() {
		base, err := os.UserCacheDir()
		if err == nil {
			dir = filepath.Join(base, "anywasm", "test-compile-cache")
		} else {
			dir = filepath.Join(os.TempDir(), fmt.Sprintf("anywasm-test-compile-cache-%d", os.Getuid()))
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			dir = "" // no cache: tests compile, as they would without this package
			return
		}
		prune(dir, 14*24*time.Hour)
	})
	return dir
}

// prune removes the regular files under dir not written for maxAge, but
// the cache's key.
func prune(dir string, maxAge time.Duration) {
	cutoff := time.Now().Add(-maxAge)
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == "anywasm-cache.key" {
			return nil
		}
		if info, err := d.Info(); err == nil && info.Mode().IsRegular() && info.ModTime().Before(cutoff) {
			_ = os.Remove(path)
		}
		return nil
	})
}

// Config returns engine.NewConfig() with the shared compile cache.
func Config() engine.Config {
	c := engine.NewConfig()
	if d := Dir(); d != "" {
		c = c.WithCompilationCache(d)
	}
	return c
}
