package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"golang.org/x/perf/benchfmt"
	"golang.org/x/perf/benchmath"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// headlines are the chart's figures: benchmark names without their
// /runtime=X part, and the label under each group of bars.
var headlines = []struct{ name, label string }{
	{"Call/impl=anywasm/op=empty", "call"},
	{"HostCall/impl=anywasm/op=nop", "host call"},
	{"GuestMemory/impl=anywasm/dir=in/size=64KiB", "write 64K"},
	{"Request/plugin=headers/mode=serial", "request"},
	{"RequestBody/plugin=body/body=64KiB/mode=serial", "req+64K"},
	{"Compute/plugin=compute/work=json/body=64KiB", "json 64K"},
	{"Compute/plugin=compute/work=rules/body=64KiB", "rules 64K"},
	{"Compile/guest=go-headers/cache=none", "compile"},
	{"Compile/guest=go-headers/cache=disk", "from cache"},
	{"Instantiate/guest=go-headers/op=instantiate+init", "new VM"},
}

// medians reads a results file and returns the median ns/op of each
// benchmark (name without /runtime=X and the -N suffix) per runtime, and
// the runtimes in order of appearance.
func medians(path string) (map[string]map[string]float64, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	values := map[string]map[string][]float64{}
	var runtimes []string
	r := benchfmt.NewReader(f, path)
	for r.Scan() {
		res, ok := r.Result().(*benchfmt.Result)
		if !ok {
			continue
		}
		ns, ok := res.Value("sec/op")
		if !ok {
			continue
		}
		base, parts := res.Name.Parts()
		key, rt := string(base), ""
		for _, p := range parts {
			if s := string(p); strings.HasPrefix(s, "/runtime=") {
				rt = strings.TrimPrefix(s, "/runtime=")
			} else if strings.HasPrefix(s, "/") {
				key += s
			}
		}
		if rt == "" {
			continue
		}
		if !slices.Contains(runtimes, rt) {
			runtimes = append(runtimes, rt)
		}
		if values[key] == nil {
			values[key] = map[string][]float64{}
		}
		values[key][rt] = append(values[key][rt], ns*1e9)
	}
	if err := r.Err(); err != nil {
		return nil, nil, err
	}
	out := map[string]map[string]float64{}
	for k, byRT := range values {
		out[k] = map[string]float64{}
		for rt, v := range byRT {
			out[k][rt] = benchmath.AssumeNothing.Summary(benchmath.NewSample(v, &benchmath.DefaultThresholds), 0.95).Center
		}
	}
	return out, runtimes, nil
}

var errNoHeadlines = errors.New("none of the headline benchmarks ran")

// chart draws the headline figures as time relative to the first runtime
// (wazero when measured): one group of bars per figure, one bar per
// runtime. Lower is better.
func chart(results string, outs ...string) error {
	med, runtimes, err := medians(results)
	if err != nil {
		return err
	}
	if len(runtimes) == 0 {
		return fmt.Errorf("%s: no results", results)
	}
	ref := runtimes[0]
	if slices.Contains(runtimes, "wazero") {
		ref = "wazero"
	}
	var labels []string
	var figs []string
	for _, h := range headlines {
		if m := med[h.name]; m != nil && m[ref] > 0 {
			labels = append(labels, h.label)
			figs = append(figs, h.name)
		}
	}
	if len(figs) == 0 {
		return fmt.Errorf("%s: %w on %s", results, errNoHeadlines, ref)
	}
	p := plot.New()
	p.Title.Text = "anywasm: time relative to " + ref + " (lower is better)"
	p.Y.Label.Text = "ratio"
	p.Y.Min = 0
	w := vg.Points(14)
	for i, rt := range runtimes {
		vals := make(plotter.Values, len(figs))
		for j, name := range figs {
			vals[j] = med[name][rt] / med[name][ref]
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return err
		}
		bars.LineStyle.Width = 0
		bars.Color = plotutil.Color(i)
		bars.Offset = vg.Length(float64(i)-float64(len(runtimes)-1)/2) * w
		p.Add(bars)
		p.Legend.Add(rt, bars)
	}
	p.Legend.Top = true
	p.NominalX(labels...)
	for _, out := range outs {
		if err := p.Save(9*vg.Inch, 4*vg.Inch, out); err != nil {
			return err
		}
	}
	return nil
}
