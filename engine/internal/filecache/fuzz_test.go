package filecache

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The parsers of the cache files must never panic and must accept exactly
// what the writers produce. Each target runs the committed corpus in
// testdata/fuzz/<target> on every go test; TestSeedCorpus checks that its
// valid-* files are accepted and the others refused (go test -run
// SeedCorpus -update-corpus ./engine/internal/filecache rewrites them).

var fuzzMAC = [32]byte{'a', 'n', 'y', 'w', 'a', 's', 'm', '-', 'f', 'u', 'z', 'z'}

func FuzzWasmtimeEntry(f *testing.F) { fuzzEntry(f, Wasmtime) }
func FuzzWasmerEntry(f *testing.F)   { fuzzEntry(f, Wasmer) }
func FuzzWazeroEntry(f *testing.F)   { fuzzEntry(f, Wazero) }

func fuzzEntry(f *testing.F, fm Format) {
	f.Fuzz(func(t *testing.T, b []byte) {
		checkEntry(t, fm, b)
		// The same bytes with the SHA-256 and HMAC that their header and
		// payload would have, so that the checks after the HMAC are reached.
		if fixed, ok := reseal(fm, b, &fuzzMAC); ok {
			checkEntry(t, fm, fixed)
		}
	})
}

// checkEntry checks that parseEntry accepts b only if the writer makes
// exactly b of what it returns.
func checkEntry(t *testing.T, fm Format, b []byte) {
	in := bytes.Clone(b)
	e, ok := fm.parseEntry(b, &fuzzMAC)
	if !bytes.Equal(in, b) {
		t.Fatal("parseEntry changed its input")
	}
	if !ok {
		return
	}
	hdr, err := fm.appendHeader(nil, &fuzzMAC, &e)
	if err != nil {
		t.Fatalf("accepted an entry the writer refuses: %v", err)
	}
	if out := append(hdr, e.Payload...); !bytes.Equal(out, b) {
		t.Fatalf("accepted %q, but the writer makes %q of it", b, out)
	}
	other := fuzzMAC
	other[31] ^= 1
	if _, ok := fm.parseEntry(b, &other); ok {
		t.Fatal("accepted under another key")
	}
}

// reseal returns b with the payload SHA-256 and the HMAC fields set to what
// b's other bytes imply, following the documented layout (not the parser),
// or false if b is too short to have them.
func reseal(fm Format, b []byte, mac *[32]byte) ([]byte, bool) {
	m := len(fm.Magic)
	if len(b) < m+33 {
		return nil, false
	}
	hdr := m + 33 + int(b[m+32]) + 8 + 32
	if len(b) < hdr+32 {
		return nil, false
	}
	out := bytes.Clone(b)
	sum := sha256.Sum256(out[hdr+32:])
	copy(out[hdr-32:hdr], sum[:])
	h := hmac.New(sha256.New, mac[:])
	h.Write(out[:hdr])
	copy(out[hdr:], h.Sum(nil))
	return out, true
}

func FuzzKeyFile(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		k, ok := parseKeyFile(b)
		if !ok {
			return
		}
		if k == [32]byte{} {
			t.Fatal("accepted an all-zero key")
		}
		if out := appendKeyFile(nil, &k); !bytes.Equal(out, b) {
			t.Fatalf("accepted %q, but the writer makes %q of it", b, out)
		}
	})
}

var updateCorpus = flag.Bool("update-corpus", false, "rewrite testdata/fuzz seed files")

// seed is a committed corpus file: valid ones must parse, others not.
type seed struct {
	name string
	b    []byte
}

func entrySeeds(t *testing.T, fm Format) []seed {
	entry := func(e Entry) []byte {
		hdr, err := fm.appendHeader(nil, &fuzzMAC, &e)
		if err != nil {
			t.Fatal(err)
		}
		return append(hdr, e.Payload...)
	}
	// raw builds a file with any field values, sealed as the writer would.
	raw := func(name string, length uint64, payload []byte) []byte {
		b := []byte(fm.Magic)
		b = append(b, make([]byte, 32)...)
		b = append(b, byte(len(name)))
		b = append(b, name...)
		b = binary.LittleEndian.AppendUint64(b, length)
		b = append(b, make([]byte, 32+32)...)
		b = append(b, payload...)
		out, _ := reseal(fm, b, &fuzzMAC)
		return out
	}
	elf := []byte("\x7fELF\x02\x01\x01\x00native code")
	key := sha256.Sum256([]byte("module A"))
	valid := entry(Entry{Key: key, Payload: elf})
	wrongMAC := bytes.Clone(valid)
	wrongMAC[len(fm.Magic)+33+8+32] ^= 0x80
	otherFormat := Wasmer
	if fm == Wasmer {
		otherFormat = Wasmtime
	}
	other, _ := otherFormat.appendHeader(nil, &fuzzMAC, &Entry{Key: key, Payload: elf})
	seeds := []seed{
		{"valid-elf", valid},
		{"valid-one-byte", entry(Entry{Key: [32]byte{0xff}, Payload: []byte{0}})},
		{"valid-named", entry(Entry{Key: key, Name: "wazero-v1.12.0-amd64-linux/" + strings.Repeat("ab", 32), Payload: elf})},
		{"valid-longest-name", entry(Entry{Key: key, Name: strings.Repeat("n", 255), Payload: elf})},
		{"empty", nil},
		{"magic-only", []byte(fm.Magic)},
		{"truncated-header", valid[:len(fm.Magic)+40]},
		{"truncated-payload", valid[:len(valid)-1]},
		{"trailing-byte", append(bytes.Clone(valid), 0)},
		{"wrong-mac", wrongMAC},
		{"other-format", append(other, elf...)},
		{"empty-payload", raw("", 0, nil)},
		{"length-too-large", raw("", 1<<63, elf)},
		{"length-too-small", raw("", uint64(len(elf)-1), elf)},
		{"name-dotdot", raw("../x", uint64(len(elf)), elf)},
		{"name-absolute", raw("/x", uint64(len(elf)), elf)},
		{"name-nul", raw("a\x00b", uint64(len(elf)), elf)},
		{"name-beyond-file", append([]byte(fm.Magic), append(make([]byte, 32), 255, 1, 2)...)},
	}
	return seeds
}

func keySeeds() []seed {
	k := [32]byte{1}
	valid := appendKeyFile(nil, &k)
	return []seed{
		{"valid", valid},
		{"valid-random", appendKeyFile(nil, &fuzzMAC)},
		{"empty", nil},
		{"all-zero", appendKeyFile(nil, &[32]byte{})},
		{"short", valid[:len(valid)-1]},
		{"long", append(bytes.Clone(valid), '\n')},
		{"wrong-magic", append([]byte("anywasm-cache-key-2\n"), k[:]...)},
	}
}

func TestSeedCorpus(t *testing.T) {
	targets := map[string]struct {
		seeds func() []seed
		parse func([]byte) bool
	}{
		"FuzzKeyFile": {keySeeds, func(b []byte) bool { _, ok := parseKeyFile(b); return ok }},
	}
	for name, fm := range map[string]Format{"FuzzWasmtimeEntry": Wasmtime, "FuzzWasmerEntry": Wasmer, "FuzzWazeroEntry": Wazero} {
		targets[name] = struct {
			seeds func() []seed
			parse func([]byte) bool
		}{func() []seed { return entrySeeds(t, fm) }, func(b []byte) bool { _, ok := fm.parseEntry(b, &fuzzMAC); return ok }}
	}
	for target, tc := range targets {
		dir := filepath.Join("testdata", "fuzz", target)
		if *updateCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, s := range tc.seeds() {
				body := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(s.b)))
				if err := os.WriteFile(filepath.Join(dir, s.name), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, s := range tc.seeds() {
			got, err := os.ReadFile(filepath.Join(dir, s.name))
			if err != nil {
				t.Errorf("%s: missing seed (go test -run SeedCorpus -update-corpus): %v", target, err)
				continue
			}
			want := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(s.b)))
			if string(got) != want {
				t.Errorf("%s/%s is stale (go test -run SeedCorpus -update-corpus)", target, s.name)
			}
			if ok := tc.parse(s.b); ok != strings.HasPrefix(s.name, "valid") {
				t.Errorf("%s/%s: parsed = %v", target, s.name, ok)
			}
		}
	}
}
