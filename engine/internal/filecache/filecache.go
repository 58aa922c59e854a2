// Package filecache is the trusted part of the compilation caches of every
// backend (engine.Config.WithCompilationCache): the checks on the cache
// directory, its HMAC key, and the file format of the entries.
//
// An entry is native code that a runtime maps and runs without validating
// it, so an entry is loaded only if this package can tell that this cache
// wrote it:
//
//   - Open refuses, with an *Error that matches engine.ErrCompilationCache,
//     a directory that is not owned by the process's effective uid or that
//     group or others may write (a symlink is followed and its target
//     checked); it creates a missing one with mode 0700. It then keeps the
//     checked directory open as an os.Root, and every later access to the
//     key and to entries goes through it: renaming or replacing a directory
//     on the path afterwards redirects nothing.
//   - The directory holds a key file (KeyFile): 32 random bytes, created on
//     first use with mode 0600 as a temporary file hard-linked into place,
//     so that processes starting at once all end up with the one key that
//     won the link. Open refuses a key file that is malformed, is not a
//     regular file, is not owned by the user or has any group or other
//     permission bit.
//   - Every entry carries an HMAC-SHA256, under that key, of its header;
//     the header holds the cache key and the payload's SHA-256, so the HMAC
//     authenticates the payload too, with one pass over it instead of two
//     (the native code of a 2.3 MB Go plugin is 7 MB: a second pass would
//     add about 5 ms to a 10 ms load). An entry copied from another cache
//     directory or machine, or planted by someone who knows the format but
//     not the key, does not verify.
//   - Dir.Load returns an entry only if its file is a regular file owned by
//     the user that group and others cannot write (checked on the open
//     file), with this format's magic, the expected cache key, consistent
//     lengths, a valid HMAC and the payload's SHA-256. Anything else is a
//     miss: the caller compiles again and Dir.Store replaces the file.
//   - Dir.Store writes a temporary file (mode 0600) and renames it into
//     place: readers see the old file or the new one, never half of one.
//
// Not protected: anyone running as the same user (or root) can read the key
// and write entries; such a user can change the program itself anyway. The
// directories above the cache directory are not checked: whoever can
// rename them cannot redirect an open Dir, and cannot put a directory of
// their own in its place before Open (it would not be ours).
//
// Entry layout (Format.Magic is one backend's format and version):
//
//	magic            len(Magic) bytes, ends with '\n'
//	cache key        32 bytes: SHA-256 of what the code was compiled from
//	name length      1 byte
//	name             0-255 bytes: a file name the backend needs, or none
//	payload length   8 bytes, little endian, at least 1
//	payload SHA-256  32 bytes
//	HMAC-SHA256      32 bytes, of all the bytes above
//	payload          the rest of the file
//
// Key file layout: KeyMagic (20 bytes) then the 32 key bytes, not all zero.
package filecache

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/anywasm/anywasm/engine"
)

// KeyFile is the name of the HMAC key file in a cache directory.
const KeyFile = "anywasm-cache.key"

// KeyMagic starts a key file.
const KeyMagic = "anywasm-cache-key-1\n"

// Format is one backend's entry format.
type Format struct {
	// Magic starts every entry; it names the backend and the version of
	// the format and ends with '\n'.
	Magic string
	// Ext ends the name of every entry.
	Ext string
}

// The formats of the backends.
var (
	Wasmtime = Format{Magic: "anywasm-wasmtime-cache-2\n", Ext: ".cwasm"}
	Wasmer   = Format{Magic: "anywasm-wasmer-cache-2\n", Ext: ".wasmer"}
	Wazero   = Format{Magic: "anywasm-wazero-cache-1\n", Ext: ".wazero"}
)

// FileName returns the name of the entry for key.
func (f Format) FileName(key [32]byte) string { return hex.EncodeToString(key[:]) + f.Ext }

// Entry is a cache entry.
type Entry struct {
	// Key is the cache key: the SHA-256 of everything the code was
	// compiled from (the module's bytes, the runtime's version, platform
	// and code-generation settings).
	Key [32]byte
	// Name is a file name the backend's loader needs (wazero: the name
	// wazero gave the file), or "". See ValidName.
	Name string
	// Payload is what the runtime loads. It is never empty.
	Payload []byte
}

const (
	keySize = 32
	sumSize = sha256.Size
	macSize = sha256.Size
	maxName = 255
)

// ValidName reports whether name can be an Entry's Name: "", or a
// slash-separated relative path (fs.ValidPath, not ".") of at most 255
// bytes of letters, digits and ".-_+".
func ValidName(name string) bool {
	if name == "" {
		return true
	}
	if len(name) > maxName || name == "." || !fs.ValidPath(name) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// appendHeader appends the header and HMAC of e under mac to dst: the
// file is that followed by e.Payload.
func (f Format) appendHeader(dst []byte, mac *[32]byte, e *Entry) ([]byte, error) {
	if len(e.Payload) == 0 {
		return nil, errors.New("filecache: empty payload")
	}
	if !ValidName(e.Name) {
		return nil, fmt.Errorf("filecache: invalid entry name %q", e.Name)
	}
	start := len(dst)
	dst = append(dst, f.Magic...)
	dst = append(dst, e.Key[:]...)
	dst = append(dst, byte(len(e.Name)))
	dst = append(dst, e.Name...)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(len(e.Payload)))
	sum := sha256.Sum256(e.Payload)
	dst = append(dst, sum[:]...)
	h := hmac.New(sha256.New, mac[:])
	h.Write(dst[start:])
	return h.Sum(dst), nil
}

// parseEntry returns the entry b holds if b is exactly what appendHeader
// and the payload make of it under mac. The payload aliases b.
func (f Format) parseEntry(b []byte, mac *[32]byte) (Entry, bool) {
	m := len(f.Magic)
	if len(b) < m+keySize+1 || string(b[:m]) != f.Magic {
		return Entry{}, false
	}
	n := int(b[m+keySize])
	nameAt := m + keySize + 1
	hdr := nameAt + n + 8 + sumSize
	if len(b) <= hdr+macSize { // a payload has at least one byte
		return Entry{}, false
	}
	name := string(b[nameAt : nameAt+n])
	if !ValidName(name) {
		return Entry{}, false
	}
	payload := b[hdr+macSize:]
	if binary.LittleEndian.Uint64(b[nameAt+n:]) != uint64(len(payload)) {
		return Entry{}, false
	}
	h := hmac.New(sha256.New, mac[:])
	h.Write(b[:hdr])
	var sum [macSize]byte
	if !hmac.Equal(h.Sum(sum[:0]), b[hdr:hdr+macSize]) {
		return Entry{}, false
	}
	if sha256.Sum256(payload) != [sumSize]byte(b[hdr-sumSize:hdr]) {
		return Entry{}, false
	}
	return Entry{Key: [keySize]byte(b[m : m+keySize]), Name: name, Payload: payload}, true
}

// appendKeyFile appends the contents of a key file holding k.
func appendKeyFile(dst []byte, k *[32]byte) []byte {
	return append(append(dst, KeyMagic...), k[:]...)
}

// parseKeyFile returns the key a key file holds.
func parseKeyFile(b []byte) ([32]byte, bool) {
	if len(b) != len(KeyMagic)+keySize || string(b[:len(KeyMagic)]) != KeyMagic {
		return [32]byte{}, false
	}
	k := [32]byte(b[len(KeyMagic):])
	return k, k != [32]byte{}
}

// Error is a cache directory or key file that Open refuses. It matches
// engine.ErrCompilationCache (errors.Is).
type Error struct {
	Dir    string // the cache directory as given
	Reason string // what is wrong, naming the path
	Err    error  // the underlying error, or nil
}

func (e *Error) Error() string {
	s := "compilation cache " + e.Dir + ": " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns engine.ErrCompilationCache and the underlying error.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{engine.ErrCompilationCache}
	}
	return []error{engine.ErrCompilationCache, e.Err}
}

// Dir is a checked cache directory and its key. It is safe for concurrent
// use.
type Dir struct {
	path string
	root *os.Root
	mac  [32]byte
}

// Open checks the cache directory path (creating it with mode 0700 if it
// does not exist) and loads its key, creating it on first use. It refuses
// an unusable or untrusted directory or key file with an *Error.
func Open(path string) (*Dir, error) {
	refuse := func(reason string, err error) (*Dir, error) {
		return nil, &Error{Dir: path, Reason: reason, Err: err}
	}
	if path == "" {
		return refuse("no directory given", nil)
	}
	what := "the directory"
	if li, err := os.Lstat(path); err == nil && li.Mode()&fs.ModeSymlink != 0 {
		what = "the directory it links to"
		if target, err := filepath.EvalSymlinks(path); err == nil {
			what += " (" + target + ")"
		}
	} else if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(path, 0o700); err != nil {
			return refuse("cannot create the directory", err)
		}
	}
	root, err := os.OpenRoot(path)
	if err != nil {
		return refuse("cannot open "+what, err)
	}
	fi, err := root.Stat(".")
	if err != nil {
		root.Close()
		return refuse("cannot stat "+what, err)
	}
	why := untrusted(fi, 0o022)
	if !fi.IsDir() {
		why = fmt.Sprintf("is not a directory (mode %s)", fi.Mode())
	}
	if why != "" {
		root.Close()
		return refuse(what+" "+why+": it must be a directory private to this user (mode 0700)", nil)
	}
	mac, err := loadKey(root)
	if err != nil {
		root.Close()
		return refuse("key file "+filepath.Join(path, KeyFile), err)
	}
	return &Dir{path: path, root: root, mac: mac}, nil
}

// untrusted returns why fi cannot be trusted, or "": it must be owned by
// the effective uid and have no permission bit of bad.
func untrusted(fi fs.FileInfo, bad fs.FileMode) string {
	if why := notOwned(fi); why != "" {
		return why
	}
	if perm := fi.Mode().Perm(); perm&bad != 0 {
		if bad&0o044 != 0 {
			return fmt.Sprintf("has group or other permissions (mode %s)", fi.Mode())
		}
		return fmt.Sprintf("is writable by group or others (mode %s)", fi.Mode())
	}
	return ""
}

// errUntrusted is a file that must not be read.
type errUntrusted string

func (e errUntrusted) Error() string { return string(e) }

// ReadFile returns the contents of the file name below root if it is a
// regular file (not a symlink), owned by the effective uid, without a
// permission bit of bad; checked on the open file. A missing file is an
// error matching fs.ErrNotExist.
func ReadFile(root *os.Root, name string, bad fs.FileMode) ([]byte, error) {
	li, err := root.Lstat(name)
	if err != nil {
		return nil, err
	}
	if !li.Mode().IsRegular() {
		return nil, errUntrusted(fmt.Sprintf("is not a regular file (mode %s)", li.Mode()))
	}
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !os.SameFile(li, fi) {
		return nil, errUntrusted("was replaced while being opened")
	}
	if !fi.Mode().IsRegular() {
		return nil, errUntrusted(fmt.Sprintf("is not a regular file (mode %s)", fi.Mode()))
	}
	if why := untrusted(fi, bad); why != "" {
		return nil, errUntrusted(why)
	}
	b := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, err
	}
	return b, nil
}

// loadKey returns the key in root's key file, creating the file if it does
// not exist.
func loadKey(root *os.Root) ([32]byte, error) {
	for range 4 {
		b, err := ReadFile(root, KeyFile, 0o077)
		if err == nil {
			k, ok := parseKeyFile(b)
			if !ok {
				return k, fmt.Errorf("is malformed (%d bytes); remove it to start with a new key (every entry is then compiled again)", len(b))
			}
			return k, nil
		}
		if u, ok := err.(errUntrusted); ok {
			return [32]byte{}, fmt.Errorf("%w: it must be a regular file private to this user (mode 0600)", u)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return [32]byte{}, err
		}
		if err := createKey(root); err != nil {
			return [32]byte{}, fmt.Errorf("cannot create it: %w", err)
		}
		// Read it back: another process may have created it first.
	}
	return [32]byte{}, errors.New("keeps changing")
}

// createKey creates the key file unless it exists: a temporary file, then
// a hard link, which fails if another process linked its key first. Where
// hard links are not supported, a rename (a key created an instant earlier
// by another process is then replaced: the two processes then do not load
// each other's entries until they restart, but load nothing foreign).
func createKey(root *os.Root) error {
	var k [32]byte
	rand.Read(k[:])
	tmp := ".tmp-key-" + rand.Text()
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(appendKeyFile(nil, &k))
	err = errors.Join(werr, f.Chmod(0o600), f.Sync(), f.Close())
	if err == nil {
		err = root.Link(tmp, KeyFile)
		if err != nil && !errors.Is(err, fs.ErrExist) {
			if err = root.Rename(tmp, KeyFile); err == nil {
				return nil
			}
		}
	}
	_ = root.Remove(tmp)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	return err
}

// Path returns the directory as given to Open.
func (d *Dir) Path() string { return d.path }

// Close closes the directory. Load then misses and Store fails.
func (d *Dir) Close() error { return d.root.Close() }

// Load returns the entry for key in format f, if its file is there and
// trusted and verifies (see the package documentation).
func (d *Dir) Load(f Format, key [32]byte) (Entry, bool) {
	b, err := ReadFile(d.root, f.FileName(key), 0o022)
	if err != nil {
		return Entry{}, false
	}
	e, ok := f.parseEntry(b, &d.mac)
	if !ok || e.Key != key {
		return Entry{}, false
	}
	return e, true
}

// Store writes e in format f, replacing any file of that name: a
// temporary file of mode 0600, then a rename.
func (d *Dir) Store(f Format, e Entry) error {
	hdr, err := f.appendHeader(nil, &d.mac, &e)
	if err != nil {
		return err
	}
	tmp := ".tmp-" + rand.Text()
	w, err := d.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = w.Write(hdr)
	if err == nil {
		_, err = w.Write(e.Payload)
	}
	if err = errors.Join(err, w.Close()); err == nil {
		err = d.root.Rename(tmp, f.FileName(e.Key))
	}
	if err != nil {
		_ = d.root.Remove(tmp)
	}
	return err
}

// MkdirTemp creates a new private directory (mode 0700) in d, its name
// starting with prefix, and returns it opened and its path.
func (d *Dir) MkdirTemp(prefix string) (*os.Root, string, error) {
	name := prefix + rand.Text()
	if err := d.root.Mkdir(name, 0o700); err != nil {
		return nil, "", err
	}
	sub, err := d.root.OpenRoot(name)
	if err != nil {
		_ = d.root.Remove(name)
		return nil, "", err
	}
	return sub, filepath.Join(d.path, name), nil
}

// RemoveAll removes name, a file or directory in d, and what it contains.
func (d *Dir) RemoveAll(name string) error { return d.root.RemoveAll(name) }
