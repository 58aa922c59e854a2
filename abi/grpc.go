package abi

import (
	"context"
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

// GRPCResponse is the answer to a GRPCRequest.
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
type GRPCUpstreams interface {
	Call(ctx context.Context, req *GRPCRequest) (*GRPCResponse, error)
}

// grpcUnavailable is gRPC's UNAVAILABLE status code.
const grpcUnavailable = 14

// hGRPCCall is proxy_grpc_call(upstream, service, method, initial metadata,
// message, timeout_ms, ret_token): a unary call answered in the background
// with proxy_on_grpc_receive_initial_metadata, proxy_on_grpc_receive,
// proxy_on_grpc_receive_trailing_metadata and proxy_on_grpc_close, on the
// calling root context.
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
	root, token, ok := v.newCall()
	if !ok {
		return StatusBadArgument
	}
	v.putU32(s[11], token)
	req := &GRPCRequest{Cluster: cluster, Service: service, Method: method, Metadata: metadata,
		Message: append([]byte(nil), msg...), Timeout: time.Duration(uint32(s[10])) * time.Millisecond}
	go v.doGRPC(v.logger(), up, req, root.id, token)
	return StatusOK
}

func (v *vm) doGRPC(log *slog.Logger, up GRPCUpstreams, req *GRPCRequest, rootID, token uint32) {
	ctx := context.Background()
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, req.Timeout)
		defer cancel()
	}
	resp, err := up.Call(ctx, req)
	ctx = context.Background() // the callbacks get call deadlines of their own
	if err != nil {
		log.Warn("gRPC callout failed", "cluster", req.Cluster, "method", req.Service+"/"+req.Method, "err", err)
		resp = &GRPCResponse{Status: grpcUnavailable, StatusMessage: err.Error()}
	} else if resp == nil {
		resp = &GRPCResponse{Status: grpcUnavailable, StatusMessage: fmt.Sprintf("%T returned no response", up)}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	root := v.ctxs[rootID]
	if v.closed || v.failed.Load() || root == nil {
		return
	}
	res := &calloutResult{headers: resp.InitialMetadata, trailers: resp.TrailingMetadata,
		body: resp.Message, statusCode: resp.Status, statusMessage: resp.StatusMessage, grpc: true}
	v.callout = res
	defer func() { v.callout = nil }()
	id, tok := uint64(rootID), uint64(token)
	if len(res.headers) > 0 {
		if _, err := v.call(ctx, root, v.cb.grpcInitialMetadata, "proxy_on_grpc_receive_initial_metadata", id, tok, uint64(len(res.headers))); err != nil {
			return
		}
	}
	if resp.Status == 0 {
		if _, err := v.call(ctx, root, v.cb.grpcReceive, "proxy_on_grpc_receive", id, tok, uint64(len(res.body))); err != nil {
			return
		}
	}
	if len(res.trailers) > 0 {
		if _, err := v.call(ctx, root, v.cb.grpcTrailingMetadata, "proxy_on_grpc_receive_trailing_metadata", id, tok, uint64(len(res.trailers))); err != nil {
			return
		}
	}
	_, _ = v.call(ctx, root, v.cb.grpcClose, "proxy_on_grpc_close", id, tok, uint64(resp.Status))
}
