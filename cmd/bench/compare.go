package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"golang.org/x/perf/benchfmt"
)

// machineKeys are configuration keys that describe a machine or a process,
// not a workload: compare ignores them so that two machines' figures share
// one table.
var machineKeys = []string{"goos", "goarch", "cpu", "hypervisor", "go-version", "gomaxprocs", "emulated",
	"bench-profile", "runtime-version", "runtimes"}

func isMachineKey(k string) bool {
	return slices.Contains(machineKeys, k) || strings.HasPrefix(k, "cpu-") || strings.HasPrefix(k, "cores-") ||
		strings.HasPrefix(k, "cache-") || strings.HasPrefix(k, "runtime-version-")
}

// readConfig returns the first value of each configuration key in a
// results file, and the keys in order of appearance.
func readConfig(path string) (map[string]string, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	cfg := map[string]string{}
	var keys []string
	r := benchfmt.NewReader(f, path)
	for r.Scan() {
		res, ok := r.Result().(*benchfmt.Result)
		if !ok {
			continue
		}
		for _, c := range res.Config {
			if _, seen := cfg[c.Key]; !seen {
				cfg[c.Key] = string(c.Value)
				keys = append(keys, c.Key)
			}
		}
	}
	return cfg, keys, r.Err()
}

// compare shows two results files side by side: the machines, the CPU
// features one has and the other lacks, and benchstat with a column per
// file.
func compare(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 {
		fmt.Fprintln(stderr, "usage: bench compare A.txt B.txt")
		return 2
	}
	a, b := args[0], args[1]
	ca, ka, err := readConfig(a)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	cb, kb, err := readConfig(b)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	keys := ka
	for _, k := range kb {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	fmt.Fprintf(stdout, "A: %s\nB: %s\n\n", a, b)
	ignore := []string{}
	for _, k := range keys {
		if !isMachineKey(k) {
			continue
		}
		ignore = append(ignore, k)
		if k == "cpu-features" {
			continue
		}
		mark := " "
		if ca[k] != cb[k] {
			mark = "*"
		}
		fmt.Fprintf(stdout, "%s %-22s A: %-28s B: %s\n", mark, k, orDash(ca[k]), orDash(cb[k]))
	}
	fa, fb := strings.Split(ca["cpu-features"], ","), strings.Split(cb["cpu-features"], ",")
	fmt.Fprintf(stdout, "\nCPU features only A has: %s\n", orDash(strings.Join(minus(fa, fb), " ")))
	fmt.Fprintf(stdout, "CPU features only B has: %s\n\n", orDash(strings.Join(minus(fb, fa), " ")))
	src, err := locate(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	defer src.cleanup()
	if err := benchstatWith(stdout, stderr, src, []string{"-ignore", strings.Join(ignore, ",")}, a, b); err != nil {
		fmt.Fprintln(stderr, "bench: benchstat:", err)
		return 1
	}
	return 0
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if x != "" && !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
