package abitest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
)

// clock is the fixed time plugins read (proxy_get_current_time_nanoseconds
// and WASI's realtime clock), so that every runtime sees the same.
var clock = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// CompileCacheDir, when set, is the compile cache of the runtimes Check and
// Run open (engine.Config.WithCompilationCache: a directory private to the
// user): a suite that runs many scripts over the same plugins then compiles
// each plugin once per runtime, not once per script. Set it before running
// scripts (a test's init, TestMain).
var CompileCacheDir string

// Check runs the script once per runtime compiled into the binary
// (engine.Runtimes), checks every expectation, and compares the runtimes'
// transcripts. wasm is the plugin's code (of every plugin that names no
// code of its own). Its error is for a script it cannot run (invalid, a
// plugin that is not a WebAssembly binary, no runtime compiled in); what
// the plugin did wrong is in the Report.
func Check(ctx context.Context, wasm []byte, s *Script) (*Report, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	codes, err := s.codes(wasm)
	if err != nil {
		return nil, err
	}
	names := engine.Runtimes()
	if len(names) == 0 {
		return nil, errors.New("abitest: no runtime registered: import a backend (github.com/anywasm/anywasm/engine/wazero, ...) or engine/all")
	}
	r := &Report{}
	for _, name := range names {
		r.Runtimes = append(r.Runtimes, runOn(ctx, name, codes, s))
	}
	r.compare()
	return r, nil
}

// IsWasm reports whether b starts as a WebAssembly binary does (magic and
// version 1).
func IsWasm(b []byte) bool { return bytes.HasPrefix(b, []byte("\x00asm\x01\x00\x00\x00")) }

// codes returns each plugin's code.
func (s *Script) codes(wasm []byte) ([][]byte, error) {
	var out [][]byte
	for _, p := range s.plugins() {
		code, what := wasm, "the plugin"
		switch {
		case p.Code != nil:
			code, what = p.Code, fmt.Sprintf("plugin %q's code", p.Name)
		case p.Wasm != "":
			b, err := os.ReadFile(p.Wasm)
			if err != nil {
				return nil, fmt.Errorf("abitest: plugin %q: %w", p.Name, err)
			}
			code, what = b, p.Wasm
		}
		if !IsWasm(code) {
			return nil, fmt.Errorf("abitest: %s is not a WebAssembly binary", what)
		}
		out = append(out, code)
	}
	return out, nil
}

// runner runs a script on one runtime.
type runner struct {
	ctx     context.Context
	s       *Script
	rr      *RuntimeReport
	rec     *recorder
	host    *abi.Host
	specs   []PluginSpec
	plugins map[string]*abi.Plugin
	multi   bool
}

func runOn(ctx context.Context, name string, codes [][]byte, s *Script) *RuntimeReport {
	rr := &RuntimeReport{Runtime: name}
	info, err := engine.Lookup(name)
	if err != nil {
		rr.fail("", -1, "", err.Error())
		return rr
	}
	rr.Version = info.Version
	cfg := engine.NewConfig()
	if CompileCacheDir != "" {
		cfg = cfg.WithCompilationCache(CompileCacheDir)
	}
	interrupt := info.Capabilities.Has(engine.CapInterrupt) && !s.NoCallTimeout
	if interrupt {
		cfg = cfg.WithInterruptOnContextDone(true)
	}
	rt, err := engine.Open(name, cfg)
	if err != nil {
		rr.fail("", -1, "", "open runtime: "+err.Error())
		return rr
	}
	defer rt.Close(context.Background())
	rec := newRecorder(s)
	host := abi.NewHost(rt, hostOptions(s, rec))
	defer host.Close(context.Background())
	rn := &runner{ctx: ctx, s: s, rr: rr, rec: rec, host: host, specs: s.plugins(), plugins: map[string]*abi.Plugin{},
		multi: len(s.Plugins) > 0}
	rr.Transcript = &Transcript{multi: rn.multi}
	loaded := true
	for i, spec := range rn.specs {
		loaded = rn.load(codes[i], spec, pluginConfig(s, spec, interrupt)) && loaded
	}
	if loaded {
		for i := range s.Exchanges {
			rn.exchange(i)
			if ctx.Err() != nil {
				rr.fail("", -1, "", "stopped: "+ctx.Err().Error())
				break
			}
		}
	}
	end := &rr.Transcript.End
	end.Unsettled = !rn.settle()
	rn.fill(end, rn.rec.take())
	for _, m := range checkStep(&Step{}, end) {
		rr.fail("", -1, "after the last exchange", m)
	}
	return rr
}

// hostOptions are the host fixtures of the script: a fixed clock, the same
// random bytes on every runtime, no timers (ticks run in tick steps).
func hostOptions(s *Script, rec *recorder) abi.Options {
	return abi.Options{
		Logger:           slog.New(logHandler{r: rec}),
		Upstreams:        rec,
		ForeignFunctions: rec.foreignFuncs(),
		Properties:       s.Properties.lookup,
		Now:              func() time.Time { return clock },
		Random:           newRand(),
		ManualTicks:      true,
	}
}

// pluginConfig is the abi.PluginConfig of a plugin of the script.
func pluginConfig(s *Script, p PluginSpec, interrupt bool) abi.PluginConfig {
	pc := abi.PluginConfig{
		Name: p.Name, RootID: p.RootID, VMID: p.VMID,
		Configuration: []byte(p.Configuration), VMConfiguration: []byte(p.VMConfiguration),
		Environment: p.Environment, FailurePolicy: policies[p.FailurePolicy],
		Snapshot: s.Snapshot,
	}
	if p.LogLevel != "" {
		l, _ := abi.ParseLogLevel(p.LogLevel) // validated
		pc.LogLevel = &l
	}
	if interrupt {
		pc.CallTimeout = ms(s.CallTimeoutMS, 10*time.Second)
	}
	return pc
}

func ms(v int, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return time.Duration(v) * time.Millisecond
}

// settle waits, within the wait timeout, until the plugin has handled the
// answers of its callouts (held ones excepted).
func (rn *runner) settle() bool {
	ctx, cancel := context.WithTimeout(rn.ctx, ms(rn.s.WaitTimeoutMS, 5*time.Second))
	defer cancel()
	return rn.rec.settle(ctx)
}

// fill puts what the recorder took into a step's record.
func (rn *runner) fill(r *StepRecord, p pending) {
	r.Logs, r.Foreign, r.Callouts = p.logs, p.foreign, p.callouts
	var descs []string
	for _, f := range p.failures {
		descs = append(descs, describeFailure(f))
	}
	r.Failure = strings.Join(descs, "; ")
	r.Err = errors.Join(p.failures...)
}

func (rn *runner) load(wasm []byte, spec PluginSpec, pc abi.PluginConfig) bool {
	p, err := rn.host.Load(rn.ctx, wasm, pc)
	unsettled := !rn.settle()
	got := rn.rec.take()
	rn.rr.Transcript.Loads = append(rn.rr.Transcript.Loads, LoadRecord{Plugin: spec.Name})
	lr := &rn.rr.Transcript.Loads[len(rn.rr.Transcript.Loads)-1]
	lr.Logs, lr.Foreign, lr.Callouts, lr.Unimplemented = got.logs, got.foreign, got.callouts, got.unimplemented
	where := "load"
	if rn.multi {
		where = fmt.Sprintf("load of %q", spec.Name)
	}
	fail := func(msg string) { rn.rr.fail("", -1, where, msg) }
	want := spec.Load
	if unsettled {
		fail("callouts not settled within the wait timeout")
	}
	if err != nil {
		lr.Failure, lr.Err = describeLoadFailure(err), err
		switch {
		case want.Error == "" && want.Fail == nil:
			fail("Load failed: " + err.Error())
		case want.Error != "" && !strings.Contains(err.Error(), want.Error):
			fail(fmt.Sprintf("Load failed with %q, want an error containing %q", err, want.Error))
		case want.Fail != nil && !failMatches(lr.Failure, want.Fail):
			fail(fmt.Sprintf("Load failed with %s, want a failure%s", lr.Failure, describeFailExpect(want.Fail)))
		}
	} else {
		rn.plugins[spec.Name] = p
		lr.ABIVersion = p.ABIVersion().String()
		lr.TickPeriod = p.TickPeriod()
		for _, f := range got.failures {
			lr.Failures = append(lr.Failures, describeFailure(f))
			fail("plugin failed: " + f.Error())
		}
		if want.Error != "" || want.Fail != nil {
			fail(fmt.Sprintf("Load succeeded, want it to fail%s", loadWant(want)))
		}
		if want.ABIVersion != "" && want.ABIVersion != lr.ABIVersion {
			fail(fmt.Sprintf("ABI version %s, want %s", lr.ABIVersion, want.ABIVersion))
		}
		if want.TickPeriodMS != nil && time.Duration(*want.TickPeriodMS)*time.Millisecond != lr.TickPeriod {
			fail(fmt.Sprintf("tick period %s, want %dms", lr.TickPeriod, *want.TickPeriodMS))
		}
	}
	for _, u := range want.Unimplemented {
		if !slices.ContainsFunc(lr.Unimplemented, func(s string) bool { return strings.HasPrefix(s, u+" ") }) {
			fail(fmt.Sprintf("%s is not among the unimplemented hostcalls the plugin imports (%s)", u, listOrNone(lr.Unimplemented)))
		}
	}
	for _, m := range checkLogs(lr.Logs, want.Logs) {
		fail(m)
	}
	return err == nil
}

func loadWant(l LoadExpect) string {
	s := ""
	if l.Error != "" {
		s += fmt.Sprintf(" with an error containing %q", l.Error)
	}
	if l.Fail != nil {
		s += describeFailExpect(l.Fail)
	}
	return s
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

// describeFailure is the runtime-neutral part of a plugin's error: the
// callback and the trap code.
func describeFailure(err error) string {
	if err == nil {
		return ""
	}
	callback := "?"
	var pe *abi.PluginError
	if errors.As(err, &pe) {
		callback = pe.Callback
	}
	code := "error"
	var tr *engine.Trap
	if errors.As(err, &tr) {
		code = tr.Code.String()
	} else if errors.Is(err, context.DeadlineExceeded) {
		code = "deadline exceeded"
	}
	return callback + " [" + code + "]"
}

func describeLoadFailure(err error) string {
	var pe *abi.PluginError
	var tr *engine.Trap
	if errors.As(err, &pe) || errors.As(err, &tr) {
		return describeFailure(err)
	}
	return "error" // the message may name the runtime
}

// pluginOf returns the plugin named name, "" for the first.
func (rn *runner) pluginOf(name string) *abi.Plugin {
	if name == "" {
		return rn.plugins[rn.specs[0].Name]
	}
	return rn.plugins[name]
}

func (rn *runner) vmID(name string) string {
	for _, p := range rn.specs {
		if p.Name == name || name == "" {
			return p.VMID
		}
	}
	return ""
}

func (rn *runner) exchange(i int) {
	e := &rn.s.Exchanges[i]
	er := ExchangeRecord{Name: e.Name, Plugin: e.Plugin}
	if er.Plugin == "" && rn.multi {
		er.Plugin = rn.specs[0].Name
	}
	x := &exchangeRun{rn: rn, e: e, p: rn.pluginOf(e.Plugin)}
	switch {
	case !e.hasStream():
	case e.isTCP():
		x.tcp = true
	default:
		x.http = true
	}
	x.start()
	for j := range e.Steps {
		er.Steps = append(er.Steps, x.step(j))
	}
	er.Close.Call = "close"
	closeErr := x.close()
	er.Close.Unsettled = !rn.settle()
	rn.fill(&er.Close, rn.rec.take())
	if closeErr != nil {
		er.Close.HostError = closeErr.Error()
	}
	for _, m := range checkStep(&Step{}, &er.Close) {
		rn.rr.fail(e.Name, -1, "close", m)
	}
	for _, m := range rn.host.Metrics().Snapshot() {
		er.Metrics = append(er.Metrics, MetricRecord{Name: m.Name, Type: m.Type.String(), Value: m.Value, Count: m.Count})
	}
	vmID := rn.vmID(e.Plugin)
	for _, k := range sortedKeys(e.Expect.SharedData) {
		if v, _, ok := rn.host.SharedData(vmID, k); ok {
			er.SharedData = append(er.SharedData, fmt.Sprintf("%s=%q", k, v))
		} else {
			er.SharedData = append(er.SharedData, k+" missing")
		}
	}
	for _, m := range checkExchange(&er, &e.Expect) {
		rn.rr.fail(e.Name, -1, "after the exchange", m)
	}
	rn.rr.Transcript.Exchanges = append(rn.rr.Transcript.Exchanges, er)
}

// exchangeRun is an exchange under way: its stream, if any.
type exchangeRun struct {
	rn        *runner
	e         *Exchange
	p         *abi.Plugin
	http, tcp bool
	hs        *abi.HTTPStream
	ts        *abi.TCPStream
	newAction abi.Action // proxy_on_new_connection's
	newErr    error
	lastDir   abi.StreamType     // the direction of the last stream step
	headers   func() abi.Headers // the map an HTTP step's record shows
}

// start creates the exchange's stream (proxy_on_context_create, and
// proxy_on_new_connection for TCP); what it records goes to the first step.
func (x *exchangeRun) start() {
	ctx := x.rn.ctx
	switch {
	case x.http:
		x.hs, x.newErr = x.p.NewHTTPStream(ctx)
	case x.tcp:
		x.ts, x.newAction, x.newErr = x.p.NewTCPStream(ctx)
	}
}

func (x *exchangeRun) close() error {
	ctx := x.rn.ctx
	switch {
	case x.hs != nil:
		err := x.hs.Close(ctx)
		x.hs = nil
		return hostErrOnly(err)
	case x.ts != nil:
		err := x.ts.Close(ctx)
		x.ts = nil
		return hostErrOnly(err)
	}
	return nil
}

// hostErrOnly drops a plugin's failure (recorded where it happened) from an
// error of abi's.
func hostErrOnly(err error) error {
	var pe *abi.PluginError
	if errors.As(err, &pe) {
		return nil
	}
	return err
}

// waits reports whether a paused step is waited for: always, but for a
// chunk before the end of the stream (the host buffers it and runs the
// callback again with the next one) and a step that must stay paused.
func waits(st *Step) bool { return (!isBody(st.Call) || st.EndOfStream) && !st.Expect.StaysPaused }

// direction is the stream direction a step's call belongs to.
func direction(call string) abi.StreamType {
	switch call {
	case ResponseHeaders, ResponseBody, ResponseTrailers:
		return abi.StreamHTTPResponse
	case NewConnection, DownstreamData, DownstreamClose:
		return abi.StreamDownstream
	case UpstreamData, UpstreamClose:
		return abi.StreamUpstream
	}
	return abi.StreamHTTPRequest
}

// streamWait is Wait of the exchange's stream.
func (x *exchangeRun) streamWait(ctx context.Context, dir abi.StreamType) error {
	if x.hs != nil {
		return x.hs.Wait(ctx, dir)
	}
	return x.ts.Wait(ctx, dir)
}

// paused reports whether dir is paused still: Wait with a done context
// returns at once, nil if the plugin continued, answered or failed.
func (x *exchangeRun) paused(dir abi.StreamType) bool {
	ctx, cancel := context.WithCancel(x.rn.ctx)
	cancel()
	return x.streamWait(ctx, dir) != nil
}

func (x *exchangeRun) wait(r *StepRecord, dir abi.StreamType) {
	ctx, cancel := context.WithTimeout(x.rn.ctx, ms(x.rn.s.WaitTimeoutMS, 5*time.Second))
	defer cancel()
	if err := x.streamWait(ctx, dir); err != nil {
		r.TimedOut = true
		return
	}
	r.Resumed = true
}

// answered reports whether the stream was answered or failed (an HTTP
// stream's local response, a TCP stream's error).
func (x *exchangeRun) answered() bool {
	if x.hs != nil {
		return x.hs.LocalResponse() != nil
	}
	return x.ts.Err() != nil
}

// step runs step j and checks it.
func (x *exchangeRun) step(j int) StepRecord {
	st := &x.e.Steps[j]
	r := StepRecord{Call: st.Call}
	switch {
	case st.Call == Tick:
		x.tick(st, &r)
	case st.Call == Release:
		r.Released = x.rn.rec.release(st.Cluster, st.Path)
	case st.Call == Await:
		x.await(st, &r)
	case x.http:
		x.httpStep(st, &r)
	case x.tcp:
		x.tcpStep(st, &r)
	}
	r.Unsettled = !x.rn.settle() || r.Unsettled
	// What the step left, read once the plugin handled its callouts'
	// answers.
	if x.headers != nil {
		r.Headers = x.headers().Clone()
		x.headers = nil
	}
	if st.Call == Wait {
		x.fillStream(st, &r)
	}
	if x.hs != nil && (httpCalls[st.Call] || st.Call == Wait) {
		if lr := x.hs.LocalResponse(); lr != nil {
			c := *lr
			c.Headers = lr.Headers.Clone()
			r.LocalResponse = &c
		}
	}
	if st.Expect.StaysPaused && r.Action == abi.ActionPause.String() && !x.answered() {
		r.StillPaused = x.paused(x.lastDir)
	}
	x.rn.fill(&r, x.rn.rec.take())
	if st.Call == Tick {
		r.TickPeriod = x.tickPlugin(st).TickPeriod()
	}
	if st.Expect.TickPeriodMS != nil && r.TickPeriod == 0 && st.Call != Tick {
		r.TickPeriod = x.tickPlugin(st).TickPeriod()
	}
	for _, m := range checkStep(st, &r) {
		x.rn.rr.fail(x.e.Name, j, st.Call, m)
	}
	return r
}

func (x *exchangeRun) tickPlugin(st *Step) *abi.Plugin {
	if st.Plugin != "" {
		return x.rn.plugins[st.Plugin]
	}
	return x.p
}

// tick runs proxy_on_tick Times times, letting the plugin handle the
// answers of the callouts each tick makes before the next.
func (x *exchangeRun) tick(st *Step, r *StepRecord) {
	p := x.tickPlugin(st)
	for range max(st.Times, 1) {
		r.Ticks += p.Tick(x.rn.ctx)
		if !x.rn.settle() {
			r.Unsettled = true
		}
	}
}

// await waits until every log the step expects has been written, async
// logs included.
func (x *exchangeRun) await(st *Step, r *StepRecord) {
	ctx, cancel := context.WithTimeout(x.rn.ctx, ms(x.rn.s.WaitTimeoutMS, 5*time.Second))
	defer cancel()
	rec := x.rn.rec
	var found []string
	rec.waitFor(ctx, func() bool {
		all := append(slices.Clone(rec.asyncLog), rec.cur.logs...)
		found = found[:0]
		for _, w := range st.Expect.Logs {
			if i := slices.IndexFunc(all, w.matches); i >= 0 {
				found = append(found, all[i].line(x.rn.multi))
			}
		}
		return len(found) == len(st.Expect.Logs)
	})
	r.Awaited = found
	if len(found) < len(st.Expect.Logs) {
		r.TimedOut = true
	}
}

// fillStream records the stream's state after a wait step: the headers of
// the direction, and what a continued body or data direction passes on.
func (x *exchangeRun) fillStream(st *Step, r *StepRecord) {
	dir := x.lastDir
	if hs := x.hs; hs != nil {
		switch dir {
		case abi.StreamHTTPRequest:
			r.Headers = hs.RequestHeaderMap().Clone()
		default:
			r.Headers = hs.ResponseHeaderMap().Clone()
		}
		if r.Headers == nil {
			r.Headers = abi.Headers{}
		}
	}
	if !r.Resumed {
		return
	}
	switch {
	case x.hs != nil && dir == abi.StreamHTTPRequest:
		r.Body = string(x.hs.TakeRequestBody())
	case x.hs != nil:
		r.Body = string(x.hs.TakeResponseBody())
	case dir == abi.StreamDownstream:
		r.Body = string(x.ts.TakeDownstream())
	default:
		r.Body = string(x.ts.TakeUpstream())
	}
}

// waitStep is a wait step: it waits for the paused direction (or, if the
// step expects it to stay paused, only checks it is).
func (x *exchangeRun) waitStep(st *Step, r *StepRecord) {
	if st.Direction != "" {
		x.lastDir = directions[st.Direction]
	}
	if st.Expect.StaysPaused {
		r.Action = abi.ActionPause.String()
		return
	}
	x.wait(r, x.lastDir)
	r.Resumed = r.Resumed && !x.answered()
	if r.Resumed {
		r.Action = abi.ActionContinue.String()
	} else {
		r.Action = abi.ActionPause.String()
	}
}

func (x *exchangeRun) httpStep(st *Step, r *StepRecord) {
	ctx, s := x.rn.ctx, x.hs
	if s == nil {
		r.HostError = "new stream: " + x.newErr.Error()
		return
	}
	if st.Call == Wait {
		x.waitStep(st, r)
		return
	}
	x.lastDir = direction(st.Call)
	var a abi.Action
	var hostErr error
	var body []byte
	var headers func() abi.Headers
	in := abi.Headers(st.Headers).Clone() // the stream owns and changes it
	switch st.Call {
	case RequestHeaders:
		a, hostErr = s.RequestHeaders(ctx, in, st.EndOfStream)
		headers = s.RequestHeaderMap
	case RequestBody:
		body, a, hostErr = s.RequestBody(ctx, []byte(st.Body), st.EndOfStream)
		headers = s.RequestHeaderMap
	case RequestTrailers:
		a, hostErr = s.RequestTrailers(ctx, in)
		headers = s.RequestTrailerMap
	case ResponseHeaders:
		a, hostErr = s.ResponseHeaders(ctx, in, st.EndOfStream)
		headers = s.ResponseHeaderMap
	case ResponseBody:
		body, a, hostErr = s.ResponseBody(ctx, []byte(st.Body), st.EndOfStream)
		headers = s.ResponseHeaderMap
	case ResponseTrailers:
		a, hostErr = s.ResponseTrailers(ctx, in)
		headers = s.ResponseTrailerMap
	}
	r.Action = a.String()
	if a == abi.ActionPause && hostErr == nil && s.LocalResponse() == nil && s.Err() == nil && waits(st) {
		x.wait(r, x.lastDir)
		// Resumed means continued: an answer (local response) or a
		// failure that ended the wait is recorded as such, whether it
		// came before or during the wait.
		r.Resumed = r.Resumed && s.LocalResponse() == nil && s.Err() == nil
		if r.Resumed {
			switch st.Call {
			case RequestBody:
				body = s.TakeRequestBody()
			case ResponseBody:
				body = s.TakeResponseBody()
			}
		}
	}
	x.headers = headers
	r.Body = string(body)
	if hostErr != nil {
		r.HostError = hostErr.Error()
	}
}

func (x *exchangeRun) tcpStep(st *Step, r *StepRecord) {
	ctx, s := x.rn.ctx, x.ts
	if s == nil {
		r.HostError = "new connection: " + x.newErr.Error()
		return
	}
	if st.Call == Wait {
		x.waitStep(st, r)
		return
	}
	x.lastDir = direction(st.Call)
	var hostErr error
	var out []byte
	a := x.newAction
	switch st.Call {
	case NewConnection: // run by NewTCPStream
		hostErr = hostErrOnly(x.newErr)
	case DownstreamData:
		out, a, hostErr = s.DownstreamData(ctx, []byte(st.Body), st.EndOfStream)
	case UpstreamData:
		out, a, hostErr = s.UpstreamData(ctx, []byte(st.Body), st.EndOfStream)
	case DownstreamClose:
		hostErr = s.DownstreamClose(ctx, peers[st.Peer])
	case UpstreamClose:
		hostErr = s.UpstreamClose(ctx, peers[st.Peer])
	}
	if st.Call != DownstreamClose && st.Call != UpstreamClose {
		r.Action = a.String()
		if a == abi.ActionPause && hostErr == nil && s.Err() == nil && waits(st) {
			x.wait(r, x.lastDir)
			r.Resumed = r.Resumed && s.Err() == nil
			if r.Resumed {
				switch st.Call {
				case DownstreamData:
					out = s.TakeDownstream()
				case UpstreamData:
					out = s.TakeUpstream()
				}
			}
		}
	}
	r.Body = string(out)
	if hostErr != nil {
		r.HostError = hostErr.Error()
	}
}
