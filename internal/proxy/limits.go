package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The defaults of a listener's limits. Where Envoy has a default the value
// is Envoy's (HttpConnectionManager: max_request_headers_kb 60,
// common_http_protocol_options.max_headers_count 100, idle_timeout 1h,
// stream_idle_timeout 5m; tcp_proxy idle_timeout 1h); where Envoy's default
// is "none" the value is the one Envoy's edge-proxy best practices
// recommend (request_timeout 5m), or, for request_headers_timeout, which
// Go's server needs against clients that trickle their headers, 10s.
const (
	defaultMaxRequestHeadersKB   = 60
	defaultMaxHeadersCount       = 100
	defaultRequestHeadersTimeout = 10 * time.Second
	defaultRequestTimeout        = 5 * time.Minute
	defaultStreamIdleTimeout     = 5 * time.Minute
	defaultIdleTimeout           = time.Hour
	// maxConnectionsCap bounds the default max_connections (Envoy's edge
	// recommendation for global downstream connections).
	maxConnectionsCap = 50000
)

// limits are a listener's resolved limits.
type limits struct {
	maxHeaderBytes        int // 0 for TCP
	maxHeadersCount       int
	requestHeadersTimeout time.Duration
	requestTimeout        time.Duration
	streamIdleTimeout     time.Duration
	idleTimeout           time.Duration
	maxConnections        int
	// HTTP/2 (HTTP listeners): which protocols, and its settings
	http1, h2c   bool
	maxStreams   int
	streamWindow int
	connWindow   int
}

// defaultMaxConnections shares what the process's file descriptor limit
// allows (a proxied connection holds two descriptors, one downstream and
// one upstream; 64 are kept for the admin endpoint, plugin files and the
// rest) between n listeners, at most maxConnectionsCap each.
func defaultMaxConnections(n int) int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 {
		return maxConnectionsCap
	}
	per := (int64(min(rl.Cur, 1<<30)) - 64) / 2 / int64(max(n, 1))
	return int(max(1, min(per, maxConnectionsCap)))
}

func orDefault(d *Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Get()
}

func orDefaultInt(v *int, def int) int {
	if v == nil {
		return def
	}
	return *v
}

// limitsOf resolves a listener's limits; n is the number of listeners
// sharing the file descriptors.
func limitsOf(l *Listener, n int) limits {
	lim := limits{maxConnections: defaultMaxConnections(n)}
	switch {
	case l.HTTP != nil:
		o := l.HTTP
		lim.maxHeaderBytes = orDefaultInt(o.MaxRequestHeadersKB, defaultMaxRequestHeadersKB) << 10
		lim.maxHeadersCount = orDefaultInt(o.MaxHeadersCount, defaultMaxHeadersCount)
		lim.requestHeadersTimeout = orDefault(o.RequestHeadersTimeout, defaultRequestHeadersTimeout)
		lim.requestTimeout = orDefault(o.RequestTimeout, defaultRequestTimeout)
		lim.streamIdleTimeout = orDefault(o.StreamIdleTimeout, defaultStreamIdleTimeout)
		lim.idleTimeout = orDefault(o.IdleTimeout, defaultIdleTimeout)
		lim.maxConnections = orDefaultInt(o.MaxConnections, lim.maxConnections)
		lim.http1, lim.h2c = o.CodecType != "HTTP2", o.CodecType != "HTTP1"
		h2 := o.HTTP2ProtocolOptions
		if h2 == nil {
			h2 = &HTTP2ProtocolOptions{}
		}
		lim.maxStreams = orDefaultInt(h2.MaxConcurrentStreams, defaultMaxConcurrentStreams)
		lim.streamWindow = min(orDefaultInt(h2.InitialStreamWindowSize, defaultInitialStreamWindowSize), maxHTTP2Window)
		lim.connWindow = min(orDefaultInt(h2.InitialConnectionWindowSize, defaultInitialConnectionWindowSize), maxHTTP2Window)
	case l.TCP != nil:
		lim.idleTimeout = orDefault(l.TCP.IdleTimeout, defaultIdleTimeout)
		lim.maxConnections = orDefaultInt(l.TCP.MaxConnections, lim.maxConnections)
	}
	return lim
}

// server returns the http.Server of an HTTP listener with its limits.
// Go's server refuses request headers (request line included) over
// MaxHeaderBytes plus 4 KiB itself, with 431; limitHandler checks the exact
// limits.
//
// HTTP/2 is prior knowledge over plaintext (Go's UnencryptedHTTP2: a
// connection that opens with the HTTP/2 preface), beside HTTP/1.1 for
// codec_type AUTO, as Envoy's AUTO codec tells the two apart by the
// preface. Go's HTTP/2 server applies MaxHeaderBytes to the header list,
// ReadTimeout per stream, and bounds resets and control frames a client
// may send (the rapid-reset and flood mitigations).
func (lim limits) server(h http.Handler) *http.Server {
	srv := &http.Server{
		Handler:           h,
		MaxHeaderBytes:    lim.maxHeaderBytes,
		ReadHeaderTimeout: lim.requestHeadersTimeout,
		ReadTimeout:       lim.requestTimeout,
		IdleTimeout:       lim.idleTimeout,
		Protocols:         new(http.Protocols),
	}
	srv.Protocols.SetHTTP1(lim.http1)
	srv.Protocols.SetUnencryptedHTTP2(lim.h2c)
	if lim.h2c {
		srv.HTTP2 = &http.HTTP2Config{
			MaxConcurrentStreams:          lim.maxStreams,
			MaxReceiveBufferPerStream:     lim.streamWindow,
			MaxReceiveBufferPerConnection: max(lim.connWindow, 64<<10), // Go's least
		}
	}
	return srv
}

// limitHandler answers 431 to a request over the header limits (as Envoy's
// connection manager does, so that plugins never see such a request) and
// ends an exchange with no activity, downstream or upstream, for the stream
// idle timeout: 408 if nothing of the response was sent yet, else a reset.
type limitHandler struct {
	lim  limits
	next http.Handler
}

func (h *limitHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n, size := 0, len(r.Method)+len(r.RequestURI)+len(r.Host)
	for k, vs := range r.Header {
		n += len(vs)
		for _, v := range vs {
			size += len(k) + len(v)
		}
	}
	if n > h.lim.maxHeadersCount || size > h.lim.maxHeaderBytes {
		w.Header().Set("Connection", "close")
		http.Error(w, fmt.Sprintf("request headers too large: %d headers, %d bytes (limits: %d headers, %d bytes)",
			n, size, h.lim.maxHeadersCount, h.lim.maxHeaderBytes), http.StatusRequestHeaderFieldsTooLarge)
		return
	}
	if h.lim.streamIdleTimeout <= 0 {
		h.next.ServeHTTP(w, r)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	iw := &idleWriter{ResponseWriter: w, rc: http.NewResponseController(w), idle: h.lim.streamIdleTimeout}
	iw.timer = time.AfterFunc(iw.idle, func() { iw.expire(cancel) })
	defer iw.timer.Stop()
	r = r.WithContext(ctx)
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &idleBody{ReadCloser: r.Body, w: iw}
	}
	h.next.ServeHTTP(iw, r)
	if iw.timedOut() && !iw.wrote {
		w.Header().Set("Connection", "close")
		http.Error(w, "stream idle timeout", http.StatusRequestTimeout)
	}
}

// idleWriter watches an exchange for activity: every request body read and
// every response write restarts the timer; when it fires, the exchange's
// context is cancelled (the upstream request ends) and blocked reads and
// writes of the client connection are unblocked.
type idleWriter struct {
	http.ResponseWriter
	rc    *http.ResponseController
	idle  time.Duration
	timer *time.Timer
	wrote bool // the handler's goroutine only

	expired atomic.Bool
}

// active restarts the timer, unless it fired: the deadlines it set must not
// be undone, nor reach a later request on the same connection.
func (w *idleWriter) active() {
	if !w.expired.Load() {
		w.timer.Reset(w.idle)
	}
}

func (w *idleWriter) expire(cancel context.CancelFunc) {
	w.expired.Store(true)
	cancel()
	now := time.Now()
	_ = w.rc.SetReadDeadline(now)
	_ = w.rc.SetWriteDeadline(now)
}

func (w *idleWriter) timedOut() bool { return w.expired.Load() }

func (w *idleWriter) WriteHeader(code int) {
	if code >= 200 {
		w.wrote = true
	}
	w.active()
	w.ResponseWriter.WriteHeader(code)
}

func (w *idleWriter) Write(b []byte) (int, error) {
	w.wrote = true
	w.active()
	n, err := w.ResponseWriter.Write(b)
	w.active()
	return n, err
}

func (w *idleWriter) Flush() {
	w.wrote = true
	w.active()
	_ = w.rc.Flush()
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *idleWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// idleBody restarts the idle timer on every read of the request body.
type idleBody struct {
	io.ReadCloser
	w *idleWriter
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.w.active()
	}
	return n, err
}

// limitListener admits at most max connections. At the limit, a new
// connection evicts the connection idle the longest (an HTTP keep-alive
// connection between requests: closing it is what a server may always do)
// or, when none is idle, is closed at once, so that idle clients cannot
// starve new ones and the process keeps descriptors for the rest.
type limitListener struct {
	net.Listener
	max     int
	refused func() // counts a refused connection

	mu    sync.Mutex
	conns map[net.Conn]*connState
	seq   uint64
}

type connState struct {
	idleSince uint64 // sequence number of when it went idle; 0 while busy
}

func newLimitListener(ln net.Listener, max int, refused func()) *limitListener {
	return &limitListener{Listener: ln, max: max, refused: refused, conns: map[net.Conn]*connState{}}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		var victim net.Conn
		if len(l.conns) >= l.max {
			var oldest uint64
			for vc, st := range l.conns {
				if st.idleSince != 0 && (victim == nil || st.idleSince < oldest) {
					victim, oldest = vc, st.idleSince
				}
			}
			if victim == nil {
				l.mu.Unlock()
				_ = c.Close()
				if l.refused != nil {
					l.refused()
				}
				continue
			}
			delete(l.conns, victim) // its Close finds it gone
		}
		lc := &limitConn{Conn: c, l: l}
		l.conns[lc] = &connState{}
		l.mu.Unlock()
		if victim != nil {
			_ = victim.Close()
		}
		return lc, nil
	}
}

// setIdle records that c is idle (between HTTP requests) or busy; for
// http.Server.ConnState.
func (l *limitListener) setIdle(c net.Conn, idle bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.conns[c]
	if st == nil {
		return
	}
	if idle {
		l.seq++
		st.idleSince = l.seq
	} else {
		st.idleSince = 0
	}
}

// connState is http.Server.ConnState for a server on l.
func (l *limitListener) connState(c net.Conn, s http.ConnState) {
	switch s {
	case http.StateIdle:
		l.setIdle(c, true)
	case http.StateActive:
		l.setIdle(c, false)
	}
}

func (l *limitListener) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
