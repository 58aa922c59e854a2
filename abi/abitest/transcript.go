package abitest

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/anywasm/anywasm/abi"
)

// Transcript is what a runtime observed while running a script: what
// Check compares across runtimes. Only runtime-neutral facts are kept
// (trap codes, not the runtimes' trap messages).
type Transcript struct {
	// Loads are the plugins' loads, in the script's order.
	Loads     []LoadRecord
	Exchanges []ExchangeRecord
	// End is what arrived after the last exchange (a late failure, say).
	End StepRecord
	// multi: the script has several plugins (logs name theirs)
	multi bool
}

// LoadRecord is the outcome of loading a plugin.
type LoadRecord struct {
	Plugin     string
	ABIVersion string
	Failure    string // non-empty: Load failed (the kind of failure)
	// Unimplemented are the hostcalls the plugin imports that the host
	// linked to UNIMPLEMENTED stubs: "name signature".
	Unimplemented []string
	TickPeriod    time.Duration
	Logs          []LogRecord
	Foreign       []string
	Callouts      []CalloutRecord
	Failures      []string // failures of callbacks while loading, when Load succeeded
	Err           error    // Load's error, for messages; not compared
}

// ExchangeRecord is one exchange.
type ExchangeRecord struct {
	Name   string
	Plugin string
	Steps  []StepRecord
	// Close is the stream's end (proxy_on_done, proxy_on_log,
	// proxy_on_delete).
	Close StepRecord
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
	// StillPaused: the step was not waited for (stays_paused) and the
	// stream is still paused at its end.
	StillPaused bool
	// Headers is the step's header map after the callback (HTTP steps).
	Headers abi.Headers
	// Body is what a body or data step passed on.
	Body          string
	LocalResponse *abi.LocalResponse
	Logs          []LogRecord
	Foreign       []string        // foreign function calls, name(args)
	Callouts      []CalloutRecord // HTTP callouts made during the step, sorted
	// Ticks is the number of ticks a tick step ran, TickPeriod the
	// plugin's tick period after a tick step.
	Ticks      int
	TickPeriod time.Duration
	Released   int      // held answers a release step released
	Awaited    []string // the logs an await step found
	// Unsettled: callouts dispatched during the step that never reached
	// the upstream (the host refused them after the cluster check), or
	// answers the plugin did not finish handling, within the wait.
	Unsettled bool
	// Failure is the plugin's failures in this step, "callback [trap
	// code]", joined by "; ".
	Failure   string
	HostError string // the abi method returned an error
	Err       error  // the plugin's error, for messages; not compared
}

// CalloutRecord is one HTTP callout as the upstream received it.
type CalloutRecord struct {
	Cluster, Method, Path, Authority string
	Headers, Trailers                abi.Headers // sorted, lower-case keys
	Body                             string
	// Timeout is what was left of the callout's deadline when it reached
	// the upstream, -1 for none: about the timeout the plugin gave, and so
	// not compared.
	Timeout time.Duration
	Answer  string // which canned answer: "answer 2", "default answer", "... (held)"
}

func (c CalloutRecord) String() string {
	s := fmt.Sprintf("%s %s %s authority %s headers %s body %q", c.Cluster, c.Method, c.Path, c.Authority,
		formatHeaders(c.Headers), c.Body)
	if len(c.Trailers) > 0 {
		s += " trailers " + formatHeaders(c.Trailers)
	}
	return s + ": " + c.Answer
}

// LogRecord is one log line.
type LogRecord struct {
	Level   string
	Message string
	Plugin  string // the plugin that wrote it, when known
}

func (l LogRecord) String() string { return l.Level + ": " + l.Message }

func (l LogRecord) line(multi bool) string {
	if multi && l.Plugin != "" {
		return l.Level + " [" + l.Plugin + "]: " + l.Message
	}
	return l.String()
}

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

func logLines(logs []LogRecord, multi bool) []string {
	var out []string
	for _, l := range logs {
		out = append(out, "log "+l.line(multi))
	}
	return out
}

// lines renders the record, one fact a line, for diffs and reports.
func (r *LoadRecord) lines(multi bool) []string {
	out := []string{"abi version: " + r.ABIVersion}
	if r.Failure != "" {
		out = append(out, "load failed: "+r.Failure)
	}
	for _, u := range r.Unimplemented {
		out = append(out, "unimplemented hostcall (UNIMPLEMENTED stub): "+u)
	}
	if r.TickPeriod > 0 {
		out = append(out, "tick period: "+r.TickPeriod.String())
	}
	for _, f := range r.Foreign {
		out = append(out, "foreign call: "+f)
	}
	for _, c := range r.Callouts {
		out = append(out, "callout: "+c.String())
	}
	out = append(out, logLines(r.Logs, multi)...)
	for _, f := range r.Failures {
		out = append(out, "plugin failed: "+f)
	}
	return out
}

func (r *StepRecord) lines(multi bool) []string {
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
	if r.StillPaused {
		out = append(out, "still paused")
	}
	if r.Call == Tick {
		out = append(out, fmt.Sprintf("ticks: %d", r.Ticks), "tick period: "+r.TickPeriod.String())
	}
	if r.Call == Release {
		out = append(out, fmt.Sprintf("released: %d", r.Released))
	}
	for _, a := range r.Awaited {
		out = append(out, "awaited log: "+a)
	}
	if httpCalls[r.Call] || (r.Call == Wait && r.Headers != nil) {
		out = append(out, "headers: "+formatHeaders(r.Headers))
	}
	if isBody(r.Call) || (r.Call == Wait && r.Body != "") {
		out = append(out, fmt.Sprintf("passed on: %q", r.Body))
	}
	if lr := r.LocalResponse; lr != nil {
		out = append(out, fmt.Sprintf("local response: %d details %q headers %s body %q grpc %d reset %v",
			lr.Status, lr.Details, formatHeaders(lr.Headers), lr.Body, lr.GRPCStatus, lr.Reset))
	}
	for _, f := range r.Foreign {
		out = append(out, "foreign call: "+f)
	}
	for _, c := range r.Callouts {
		out = append(out, "callout: "+c.String())
	}
	if r.Unsettled {
		out = append(out, "callouts not settled within the wait timeout")
	}
	out = append(out, logLines(r.Logs, multi)...)
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

// callouts returns every callout of the exchange.
func (r *ExchangeRecord) callouts() []CalloutRecord {
	var out []CalloutRecord
	for _, s := range r.Steps {
		out = append(out, s.Callouts...)
	}
	return append(out, r.Close.Callouts...)
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
	for _, l := range t.Loads {
		title := "load:"
		if t.multi {
			title = fmt.Sprintf("load %q:", l.Plugin)
		}
		section(title, l.lines(t.multi))
	}
	for _, e := range t.Exchanges {
		if t.multi {
			fmt.Fprintf(&b, "exchange %q (plugin %q):\n", e.Name, e.Plugin)
		} else {
			fmt.Fprintf(&b, "exchange %q:\n", e.Name)
		}
		for i := range e.Steps {
			section("  "+stepName(i, e.Steps[i].Call)+":", e.Steps[i].lines(t.multi))
		}
		section("  close:", e.Close.lines(t.multi))
		section("  after:", e.tailLines())
	}
	if l := t.End.lines(t.multi); len(l) > 0 {
		section("end:", l)
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
	multi := a.multi || b.multi
	for i := range max(len(a.Loads), len(b.Loads)) {
		var la, lb []string
		where := "load"
		if i < len(a.Loads) {
			la = a.Loads[i].lines(multi)
			if multi {
				where = fmt.Sprintf("load %q", a.Loads[i].Plugin)
			}
		}
		if i < len(b.Loads) {
			lb = b.Loads[i].lines(multi)
		}
		cmp(where, la, lb)
	}
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
				la, call = ea.Steps[j].lines(multi), ea.Steps[j].Call
			}
			if j < len(eb.Steps) {
				lb, call = eb.Steps[j].lines(multi), eb.Steps[j].Call
			}
			cmp(ex+", "+stepName(j, call), la, lb)
		}
		cmp(ex+", close", ea.Close.lines(multi), eb.Close.lines(multi))
		cmp(ex+", after the exchange", ea.tailLines(), eb.tailLines())
	}
	cmp("end", a.End.lines(multi), b.End.lines(multi))
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
