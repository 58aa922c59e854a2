package bench_test

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/cpuid/v2"

	"github.com/anywasm/anywasm/engine"
)

// runtimeFlag restricts the benchmarks to one runtime, on one tier
// ("wazero:interpreter"), so that a process measures one runtime and its
// configuration lines can name it (cmd/bench runs one process per
// runtime and tier). Empty means every runtime compiled in.
var runtimeFlag = flag.String("runtime", "", "benchmark only this runtime, a tier after a colon (default: every runtime compiled in)")

// benchRuntimes returns the runtimes the benchmarks measure: -runtime, or
// every runtime on its default tier.
func benchRuntimes() []string {
	if *runtimeFlag == "" {
		return engine.Runtimes()
	}
	return []string{*runtimeFlag}
}

// benchTiers returns the runtimes the families that compare tiers measure
// (compile, instantiate, calls, request): -runtime, or every tier of every
// runtime, named as engine.CanonicalName names them ("wazero" for the
// default tier, "wazero:interpreter").
func benchTiers() []string {
	if *runtimeFlag != "" {
		return []string{*runtimeFlag}
	}
	var names []string
	for _, rt := range engine.Runtimes() {
		info, _ := engine.Lookup(rt)
		names = append(names, rt)
		for _, t := range info.Tiers[min(1, len(info.Tiers)):] {
			names = append(names, rt+":"+t)
		}
	}
	return names
}

// TestMain prints the configuration lines of the Go benchmark format once
// per test binary, before the first benchmark line, when benchmarks run.
func TestMain(m *testing.M) {
	flag.Parse()
	if *runtimeFlag != "" {
		if _, err := engine.Lookup(*runtimeFlag); err != nil {
			fmt.Fprintf(os.Stderr, "bench: -runtime %q: %v (have %s; wasmer needs -tags anywasm_wasmer)\n",
				*runtimeFlag, err, strings.Join(engine.Runtimes(), ", "))
			os.Exit(2)
		}
	}
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		writeConfig(os.Stdout)
	}
	os.Exit(m.Run())
}

// writeConfig writes the machine and the runtimes as configuration lines.
// go test adds goos, goarch, pkg and cpu itself. Module versions cannot be
// read from a test binary's build info, so runtime versions come from the
// backends (engine.Lookup).
func writeConfig(w io.Writer) {
	c := cpuid.CPU
	line := func(k string, v any) { fmt.Fprintf(w, "%s: %v\n", k, v) }
	line("cpu-vendor", c.VendorString)
	line("cpu-brand", strings.TrimSpace(c.BrandName))
	switch runtime.GOARCH {
	case "amd64":
		line("cpu-x64level", c.X64Level())
	case "arm64":
		major, minor := c.ARM64Level()
		line("cpu-arm64level", fmt.Sprintf("v%d.%d", major, minor))
	}
	features := c.FeatureSet()
	slices.Sort(features)
	line("cpu-features", strings.Join(features, ","))
	line("cores-physical", c.PhysicalCores)
	line("cores-logical", runtime.NumCPU())
	line("cache-l1d", cacheSize(c.Cache.L1D))
	line("cache-l1i", cacheSize(c.Cache.L1I))
	line("cache-l2", cacheSize(c.Cache.L2))
	line("cache-l3", cacheSize(c.Cache.L3))
	hv := "none"
	if c.VM() {
		hv = c.HypervisorVendorString
		if hv == "" {
			hv = "unknown"
		}
	}
	line("hypervisor", hv)
	line("go-version", runtime.Version())
	line("gomaxprocs", runtime.GOMAXPROCS(0))
	if *runtimeFlag != "" {
		// One runtime per process: the same keys in every process, so that
		// benchstat -col /runtime -ignore runtime,runtime-version compares
		// processes in one table.
		info, _ := engine.Lookup(*runtimeFlag)
		line("runtime", *runtimeFlag)
		line("runtime-version", strings.ReplaceAll(info.Version, " ", "_"))
		return
	}
	names := engine.Runtimes()
	line("runtimes", strings.Join(names, ","))
	for _, name := range names {
		if info, err := engine.Lookup(name); err == nil {
			line("runtime-version-"+name, strings.ReplaceAll(info.Version, " ", "_"))
		}
	}
}

func cacheSize(n int) string {
	switch {
	case n <= 0:
		return "unknown"
	case n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}
