package abitest

import (
	"fmt"
	"io"
	"strings"
)

// Report is the outcome of Check: each runtime's failures and transcript,
// and how the runtimes' transcripts differ.
type Report struct {
	Runtimes []*RuntimeReport
	// Diffs are the differences between the first runtime's transcript and
	// each other's, one message per place, naming both runtimes.
	Diffs []string
}

// RuntimeReport is the outcome on one runtime.
type RuntimeReport struct {
	Runtime  string
	Version  string
	Failures []Failure
	// Transcript is nil when the runtime could not be opened.
	Transcript *Transcript
}

// Failure is an expectation a runtime did not meet.
type Failure struct {
	Runtime  string
	Exchange string // "" for the load
	Step     int    // 1-based; 0 when not a step's
	Call     string // the step's call, or "load", "close", "after the exchange"
	Message  string
}

func (f Failure) String() string {
	var b strings.Builder
	b.WriteString(f.Runtime + ": ")
	if f.Exchange != "" {
		fmt.Fprintf(&b, "exchange %q, ", f.Exchange)
	}
	switch {
	case f.Step > 0:
		fmt.Fprintf(&b, "step %d (%s): ", f.Step, f.Call)
	case f.Call != "":
		b.WriteString(f.Call + ": ")
	}
	b.WriteString(f.Message)
	return b.String()
}

// fail records a failure; step is 0-based, -1 for none.
func (rr *RuntimeReport) fail(exchange string, step int, call, msg string) {
	rr.Failures = append(rr.Failures, Failure{Runtime: rr.Runtime, Exchange: exchange, Step: step + 1, Call: call, Message: msg})
}

// OK reports whether every runtime met every expectation and all agreed.
func (r *Report) OK() bool {
	for _, rr := range r.Runtimes {
		if len(rr.Failures) > 0 {
			return false
		}
	}
	return len(r.Diffs) == 0
}

// compare fills Diffs: each runtime with a transcript against the first.
func (r *Report) compare() {
	r.Diffs = nil
	var ref *RuntimeReport
	for _, rr := range r.Runtimes {
		if rr.Transcript == nil {
			continue
		}
		if ref == nil {
			ref = rr
			continue
		}
		r.Diffs = append(r.Diffs, diffTranscripts(ref.Runtime, ref.Transcript, rr.Runtime, rr.Transcript)...)
	}
}

// Write prints one line per runtime, its failures, the differences between
// runtimes and a final PASS or FAIL; verbose adds every transcript.
func (r *Report) Write(w io.Writer, verbose bool) {
	var names []string
	for _, rr := range r.Runtimes {
		names = append(names, rr.Runtime)
		status := "ok"
		if len(rr.Failures) > 0 {
			status = fmt.Sprintf("FAIL (%d)", len(rr.Failures))
		}
		fmt.Fprintf(w, "%-10s %-10s %s\n", rr.Runtime, rr.Version, status)
		for _, f := range rr.Failures {
			fmt.Fprintf(w, "    %s\n", indent(f.String()))
		}
		if verbose && rr.Transcript != nil {
			fmt.Fprintf(w, "    transcript:\n        %s\n", indent(indent(strings.TrimSuffix(rr.Transcript.String(), "\n"))))
		}
	}
	switch {
	case len(r.Diffs) > 0:
		for _, d := range r.Diffs {
			fmt.Fprintln(w, d)
		}
	case len(r.Runtimes) > 1:
		fmt.Fprintf(w, "transcripts agree: %s\n", strings.Join(names, ", "))
	default:
		fmt.Fprintf(w, "one runtime compiled in (%s): nothing to compare\n", strings.Join(names, ""))
	}
	if r.OK() {
		fmt.Fprintln(w, "PASS")
	} else {
		fmt.Fprintln(w, "FAIL")
	}
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n    ") }
