package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

// stacks builds a CPU profile of one sample per stack (leaf first; a
// "+"-joined entry is one location with inlined functions, innermost
// first), each of the given milliseconds.
func stacks(t *testing.T, dur time.Duration, samples []struct {
	ms    int64
	stack []string
}) []byte {
	t.Helper()
	p := &profile.Profile{
		SampleType:    []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		PeriodType:    &profile.ValueType{Type: "cpu", Unit: "nanoseconds"},
		Period:        int64(10 * time.Millisecond),
		DurationNanos: int64(dur),
	}
	fns := map[string]*profile.Function{}
	fn := func(name string) *profile.Function {
		if f := fns[name]; f != nil {
			return f
		}
		f := &profile.Function{ID: uint64(len(fns) + 1), Name: name, SystemName: name}
		fns[name] = f
		p.Function = append(p.Function, f)
		return f
	}
	for _, s := range samples {
		var locs []*profile.Location
		for _, entry := range s.stack {
			loc := &profile.Location{ID: uint64(len(p.Location) + 1)}
			for _, name := range strings.Split(entry, "+") {
				loc.Line = append(loc.Line, profile.Line{Function: fn(name)})
			}
			p.Location = append(p.Location, loc)
			locs = append(locs, loc)
		}
		p.Sample = append(p.Sample, &profile.Sample{Location: locs, Value: []int64{s.ms / 10, s.ms * int64(time.Millisecond)}})
	}
	var b bytes.Buffer
	if err := p.Write(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestParseShares(t *testing.T) {
	const serve = "net/http.(*conn).serve"
	b := stacks(t, 2*time.Second, []struct {
		ms    int64
		stack []string
	}{
		// The upstream round trip beneath the middleware: not the plugins'.
		{10, []string{"syscall.write", upstreamFn, middlewareFn, serve}},
		// The plugin's host calls and cgo calls under the middleware.
		{20, []string{"github.com/anywasm/anywasm/abi.(*vm).call", middlewareFn, serve}},
		// Guest code Go cannot walk.
		{5, []string{externalFn, "runtime._System"}},
		// The collector's mark workers.
		{7, []string{"runtime.scanObject", gcWorkerFn, "runtime.goexit"}},
		// A router above the middleware does not take its samples away.
		{3, []string{"abi.x", middlewareFn, upstreamFn, serve}},
		// The middleware inlined into its caller's location.
		{1, []string{"abi.y", middlewareFn + "+" + serve}},
		// Neither.
		{4, []string{"runtime.mallocgc", serve}},
	})
	s, err := parseShares(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	ms := time.Millisecond
	want := cpuShares{total: 50 * ms, plugin: 29 * ms, external: 5 * ms, gc: 7 * ms, dur: 2 * time.Second}
	if s != want {
		t.Fatalf("parseShares = %+v, want %+v", s, want)
	}
	// 1000 req/s for the profile's 2 s: 2000 requests.
	if got := s.perRequest(s.plugin, 1000); got != 14500*time.Nanosecond {
		t.Errorf("plugin per request = %v, want 14.5µs", got)
	}
	if got := s.perRequest(s.plugin, 0); got != -1 {
		t.Errorf("per request of no requests = %v, want -1", got)
	}
}

func TestParseSharesRefuses(t *testing.T) {
	if _, err := parseShares(strings.NewReader("not a profile")); err == nil {
		t.Error("parseShares accepted garbage")
	}
	heap := &profile.Profile{SampleType: []*profile.ValueType{{Type: "alloc_space", Unit: "bytes"}}}
	var b bytes.Buffer
	if err := heap.Write(&b); err != nil {
		t.Fatal(err)
	}
	if _, err := parseShares(&b); err == nil || !strings.Contains(err.Error(), "not a CPU profile") {
		t.Errorf("parseShares of a heap profile: %v", err)
	}
}
