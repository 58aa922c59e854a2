package wazero

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	goruntime "runtime"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/tetratelabs/wazero"

	"github.com/anywasm/anywasm/engine/internal/filecache"
)

// The compilation cache (Config.WithCompilationCache): see the package
// documentation for what is checked and what is not.

// diskCache keeps the modules a Runtime compiles in a cache directory.
type diskCache struct {
	dir       *filecache.Dir
	stage     *os.Root // the directory wazero's own cache uses
	stageName string   // its name in dir
	// wazeroPath is the path of the staging directory wazero uses:
	// /proc/self/fd/<handle> where there is one, else its plain path.
	wazeroPath string
	handle     *os.File
	interrupt  bool
	tier       string
	cache      wazero.CompilationCache

	mu sync.Mutex // one compilation at a time
	// For tests: compilations that stored an entry, and entries staged
	// that wazero loaded (it wrote no new file).
	stored, hits int
}

func openDiskCache(dir string, interrupt bool, tier string) (*diskCache, error) {
	d, err := filecache.Open(dir)
	if err != nil {
		return nil, err
	}
	stage, stagePath, err := d.MkdirTemp(".wazero-")
	if err != nil {
		d.Close()
		return nil, &filecache.Error{Dir: dir, Reason: "cannot create wazero's staging directory", Err: err}
	}
	c := &diskCache{dir: d, stage: stage, stageName: path.Base(stagePath), interrupt: interrupt, tier: tier}
	c.handle, c.wazeroPath = stageHandle(stage, stagePath)
	if c.cache, err = wazero.NewCompilationCacheWithDir(c.wazeroPath); err != nil {
		c.close(context.Background())
		return nil, &filecache.Error{Dir: dir, Reason: "wazero refuses its staging directory", Err: err}
	}
	return c, nil
}

// stageHandle returns the path wazero is given for the staging directory:
// where the kernel offers it (Linux's /proc/self/fd), the path of a handle
// on the directory opened through the checked cache directory, which no
// rename of a directory on the way redirects; else its plain path. The
// handle (nil with the plain path) must stay open while wazero uses it.
func stageHandle(stage *os.Root, plain string) (*os.File, string) {
	h, err := stage.Open(".")
	if err != nil {
		return nil, plain
	}
	p := fmt.Sprintf("/proc/self/fd/%d", h.Fd())
	hi, err1 := h.Stat()
	pi, err2 := os.Stat(p)
	if err1 != nil || err2 != nil || !os.SameFile(hi, pi) {
		h.Close()
		return nil, plain
	}
	return h, p
}

// close closes wazero's cache and removes the staging directory.
func (c *diskCache) close(ctx context.Context) error {
	var err error
	if c.cache != nil {
		err = c.cache.Close(context.WithoutCancel(ctx))
	}
	if c.handle != nil {
		c.handle.Close()
	}
	c.stage.Close()
	_ = c.dir.RemoveAll(c.stageName)
	c.dir.Close()
	return err
}

// key returns the cache key of wasm.
func (c *diskCache) key(wasm []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(filecache.Wazero.Magic))
	h.Write([]byte("wazero " + Version + " " + goruntime.GOOS + "/" + goruntime.GOARCH + " " + wazeroFileVersion() + " tier=" + c.tier))
	if c.interrupt {
		h.Write([]byte{1})
	} else {
		h.Write([]byte{0})
	}
	h.Write(wasm)
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// wazeroFileVersion is the version wazero names the directory of its cache
// files by (its internal/version.GetWazeroVersion: the wazero module's
// version in the binary's build information, "dev" without one, as in some
// test binaries). It is part of the key: wazero does not find an entry
// written under another version's name, compiles again, and the entry
// would be overwritten back and forth by binaries of both kinds sharing a
// directory.
var wazeroFileVersion = sync.OnceValue(func() string {
	v := ""
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if strings.Contains(dep.Path, "github.com/tetratelabs/wazero") {
				v = dep.Version
			}
		}
		if v == "" || v == "(devel)" {
			v = info.Main.Version
		}
	}
	if v == "" || v == "(devel)" {
		v = "dev"
	}
	return v
})

// staged is a file in the staging directory.
type staged struct {
	name string // "<wazero's version directory>/<file>"
	info fs.FileInfo
}

// compile compiles wasm in rt, through the disk cache.
func (c *diskCache) compile(ctx context.Context, rt wazero.Runtime, wasm []byte) (wazero.CompiledModule, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := c.key(wasm)
	placed, ok := c.place(key)
	cm, err := rt.CompileModule(ctx, wasm)
	if err != nil && ok && strings.HasPrefix(err.Error(), "compilationcache:") {
		// An authentic entry that this wazero cannot read (it refuses
		// instead of recompiling): compile afresh.
		c.clear()
		ok = false
		cm, err = rt.CompileModule(ctx, wasm)
	}
	if err == nil {
		var fresh []staged
		for _, f := range c.files() {
			if !ok || f.name != placed.name || !os.SameFile(f.info, placed.info) {
				fresh = append(fresh, f)
			}
		}
		switch {
		case len(fresh) == 1:
			if b, rerr := filecache.ReadFile(c.stage, fresh[0].name, 0o022); rerr == nil {
				if c.dir.Store(filecache.Wazero, filecache.Entry{Key: key, Name: fresh[0].name, Payload: b}) == nil {
					c.stored++
				}
			}
		case len(fresh) == 0 && ok:
			c.hits++
		}
	}
	c.clear()
	return cm, err
}

// place writes wazero's file of the entry for key into the staging
// directory if the entry is there and verifies.
func (c *diskCache) place(key [32]byte) (staged, bool) {
	e, ok := c.dir.Load(filecache.Wazero, key)
	if !ok || strings.Count(e.Name, "/") != 1 {
		return staged{}, false
	}
	if err := c.stage.MkdirAll(path.Dir(e.Name), 0o700); err != nil {
		return staged{}, false
	}
	_ = c.stage.Remove(e.Name)
	f, err := c.stage.OpenFile(e.Name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return staged{}, false
	}
	_, err = f.Write(e.Payload)
	if err = errors.Join(err, f.Close()); err != nil {
		_ = c.stage.Remove(e.Name)
		return staged{}, false
	}
	fi, err := c.stage.Lstat(e.Name)
	if err != nil {
		return staged{}, false
	}
	return staged{name: e.Name, info: fi}, true
}

// files lists the regular files in the staging directory's subdirectories
// (wazero keeps its files in one per version and platform), leaving out
// wazero's temporary files.
func (c *diskCache) files() []staged {
	var out []staged
	for _, sub := range readDir(c.stage, ".") {
		if !sub.IsDir() {
			continue
		}
		for _, f := range readDir(c.stage, sub.Name()) {
			name := sub.Name() + "/" + f.Name()
			if !f.Type().IsRegular() || strings.HasSuffix(name, ".tmp") || !filecache.ValidName(name) {
				continue
			}
			if fi, err := c.stage.Lstat(name); err == nil {
				out = append(out, staged{name: name, info: fi})
			}
		}
	}
	return out
}

// clear removes the files in the staging directory's subdirectories and
// keeps the subdirectories, which wazero created and writes into.
func (c *diskCache) clear() {
	for _, sub := range readDir(c.stage, ".") {
		if !sub.IsDir() {
			_ = c.stage.Remove(sub.Name())
			continue
		}
		for _, f := range readDir(c.stage, sub.Name()) {
			_ = c.stage.RemoveAll(sub.Name() + "/" + f.Name())
		}
	}
}

func readDir(root *os.Root, name string) []fs.DirEntry {
	f, err := root.Open(name)
	if err != nil {
		return nil
	}
	defer f.Close()
	entries, _ := f.ReadDir(-1)
	return entries
}
