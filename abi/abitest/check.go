package abitest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
)

// clock is the fixed time plugins read (proxy_get_current_time_nanoseconds
// and WASI's realtime clock), so that every runtime sees the same.
var clock = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// Check runs the script once per runtime compiled into the binary
// (engine.Runtimes), checks every expectation, and compares the runtimes'
// transcripts. Its error is for a script it cannot run (invalid, or no
// runtime compiled in); what the plugin did wrong is in the Report.
func Check(ctx context.Context, wasm []byte, s *Script) (*Report, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	names := engine.Runtimes()
	if len(names) == 0 {
		return nil, errors.New("abitest: no runtime compiled in (import github.com/anywasm/anywasm/engine/all)")
	}
	r := &Report{}
	for _, name := range names {
		r.Runtimes = append(r.Runtimes, runOn(ctx, name, wasm, s))
	}
	r.compare()
	return r, nil
}

// runner runs a script on one runtime.
type runner struct {
	ctx    context.Context
	s      *Script
	rr     *RuntimeReport
	rec    *recorder
	host   *abi.Host
	plugin *abi.Plugin
}

func runOn(ctx context.Context, name string, wasm []byte, s *Script) *RuntimeReport {
	rr := &RuntimeReport{Runtime: name}
	info, err := engine.Lookup(name)
	if err != nil {
		rr.fail("", -1, "", err.Error())
		return rr
	}
	rr.Version = info.Version
	cfg := engine.NewConfig()
	interrupt := info.Capabilities.Has(engine.CapInterrupt)
	if interrupt {
		cfg = cfg.WithInterruptOnContextDone(true)
	}
	rt, err := engine.Open(name, cfg)
	if err != nil {
		rr.fail("", -1, "", "open runtime: "+err.Error())
		return rr
	}
	defer rt.Close(context.Background())
	rec := &recorder{ignore: s.IgnoreLogs, upstreams: s.Upstreams, foreign: s.ForeignFunctions}
	host := abi.NewHost(rt, abi.Options{
		Logger:           slog.New(rec),
		Upstreams:        rec,
		ForeignFunctions: rec.foreignFuncs(),
		Properties: func(path []string) ([]byte, bool) {
			v, ok := s.Properties[strings.Join(path, ".")]
			return []byte(v), ok
		},
		Now:    func() time.Time { return clock },
		Random: newRand(),
	})
	defer host.Close(context.Background())
	pc := abi.PluginConfig{
		Name: s.Name, RootID: s.RootID, VMID: s.VMID,
		Configuration: []byte(s.Configuration), VMConfiguration: []byte(s.VMConfiguration),
		Environment: s.Environment, FailurePolicy: policies[s.FailurePolicy],
	}
	if interrupt {
		pc.CallTimeout = ms(s.CallTimeoutMS, 10*time.Second)
	}
	rn := &runner{ctx: ctx, s: s, rr: rr, rec: rec, host: host}
	rr.Transcript = &Transcript{}
	rn.load(wasm, pc)
	if rn.plugin == nil {
		return rr
	}
	for i := range s.Exchanges {
		rn.exchange(i)
		if ctx.Err() != nil {
			rr.fail("", -1, "", "stopped: "+ctx.Err().Error())
			break
		}
	}
	return rr
}

func ms(v int, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return time.Duration(v) * time.Millisecond
}

func (rn *runner) load(wasm []byte, pc abi.PluginConfig) {
	p, err := rn.host.Load(rn.ctx, wasm, pc)
	lr := &rn.rr.Transcript.Load
	lr.Logs, _ = rn.rec.take()
	want := rn.s.Load
	if err != nil {
		lr.Failure, lr.Err = describeLoadFailure(err), err
		if want.Error == "" {
			rn.rr.fail("", -1, "load", "Load failed: "+err.Error())
		} else if !strings.Contains(err.Error(), want.Error) {
			rn.rr.fail("", -1, "load", fmt.Sprintf("Load failed with %q, want an error containing %q", err, want.Error))
		}
	} else {
		rn.plugin = p
		lr.ABIVersion = p.ABIVersion().String()
		if want.Error != "" {
			rn.rr.fail("", -1, "load", fmt.Sprintf("Load succeeded, want an error containing %q", want.Error))
		}
		if want.ABIVersion != "" && want.ABIVersion != lr.ABIVersion {
			rn.rr.fail("", -1, "load", fmt.Sprintf("ABI version %s, want %s", lr.ABIVersion, want.ABIVersion))
		}
	}
	for _, m := range checkLogs(lr.Logs, want.Logs) {
		rn.rr.fail("", -1, "load", m)
	}
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

func (rn *runner) exchange(i int) {
	e := &rn.s.Exchanges[i]
	er := ExchangeRecord{Name: e.Name}
	var closeErr error
	var failed bool
	if e.isTCP() {
		er.Steps, closeErr, failed = rn.tcp(e)
	} else {
		er.Steps, closeErr, failed = rn.http(e)
	}
	er.Close.Call = "close"
	er.Close.Logs, er.Close.Foreign = rn.rec.take()
	if closeErr != nil && !failed {
		er.Close.Failure, er.Close.Err = describeFailure(closeErr), closeErr
		rn.rr.fail(e.Name, -1, "close", "plugin failed: "+closeErr.Error())
	}
	er.Callouts = rn.rec.takeCallouts()
	for _, m := range rn.host.Metrics().Snapshot() {
		er.Metrics = append(er.Metrics, MetricRecord{Name: m.Name, Type: m.Type.String(), Value: m.Value, Count: m.Count})
	}
	for _, k := range sortedKeys(e.Expect.SharedData) {
		if v, _, ok := rn.host.SharedData(rn.s.VMID, k); ok {
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

// stepDone fills in what every step records, and checks the step.
func (rn *runner) stepDone(e *Exchange, j int, st *Step, r *StepRecord, errBefore, errAfter, hostErr error) {
	r.Logs, r.Foreign = rn.rec.take()
	if errBefore == nil && errAfter != nil {
		r.Failure, r.Err = describeFailure(errAfter), errAfter
	}
	if hostErr != nil {
		r.HostError = hostErr.Error()
	}
	for _, m := range checkStep(st, r) {
		rn.rr.fail(e.Name, j, st.Call, m)
	}
}

// waits reports whether a paused step is waited for: always, but for a
// chunk before the end of the stream (the host buffers it and runs the
// callback again with the next one).
func waits(st *Step) bool { return !isBody(st.Call) || st.EndOfStream }

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

func (rn *runner) wait(r *StepRecord, dir abi.StreamType, waitFn func(context.Context, abi.StreamType) error) {
	ctx, cancel := context.WithTimeout(rn.ctx, ms(rn.s.WaitTimeoutMS, 5*time.Second))
	defer cancel()
	if err := waitFn(ctx, dir); err != nil {
		r.TimedOut = true
		return
	}
	r.Resumed = true
}

func (rn *runner) http(e *Exchange) ([]StepRecord, error, bool) {
	ctx := rn.ctx
	s, err := rn.plugin.NewHTTPStream(ctx)
	if err != nil {
		rn.rr.fail(e.Name, -1, "new stream", err.Error())
		return nil, nil, true
	}
	var recs []StepRecord
	for j := range e.Steps {
		st := &e.Steps[j]
		r := StepRecord{Call: st.Call}
		before := s.Err()
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
			rn.wait(&r, direction(st.Call), s.Wait)
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
		r.Headers = headers().Clone()
		r.Body = string(body)
		if lr := s.LocalResponse(); lr != nil {
			c := *lr
			c.Headers = lr.Headers.Clone()
			r.LocalResponse = &c
		}
		rn.stepDone(e, j, st, &r, before, s.Err(), hostErr)
		recs = append(recs, r)
	}
	before := s.Err()
	err = s.Close(ctx)
	return recs, err, before != nil
}

func (rn *runner) tcp(e *Exchange) ([]StepRecord, error, bool) {
	ctx := rn.ctx
	s, a, err := rn.plugin.NewTCPStream(ctx)
	if s == nil {
		rn.rr.fail(e.Name, -1, NewConnection, err.Error())
		return nil, nil, true
	}
	var recs []StepRecord
	for j := range e.Steps {
		st := &e.Steps[j]
		r := StepRecord{Call: st.Call}
		before := s.Err()
		var hostErr error
		var out []byte
		switch st.Call {
		case NewConnection: // run by NewTCPStream
			before, hostErr = nil, err
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
				rn.wait(&r, direction(st.Call), s.Wait)
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
		rn.stepDone(e, j, st, &r, before, s.Err(), hostErr)
		recs = append(recs, r)
	}
	before := s.Err()
	err = s.Close(ctx)
	return recs, err, before != nil
}
