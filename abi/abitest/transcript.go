package abitest

import (
	"fmt"
	"slices"
	"strings"

	"github.com/anywasm/anywasm/abi"
)

// Transcript is what a runtime observed while running a script: what
// Check compares across runtimes. Only runtime-neutral facts are kept
// (trap codes, not the runtimes' trap messages).
type Transcript struct {
	Load      LoadRecord
	Exchanges []ExchangeRecord
}

// LoadRecord is the outcome of loading the plugin.
type LoadRecord struct {
	ABIVersion string
	Failure    string // non-empty: Load failed (the kind of failure)
	Logs       []LogRecord
	Err        error // Load's error, for messages; not compared
}

// ExchangeRecord is one exchange.
type ExchangeRecord struct {
	Name  string
	Steps []StepRecord
	// Close is the stream's end (proxy_on_done, proxy_on_log,
	// proxy_on_delete).
	Close StepRecord
	// Callouts are the HTTP callouts the exchange made, sorted.
	Callouts []string
	// Metrics are every metric after the exchange.
	Metrics []MetricRecord
	// SharedData are the expected keys' values after the exchange
	// ("key=value", or "key missing").
	SharedData []string
}

// StepRecord is one step: its callback's action and what it left.
type StepRecord struct {
	Call     string
	Action   string
	Resumed  bool // paused, then continued by the plugin
	TimedOut bool // paused, and not continued within the wait timeout
	// Headers is the step's header map after the callback (HTTP steps).
	Headers abi.Headers
	// Body is what a body or data step passed on.
	Body          string
	LocalResponse *abi.LocalResponse
	Logs          []LogRecord
	Foreign       []string // foreign function calls, name(args)
	Failure       string   // the plugin failed in this step: callback [trap code]
	HostError     string   // the abi method returned an error
	Err           error    // the plugin's error, for messages; not compared
}

// LogRecord is one log line.
type LogRecord struct {
	Level   string
	Message string
}

func (l LogRecord) String() string { return l.Level + ": " + l.Message }

// MetricRecord is one metric.
type MetricRecord struct {
	Name  string
	Type  string
	Value int64
	Count uint64
}

func isBody(call string) bool {
	return call == RequestBody || call == ResponseBody || call == DownstreamData || call == UpstreamData
}

func formatHeaders(h abi.Headers) string { return "{" + h.String() + "}" }

func logLines(logs []LogRecord) []string {
	var out []string
	for _, l := range logs {
		out = append(out, "log "+l.String())
	}
	return out
}

// lines renders the record, one fact a line, for diffs and reports.
func (r *LoadRecord) lines() []string {
	out := []string{"abi version: " + r.ABIVersion}
	if r.Failure != "" {
		out = append(out, "load failed: "+r.Failure)
	}
	return append(out, logLines(r.Logs)...)
}

func (r *StepRecord) lines() []string {
	var out []string
	if r.Action != "" {
		out = append(out, "action: "+r.Action)
	}
	if r.Resumed {
		out = append(out, "continued by the plugin")
	}
	if r.TimedOut {
		out = append(out, "not continued within the wait timeout")
	}
	if httpCalls[r.Call] {
		out = append(out, "headers: "+formatHeaders(r.Headers))
	}
	if isBody(r.Call) {
		out = append(out, fmt.Sprintf("passed on: %q", r.Body))
	}
	if lr := r.LocalResponse; lr != nil {
		out = append(out, fmt.Sprintf("local response: %d details %q headers %s body %q grpc %d",
			lr.Status, lr.Details, formatHeaders(lr.Headers), lr.Body, lr.GRPCStatus))
	}
	for _, f := range r.Foreign {
		out = append(out, "foreign call: "+f)
	}
	out = append(out, logLines(r.Logs)...)
	if r.Failure != "" {
		out = append(out, "plugin failed: "+r.Failure)
	}
	if r.HostError != "" {
		out = append(out, "host error: "+r.HostError)
	}
	return out
}

// tailLines renders what follows an exchange's steps.
func (r *ExchangeRecord) tailLines() []string {
	var out []string
	for _, c := range r.Callouts {
		out = append(out, "callout: "+c)
	}
	for _, m := range r.Metrics {
		if m.Type == "histogram" {
			out = append(out, fmt.Sprintf("metric %s (histogram): sum %d count %d", m.Name, m.Value, m.Count))
		} else {
			out = append(out, fmt.Sprintf("metric %s (%s): %d", m.Name, m.Type, m.Value))
		}
	}
	for _, d := range r.SharedData {
		out = append(out, "shared data "+d)
	}
	return out
}

func stepName(i int, call string) string { return fmt.Sprintf("step %d (%s)", i+1, call) }

// String renders the whole transcript.
func (t *Transcript) String() string {
	var b strings.Builder
	section := func(title string, lines []string) {
		b.WriteString(title + "\n")
		for _, l := range lines {
			b.WriteString("    " + l + "\n")
		}
	}
	section("load:", t.Load.lines())
	for _, e := range t.Exchanges {
		fmt.Fprintf(&b, "exchange %q:\n", e.Name)
		for i := range e.Steps {
			section("  "+stepName(i, e.Steps[i].Call)+":", e.Steps[i].lines())
		}
		section("  close:", e.Close.lines())
		section("  after:", e.tailLines())
	}
	return b.String()
}

// diffTranscripts describes every difference between the transcripts of
// runtimes na and nb, one message per place (load, step, close, after).
func diffTranscripts(na string, a *Transcript, nb string, b *Transcript) []string {
	var out []string
	w := max(len(na), len(nb)) + 1
	cmp := func(where string, la, lb []string) {
		if slices.Equal(la, lb) {
			return
		}
		onlyA, onlyB := minus(la, lb), minus(lb, la)
		if len(onlyA) == 0 && len(onlyB) == 0 { // same lines, another order
			onlyA, onlyB = la, lb
		}
		var m strings.Builder
		fmt.Fprintf(&m, "runtimes disagree: %s:", where)
		for _, l := range onlyA {
			fmt.Fprintf(&m, "\n    %-*s %s", w, na+":", l)
		}
		if len(onlyA) == 0 {
			fmt.Fprintf(&m, "\n    %-*s (nothing)", w, na+":")
		}
		for _, l := range onlyB {
			fmt.Fprintf(&m, "\n    %-*s %s", w, nb+":", l)
		}
		if len(onlyB) == 0 {
			fmt.Fprintf(&m, "\n    %-*s (nothing)", w, nb+":")
		}
		out = append(out, m.String())
	}
	cmp("load", a.Load.lines(), b.Load.lines())
	for i := range max(len(a.Exchanges), len(b.Exchanges)) {
		if i >= len(a.Exchanges) || i >= len(b.Exchanges) {
			out = append(out, fmt.Sprintf("runtimes disagree: %s ran %d exchanges, %s %d",
				na, len(a.Exchanges), nb, len(b.Exchanges)))
			break
		}
		ea, eb := &a.Exchanges[i], &b.Exchanges[i]
		ex := fmt.Sprintf("exchange %q", ea.Name)
		for j := range max(len(ea.Steps), len(eb.Steps)) {
			var la, lb []string
			call := ""
			if j < len(ea.Steps) {
				la, call = ea.Steps[j].lines(), ea.Steps[j].Call
			}
			if j < len(eb.Steps) {
				lb, call = eb.Steps[j].lines(), eb.Steps[j].Call
			}
			cmp(ex+", "+stepName(j, call), la, lb)
		}
		cmp(ex+", close", ea.Close.lines(), eb.Close.lines())
		cmp(ex+", after the exchange", ea.tailLines(), eb.tailLines())
	}
	return out
}

// minus returns the lines of a not in b, as multisets.
func minus(a, b []string) []string {
	n := map[string]int{}
	for _, l := range b {
		n[l]++
	}
	var out []string
	for _, l := range a {
		if n[l] > 0 {
			n[l]--
			continue
		}
		out = append(out, l)
	}
	return out
}
