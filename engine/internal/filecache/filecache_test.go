package filecache

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/anywasm/anywasm/engine"
)

const nobody = 65534

func open(t *testing.T, path string) *Dir {
	t.Helper()
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file to another user")
	}
}

var entry = Entry{Key: [32]byte{1, 2, 3}, Payload: []byte("native code of module A")}

func TestOpenCreatesPrivateDirAndKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "cache")
	d := open(t, dir)
	if m := mode(t, dir); m != os.ModeDir|0o700 {
		t.Errorf("created directory has mode %s, want drwx------", m)
	}
	key := filepath.Join(dir, KeyFile)
	if m := mode(t, key); m != 0o600 {
		t.Errorf("key file has mode %s, want -rw-------", m)
	}
	b, _ := os.ReadFile(key)
	if _, ok := parseKeyFile(b); !ok || len(b) != len(KeyMagic)+32 {
		t.Errorf("key file holds %q", b)
	}
	if err := d.Store(Wasmtime, entry); err != nil {
		t.Fatal(err)
	}
	names, _ := os.ReadDir(dir)
	if len(names) != 2 {
		t.Errorf("directory holds %v, want the key and one entry (no temporary files)", names)
	}
	// Another Dir on the same directory has the same key.
	if e, ok := open(t, dir).Load(Wasmtime, entry.Key); !ok || !bytes.Equal(e.Payload, entry.Payload) {
		t.Error("a second Open does not load the entry the first stored")
	}
	// A private directory that others may read is accepted.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	open(t, dir)
}

// TestOpenRefuses checks every reason Open refuses a directory.
func TestOpenRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		root  bool                                  // needs root (chown)
		setup func(t *testing.T, dir string) string // returns the path to open
		want  string
	}{
		{"world-writable", false, func(t *testing.T, dir string) string {
			chmod(t, dir, 0o777)
			return dir
		}, "writable by group or others"},
		{"group-writable", false, func(t *testing.T, dir string) string {
			chmod(t, dir, 0o770)
			return dir
		}, "writable by group or others"},
		{"sticky world-writable", false, func(t *testing.T, dir string) string {
			chmod(t, dir, 0o777|os.ModeSticky)
			return dir
		}, "writable by group or others"},
		{"another owner", true, func(t *testing.T, dir string) string {
			chown(t, dir, nobody)
			return dir
		}, "owned by uid 65534"},
		{"symlink to a world-writable directory", false, func(t *testing.T, dir string) string {
			chmod(t, dir, 0o777)
			link := filepath.Join(t.TempDir(), "link")
			if err := os.Symlink(dir, link); err != nil {
				t.Fatal(err)
			}
			return link
		}, "the directory it links to"},
		{"symlink to another owner's directory", true, func(t *testing.T, dir string) string {
			chown(t, dir, nobody)
			link := filepath.Join(t.TempDir(), "link")
			if err := os.Symlink(dir, link); err != nil {
				t.Fatal(err)
			}
			return link
		}, "owned by uid 65534"},
		{"a regular file", false, func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "file")
			write(t, p, []byte("x"), 0o600)
			return p
		}, "not a directory"},
		{"cannot be created", false, func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "file")
			write(t, p, []byte("x"), 0o600)
			return filepath.Join(p, "cache")
		}, "cannot"},
		{"key readable by others", false, func(t *testing.T, dir string) string {
			open(t, dir).Close()
			chmod(t, filepath.Join(dir, KeyFile), 0o644)
			return dir
		}, "has group or other permissions"},
		{"key readable by group", false, func(t *testing.T, dir string) string {
			open(t, dir).Close()
			chmod(t, filepath.Join(dir, KeyFile), 0o640)
			return dir
		}, "has group or other permissions"},
		{"key of another owner", true, func(t *testing.T, dir string) string {
			open(t, dir).Close()
			chown(t, filepath.Join(dir, KeyFile), nobody)
			return dir
		}, "owned by uid 65534"},
		{"key is a symlink", false, func(t *testing.T, dir string) string {
			other := t.TempDir()
			open(t, other).Close()
			if err := os.Symlink(filepath.Join(other, KeyFile), filepath.Join(dir, KeyFile)); err != nil {
				t.Fatal(err)
			}
			return dir
		}, "not a regular file"},
		{"key is a directory", false, func(t *testing.T, dir string) string {
			if err := os.Mkdir(filepath.Join(dir, KeyFile), 0o700); err != nil {
				t.Fatal(err)
			}
			return dir
		}, "not a regular file"},
		{"key truncated", false, func(t *testing.T, dir string) string {
			write(t, filepath.Join(dir, KeyFile), []byte(KeyMagic+"short"), 0o600)
			return dir
		}, "malformed"},
		{"key all zero", false, func(t *testing.T, dir string) string {
			write(t, filepath.Join(dir, KeyFile), append([]byte(KeyMagic), make([]byte, 32)...), 0o600)
			return dir
		}, "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root {
				requireRoot(t)
			}
			dir := t.TempDir()
			path := tc.setup(t, dir)
			d, err := Open(path)
			if err == nil {
				d.Close()
				t.Fatalf("Open(%s) succeeded", path)
			}
			if !errors.Is(err, engine.ErrCompilationCache) {
				t.Errorf("error %v does not match engine.ErrCompilationCache", err)
			}
			var fe *Error
			if !errors.As(err, &fe) || fe.Dir != path {
				t.Errorf("error %v does not name the directory %s", err, path)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q: want it to contain %q and %s", err, tc.want, path)
			}
		})
	}
}

// TestKeyCreatedOnce opens a new directory from many goroutines at once:
// they all end up with the same key.
func TestKeyCreatedOnce(t *testing.T) {
	for round := range 20 {
		dir := filepath.Join(t.TempDir(), "cache")
		const n = 8
		dirs := make([]*Dir, n)
		var wg sync.WaitGroup
		for i := range dirs {
			wg.Go(func() {
				d, err := Open(dir)
				if err != nil {
					t.Error(err)
					return
				}
				dirs[i] = d
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		for _, d := range dirs[1:] {
			if d.mac != dirs[0].mac {
				t.Fatalf("round %d: two processes opening a new directory at once got different keys", round)
			}
			d.Close()
		}
		dirs[0].Close()
		if names, _ := os.ReadDir(dir); len(names) != 1 {
			t.Fatalf("round %d: directory holds %v, want the key file only", round, names)
		}
	}
}

// TestLoadOnlyVerifiedEntries checks that Load returns exactly what Store
// wrote, and nothing else.
func TestLoadOnlyVerifiedEntries(t *testing.T) {
	dir := t.TempDir()
	d := open(t, dir)
	if err := d.Store(Wasmer, entry); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, Wasmer.FileName(entry.Key))
	good, _ := os.ReadFile(path)
	load := func() bool {
		t.Helper()
		e, ok := d.Load(Wasmer, entry.Key)
		if ok && (!bytes.Equal(e.Payload, entry.Payload) || e.Name != "" || e.Key != entry.Key) {
			t.Fatalf("Load returned %+v", e)
		}
		return ok
	}
	if !load() {
		t.Fatal("a stored entry does not load")
	}
	if _, ok := d.Load(Wasmtime, entry.Key); ok {
		t.Error("an entry loads as another backend's format")
	}
	if _, ok := d.Load(Wasmer, [32]byte{9}); ok {
		t.Error("an entry loads for another key")
	}
	// Every changed byte is refused.
	for i := range good {
		bad := bytes.Clone(good)
		bad[i] ^= 0x01
		write(t, path, bad, 0o600)
		if load() {
			t.Fatalf("byte %d of %d changed: loaded", i, len(good))
		}
	}
	for _, n := range []int{0, 1, len(good) - 1} {
		write(t, path, good[:n], 0o600)
		if load() {
			t.Errorf("truncated to %d bytes: loaded", n)
		}
	}
	write(t, path, append(bytes.Clone(good), 0), 0o600)
	if load() {
		t.Error("a byte appended: loaded")
	}

	// An entry for another module under this name, its header rewritten
	// to this key and its HMAC computed with another directory's key (what
	// an attacker who knows the format and owns another cache does).
	other := open(t, t.TempDir())
	forged, err := Wasmer.appendHeader(nil, &other.mac, &Entry{Key: entry.Key, Payload: []byte("attacker code")})
	if err != nil {
		t.Fatal(err)
	}
	write(t, path, append(forged, "attacker code"...), 0o600)
	if load() {
		t.Error("an entry authenticated with another directory's key was loaded")
	}
	// A whole entry copied from another directory.
	if err := other.Store(Wasmer, entry); err != nil {
		t.Fatal(err)
	}
	copied, _ := os.ReadFile(filepath.Join(other.Path(), Wasmer.FileName(entry.Key)))
	write(t, path, copied, 0o600)
	if load() {
		t.Error("an entry copied from another cache directory was loaded")
	}

	// A valid entry is still refused where others could have changed it.
	write(t, path, good, 0o600)
	if !load() {
		t.Fatal("the good entry, rewritten, does not load")
	}
	for _, m := range []os.FileMode{0o620, 0o602, 0o666} {
		chmod(t, path, m)
		if load() {
			t.Errorf("mode %s: loaded", m)
		}
	}
	chmod(t, path, 0o644) // readable by others: not a risk to us
	if !load() {
		t.Error("mode 0644: not loaded")
	}
	chmod(t, path, 0o600)
	// A symlink to a valid entry.
	other2 := filepath.Join(dir, "elsewhere")
	if err := os.Rename(path, other2); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("elsewhere", path); err != nil {
		t.Fatal(err)
	}
	if load() {
		t.Error("a symlink was followed")
	}
	os.Remove(path)
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if load() {
		t.Error("a FIFO was loaded")
	}
	os.Remove(path)
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if load() {
		t.Error("a directory was loaded")
	}
	os.Remove(path)

	// Store replaces whatever is there.
	write(t, path, forged, 0o666)
	if err := d.Store(Wasmer, entry); err != nil {
		t.Fatal(err)
	}
	if !load() || mode(t, path) != 0o600 {
		t.Error("Store did not replace a planted file")
	}
}

func TestLoadRefusesAnotherOwner(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	d := open(t, dir)
	if err := d.Store(Wazero, Entry{Key: entry.Key, Name: "wazero-v1/abc", Payload: entry.Payload}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, Wazero.FileName(entry.Key))
	if e, ok := d.Load(Wazero, entry.Key); !ok || e.Name != "wazero-v1/abc" {
		t.Fatalf("Load = %+v, %v", e, ok)
	}
	chown(t, path, nobody)
	if _, ok := d.Load(Wazero, entry.Key); ok {
		t.Error("a file owned by another user was loaded")
	}
	if err := d.Store(Wazero, entry); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Load(Wazero, entry.Key); !ok {
		t.Error("Store did not replace another user's file")
	}
}

func TestStoreRefusesWhatLoadWould(t *testing.T) {
	d := open(t, t.TempDir())
	for _, e := range []Entry{
		{Key: entry.Key},
		{Key: entry.Key, Payload: []byte{1}, Name: "../x"},
		{Key: entry.Key, Payload: []byte{1}, Name: "/abs"},
		{Key: entry.Key, Payload: []byte{1}, Name: "."},
		{Key: entry.Key, Payload: []byte{1}, Name: "a\x00b"},
		{Key: entry.Key, Payload: []byte{1}, Name: strings.Repeat("a", 256)},
	} {
		if err := d.Store(Wasmtime, e); err == nil {
			t.Errorf("Store(%q, %d bytes) succeeded", e.Name, len(e.Payload))
		}
	}
	if names, _ := os.ReadDir(d.Path()); len(names) != 1 {
		t.Errorf("directory holds %v, want the key file only", names)
	}
}

func TestMkdirTemp(t *testing.T) {
	d := open(t, t.TempDir())
	sub, path, err := d.MkdirTemp(".stage-")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if m := mode(t, path); m != os.ModeDir|0o700 {
		t.Errorf("mode %s", m)
	}
	if err := sub.WriteFile("f", []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(sub, "f", 0o022); err != nil || string(b) != "x" {
		t.Errorf("ReadFile = %q, %v", b, err)
	}
	if err := d.RemoveAll(filepath.Base(path)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("still there: %v", err)
	}
}

func chmod(t *testing.T, path string, m os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, m); err != nil {
		t.Fatal(err)
	}
}

func chown(t *testing.T, path string, uid int) {
	t.Helper()
	if err := os.Lchown(path, uid, uid); err != nil {
		t.Fatal(err)
	}
	// Let the test's cleanup remove it.
	t.Cleanup(func() { _ = os.Lchown(path, os.Geteuid(), os.Getegid()) })
}

func write(t *testing.T, path string, b []byte, m os.FileMode) {
	t.Helper()
	_ = os.Remove(path)
	if err := os.WriteFile(path, b, m); err != nil {
		t.Fatal(err)
	}
	chmod(t, path, m)
}

// TestDirKeepsItsDirectory: renaming the directory of an open Dir and
// putting another in its place redirects neither Load nor Store.
func TestDirKeepsItsDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache")
	d := open(t, path)
	if err := d.Store(Wasmtime, entry); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".moved"); err != nil {
		t.Fatal(err)
	}
	// A directory of the same name with a valid entry of its own.
	other := open(t, path)
	if err := other.Store(Wasmtime, Entry{Key: entry.Key, Payload: []byte("other code")}); err != nil {
		t.Fatal(err)
	}
	if e, ok := d.Load(Wasmtime, entry.Key); !ok || !bytes.Equal(e.Payload, entry.Payload) {
		t.Fatalf("Load after the rename = %q, %v; want the entry of the directory it opened", e.Payload, ok)
	}
	k := [32]byte{7}
	if err := d.Store(Wasmtime, Entry{Key: k, Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(path+".moved", Wasmtime.FileName(k))); err != nil {
		t.Errorf("Store after the rename did not write into the directory it opened: %v", err)
	}
}

// TestKeyCreatedOnceAcrossProcesses starts processes that open one new
// directory at once: they all end up with the same key.
func TestKeyCreatedOnceAcrossProcesses(t *testing.T) {
	if dir := os.Getenv("ANYWASM_FILECACHE_CHILD"); dir != "" {
		d, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(d.mac[:])
		fmt.Printf("KEY %x\n", sum)
		return
	}
	for round := range 5 {
		dir := filepath.Join(t.TempDir(), "cache")
		cmds := make([]*exec.Cmd, 4)
		outs := make([]bytes.Buffer, len(cmds))
		for i := range cmds {
			cmds[i] = exec.Command(os.Args[0], "-test.run=^TestKeyCreatedOnceAcrossProcesses$")
			cmds[i].Env = append(os.Environ(), "ANYWASM_FILECACHE_CHILD="+dir)
			cmds[i].Stdout, cmds[i].Stderr = &outs[i], &outs[i]
			if err := cmds[i].Start(); err != nil {
				t.Skipf("cannot start a child process here: %v", err)
			}
		}
		keys := map[string]bool{}
		for i, c := range cmds {
			err := c.Wait()
			var key string
			for _, l := range strings.Split(outs[i].String(), "\n") {
				if k, ok := strings.CutPrefix(l, "KEY "); ok {
					key = k
				}
			}
			if err != nil || key == "" {
				t.Fatalf("child: %v\n%s", err, outs[i].String())
			}
			keys[key] = true
		}
		if len(keys) != 1 {
			t.Fatalf("round %d: %d processes opening a new directory at once got %d different keys", round, len(cmds), len(keys))
		}
	}
}
