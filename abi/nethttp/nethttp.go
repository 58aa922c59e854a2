// Package nethttp runs Proxy-Wasm HTTP plugins as net/http middleware.
//
// A chain of plugins sees every request and response the way Envoy's HTTP
// filter chain shows them to Proxy-Wasm filters: request headers, body and
// trailers in chain order, then response headers, body and trailers in
// reverse order. Plugins may rewrite headers (pseudo-headers :method, :path
// and :authority included), rewrite bodies, answer locally, and pause a
// stream (an HTTP callout, say) until they continue it.
//
// Bodies stream: each chunk goes through the chain as it arrives. A plugin
// that pauses a body makes the middleware keep feeding it later chunks,
// which it buffers, until it continues; the buffer a paused plugin holds is
// bounded by Options.MaxBufferBytes (413 for a request body, 500 for a
// response body whose headers have not been sent, a reset otherwise).
//
// The plugins see the whole request body before the client gets anything:
// until the first chunk of the request body has been through the chain,
// and then while a plugin holds it (paused and not continued), the
// response waits, and the middleware reads the rest of the body through the
// chain itself when the handler (an upstream that answered early, say)
// does not. Hop-by-hop headers, and those the client's Connection header
// names, are removed before the plugins see the request.
//
// A local response (a plugin's, or the middleware's own 413, 503 or 408)
// is sent as Envoy's filter manager sends it: one decided before the
// handler's response headers went into the chain runs through the response
// callbacks of the plugins the request reached, the sender's own included
// and the failed ones left out, last first; one decided later goes to the
// client as it is; once the response headers were sent, the exchange is
// reset. For a gRPC request it is a trailers-only response (grpc-status,
// grpc-message).
//
// Limits: a plugin that paused a body in the middle gets its buffer again
// with the next chunk or at the end of the body, so a proxy_continue_stream
// in between takes effect then; a handler that hijacks the connection
// (WebSocket upgrades through httputil.ReverseProxy) is refused by the
// response writer, which does not implement http.Hijacker.
package nethttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/anywasm/anywasm/abi"
)

// Chain supplies the plugins of one exchange: Acquire is called when a
// request arrives and Release with the same slice once the exchange is done,
// so that an embedder can swap plugins (reload) without dropping exchanges
// in flight.
//
// A nil entry is a filter whose configuration has not arrived (Envoy's
// extension config discovery before its first configuration): when the
// request headers reach it, the exchange is answered 500 with no body and
// no details, as Envoy's MissingConfigFilter answers
// (source/common/http/filter_chain_helper.cc); the plugins before it have
// seen the request headers and see the answer, those after it see
// nothing.
type Chain interface {
	Acquire() []*abi.Plugin
	Release([]*abi.Plugin)
}

// Plugins returns a fixed chain.
func Plugins(ps ...*abi.Plugin) Chain { return fixed(ps) }

type fixed []*abi.Plugin

func (f fixed) Acquire() []*abi.Plugin { return f }
func (f fixed) Release([]*abi.Plugin)  {}

// Options configure the middleware.
type Options struct {
	// MaxBufferBytes bounds the body a paused plugin may buffer, per
	// plugin and direction. Default 1 MiB (Envoy's default buffer limit).
	MaxBufferBytes int
	// ChunkSize is the size of the reads of a request body. Default 32 KiB.
	ChunkSize int
	// Logger receives what the middleware itself has to say (exchanges it
	// had to reset, plugins it could not reach). Default slog.Default().
	Logger *slog.Logger
	// Info, when set, completes what the plugins' attributes
	// (proxy_get_property) know of a request before its streams are
	// created: its route and cluster, the connection id (ConnectionID
	// reads one put in the request's context by WithConnectionID). The
	// middleware itself sets the downstream addresses, the protocol, TLS
	// and, when the handler answers, response.code_details "via_upstream"
	// (unless the handler set details); the handler records the upstream
	// with StreamInfoFrom(r).SetUpstream.
	Info func(r *http.Request, info *abi.StreamInfo)
}

// DefaultMaxBufferBytes is the default of Options.MaxBufferBytes.
const DefaultMaxBufferBytes = 1 << 20

// New returns next wrapped in the plugins of chain.
func New(next http.Handler, chain Chain, opts Options) http.Handler {
	if opts.MaxBufferBytes <= 0 {
		opts.MaxBufferBytes = DefaultMaxBufferBytes
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = 32 << 10
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &middleware{next: next, chain: chain, opts: opts}
}

// Middleware returns New as a func(http.Handler) http.Handler.
func Middleware(chain Chain, opts Options) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler { return New(next, chain, opts) }
}

type middleware struct {
	next  http.Handler
	chain Chain
	opts  Options
}

func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	plugins := m.chain.Acquire()
	defer m.chain.Release(plugins)
	if len(plugins) == 0 {
		m.next.ServeHTTP(w, r)
		return
	}
	// An exchange is not pooled: a transport may still read the request
	// body after the handler returned, and must find this exchange closed.
	x := &exchange{m: m, ctx: context.WithoutCancel(r.Context()), w: w,
		grpc: isGRPC(r.Header.Get("Content-Type")), head: r.Method == http.MethodHead}
	x.fillInfo(r)
	x.wctx, x.cancel = context.WithCancel(r.Context())
	x.idle.L = &x.mu
	x.rw = responseWriter{x: x, header: make(http.Header)}
	defer func() {
		v := recover()
		if v != nil && v != http.ErrAbortHandler {
			x.finish()
			panic(v)
		}
		if v != nil { // the handler gave up: answer if a plugin did
			x.writeLocal()
		}
		x.finish()
		if v != nil && !x.answered || x.aborted {
			// The response was under way when a plugin answered or
			// failed: like Envoy, reset the stream.
			panic(http.ErrAbortHandler)
		}
	}()
	if !x.open(plugins) {
		x.writeLocal()
		return
	}
	eos := r.Body == nil || r.Body == http.NoBody
	h, ok := x.headers(requestHeaders, requestMap(r), eos)
	if !ok {
		x.writeLocal()
		return
	}
	m.next.ServeHTTP(&x.rw, x.request(r, h, eos))
	x.responseDone()
}

// The directions of an exchange, as indexes.
const (
	dirRequest  = 0
	dirResponse = 1
)

func dirOf(resp bool) int {
	if resp {
		return dirResponse
	}
	return dirRequest
}

// streamType is the abi direction of d.
func streamType(d int) abi.StreamType {
	if d == dirResponse {
		return abi.StreamHTTPResponse
	}
	return abi.StreamHTTPRequest
}

// exchange is one request/response through the chain.
//
// The streams are owned by the handler's goroutine, which creates them and,
// in finish, closes them. The request body may be read on another goroutine
// (the transport of httputil.ReverseProxy writes it while the handler waits
// for the response, and may go on reading it after the handler returned):
// that goroutine uses the streams only between enter and leave, and finish
// first marks the exchange closed, wakes the waits and waits for it to
// leave, so that no goroutine touches a closed stream. mu serializes the
// calls into the streams and is never held while waiting for a plugin.
type exchange struct {
	m        *middleware
	ctx      context.Context // callbacks: not cancelled when the client goes
	wctx     context.Context // waits: cancelled when the client goes or the exchange ends
	cancel   context.CancelFunc
	w        http.ResponseWriter
	rw       responseWriter
	body     *requestBody // nil without a request body
	plugins  []*abi.Plugin
	info     abi.StreamInfo // the attributes of the request (attributes.go)
	answered bool           // the local response was written
	aborted  bool           // the local response came too late: reset
	grpc     bool           // a gRPC request: local responses are trailers-only
	head     bool           // a HEAD request: local responses have no body

	mu      sync.Mutex
	idle    sync.Cond         // signalled when active drops to 0
	active  int               // goroutines other than the handler's inside enter/leave
	streams []*abi.HTTPStream // nil where a fail-open plugin was unreachable
	// seen[k]: the request headers reached stream k (Envoy creates a
	// filter's Wasm context there, and a local response runs only through
	// the filters that have one).
	seen []bool
	// held[d][k] are the bytes of direction d's body plugin k holds since
	// it paused; holding[d][k] says it paused and has not let go yet (a
	// pause at the end of a body may hold no bytes).
	held    [2][]int
	holding [2][]bool
	local   *abi.LocalResponse
	closed  bool
}

// open creates a stream per plugin. A plugin whose VM cannot be had is
// skipped if it fails open, and answers 503 otherwise.
func (x *exchange) open(plugins []*abi.Plugin) bool {
	x.plugins = plugins
	n := len(plugins)
	x.streams = make([]*abi.HTTPStream, n)
	held, flags := make([]int, 2*n), make([]bool, 3*n) // one allocation each
	x.seen = flags[2*n:]
	for d := range x.held {
		x.held[d] = held[d*n : (d+1)*n : (d+1)*n]
		x.holding[d] = flags[d*n : (d+1)*n : (d+1)*n]
	}
	for i, p := range plugins {
		if p == nil { // a filter missing its configuration: headerStep answers
			continue
		}
		s, err := p.NewHTTPStreamInfo(x.ctx, &x.info)
		if err != nil {
			x.m.opts.Logger.Error("nethttp: plugin unavailable", "plugin", p.Config().Name, "err", err)
			if p.Config().FailurePolicy != abi.FailOpen {
				x.answer(unavailable(p))
				return false
			}
		}
		x.streams[i] = s
	}
	return true
}

// missingConfig is the answer of a filter missing its configuration:
// Envoy's MissingConfigFilter sends a local reply 500 with an empty body
// and empty details (and sets the response flag NoFilterConfigFound,
// which anywasm does not have).
func missingConfig() *abi.LocalResponse {
	return &abi.LocalResponse{Status: http.StatusInternalServerError, GRPCStatus: -1}
}

func unavailable(p *abi.Plugin) *abi.LocalResponse {
	return &abi.LocalResponse{Status: http.StatusServiceUnavailable, Details: "wasm_plugin_unavailable", GRPCStatus: -1,
		Headers: abi.Headers{{Key: "content-type", Value: "text/plain"}},
		Body:    fmt.Appendf(nil, "plugin %s unavailable\n", p.Config().Name)}
}

// enter admits a goroutine other than the handler's to the streams; false
// when the exchange is over. Every enter that returns true is matched by a
// leave.
func (x *exchange) enter() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return false
	}
	x.active++
	return true
}

func (x *exchange) leave() {
	x.mu.Lock()
	x.active--
	if x.active == 0 {
		x.idle.Broadcast()
	}
	x.mu.Unlock()
}

// finish ends the exchange: no goroutine enters any more, those inside are
// woken from their waits and waited for, and the streams are closed
// (proxy_on_done, proxy_on_log, proxy_on_delete).
func (x *exchange) finish() {
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		return
	}
	x.closed = true
	x.cancel()
	for x.active > 0 {
		x.idle.Wait()
	}
	streams := x.streams
	x.mu.Unlock()
	for i, s := range streams {
		if s == nil {
			continue
		}
		if err := s.Close(x.ctx); err != nil {
			x.m.opts.Logger.Debug("nethttp: stream ended with a plugin failure", "plugin", x.plugins[i].Config().Name, "err", err)
		}
	}
}

// ErrAnswered is the error a handler gets from the request body or the
// response writer once a plugin answered the exchange itself (or failed
// closed): the handler should stop; the middleware sends the answer.
var ErrAnswered = errors.New("nethttp: the exchange was answered by a plugin")

// order returns the stream index of the i-th step of a direction: chain
// order for the request, reverse for the response.
func (x *exchange) order(resp bool, i int) int {
	if resp {
		return len(x.streams) - 1 - i
	}
	return i
}

// lock locks x.mu and returns stream k; false (unlocked) when the exchange
// is over.
func (x *exchange) lock(k int) (*abi.HTTPStream, bool) {
	x.mu.Lock()
	if x.closed || x.local != nil {
		x.mu.Unlock()
		return nil, false
	}
	return x.streams[k], true
}

// The header phases.
const (
	requestHeaders = iota
	requestTrailers
	responseHeaders
	responseTrailers
)

// headers runs a headers or trailers callback through the chain and
// returns the map as the last plugin left it; false when the exchange was
// answered (x.local).
func (x *exchange) headers(phase int, h abi.Headers, eos bool) (abi.Headers, bool) {
	resp := phase >= responseHeaders
	for i := range x.streams {
		var ok bool
		if h, ok = x.headerStep(phase, x.order(resp, i), h, eos); !ok {
			return nil, false
		}
	}
	return h, true
}

// headerStep runs the headers or trailers callback of stream k, waiting for
// it if it pauses, and returns the map as it left it; false when the
// exchange was answered.
func (x *exchange) headerStep(phase, k int, h abi.Headers, eos bool) (abi.Headers, bool) {
	resp := phase >= responseHeaders
	s, ok := x.lock(k)
	if !ok {
		return nil, false
	}
	if s == nil {
		if phase == requestHeaders && x.plugins[k] == nil {
			x.local = missingConfig()
			x.mu.Unlock()
			return nil, false
		}
		x.mu.Unlock()
		return h, true
	}
	var a abi.Action
	switch phase {
	case requestHeaders:
		x.seen[k] = true
		a, _ = s.RequestHeaders(x.ctx, h, eos)
	case requestTrailers:
		a, _ = s.RequestTrailers(x.ctx, h)
	case responseHeaders:
		a, _ = s.ResponseHeaders(x.ctx, h, eos)
	default:
		a, _ = s.ResponseTrailers(x.ctx, h)
	}
	x.mu.Unlock()
	if a == abi.ActionPause && !x.wait(s, dirOf(resp)) {
		return nil, false
	}
	// The next plugin gets a copy: a paused plugin's later callbacks (a
	// callout's answer) may still change its own map.
	// The copy has room for what the next plugin adds.
	switch phase {
	case requestHeaders:
		return withSlack(s.RequestHeaderMap()), true
	case requestTrailers:
		return withSlack(s.RequestTrailerMap()), true
	case responseHeaders:
		return withSlack(s.ResponseHeaderMap()), true
	}
	return withSlack(s.ResponseTrailerMap()), true
}

// withSlack is a copy of h with room for addSlack more headers (nil for
// nil or empty, as h.Clone).
func withSlack(h abi.Headers) abi.Headers {
	if len(h) == 0 {
		return nil
	}
	return append(make(abi.Headers, 0, len(h)+addSlack), h...)
}

// trailers runs trailers through the chain as Envoy's filter chain does: a
// plugin's trailers callback runs while the body it holds is still held (it
// may read it, and answer instead), and only then does what it held go on
// to the next plugins (without end_of_stream: the trailers end the stream),
// before its trailers. It returns the body that came out of the chain's end
// and the trailers as the last plugin left them.
func (x *exchange) trailers(resp bool, t abi.Headers) ([]byte, abi.Headers, error) {
	phase := requestTrailers
	if resp {
		phase = responseTrailers
	}
	var out []byte
	for i := range x.streams {
		k := x.order(resp, i)
		var ok bool
		if t, ok = x.headerStep(phase, k, t, false); !ok {
			return nil, nil, ErrAnswered
		}
		if b := x.take(resp, k); len(b) > 0 {
			o, err := x.data(resp, i+1, b, false)
			if err != nil {
				return nil, nil, err
			}
			out = append(out, o...)
		}
	}
	return out, t, nil
}

// wait waits for a stream paused in direction d; false when the exchange is
// answered (the plugin's local response, a failure, or a client that went
// away). The caller is the handler's goroutine or inside enter/leave.
func (x *exchange) wait(s *abi.HTTPStream, d int) bool {
	if lr := s.LocalResponse(); lr != nil {
		x.answer(lr)
		return false
	}
	if err := s.Wait(x.wctx, streamType(d)); err != nil {
		x.answer(&abi.LocalResponse{Status: statusClientGone, Details: "client_gone", GRPCStatus: -1})
		return false
	}
	if lr := s.LocalResponse(); lr != nil {
		x.answer(lr)
		return false
	}
	return true
}

// statusClientGone marks an exchange whose client went away while a plugin
// held it (nginx's 499): nothing is written.
const statusClientGone = 499

func (x *exchange) answer(lr *abi.LocalResponse) {
	x.mu.Lock()
	if x.local == nil {
		x.local = lr
	}
	x.mu.Unlock()
}

func (x *exchange) localResponse() *abi.LocalResponse {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.local
}

// data runs a body chunk through the chain from step from on and returns
// what comes out of its end (nil while a plugin holds it). A plugin that
// pauses at the end of the stream is waited for. The caller is the
// handler's goroutine or inside enter/leave.
func (x *exchange) data(resp bool, from int, chunk []byte, eos bool) ([]byte, error) {
	d := dirOf(resp)
	for i := from; i < len(x.streams); i++ {
		k := x.order(resp, i)
		s, ok := x.lock(k)
		if !ok {
			return nil, ErrAnswered
		}
		if s == nil {
			x.mu.Unlock()
			continue
		}
		var out []byte
		var a abi.Action
		if resp {
			out, a, _ = s.ResponseBody(x.ctx, chunk, eos)
		} else {
			out, a, _ = s.RequestBody(x.ctx, chunk, eos)
		}
		if a == abi.ActionContinue {
			x.held[d][k], x.holding[d][k] = 0, false
			x.mu.Unlock()
			chunk = out
			continue
		}
		x.held[d][k] += len(chunk)
		x.holding[d][k] = true
		held := x.held[d][k]
		lr := s.LocalResponse()
		x.mu.Unlock()
		if lr != nil {
			x.answer(lr)
			return nil, ErrAnswered
		}
		if held > x.m.opts.MaxBufferBytes {
			x.answer(tooLarge(resp, x.plugins[k], x.m.opts.MaxBufferBytes))
			return nil, ErrAnswered
		}
		if !eos {
			return nil, nil
		}
		if !x.wait(s, d) {
			return nil, ErrAnswered
		}
		chunk = x.take(resp, k)
	}
	return chunk, nil
}

// take empties what stream k holds of a body.
func (x *exchange) take(resp bool, k int) []byte {
	d := dirOf(resp)
	x.mu.Lock()
	defer x.mu.Unlock()
	s := x.streams[k]
	if s == nil || x.closed || !x.holding[d][k] {
		return nil
	}
	x.held[d][k], x.holding[d][k] = 0, false
	if resp {
		return s.TakeResponseBody()
	}
	return s.TakeRequestBody()
}

// holdsRequest reports whether, in an exchange not answered yet, a plugin
// holds the request body (it paused it and has not let it go) or may still
// hold it: no chunk has been through the chain yet (started false).
func (x *exchange) holdsRequest(started bool) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed || x.local != nil {
		return false
	}
	if !started {
		return true
	}
	for _, h := range x.holding[dirRequest] {
		if h {
			return true
		}
	}
	return false
}

// settleRequest runs before anything of the response reaches the client:
// until the first chunk of the request body has been through the chain,
// and then while a plugin holds the body, the body is read through the
// chain here (whether or not the handler reads it: an upstream may answer
// without reading), so that a plugin that holds it sees all of it and
// decides (a local response replaces the handler's) before the client gets
// an answer.
func (x *exchange) settleRequest() {
	if x.body != nil {
		x.body.drain()
	}
}

func tooLarge(resp bool, p *abi.Plugin, limit int) *abi.LocalResponse {
	status, what := http.StatusRequestEntityTooLarge, "request"
	if resp {
		status, what = http.StatusInternalServerError, "response"
	}
	return &abi.LocalResponse{Status: status, Details: what + "_payload_too_large", GRPCStatus: -1,
		Headers: abi.Headers{{Key: "content-type", Value: "text/plain"}},
		Body:    fmt.Appendf(nil, "%s body too large: plugin %s buffered more than %d bytes\n", what, p.Config().Name, limit)}
}

// bodyFailure is the answer to an exchange whose request body could not be
// read: 408 after a read timeout, 413 over a limit the server set, and
// nothing at all (the client is gone or broke the framing) otherwise.
func bodyFailure(err error) *abi.LocalResponse {
	var ne net.Error
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return &abi.LocalResponse{Status: http.StatusRequestTimeout, Details: "request_body_timeout", GRPCStatus: -1,
			Headers: abi.Headers{{Key: "content-type", Value: "text/plain"}, {Key: "connection", Value: "close"}},
			Body:    []byte("request body timeout\n")}
	case errors.As(err, &mbe):
		return &abi.LocalResponse{Status: http.StatusRequestEntityTooLarge, Details: "request_payload_too_large", GRPCStatus: -1,
			Headers: abi.Headers{{Key: "content-type", Value: "text/plain"}, {Key: "connection", Value: "close"}},
			Body:    []byte("request body too large\n")}
	}
	return &abi.LocalResponse{Status: statusClientGone, Details: "downstream_remote_disconnect", GRPCStatus: -1}
}

// writeLocal sends the local response, if there is one, as Envoy's
// DownstreamFilterManager::sendLocalReply does: before the handler's
// response headers went into the chain, through the response callbacks of
// the chain (sendLocalReplyViaFilterChain); once they are in the chain but
// not sent, to the client as it is (sendDirectLocalReply); after they were
// sent, the exchange is reset.
func (x *exchange) writeLocal() {
	lr := x.localResponse()
	if lr == nil || x.answered || x.aborted {
		return
	}
	if x.rw.sent {
		x.aborted = true
		x.m.opts.Logger.Warn("nethttp: reset a response under way", "status", lr.Status, "details", lr.Details)
		return
	}
	x.answered, x.rw.sent = true, true
	if ends(lr) {
		x.aborted = true
		return
	}
	x.info.SetResponseCodeDetails(lr.Details) // as sendLocalReply does, for the plugins' response.code_details
	h, body, headersOnly := x.prepareLocal(lr)
	if !x.rw.chained {
		var direct *abi.LocalResponse
		var ok bool
		if h, body, direct, ok = x.localThroughChain(h, body, headersOnly); !ok {
			x.aborted = true // the client went away while a plugin held the response
			return
		}
		if direct != nil {
			if ends(direct) {
				x.aborted = true
				return
			}
			x.m.opts.Logger.Debug("nethttp: a plugin answered a local response", "status", direct.Status, "details", direct.Details)
			x.info.SetResponseCodeDetails(direct.Details)
			h, body, headersOnly = x.prepareLocal(direct)
		}
	}
	out := x.w.Header()
	clear(out)
	status := toHeader(out, h, http.StatusInternalServerError)
	if !headersOnly {
		// The body is what the plugins left: its length, whatever
		// content-length they kept.
		out.Set("Content-Length", strconv.Itoa(len(body)))
	}
	x.w.WriteHeader(status)
	if !headersOnly {
		_, _ = x.w.Write(body)
	}
}

// toHeader adds the response headers h to out, pseudo-headers left out,
// and returns their :status, or status if it has none in 200..999.
func toHeader(out http.Header, h abi.Headers, status int) int {
	vals := make([]string, 0, len(h))
	for _, kv := range h {
		if kv.Key == ":status" {
			if n, err := strconv.Atoi(kv.Value); err == nil && n >= 200 && n <= 999 {
				status = n
			}
		} else if kv.Key != "" && kv.Key[0] != ':' {
			vals = addValue(out, vals, kv.Key, kv.Value)
		}
	}
	return status
}

// addValue is out.Add(key, value) with the value's slice taken from vals,
// which the caller made with room for every value it adds: one allocation
// for all the keys instead of one per key. Each key's slice is capped at
// its length, so that appending to it (a later Add) copies it rather than
// overwrite the next key's value. The key is canonicalized without
// allocating for the common ones.
func addValue(out http.Header, vals []string, key, value string) []string {
	ck := canonical(key)
	if vs, ok := out[ck]; ok {
		out[ck] = append(vs, value)
		return vals
	}
	if len(vals) == cap(vals) { // more values than the caller counted
		out[ck] = []string{value}
		return vals
	}
	vals = append(vals, value)
	n := len(vals)
	out[ck] = vals[n-1 : n : n]
	return vals
}

// canonical is http.CanonicalHeaderKey(k) for a lower-case key, without
// allocating for the common ones (net/textproto interns only keys that are
// already canonical or in its own table, and a plugin's are lower-case).
func canonical(k string) string {
	if c, ok := commonCanonical[k]; ok {
		return c
	}
	return http.CanonicalHeaderKey(k)
}

// statusText is strconv.Itoa of the status codes 100 to 599, made once: a
// response's :status header without an allocation.
var statusText = func() []string {
	t := make([]string, 600)
	for i := 100; i < len(t); i++ {
		t[i] = strconv.Itoa(i)
	}
	return t
}()

func itoaStatus(code int) string {
	if code >= 100 && code < len(statusText) {
		return statusText[code]
	}
	return strconv.Itoa(code)
}

// ends reports whether a local response writes nothing: the stream is
// reset (a plugin closed it, or the client went away).
func ends(lr *abi.LocalResponse) bool { return lr.Status == statusClientGone || lr.Reset }

// prepareLocal builds the response a local response is, as Envoy's
// Utility::prepareLocalReply and encodeLocalReply: :status and the
// plugin's headers, then content-length and (if the plugin set none)
// content-type text/plain for a body, neither without one; headersOnly
// when there is no body to send (none, a HEAD request, or gRPC). For a gRPC
// request: :status 200, content-type application/grpc, grpc-status (the
// plugin's header, else its gRPC status, else the HTTP status mapped) and
// grpc-message (the body, percent-encoded), all in the headers: a
// trailers-only response.
func (x *exchange) prepareLocal(lr *abi.LocalResponse) (h abi.Headers, body []byte, headersOnly bool) {
	h = make(abi.Headers, 0, 4+len(lr.Headers))
	h = append(h, abi.Header{Key: ":status", Value: itoaStatus(lr.Status)})
	for _, kv := range lr.Headers {
		if kv.Key != "" && kv.Key[0] != ':' {
			h = append(h, kv)
		}
	}
	body = lr.Body
	if x.grpc {
		h.Set(":status", "200")
		h.Set("content-type", "application/grpc")
		if _, ok := h.Get("grpc-status"); !ok {
			code := int(lr.GRPCStatus)
			if code < 0 {
				code = grpcStatusOf(lr.Status)
			}
			h.Add("grpc-status", strconv.Itoa(code))
		}
		if len(body) > 0 && !x.head {
			h.Set("grpc-message", percentEncode(body))
		}
		h.Del("content-length")
		return h, nil, true
	}
	if len(body) > 0 {
		h.Set("content-length", strconv.Itoa(len(body)))
		if _, ok := h.Get("content-type"); !ok {
			h.Add("content-type", "text/plain")
		}
	} else {
		h.Del("content-length")
		h.Del("content-type")
	}
	return h, body, len(body) == 0 || x.head
}

// localThroughChain runs a local response through the response callbacks
// of the plugins the request reached, last first, as Envoy's
// sendLocalReplyViaFilterChain runs it through every encoder filter and a
// Wasm filter passes it on unless its context was never created (the
// request did not reach it) or it failed (Context::encodeHeaders). A
// plugin may change it, pause it (it is waited for) or answer instead:
// then direct is that answer, to be sent as it is. ok is false when the
// client went away while a plugin held the response.
func (x *exchange) localThroughChain(h abi.Headers, body []byte, headersOnly bool) (_ abi.Headers, _ []byte, direct *abi.LocalResponse, ok bool) {
	var live []*abi.HTTPStream
	x.mu.Lock()
	if !x.closed {
		for i := range x.streams {
			k := x.order(true, i)
			if s := x.streams[k]; s != nil && x.seen[k] && s.Err() == nil {
				live = append(live, s)
			}
		}
	}
	x.mu.Unlock()
	for _, s := range live {
		before := s.LocalResponse()
		x.mu.Lock()
		a, _ := s.ResponseHeaders(x.ctx, h, headersOnly)
		x.mu.Unlock()
		if direct, ok = x.localSettled(s, a, before); direct != nil || !ok {
			return nil, nil, direct, ok
		}
		h = s.ResponseHeaderMap().Clone()
	}
	if headersOnly {
		return h, nil, nil, true
	}
	for _, s := range live {
		if s.Err() != nil { // failed in its headers callback, fail open
			continue
		}
		before := s.LocalResponse()
		x.mu.Lock()
		out, a, _ := s.ResponseBody(x.ctx, body, true)
		x.mu.Unlock()
		if direct, ok = x.localSettled(s, a, before); direct != nil || !ok {
			return nil, nil, direct, ok
		}
		if a == abi.ActionContinue {
			body = out
		} else {
			body = s.TakeResponseBody()
		}
	}
	return h, body, nil, true
}

// localSettled waits for a plugin that paused a local response; direct is
// the answer it sent instead of before, if any; ok is false when the client
// went away.
func (x *exchange) localSettled(s *abi.HTTPStream, a abi.Action, before *abi.LocalResponse) (direct *abi.LocalResponse, ok bool) {
	if lr := s.LocalResponse(); lr != before {
		return lr, true
	}
	if a != abi.ActionPause {
		return nil, true
	}
	if err := s.Wait(x.wctx, abi.StreamHTTPResponse); err != nil {
		return nil, false
	}
	if lr := s.LocalResponse(); lr != before {
		return lr, true
	}
	return nil, true
}

// isGRPC is Envoy's Grpc::Common::hasGrpcContentType: application/grpc,
// alone or followed by "+" or ";".
func isGRPC(ct string) bool {
	rest, ok := strings.CutPrefix(ct, "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// grpcStatusOf is Envoy's Grpc::Utility::httpToGrpcStatus, gRPC's mapping
// of HTTP statuses.
func grpcStatusOf(status int) int {
	switch status {
	case 400:
		return 13 // INTERNAL
	case 401:
		return 16 // UNAUTHENTICATED
	case 403:
		return 7 // PERMISSION_DENIED
	case 404:
		return 12 // UNIMPLEMENTED
	case 429, 502, 503, 504:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}

// percentEncode is the grpc-message encoding (Envoy's
// PercentEncoding::encode): bytes outside ' '..'~', and '%', as %XX.
func percentEncode(b []byte) string {
	const hex = "0123456789ABCDEF"
	var sb strings.Builder
	for _, c := range b {
		if c < ' ' || c > '~' || c == '%' {
			sb.WriteByte('%')
			sb.WriteByte(hex[c>>4])
			sb.WriteByte(hex[c&15])
		} else {
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

// hopByHop are the connection-level headers of RFC 9110 section 7.6.1 that
// httputil.ReverseProxy removes; requestMap removes them, and the headers
// the client's Connection header names, before the plugins see the
// request, so that what a plugin sets is what the upstream gets (a client's
// "Connection: x-user" must not remove the x-user a plugin set). "te:
// trailers" stays: gRPC needs it.
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// isHopByHop reports whether the request header k (canonical) is one a proxy
// does not forward.
func isHopByHop(k string, hh http.Header) bool {
	for _, h := range hopByHop {
		if k == h {
			return true
		}
	}
	for _, v := range hh["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" && http.CanonicalHeaderKey(f) == k {
				return true
			}
		}
	}
	return false
}

// requestMap converts a request to a Proxy-Wasm header map, without its
// hop-by-hop headers.
func requestMap(r *http.Request) abi.Headers {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	path := r.RequestURI
	if path == "" || r.URL.Scheme != "" { // not from a server, or absolute-form
		path = r.URL.RequestURI()
	}
	h := make(abi.Headers, 0, 4+len(r.Header)+addSlack)
	h = append(h,
		abi.Header{Key: ":authority", Value: r.Host},
		abi.Header{Key: ":path", Value: path},
		abi.Header{Key: ":method", Value: r.Method},
		abi.Header{Key: ":scheme", Value: scheme})
	for k, vs := range r.Header {
		if isHopByHop(k, r.Header) {
			if k == "Te" && slices.ContainsFunc(vs, func(v string) bool { return strings.EqualFold(textproto.TrimString(v), "trailers") }) {
				h = append(h, abi.Header{Key: "te", Value: "trailers"})
			}
			continue
		}
		lk := lower(k)
		for _, v := range vs {
			h = append(h, abi.Header{Key: lk, Value: v})
		}
	}
	return h
}

// addSlack is the room left in a header map handed to the plugins for the
// headers they add, so that a plugin adding a few does not make the host
// grow the map (an allocation per request).
const addSlack = 4

func appendHeader(h abi.Headers, hh http.Header) abi.Headers {
	for k, vs := range hh {
		lk := lower(k)
		for _, v := range vs {
			h = append(h, abi.Header{Key: lk, Value: v})
		}
	}
	return h
}

// lower lower-cases a canonical header key, without allocating for the
// common ones.
func lower(k string) string {
	if l, ok := commonLower[k]; ok {
		return l
	}
	return strings.ToLower(k)
}

// commonLower maps common canonical header keys to their lower-case form,
// and commonCanonical back.
var commonLower, commonCanonical = func() (map[string]string, map[string]string) {
	m, c := map[string]string{}, map[string]string{}
	for _, k := range []string{"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control",
		"Connection", "Content-Encoding", "Content-Length", "Content-Type", "Cookie", "Date", "Etag",
		"Host", "Last-Modified", "Location", "Origin", "Referer", "Server", "Set-Cookie", "Te", "Trailer",
		"Transfer-Encoding", "User-Agent", "Vary", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
		"X-Request-Id"} {
		m[k] = strings.ToLower(k)
		c[m[k]] = k
	}
	return m, c
}()

// request returns the request the next handler sees: r as the plugins left
// its header map, its body fed through the chain.
func (x *exchange) request(r *http.Request, h abi.Headers, eos bool) *http.Request {
	r2 := r.WithContext(context.WithValue(r.Context(), infoKey{}, &x.info))
	u := *r.URL
	r2.URL = &u
	r2.Header = make(http.Header, len(h))
	vals := make([]string, 0, len(h)) // every key's values, one allocation (addValue)
	r2.ContentLength = r.ContentLength
	if !eos {
		r2.ContentLength = -1 // unless the plugins left a content-length
	}
	for _, kv := range h {
		switch kv.Key {
		case ":method":
			r2.Method = kv.Value
		case ":authority":
			r2.Host = kv.Value
		case ":path":
			if kv.Value != r.RequestURI && kv.Value != r.URL.RequestURI() {
				if pu, err := url.ParseRequestURI(kv.Value); err == nil {
					r2.URL.Path, r2.URL.RawPath, r2.URL.RawQuery = pu.Path, pu.RawPath, pu.RawQuery
					r2.RequestURI = kv.Value
				}
			}
		case "content-length":
			if n, err := strconv.ParseInt(kv.Value, 10, 64); err == nil && n >= 0 && !eos {
				r2.ContentLength = n
			}
		case "transfer-encoding", "host":
		default:
			if kv.Key != "" && kv.Key[0] != ':' {
				vals = addValue(r2.Header, vals, kv.Key, kv.Value)
			}
		}
	}
	if !eos {
		x.body = &requestBody{x: x, orig: r, src: r.Body, chunk: make([]byte, x.m.opts.ChunkSize), left: r.ContentLength}
		r2.Body = x.body
	}
	return r2
}

// ErrClientAborted is wrapped by the error a handler gets from the request
// body when reading the client's body failed (a reset, a timeout, broken
// framing): the client, not the upstream, failed the exchange.
var ErrClientAborted = errors.New("nethttp: reading the client's request body failed")

// requestBody feeds a request body through the chain. The handler (or its
// transport, on a goroutine of its own) reads it; the middleware itself
// reads the rest of it, through the same chain, when the response is about
// to start while a plugin holds the body (settleRequest). mu makes the two
// take turns; what the chain lets through waits in out for the handler.
// Trailers, which the server fills into the original request at the end of
// the body, go through the chain before the reader reports io.EOF, and are
// written back into the same map (r.Trailer of the request the handler
// sees, when the client declared them).
type requestBody struct {
	x     *exchange
	orig  *http.Request
	src   io.ReadCloser
	chunk []byte

	mu      sync.Mutex
	out     []byte // passed by the chain, not read yet
	off     int
	started bool // a chunk (or the end) has been through the chain
	eof     bool
	err     error
	left    int64 // bytes the body still has by its length; -1 unknown
}

func (b *requestBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.off == len(b.out) {
		b.out, b.off = b.out[:0], 0
		if b.err != nil {
			return 0, b.err
		}
		if b.eof {
			return 0, io.EOF
		}
		b.fill()
	}
	n := copy(p, b.out[b.off:])
	b.off += n
	return n, nil
}

// Close does not close the client's body: the server does, after the
// handler returned, and the middleware may still have to read it for a
// plugin (a transport closes the body it sends when the upstream answered
// early).
func (b *requestBody) Close() error { return nil }

// drain reads the rest of the body through the chain while a plugin holds
// it; see exchange.settleRequest.
func (b *requestBody) drain() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for !b.eof && b.err == nil && b.x.holdsRequest(b.started) {
		b.fill()
	}
}

// fill reads one chunk of the client's body and runs it through the chain.
// b.mu is held.
func (b *requestBody) fill() {
	x := b.x
	n, err := b.src.Read(b.chunk)
	eos := errors.Is(err, io.EOF)
	if err != nil && !eos {
		// The exchange cannot complete: answer it (408, 413, or nothing
		// for a client that went away) rather than let the handler blame
		// its upstream.
		x.answer(bodyFailure(err))
		b.err = fmt.Errorf("%w: %w", ErrClientAborted, err)
		return
	}
	if b.left >= 0 {
		// A body of known length ends with its last byte, as the chunk
		// Envoy passes with end_stream: no empty call after it.
		b.left -= int64(n)
		eos = eos || b.left <= 0
	}
	if n == 0 && !eos {
		return
	}
	if !x.enter() {
		b.err = ErrAnswered
		return
	}
	defer x.leave()
	b.started = true
	trailer := eos && hasFields(b.orig.Trailer)
	out, derr := x.data(false, 0, b.chunk[:n], eos && !trailer)
	b.out = append(b.out, out...) // out may be b.chunk, which the next read reuses
	if derr != nil {
		b.err = derr
		return
	}
	if !eos {
		return
	}
	b.eof = true
	if !trailer {
		return
	}
	out, t, derr := x.trailers(false, appendHeader(nil, b.orig.Trailer))
	b.out = append(b.out, out...)
	if derr != nil {
		b.err = derr
		return
	}
	clear(b.orig.Trailer)
	for _, kv := range t {
		b.orig.Trailer.Add(kv.Key, kv.Value)
	}
}

// hasFields reports whether trailers hold a field. A client may declare
// trailers (the Trailer header: the server puts the names in r.Trailer
// with no values) and send none: then the body ends the stream, as in
// Envoy, and the plugins see its end (else a plugin that decides at the
// end of the body, guard, never decided).
func hasFields(trailers http.Header) bool {
	for _, vs := range trailers {
		if len(vs) > 0 {
			return true
		}
	}
	return false
}

// responseWriter runs the handler's response through the chain. Headers go
// through when the handler first writes or flushes, or returns, so that a
// response without a body is seen with end_of_stream set.
type responseWriter struct {
	x        *exchange
	header   http.Header
	status   int
	started  bool // the handler's headers are done with (chained, or refused)
	chained  bool // headers went into the chain
	sent     bool // headers were sent to the client
	trailers []string
	err      error
	left     int64 // bytes the body still has by its Content-Length; -1 unknown
	ended    bool  // the chain saw the end of the body
}

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(status int) {
	if w.status != 0 || w.started || status < 200 {
		return // informational responses are not passed on
	}
	w.status = status
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if !w.started && !w.startHeaders(false) {
		return 0, w.err
	}
	if len(p) == 0 || w.ended {
		return 0, nil
	}
	eos := false
	if w.left >= 0 {
		w.left -= int64(len(p))
		eos = w.left <= 0 && len(w.trailers) == 0
	}
	out, err := w.x.data(true, 0, p, eos)
	w.ended = eos
	if err == nil && len(out) > 0 {
		_, err = w.x.w.Write(out)
	}
	if err != nil {
		w.err = err
		return 0, err
	}
	return len(p), nil
}

// Flush sends the headers if the chain has not seen them yet, and flushes.
func (w *responseWriter) Flush() {
	if !w.started && !w.startHeaders(false) {
		return
	}
	if f, ok := w.x.w.(http.Flusher); ok && w.err == nil {
		f.Flush()
	}
}

// EnableFullDuplex lets the handler read the request body after it started
// the response (http.ResponseController.EnableFullDuplex on the server's
// writer): an echo, say. The middleware needs nothing else for it.
func (w *responseWriter) EnableFullDuplex() error {
	return http.NewResponseController(w.x.w).EnableFullDuplex()
}

func (w *responseWriter) startHeaders(eos bool) bool {
	w.started = true
	x := w.x
	x.settleRequest()
	if x.localResponse() != nil { // answered while the request went on
		w.err = ErrAnswered
		return false
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if x.info.ResponseCodeDetails() == "" { // the handler may have said why
		x.info.SetResponseCodeDetails("via_upstream")
	}
	w.left = -1
	if cl := w.header.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			w.left = n
		}
	}
	for _, v := range w.header.Values("Trailer") {
		for k := range strings.SplitSeq(v, ",") {
			if k = strings.TrimSpace(k); k != "" {
				w.trailers = append(w.trailers, http.CanonicalHeaderKey(k))
			}
		}
	}
	h := make(abi.Headers, 0, 1+len(w.header)+addSlack)
	h = append(h, abi.Header{Key: ":status", Value: itoaStatus(w.status)})
	w.chained = true
	h, ok := x.headers(responseHeaders, appendHeader(h, w.header), eos)
	if !ok {
		w.err = ErrAnswered
		return false
	}
	status := toHeader(x.w.Header(), h, w.status)
	w.sent = true
	x.w.WriteHeader(status)
	return true
}

// responseDone ends the response after the handler returned: the headers
// if the handler wrote none, the end of the body, the trailers, or the
// local response.
func (x *exchange) responseDone() {
	w := &x.rw
	if x.localResponse() != nil || w.err != nil {
		x.writeLocal()
		return
	}
	var trailer abi.Headers
	for _, k := range w.trailers {
		for _, v := range w.header[k] {
			trailer = append(trailer, abi.Header{Key: lower(k), Value: v})
		}
	}
	for k, vs := range w.header {
		if tk, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			for _, v := range vs {
				trailer = append(trailer, abi.Header{Key: strings.ToLower(tk), Value: v})
			}
		}
	}
	eos := len(trailer) == 0
	if !w.started {
		if !w.startHeaders(eos) {
			x.writeLocal()
			return
		}
		if eos {
			return
		}
	}
	if w.ended {
		return
	}
	// A plugin that holds the request body again decides before the
	// response ends (too late to replace it: its answer resets it).
	x.settleRequest()
	var out []byte
	var err error
	t := trailer
	if eos {
		out, err = x.data(true, 0, nil, true)
	} else {
		out, t, err = x.trailers(true, trailer)
	}
	if err == nil && len(out) > 0 {
		_, err = x.w.Write(out)
	}
	if err != nil {
		x.writeLocal()
		return
	}
	if eos {
		return
	}
	h := x.w.Header()
	for _, kv := range t {
		h.Add(http.TrailerPrefix+kv.Key, kv.Value)
	}
}
