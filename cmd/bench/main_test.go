package main

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRunUsage(t *testing.T) {
	for _, args := range [][]string{{"-nosuchflag"}, {"extra"}, {"-runtime", "v8"}, {"-count", "0"}, {"compare", "one.txt"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 {
			t.Errorf("run(%q) = %d, want 2; stderr:\n%s", args, code, errb.String())
		}
	}
}

func TestDefaultName(t *testing.T) {
	name := defaultName(time.Date(2026, 11, 21, 23, 0, 0, 0, time.UTC), nil)
	if !strings.HasSuffix(name, "-2026-11-21.txt") || strings.ContainsAny(name, " /()") {
		t.Errorf("defaultName = %q", name)
	}
	if emu := emulationFor("arm64"); emu != nil {
		name := defaultName(time.Date(2026, 11, 21, 23, 0, 0, 0, time.UTC), emu)
		if !strings.HasPrefix(name, "linux-arm64-qemu-on-") {
			t.Errorf("emulated defaultName = %q", name)
		}
	}
	if emulationFor("mips") != nil {
		t.Error("emulationFor(mips) is not nil")
	}
}

const sampleA = `goos: linux
goarch: amd64
cpu-brand: A CPU
cpu-features: AVX,AVX2,SSE4
runtime: wazero
runtime-version: v1.12.0
BenchmarkCall/runtime=wazero/impl=anywasm/op=empty-2   1000   10.0 ns/op
BenchmarkRequest/plugin=headers/mode=serial-2   1000   10.0 ns/op
runtime: wasmtime
runtime-version: 44.0.0
BenchmarkCall/runtime=wasmtime/impl=anywasm/op=empty-2   1000   30.0 ns/op
BenchmarkCompute/runtime=wasmtime/plugin=compute/work=json/body=64KiB-2   100   8000000 ns/op   8.19 MB/s
`

const sampleB = `goos: linux
goarch: arm64
cpu-brand: B CPU
cpu-features: ASIMD,ATOMICS,SSE4
runtime: wazero
runtime-version: v1.12.0
BenchmarkCall/runtime=wazero/impl=anywasm/op=empty-2   1000   20.0 ns/op
`

func TestMedians(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.txt")
	if err := os.WriteFile(path, []byte(sampleA), 0o644); err != nil {
		t.Fatal(err)
	}
	med, rts, err := medians(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(rts, ",") != "wazero,wasmtime" {
		t.Errorf("runtimes %q", rts)
	}
	if got := med["Call/impl=anywasm/op=empty"]["wasmtime"]; math.Abs(got-30) > 1e-6 {
		t.Errorf("median = %v, want 30 (have %v)", got, med)
	}
	// The Compute family is a headline of its own.
	var found bool
	for _, h := range headlines {
		if m := med[h.name]; m != nil {
			found = found || strings.HasPrefix(h.name, "Compute/") && math.Abs(m["wasmtime"]-8e6) < 1e-3
		}
	}
	if !found {
		t.Errorf("no Compute headline among the medians %v", med)
	}
	dir := t.TempDir()
	if err := chart(path, filepath.Join(dir, "c.svg"), filepath.Join(dir, "c.png")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"c.svg", "c.png"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestCompare runs go tool benchstat, which the first time builds it.
func TestCompare(t *testing.T) {
	if testing.Short() {
		t.Skip("builds benchstat")
	}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.txt"), filepath.Join(dir, "b.txt")
	if err := os.WriteFile(a, []byte(sampleA), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, []byte(sampleB), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"compare", a, b}, &out, &errb); code != 0 {
		t.Fatalf("compare = %d; stderr:\n%s", code, errb.String())
	}
	for _, want := range []string{"only A has: AVX AVX2\n", "only B has: ASIMD ATOMICS\n", "* goarch", "Call/runtime=wazero/impl=anywasm/op=empty"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("compare output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestRun builds both test binaries and runs one tiny benchmark per runtime
// once.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the bench test binaries")
	}
	out := filepath.Join(t.TempDir(), "r.txt")
	var stdout, stderr bytes.Buffer
	code := run([]string{"-short", "-bench", "^BenchmarkCall$/runtime=/impl=anywasm/op=empty$", "-count", "1", "-o", out}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("run = %d; stderr:\n%s", code, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cpu-features: ", "runtime: wazero\n", "runtime: wasmtime\n", "runtime: wasmer\n", "BenchmarkCall/runtime=wasmer/impl=anywasm/op=empty"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("results lack %q:\n%s", want, b)
		}
	}
	if !strings.Contains(stdout.String(), "wasmtime") || !strings.Contains(stderr.String(), "round 1/1") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}
	for _, ext := range []string{".svg", ".png"} {
		if _, err := os.Stat(strings.TrimSuffix(out, ".txt") + ext); err != nil {
			t.Error(err)
		}
	}
}
