package enginetest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/engine/internal/filecache"
)

// The compilation cache's trust checks. A planted entry is loaded by a
// fresh process (the test binary run again, see cacheChild), since a
// runtime may keep compiled code in memory for the life of the process.

const (
	childDirEnv   = "ANYWASM_ENGINETEST_CACHE_DIR"
	childGuestEnv = "ANYWASM_ENGINETEST_CACHE_GUEST"
	childStarted  = "ENGINETEST-CACHE-CHILD started"
	childPrefix   = "ENGINETEST-CACHE-CHILD answer="
)

// cacheChild is the child process: it compiles a guest with the cache in
// dir and prints what the guest's export "answer" returns.
func cacheChild(t *testing.T, name string) {
	fmt.Println(childStarted)
	rt, err := engine.Open(name, engine.NewConfig().WithCompilationCache(os.Getenv(childDirEnv)))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(t.Context())
	inst := instantiate(t, rt, os.Getenv(childGuestEnv))
	fmt.Printf("%s%d\n", childPrefix, call(t, inst, "answer")[0])
}

// child runs cacheChild in a new process and returns the answer.
func (h *harness) child(t *testing.T, dir, guest string) uint64 {
	t.Helper()
	var pattern []string
	for _, part := range strings.Split(h.top, "/") {
		pattern = append(pattern, "^"+regexp.QuoteMeta(part)+"$")
	}
	cmd := exec.Command(os.Args[0], "-test.run="+strings.Join(pattern, "/"), "-test.count=1")
	cmd.Env = append(os.Environ(), childDirEnv+"="+dir, childGuestEnv+"="+guest)
	out, err := cmd.CombinedOutput()
	if err != nil && !bytes.Contains(out, []byte(childStarted)) {
		// The test binary could not run again (under qemu-user without
		// binfmt, say): nothing of ours ran, so nothing failed.
		t.Skipf("cannot run the test binary as a child process here: %v\n%s", err, out)
	}
	if err != nil {
		t.Fatalf("child process: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if s, ok := strings.CutPrefix(strings.TrimSpace(l), childPrefix); ok {
			var n uint64
			fmt.Sscan(s, &n)
			return n
		}
	}
	t.Fatalf("no answer from the child process:\n%s", out)
	return 0
}

func (h *harness) testCacheTrust(t *testing.T) {
	if !h.info.Capabilities.Has(engine.CapCompilationCache) {
		t.Skip("no compilation cache")
	}
	t.Run("Directory", h.testCacheDirectory)
	t.Run("PlantedEntry", h.testPlantedEntry)
	t.Run("UntrustedFile", h.testUntrustedEntry)
}

// testCacheDirectory: Open refuses a directory others could write into, or
// that is not ours.
func (h *harness) testCacheDirectory(t *testing.T) {
	// A missing directory is created, private.
	dir := filepath.Join(t.TempDir(), "new", "cache")
	rt := h.open(t, engine.NewConfig().WithCompilationCache(dir))
	if fi, err := os.Stat(dir); err != nil || fi.Mode() != os.ModeDir|0o700 {
		t.Errorf("created cache directory: %v, %v; want mode drwx------", fi.Mode(), err)
	}
	n := 0
	if got := call(t, instantiate(t, rt, "values", env(&n)), "outer", 2); got[0] != 201 {
		t.Errorf("outer(2) = %d", got[0])
	}

	for _, tc := range []struct {
		name  string
		root  bool
		setup func(t *testing.T, dir string) string
	}{
		{"writable by others", false, func(t *testing.T, dir string) string { return chmod(t, dir, 0o777) }},
		{"writable by group", false, func(t *testing.T, dir string) string { return chmod(t, dir, 0o770) }},
		{"owned by another user", true, func(t *testing.T, dir string) string { return chown(t, dir) }},
		{"symlink to a directory writable by others", false, func(t *testing.T, dir string) string {
			return symlink(t, chmod(t, dir, 0o777))
		}},
		{"symlink to another user's directory", true, func(t *testing.T, dir string) string {
			return symlink(t, chown(t, dir))
		}},
		{"a regular file", false, func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "file")
			writeFile(t, p, []byte("not a directory"), 0o600)
			return p
		}},
		{"key file readable by others", false, func(t *testing.T, dir string) string {
			h.open(t, engine.NewConfig().WithCompilationCache(dir)).Close(t.Context())
			chmod(t, filepath.Join(dir, filecache.KeyFile), 0o644)
			return dir
		}},
		{"key file of another user", true, func(t *testing.T, dir string) string {
			h.open(t, engine.NewConfig().WithCompilationCache(dir)).Close(t.Context())
			chown(t, filepath.Join(dir, filecache.KeyFile))
			return dir
		}},
		{"key file corrupt", false, func(t *testing.T, dir string) string {
			writeFile(t, filepath.Join(dir, filecache.KeyFile), []byte("not a key"), 0o600)
			return dir
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root && os.Geteuid() != 0 {
				t.Skip("needs root to give a file to another user")
			}
			path := tc.setup(t, t.TempDir())
			rt, err := engine.Open(h.name, h.config(engine.NewConfig().WithCompilationCache(path)))
			if err == nil {
				rt.Close(t.Context())
				t.Fatalf("Open with cache directory %s succeeded", path)
			}
			if !errors.Is(err, engine.ErrCompilationCache) || !strings.Contains(err.Error(), path) {
				t.Errorf("Open: %v; want an error naming %s that matches engine.ErrCompilationCache", err, path)
			}
		})
	}
}

// testPlantedEntry: B's code in A's entry, with A's header and key and a
// valid payload SHA-256 (what an attacker who knows the format and has a
// cache of their own can make), is not run, and the file is replaced.
func (h *harness) testPlantedEntry(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	if got := h.child(t, dirA, "small"); got != 42 {
		t.Fatalf("small: answer = %d, want 42", got)
	}
	if got := h.child(t, dirB, "impostor"); got != 666 {
		t.Fatalf("impostor: answer = %d, want 666", got)
	}
	name, a := onlyEntry(t, dirA)
	_, b := onlyEntry(t, dirB)
	path := filepath.Join(dirA, name)

	// Authenticated with the attacker's own cache key, not A's.
	writeFile(t, path, a.with(b.payload).seal(readKey(t, dirB)), 0o600)
	if got := h.child(t, dirA, "small"); got != 42 {
		t.Fatalf("a planted entry ran: answer = %d, want 42", got)
	}
	checkRewritten(t, dirA, name, a, b)

	// Control: the same entry authenticated with A's directory's key is
	// loaded and runs B's code. So it is the HMAC that refused it above.
	writeFile(t, path, a.with(b.payload).seal(readKey(t, dirA)), 0o600)
	if got := h.child(t, dirA, "small"); got != 666 {
		t.Errorf("control: an entry authenticated with the directory's own key was not loaded (answer %d, want 666): "+
			"the check above does not show that the HMAC refuses planted entries", got)
	}
}

// testUntrustedEntry: an entry that would verify, but is not a regular
// file of ours that others cannot write, is never loaded (the control in
// testPlantedEntry shows that it would run B's code).
func (h *harness) testUntrustedEntry(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	h.child(t, dirA, "small")
	h.child(t, dirB, "impostor")
	name, a := onlyEntry(t, dirA)
	_, b := onlyEntry(t, dirB)
	path := filepath.Join(dirA, name)
	forged := a.with(b.payload).seal(readKey(t, dirA))
	for _, tc := range []struct {
		name  string
		root  bool
		plant func(t *testing.T)
	}{
		{"writable by others", false, func(t *testing.T) { writeFile(t, path, forged, 0o666) }},
		{"writable by group", false, func(t *testing.T) { writeFile(t, path, forged, 0o620) }},
		{"owned by another user", true, func(t *testing.T) {
			writeFile(t, path, forged, 0o600)
			chown(t, path)
		}},
		{"a symlink", false, func(t *testing.T) {
			writeFile(t, filepath.Join(dirA, "elsewhere"), forged, 0o600)
			_ = os.Remove(path)
			if err := os.Symlink("elsewhere", path); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root && os.Geteuid() != 0 {
				t.Skip("needs root to give a file to another user")
			}
			tc.plant(t)
			if got := h.child(t, dirA, "small"); got != 42 {
				t.Fatalf("the entry was loaded: answer = %d, want 42", got)
			}
			checkRewritten(t, dirA, name, a, b)
		})
	}
}

// checkRewritten checks that the file name in dir is an entry of a's
// header, authenticated with dir's key, without b's payload.
func checkRewritten(t *testing.T, dir, name string, a, b entryFields) {
	t.Helper()
	fi, err := os.Lstat(filepath.Join(dir, name))
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the refused entry was not replaced by a private regular file: %v, %v", fi, err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, name))
	got, ok := parseEntryFields(raw)
	if !ok || got.magic != a.magic || got.key != a.key || !bytes.Equal(got.seal(readKey(t, dir)), raw) {
		t.Fatal("the refused entry was replaced by a file that is not an authentic entry for the module")
	}
	if bytes.Equal(got.payload, b.payload) {
		t.Fatal("the rewritten entry holds the planted code")
	}
}

// entryFields is a cache entry as the attacker reads it, following the
// layout documented in engine/internal/filecache (not its code).
type entryFields struct {
	magic   string
	key     [32]byte
	name    string
	payload []byte
}

func parseEntryFields(b []byte) (entryFields, bool) {
	m := bytes.IndexByte(b, '\n') + 1
	if m == 0 || len(b) < m+33 {
		return entryFields{}, false
	}
	n := int(b[m+32])
	hdr := m + 33 + n + 8 + 32
	if len(b) < hdr+32 {
		return entryFields{}, false
	}
	return entryFields{magic: string(b[:m]), key: [32]byte(b[m : m+32]), name: string(b[m+33 : m+33+n]), payload: b[hdr+32:]}, true
}

func (e entryFields) with(payload []byte) entryFields { e.payload = payload; return e }

// seal returns the file of e with the payload's SHA-256 and an HMAC with key.
func (e entryFields) seal(key [32]byte) []byte {
	b := []byte(e.magic)
	b = append(b, e.key[:]...)
	b = append(b, byte(len(e.name)))
	b = append(b, e.name...)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(e.payload)))
	sum := sha256.Sum256(e.payload)
	b = append(b, sum[:]...)
	h := hmac.New(sha256.New, key[:])
	h.Write(b)
	b = h.Sum(b)
	return append(b, e.payload...)
}

// onlyEntry returns the one cache entry in dir: its file name and fields.
func onlyEntry(t *testing.T, dir string) (string, entryFields) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		if de.Name() != filecache.KeyFile {
			names = append(names, de.Name())
		}
	}
	if len(names) != 1 {
		t.Fatalf("cache directory holds %v besides the key file, want one entry", names)
	}
	b, err := os.ReadFile(filepath.Join(dir, names[0]))
	if err != nil {
		t.Fatal(err)
	}
	e, ok := parseEntryFields(b)
	if !ok || !strings.HasPrefix(e.magic, "anywasm-") {
		t.Fatalf("%s is not a cache entry", names[0])
	}
	return names[0], e
}

func readKey(t *testing.T, dir string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, filecache.KeyFile))
	if err != nil || len(b) != len(filecache.KeyMagic)+32 {
		t.Fatalf("key file: %d bytes, %v", len(b), err)
	}
	return [32]byte(b[len(filecache.KeyMagic):])
}

func chmod(t *testing.T, path string, m os.FileMode) string {
	t.Helper()
	if err := os.Chmod(path, m); err != nil {
		t.Fatal(err)
	}
	return path
}

// chown gives path to the user nobody (65534); the test's cleanup takes
// it back so that it can be removed.
func chown(t *testing.T, path string) string {
	t.Helper()
	if err := os.Lchown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Lchown(path, os.Geteuid(), os.Getegid()) })
	return path
}

func symlink(t *testing.T, target string) string {
	t.Helper()
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	return link
}

// writeFile replaces path with a new file of mode m.
func writeFile(t *testing.T, path string, b []byte, m os.FileMode) {
	t.Helper()
	_ = os.Remove(path)
	if err := os.WriteFile(path, b, m); err != nil {
		t.Fatal(err)
	}
	chmod(t, path, m)
}
