package abi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/anywasm/anywasm/engine"
)

// Plugin is a loaded plugin: a root context in every VM of its group.
// Streams are spread over up to PoolSize VMs; each stream stays on one VM.
type Plugin struct {
	group *vmGroup
	cfg   PluginConfig
	log   *slog.Logger
	refs  int      // Loads of this plugin not closed yet (group.mu)
	level LogLevel // the level its logs are kept at

	httpStreams sync.Pool // *HTTPStream, reused after Close
}

// Config returns the plugin's configuration.
func (p *Plugin) Config() PluginConfig { return p.cfg }

// VMs returns the number of live VMs the plugin's streams are spread over
// (for a service: the VMs its root context runs on).
func (p *Plugin) VMs() int {
	g := p.group
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, v := range g.vms {
		if !v.failed.Load() {
			n++
		}
	}
	return n
}

// ABIVersion returns the Proxy-Wasm ABI version the plugin declared.
func (p *Plugin) ABIVersion() Version { return p.group.version }

// Close removes the plugin's root context from its VMs (proxy_on_done,
// proxy_on_delete) and closes the VMs when no plugin uses them.
//
// Loading a plugin identical to a loaded one (same code, VMID, VM and plugin
// configuration, RootID and every other field) returns the loaded one, with
// its root context: each Load is matched by a Close, and the last Close
// ends the root context.
func (p *Plugin) Close(ctx context.Context) error {
	g := p.group
	g.mu.Lock()
	i := slices.Index(g.plugins, p)
	if i < 0 {
		g.mu.Unlock()
		return nil
	}
	if p.refs--; p.refs > 0 {
		g.mu.Unlock()
		return nil
	}
	g.plugins = slices.Delete(g.plugins, i, i+1)
	if len(g.plugins) == 0 {
		// Shut the group before letting go of it: a Load that found it
		// must not join it now, but make another.
		vms, ok := g.shut()
		g.mu.Unlock()
		g.host.forgetGroup(g)
		if !ok {
			return nil
		}
		return g.free(ctx, vms)
	}
	vms := slices.Clone(g.vms)
	g.mu.Unlock()
	for _, v := range vms {
		v.mu.Lock()
		v.dropRoot(ctx, p)
		v.mu.Unlock()
	}
	return nil
}

// dropRoot ends p's root context in v (proxy_on_done, proxy_on_delete) and
// forgets it: its ticks, its gRPC calls and streams, its context, its
// shared queues. A failed or closing VM is left as it is: it goes away
// whole. v.mu is held.
func (v *vm) dropRoot(ctx context.Context, p *Plugin) {
	root := v.roots[p]
	if root == nil || v.failed.Load() || v.closing {
		return
	}
	_ = v.shutdownRoot(ctx, root)
	if t := v.ticks[root.id]; t != nil {
		t.stop()
		delete(v.ticks, root.id)
	}
	v.cancelGRPC(root.id)
	delete(v.roots, p)
	delete(v.ctxs, root.id)
	v.group.host.queues.forget(v, root.id)
}

// LocalResponse is an answer the plugin sent instead of the upstream's
// (proxy_send_local_response).
type LocalResponse struct {
	Status     int
	Details    string
	Headers    Headers
	Body       []byte
	GRPCStatus int32 // -1 when not a gRPC response
	// Reset: the plugin reset the stream (proxy_close_stream) instead of
	// answering; nothing is to be sent, the stream is aborted.
	Reset bool
}

// stream is what HTTP and TCP streams share.
type stream struct {
	p   *Plugin
	v   *vm
	c   *contextState // &cs once the context exists
	cs  contextState
	err error // the plugin failed during this stream
	// paused[d] is set when a callback of direction d (0: the request or
	// downstream, 1: the response or upstream) answers pause, and cleared
	// when the plugin continues that direction; resume[d] is signalled then,
	// and when the plugin answers the stream or fails (from another
	// callback, e.g. an HTTP callout's). A continue of a direction that is
	// not paused does nothing, as Envoy's continueDecoding/continueEncoding
	// of a filter that did not stop.
	paused [2]bool
	resume [2]chan struct{}
	// closeReq: the plugin closed the stream (proxy_close_stream).
	closeReq bool
	closed   bool
	// What the attributes need (attributes.go): the embedder's StreamInfo
	// (nil: none), when the stream started and ended, the body bytes
	// that went through it each way.
	info                *StreamInfo
	started, ended      time.Time
	reqBytes, respBytes int64
}

// dirOf maps a stream type to the index of its direction in paused and
// resume.
func dirOf(t StreamType) int { return int(t) & 1 }

// start picks a VM and creates the stream context
// (proxy_on_context_create). A stream struct is reused after Close (streams
// are pooled so that a request allocates nothing of the host's own): only
// the VM's context table refers to it, and Close removes it from there.
func (s *stream) start(ctx context.Context, p *Plugin, info *StreamInfo) error {
	if p.cfg.Service != NotService {
		return fmt.Errorf("abi: plugin %q: %w", p.cfg.Name, ErrService)
	}
	v, err := p.group.acquire(ctx)
	if err != nil {
		return &PluginError{Plugin: p.cfg.Name, Callback: "proxy_on_context_create", Err: err}
	}
	for d := range s.resume {
		if s.resume[d] == nil {
			s.resume[d] = make(chan struct{}, 1)
		}
		drain(s.resume[d]) // a signal left from the previous use
	}
	s.p, s.v, s.c, s.err, s.closed, s.paused, s.closeReq = p, v, nil, nil, false, [2]bool{}, false
	s.info, s.ended, s.reqBytes, s.respBytes = info, time.Time{}, 0, 0
	if info == nil || info.StartTime.IsZero() {
		s.started = p.group.host.opts.Now()
	} else {
		s.started = info.StartTime
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.failed.Load() {
		s.err = v.failure()
		return nil
	}
	v.nextID++
	s.cs = contextState{id: v.nextID, plugin: p, root: v.roots[p]}
	s.c = &s.cs
	v.ctxs[s.c.id] = s.c
	if _, err := v.call(ctx, s.c, v.cb.contextCreate, "proxy_on_context_create", uint64(s.c.id), uint64(s.c.root.id)); err != nil {
		s.err = err
	}
	return nil
}

func drain(c chan struct{}) {
	select {
	case <-c:
	default:
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// pause records that direction d is paused. The VM's lock is held.
func (s *stream) pause(d int) {
	s.paused[d] = true
	drain(s.resume[d])
}

// cont continues direction d if it is paused. The VM's lock is held.
func (s *stream) cont(d int) {
	if s.paused[d] {
		s.paused[d] = false
		signal(s.resume[d])
	}
}

// wake wakes whatever waits on the stream: it was answered or its plugin
// failed. The VM's lock is held.
func (s *stream) wake() {
	signal(s.resume[0])
	signal(s.resume[1])
}

// invoke runs a callback of the stream's context with (id, a, b); ok is
// false when the plugin failed, in this call or before (s.err says why).
// The VM's lock is held.
func (s *stream) invoke(ctx context.Context, cb callback, name string, a, b uint64) (r uint64, ok bool) {
	v := s.v
	if s.err == nil && v.failed.Load() {
		s.err = v.failure()
	}
	if s.err != nil {
		return 0, false
	}
	r, err := v.call(ctx, s.c, cb, name, uint64(s.c.id), a, b)
	if err != nil {
		s.err = err
		return 0, false
	}
	return r, true
}

// locked runs f under the VM's lock: the plugin may change the stream from
// another goroutine's callback.
func (s *stream) locked(f func()) {
	if s.v == nil { // closed: only zero values are left
		f()
		return
	}
	s.v.mu.Lock()
	defer s.v.mu.Unlock()
	f()
}

// finish ends the stream's context: proxy_on_done, proxy_on_log,
// proxy_on_delete (the SDKs run their per-stream cleanup in these).
func (s *stream) finish(ctx context.Context) error {
	if s.closed {
		return nil
	}
	defer func() {
		s.closed = true
		s.v.streams.Add(-1)
	}()
	if s.c == nil || s.err != nil {
		return s.err
	}
	v := s.v
	v.mu.Lock()
	defer v.mu.Unlock()
	defer delete(v.ctxs, s.c.id)
	s.ended = s.p.group.host.opts.Now() // request.duration in on_done and on_log
	if v.failed.Load() {
		return nil
	}
	id := uint64(s.c.id)
	for _, x := range []struct {
		cb   callback
		name string
	}{{v.cb.done, "proxy_on_done"}, {v.cb.log, "proxy_on_log"}, {v.cb.delete, "proxy_on_delete"}} {
		if _, err := v.call(ctx, s.c, x.cb, x.name, id); err != nil {
			s.err = err
			return err
		}
	}
	return nil
}

// wait blocks until settled, checked under the VM's lock, holds, or ctx is
// done. settled is checked again after every wake-up of direction d.
func (s *stream) wait(ctx context.Context, d int, settled func() bool) error {
	v := s.v
	for {
		v.mu.Lock()
		ok := settled()
		v.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-s.resume[d]:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// errStreamClosed is returned by callbacks of a closed stream.
var errStreamClosed = errors.New("abi: stream is closed")

// ErrClosedByPlugin is what TCPStream.Err returns once the plugin closed
// the connection (proxy_close_stream): the embedder closes it.
var ErrClosedByPlugin = errors.New("abi: the plugin closed the stream (proxy_close_stream)")

var _ = engine.ErrClosed
