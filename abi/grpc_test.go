package abi_test

import (
	"context"
	_ "embed"
	"errors"
	"testing"
	"time"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
)

//go:embed testdata/grpc.wasm
var grpcWasm []byte

type fakeGRPC struct {
	got  *abi.GRPCRequest
	resp *abi.GRPCResponse
	err  error
}

func (f *fakeGRPC) Call(_ context.Context, req *abi.GRPCRequest) (*abi.GRPCResponse, error) {
	f.got = req
	return f.resp, f.err
}

func TestGRPCCallout(t *testing.T) {
	for _, c := range []struct {
		name   string
		fake   *fakeGRPC
		reply  string
		meta   string
		status int
	}{
		// The metadata is not delivered: Envoy's GrpcCallClientHandler
		// answers a unary call with proxy_on_grpc_receive alone.
		{"ok", &fakeGRPC{resp: &abi.GRPCResponse{Message: []byte("pong"), InitialMetadata: abi.Headers{{"k", "v1"}}}}, "pong", "<none>", 0},
		{"status", &fakeGRPC{resp: &abi.GRPCResponse{Status: 5, StatusMessage: "not found"}}, "<none>", "<none>", 502},
		{"error", &fakeGRPC{err: errors.New("connection refused")}, "<none>", "<none>", 502},
	} {
		t.Run(c.name, func(t *testing.T) {
			forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
				ctx := context.Background()
				h := abi.NewHost(rt, abi.Options{Logger: newSlog(&logSink{}), GRPCUpstreams: c.fake})
				defer h.Close(ctx)
				p, err := h.Load(ctx, grpcWasm, abi.PluginConfig{Name: "grpc"})
				if err != nil {
					t.Fatal(err)
				}
				s, err := p.NewHTTPStream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close(ctx)
				if a, err := s.RequestHeaders(ctx, abi.Headers{{":path", "/"}}, true); err != nil || a != abi.ActionPause {
					t.Fatalf("%s %v", a, err)
				}
				wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				if err := s.Wait(wctx, abi.StreamHTTPRequest); err != nil {
					t.Fatal(err)
				}
				g := c.fake.got
				if g == nil || g.Cluster != "grpc-backend" || g.Service != "anywasm.Echo" || g.Method != "Echo" || string(g.Message) != "ping" || g.Timeout != 5*time.Second {
					t.Errorf("request = %+v", g)
				}
				hm := s.RequestHeaderMap()
				// x-grpc-closed: proxy_on_grpc_close ran, which it must
				// not after a receive (Envoy's onSuccessRaw is the end).
				if get(hm, "x-grpc-reply") != c.reply || get(hm, "x-grpc-meta") != c.meta || (get(hm, "x-grpc-closed") == "1") != (c.status != 0) {
					t.Errorf("headers = %s", hm)
				}
				lr := s.LocalResponse()
				if (c.status == 0) != (lr == nil) || (lr != nil && (lr.Status != c.status || string(lr.Body) != "grpc failed\n")) {
					t.Errorf("local response = %+v", lr)
				}
				if s.Err() != nil {
					t.Error(s.Err())
				}
			})
		})
	}
}
