package nethttp_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/abi/nethttp"
	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/internal/plugins"
)

// hangBound is how long FuzzMiddleware waits for an answer (or a close)
// before it calls the exchange hung: far above what an exchange over
// loopback takes (milliseconds), so that only a hang reaches it. It is the
// test's only use of time.
const hangBound = 30 * time.Second

// fuzzMaxBuffer is the middleware's MaxBufferBytes in FuzzMiddleware: small,
// so that fuzzed bodies reach it.
const fuzzMaxBuffer = 256

// FuzzMiddleware sends fuzzed HTTP/1.1 requests, as raw bytes over a real
// loopback connection, to nethttp.New(reverse proxy to an upstream, plugins
// guard, headers, body) on wazero. The requests have fuzzed methods, paths,
// headers (hop-by-hop ones, Connection naming others, x-user, Expect),
// bodies with or without "attack", framed by Content-Length (exact or
// promising more than is sent, then the client stops writing) or chunked
// (fuzzed chunk sizes and extensions, trailers, a Trailer declaration).
// Properties, checked after each request:
//   - no handler panics but with http.ErrAbortHandler, no plugin fails;
//   - the request gets a well-formed response, or the connection closes,
//     within hangBound;
//   - every request the upstream receives has x-user: anonymous, set by
//     guard whatever the client sent;
//   - a body that guard blocks (it contains "attack" and its end reaches
//     guard, with end_of_stream or trailers) never reaches the upstream
//     whole, and the client never gets a 2xx for it;
//   - a body that reaches the upstream whole is the client's, upper-cased
//     by body (unchanged when trailers follow it: body never sees its end);
//   - afterwards, a plain GET answers 200 through all three plugins.
//
// Seeds: testdata/fuzz/FuzzMiddleware.
func FuzzMiddleware(f *testing.F) {
	fx := newFuzzProxy(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fx.run(t, decodeRequest(data))
	})
}

// fuzzRequest is one request of FuzzMiddleware.
type fuzzRequest struct {
	id      int64
	method  string
	path    string      // after the /f<id>/ prefix
	header  [][2]string // as sent, after Host
	framing int         // framingNone ... framingChunked
	body    []byte      // the body as the server reads it
	missing int         // framingShort: bytes promised and never sent
	chunks  []int       // framingChunked: chunk sizes
	ext     bool        // framingChunked: chunk extensions
	trailer [][2]string // framingChunked: trailer fields
}

const (
	framingNone = iota
	framingLength
	framingShort // Content-Length beyond the body sent; the client stops writing
	framingChunked
)

var (
	fuzzMethods = []string{"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"}
	fuzzKeys    = []string{"X-User", "x-user", "Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer",
		"Upgrade", "Proxy-Authorization", "Proxy-Authenticate", "Expect", "Content-Type", "Cookie", "X-Forwarded-For",
		"X-Anywasm-Seen", "Host", "Via", "X-Guard"}
	fuzzValues = []string{"anonymous", "admin", "x-user", "X-User", "close", "keep-alive", "x-user, close",
		"keep-alive, x-user", "trailers", "upgrade", "websocket", "100-continue", "te, trailers", "", " x-user ",
		"X-Checksum", "attack"}
)

// byteReader hands out the fuzz input; past its end it gives zeros.
type byteReader struct{ b []byte }

func (r *byteReader) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// bytes returns up to n bytes of the input.
func (r *byteReader) bytes(n int) []byte {
	n = min(n, len(r.b))
	b := r.b[:n]
	r.b = r.b[n:]
	return b
}

// text returns a string of up to max bytes without CR or LF, so that the
// fuzzer shapes one request, not the framing of the next.
func (r *byteReader) text(max int) string {
	b := r.bytes(int(r.byte()) % (max + 1))
	return strings.Map(func(c rune) rune {
		if c == '\r' || c == '\n' {
			return -1
		}
		return c
	}, string(b))
}

func (r *byteReader) choose(list []string, max int) string {
	c := int(r.byte())
	if c < len(list)*8 { // mostly a known one
		return list[c%len(list)]
	}
	return r.text(max)
}

// decodeRequest turns fuzz bytes into a request. Header names that would
// change the framing (Content-Length, Transfer-Encoding) are not sent as
// such: the test must know the body the server reads.
func decodeRequest(data []byte) *fuzzRequest {
	r := &byteReader{b: data}
	q := &fuzzRequest{}
	if c := r.byte(); int(c) < len(fuzzMethods)*16 {
		q.method = fuzzMethods[int(c)%len(fuzzMethods)]
	} else {
		q.method = r.text(8)
	}
	if q.method == "" || strings.EqualFold(q.method, "CONNECT") {
		q.method = "POST" // CONNECT answers are tunnels, not messages
	}
	q.path = r.text(24)
	for range int(r.byte()) % 8 {
		k, v := r.choose(fuzzKeys, 16), r.choose(fuzzValues, 24)
		if lk := strings.ToLower(strings.TrimSpace(k)); lk == "content-length" || lk == "transfer-encoding" {
			k = "X-" + k
		}
		q.header = append(q.header, [2]string{k, v})
	}
	flags := r.byte()
	q.framing = int(flags) % 4
	if q.framing != framingNone {
		q.body = append([]byte(nil), r.bytes(int(r.byte())*3)...)
		if flags&0x10 != 0 {
			at := int(r.byte()) % (len(q.body) + 1)
			q.body = append(q.body[:at:at], append([]byte("attack"), q.body[at:]...)...)
		}
		if flags&0x20 != 0 { // past MaxBufferBytes
			q.body = bytes.Repeat(append(q.body, 'x'), fuzzMaxBuffer/(len(q.body)+1)+1)
		}
	}
	switch q.framing {
	case framingShort:
		q.missing = 1 + int(r.byte())%3
	case framingChunked:
		for left := len(q.body); left > 0; {
			n := min(left, 1+int(r.byte())%64)
			q.chunks = append(q.chunks, n)
			left -= n
		}
		q.ext = flags&0x40 != 0
		for range int(r.byte()) % 3 {
			q.trailer = append(q.trailer, [2]string{r.choose(fuzzKeys, 16), r.choose(fuzzValues, 16)})
		}
		if flags&0x80 != 0 { // declared, whether or not sent
			q.header = append(q.header, [2]string{"Trailer", "X-Checksum"})
		}
	}
	return q
}

// raw is the request as bytes on the wire.
func (q *fuzzRequest) raw() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s /f%d/%s HTTP/1.1\r\nHost: fuzz\r\n", q.method, q.id, q.path)
	for _, h := range q.header {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	switch q.framing {
	case framingLength, framingShort:
		fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", len(q.body)+q.missing)
		b.Write(q.body)
	case framingChunked:
		b.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		body := q.body
		for _, n := range q.chunks {
			fmt.Fprintf(&b, "%x", n)
			if q.ext {
				b.WriteString(";ext=1")
			}
			b.WriteString("\r\n")
			b.Write(body[:n])
			b.WriteString("\r\n")
			body = body[n:]
		}
		b.WriteString("0\r\n")
		for _, h := range q.trailer {
			fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
		}
		b.WriteString("\r\n")
	default:
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// trailed reports whether trailer fields follow the body: then no plugin
// sees the body's end (trailers end the stream, as in Envoy).
func (q *fuzzRequest) trailed() bool { return len(q.trailer) > 0 }

// blocked reports whether guard blocks the request: its whole body reaches
// guard, first in the chain, ended by end_of_stream or by trailers (guard
// decides in its trailers callback, on the body it holds), and contains
// "attack".
func (q *fuzzRequest) blocked() bool {
	return q.framing != framingShort && bytes.Contains(q.body, []byte("attack"))
}

// upstreamBody is what the upstream must get of a body that reaches it
// whole: body upper-cases it at its end, which it sees unless trailers
// follow.
func (q *fuzzRequest) upstreamBody() []byte {
	if q.trailed() {
		return q.body
	}
	up := make([]byte, len(q.body))
	for i, c := range q.body {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		up[i] = c
	}
	return up
}

// fuzzProxy is the proxy and upstream of FuzzMiddleware, made once per
// process.
type fuzzProxy struct {
	proxy, upstream *httptest.Server
	logs            *failureLog
	nextID          atomic.Int64

	mu       sync.Mutex
	requests map[int64]*fuzzRequest // by id, while its exchange runs
	inflight map[int64]int          // upstream handlers running, by id
	idle     *sync.Cond             // signalled when an upstream handler ends
	problems []string               // violations seen by the upstream or the handler
}

func newFuzzProxy(f *testing.F) *fuzzProxy {
	rt, err := engine.Open("wazero", engine.NewConfig())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = rt.Close(context.Background()) })
	fx := &fuzzProxy{logs: &failureLog{}, requests: map[int64]*fuzzRequest{}, inflight: map[int64]int{}}
	fx.idle = sync.NewCond(&fx.mu)
	host := abi.NewHost(rt, abi.Options{Logger: slog.New(fx.logs)})
	f.Cleanup(func() { _ = host.Close(context.Background()) })
	var chain []*abi.Plugin
	for _, name := range []string{"guard", "headers", "body"} {
		p, err := host.Load(context.Background(), plugins.Build(f, name), abi.PluginConfig{Name: name, VMID: "fuzz-" + name})
		if err != nil {
			f.Fatal(err)
		}
		chain = append(chain, p)
	}
	fx.upstream = httptest.NewServer(http.HandlerFunc(fx.serveUpstream))
	f.Cleanup(fx.upstream.Close)
	u, _ := url.Parse(fx.upstream.URL)
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(u)
		pr.Out.Host = pr.In.Host
		pr.Out.Trailer = pr.In.Trailer
	}, ErrorLog: log.New(io.Discard, "", 0)}
	mw := nethttp.New(rp, nethttp.Plugins(chain...), nethttp.Options{MaxBufferBytes: fuzzMaxBuffer, ChunkSize: 16, Logger: slog.New(fx.logs)})
	fx.proxy = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v != http.ErrAbortHandler {
					fx.problem("the handler panicked for %s %s: %v\n%s", r.Method, r.RequestURI, v, debug.Stack())
				}
				panic(v)
			}
		}()
		mw.ServeHTTP(w, r)
	}))
	fx.proxy.Config.ErrorLog = log.New(io.Discard, "", 0)
	fx.proxy.Start()
	f.Cleanup(fx.proxy.Close)
	return fx
}

func (fx *fuzzProxy) problem(format string, args ...any) {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	fx.problems = append(fx.problems, fmt.Sprintf(format, args...))
}

// serveUpstream checks what reaches the upstream against the request the
// client sent (found by the id in the path) and answers "ok".
func (fx *fuzzProxy) serveUpstream(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.RequestURI, "/f")
	digits, _, _ := strings.Cut(rest, "/")
	id, err := strconv.ParseInt(digits, 10, 64)
	if !ok || err != nil {
		fx.problem("the upstream got a request the client did not send: %s %q", r.Method, r.RequestURI)
		return
	}
	fx.mu.Lock()
	q := fx.requests[id]
	fx.inflight[id]++
	fx.mu.Unlock()
	defer func() {
		fx.mu.Lock()
		fx.inflight[id]--
		fx.idle.Broadcast()
		fx.mu.Unlock()
	}()
	if got := r.Header.Values("X-User"); len(got) != 1 || got[0] != "anonymous" {
		fx.problem("request %d reached the upstream with x-user %q, want [anonymous]; headers %v", id, got, r.Header)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // not whole: the proxy gave up on it
	}
	if q != nil && q.blocked() {
		fx.problem("request %d: a body guard blocks reached the upstream whole: %q", id, body)
	}
	if q != nil && !bytes.Equal(body, q.upstreamBody()) {
		fx.problem("request %d: the upstream got body %q, want %q", id, body, q.upstreamBody())
	}
	_, _ = io.WriteString(w, "ok")
}

// run sends q, checks the answer and what the upstream saw, then a plain GET.
func (fx *fuzzProxy) run(t *testing.T, q *fuzzRequest) {
	q.id = fx.nextID.Add(1)
	get := &fuzzRequest{id: fx.nextID.Add(1), method: "GET", path: "plain", header: [][2]string{{"Connection", "close"}}}
	for _, r := range []*fuzzRequest{q, get} {
		fx.mu.Lock()
		fx.requests[r.id] = r
		fx.mu.Unlock()
	}
	defer func() {
		fx.mu.Lock()
		delete(fx.requests, q.id)
		delete(fx.requests, get.id)
		fx.problems = nil
		fx.mu.Unlock()
		fx.logs.reset()
	}()
	raw := q.raw()
	resp := fx.exchange(t, q, raw)
	if resp != nil && q.blocked() && resp.StatusCode/100 == 2 {
		t.Errorf("a request guard blocks was answered %d:\n%q", resp.StatusCode, raw)
	}
	fx.waitUpstream(t, q.id, raw)
	if resp := fx.exchange(t, get, get.raw()); resp == nil || resp.StatusCode != 200 || string(resp.body) != "ok\n-- anywasm" {
		t.Errorf("after %q, a plain GET got %+v", raw, resp)
	}
	fx.waitUpstream(t, get.id, raw)
	fx.mu.Lock()
	problems := fx.problems
	fx.mu.Unlock()
	for _, p := range problems {
		t.Errorf("%s\nrequest %q", p, raw)
	}
	if fail := fx.logs.failures(); fail != "" {
		t.Errorf("errors were logged:\n%s\nrequest %q", fail, raw)
	}
}

// fuzzResponse is a response read whole.
type fuzzResponse struct {
	*http.Response
	body []byte
}

// exchange writes raw on a new connection and reads the final response: nil
// when the server closed the connection first (or in the middle of the
// body, which resets a response under way). A malformed response or
// neither within hangBound fails.
func (fx *fuzzProxy) exchange(t *testing.T, q *fuzzRequest, raw []byte) *fuzzResponse {
	t.Helper()
	c, err := net.Dial("tcp", fx.proxy.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(hangBound))
	if _, err := c.Write(raw); err != nil && !closed(t, err, raw) {
		t.Fatalf("write: %v", err)
	}
	if q.framing == framingShort {
		_ = c.(*net.TCPConn).CloseWrite() // the promised bytes never come
	}
	br := bufio.NewReader(c)
	for {
		resp, err := http.ReadResponse(br, &http.Request{Method: q.method})
		if err != nil {
			if closed(t, err, raw) {
				return nil
			}
			t.Fatalf("no well-formed response: %v\nrequest %q", err, raw)
		}
		if resp.StatusCode < 200 { // 100 Continue: the final one follows
			continue
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			if closed(t, err, raw) {
				return nil
			}
			t.Fatalf("response %d: malformed body: %v\nrequest %q", resp.StatusCode, err, raw)
		}
		return &fuzzResponse{Response: resp, body: body}
	}
}

// closed reports whether err is the connection ending; a read that timed
// out (hangBound) fails the test: the exchange hung.
func closed(t *testing.T, err error, raw []byte) bool {
	t.Helper()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("no response and no close within %s: the exchange hung (%v)\nrequest %q", hangBound, err, raw)
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe")
}

// waitUpstream waits until no upstream handler of request id runs.
func (fx *fuzzProxy) waitUpstream(t *testing.T, id int64, raw []byte) {
	t.Helper()
	done := make(chan struct{})
	timer := time.AfterFunc(hangBound, func() {
		fx.mu.Lock()
		defer fx.mu.Unlock()
		select {
		case <-done:
		default:
			fx.problems = append(fx.problems, fmt.Sprintf("the upstream handler of request %d still runs after %s", id, hangBound))
			fx.inflight[id] = 0
			fx.idle.Broadcast()
		}
	})
	defer timer.Stop()
	fx.mu.Lock()
	for fx.inflight[id] > 0 {
		fx.idle.Wait()
	}
	delete(fx.inflight, id)
	close(done)
	fx.mu.Unlock()
}

// failureLog is the log of the fuzzed middleware and plugins. It keeps only
// errors (the host's level follows it, so plugins log no less): a plugin
// that failed, a hostcall that failed a plugin, a VM that could not be
// made. No request may cause one.
type failureLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *failureLog) Enabled(_ context.Context, level slog.Level) bool {
	return level >= slog.LevelError
}

func (l *failureLog) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) < 10 {
		l.lines = append(l.lines, b.String())
	}
	return nil
}

func (l *failureLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *failureLog) WithGroup(string) slog.Handler      { return l }

func (l *failureLog) failures() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func (l *failureLog) reset() {
	l.mu.Lock()
	l.lines = nil
	l.mu.Unlock()
}
