package abitest

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/internal/plugins"
)

// script loads testdata/name.json.
func script(t *testing.T, name string) *Script {
	t.Helper()
	s, err := LoadScript(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// guest reads a third-party plugin from ../shared/guests beside the
// checkout, or skips.
func guest(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "shared", "guests", name))
	if err != nil {
		t.Skipf("third-party guest %s not found: %v", name, err)
	}
	return b
}

// TestGoSDKPlugins runs every example script on its Go-SDK plugin.
func TestGoSDKPlugins(t *testing.T) {
	for _, c := range []struct{ script, plugin string }{
		{"headers", "headers"},
		{"body", "body"},
		{"local_response", "local_response"},
		{"callout", "callout"},
		{"callout_down", "callout"},
		{"tcp", "tcp"},
		{"trap", "trap"},
		{"trap_fail_open", "trap"},
		{"metrics", "metrics"},
		{"props", "props"},
		{"foreign", "foreign"},
		{"shared", "shared"},
		{"config", "config"},
		{"config_refused", "config"},
		{"tick", "tick"},
		{"tick_two_roots", "tick"},
		{"callout_paths", "callout"},
		{"callout_hold", "callout"},
		{"callout_unknown_cluster", "callout"},
		{"two_configs", "config"},
		{"queue", "shared"},
		{"properties", "props"},
		{"foreign_error", "foreign"},
	} {
		t.Run(c.script, func(t *testing.T) {
			Run(t, plugins.Build(t, c.plugin), script(t, c.script))
		})
	}
}

// kitWasm is abi/testdata/kit.wat (see there what it does).
func kitWasm(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "kit.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKitPlugin runs the scripts of abi/testdata/kit.wasm: failures in
// proxy_on_context_create and proxy_on_tick, a stream that stays paused, an
// unimplemented import.
func TestKitPlugin(t *testing.T) {
	for _, name := range []string{"kit_context_create", "kit_tick_trap", "kit_stays_paused"} {
		t.Run(name, func(t *testing.T) { Run(t, kitWasm(t), script(t, name)) })
	}
}

func TestThirdPartyGuests(t *testing.T) {
	for _, c := range []struct{ script, guest string }{
		{"envoy-cc-example", "envoy-wasm-cc-example.wasm"},
		{"tinygo-add-header-abi010", "tinygo-add-req-header-abi010.wasm"},
	} {
		t.Run(c.script, func(t *testing.T) {
			Run(t, guest(t, c.guest), script(t, c.script))
		})
	}
}

// check runs Check and fails the test on its error.
func check(t *testing.T, wasm []byte, s *Script) *Report {
	t.Helper()
	r, err := Check(context.Background(), wasm, s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// failures returns every runtime's failures as strings, checking that
// every runtime has some.
func failures(t *testing.T, r *Report) []string {
	t.Helper()
	var out []string
	for _, rr := range r.Runtimes {
		if len(rr.Failures) == 0 {
			t.Errorf("%s: no failure", rr.Runtime)
		}
		for _, f := range rr.Failures {
			if f.Runtime != rr.Runtime {
				t.Errorf("failure of %s names %s", rr.Runtime, f.Runtime)
			}
			out = append(out, f.String())
		}
	}
	return out
}

func hasAll(t *testing.T, got []string, want ...string) {
	t.Helper()
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || strings.Contains(g, w)
		}
		if !found {
			t.Errorf("no failure containing %q in:\n%s", w, strings.Join(got, "\n"))
		}
	}
}

// TestWrongExpectations: wrong expectations are reported for every
// runtime, naming the runtime, the exchange and the step.
func TestWrongExpectations(t *testing.T) {
	s := script(t, "headers")
	x := &s.Exchanges[0].Steps[0].Expect
	x.HeadersContain = Headers{{Key: "x-anywasm-seen", Value: "99"}}
	x.Logs = []LogExpect{{Contains: "headers: GET /hello", Level: "error"}}
	s.Exchanges[0].Steps[1].Expect.Action = "pause"
	s.Exchanges[1].Steps[0].Expect.Headers = Headers{}
	s.Exchanges[1].Expect.Metrics = map[string]MetricExpect{"nope": {}}
	s.Load.ABIVersion = "0.2.1"
	r := check(t, plugins.Build(t, "headers"), s)
	if r.OK() {
		t.Fatal("the report is OK")
	}
	got := failures(t, r)
	for _, rr := range r.Runtimes {
		n := rr.Runtime + ": "
		hasAll(t, got,
			n+`load: ABI version 0.2.0, want 0.2.1`,
			n+`exchange "get", step 1 (request_headers): headers {`,
			`x-anywasm-seen: "5", want "99"`,
			n+`exchange "get", step 1 (request_headers): no log containing "headers: GET /hello" at level error; logs:`,
			"info: headers: GET /hello",
			n+`exchange "get", step 2 (response_headers): action = continue, want pause`,
			n+`exchange "repeated keys and no method", step 1 (request_headers): headers = {:path: /p; cookie: a=1; cookie: b=2; x-anywasm-seen: 3}, want {}`,
			n+`exchange "repeated keys and no method", after the exchange: metric nope not defined`,
		)
		if len(rr.Failures) != 6 {
			t.Errorf("%s: %d failures, want 6:\n%s", rr.Runtime, len(rr.Failures), strings.Join(got, "\n"))
		}
	}
	var out bytes.Buffer
	r.Write(&out, false)
	if !strings.HasSuffix(out.String(), "FAIL\n") || !strings.Contains(out.String(), "FAIL (6)") {
		t.Errorf("report:\n%s", out.String())
	}
}

// TestUnexpectedFailure: a plugin failing where the script expects none,
// or failing otherwise than expected, is reported.
func TestUnexpectedFailure(t *testing.T) {
	wasm := plugins.Build(t, "trap")
	s := script(t, "trap")
	s.Exchanges[0].Steps[0].Expect.Fail = nil
	hasAll(t, failures(t, check(t, wasm, s)),
		`exchange "panic", step 1 (request_headers): plugin failed: abi: plugin "trap" failed in proxy_on_request_headers [unreachable]`)

	s = script(t, "trap")
	s.Exchanges[0].Steps[0].Expect.Fail = &FailExpect{Trap: "out of bounds memory access"}
	s.Exchanges[1].Steps[0].Expect.Fail = &FailExpect{}
	hasAll(t, failures(t, check(t, wasm, s)),
		`exchange "panic", step 1 (request_headers): plugin failed in proxy_on_request_headers [unreachable], want a failure [out of bounds memory access]`,
		`exchange "a new VM serves the next request", step 1 (request_headers): plugin did not fail, want it to fail`)
}

// TestWaitTimeout: a paused stream the plugin does not continue in time
// fails the step.
func TestWaitTimeout(t *testing.T) {
	s := script(t, "callout")
	up := s.Upstreams["backend"]
	up.DelayMS = 2000
	s.Upstreams["backend"] = up
	s.WaitTimeoutMS = 50
	hasAll(t, failures(t, check(t, plugins.Build(t, "callout"), s)),
		`exchange "answered", step 1 (request_headers): paused, and the plugin neither continued nor answered the stream within the wait timeout`)
}

func TestLoadExpectations(t *testing.T) {
	wasm := plugins.Build(t, "config")
	s := script(t, "config_refused")
	s.Configuration = "ok"
	hasAll(t, failures(t, check(t, wasm, s)), `load: Load succeeded, want it to fail with an error containing "proxy_on_configure returned false"`)
	s = script(t, "config")
	s.Configuration = "fail"
	hasAll(t, failures(t, check(t, wasm, s)), `load: Load failed: abi: plugin "config": proxy_on_configure returned false`)
}

// transcriptPair is an artificial pair of transcripts that differ in one
// step's headers and logs, and in a metric.
func transcriptPair() (*Transcript, *Transcript) {
	mk := func(seen, log string, metric int64) *Transcript {
		return &Transcript{
			Loads: []LoadRecord{{ABIVersion: "0.2.0"}},
			Exchanges: []ExchangeRecord{{
				Name: "get",
				Steps: []StepRecord{
					{Call: RequestHeaders, Action: "continue", Headers: abi.Headers{{Key: ":path", Value: "/"}, {Key: "x-seen", Value: seen}},
						Logs: []LogRecord{{Level: "info", Message: log}}},
					{Call: ResponseBody, Action: "continue", Body: "same"},
				},
				Metrics: []MetricRecord{{Name: "requests", Type: "counter", Value: metric}},
			}},
		}
	}
	return mk("1", "one", 1), mk("2", "two", 2)
}

func TestTranscriptDiff(t *testing.T) {
	a, b := transcriptPair()
	if d := diffTranscripts("wazero", a, "wazero", a); d != nil {
		t.Errorf("a transcript differs from itself: %q", d)
	}
	diffs := diffTranscripts("wazero", a, "wasmtime", b)
	if len(diffs) != 2 {
		t.Fatalf("%d differences, want 2 (step 1, after the exchange):\n%s", len(diffs), strings.Join(diffs, "\n"))
	}
	want := `runtimes disagree: exchange "get", step 1 (request_headers):
    wazero:   headers: {:path: /; x-seen: 1}
    wazero:   log info: one
    wasmtime: headers: {:path: /; x-seen: 2}
    wasmtime: log info: two`
	if diffs[0] != want {
		t.Errorf("diff:\n%s\nwant:\n%s", diffs[0], want)
	}
	if !strings.Contains(diffs[1], `exchange "get", after the exchange:`) ||
		!strings.Contains(diffs[1], "wazero:   metric requests (counter): 1") ||
		!strings.Contains(diffs[1], "wasmtime: metric requests (counter): 2") {
		t.Errorf("diff:\n%s", diffs[1])
	}

	// A missing step, and a different number of exchanges.
	c := *b
	c.Exchanges = []ExchangeRecord{b.Exchanges[0], b.Exchanges[0]}
	c.Exchanges[0].Steps = c.Exchanges[0].Steps[:1]
	diffs = diffTranscripts("x", a, "y", &c)
	joined := strings.Join(diffs, "\n")
	for _, w := range []string{
		"step 2 (response_body):\n    x: action: continue",
		"    y: (nothing)",
		"runtimes disagree: x ran 1 exchanges, y 2",
	} {
		if !strings.Contains(joined, w) {
			t.Errorf("no %q in:\n%s", w, joined)
		}
	}
}

// TestReportCompare: a Report whose runtimes' transcripts differ is not
// OK, even with no failure, and says so.
func TestReportCompare(t *testing.T) {
	a, b := transcriptPair()
	r := &Report{Runtimes: []*RuntimeReport{
		{Runtime: "wazero", Transcript: a},
		{Runtime: "broken", Transcript: nil}, // could not open: not compared
		{Runtime: "wasmtime", Transcript: b},
	}}
	r.compare()
	if r.OK() || len(r.Diffs) != 2 {
		t.Fatalf("OK %v, diffs %q", r.OK(), r.Diffs)
	}
	var out bytes.Buffer
	r.Write(&out, false)
	if !strings.Contains(out.String(), "runtimes disagree: exchange \"get\", step 1 (request_headers):\n    wazero:   headers") ||
		!strings.HasSuffix(out.String(), "FAIL\n") {
		t.Errorf("report:\n%s", out.String())
	}
	r = &Report{Runtimes: []*RuntimeReport{{Runtime: "wazero", Transcript: a}, {Runtime: "wasmtime", Transcript: a}}}
	r.compare()
	out.Reset()
	r.Write(&out, false)
	if !r.OK() || !strings.Contains(out.String(), "transcripts agree: wazero, wasmtime\nPASS\n") {
		t.Errorf("report:\n%s", out.String())
	}
}

func TestParseScript(t *testing.T) {
	s, err := ParseScript([]byte(`{"name": "p", "exchanges": [{"name": "e", "steps": [
		{"call": "request_headers", "headers": {"b": "1", "a": "2"}, "expect": {"headers": {}}},
		{"call": "request_trailers", "headers": [["k", "1"], ["k", "2"]], "expect": {"headers": null}}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	steps := s.Exchanges[0].Steps
	if got := abi.Headers(steps[0].Headers).String(); got != "b: 1; a: 2" {
		t.Errorf("object headers = %s (order must be kept)", got)
	}
	if steps[0].Expect.Headers == nil || len(steps[0].Expect.Headers) != 0 {
		t.Errorf("{} = %#v, want a non-nil empty map", steps[0].Expect.Headers)
	}
	if got := abi.Headers(steps[1].Headers).String(); got != "k: 1; k: 2" || steps[1].Expect.Headers != nil {
		t.Errorf("pairs = %s, null = %#v", got, steps[1].Expect.Headers)
	}
	// The JSON form keeps {} apart from null: "must be empty" is not "not
	// checked" (omitempty dropped it; FuzzScript found it).
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := ParseScript(b); err != nil || back.Exchanges[0].Steps[0].Expect.Headers == nil || back.Exchanges[0].Steps[1].Expect.Headers != nil {
		t.Errorf("expect.headers {} and null through %s: %v", b, err)
	}
	for _, h := range []Headers{steps[0].Headers, steps[1].Headers} {
		b, _ := json.Marshal(h)
		var back Headers
		if err := json.Unmarshal(b, &back); err != nil || abi.Headers(back).String() != abi.Headers(h).String() {
			t.Errorf("round trip of %s through %s: %s %v", abi.Headers(h), b, abi.Headers(back), err)
		}
	}

	for _, c := range []struct{ script, err string }{
		{`{"exchanges": [], "nmae": "x"}`, `unknown field "nmae"`},
		{`{"exchanges": [{"name": "e", "steps": [{"call": "request_header"}]}]}`, `exchange 1 ("e"), step 1 (request_header): unknown call`},
		{`{"exchanges": [{"name": "e", "steps": [{"call": "new_connection"}, {"call": "request_body"}]}]}`, `step 2 (request_body): HTTP and TCP calls in one exchange`},
		{`{"exchanges": [{"name": "e", "steps": [{"call": "downstream_data"}]}]}`, `step 1 (downstream_data): a TCP exchange starts with new_connection`},
		{`{"exchanges": [{"name": "e", "steps": [{"call": "new_connection", "peer": "far"}]}]}`, `peer "far"`},
		{`{"exchanges": [{"name": "e", "steps": [{"call": "request_headers", "expect": {"action": "stop"}}]}]}`, `action "stop"`},
		{`{"failure_policy": "fail_never", "exchanges": []}`, `failure_policy "fail_never"`},
		{`{"load": {"logs": [{"contains": "x", "level": "fatal"}]}, "exchanges": []}`, `load: log level "fatal"`},
		{`{"exchanges": [{"name": "e", "steps": [{"call": "request_headers", "headers": 3}]}]}`, `headers: want an object or [key, value] pairs`},
		{`{"exchanges": []} {"exchanges": [{"name": "second"}]}`, `data after the script's JSON object`},
		{`{"exchanges": []}}`, `data after the script's JSON object`},
	} {
		if _, err := ParseScript([]byte(c.script)); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("ParseScript(%s) = %v, want an error containing %q", c.script, err, c.err)
		}
	}
}

// TestGoScript: a script written in Go, as a plugin author's test would.
func TestGoScript(t *testing.T) {
	Run(t, plugins.Build(t, "local_response"), &Script{
		Name: "local_response",
		Exchanges: []Exchange{{
			Name: "denied",
			Steps: []Step{{
				Call:        RequestHeaders,
				Headers:     Headers{{Key: ":path", Value: "/"}, {Key: "x-deny", Value: "yes"}},
				EndOfStream: true,
				Expect: Expect{
					Action:        "pause",
					LocalResponse: &LocalResponseExpect{Status: 403, Body: new("denied\n")},
				},
			}},
		}},
	})
}
