package abitest

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

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
	if r.TimedOut {
		bad("paused, and the plugin neither continued nor answered the stream within the wait timeout")
	}
	switch {
	case x.Fail == nil && r.Failure != "":
		bad("plugin failed: %v", r.Err)
	case x.Fail != nil && r.Failure == "":
		bad("plugin did not fail, want it to fail%s", describeFailExpect(x.Fail))
	case x.Fail != nil:
		if want := describeFailExpect(x.Fail); !failMatches(r.Failure, x.Fail) {
			bad("plugin failed in %s, want a failure%s", r.Failure, want)
		}
	}
	if x.Action != "" && x.Action != r.Action {
		bad("action = %s, want %s", r.Action, x.Action)
	}
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
		found := slices.ContainsFunc(logs, func(l LogRecord) bool {
			return strings.Contains(l.Message, w.Contains) && (w.Level == "" || w.Level == l.Level)
		})
		if !found {
			lvl := ""
			if w.Level != "" {
				lvl = " at level " + w.Level
			}
			out = append(out, fmt.Sprintf("no log containing %q%s; logs:%s", w.Contains, lvl, formatLogs(logs)))
		}
	}
	return out
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
