package abi

import "context"

// TCPStream is one TCP connection through a network plugin. Use it from one
// goroutine; Close it when the connection ends.
//
// On ActionPause from a data method, hold the data (the buffer keeps
// growing with later chunks); a failed plugin under FailClosed or FailReload
// makes every method return ActionPause with Err set: close the connection.
type TCPStream struct {
	stream
	down, up []byte
}

// NewTCPStream creates a stream context and runs proxy_on_new_connection.
// It is NewTCPStreamInfo without a StreamInfo.
func (p *Plugin) NewTCPStream(ctx context.Context) (*TCPStream, Action, error) {
	return p.NewTCPStreamInfo(ctx, nil)
}

// NewTCPStreamInfo creates a stream context whose attributes
// (proxy_get_property: source, destination, connection, upstream, xds)
// come from info, and runs proxy_on_new_connection. info may be nil and
// must stay valid until Close.
func (p *Plugin) NewTCPStreamInfo(ctx context.Context, info *StreamInfo) (*TCPStream, Action, error) {
	s := &TCPStream{}
	if err := s.start(ctx, p, info); err != nil {
		return nil, ActionPause, err
	}
	if s.c != nil {
		s.c.tcp = s
	}
	a, err := s.run(ctx, 0, func(v *vm) callback { return v.cb.newConnection }, "proxy_on_new_connection", 0, 0)
	return s, a, err
}

// run calls a callback of direction d (0 downstream, 1 upstream).
func (s *TCPStream) run(ctx context.Context, d int, cb func(v *vm) callback, name string, a, b uint64) (Action, error) {
	if s.closed {
		return ActionPause, errStreamClosed
	}
	v := s.v
	v.mu.Lock()
	defer v.mu.Unlock()
	r, ok := s.invoke(ctx, cb(v), name, a, b)
	if !ok {
		return s.failed(), nil
	}
	if cb(v).f == nil {
		return ActionContinue, nil
	}
	act := dataAction(r)
	if act == ActionPause {
		s.pause(d)
	}
	return act, nil
}

func (s *TCPStream) failed() Action {
	if s.p.cfg.FailurePolicy == FailOpen {
		return ActionContinue
	}
	return ActionPause
}

// DownstreamData appends chunk to the downstream buffer and runs
// proxy_on_downstream_data; on ActionContinue it returns the buffer (as the
// plugin left it) to send upstream and empties it.
func (s *TCPStream) DownstreamData(ctx context.Context, chunk []byte, endOfStream bool) ([]byte, Action, error) {
	s.locked(func() { s.down = append(s.down, chunk...) })
	a, err := s.run(ctx, 0, func(v *vm) callback { return v.cb.downstreamData }, "proxy_on_downstream_data", uint64(len(s.down)), boolArg(endOfStream))
	if a == ActionContinue && err == nil {
		return s.TakeDownstream(), a, nil
	}
	return nil, a, err
}

// UpstreamData is DownstreamData for data from the upstream.
func (s *TCPStream) UpstreamData(ctx context.Context, chunk []byte, endOfStream bool) ([]byte, Action, error) {
	s.locked(func() { s.up = append(s.up, chunk...) })
	a, err := s.run(ctx, 1, func(v *vm) callback { return v.cb.upstreamData }, "proxy_on_upstream_data", uint64(len(s.up)), boolArg(endOfStream))
	if a == ActionContinue && err == nil {
		return s.TakeUpstream(), a, nil
	}
	return nil, a, err
}

// DownstreamClose runs proxy_on_downstream_connection_close.
func (s *TCPStream) DownstreamClose(ctx context.Context, peer PeerType) error {
	_, err := s.run(ctx, 0, func(v *vm) callback { return v.cb.downstreamClose }, "proxy_on_downstream_connection_close", uint64(peer), 0)
	return err
}

// UpstreamClose runs proxy_on_upstream_connection_close.
func (s *TCPStream) UpstreamClose(ctx context.Context, peer PeerType) error {
	_, err := s.run(ctx, 1, func(v *vm) callback { return v.cb.upstreamClose }, "proxy_on_upstream_connection_close", uint64(peer), 0)
	return err
}

// Wait blocks, after an ActionPause of direction dir (StreamDownstream, for
// proxy_on_new_connection too, or StreamUpstream), until the plugin
// continues that direction or fails, or ctx is done. It returns at once if
// the direction is not paused.
func (s *TCPStream) Wait(ctx context.Context, dir StreamType) error {
	if s.closed || s.v == nil {
		return errStreamClosed
	}
	d, v := dirOf(dir), s.v
	return s.wait(ctx, d, func() bool { return !s.paused[d] || v.failed.Load() || s.err != nil || s.closeReq })
}

// TakeDownstream returns and empties the downstream buffer.
func (s *TCPStream) TakeDownstream() (b []byte) {
	s.locked(func() { b, s.down = s.down, nil })
	return b
}

// TakeUpstream returns and empties the upstream buffer.
func (s *TCPStream) TakeUpstream() (b []byte) {
	s.locked(func() { b, s.up = s.up, nil })
	return b
}

// Err returns why the plugin failed during this stream, ErrClosedByPlugin
// if the plugin closed the connection, or nil.
func (s *TCPStream) Err() (err error) {
	s.locked(func() {
		err = s.err
		if err == nil && s.closeReq {
			err = ErrClosedByPlugin
		}
	})
	return err
}

// Close ends the stream context (proxy_on_done, proxy_on_log,
// proxy_on_delete) and returns the plugin's failure, if any.
func (s *TCPStream) Close(ctx context.Context) error { return s.finish(ctx) }
