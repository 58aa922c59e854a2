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
// Limits: a plugin that paused a body in the middle gets its buffer again
// with the next chunk or at the end of the body, so a proxy_continue_stream
// in between takes effect then; local responses do not run through the
// response callbacks of the chain; a handler that hijacks the connection (WebSocket upgrades through
// httputil.ReverseProxy) is refused by the response writer, which does not
// implement http.Hijacker.
package nethttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/anywasm/anywasm/abi"
)

// Chain supplies the plugins of one exchange: Acquire is called when a
// request arrives and Release with the same slice once the exchange is done,
// so that an embedder can swap plugins (reload) without dropping exchanges
// in flight.
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
	x := &exchange{m: m, ctx: context.WithoutCancel(r.Context()), wctx: r.Context(), w: w}
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

// exchange is one request/response through the chain. The request body may
// be read on another goroutine than the handler's (the transport of
// httputil.ReverseProxy writes it while the handler waits for the
// response): mu serializes the calls into the streams and is never held
// while waiting for a plugin.
type exchange struct {
	m        *middleware
	ctx      context.Context // callbacks: not cancelled when the client goes
	wctx     context.Context // waits: cancelled when the client goes
	w        http.ResponseWriter
	rw       responseWriter
	plugins  []*abi.Plugin
	answered bool // the local response was written
	aborted  bool // the local response came too late: reset

	mu      sync.Mutex
	streams []*abi.HTTPStream // nil where a fail-open plugin was unreachable
	held    []int             // bytes a paused plugin holds, per stream
	local   *abi.LocalResponse
	closed  bool
}

// open creates a stream per plugin. A plugin whose VM cannot be had is
// skipped if it fails open, and answers 503 otherwise.
func (x *exchange) open(plugins []*abi.Plugin) bool {
	x.plugins = plugins
	x.streams = make([]*abi.HTTPStream, len(plugins))
	x.held = make([]int, len(plugins))
	for i, p := range plugins {
		s, err := p.NewHTTPStream(x.ctx)
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

func unavailable(p *abi.Plugin) *abi.LocalResponse {
	return &abi.LocalResponse{Status: http.StatusServiceUnavailable, Details: "wasm_plugin_unavailable", GRPCStatus: -1,
		Headers: abi.Headers{{Key: "content-type", Value: "text/plain"}},
		Body:    fmt.Appendf(nil, "plugin %s unavailable\n", p.Config().Name)}
}

// finish closes the streams (proxy_on_done, proxy_on_log, proxy_on_delete).
func (x *exchange) finish() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return
	}
	x.closed = true
	for i, s := range x.streams {
		if s == nil {
			continue
		}
		if err := s.Close(x.ctx); err != nil {
			x.m.opts.Logger.Debug("nethttp: stream ended with a plugin failure", "plugin", x.plugins[i].Config().Name, "err", err)
		}
		x.streams[i] = nil
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
		s, ok := x.lock(x.order(resp, i))
		if !ok {
			return nil, false
		}
		if s == nil {
			x.mu.Unlock()
			continue
		}
		var a abi.Action
		switch phase {
		case requestHeaders:
			a, _ = s.RequestHeaders(x.ctx, h, eos)
		case requestTrailers:
			a, _ = s.RequestTrailers(x.ctx, h)
		case responseHeaders:
			a, _ = s.ResponseHeaders(x.ctx, h, eos)
		default:
			a, _ = s.ResponseTrailers(x.ctx, h)
		}
		x.mu.Unlock()
		if a == abi.ActionPause && !x.wait(s) {
			return nil, false
		}
		// The next plugin gets a copy: a paused plugin's later callbacks
		// (a callout's answer) may still change its own map.
		switch phase {
		case requestHeaders:
			h = s.RequestHeaderMap().Clone()
		case requestTrailers:
			h = s.RequestTrailerMap().Clone()
		case responseHeaders:
			h = s.ResponseHeaderMap().Clone()
		default:
			h = s.ResponseTrailerMap().Clone()
		}
	}
	return h, true
}

// wait waits for a paused stream; false when the exchange is answered (the
// plugin's local response, a failure, or a client that went away).
func (x *exchange) wait(s *abi.HTTPStream) bool {
	if lr := s.LocalResponse(); lr != nil {
		x.answer(lr)
		return false
	}
	if err := s.Wait(x.wctx); err != nil {
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
// pauses at the end of the stream is waited for.
func (x *exchange) data(resp bool, from int, chunk []byte, eos bool) ([]byte, error) {
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
			x.held[k] = 0
			x.mu.Unlock()
			chunk = out
			continue
		}
		x.held[k] += len(chunk)
		held := x.held[k]
		x.mu.Unlock()
		if lr := s.LocalResponse(); lr != nil {
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
		if !x.wait(s) {
			return nil, ErrAnswered
		}
		chunk = x.take(resp, k)
	}
	return chunk, nil
}

// take empties what stream k holds of a body.
func (x *exchange) take(resp bool, k int) []byte {
	x.mu.Lock()
	defer x.mu.Unlock()
	s := x.streams[k]
	if s == nil || x.held[k] == 0 {
		return nil
	}
	x.held[k] = 0
	if resp {
		return s.TakeResponseBody()
	}
	return s.TakeRequestBody()
}

// flush passes on, before trailers, what paused plugins still hold of a
// body (they never saw its end: trailers end the stream).
func (x *exchange) flush(resp bool) ([]byte, error) {
	var out []byte
	for i := range x.streams {
		b := x.take(resp, x.order(resp, i))
		if len(b) == 0 {
			continue
		}
		o, err := x.data(resp, i+1, b, false)
		if err != nil {
			return nil, err
		}
		out = append(out, o...)
	}
	return out, nil
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

// writeLocal sends the local response, if there is one, unless the
// response is under way: then the exchange is to be reset.
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
	if lr.Status == statusClientGone {
		return
	}
	h := x.w.Header()
	clear(h)
	for _, kv := range lr.Headers {
		if kv.Key != "" && kv.Key[0] != ':' {
			h.Add(kv.Key, kv.Value)
		}
	}
	if len(lr.Body) > 0 && h.Get("Content-Type") == "" {
		h.Set("Content-Type", "text/plain")
	}
	h.Set("Content-Length", strconv.Itoa(len(lr.Body)))
	status := lr.Status
	if status < 200 || status > 999 {
		status = http.StatusInternalServerError
	}
	x.w.WriteHeader(status)
	_, _ = x.w.Write(lr.Body)
}

// requestMap converts a request to a Proxy-Wasm header map.
func requestMap(r *http.Request) abi.Headers {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	path := r.RequestURI
	if path == "" || r.URL.Scheme != "" { // not from a server, or absolute-form
		path = r.URL.RequestURI()
	}
	h := make(abi.Headers, 0, 4+len(r.Header))
	h = append(h,
		abi.Header{Key: ":authority", Value: r.Host},
		abi.Header{Key: ":path", Value: path},
		abi.Header{Key: ":method", Value: r.Method},
		abi.Header{Key: ":scheme", Value: scheme})
	return appendHeader(h, r.Header)
}

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

var commonLower = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control",
		"Connection", "Content-Encoding", "Content-Length", "Content-Type", "Cookie", "Date", "Etag",
		"Host", "Last-Modified", "Location", "Origin", "Referer", "Server", "Set-Cookie", "Te", "Trailer",
		"Transfer-Encoding", "User-Agent", "Vary", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
		"X-Request-Id"} {
		m[k] = strings.ToLower(k)
	}
	return m
}()

// request returns the request the next handler sees: r as the plugins left
// its header map, its body fed through the chain.
func (x *exchange) request(r *http.Request, h abi.Headers, eos bool) *http.Request {
	r2 := r.WithContext(r.Context())
	u := *r.URL
	r2.URL = &u
	r2.Header = make(http.Header, len(h))
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
				r2.Header.Add(kv.Key, kv.Value)
			}
		}
	}
	if !eos {
		r2.Body = &requestBody{x: x, orig: r, src: r.Body, chunk: make([]byte, x.m.opts.ChunkSize), left: r.ContentLength}
	}
	return r2
}

// requestBody feeds a request body through the chain as the handler reads
// it. Trailers, which the server fills into the original request at the end
// of the body, go through the chain before the reader reports io.EOF, and
// are written back into the same map (r.Trailer of the request the handler
// sees, when the client declared them).
type requestBody struct {
	x     *exchange
	orig  *http.Request
	src   io.ReadCloser
	chunk []byte
	out   []byte
	off   int
	eof   bool
	err   error
	left  int64 // bytes the body still has by its length; -1 unknown
}

func (b *requestBody) Read(p []byte) (int, error) {
	for b.off == len(b.out) {
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

func (b *requestBody) Close() error { return b.src.Close() }

func (b *requestBody) fill() {
	x := b.x
	b.out, b.off = nil, 0
	n, err := b.src.Read(b.chunk)
	eos := errors.Is(err, io.EOF)
	if err != nil && !eos {
		b.err = err
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
	trailer := eos && len(b.orig.Trailer) > 0
	b.out, b.err = x.data(false, 0, b.chunk[:n], eos && !trailer)
	if b.err != nil || !eos {
		return
	}
	b.eof = true
	if !trailer {
		return
	}
	out, err := x.flush(false)
	b.out = append(b.out, out...)
	if err != nil {
		b.err = err
		return
	}
	t, ok := x.headers(requestTrailers, appendHeader(nil, b.orig.Trailer), false)
	if !ok {
		b.err = ErrAnswered
		return
	}
	clear(b.orig.Trailer)
	for _, kv := range t {
		b.orig.Trailer.Add(kv.Key, kv.Value)
	}
}

// responseWriter runs the handler's response through the chain. Headers go
// through when the handler first writes or flushes, or returns, so that a
// response without a body is seen with end_of_stream set.
type responseWriter struct {
	x        *exchange
	header   http.Header
	status   int
	started  bool // headers went through the chain
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

func (w *responseWriter) startHeaders(eos bool) bool {
	w.started = true
	x := w.x
	if x.localResponse() != nil { // answered while the request went on
		w.err = ErrAnswered
		return false
	}
	if w.status == 0 {
		w.status = http.StatusOK
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
	h := make(abi.Headers, 0, 1+len(w.header))
	h = append(h, abi.Header{Key: ":status", Value: strconv.Itoa(w.status)})
	h, ok := x.headers(responseHeaders, appendHeader(h, w.header), eos)
	if !ok {
		w.err = ErrAnswered
		return false
	}
	out := x.w.Header()
	status := w.status
	for _, kv := range h {
		if kv.Key == ":status" {
			if n, err := strconv.Atoi(kv.Value); err == nil && n >= 200 && n <= 999 {
				status = n
			}
		} else if kv.Key != "" && kv.Key[0] != ':' {
			out.Add(kv.Key, kv.Value)
		}
	}
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
	out, err := x.data(true, 0, nil, eos)
	if err == nil && !eos {
		var more []byte
		more, err = x.flush(true)
		out = append(out, more...)
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
	t, ok := x.headers(responseTrailers, trailer, false)
	if !ok {
		x.writeLocal()
		return
	}
	h := x.w.Header()
	for _, kv := range t {
		h.Add(http.TrailerPrefix+kv.Key, kv.Value)
	}
}
