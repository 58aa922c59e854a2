// Command bench runs anywasm's benchmarks (package bench) on every runtime,
// each cgo runtime in its own test binary, interleaved, and writes the
// results in the Go benchmark format, a benchstat comparison with runtimes
// as columns, and the headline figures as a chart.
//
//	go run ./cmd/bench                       # main job: -count 10, about 10 minutes on 2 cores
//	go run ./cmd/bench -full                 # every benchmark at the default -benchtime
//	go run ./cmd/bench -short                # each benchmark once (a smoke run, as CI does)
//	go run ./cmd/bench -runtime wazero,wasmtime -bench 'Request' -count 5
//	go run ./cmd/bench -tiers -bench 'Compile|Request'   # every compiler tier a column (wazero:interpreter, ...)
//	go run ./cmd/bench compare A.txt B.txt   # two machines side by side, and their CPU features
//	go run ./cmd/bench chart A.txt           # redraw A.svg and A.png from a results file
//	go run ./cmd/bench load                  # requests/s, p50, p99 through anywasm-proxy (load.go)
//	go run ./cmd/bench soak                  # leak check: 1M requests per runtime through anywasm-proxy (soak.go)
//
// Output goes to results/<goos>-<goarch>-<cpu>-<date>.txt (and .svg, .png
// beside it) unless -o names the .txt; a -short run without -o writes to a
// new temporary directory instead. Progress, with an estimate of the time
// left, goes to stderr.
//
// Inside a checkout of anywasm it builds the checkout's code; elsewhere
// (go run github.com/anywasm/anywasm/cmd/bench@VERSION, or a binary from go
// install) it runs the benchmarks of its own version from the module
// cache, through a temporary module (source.go).
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/cpuid/v2"

	"github.com/anywasm/anywasm/internal/version"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// binaries are the test binaries by build tags; wasmtime and wasmer never
// share one.
var binaries = []struct {
	tags     string
	runtimes []string
}{
	{"", []string{"wazero", "wasmtime"}},
	{"anywasm_wasmer", []string{"wasmer"}},
}

// tiers are the compiler tiers of each runtime, the default first, as
// engine.Lookup lists them where the libraries have them (a test checks
// the two agree). A runtime with a tier ("wazero:interpreter") is a column
// of its own; on its default tier it is the runtime's plain name.
var tiers = map[string][]string{
	"wazero":   {"compiler", "interpreter"},
	"wasmtime": {"cranelift", "pulley"},
	"wasmer":   {"cranelift", "singlepass"},
}

// columnName returns the name measured for r ("wasmtime:cranelift" is
// "wasmtime"), or an error for a runtime or tier cmd/bench does not know.
func columnName(r string) (string, error) {
	base, tier, hasTier := strings.Cut(r, ":")
	ts, ok := tiers[base]
	if !ok {
		return "", fmt.Errorf("unknown runtime %q (have wazero, wasmtime, wasmer)", r)
	}
	switch {
	case !hasTier || tier == ts[0]:
		return base, nil
	case !slices.Contains(ts, tier):
		return "", fmt.Errorf("runtime %s has no tier %q (its tiers: %s)", base, tier, strings.Join(ts, ", "))
	}
	return r, nil
}

// baseOf is the runtime of a column name.
func baseOf(r string) string {
	base, _, _ := strings.Cut(r, ":")
	return base
}

// profiles: the main job and the full run.
const (
	mainBench     = "."
	mainBenchtime = "100ms"
	fullBenchtime = "1s"
)

// benchstatArgs put runtimes in columns; runtime and runtime-version are
// per process, so they are ignored as table keys.
var benchstatArgs = []string{"-col", "/runtime", "-ignore", "runtime,runtime-version"}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "compare" {
		return compare(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "load" {
		return load(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "soak" {
		return soak(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "chart" {
		return chartCmd(args[1:], stderr)
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runtimes := fs.String("runtime", "wazero,wasmtime,wasmer", "comma-separated runtimes to measure, each a column; a tier after a colon (wazero:interpreter) is a column of its own")
	allTiers := fs.Bool("tiers", false, "also measure every other compiler tier of each runtime (wazero:interpreter, wasmtime:pulley, wasmer:singlepass), each a column")
	bench := fs.String("bench", mainBench, "benchmark filter (go test -bench)")
	count := fs.Int("count", 10, "runs of each benchmark, interleaved across runtimes")
	short := fs.Bool("short", false, "smoke run: each benchmark once (-benchtime 1x), -count 1 unless set; written to a temporary directory unless -o is set")
	full := fs.Bool("full", false, "full profile: -benchtime "+fullBenchtime+" instead of "+mainBenchtime)
	benchtime := fs.String("benchtime", "", "override the profile's -benchtime")
	out := fs.String("o", "", "results file (default results/<goos>-<goarch>-<cpu>-<date>.txt)")
	noChart := fs.Bool("nochart", false, "do not draw the chart")
	showVersion := fs.Bool("version", false, "print the build's module version and Go version and exit")
	arch := fs.String("arch", runtime.GOARCH, "GOARCH to measure; another than the host's is cross-built and run under qemu-user (linux/arm64 on amd64: Debian's gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user-static), and the results say emulated: true (correctness only, never performance)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: bench [flags]\n       bench compare A.txt B.txt\n       bench chart A.txt...\n       bench load [flags]\n       bench soak [flags]\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		version.Print(stdout, "bench")
		return 0
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	bt := mainBenchtime
	switch {
	case *short:
		bt = "1x"
		countSet := false
		fs.Visit(func(f *flag.Flag) { countSet = countSet || f.Name == "count" })
		if !countSet {
			*count = 1
		}
	case *full:
		bt = fullBenchtime
	}
	if *benchtime != "" {
		bt = *benchtime
	}
	if *count < 1 {
		fmt.Fprintln(stderr, "bench: -count must be at least 1")
		return 2
	}
	var want []string
	for _, r := range strings.Split(*runtimes, ",") {
		c, err := columnName(r)
		if err != nil {
			fmt.Fprintf(stderr, "bench: %v\n", err)
			return 2
		}
		if !slices.Contains(want, c) {
			want = append(want, c)
		}
		if *allTiers && c == baseOf(c) {
			for _, t := range tiers[c][1:] {
				if !slices.Contains(want, c+":"+t) {
					want = append(want, c+":"+t)
				}
			}
		}
	}
	var emu *emulation
	if *arch != runtime.GOARCH {
		if emu = emulationFor(*arch); emu == nil {
			fmt.Fprintf(stderr, "bench: cannot emulate GOARCH=%s on %s/%s (have: arm64 on linux/amd64)\n", *arch, runtime.GOOS, runtime.GOARCH)
			return 2
		}
		if slices.ContainsFunc(want, func(r string) bool { return baseOf(r) == "wasmer" }) {
			fmt.Fprintln(stderr, "bench: under emulation wasmer is left out (wasmer-go ships Wasmer 1.0.2 for arm64: see engine/wasmer/doc.go)")
			want = slices.DeleteFunc(want, func(r string) bool { return baseOf(r) == "wasmer" })
		}
	}
	src, err := locate(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	defer src.cleanup()
	if *out == "" {
		o, err := defaultOut(*short, defaultName(time.Now(), emu))
		if err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		*out = o
	}
	if err := measure(stderr, src, want, *bench, bt, *count, *out, emu); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	fmt.Fprintf(stderr, "bench: wrote %s\n", *out)
	if err := benchstat(stdout, stderr, src, *out); err != nil {
		fmt.Fprintln(stderr, "bench: benchstat:", err)
		return 1
	}
	if !*noChart {
		base := strings.TrimSuffix(*out, ".txt")
		switch err := chart(*out, base+".svg", base+".png"); {
		case errors.Is(err, errNoHeadlines):
			fmt.Fprintln(stderr, "bench: no chart:", err)
		case err != nil:
			fmt.Fprintln(stderr, "bench: chart:", err)
			return 1
		default:
			fmt.Fprintf(stderr, "bench: wrote %s.svg and %s.png\n", base, base)
		}
	}
	return 0
}

// defaultOut is where a run writes without -o: results/name, or for a
// -short run (a smoke test, not a measurement to keep) name in a new
// temporary directory.
func defaultOut(short bool, name string) (string, error) {
	if !short {
		return filepath.Join("results", name), nil
	}
	dir, err := os.MkdirTemp("", "anywasm-bench-short-")
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, name), nil
}

// chartCmd redraws the charts of results files: A.svg and A.png beside
// A.txt.
func chartCmd(args []string, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: bench chart A.txt...")
		return 2
	}
	for _, f := range args {
		base := strings.TrimSuffix(f, ".txt")
		if err := chart(f, base+".svg", base+".png"); err != nil {
			fmt.Fprintln(stderr, "bench: chart:", err)
			return 1
		}
		fmt.Fprintf(stderr, "bench: wrote %s.svg and %s.png\n", base, base)
	}
	return 0
}

// emulation runs test binaries of another GOARCH under qemu-user.
type emulation struct {
	goarch string
	env    []string // for go test -c
	exec   []string // prefix of the command line
}

func emulationFor(goarch string) *emulation {
	if goarch != "arm64" || runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		return nil
	}
	return &emulation{
		goarch: "arm64",
		env:    []string{"GOARCH=arm64", "CGO_ENABLED=1", "CC=aarch64-linux-gnu-gcc"},
		exec:   []string{"qemu-aarch64-static", "-L", "/usr/aarch64-linux-gnu"},
	}
}

// defaultName is <goos>-<goarch>-<cpu>-<date>.txt; emulated runs are named
// <goos>-<goarch>-qemu-on-<host cpu>-<date>.txt.
func defaultName(now time.Time, emu *emulation) string {
	cpu := strings.ToLower(strings.TrimSpace(cpuid.CPU.BrandName))
	cpu = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, cpu)
	for strings.Contains(cpu, "--") {
		cpu = strings.ReplaceAll(cpu, "--", "-")
	}
	cpu = strings.Trim(cpu, "-")
	if cpu == "" {
		cpu = "unknown"
	}
	arch := runtime.GOARCH
	if emu != nil {
		arch, cpu = emu.goarch, "qemu-on-"+cpu
	}
	return fmt.Sprintf("%s-%s-%s-%s.txt", runtime.GOOS, arch, cpu, now.UTC().Format("2006-01-02"))
}

// measure builds the test binaries the runtimes need, runs them count
// times, rotating the runtimes' order each round, and writes the results.
func measure(stderr io.Writer, src *source, want []string, bench, benchtime string, count int, out string, emu *emulation) error {
	tmp, err := os.MkdirTemp("", "anywasm-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	binOf := map[string]string{}
	for i, b := range binaries {
		var rts []string
		for _, r := range want {
			if slices.Contains(b.runtimes, baseOf(r)) {
				rts = append(rts, r)
			}
		}
		if len(rts) == 0 {
			continue
		}
		bin := filepath.Join(tmp, fmt.Sprintf("bench%d.test", i))
		args := []string{"test", "-c", "-o", bin}
		if b.tags != "" {
			args = append(args, "-tags", b.tags)
		}
		args = append(args, src.pkg("bench"))
		env := src.env
		if emu != nil {
			env = append(append([]string(nil), env...), emu.env...)
		}
		if err := goCmd(stderr, src.root, env, args...); err != nil {
			return fmt.Errorf("building the %s test binary: %w", strings.Join(rts, "+"), err)
		}
		for _, r := range rts {
			binOf[r] = bin
		}
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(f, "bench-profile: benchtime=%s,count=%d\n", benchtime, count)
	fmt.Fprintf(f, "date: %s\n", time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(f, "emulated: %t\n", emu != nil)
	if emu != nil {
		fmt.Fprintf(f, "emulator: %s\n", emu.exec[0])
	}
	prog := newProgress(count * len(want))
	for round := range count {
		for i := range want {
			r := want[(i+round)%len(want)] // rotate: no runtime always goes first
			fmt.Fprintf(stderr, "bench: %s\n", prog.line(round*len(want)+i, fmt.Sprintf("round %d/%d: %s", round+1, count, r)))
			var buf bytes.Buffer
			argv := []string{binOf[r], "-test.run", "^$", "-test.bench", bench, "-test.benchtime", benchtime,
				"-test.count", "1", "-test.benchmem", "-runtime", r}
			if emu != nil {
				argv = append(append([]string(nil), emu.exec...), argv...)
			}
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Dir = src.benchDir
			if env := src.benchEnv(); env != nil {
				cmd.Env = append(os.Environ(), env...)
			}
			cmd.Stdout, cmd.Stderr = &buf, stderr
			err := cmd.Run()
			if _, werr := f.Write(buf.Bytes()); werr != nil {
				return werr
			}
			if err != nil {
				return fmt.Errorf("%s round %d: %w\n%s", r, round+1, err, tail(buf.String(), 20))
			}
		}
	}
	return f.Close()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// benchstat prints the comparison with runtimes as columns, through the
// benchstat the module pins as a tool (go tool benchstat).
func benchstat(stdout, stderr io.Writer, src *source, files ...string) error {
	return benchstatWith(stdout, stderr, src, benchstatArgs, files...)
}

// benchstatWith runs the benchstat of the module (a checkout's tool, or
// the temporary module's) on files.
func benchstatWith(stdout, stderr io.Writer, src *source, args []string, files ...string) error {
	abs := make([]string, len(files))
	for i, f := range files {
		var err error
		if abs[i], err = filepath.Abs(f); err != nil {
			return err
		}
	}
	cmd := exec.Command("go", append(append([]string{"tool", "benchstat"}, args...), abs...)...)
	cmd.Dir = src.root
	cmd.Env = append(os.Environ(), src.env...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	return cmd.Run()
}
