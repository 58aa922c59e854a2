package main

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/perf/benchfmt"
	"golang.org/x/perf/benchmath"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// headlines are the chart's figures: benchmark names without their
// /runtime=X part, and the label under each group of bars.
var headlines = []struct{ name, label string }{
	{"Call/impl=anywasm/op=empty", "host->guest\ncall"},
	{"HostCall/impl=anywasm/op=nop", "guest->host\ncall"},
	{"GuestMemory/impl=anywasm/dir=in/size=64KiB", "write 64 KiB\nto guest"},
	{"Request/plugin=headers/mode=serial", "request\n(headers)"},
	{"RequestBody/plugin=body/body=64KiB/mode=serial", "request\n64 KiB body"},
	{"Compute/plugin=compute/work=json/body=64KiB", "decode JSON\n64 KiB"},
	{"Compute/plugin=compute/work=rules/body=64KiB", "50 rules\n64 KiB"},
	{"Compile/guest=go-headers/cache=none", "compile\nGo plugin"},
	{"Compile/guest=go-headers/cache=disk", "load from\ndisk cache"},
	{"Instantiate/guest=go-headers/op=instantiate+init", "new VM\n(+ initialize)"},
}

// confidence is the level of the intervals drawn as error bars: benchstat's
// default (-confidence 0.95), computed as benchstat does, by
// benchmath.AssumeNothing (the median and its distribution-free interval).
const confidence = 0.95

// logRatio: the chart's axis is logarithmic when the largest value is more
// than logRatio times the smallest.
const logRatio = 30

// The watermarks of charts that are not performance figures.
const (
	markEmulated   = "emulated: correctness only"
	markOneIter    = "one iteration: correctness only"
	markSingleRuns = "single run: correctness only"
)

// summary is one benchmark's figures on one runtime, in ns/op.
type summary struct {
	center, lo, hi float64 // the median and its confidence interval (lo, hi infinite when there are too few runs)
	n              int     // runs
}

// benchResults is a results file read for the chart.
type benchResults struct {
	stats    map[string]map[string]summary // benchmark (without /runtime=X) -> runtime -> figures
	runtimes []string                      // in order of appearance
	versions map[string]string             // runtime -> runtime-version
	cfg      map[string]string             // the first value of each configuration key
	oneIter  bool                          // every result ran one iteration
}

// readResults reads a results file: the ns/op of each benchmark (name
// without /runtime=X and the -N suffix) per runtime, summarised as
// benchstat does.
func readResults(path string) (*benchResults, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	res := &benchResults{versions: map[string]string{}, cfg: map[string]string{}, oneIter: true}
	values := map[string]map[string][]float64{}
	r := benchfmt.NewReader(f, path)
	seen := false
	for r.Scan() {
		b, ok := r.Result().(*benchfmt.Result)
		if !ok {
			continue
		}
		for _, c := range b.Config {
			if _, seen := res.cfg[c.Key]; !seen {
				res.cfg[c.Key] = string(c.Value)
			}
		}
		ns, ok := b.Value("sec/op")
		if !ok {
			continue
		}
		base, parts := b.Name.Parts()
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
		seen = true
		res.oneIter = res.oneIter && b.Iters == 1
		if !slices.Contains(res.runtimes, rt) {
			res.runtimes = append(res.runtimes, rt)
			res.versions[rt] = b.GetConfig("runtime-version")
		}
		if values[key] == nil {
			values[key] = map[string][]float64{}
		}
		values[key][rt] = append(values[key][rt], ns*1e9)
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	res.oneIter = res.oneIter && seen
	res.stats = map[string]map[string]summary{}
	for k, byRT := range values {
		res.stats[k] = map[string]summary{}
		for rt, v := range byRT {
			s := benchmath.AssumeNothing.Summary(benchmath.NewSample(v, &benchmath.DefaultThresholds), confidence)
			res.stats[k][rt] = summary{center: s.Center, lo: s.Lo, hi: s.Hi, n: len(v)}
		}
	}
	return res, nil
}

var errNoHeadlines = errors.New("none of the headline benchmarks ran")

// chartBar is one bar: a runtime's figures for one headline.
type chartBar struct {
	runtime string
	summary
}

// chartGroup is the bars of one headline, one per runtime (n 0 where the
// runtime has no result).
type chartGroup struct {
	label string
	bars  []chartBar
}

// chartSpec is everything the chart shows, decided before drawing.
type chartSpec struct {
	title     string
	note      string // under the x axis: what the bars and error bars are
	runtimes  []string
	legend    []string // per runtime: name and version
	groups    []chartGroup
	log       bool
	watermark string // non-empty: not a performance chart, and why
}

// notPerformance says why a results file cannot be read as performance,
// or "": an emulated run (emulated: true, or a *-qemu-on-* file name), one
// iteration per benchmark (-benchtime 1x), or a single run of each
// (-count 1, no confidence interval).
func notPerformance(path string, res *benchResults) string {
	if res.cfg["emulated"] == "true" || strings.Contains(filepath.Base(path), "-qemu-on-") {
		return markEmulated
	}
	if res.oneIter || strings.Contains(res.cfg["bench-profile"], "benchtime=1x") {
		return markOneIter
	}
	maxN := 0
	for _, byRT := range res.stats {
		for _, s := range byRT {
			maxN = max(maxN, s.n)
		}
	}
	if maxN == 1 {
		return markSingleRuns
	}
	return ""
}

var dateInName = regexp.MustCompile(`\d{4}-\d{2}-\d{2}`)

// runDate is the date of the run: the date configuration line, else the
// date in the file name, else the file's modification time.
func runDate(path string, cfg map[string]string) string {
	if d := cfg["date"]; d != "" {
		return d
	}
	if d := dateInName.FindString(filepath.Base(path)); d != "" {
		return d
	}
	if st, err := os.Stat(path); err == nil {
		return st.ModTime().UTC().Format("2006-01-02")
	}
	return "date unknown"
}

// machine describes the machine of the run for the title: CPU model,
// cores, VM, GOOS/GOARCH, and the emulator if any.
func machine(cfg map[string]string) string {
	cpu := cfg["cpu-brand"]
	if cpu == "" {
		cpu = cfg["cpu"]
	}
	if cpu == "" {
		cpu = "unknown CPU"
	}
	if n := cfg["cores-logical"]; n != "" {
		cpu += ", " + n + " cores"
	}
	if h := cfg["hypervisor"]; h != "" && h != "none" && h != "false" {
		cpu += " (VM)"
	}
	osArch := cfg["goos"] + "/" + cfg["goarch"]
	if cfg["emulated"] == "true" {
		emu := cfg["emulator"]
		if emu == "" {
			emu = "an emulator"
		}
		return osArch + " under " + emu + " on " + cpu
	}
	return cpu + " · " + osArch
}

// planChart decides what the chart of a results file shows.
func planChart(path string) (*chartSpec, error) {
	res, err := readResults(path)
	if err != nil {
		return nil, err
	}
	if len(res.runtimes) == 0 {
		return nil, fmt.Errorf("%s: no results", path)
	}
	spec := &chartSpec{runtimes: res.runtimes, watermark: notPerformance(path, res)}
	for _, rt := range res.runtimes {
		l := rt
		if v := res.versions[rt]; v != "" {
			l += " " + v
		}
		spec.legend = append(spec.legend, l)
	}
	minV, maxV, minN, maxN := math.Inf(1), 0.0, math.MaxInt, 0
	for _, h := range headlines {
		byRT := res.stats[h.name]
		if byRT == nil {
			continue
		}
		g := chartGroup{label: h.label}
		for _, rt := range res.runtimes {
			s := byRT[rt]
			g.bars = append(g.bars, chartBar{runtime: rt, summary: s})
			if s.n > 0 {
				minV, maxV = min(minV, s.center), max(maxV, s.center)
				minN, maxN = min(minN, s.n), max(maxN, s.n)
			}
		}
		spec.groups = append(spec.groups, g)
	}
	if len(spec.groups) == 0 {
		return nil, fmt.Errorf("%s: %w", path, errNoHeadlines)
	}
	spec.log = minV > 0 && maxV/minV > logRatio
	goVersion := res.cfg["go-version"]
	if goVersion == "" {
		goVersion = "Go version unknown"
	}
	spec.title = "anywasm: time per operation (lower is better)\n" +
		machine(res.cfg) + " · " + goVersion + " · " + runDate(path, res.cfg)
	if spec.watermark != "" {
		spec.title += "\nNOT PERFORMANCE: " + spec.watermark
	}
	runs := fmt.Sprintf("%d runs", maxN)
	switch {
	case minN != maxN:
		runs = fmt.Sprintf("%d to %d runs", minN, maxN)
	case maxN == 1:
		runs = "1 run"
	}
	spec.note = fmt.Sprintf("bars: median of %s; error bars: its %.0f%% confidence interval (benchstat's)", runs, confidence*100)
	if need := 6; minN < need {
		spec.note += fmt.Sprintf("; none where fewer than %d runs", need)
	}
	return spec, nil
}

// Okabe and Ito's colour-blind-safe palette, without its green and
// vermillion: a runtime keeps its colour from chart to chart.
var (
	okabeBlue      = color.RGBA{0x00, 0x72, 0xB2, 0xFF}
	okabeOrange    = color.RGBA{0xE6, 0x9F, 0x00, 0xFF}
	okabeSkyBlue   = color.RGBA{0x56, 0xB4, 0xE9, 0xFF}
	okabePurple    = color.RGBA{0xCC, 0x79, 0xA7, 0xFF}
	okabeYellow    = color.RGBA{0xF0, 0xE4, 0x42, 0xFF}
	runtimeColours = map[string]color.Color{"wazero": okabeBlue, "wasmtime": okabeOrange, "wasmer": okabeSkyBlue}
	spareColours   = []color.Color{okabePurple, okabeYellow}
	errorBarColour = color.RGBA{0x33, 0x33, 0x33, 0xFF}
	watermarkInk   = color.RGBA{0x40, 0x40, 0x40, 0x90} // premultiplied: a translucent dark grey
)

func colours(runtimes []string) []color.Color {
	out := make([]color.Color, len(runtimes))
	spare := 0
	for i, rt := range runtimes {
		if c, ok := runtimeColours[rt]; ok {
			out[i] = c
		} else {
			out[i] = spareColours[spare%len(spareColours)]
			spare++
		}
	}
	return out
}

// fmtNs formats a duration in ns with three significant digits.
func fmtNs(ns float64) string {
	for _, u := range []struct {
		unit  string
		scale float64
	}{{"ns", 1}, {"µs", 1e3}, {"ms", 1e6}} {
		if v := ns / u.scale; v < 999.5 {
			return trimG(v) + " " + u.unit
		}
	}
	if v := ns / 1e9; v < 999.5 {
		return trimG(v) + " s"
	}
	return fmt.Sprintf("%.0f s", ns/1e9)
}

func trimG(v float64) string { return strings.TrimSuffix(fmt.Sprintf("%.3g", v), ".00") }

// chart draws the headline figures of a results file into each of outs
// (.svg, .png): one group of bars per figure, one bar per runtime, the
// median's value on it and its confidence interval as an error bar, on a
// logarithmic axis when the values span decades. A run that is not a
// performance measurement (emulated, one iteration, single runs) is
// drawn with a watermark saying so.
func chart(results string, outs ...string) error {
	spec, err := planChart(results)
	if err != nil {
		return err
	}
	plot.DefaultFont = font.Font{Typeface: "Liberation", Variant: "Sans"} // sans serif reads better small
	p := plot.New()
	p.Title.Text = spec.title
	p.Title.TextStyle.Font.Size = vg.Points(12)
	p.Title.Padding = vg.Points(8)
	p.X.Label.Text = spec.note
	p.X.Label.TextStyle.Font.Size = vg.Points(9)
	p.X.Tick.Label.Font.Size = vg.Points(10)
	p.Y.Tick.Label.Font.Size = vg.Points(9)
	p.Y.Label.Text = "time per operation"
	if spec.log {
		p.Y.Label.Text += " (log scale)"
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.TickerFunc(logTicks)
	} else {
		p.Y.Tick.Marker = plot.TickerFunc(func(lo, hi float64) []plot.Tick {
			ts := plot.DefaultTicks{}.Ticks(lo, hi)
			for i := range ts {
				if ts[i].Label != "" {
					ts[i].Label = fmtNs(ts[i].Value)
				}
			}
			return ts
		})
	}
	p.Add(plotter.NewGrid())
	bars := &barsPlot{spec: spec, colours: colours(spec.runtimes), label: p.Y.Tick.Label}
	bars.label.Font.Size = vg.Points(8)
	bars.label.Rotation = math.Pi / 2
	bars.label.XAlign, bars.label.YAlign = draw.XLeft, draw.YCenter
	p.Add(bars)
	for i, l := range spec.legend {
		p.Legend.Add(l, swatch{bars.colours[i]})
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs = vg.Points(6)
	p.Legend.TextStyle.Font.Size = vg.Points(10)
	labels := make([]string, len(spec.groups))
	for i, g := range spec.groups {
		labels[i] = g.label
	}
	p.NominalX(labels...)
	if spec.watermark != "" {
		wm := &watermark{text: spec.watermark, style: p.Title.TextStyle}
		p.Add(wm)
	}
	for _, out := range outs {
		if err := p.Save(11*vg.Inch, 5*vg.Inch, out); err != nil {
			return err
		}
	}
	return nil
}

// logTicks labels the decades (1 ns, 10 ns, ... 1 s) and marks 2 to 9
// times each.
func logTicks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	for d := math.Pow(10, math.Floor(math.Log10(lo))); d <= hi*1.0001; d *= 10 {
		for m := 1.0; m < 10; m++ {
			v := d * m
			if v < lo*0.9999 || v > hi*1.0001 {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 {
				t.Label = fmtNs(v)
			}
			ts = append(ts, t)
		}
	}
	return ts
}

// barsPlot draws the groups of bars, their error bars and their values.
type barsPlot struct {
	spec    *chartSpec
	colours []color.Color
	label   text.Style
}

// barX is the centre and the half width of bar i of group j, in data units.
func (b *barsPlot) barX(j, i int) (x, half float64) {
	n := float64(len(b.spec.runtimes))
	w := 0.84 / n
	return float64(j) + (float64(i)-(n-1)/2)*w, w / 2
}

// top is where the bar's value label starts: above its error bar.
func (s summary) top() float64 {
	if !math.IsInf(s.hi, 0) && s.hi > s.center {
		return s.hi
	}
	return s.center
}

func (s summary) hasInterval() bool {
	return !math.IsInf(s.lo, 0) && !math.IsInf(s.hi, 0) && s.hi > s.lo
}

const labelGap = 3 // points between a bar (or its error bar) and its value

func (b *barsPlot) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	for j, g := range b.spec.groups {
		for i, bar := range g.bars {
			if bar.n == 0 || bar.center <= 0 {
				continue
			}
			x, half := b.barX(j, i)
			x0, x1, y := trX(x-half), trX(x+half), trY(bar.center)
			c.FillPolygon(b.colours[i], []vg.Point{{X: x0, Y: c.Min.Y}, {X: x1, Y: c.Min.Y}, {X: x1, Y: y}, {X: x0, Y: y}})
			if bar.hasInterval() {
				lo, hi := trY(max(bar.lo, p.Y.Min)), trY(bar.hi)
				xc, capw := trX(x), (x1-x0)/4
				var path vg.Path
				path.Move(vg.Point{X: xc - capw, Y: lo})
				path.Line(vg.Point{X: xc + capw, Y: lo})
				path.Move(vg.Point{X: xc, Y: lo})
				path.Line(vg.Point{X: xc, Y: hi})
				path.Move(vg.Point{X: xc - capw, Y: hi})
				path.Line(vg.Point{X: xc + capw, Y: hi})
				c.SetLineStyle(draw.LineStyle{Color: errorBarColour, Width: vg.Points(1)})
				c.Stroke(path)
			}
			c.FillText(b.label, vg.Point{X: trX(x), Y: trY(bar.top()) + labelGap}, fmtNs(bar.center))
		}
	}
}

// DataRange spans the groups and, on a log axis, whole decades.
func (b *barsPlot) DataRange() (xmin, xmax, ymin, ymax float64) {
	lo, hi := math.Inf(1), 0.0
	for _, g := range b.spec.groups {
		for _, bar := range g.bars {
			if bar.n > 0 && bar.center > 0 {
				lo, hi = min(lo, bar.center), max(hi, bar.top())
				if bar.hasInterval() && bar.lo > 0 {
					lo = min(lo, bar.lo)
				}
			}
		}
	}
	xmin, xmax = -0.5, float64(len(b.spec.groups))-0.5
	if b.spec.log {
		return xmin, xmax, math.Pow(10, math.Floor(math.Log10(lo))), hi
	}
	return xmin, xmax, 0, hi
}

// GlyphBoxes make room for the value labels above the bars.
func (b *barsPlot) GlyphBoxes(p *plot.Plot) []plot.GlyphBox {
	var boxes []plot.GlyphBox
	for j, g := range b.spec.groups {
		for i, bar := range g.bars {
			if bar.n == 0 || bar.center <= 0 {
				continue
			}
			x, _ := b.barX(j, i)
			r := b.label.Rectangle(fmtNs(bar.center))
			r.Min.Y += labelGap
			r.Max.Y += labelGap
			boxes = append(boxes, plot.GlyphBox{X: p.X.Norm(x), Y: p.Y.Norm(bar.top()), Rectangle: r})
		}
	}
	return boxes
}

// swatch is a legend entry's coloured square.
type swatch struct{ colour color.Color }

func (s swatch) Thumbnail(c *draw.Canvas) {
	c.FillPolygon(s.colour, []vg.Point{{X: c.Min.X, Y: c.Min.Y}, {X: c.Max.X, Y: c.Min.Y}, {X: c.Max.X, Y: c.Max.Y}, {X: c.Min.X, Y: c.Max.Y}})
}

// watermark writes its text large and slanted across the data area.
type watermark struct {
	text  string
	style text.Style
}

func (w *watermark) Plot(c draw.Canvas, _ *plot.Plot) {
	st := w.style
	st.Font.Size = vg.Points(52)
	st.Color = watermarkInk
	st.Rotation = 0.22
	st.XAlign, st.YAlign = draw.XCenter, draw.YCenter
	c.FillText(st, c.Center(), w.text)
}
