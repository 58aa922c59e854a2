// Package grpcupstream carries the unary gRPC calls of Proxy-Wasm plugins
// (proxy_grpc_call) over google.golang.org/grpc: it implements
// abi.GRPCUpstreams with one *grpc.ClientConn per cluster.
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
	"maps"
	"slices"
	"strings"

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
