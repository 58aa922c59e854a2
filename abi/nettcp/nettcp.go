// Package nettcp is a TCP proxy that runs each connection through a chain of
// Proxy-Wasm network plugins, as Envoy's network filter chain does.
//
// Data from the downstream (the client) goes through the plugins in chain
// order (proxy_on_downstream_data of plugin 0, then 1, ...) and on to the
// upstream; data from the upstream goes through them in reverse order
// (proxy_on_upstream_data) and back to the client. What a plugin returns on
// ActionContinue feeds the next one.
//
// A plugin that pauses in the middle of a stream keeps the data (abi appends
// later chunks to its buffer) and is offered the whole buffer again with the
// next chunk; a proxy_continue_stream between two chunks takes effect at the
// next chunk or at the end of the stream, where a paused plugin is waited for
// (TCPStream.Wait) and its buffer passed on. Each direction may hold at most
// Proxy.MaxBufferBytes in paused plugins.
//
// Limits: a plugin paused at the end of a stream (or in
// proxy_on_new_connection) is waited for without a bound of its own (only
// Serve's context ends the wait); a side that half-closed keeps the
// connection open until the other side closes too, as a TCP proxy with
// half-close does; and proxy_on_upstream_connection_close is only run when
// the upstream was connected.
package nettcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anywasm/anywasm/abi"
)

// DefaultMaxBufferBytes is the default of Proxy.MaxBufferBytes.
const DefaultMaxBufferBytes = 1 << 20

// chunkSize is the size of each read.
const chunkSize = 32 << 10

// ErrBufferLimit is the cause of a connection closed because paused plugins
// held more than Proxy.MaxBufferBytes in one direction.
var ErrBufferLimit = errors.New("nettcp: paused plugins hold more than MaxBufferBytes")

// Proxy copies between a downstream connection and an upstream connection it
// dials, running each direction through Plugins. Its fields must not change
// while Serve runs; one Proxy serves any number of connections at once.
type Proxy struct {
	// Plugins is the network filter chain, in downstream order.
	Plugins []*abi.Plugin
	// Dial opens the upstream connection. Its context is Serve's.
	Dial func(ctx context.Context) (net.Conn, error)
	// Logger receives the proxy's own errors (not the plugins' logs, which
	// go to the abi.Host's logger). Default slog.Default().
	Logger *slog.Logger
	// MaxBufferBytes bounds the data paused plugins may hold per direction
	// (default DefaultMaxBufferBytes); going over it closes the connection
	// with a logged error.
	MaxBufferBytes int
	// IdleTimeout closes a connection that carried no data in either
	// direction for that long, and one whose peer does not take what is
	// written to it for that long (ErrIdleTimeout). 0 means no timeout.
	IdleTimeout time.Duration
	// Info, when set, completes what the plugins' attributes
	// (proxy_get_property) know of a connection before its streams are
	// created (its cluster, the connection id, the listener's TLS): Serve
	// sets source.address and destination.address from the downstream
	// connection itself, and the upstream addresses once Dial returned.
	Info func(down net.Conn, info *abi.StreamInfo)
}

// ErrIdleTimeout is the cause of a connection closed by Proxy.IdleTimeout.
var ErrIdleTimeout = errors.New("nettcp: idle timeout")

var bufPool = sync.Pool{New: func() any { return new([chunkSize]byte) }}

// Serve proxies down until both directions are done (each side sent EOF and
// the other side was half-closed), a side fails, a plugin fails closed,
// or ctx is done (a graceful shutdown: both connections are closed). It
// closes down, the upstream connection and every plugin stream before it
// returns.
//
// For each plugin, Serve creates a TCPStream (proxy_on_new_connection),
// waiting for a plugin that pauses there; a plugin that fails there, or
// a failing Dial, closes down without running any data. At the end each
// stream gets proxy_on_downstream_connection_close and, if the upstream was
// connected, proxy_on_upstream_connection_close, with abi.PeerRemote for a
// side that closed (EOF or error) first and abi.PeerLocal for a side the
// proxy closed; then the stream is closed.
//
// Serve returns nil when both sides ended with EOF; otherwise the first
// cause of the close (ctx.Err() on a cancel).
func (p *Proxy) Serve(ctx context.Context, down net.Conn) error {
	c := &conn{p: p, down: down, log: p.Logger, max: p.MaxBufferBytes, idle: p.IdleTimeout}
	c.info.SourceAddress = down.RemoteAddr().String()
	c.info.DestinationAddress = down.LocalAddr().String()
	if p.Info != nil {
		p.Info(down, &c.info)
	}
	c.touch()
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.max <= 0 {
		c.max = DefaultMaxBufferBytes
	}
	// Plugin callbacks never see a cancel: an interrupted callback fails its
	// VM, and a shutdown must not kill plugins. CallTimeout bounds them.
	c.pctx = context.WithoutCancel(ctx)
	c.ctx, c.cancel = context.WithCancel(ctx)
	defer c.cancel()
	stop := context.AfterFunc(ctx, func() { c.abort(ctx.Err()) })
	defer stop()
	defer c.finish()

	if err := c.start(); err != nil {
		c.abort(err)
		return c.cause()
	}
	up, err := p.Dial(ctx)
	if err != nil {
		c.abort(fmt.Errorf("nettcp: dial upstream: %w", err))
		return c.cause()
	}
	c.info.SetUpstream(up.RemoteAddr().String(), up.LocalAddr().String(), nil)
	c.mu.Lock()
	c.up = up
	aborted := c.closing
	c.mu.Unlock()
	if aborted { // canceled while dialing
		c.abort(nil)
		return c.cause()
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.pump(fromUpstream)
	}()
	c.pump(fromDownstream)
	wg.Wait()
	return c.cause()
}

// direction is one way data flows.
type direction int

const (
	fromDownstream direction = iota
	fromUpstream
)

// side is one connection's state: who closed it first.
type side struct {
	peer abi.PeerType // PeerUnknown while open
}

// conn is one proxied connection.
type conn struct {
	p         *Proxy
	log       *slog.Logger
	max       int
	idle      time.Duration
	lastData  atomic.Int64    // unix nanoseconds of the last data read either way
	pctx, ctx context.Context // pctx for plugin callbacks, ctx for waits
	cancel    context.CancelFunc
	down, up  net.Conn
	info      abi.StreamInfo // the connection's attributes

	// mu serializes calls into the streams (a TCPStream is for one
	// goroutine; the two directions run on two) and guards what follows.
	// It is never held in Wait nor in network I/O.
	mu       sync.Mutex
	streams  []*abi.TCPStream
	downSide side
	upSide   side
	err      error // first cause of a close; nil while running or after two EOFs
	closing  bool  // abort ran: later errors are consequences, not causes
}

// start creates a stream per plugin, waiting for those that pause.
func (c *conn) start() error {
	for _, pl := range c.p.Plugins {
		c.mu.Lock()
		s, a, err := pl.NewTCPStreamInfo(c.pctx, &c.info)
		if s != nil {
			c.streams = append(c.streams, s)
		}
		c.mu.Unlock()
		if err != nil {
			return fmt.Errorf("nettcp: new connection: %w", err)
		}
		if a != abi.ActionPause {
			continue
		}
		if err := c.streamErr(s); err != nil {
			return err
		}
		if err := s.Wait(c.ctx, abi.StreamDownstream); err != nil {
			return err
		}
		if err := c.streamErr(s); err != nil {
			return err
		}
	}
	return nil
}

// streamErr returns the failure of a plugin, or nil.
func (c *conn) streamErr(s *abi.TCPStream) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := s.Err(); err != nil {
		return fmt.Errorf("nettcp: plugin failed: %w", err)
	}
	return nil
}

// pump copies one direction until EOF or an error.
func (c *conn) pump(d direction) {
	src, dst := c.down, c.up
	srcSide, dstSide := &c.downSide, &c.upSide
	if d == fromUpstream {
		src, dst = c.up, c.down
		srcSide, dstSide = &c.upSide, &c.downSide
	}
	buf := bufPool.Get().(*[chunkSize]byte)
	defer bufPool.Put(buf)
	held := make([]int, len(c.p.Plugins)) // bytes held by each paused plugin
	for {
		if c.idle > 0 {
			_ = src.SetReadDeadline(time.Now().Add(c.idle))
		}
		n, rerr := src.Read(buf[:])
		if n > 0 {
			c.touch()
			out, err := c.chain(d, buf[:n], false, held)
			if err != nil {
				c.abort(err)
				return
			}
			if len(out) > 0 {
				if err := c.write(dst, out); err != nil {
					c.closedBy(dstSide, abi.PeerRemote)
					c.abort(err)
					return
				}
			}
		}
		if rerr == nil {
			continue
		}
		if ne, ok := rerr.(net.Error); ok && ne.Timeout() && c.idle > 0 {
			if time.Since(time.Unix(0, c.lastData.Load())) < c.idle {
				continue // the other direction carried data meanwhile
			}
			c.abort(ErrIdleTimeout)
			return
		}
		c.closedBy(srcSide, abi.PeerRemote)
		if !errors.Is(rerr, io.EOF) {
			c.abort(fmt.Errorf("nettcp: read: %w", rerr))
			return
		}
		out, err := c.chain(d, nil, true, held)
		if err != nil {
			c.abort(err)
			return
		}
		if len(out) > 0 {
			if err := c.write(dst, out); err != nil {
				c.closedBy(dstSide, abi.PeerRemote)
				c.abort(err)
				return
			}
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			if err := cw.CloseWrite(); err != nil {
				c.abort(fmt.Errorf("nettcp: half-close: %w", err))
			}
			return
		}
		c.abort(nil) // no half-close: end the connection
		return
	}
}

// chain runs chunk through the plugins of direction d and returns what
// comes out of the last one (nil if a plugin paused).
func (c *conn) chain(d direction, chunk []byte, eos bool, held []int) ([]byte, error) {
	n := len(c.p.Plugins)
	for k := 0; k < n; k++ {
		i := k
		if d == fromUpstream {
			i = n - 1 - k
		}
		c.mu.Lock()
		if c.closing {
			c.mu.Unlock()
			return nil, net.ErrClosed
		}
		s := c.streams[i]
		var out []byte
		var a abi.Action
		var err error
		if d == fromDownstream {
			out, a, err = s.DownstreamData(c.pctx, chunk, eos)
		} else {
			out, a, err = s.UpstreamData(c.pctx, chunk, eos)
		}
		if err == nil {
			// A plugin that failed (under FAIL_OPEN it continues) or
			// closed the connection.
			if perr := s.Err(); perr != nil && (a == abi.ActionPause || errors.Is(perr, abi.ErrClosedByPlugin)) {
				err = fmt.Errorf("nettcp: plugin failed: %w", perr)
			}
		} else {
			err = fmt.Errorf("nettcp: plugin: %w", err)
		}
		c.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if a == abi.ActionContinue {
			held[i] = 0
			chunk = out
			continue
		}
		if !eos {
			held[i] += len(chunk)
			total := 0
			for _, h := range held {
				total += h
			}
			if total > c.max {
				c.log.Error("nettcp: closing connection: paused plugins hold too much data",
					"plugin", c.p.Plugins[i].Config().Name, "bytes", total, "max", c.max)
				return nil, ErrBufferLimit
			}
			return nil, nil
		}
		// Paused at the end of the stream: wait for the plugin, then pass on
		// its buffer.
		dir := abi.StreamDownstream
		if d == fromUpstream {
			dir = abi.StreamUpstream
		}
		if err := s.Wait(c.ctx, dir); err != nil {
			return nil, err
		}
		c.mu.Lock()
		if err := s.Err(); err != nil {
			c.mu.Unlock()
			return nil, fmt.Errorf("nettcp: plugin failed: %w", err)
		}
		if d == fromDownstream {
			chunk = s.TakeDownstream()
		} else {
			chunk = s.TakeUpstream()
		}
		c.mu.Unlock()
		held[i] = 0
	}
	return chunk, nil
}

// touch records data read.
func (c *conn) touch() { c.lastData.Store(time.Now().UnixNano()) }

// write writes b to dst, within the idle timeout.
func (c *conn) write(dst net.Conn, b []byte) error {
	if c.idle > 0 {
		_ = dst.SetWriteDeadline(time.Now().Add(c.idle))
	}
	if _, err := dst.Write(b); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() && c.idle > 0 {
			return ErrIdleTimeout
		}
		return fmt.Errorf("nettcp: write: %w", err)
	}
	return nil
}

// closedBy records who closed a side first.
func (c *conn) closedBy(s *side, peer abi.PeerType) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.peer == abi.PeerUnknown {
		s.peer = peer
	}
}

// abort closes both connections (a side not closed yet is closed locally)
// and records err as the cause if it is the first. abort(nil) closes without
// a cause.
func (c *conn) abort(err error) {
	c.mu.Lock()
	first := !c.closing
	c.closing = true
	if first && err != nil {
		c.err = err
		switch {
		case errors.Is(err, ErrIdleTimeout):
			c.log.Debug("nettcp: closing an idle connection", "timeout", c.idle)
		case !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded):
			c.log.Error("nettcp: closing connection", "err", err)
		}
	}
	if c.downSide.peer == abi.PeerUnknown {
		c.downSide.peer = abi.PeerLocal
	}
	if c.up != nil && c.upSide.peer == abi.PeerUnknown {
		c.upSide.peer = abi.PeerLocal
	}
	up := c.up
	c.mu.Unlock()
	c.cancel()
	_ = c.down.Close()
	if up != nil {
		_ = up.Close()
	}
}

func (c *conn) cause() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// finish closes the connections and runs the close callbacks, then closes
// every stream.
func (c *conn) finish() {
	c.mu.Lock()
	if c.downSide.peer == abi.PeerUnknown {
		c.downSide.peer = abi.PeerLocal
	}
	if c.up != nil && c.upSide.peer == abi.PeerUnknown {
		c.upSide.peer = abi.PeerLocal
	}
	up := c.up
	c.mu.Unlock()
	_ = c.down.Close()
	if up != nil {
		_ = up.Close()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.streams {
		if err := s.DownstreamClose(c.pctx, c.downSide.peer); err != nil {
			c.log.Error("nettcp: downstream close", "err", err)
		}
		if up != nil {
			if err := s.UpstreamClose(c.pctx, c.upSide.peer); err != nil {
				c.log.Error("nettcp: upstream close", "err", err)
			}
		}
		if err := s.Close(c.pctx); err != nil { // a plugin failure, logged when it happened
			c.log.Debug("nettcp: stream close", "err", err)
		}
	}
}
