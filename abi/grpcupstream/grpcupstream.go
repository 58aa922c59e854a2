// Package grpcupstream carries the gRPC calls and streams of Proxy-Wasm
// plugins (proxy_grpc_call, proxy_grpc_stream) over google.golang.org/grpc:
// it implements abi.GRPCUpstreams and abi.GRPCStreamer with one
// *grpc.ClientConn per cluster.
//
// Messages pass through as raw bytes (a plugin sends a serialized message and
// reads the serialized reply), so no protobuf message types are needed. The
// codec announces itself as "proto", so the content type is
// application/grpc+proto and any gRPC server accepts the call.
package grpcupstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/anywasm/anywasm/abi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Clusters is an abi.GRPCUpstreams with one client connection per cluster.
// It is safe for concurrent use.
type Clusters struct {
	conns map[string]*grpc.ClientConn
	names []string // sorted
}

var (
	_ abi.GRPCUpstreams  = (*Clusters)(nil)
	_ abi.GRPCStreamer   = (*Clusters)(nil)
	_ abi.ClusterChecker = (*Clusters)(nil)
)

// New creates a client connection (grpc.NewClient) for each cluster name in
// targets, mapped to its gRPC target ("127.0.0.1:50051",
// "dns:///backend:443", "unix:///run/x.sock"). Connections are made lazily,
// at the first call. Transport credentials default to insecure (plain text);
// opts come after the default, so grpc.WithTransportCredentials among them
// overrides it.
func New(targets map[string]string, opts ...grpc.DialOption) (*Clusters, error) {
	c := &Clusters{conns: make(map[string]*grpc.ClientConn, len(targets))}
	all := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)
	for _, name := range slices.Sorted(maps.Keys(targets)) {
		conn, err := grpc.NewClient(targets[name], all...)
		if err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("grpcupstream: cluster %q (target %q): %w", name, targets[name], err)
		}
		c.conns[name] = conn
		c.names = append(c.names, name)
	}
	return c, nil
}

// FromConns makes a Clusters of client connections the caller made (with
// its own resolver and balancing policy: a cluster of several endpoints),
// by cluster name. The Clusters owns them: Close closes them.
func FromConns(conns map[string]*grpc.ClientConn) *Clusters {
	c := &Clusters{conns: make(map[string]*grpc.ClientConn, len(conns))}
	for _, name := range slices.Sorted(maps.Keys(conns)) {
		c.conns[name] = conns[name]
		c.names = append(c.names, name)
	}
	return c
}

// Call makes the unary call /Service/Method on the cluster's connection. The
// request metadata is sent as outgoing metadata (keys lower-cased,
// pseudo-headers such as ":path" left out); req.Timeout, when positive,
// bounds the call. A call that ends with a non-OK gRPC status is answered
// with that status and a nil error; the error return is for calls that
// cannot be made at all (an unknown cluster, a closed Clusters).
func (c *Clusters) Call(ctx context.Context, req *abi.GRPCRequest) (*abi.GRPCResponse, error) {
	if req == nil {
		return nil, errors.New("grpcupstream: nil request")
	}
	conn, ok := c.conns[req.Cluster]
	if !ok {
		return nil, fmt.Errorf("grpcupstream: unknown gRPC cluster %q (known: %s)", req.Cluster, strings.Join(c.quoted(), ", "))
	}
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, req.Timeout)
		defer cancel()
	}
	if md := outgoing(req.Metadata); len(md) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, md)
	}
	var header, trailer metadata.MD
	var reply []byte
	err := conn.Invoke(ctx, "/"+req.Service+"/"+req.Method, req.Message, &reply,
		grpc.ForceCodecV2(rawCodec{}), grpc.Header(&header), grpc.Trailer(&trailer))
	resp := &abi.GRPCResponse{InitialMetadata: headers(header), TrailingMetadata: headers(trailer)}
	if err != nil {
		st := status.Convert(err)
		resp.Status = uint32(st.Code())
		resp.StatusMessage = st.Message()
		return resp, nil
	}
	resp.Message = reply
	return resp, nil
}

// MaxQueuedBytes bounds the bytes of the messages of one stream that wait
// to be sent (the server or the network is slower than the plugin): a Send
// over it fails, and the plugin's proxy_grpc_send is INTERNAL_FAILURE.
const MaxQueuedBytes = 16 << 20

// streamDesc is a bidirectional stream: the plugin decides how many
// messages go each way.
var streamDesc = grpc.StreamDesc{StreamName: "proxy_grpc_stream", ServerStreams: true, ClientStreams: true}

// OpenStream implements abi.GRPCStreamer: a bidirectional stream
// /Service/Method on the cluster's connection (ClientConn.NewStream with
// the raw codec), made in the background, with the plugin's metadata as
// outgoing metadata (as Call sends it). Two goroutines serve it, one
// sending what Send and CloseSend queue, one receiving; both end when the
// stream ends or ctx is done. Received metadata is sorted by key, as
// Call's; the status of a stream that could not be made is the one
// grpc-go gives (UNAVAILABLE, usually).
func (c *Clusters) OpenStream(ctx context.Context, req *abi.GRPCStreamRequest, h abi.GRPCStreamHandler) (abi.GRPCStream, error) {
	if req == nil || h == nil {
		return nil, errors.New("grpcupstream: nil stream request or handler")
	}
	conn, ok := c.conns[req.Cluster]
	if !ok {
		return nil, fmt.Errorf("grpcupstream: unknown gRPC cluster %q (known: %s)", req.Cluster, strings.Join(c.quoted(), ", "))
	}
	if md := outgoing(req.Metadata); len(md) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, md)
	}
	s := &stream{wake: make(chan struct{}, 1)}
	go s.run(ctx, conn, "/"+req.Service+"/"+req.Method, h)
	return s, nil
}

// stream is an abi.GRPCStream: a queue of messages to send, drained by its
// sending goroutine.
type stream struct {
	wake chan struct{} // a message or the end was queued

	mu     sync.Mutex
	queue  [][]byte
	queued int  // bytes in queue
	end    bool // half-close after the queue
	over   bool // nothing will be sent any more
}

// Send implements abi.GRPCStream.
func (s *stream) Send(msg []byte, endStream bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.over || s.end {
		return nil // the stream is over or half-closed: nowhere to go
	}
	if s.queued+len(msg) > MaxQueuedBytes {
		return fmt.Errorf("grpcupstream: %d bytes wait to be sent on the stream; %d more would exceed %d", s.queued, len(msg), MaxQueuedBytes)
	}
	s.queue = append(s.queue, msg)
	s.queued += len(msg)
	s.end = endStream
	s.signal()
	return nil
}

// CloseSend implements abi.GRPCStream.
func (s *stream) CloseSend() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.end = true
	s.signal()
}

func (s *stream) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run makes the stream, then sends on a goroutine of its own and receives
// on this one until the stream ends.
func (s *stream) run(ctx context.Context, conn *grpc.ClientConn, method string, h abi.GRPCStreamHandler) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // a stream that ended stops its sender
	cs, err := conn.NewStream(ctx, &streamDesc, method, grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		s.stop()
		st := status.Convert(err)
		h.Closed(nil, uint32(st.Code()), st.Message())
		return
	}
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		s.send(ctx, cs)
	}()
	s.receive(cs, h)
	cancel()
	<-sent
}

// stop marks the stream over and drops what waits to be sent.
func (s *stream) stop() {
	s.mu.Lock()
	s.over, s.queue, s.queued = true, nil, 0
	s.mu.Unlock()
}

// send sends the queued messages in order, then half-closes when asked,
// until ctx is done (the stream ended or was reset) or a send fails (the
// stream ended; its status comes from the receiving side).
func (s *stream) send(ctx context.Context, cs grpc.ClientStream) {
	defer s.stop()
	var batch [][]byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		s.mu.Lock()
		batch, s.queue = s.queue, batch[:0]
		s.queued = 0
		end := s.end
		s.mu.Unlock()
		for i, msg := range batch {
			batch[i] = nil
			if cs.SendMsg(msg) != nil {
				return
			}
		}
		if end {
			_ = cs.CloseSend()
			return
		}
	}
}

// receive delivers the stream's events to h as Envoy's AsyncStreamImpl
// delivers them: the headers (for a trailers-only answer, empty initial
// metadata), each message, then the trailers and the status. grpc-go's
// Header answers nil both for a trailers-only answer and for a stream that
// failed before any header; a trailers-only answer carries metadata
// (content-type at least), a failure none.
func (s *stream) receive(cs grpc.ClientStream, h abi.GRPCStreamHandler) {
	md, _ := cs.Header() // an error comes again from RecvMsg
	if md != nil {
		h.InitialMetadata(headers(md))
	}
	var msg []byte
	for {
		err := cs.RecvMsg(&msg)
		if err == nil {
			h.Message(msg)
			msg = nil
			continue
		}
		trailers := headers(cs.Trailer())
		if md == nil && len(trailers) > 0 {
			h.InitialMetadata(nil)
		}
		if err == io.EOF {
			h.Closed(trailers, 0, "")
			return
		}
		st := status.Convert(err)
		h.Closed(trailers, uint32(st.Code()), st.Message())
		return
	}
}

// HasCluster implements abi.ClusterChecker: a plugin's call to another
// cluster is refused when it is made, as Envoy refuses it.
func (c *Clusters) HasCluster(name string) bool {
	_, ok := c.conns[name]
	return ok
}

// Close closes every connection.
func (c *Clusters) Close() error {
	var errs []error
	for _, name := range c.names {
		if err := c.conns[name].Close(); err != nil {
			errs = append(errs, fmt.Errorf("grpcupstream: closing cluster %q: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func (c *Clusters) quoted() []string {
	if len(c.names) == 0 {
		return []string{"none"}
	}
	q := make([]string, len(c.names))
	for i, n := range c.names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return q
}

// outgoing converts a plugin's metadata to gRPC metadata.
func outgoing(h abi.Headers) metadata.MD {
	var md metadata.MD
	for _, kv := range h {
		if kv.Key == "" || strings.HasPrefix(kv.Key, ":") {
			continue
		}
		if md == nil {
			md = metadata.MD{}
		}
		k := strings.ToLower(kv.Key)
		md[k] = append(md[k], kv.Value)
	}
	return md
}

// headers converts gRPC metadata to abi.Headers, sorted by key; the values
// of one key keep their order.
func headers(md metadata.MD) abi.Headers {
	if len(md) == 0 {
		return nil
	}
	var h abi.Headers
	for _, k := range slices.Sorted(maps.Keys(md)) {
		for _, v := range md[k] {
			h = append(h, abi.Header{Key: k, Value: v})
		}
	}
	return h
}

// rawCodec passes messages through as bytes: it marshals a []byte (or
// *[]byte) and unmarshals into a *[]byte. It is only ever forced on a call,
// never registered, so calling it "proto" changes no other codec.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	var b []byte
	switch m := v.(type) {
	case []byte:
		b = m
	case *[]byte:
		b = *m
	default:
		return nil, fmt.Errorf("grpcupstream: cannot marshal %T as raw bytes", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	p, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("grpcupstream: cannot unmarshal raw bytes into %T", v)
	}
	*p = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }
