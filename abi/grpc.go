package abi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// GRPCRequest is a unary gRPC call a plugin makes (proxy_grpc_call).
type GRPCRequest struct {
	Cluster, Service, Method string
	// Metadata is the initial metadata the plugin sent.
	Metadata Headers
	// Message is the serialized request message.
	Message []byte
	// Timeout is what the plugin asked for; 0 means none. The context given
	// to Call carries it as a deadline too.
	Timeout time.Duration
}

// GRPCResponse is the answer to a GRPCRequest. As in Envoy, the plugin
// gets the message (or the status and its message), not the metadata.
type GRPCResponse struct {
	InitialMetadata  Headers
	Message          []byte
	TrailingMetadata Headers
	// Status is the gRPC status code (0 OK); StatusMessage its message.
	Status        uint32
	StatusMessage string
}

// GRPCUpstreams carries unary gRPC calls for plugins. anywasm takes no gRPC
// dependency: an embedder adapts its own client (for google.golang.org/grpc,
// a ClientConn.Invoke with a codec that passes bytes through). An error is
// answered to the plugin as status 14 (UNAVAILABLE) with the error's text.
// A GRPCUpstreams that also implements GRPCStreamer carries streams.
type GRPCUpstreams interface {
	Call(ctx context.Context, req *GRPCRequest) (*GRPCResponse, error)
}

// GRPCStreamRequest is a gRPC stream a plugin opens (proxy_grpc_stream).
type GRPCStreamRequest struct {
	Cluster, Service, Method string
	// Metadata is the initial metadata the plugin sent.
	Metadata Headers
}

// GRPCStreamer is implemented by GRPCUpstreams that carry gRPC streams
// (proxy_grpc_stream, proxy_grpc_send, proxy_grpc_close, proxy_grpc_cancel).
// Without it proxy_grpc_stream is PARSE_FAILURE, what Envoy answers for a
// cluster it does not know.
type GRPCStreamer interface {
	// OpenStream starts a bidirectional stream /Service/Method on the
	// cluster and returns at once: it runs inside the plugin's hostcall,
	// under its VM's lock, so it must not wait for a connection (a stream
	// that cannot be made is reported to h.Closed). The stream is reset
	// when ctx is done: the host cancels ctx when the plugin cancels the
	// stream, and when its root context, plugin or VM goes away.
	//
	// h receives the stream's events in order, from one goroutine at a
	// time and never from inside OpenStream or the GRPCStream's methods
	// (h takes the VM's lock, which those run under): InitialMetadata at
	// most once, when the server's headers arrive (with nil for a
	// trailers-only answer), then Message for each message, then Closed
	// exactly once, last. Events after ctx is done are ignored.
	OpenStream(ctx context.Context, req *GRPCStreamRequest, h GRPCStreamHandler) (GRPCStream, error)
}

// GRPCStream is the sending side of a stream OpenStream made. Its methods
// run under the VM's lock: they must not block on the network.
type GRPCStream interface {
	// Send queues msg, which the stream may keep (it is the host's copy),
	// and half-closes the stream after it if endStream. An error (a bound
	// on what may wait to be sent, say) is answered to the plugin as
	// INTERNAL_FAILURE; the stream goes on.
	Send(msg []byte, endStream bool) error
	// CloseSend half-closes the stream after the messages queued.
	CloseSend()
}

// GRPCStreamHandler receives the events of a stream (see GRPCStreamer).
type GRPCStreamHandler interface {
	InitialMetadata(md Headers)
	Message(msg []byte)
	// Closed ends the stream with the server's trailing metadata and
	// status (0 OK) and message, or a status of the client's own (14
	// UNAVAILABLE when no connection could be made, say).
	Closed(trailers Headers, status uint32, message string)
}

// grpcUnavailable is gRPC's UNAVAILABLE status code.
const grpcUnavailable = 14

// grpcCall is a unary call in flight (Envoy's GrpcCallClientHandler).
type grpcCall struct {
	root   uint32
	cancel context.CancelFunc
}

// grpcStream is a stream a plugin opened (Envoy's GrpcStreamClientHandler):
// the GRPCStreamHandler of its events, which go to the root context that
// opened it.
type grpcStream struct {
	v      *vm
	root   uint32
	token  uint32
	cancel context.CancelFunc
	stream GRPCStream
	// localClosed: the plugin closed it (proxy_grpc_close) before the
	// server did; remoteClosed: the server did (proxy_on_grpc_close ran
	// or runs). A stream both closed is forgotten, as Envoy forgets it.
	localClosed, remoteClosed bool
	// endSent: the plugin half-closed it (a send with end_stream, or
	// proxy_grpc_close); later sends go nowhere.
	endSent bool
	res     calloutResult // what the callbacks read; reused
}

// hGRPCCall is proxy_grpc_call(upstream, service, method, initial metadata,
// message, timeout_ms, ret_token): a unary call answered in the background
// with proxy_on_grpc_receive or proxy_on_grpc_close (doGRPC), on the
// calling root context. proxy_grpc_cancel or proxy_grpc_close of its token
// cancels it.
func (v *vm) hGRPCCall(_ context.Context, s []uint64) Status {
	cluster, ok1 := v.str(s[0], s[1])
	service, ok2 := v.str(s[2], s[3])
	method, ok3 := v.str(s[4], s[5])
	md, ok4 := v.bytes(s[6], s[7])
	msg, ok5 := v.bytes(s[8], s[9])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !v.writable(s[11]) {
		return StatusInvalidMemoryAccess
	}
	up := v.group.host.opts.GRPCUpstreams
	if up == nil {
		v.logger().Warn("proxy_grpc_call refused: the host has no gRPC upstreams", "cluster", cluster)
		return StatusParseFailure
	}
	// Envoy's Context::grpcCall: a cluster it does not know is
	// PARSE_FAILURE (kept so for ABI 0.1.x callers, says its comment).
	if c, ok := up.(ClusterChecker); ok && !c.HasCluster(cluster) {
		return StatusParseFailure
	}
	metadata := v.decodePairs(md) // PairsUtil::toPairs: a bad map is empty
	root, token, ok := v.newCall(calloutGRPCCall)
	if !ok {
		return StatusBadArgument
	}
	v.putU32(s[11], token)
	req := &GRPCRequest{Cluster: cluster, Service: service, Method: method, Metadata: metadata,
		Message: append([]byte(nil), msg...), Timeout: time.Duration(uint32(s[10])) * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	if v.grpcCalls == nil {
		v.grpcCalls = map[uint32]*grpcCall{}
	}
	v.grpcCalls[token] = &grpcCall{root: root.id, cancel: cancel}
	go v.doGRPC(ctx, v.logger(), up, req, root.id, token)
	return StatusOK
}

// doGRPC makes a unary call and delivers its answer, unless the call was
// cancelled meanwhile (by the plugin, or because its root context or VM
// went away), as Envoy's cancelled AsyncRequest delivers nothing. ctx is
// the call's; it is cancelled when the call is forgotten.
func (v *vm) doGRPC(ctx context.Context, log *slog.Logger, up GRPCUpstreams, req *GRPCRequest, rootID, token uint32) {
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, req.Timeout)
		defer cancel()
	}
	resp, err := up.Call(ctx, req)
	if err != nil && !errors.Is(ctx.Err(), context.Canceled) {
		log.Warn("gRPC callout failed", "cluster", req.Cluster, "method", req.Service+"/"+req.Method, "err", err)
	}
	if err != nil {
		resp = &GRPCResponse{Status: grpcUnavailable, StatusMessage: err.Error()}
	} else if resp == nil {
		resp = &GRPCResponse{Status: grpcUnavailable, StatusMessage: fmt.Sprintf("%T returned no response", up)}
	}
	cctx := context.Background() // the callbacks get call deadlines of their own
	v.mu.Lock()
	defer v.mu.Unlock()
	root := v.ctxs[rootID]
	live := func() bool { // cancelled by the plugin, perhaps in a callback
		c := v.grpcCalls[token]
		return c != nil && c.root == rootID && !v.closed && !v.failed.Load()
	}
	if root == nil || !live() {
		return
	}
	defer v.forgetCall(token)
	// Envoy's GrpcCallClientHandler: a call that succeeded is answered
	// with proxy_on_grpc_receive alone (onSuccessRaw, onGrpcReceiveWrapper),
	// one that failed with proxy_on_grpc_close alone (onFailure,
	// onGrpcCloseWrapper: proxy_get_status gives its message); a unary
	// call gets no metadata callback, and its metadata maps are empty.
	res := &calloutResult{body: resp.Message, statusCode: resp.Status, statusMessage: resp.StatusMessage, grpc: true}
	v.callout = res
	defer func() { v.callout = nil }()
	id, tok := uint64(rootID), uint64(token)
	if resp.Status == 0 {
		_, _ = v.call(cctx, root, v.cb.grpcReceive, "proxy_on_grpc_receive", id, tok, uint64(len(res.body)))
		return
	}
	_, _ = v.call(cctx, root, v.cb.grpcClose, "proxy_on_grpc_close", id, tok, uint64(resp.Status))
}

// forgetCall cancels and forgets a unary call. v.mu is held.
func (v *vm) forgetCall(token uint32) {
	if c := v.grpcCalls[token]; c != nil {
		c.cancel()
		delete(v.grpcCalls, token)
	}
}

// forgetStream resets (when not over already) and forgets a stream. v.mu
// is held.
func (v *vm) forgetStream(token uint32) {
	if st := v.grpcStreams[token]; st != nil {
		st.cancel()
		delete(v.grpcStreams, token)
	}
}

// cancelGRPC cancels and forgets the gRPC calls and streams of a root
// context (every one for root 0), as Envoy's Context destructor cancels
// its requests and resets its streams: no callback of theirs runs after.
// v.mu is held.
func (v *vm) cancelGRPC(root uint32) {
	for token, c := range v.grpcCalls {
		if root == 0 || c.root == root {
			v.forgetCall(token)
		}
	}
	for token, st := range v.grpcStreams {
		if root == 0 || st.root == root {
			v.forgetStream(token)
		}
	}
}

// hGRPCStream is proxy_grpc_stream(upstream, service, method, initial
// metadata, ret_token), cpp-host's grpc_stream over Envoy's
// Context::grpcStream: the host without gRPC streams, and a cluster it does
// not know, are PARSE_FAILURE; a stream that cannot be started is
// INTERNAL_FAILURE, and so is one over Limits.MaxGRPCStreams (Envoy has no
// bound). Its events go to the root context of the effective context:
// proxy_on_grpc_receive_initial_metadata when the server's headers arrive,
// proxy_on_grpc_receive for each message, then
// proxy_on_grpc_receive_trailing_metadata and proxy_on_grpc_close (Envoy's
// GrpcStreamClientHandler over AsyncStreamImpl, which reports every end of
// a stream, an error too, as trailing metadata, perhaps empty, then a
// remote close).
func (v *vm) hGRPCStream(_ context.Context, s []uint64) Status {
	cluster, ok1 := v.str(s[0], s[1])
	service, ok2 := v.str(s[2], s[3])
	method, ok3 := v.str(s[4], s[5])
	md, ok4 := v.bytes(s[6], s[7])
	if !ok1 || !ok2 || !ok3 || !ok4 || !v.writable(s[8]) {
		return StatusInvalidMemoryAccess
	}
	up := v.group.host.opts.GRPCUpstreams
	streamer, ok := up.(GRPCStreamer)
	if !ok {
		v.logger().Warn("proxy_grpc_stream refused: the host has no gRPC streams", "cluster", cluster)
		return StatusParseFailure
	}
	if c, ok := up.(ClusterChecker); ok && !c.HasCluster(cluster) {
		return StatusParseFailure
	}
	if limit := v.group.host.opts.Limits.MaxGRPCStreams; len(v.grpcStreams) >= limit {
		v.forgetRemoteClosed()
		if len(v.grpcStreams) >= limit {
			v.logger().Warn("proxy_grpc_stream refused: too many gRPC streams open in this VM", "limit", limit)
			return StatusInternalFailure
		}
	}
	root, token, ok := v.newCall(calloutGRPCStream)
	if !ok {
		return StatusBadArgument
	}
	ctx, cancel := context.WithCancel(context.Background())
	st := &grpcStream{v: v, root: root.id, token: token, cancel: cancel}
	st.res.grpc = true
	req := &GRPCStreamRequest{Cluster: cluster, Service: service, Method: method, Metadata: v.decodePairs(md)}
	stream, err := streamer.OpenStream(ctx, req, st)
	if err != nil {
		cancel()
		v.logger().Warn("gRPC stream failed to start", "cluster", cluster, "method", service+"/"+method, "err", err)
		return StatusInternalFailure // Envoy: startRaw returned no stream
	}
	st.stream = stream
	if v.grpcStreams == nil {
		v.grpcStreams = map[uint32]*grpcStream{}
	}
	v.grpcStreams[token] = st
	v.putU32(s[8], token)
	return StatusOK
}

// forgetRemoteClosed forgets the streams the server closed and the plugin
// did not (Envoy keeps them until proxy_grpc_close or proxy_grpc_cancel,
// which then answer OK, and would answer NOT_FOUND after this). v.mu is
// held.
func (v *vm) forgetRemoteClosed() {
	for token, st := range v.grpcStreams {
		if st.remoteClosed {
			v.forgetStream(token)
		}
	}
}

// lookupStream finds a stream of the calling root context, as Envoy looks
// it up in that context's grpc_stream_.
func (v *vm) lookupStream(token uint32) *grpcStream {
	st := v.grpcStreams[token]
	if root := v.rootOfEff(); st == nil || root == nil || st.root != root.id {
		return nil
	}
	return st
}

// hGRPCSend is proxy_grpc_send(token, message, end_stream), cpp-host's
// grpc_send over Envoy's Context::grpcSend: a token that is not a stream's
// is BAD_ARGUMENT, an unknown one NOT_FOUND; a send on a stream the plugin
// half-closed or the server closed goes nowhere (OK).
func (v *vm) hGRPCSend(_ context.Context, s []uint64) Status {
	msg, ok := v.bytes(s[1], s[2])
	if !ok {
		return StatusInvalidMemoryAccess
	}
	token := uint32(s[0])
	if !isGRPCStreamToken(token) {
		return StatusBadArgument
	}
	st := v.lookupStream(token)
	if st == nil {
		return StatusNotFound
	}
	if st.endSent || st.remoteClosed {
		return StatusOK
	}
	end := uint32(s[3]) != 0
	if err := st.stream.Send(append([]byte(nil), msg...), end); err != nil {
		v.logger().Warn("proxy_grpc_send failed", "token", token, "err", err)
		return StatusInternalFailure
	}
	st.endSent = end
	return StatusOK
}

// hGRPCClose is proxy_grpc_close(token), cpp-host's grpc_close over Envoy's
// Context::grpcClose: a call is cancelled (no more callbacks); a stream is
// half-closed, and forgotten if the server closed it already, else its
// messages and its close still come; a token of neither kind is
// BAD_ARGUMENT, an unknown one NOT_FOUND.
func (v *vm) hGRPCClose(_ context.Context, s []uint64) Status {
	token := uint32(s[0])
	switch {
	case isGRPCCallToken(token):
		return v.cancelCall(token)
	case isGRPCStreamToken(token):
		st := v.lookupStream(token)
		if st == nil {
			return StatusNotFound
		}
		if !st.endSent && !st.remoteClosed {
			st.stream.CloseSend()
			st.endSent = true
		}
		if st.remoteClosed {
			v.forgetStream(token)
		} else {
			st.localClosed = true
		}
		return StatusOK
	}
	return StatusBadArgument
}

// hGRPCCancel is proxy_grpc_cancel(token), cpp-host's grpc_cancel over
// Envoy's Context::grpcCancel: a call is cancelled, a stream reset (the
// server sees it cancelled); either way no callback of it runs any more. A
// token of neither kind is BAD_ARGUMENT, an unknown one NOT_FOUND.
func (v *vm) hGRPCCancel(_ context.Context, s []uint64) Status {
	token := uint32(s[0])
	switch {
	case isGRPCCallToken(token):
		return v.cancelCall(token)
	case isGRPCStreamToken(token):
		if v.lookupStream(token) == nil {
			return StatusNotFound
		}
		v.forgetStream(token)
		return StatusOK
	}
	return StatusBadArgument
}

// cancelCall is Envoy's grpcClose and grpcCancel of a call token.
func (v *vm) cancelCall(token uint32) Status {
	c := v.grpcCalls[token]
	if root := v.rootOfEff(); c == nil || root == nil || c.root != root.id {
		return StatusNotFound
	}
	v.forgetCall(token)
	return StatusOK
}

// deliver runs one callback of the stream on its root context, unless the
// stream is forgotten (cancelled, or its root context or VM gone). v.mu is
// held.
func (st *grpcStream) deliver(cb callback, name string, n int) {
	v := st.v
	if v.closed || v.failed.Load() || v.grpcStreams[st.token] != st {
		return
	}
	root := v.ctxs[st.root]
	if root == nil {
		return
	}
	v.callout = &st.res
	_, _ = v.call(context.Background(), root, cb, name, uint64(st.root), uint64(st.token), uint64(n))
	v.callout = nil
}

// InitialMetadata implements GRPCStreamHandler: Envoy's
// onGrpcReceiveInitialMetadataWrapper.
func (st *grpcStream) InitialMetadata(md Headers) {
	st.v.mu.Lock()
	defer st.v.mu.Unlock()
	st.res.headers = md
	st.deliver(st.v.cb.grpcInitialMetadata, "proxy_on_grpc_receive_initial_metadata", len(md))
	st.res.headers = nil
}

// Message implements GRPCStreamHandler: Envoy's onGrpcReceiveWrapper.
func (st *grpcStream) Message(msg []byte) {
	st.v.mu.Lock()
	defer st.v.mu.Unlock()
	st.res.body = msg
	st.deliver(st.v.cb.grpcReceive, "proxy_on_grpc_receive", len(msg))
	st.res.body = nil
}

// Closed implements GRPCStreamHandler: Envoy's
// onGrpcReceiveTrailingMetadataWrapper, then GrpcStreamClientHandler's
// onRemoteClose (remote_closed_) and onGrpcCloseWrapper, which forgets the
// stream if the plugin closed it, else keeps it for proxy_grpc_close.
func (st *grpcStream) Closed(trailers Headers, status uint32, message string) {
	v := st.v
	v.mu.Lock()
	defer v.mu.Unlock()
	st.res.trailers = trailers
	st.deliver(v.cb.grpcTrailingMetadata, "proxy_on_grpc_receive_trailing_metadata", len(trailers))
	st.res.trailers = nil
	if v.grpcStreams[st.token] != st {
		return
	}
	st.remoteClosed = true
	st.res.statusCode, st.res.statusMessage = status, message
	st.deliver(v.cb.grpcClose, "proxy_on_grpc_close", int(status))
	st.res.statusCode, st.res.statusMessage = 0, ""
	if st.localClosed && v.grpcStreams[st.token] == st {
		v.forgetStream(st.token)
	}
}
