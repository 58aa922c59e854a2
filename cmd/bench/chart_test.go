package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// resultsText makes a results file: for each runtime, runs lines of
// every headline benchmark at a median of base[i] ns/op on the first
// runtime (varied by up to 2% between runs; the next runtimes 1.5, 2
// times slower), with iters iterations each.
func resultsText(header string, runtimes []string, base []float64, runs, iters int) string {
	var b strings.Builder
	b.WriteString(header)
	for k, rt := range runtimes {
		fmt.Fprintf(&b, "runtime: %s\nruntime-version: v1.%d\n", rt, len(rt))
		for r := range runs {
			for i, h := range headlines {
				first, rest, _ := strings.Cut(h.name, "/")
				v := base[i%len(base)] * (1 + 0.01*float64(r%5-2)) * (1 + float64(k)/2)
				fmt.Fprintf(&b, "Benchmark%s/runtime=%s/%s-2 \t%d\t%.4g ns/op\n", first, rt, rest, iters, v)
			}
		}
	}
	return b.String()
}

const chartHeader = "goos: linux\ngoarch: amd64\ncpu: Some CPU @ 2GHz\ncpu-brand: Some CPU Model 9000\ncores-logical: 8\ngo-version: go1.26.8\n"

func drawTest(t *testing.T, name, content string) (svg string, spec *chartSpec) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := planChart(path)
	if err != nil {
		t.Fatal(err)
	}
	base := strings.TrimSuffix(path, ".txt")
	if err := chart(path, base+".svg", base+".png"); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(base + ".png"); err != nil || st.Size() == 0 {
		t.Errorf("png: %v", err)
	}
	b, err := os.ReadFile(base + ".svg")
	if err != nil {
		t.Fatal(err)
	}
	return string(b), spec
}

// texts are the SVG's text elements, unescaped enough for the tests.
func texts(svg string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`(?s)<text[^>]*>(.*?)</text>`).FindAllStringSubmatch(svg, -1) {
		out = append(out, strings.NewReplacer("&gt;", ">", "&lt;", "<", "&amp;", "&", "&#39;", "'").Replace(m[1]))
	}
	return out
}

func hasText(svg, s string) bool {
	for _, t := range texts(svg) {
		if strings.Contains(t, s) {
			return true
		}
	}
	return false
}

// errorBars counts the paths stroked in the error bars' colour: three
// segments each (the caps and the bar).
func errorBars(svg string) int {
	n := 0
	for _, m := range regexp.MustCompile(`<path d="([^"]*)"[^>]*stroke:#333333`).FindAllStringSubmatch(svg, -1) {
		if strings.Count(m[1], "M") == 3 && strings.Count(m[1], "L") == 3 {
			n++
		}
	}
	return n
}

// TestChart: a run of 10 on three runtimes whose figures span decades: the
// values on every bar, an error bar on every bar, the machine, Go
// version and date in the title, a log axis said to be one, Okabe-Ito
// colours and no pure red or green, no watermark.
func TestChart(t *testing.T) {
	rts := []string{"wazero", "wasmtime", "wasmer"}
	base := []float64{17.9, 33, 718, 12300, 190e3, 488e6, 22e6, 7.27e6}
	svg, spec := drawTest(t, "linux-amd64-some-cpu-2026-12-02.txt", chartHeader+"date: 2026-12-02\n"+resultsText("", rts, base, 10, 1000))
	if !spec.log || !hasText(svg, "(log scale)") {
		t.Errorf("values from 18 ns to 0.5 s: log %t, svg has no \"log scale\"", spec.log)
	}
	for _, g := range spec.groups {
		for _, b := range g.bars {
			if !hasText(svg, fmtNs(b.center)) {
				t.Errorf("%s %s: no text %q for the median %v", g.label, b.runtime, fmtNs(b.center), b.center)
			}
			if !(b.lo < b.center && b.center < b.hi) {
				t.Errorf("%s %s: interval [%v, %v] around %v", g.label, b.runtime, b.lo, b.center, b.hi)
			}
		}
	}
	if want := len(headlines) * len(rts); errorBars(svg) != want {
		t.Errorf("%d error bars, want %d", errorBars(svg), want)
	}
	for _, want := range []string{"17.9 ns", "488 ms", "Some CPU Model 9000", "go1.26.8", "2026-12-02", "8 cores", "wazero v1.6", "95% confidence interval"} {
		if !hasText(svg, want) {
			t.Errorf("svg has no text %q; texts: %q", want, texts(svg))
		}
	}
	if hasText(svg, "correctness only") {
		t.Error("a performance run is watermarked")
	}
	colours := map[string]bool{}
	for _, m := range regexp.MustCompile(`#([0-9A-Fa-f]{6})\b`).FindAllStringSubmatch(svg, -1) {
		colours[strings.ToUpper(m[1])] = true
	}
	for c := range colours {
		v, _ := strconv.ParseUint(c, 16, 32)
		r, g, b := v>>16, v>>8&0xFF, v&0xFF
		if r >= 0xC0 && g <= 0x60 && b <= 0x60 || g >= 0xC0 && r <= 0x60 && b <= 0x60 {
			t.Errorf("colour #%s is red or green", c)
		}
	}
	for _, c := range []string{"0072B2", "E69F00", "56B4E9"} {
		if !colours[c] {
			t.Errorf("no Okabe-Ito #%s in the svg (have %v)", c, colours)
		}
	}
}

// TestChartLinear: figures within a factor 30 get a linear axis.
func TestChartLinear(t *testing.T) {
	svg, spec := drawTest(t, "linux-amd64-x-2026-12-03.txt", chartHeader+resultsText("", []string{"wazero", "wasmtime"}, []float64{100, 150, 250, 900}, 10, 1000))
	if spec.log || hasText(svg, "log scale") {
		t.Errorf("values from 100 to 900 ns: log %t", spec.log)
	}
	if !hasText(svg, "· 2026-12-03") { // no date line: the file name's
		t.Errorf("no date in %q", texts(svg))
	}
	if !hasText(svg, "1.35 µs") || !hasText(svg, "900 ns") { // 900 ns on wasmtime: 1.5 times
		t.Errorf("values: %q", texts(svg))
	}
}

// TestChartNotPerformance: emulated runs (by their configuration or their
// file name), one-iteration runs and single runs are watermarked, and a
// single run has no error bars.
func TestChartNotPerformance(t *testing.T) {
	rts := []string{"wazero", "wasmtime"}
	base := []float64{10, 1e6}
	for _, c := range []struct {
		name, file, content, mark string
		errorBars                 bool
	}{
		{"emulated", "r.txt", chartHeader + "emulated: true\nemulator: qemu-aarch64-static\n" + resultsText("", rts, base, 10, 1000), markEmulated, true},
		{"qemu file name", "linux-arm64-qemu-on-some-cpu-2026-11-21.txt", chartHeader + resultsText("", rts, base, 10, 1000), markEmulated, true},
		{"benchtime 1x", "r.txt", chartHeader + resultsText("", rts, base, 10, 1), markOneIter, true},
		{"count 1", "r.txt", chartHeader + resultsText("", rts, base, 1, 1000), markSingleRuns, false},
		{"emulated 1x count 1", "r.txt", chartHeader + "emulated: true\nbench-profile: benchtime=1x,count=1\n" + resultsText("", rts, base, 1, 1), markEmulated, false},
	} {
		svg, spec := drawTest(t, c.file, c.content)
		if spec.watermark != c.mark || !hasText(svg, c.mark) || !hasText(svg, "NOT PERFORMANCE") {
			t.Errorf("%s: watermark %q, want %q in the svg", c.name, spec.watermark, c.mark)
		}
		if n := errorBars(svg); (n > 0) != c.errorBars {
			t.Errorf("%s: %d error bars", c.name, n)
		}
	}
	svg, _ := drawTest(t, "r.txt", chartHeader+"emulated: true\nemulator: qemu-aarch64-static\n"+resultsText("", rts, base, 10, 1000))
	if !hasText(svg, "linux/amd64 under qemu-aarch64-static on Some CPU Model 9000") {
		t.Errorf("emulated title: %q", texts(svg))
	}
}

func TestFmtNs(t *testing.T) {
	for _, c := range []struct {
		ns   float64
		want string
	}{{17.94, "17.9 ns"}, {37, "37 ns"}, {999.4, "999 ns"}, {999.6, "1 µs"}, {12345, "12.3 µs"}, {488e6, "488 ms"}, {1.049e9, "1.05 s"}, {2e12, "2000 s"}} {
		if got := fmtNs(c.ns); got != c.want {
			t.Errorf("fmtNs(%v) = %q, want %q", c.ns, got, c.want)
		}
	}
}
