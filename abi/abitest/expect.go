package abitest

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/anywasm/anywasm/abi"
)

// checkStep returns what is wrong with a step's record.
func checkStep(st *Step, r *StepRecord) []string {
	x := &st.Expect
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	if r.HostError != "" {
		bad("host error: %s", r.HostError)
	}
	switch {
	case r.TimedOut && st.Call == Await:
		var want []string
		for _, l := range x.Logs {
			want = append(want, l.String())
		}
		bad("within the wait timeout, found %d of the logs awaited (%s): %s", len(r.Awaited), strings.Join(want, ", "), listOrNone(r.Awaited))
	case r.TimedOut:
		bad("paused, and the plugin neither continued nor answered the stream within the wait timeout")
	}
	if r.Unsettled {
		bad("callouts not settled within the wait timeout: a callout dispatched that never reached its upstream (refused by the host after the cluster check?), or an answer the plugin did not finish handling")
	}
	switch {
	case x.Fail == nil && r.Failure != "":
		bad("plugin failed: %v", r.Err)
	case x.Fail != nil && r.Failure == "":
		bad("plugin did not fail, want it to fail%s", describeFailExpect(x.Fail))
	case x.Fail != nil:
		if want := describeFailExpect(x.Fail); !slices.ContainsFunc(strings.Split(r.Failure, "; "), func(f string) bool { return failMatches(f, x.Fail) }) {
			bad("plugin failed in %s, want a failure%s", r.Failure, want)
		}
	}
	if x.Action != "" && x.Action != r.Action && st.Call != Tick && st.Call != Release && st.Call != Await {
		bad("action = %s, want %s", r.Action, x.Action)
	}
	if x.StaysPaused && r.Action == "pause" && !r.StillPaused {
		if r.LocalResponse != nil {
			bad("the plugin answered the stream (local response %d), want it to stay paused", r.LocalResponse.Status)
		} else {
			bad("the plugin continued the stream (or failed), want it to stay paused")
		}
	}
	if x.StaysPaused && r.Action != "pause" && r.Action != "" {
		bad("action = %s, want pause (stays_paused)", r.Action)
	}
	if st.Call == Tick {
		want := max(st.Times, 1)
		if x.Ticks != nil {
			want = *x.Ticks
		}
		if r.Ticks != want {
			bad("ran %d ticks, want %d (tick period %s)", r.Ticks, want, r.TickPeriod)
		}
	}
	if st.Call == Release && r.Released == 0 {
		bad("no held callout answer to release (cluster %q, path %q)", st.Cluster, st.Path)
	}
	if x.TickPeriodMS != nil && time.Duration(*x.TickPeriodMS)*time.Millisecond != r.TickPeriod {
		bad("tick period %s, want %dms", r.TickPeriod, *x.TickPeriodMS)
	}
	out = append(out, checkCallouts(r.Callouts, x.Callouts)...)
	if x.Headers != nil && !sameHeaders(r.Headers, abi.Headers(x.Headers)) {
		bad("headers = %s, want %s", formatHeaders(r.Headers), formatHeaders(abi.Headers(x.Headers)))
	}
	for _, m := range missingHeaders(r.Headers, x.HeadersContain) {
		bad("headers %s: %s", formatHeaders(r.Headers), m)
	}
	for _, k := range x.HeadersLack {
		if _, ok := getFold(r.Headers, k); ok {
			bad("headers %s: has %s, want it absent", formatHeaders(r.Headers), k)
		}
	}
	if x.Body != nil && *x.Body != r.Body {
		bad("passed on %q, want %q", r.Body, *x.Body)
	}
	if x.NoLocalResponse && r.LocalResponse != nil {
		bad("local response %d %q, want none", r.LocalResponse.Status, r.LocalResponse.Body)
	}
	if want := x.LocalResponse; want != nil {
		lr := r.LocalResponse
		switch {
		case lr == nil:
			bad("no local response, want one")
		default:
			if want.Status != 0 && want.Status != lr.Status {
				bad("local response status %d, want %d", lr.Status, want.Status)
			}
			for _, m := range missingHeaders(lr.Headers, want.Headers) {
				bad("local response headers %s: %s", formatHeaders(lr.Headers), m)
			}
			if want.Body != nil && *want.Body != string(lr.Body) {
				bad("local response body %q, want %q", lr.Body, *want.Body)
			}
		}
	}
	if st.Call == Await { // its logs are what it awaited
		return out
	}
	return append(out, checkLogs(r.Logs, x.Logs)...)
}

func describeFailExpect(f *FailExpect) string {
	s := ""
	if f.Callback != "" {
		s += " in " + f.Callback
	}
	if f.Trap != "" {
		s += " [" + f.Trap + "]"
	}
	return s
}

func failMatches(got string, f *FailExpect) bool {
	callback, code, _ := strings.Cut(strings.TrimSuffix(got, "]"), " [")
	return (f.Callback == "" || f.Callback == callback) && (f.Trap == "" || f.Trap == code)
}

func getFold(h abi.Headers, key string) (string, bool) {
	for _, e := range h {
		if strings.EqualFold(e.Key, key) {
			return e.Value, true
		}
	}
	return "", false
}

// missingHeaders says which of want are not among h (keys ignore case; a
// repeated key may have the value in any of its entries).
func missingHeaders(h abi.Headers, want Headers) []string {
	var out []string
	for _, w := range want {
		var vals []string
		for _, e := range h {
			if strings.EqualFold(e.Key, w.Key) {
				vals = append(vals, e.Value)
			}
		}
		switch {
		case len(vals) == 0:
			out = append(out, fmt.Sprintf("no %s, want %s: %q", w.Key, w.Key, w.Value))
		case !slices.Contains(vals, w.Value):
			out = append(out, fmt.Sprintf("%s: %q, want %q", w.Key, strings.Join(vals, `", "`), w.Value))
		}
	}
	return out
}

// sameHeaders compares header maps ignoring the order of different keys
// (and the case of keys); the values of one key keep their order.
func sameHeaders(a, b abi.Headers) bool {
	norm := func(h abi.Headers) abi.Headers {
		h = h.Clone()
		for i := range h {
			h[i].Key = strings.ToLower(h[i].Key)
		}
		slices.SortStableFunc(h, func(x, y abi.Header) int { return cmp.Compare(x.Key, y.Key) })
		return h
	}
	return slices.Equal(norm(a), norm(b))
}

// checkLogs says which expected logs no log matches.
func checkLogs(logs []LogRecord, want []LogExpect) []string {
	var out []string
	for _, w := range want {
		if !slices.ContainsFunc(logs, w.matches) {
			out = append(out, fmt.Sprintf("no log %s; logs:%s", w, formatLogs(logs)))
		}
	}
	return out
}

func (w LogExpect) matches(l LogRecord) bool {
	return strings.Contains(l.Message, w.Contains) && (w.Level == "" || w.Level == l.Level) &&
		(w.Plugin == "" || w.Plugin == l.Plugin)
}

func (w LogExpect) String() string {
	s := fmt.Sprintf("containing %q", w.Contains)
	if w.Level != "" {
		s += " at level " + w.Level
	}
	if w.Plugin != "" {
		s += fmt.Sprintf(" of plugin %q", w.Plugin)
	}
	return s
}

// checkCallouts says which expected callouts were not made.
func checkCallouts(got []CalloutRecord, want []CalloutExpect) []string {
	var out []string
	for _, w := range want {
		n := 0
		for _, c := range got {
			if w.matches(c) {
				n++
			}
		}
		if (w.Count == nil && n == 0) || (w.Count != nil && *w.Count != n) {
			want := "at least 1"
			if w.Count != nil {
				want = fmt.Sprint(*w.Count)
			}
			var lines []string
			for _, c := range got {
				lines = append(lines, "\n        "+c.String()+timeoutNote(c))
			}
			if len(lines) == 0 {
				lines = []string{" none"}
			}
			out = append(out, fmt.Sprintf("%d callouts %s, want %s; callouts:%s", n, w, want, strings.Join(lines, "")))
		}
	}
	return out
}

func timeoutNote(c CalloutRecord) string {
	if c.Timeout < 0 {
		return " (no timeout)"
	}
	return fmt.Sprintf(" (timeout about %dms)", (c.Timeout+time.Millisecond-1)/time.Millisecond)
}

func (w CalloutExpect) matches(c CalloutRecord) bool {
	eq := func(want, got string) bool { return want == "" || want == got }
	if !eq(w.Cluster, c.Cluster) || !eq(w.Method, c.Method) || !eq(w.Path, c.Path) || !eq(w.Authority, c.Authority) ||
		len(missingHeaders(c.Headers, w.Headers)) > 0 || len(missingHeaders(c.Trailers, w.Trailers)) > 0 ||
		(w.Body != nil && *w.Body != c.Body) {
		return false
	}
	if w.TimeoutMS != nil {
		if *w.TimeoutMS == 0 {
			return c.Timeout < 0
		}
		// The deadline the host set, seen a moment later.
		t := time.Duration(*w.TimeoutMS) * time.Millisecond
		return c.Timeout >= 0 && c.Timeout <= t && c.Timeout > t-time.Second
	}
	return true
}

func (w CalloutExpect) String() string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+" "+v)
		}
	}
	add("to", w.Cluster)
	add("method", w.Method)
	add("path", w.Path)
	add("authority", w.Authority)
	if len(w.Headers) > 0 {
		add("with headers", formatHeaders(abi.Headers(w.Headers)))
	}
	if len(w.Trailers) > 0 {
		add("with trailers", formatHeaders(abi.Headers(w.Trailers)))
	}
	if w.Body != nil {
		add("body", fmt.Sprintf("%q", *w.Body))
	}
	if w.TimeoutMS != nil {
		add("timeout", fmt.Sprintf("%dms", *w.TimeoutMS))
	}
	if len(parts) == 0 {
		return "of any kind"
	}
	return strings.Join(parts, " ")
}

func formatLogs(logs []LogRecord) string {
	if len(logs) == 0 {
		return " none"
	}
	var b strings.Builder
	for _, l := range logs {
		b.WriteString("\n        " + l.String())
	}
	return b.String()
}

// checkExchange checks what an exchange must leave behind.
func checkExchange(er *ExchangeRecord, x *ExchangeExpect) []string {
	var out []string
	if len(x.Logs) > 0 {
		var all []LogRecord
		for _, s := range er.Steps {
			all = append(all, s.Logs...)
		}
		all = append(all, er.Close.Logs...)
		out = append(out, checkLogs(all, x.Logs)...)
	}
	out = append(out, checkCallouts(er.callouts(), x.Callouts)...)
	for _, name := range sortedKeys(x.Metrics) {
		want := x.Metrics[name]
		i := slices.IndexFunc(er.Metrics, func(m MetricRecord) bool { return m.Name == name })
		if i < 0 {
			out = append(out, fmt.Sprintf("metric %s not defined", name))
			continue
		}
		m := er.Metrics[i]
		if want.Value != nil && *want.Value != m.Value {
			out = append(out, fmt.Sprintf("metric %s (%s) = %d, want %d", name, m.Type, m.Value, *want.Value))
		}
		if want.Count != nil && *want.Count != m.Count {
			out = append(out, fmt.Sprintf("metric %s (%s) count = %d, want %d", name, m.Type, m.Count, *want.Count))
		}
	}
	for _, k := range sortedKeys(x.SharedData) {
		want := fmt.Sprintf("%s=%q", k, x.SharedData[k])
		if !slices.Contains(er.SharedData, want) {
			got := k + " missing"
			for _, d := range er.SharedData {
				if strings.HasPrefix(d, k+"=") {
					got = d
				}
			}
			out = append(out, fmt.Sprintf("shared data %s, want %s", got, want))
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
