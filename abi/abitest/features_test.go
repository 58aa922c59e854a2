package abitest

import (
	"bytes"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/internal/plugins"
)

// TestFailuresAnywhere: a failure in any callback is recorded where it
// happens and fails a step that does not expect it; expecting another
// failure is reported too.
func TestFailuresAnywhere(t *testing.T) {
	kit := kitWasm(t)
	s := script(t, "kit_context_create")
	s.Exchanges[0].Steps[0].Expect = Expect{} // expects nothing: must fail
	hasAll(t, failures(t, check(t, kit, s)),
		`exchange "the stream context fails", step 1 (request_headers): plugin failed: abi: plugin "kit" failed in proxy_on_context_create [unreachable]`)

	s = script(t, "kit_context_create")
	s.Exchanges[0].Steps[0].Expect.Fail = &FailExpect{Callback: "proxy_on_request_headers"}
	hasAll(t, failures(t, check(t, kit, s)),
		`step 1 (request_headers): plugin failed in proxy_on_context_create [unreachable], want a failure in proxy_on_request_headers`)

	s = script(t, "kit_tick_trap")
	s.Exchanges[0].Steps[0].Expect.Fail = nil
	hasAll(t, failures(t, check(t, kit, s)),
		`exchange "a tick traps", step 1 (tick): plugin failed: abi: plugin "kit" failed in proxy_on_tick [unreachable]`)

	// A plugin that does not fail where a failure is expected.
	s = script(t, "kit_tick_trap")
	s.VMConfiguration = ""
	hasAll(t, failures(t, check(t, kit, s)),
		`exchange "a tick traps", step 1 (tick): plugin did not fail, want it to fail in proxy_on_tick [unreachable]`)
}

func TestLoadRecords(t *testing.T) {
	s := script(t, "kit_context_create")
	s.Load.Unimplemented = []string{"proxy_grpc_call"}
	s.Load.TickPeriodMS = new(20)
	hasAll(t, failures(t, check(t, kitWasm(t), s)),
		`load: proxy_grpc_call is not among the unimplemented hostcalls the plugin imports (proxy_anywasm_lacks_this (i32) -> (i32))`,
		`load: tick period 10ms, want 20ms`)
}

func TestStaysPaused(t *testing.T) {
	kit := kitWasm(t)
	// Not stays_paused: the step waits, and nothing continues it.
	s := script(t, "kit_stays_paused")
	s.Exchanges[0].Steps[0].Expect.StaysPaused = false
	s.WaitTimeoutMS = 50
	hasAll(t, failures(t, check(t, kit, s)),
		`step 1 (request_headers): paused, and the plugin neither continued nor answered the stream within the wait timeout`)

	// The wait step, without stays_paused, waits in vain.
	s = script(t, "kit_stays_paused")
	s.Exchanges[0].Steps[2].Expect.StaysPaused = false
	s.WaitTimeoutMS = 50
	hasAll(t, failures(t, check(t, kit, s)), `step 3 (wait): paused, and the plugin neither continued nor answered`)

	// A plugin that continues.
	s = script(t, "kit_stays_paused")
	s.VMConfiguration = ""
	hasAll(t, failures(t, check(t, kit, s)), `step 1 (request_headers): action = continue, want pause (stays_paused)`)

	// A callout answered at once continues the stream.
	s = script(t, "callout_hold")
	up := s.Upstreams["backend"]
	up.Answers[0].Hold = false
	s.Upstreams["backend"] = up
	hasAll(t, failures(t, check(t, plugins.Build(t, "callout"), s)),
		`step 1 (request_headers): the plugin continued the stream (or failed), want it to stay paused`,
		`step 2 (release): no held callout answer to release (cluster "backend", path "/info")`)
}

func TestCalloutExpectations(t *testing.T) {
	wasm := plugins.Build(t, "callout")
	s := script(t, "callout_paths")
	x := &s.Exchanges[0].Steps[0].Expect
	x.Callouts = []CalloutExpect{
		{Cluster: "backend", TimeoutMS: new(50000)},
		{Path: "/other"},
		{Cluster: "backend", Count: new(2)},
		{Headers: Headers{{Key: "x-nope", Value: "1"}}},
	}
	s.Exchanges[0].Expect.Callouts = []CalloutExpect{{Method: "POST"}}
	got := failures(t, check(t, wasm, s))
	hasAll(t, got,
		`step 1 (request_headers): 0 callouts to backend timeout 50000ms, want at least 1; callouts:`,
		`backend GET /info authority backend headers {} body "": answer 1 (timeout about 5000ms)`,
		`0 callouts path /other, want at least 1`,
		`1 callouts to backend, want 2`,
		`0 callouts with headers {x-nope: 1}, want at least 1`,
		`after the exchange: 0 callouts method POST, want at least 1`)

	// The default answer of a cluster serves paths no answer lists.
	s = script(t, "callout_paths")
	up := s.Upstreams["backend"]
	up.Answers = up.Answers[:0]
	s.Upstreams["backend"] = up
	s.Exchanges[0].Steps[0].Expect.HeadersContain = Headers{{Key: "x-callout-status", Value: "404"}}
	Run(t, wasm, s)

	// A failed answer: the plugin sees 0 headers.
	s = script(t, "callout_paths")
	up = s.Upstreams["backend"]
	up.Answers[0].Error = "reset"
	s.Upstreams["backend"] = up
	s.Exchanges[0].Steps[0].Expect = Expect{Action: "pause", LocalResponse: &LocalResponseExpect{Status: 503, Body: new("callout failed\n")},
		Logs: []LogExpect{{Contains: "HTTP callout failed", Level: "warn"}}}
	Run(t, wasm, s)
}

func TestTickExpectations(t *testing.T) {
	s := script(t, "tick")
	x := &s.Exchanges[0].Steps[0].Expect
	x.Ticks, x.TickPeriodMS = nil, new(20)
	s.Exchanges[0].Steps[0].Times = 2
	s.Exchanges[0].Expect.SharedData = nil
	hasAll(t, failures(t, check(t, plugins.Build(t, "tick"), s)),
		`step 1 (tick): tick period 100ms, want 20ms`,
		`step 1 (tick): no log containing "tick 3"`)

	// A plugin with no tick period runs no tick.
	hasAll(t, failures(t, check(t, plugins.Build(t, "headers"), &Script{Name: "headers",
		Exchanges: []Exchange{{Name: "tick", Steps: []Step{{Call: Tick}}}}})),
		`exchange "tick", step 1 (tick): ran 0 ticks, want 1 (tick period 0s)`)
}

func TestAwaitTimeout(t *testing.T) {
	s := script(t, "queue")
	s.WaitTimeoutMS = 50
	s.Exchanges[0].Steps[1].Expect.Logs[0].Plugin = "sender" // the receiver gets the items
	hasAll(t, failures(t, check(t, plugins.Build(t, "shared"), s)),
		`step 2 (await): within the wait timeout, found 0 of the logs awaited (containing "queue: /a" of plugin "sender"): none`)
}

func TestPluginConfig(t *testing.T) {
	s := &Script{Name: "p", VMID: "vm", LogLevel: "warn", CallTimeoutMS: 250, Plugins: []PluginSpec{
		{Name: "a", Configuration: "x"}, {Name: "b", VMID: "other", LogLevel: "trace", FailurePolicy: "fail_open"}}}
	ps := s.plugins()
	a, b := pluginConfig(s, ps[0], true), pluginConfig(s, ps[1], false)
	if a.Name != "a" || a.VMID != "vm" || string(a.Configuration) != "x" || *a.LogLevel != abi.LogWarn || a.CallTimeout.Milliseconds() != 250 {
		t.Errorf("a = %+v", a)
	}
	if b.VMID != "other" || *b.LogLevel != abi.LogTrace || b.FailurePolicy != abi.FailOpen || b.CallTimeout != 0 {
		t.Errorf("b = %+v", b)
	}
	// no_call_timeout: the runtime is opened without interruption, and
	// plugins get no CallTimeout (Load would refuse one).
	s.NoCallTimeout = true
	wasm := plugins.Build(t, "headers")
	s = script(t, "headers")
	s.NoCallTimeout = true
	Run(t, wasm, s)
}

func TestPropertyValues(t *testing.T) {
	for _, c := range []struct {
		json string
		want []byte
	}{
		{`"abc"`, []byte("abc")},
		{`{"k": "v", "a": ""}`, []byte("\x02\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00k\x00v\x00a\x00\x00")},
		{`7`, []byte{7, 0, 0, 0, 0, 0, 0, 0}},
		{`-1`, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{`1.5`, []byte{0, 0, 0, 0, 0, 0, 0xf8, 0x3f}},
		{`true`, []byte{1}},
	} {
		var ps Properties
		if err := ps.UnmarshalJSON([]byte(`[{"path": ["a", "b.c"], "value": ` + c.json + `}]`)); err != nil {
			t.Errorf("%s: %v", c.json, err)
			continue
		}
		got, ok := ps.lookup([]string{"a", "b.c"})
		if !ok || !bytes.Equal(got, c.want) {
			t.Errorf("%s = %q, %v; want %q", c.json, got, ok, c.want)
		}
		if _, ok := ps.lookup([]string{"a", "b", "c"}); ok {
			t.Errorf("%s: a path of other segments matched", c.json)
		}
	}
	var ps Properties
	if err := ps.UnmarshalJSON([]byte(`{"a.b": {"x": "1"}, "c": "d"}`)); err != nil {
		t.Fatal(err)
	}
	if v, ok := ps.lookup([]string{"a", "b"}); !ok || !bytes.Equal(v, pairs(abi.Headers{{Key: "x", Value: "1"}})) {
		t.Errorf("object form: %q %v", v, ok)
	}
	if v, ok := ps.lookup([]string{"c"}); !ok || string(v) != "d" {
		t.Errorf("object form: %q %v", v, ok)
	}
	for _, bad := range []string{`[{"path": ["a"], "value": [1]}]`, `[{"value": "x"}]`, `[{"path": ["a"], "value": {"k": 1}}]`, `3`, `[{"path": ["a"], "valeu": "x"}]`} {
		var ps Properties
		if err := ps.UnmarshalJSON([]byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestParseScriptFeatures(t *testing.T) {
	for _, c := range []struct{ script, err string }{
		{`{"plugins": [{"name": "a"}, {"name": "a"}], "exchanges": []}`, `plugins[1] ("a"): a second plugin of that name`},
		{`{"plugins": [{}], "exchanges": []}`, `plugins[0] (""): a name is needed`},
		{`{"plugins": [{"name": "a"}], "load": {"abi_version": "0.2.0"}, "exchanges": []}`, `a load expectation per plugin`},
		{`{"plugins": [{"name": "a"}], "exchanges": [{"name": "e", "plugin": "b", "steps": []}]}`, `exchange 1 ("e"): plugin "b": no such plugin`},
		{`{"exchanges": [{"name": "e", "steps": [{"call": "wait"}]}]}`, `step 1 (wait): a wait step follows a stream step`},
		{`{"exchanges": [{"name": "e", "steps": [{"call": "request_headers"}, {"call": "wait", "direction": "upstream"}]}]}`, `direction "upstream" is not of this exchange's stream`},
		{`{"exchanges": [{"name": "e", "steps": [{"call": "request_headers", "times": 2}]}]}`, `times is for tick steps`},
		{`{"exchanges": [{"name": "e", "steps": [{"call": "await"}]}]}`, `an await step expects logs`},
		{`{"exchanges": [{"name": "e", "steps": [{"call": "request_headers", "cluster": "c"}]}]}`, `cluster and path are for release steps`},
		{`{"upstreams": {"c": {"answers": [{"status": 200}]}}, "exchanges": []}`, `upstreams "c": answers[0]: give a path or a prefix`},
		{`{"log_level": "loud", "exchanges": []}`, `log_level "loud"`},
		{`{"properties": [{"path": ["a"], "value": null}], "exchanges": []}`, `want a string`},
	} {
		if _, err := ParseScript([]byte(c.script)); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("ParseScript(%s) = %v, want an error containing %q", c.script, err, c.err)
		}
	}
	// A TCP exchange may tick before its connection.
	if _, err := ParseScript([]byte(`{"exchanges": [{"name": "e", "steps": [{"call": "tick"}, {"call": "new_connection"}, {"call": "wait"}]}]}`)); err != nil {
		t.Error(err)
	}
}
