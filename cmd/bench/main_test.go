package main

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
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

// TestVersion: -version on the command and its subcommands with flags
// prints the build's version line and exits 0.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"-version"}, {"load", "-version"}, {"soak", "-version"}} {
		var out, errb bytes.Buffer
		code := run(args, &out, &errb)
		s := out.String()
		if code != 0 || !strings.HasPrefix(s, "bench ") || !strings.Contains(s, " "+runtime.Version()+" ") || strings.Count(s, "\n") != 1 || errb.Len() != 0 {
			t.Errorf("run(%q) = %d, stdout %q, stderr %q", args, code, s, errb.String())
		}
	}
}

// TestDefaultOut: a -short run without -o writes to a new temporary
// directory, never to results/.
func TestDefaultOut(t *testing.T) {
	if got, err := defaultOut(false, "x.txt"); err != nil || got != filepath.Join("results", "x.txt") {
		t.Errorf("defaultOut(false) = %q, %v", got, err)
	}
	got, err := defaultOut(true, "x.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(filepath.Dir(got))
	if filepath.Base(got) != "x.txt" || !strings.HasPrefix(got, os.TempDir()) || strings.Contains(got, "results") {
		t.Errorf("defaultOut(true) = %q", got)
	}
	if st, err := os.Stat(filepath.Dir(got)); err != nil || !st.IsDir() {
		t.Errorf("defaultOut(true): %v", err)
	}
}

// TestChartCommand redraws a results file's charts beside it.
func TestChartCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.txt")
	if err := os.WriteFile(path, []byte(sampleA), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"chart", path}, &out, &errb); code != 0 || !strings.Contains(errb.String(), "wrote ") {
		t.Fatalf("chart = %d; stderr:\n%s", code, errb.String())
	}
	for _, ext := range []string{".svg", ".png"} {
		if _, err := os.Stat(strings.TrimSuffix(path, ".txt") + ext); err != nil {
			t.Error(err)
		}
	}
	if code := run([]string{"chart"}, &out, &errb); code != 2 {
		t.Errorf("chart without files = %d", code)
	}
	if code := run([]string{"chart", filepath.Join(t.TempDir(), "missing.txt")}, &out, &errb); code != 1 {
		t.Errorf("chart of a missing file = %d", code)
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
	res, err := readResults(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.runtimes, ",") != "wazero,wasmtime" {
		t.Errorf("runtimes %q", res.runtimes)
	}
	if got := res.stats["Call/impl=anywasm/op=empty"]["wasmtime"]; math.Abs(got.center-30) > 1e-6 || got.n != 1 {
		t.Errorf("median = %v, want 30 of 1 run (have %v)", got, res.stats)
	}
	if res.versions["wasmtime"] != "44.0.0" || res.cfg["cpu-brand"] != "A CPU" {
		t.Errorf("versions %v, config %v", res.versions, res.cfg)
	}
	// The Compute family is a headline of its own.
	var found bool
	for _, h := range headlines {
		if m := res.stats[h.name]; m != nil {
			found = found || strings.HasPrefix(h.name, "Compute/") && math.Abs(m["wasmtime"].center-8e6) < 1e-3
		}
	}
	if !found {
		t.Errorf("no Compute headline among the medians %v", res.stats)
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
	// -short without -o: a temporary directory, said on stderr; nothing
	// in results/ (relative to the working directory, this package's).
	before := results(t)
	var stdout, stderr bytes.Buffer
	code := run([]string{"-short", "-bench", "^BenchmarkCall$/runtime=/impl=anywasm/op=empty$", "-count", "1"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("run = %d; stderr:\n%s", code, stderr.String())
	}
	m := regexp.MustCompile(`bench: wrote (\S+\.txt)\n`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("stderr does not say where it wrote:\n%s", stderr.String())
	}
	out := m[1]
	defer os.RemoveAll(filepath.Dir(out))
	if !strings.HasPrefix(out, os.TempDir()) {
		t.Errorf("-short wrote %s, not in a temporary directory", out)
	}
	if after := results(t); after != before {
		t.Errorf("-short changed results/: %q, then %q", before, after)
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
	if !strings.Contains(stdout.String(), "wasmtime") || !strings.Contains(stderr.String(), "run 1/3: round 1/1: ") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}
	for _, ext := range []string{".svg", ".png"} {
		if _, err := os.Stat(strings.TrimSuffix(out, ".txt") + ext); err != nil {
			t.Error(err)
		}
	}
}

// results lists results/ from the working directory and from the module
// root.
func results(t *testing.T) string {
	t.Helper()
	var names []string
	for _, dir := range []string{"results", filepath.Join("..", "..", "results")} {
		entries, err := os.ReadDir(dir)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, e := range entries {
			names = append(names, filepath.Join(dir, e.Name()))
		}
	}
	return strings.Join(names, " ")
}
