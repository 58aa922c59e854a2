package enginetest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGuestsUpToDate checks that every committed .wasm test guest is what
// wat2wasm makes of its .wat source today.
func TestGuestsUpToDate(t *testing.T) {
	wat2wasm, err := exec.LookPath("wat2wasm")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("wat2wasm (Debian package wabt) is not installed")
		}
		t.Skip("wat2wasm not installed (apt-get install wabt)")
	}
	var sources []string
	for _, dir := range []string{"testdata", "../../bench/testdata", "../../abi/testdata", "../../abi/promcollector/testdata"} {
		m, _ := filepath.Glob(filepath.Join(dir, "*.wat"))
		sources = append(sources, m...)
	}
	if len(sources) < 5 {
		t.Fatalf("found only %d .wat sources", len(sources))
	}
	tmp := t.TempDir()
	for _, src := range sources {
		committed := src[:len(src)-len(".wat")] + ".wasm"
		out := filepath.Join(tmp, filepath.Base(committed))
		if b, err := exec.Command(wat2wasm, src, "-o", out).CombinedOutput(); err != nil {
			t.Errorf("wat2wasm %s: %v\n%s", src, err, b)
			continue
		}
		want, _ := os.ReadFile(out)
		got, err := os.ReadFile(committed)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run wat2wasm %s -o %s", committed, src, committed)
		}
	}
}
