package abi

import (
	"context"
	"fmt"
	"strconv"
)

// HTTPStream is one HTTP request/response through a plugin: its stream
// context in the plugin. Call the methods in the order the exchange
// happens, from one goroutine; Close it at the end.
//
// A method returning ActionPause means: hold the data. Check LocalResponse
// (the plugin answered, or failed closed) and otherwise call Wait until the
// plugin continues the stream. What a callback changed is read back with
// RequestHeaderMap, ResponseHeaderMap, the trailer getters and the bodies the
// data methods return.
type HTTPStream struct {
	stream
	reqHeaders, reqTrailers   Headers
	respHeaders, respTrailers Headers
	reqBody, respBody         []byte
	// local is how the stream was answered: the plugin's local response,
	// its reset (proxy_close_stream), or the 503 of its failure (failure
	// set). Once the response direction runs after a local response
	// (respAfterLocal: that response is going through the chain, Envoy's
	// sendLocalReplyViaFilterChain), a further answer is kept in direct:
	// it replaces that response and goes straight to the client (Envoy's
	// sendDirectLocalReply). atPause[d] is the answer when direction d
	// paused: Wait returns when it changes.
	local, direct  *LocalResponse
	failure        bool
	respAfterLocal bool
	atPause        [2]*LocalResponse
}

// NewHTTPStream creates a stream context (proxy_on_context_create) on one of
// the plugin's VMs. It is NewHTTPStreamInfo without a StreamInfo.
func (p *Plugin) NewHTTPStream(ctx context.Context) (*HTTPStream, error) {
	return p.NewHTTPStreamInfo(ctx, nil)
}

// NewHTTPStreamInfo creates a stream context whose attributes
// (proxy_get_property) come from info as well as from the stream itself;
// info may be nil and must stay valid until Close.
func (p *Plugin) NewHTTPStreamInfo(ctx context.Context, info *StreamInfo) (*HTTPStream, error) {
	s, _ := p.httpStreams.Get().(*HTTPStream)
	if s == nil {
		s = &HTTPStream{}
	}
	if err := s.start(ctx, p, info); err != nil {
		p.httpStreams.Put(s)
		return nil, err
	}
	if s.c != nil {
		s.c.http = s
	}
	return s, nil
}

// headersAction maps a headers callback's result: Envoy's
// FilterHeadersStatus (Continue 0, StopIteration 1,
// ContinueAndDontEndStream 2, StopAllIterationAndBuffer 3,
// StopAllIterationAndWatermark 4) clamped, as proxy-wasm-cpp-host does, to
// continue (0, 2) or pause (anything else: StopIteration is turned into
// StopAllIteration, Envoy's default).
func headersAction(r uint64) Action {
	if uint32(r) == 0 || uint32(r) == 2 {
		return ActionContinue
	}
	return ActionPause
}

// dataAction maps a data callback's result: Continue 0, anything else
// (StopIterationAndBuffer, StopIterationAndWatermark, StopIterationNoBuffer)
// pauses.
func dataAction(r uint64) Action {
	if uint32(r) == 0 {
		return ActionContinue
	}
	return ActionPause
}

// run calls a stream callback of direction d (0 request, 1 response) and
// applies the failure policy. The stream's state is only touched under the
// VM's lock: callbacks of other goroutines (HTTP callout responses, queue
// deliveries) may reach this stream through the effective context.
func (s *HTTPStream) run(ctx context.Context, d int, cb func(v *vm) callback, name string, toAction func(uint64) Action, a, b uint64) (Action, error) {
	if s.closed {
		return ActionContinue, errStreamClosed
	}
	v := s.v
	v.mu.Lock()
	defer v.mu.Unlock()
	before := s.answer()
	if before != nil {
		// Answered: the request stops here. The response direction runs
		// on for a local response going through the chain (Envoy's
		// Context::encodeHeaders and encodeData run the plugin unless it
		// failed, failure_local_reply_sent_), its own included; a reset
		// ends the stream.
		if d == 0 || s.failure || s.local.Reset || s.direct != nil {
			return ActionPause, nil
		}
		s.respAfterLocal = true
	}
	r, ok := s.invoke(ctx, cb(v), name, a, b)
	if !ok {
		return s.failed(), nil
	}
	if s.answer() != before {
		return ActionPause, nil
	}
	if cb(v).f == nil {
		return ActionContinue, nil
	}
	act := toAction(r)
	if act == ActionPause {
		s.pause(d)
		s.atPause[d] = before
	}
	return act, nil
}

// answer is the stream's latest answer (see local); nil if none. The VM's
// lock is held.
func (s *HTTPStream) answer() *LocalResponse {
	if s.direct != nil {
		return s.direct
	}
	return s.local
}

// answerWith records a local response the plugin sent (the hostcall, or
// its failure): the first answer of the stream, or the direct answer that
// replaces a local response going through the chain; any other is
// ignored. The VM's lock is held.
func (s *HTTPStream) answerWith(lr *LocalResponse) {
	switch {
	case s.local == nil:
		s.local = lr
	case s.mayAnswerAgain():
		s.direct = lr
	default:
		return
	}
	s.wake()
}

// mayAnswerAgain reports whether an answer would replace the local response
// going through the plugin's response callbacks. The VM's lock is held.
func (s *HTTPStream) mayAnswerAgain() bool {
	return s.local != nil && s.respAfterLocal && s.direct == nil && !s.failure && !s.local.Reset
}

// failed applies the failure policy to a stream whose plugin failed. The
// VM's lock is held.
func (s *HTTPStream) failed() Action {
	if s.p.cfg.FailurePolicy == FailOpen {
		return ActionContinue
	}
	if !s.failure {
		// Envoy's Context::failStream: 503, details wasm_fail_stream, gRPC
		// status UNAVAILABLE (14); the body names the plugin. It is sent
		// once (failure_local_reply_sent_) and the plugin is not called
		// for its response.
		before := s.answer()
		s.answerWith(&LocalResponse{Status: 503, Details: "wasm_fail_stream", GRPCStatus: 14,
			Headers: Headers{{"content-type", "text/plain"}},
			Body:    fmt.Appendf(nil, "plugin %s failed\n", s.p.cfg.Name)})
		s.failure = s.answer() != before
	}
	return ActionPause
}

func boolArg(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// RequestHeaders runs proxy_on_request_headers on h, which the stream owns
// from now on (RequestHeaderMap returns it as the plugin left it).
func (s *HTTPStream) RequestHeaders(ctx context.Context, h Headers, endOfStream bool) (Action, error) {
	s.locked(func() { s.reqHeaders = h })
	return s.run(ctx, 0, func(v *vm) callback { return v.cb.requestHeaders }, "proxy_on_request_headers", headersAction,
		uint64(len(h)), boolArg(endOfStream))
}

// RequestBody appends chunk to the buffered request body and runs
// proxy_on_request_body with the buffered size. On ActionContinue it
// returns the buffered body (as the plugin left it) to pass on, and the
// buffer starts again empty; on ActionPause it keeps buffering.
func (s *HTTPStream) RequestBody(ctx context.Context, chunk []byte, endOfStream bool) ([]byte, Action, error) {
	s.locked(func() { s.reqBody = append(s.reqBody, chunk...); s.reqBytes += int64(len(chunk)) })
	a, err := s.run(ctx, 0, func(v *vm) callback { return v.cb.requestBody }, "proxy_on_request_body", dataAction,
		uint64(len(s.reqBody)), boolArg(endOfStream))
	if a == ActionContinue && err == nil {
		return s.TakeRequestBody(), a, nil
	}
	return nil, a, err
}

// RequestTrailers runs proxy_on_request_trailers.
func (s *HTTPStream) RequestTrailers(ctx context.Context, h Headers) (Action, error) {
	s.locked(func() { s.reqTrailers = h })
	return s.run(ctx, 0, func(v *vm) callback { return v.cb.requestTrailers }, "proxy_on_request_trailers", headersAction, uint64(len(h)), 0)
}

// ResponseHeaders runs proxy_on_response_headers.
func (s *HTTPStream) ResponseHeaders(ctx context.Context, h Headers, endOfStream bool) (Action, error) {
	s.locked(func() { s.respHeaders = h })
	return s.run(ctx, 1, func(v *vm) callback { return v.cb.responseHeaders }, "proxy_on_response_headers", headersAction,
		uint64(len(h)), boolArg(endOfStream))
}

// ResponseBody is RequestBody for the response.
func (s *HTTPStream) ResponseBody(ctx context.Context, chunk []byte, endOfStream bool) ([]byte, Action, error) {
	s.locked(func() { s.respBody = append(s.respBody, chunk...); s.respBytes += int64(len(chunk)) })
	a, err := s.run(ctx, 1, func(v *vm) callback { return v.cb.responseBody }, "proxy_on_response_body", dataAction,
		uint64(len(s.respBody)), boolArg(endOfStream))
	if a == ActionContinue && err == nil {
		return s.TakeResponseBody(), a, nil
	}
	return nil, a, err
}

// ResponseTrailers runs proxy_on_response_trailers.
func (s *HTTPStream) ResponseTrailers(ctx context.Context, h Headers) (Action, error) {
	s.locked(func() { s.respTrailers = h })
	return s.run(ctx, 1, func(v *vm) callback { return v.cb.responseTrailers }, "proxy_on_response_trailers", headersAction, uint64(len(h)), 0)
}

// Wait blocks, after an ActionPause of direction dir (StreamHTTPRequest or
// StreamHTTPResponse), until the plugin continues that direction
// (proxy_continue_stream), answers the stream (LocalResponse) or fails, or
// ctx is done. It returns at once if the direction is not paused.
func (s *HTTPStream) Wait(ctx context.Context, dir StreamType) error {
	v := s.v
	if s.closed || v == nil {
		return errStreamClosed
	}
	d := dirOf(dir)
	if err := s.wait(ctx, d, func() bool { return s.answer() != s.atPause[d] || !s.paused[d] || v.failed.Load() }); err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if s.answer() == s.atPause[d] && v.failed.Load() {
		s.err = v.failure()
		s.failed()
	}
	return nil
}

// RequestHeaderMap returns the request headers as the plugin left them.
func (s *HTTPStream) RequestHeaderMap() (h Headers) {
	s.locked(func() { h = s.reqHeaders })
	return h
}

// ResponseHeaderMap returns the response headers as the plugin left them.
func (s *HTTPStream) ResponseHeaderMap() (h Headers) {
	s.locked(func() { h = s.respHeaders })
	return h
}

// RequestTrailerMap returns the request trailers as the plugin left them.
func (s *HTTPStream) RequestTrailerMap() (h Headers) {
	s.locked(func() { h = s.reqTrailers })
	return h
}

// ResponseTrailerMap returns the response trailers as the plugin left them.
func (s *HTTPStream) ResponseTrailerMap() (h Headers) {
	s.locked(func() { h = s.respTrailers })
	return h
}

// TakeRequestBody returns the buffered request body and empties the buffer
// (after a paused body was continued).
func (s *HTTPStream) TakeRequestBody() (b []byte) {
	s.locked(func() { b, s.reqBody = s.reqBody, nil })
	return b
}

// TakeResponseBody is TakeRequestBody for the response.
func (s *HTTPStream) TakeResponseBody() (b []byte) {
	s.locked(func() { b, s.respBody = s.respBody, nil })
	return b
}

// LocalResponse returns the response the plugin sent instead of the
// upstream's, or the 503 of a plugin that failed closed; nil if none.
//
// A local response goes through the response callbacks of the chain, as in
// Envoy: after a stream answered, its ResponseHeaders and ResponseBody
// still run the plugin (unless it failed or reset the stream) on the
// response that answers the exchange, its own or another plugin's. An
// answer the plugin sends then replaces that response, to be sent to the
// client directly (Envoy's sendDirectLocalReply): LocalResponse returns
// the new one, so compare it with what it returned before the call.
func (s *HTTPStream) LocalResponse() (lr *LocalResponse) {
	s.locked(func() { lr = s.answer() })
	return lr
}

// Err returns why the plugin failed during this stream, or nil.
func (s *HTTPStream) Err() (err error) {
	s.locked(func() { err = s.err })
	return err
}

// Close ends the stream context: proxy_on_done, proxy_on_log,
// proxy_on_delete. It returns the plugin's failure, if any. The stream must
// not be used after Close (it is reused for a later stream), nor the header
// maps and bodies it returned.
func (s *HTTPStream) Close(ctx context.Context) error {
	if s.closed {
		return nil
	}
	err := s.finish(ctx)
	p := s.p
	*s = HTTPStream{stream: stream{resume: s.resume, closed: true}}
	p.httpStreams.Put(s)
	return err
}

// headerMap returns the map a hostcall names, nil when this stream has none.
func (s *HTTPStream) headerMap(t mapType) *Headers {
	switch t {
	case mapHTTPRequestHeaders:
		return &s.reqHeaders
	case mapHTTPRequestTrailers:
		return &s.reqTrailers
	case mapHTTPResponseHeaders:
		return &s.respHeaders
	case mapHTTPResponseTrailers:
		return &s.respTrailers
	}
	return nil
}

// responseCode is Envoy's StreamInfo::responseCode: the local response's
// status, or the response headers' :status once they came.
func (s *HTTPStream) responseCode() (int, bool) {
	if lr := s.answer(); lr != nil && !lr.Reset {
		return lr.Status, true
	}
	if st, ok := s.respHeaders.Get(":status"); ok {
		if n, err := strconv.Atoi(st); err == nil {
			return n, true
		}
	}
	return 0, false
}
