package enginetest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestGuestsUpToDate checks that every committed .wasm test guest is what
// wat2wasm makes of its .wat source today.
//
// A source is built into the .wasm of the same name, or, if it has lines
// ";; wat2wasm: <flags> -o <name>.wasm", once per line with those flags (e.g.
// --debug-names for a name section) into the file each names, beside it.
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
		builds, err := guestBuilds(src)
		if err != nil {
			t.Error(err)
			continue
		}
		for _, args := range builds {
			o := slices.Index(args, "-o")
			committed := filepath.Join(filepath.Dir(src), args[o+1])
			out := filepath.Join(tmp, filepath.Base(committed))
			args = slices.Concat([]string{src}, args[:o], []string{"-o", out}, args[o+2:])
			if b, err := exec.Command(wat2wasm, args...).CombinedOutput(); err != nil {
				t.Errorf("wat2wasm %s: %v\n%s", strings.Join(args, " "), err, b)
				continue
			}
			want, _ := os.ReadFile(out)
			got, err := os.ReadFile(committed)
			if err != nil || !bytes.Equal(got, want) {
				args[len(args)-1] = committed
				t.Errorf("%s is stale: run wat2wasm %s", committed, strings.Join(args, " "))
			}
		}
	}
}

// guestBuilds returns the wat2wasm arguments (after the source) of each
// .wasm built from the .wat source src, each with "-o <file name>".
func guestBuilds(src string) ([][]string, error) {
	f, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var builds [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), ";; wat2wasm:")
		if !ok {
			continue
		}
		args := strings.Fields(line)
		if o := slices.Index(args, "-o"); o < 0 || o+1 >= len(args) || filepath.Base(args[o+1]) != args[o+1] {
			return nil, fmt.Errorf("%s: build line %q: want \";; wat2wasm: <flags> -o <name>.wasm\"", src, line)
		}
		builds = append(builds, args)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if builds == nil {
		builds = [][]string{{"-o", strings.TrimSuffix(filepath.Base(src), ".wat") + ".wasm"}}
	}
	return builds, nil
}
