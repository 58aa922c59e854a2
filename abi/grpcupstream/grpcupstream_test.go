package grpcupstream_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/abi/grpcupstream"
	"github.com/anywasm/anywasm/engine"
	_ "github.com/anywasm/anywasm/engine/all"
	"github.com/anywasm/anywasm/internal/testrt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// bytesCodec is the test server's codec: messages are raw bytes.
type bytesCodec struct{}

func (bytesCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.([]byte)
	if !ok {
		return nil, fmt.Errorf("marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (bytesCodec) Unmarshal(data mem.BufferSlice, v any) error {
	p, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("unmarshal into %T", v)
	}
	*p = data.Materialize()
	return nil
}

func (bytesCodec) Name() string { return "proto" }

// handle serves every method of every service: "Fail" answers NotFound,
// "Slow" answers after 5 s (or when the call is cancelled), anything else
// echoes the message reversed with header metadata k=v1, x-method=<full
// method>, x-in=<incoming x-in values> and trailer metadata t=done.
func handle(_ any, stream grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(stream)
	var in []byte
	if err := stream.RecvMsg(&in); err != nil {
		return err
	}
	switch {
	case strings.HasSuffix(method, "/Fail"):
		stream.SetTrailer(metadata.Pairs("t", "failed"))
		return status.Error(codes.NotFound, "nope")
	case strings.HasSuffix(method, "/Slow"):
		select {
		case <-time.After(5 * time.Second):
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
	md, _ := metadata.FromIncomingContext(stream.Context())
	hdr := metadata.Pairs("k", "v1", "x-method", method)
	for _, v := range md.Get("x-in") {
		hdr.Append("x-in", v)
	}
	if len(md.Get(":authority")) > 0 && md.Get(":authority")[0] == "plugin-authority" {
		hdr.Append("x-leaked-pseudo", "yes")
	}
	if err := stream.SetHeader(hdr); err != nil {
		return err
	}
	stream.SetTrailer(metadata.Pairs("t", "done"))
	out := slices.Clone(in)
	slices.Reverse(out)
	return stream.SendMsg(out)
}

// server starts a gRPC server on 127.0.0.1:0 and returns its address.
func server(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(bytesCodec{}), grpc.UnknownServiceHandler(handle))
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func clusters(t *testing.T, targets map[string]string) *grpcupstream.Clusters {
	t.Helper()
	c, err := grpcupstream.New(targets)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

func TestCall(t *testing.T) {
	c := clusters(t, map[string]string{"backend": server(t), "other": "127.0.0.1:1"})
	ctx := context.Background()

	t.Run("ok", func(t *testing.T) {
		resp, err := c.Call(ctx, &abi.GRPCRequest{Cluster: "backend", Service: "anywasm.Echo", Method: "Echo",
			Metadata: abi.Headers{{Key: ":authority", Value: "plugin-authority"}, {Key: "X-In", Value: "a"}, {Key: "x-in", Value: "b"}},
			Message:  []byte("hello")})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != 0 || resp.StatusMessage != "" || string(resp.Message) != "olleh" {
			t.Errorf("response = %+v", resp)
		}
		// Sorted by key; content-type is the server's own header, and no
		// pseudo-header of the plugin reached the server (x-leaked-pseudo).
		want := abi.Headers{{Key: "content-type", Value: "application/grpc+proto"}, {Key: "k", Value: "v1"},
			{Key: "x-in", Value: "a"}, {Key: "x-in", Value: "b"}, {Key: "x-method", Value: "/anywasm.Echo/Echo"}}
		if !slices.Equal(resp.InitialMetadata, want) {
			t.Errorf("initial metadata = %v, want %v", resp.InitialMetadata, want)
		}
		if !slices.Equal(resp.TrailingMetadata, abi.Headers{{Key: "t", Value: "done"}}) {
			t.Errorf("trailing metadata = %v", resp.TrailingMetadata)
		}
	})

	t.Run("empty message", func(t *testing.T) {
		resp, err := c.Call(ctx, &abi.GRPCRequest{Cluster: "backend", Service: "s", Method: "Echo"})
		if err != nil || resp.Status != 0 || len(resp.Message) != 0 {
			t.Errorf("response = %+v, %v", resp, err)
		}
	})

	t.Run("status", func(t *testing.T) {
		resp, err := c.Call(ctx, &abi.GRPCRequest{Cluster: "backend", Service: "anywasm.Echo", Method: "Fail", Message: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != uint32(codes.NotFound) || resp.StatusMessage != "nope" || resp.Message != nil {
			t.Errorf("response = %+v", resp)
		}
		// A trailers-only response: the server's headers arrive as trailers.
		if !slices.Equal(resp.TrailingMetadata, abi.Headers{{Key: "content-type", Value: "application/grpc+proto"}, {Key: "t", Value: "failed"}}) {
			t.Errorf("trailing metadata = %v", resp.TrailingMetadata)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		start := time.Now()
		resp, err := c.Call(ctx, &abi.GRPCRequest{Cluster: "backend", Service: "anywasm.Echo", Method: "Slow",
			Message: []byte("x"), Timeout: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != 4 /* DEADLINE_EXCEEDED */ {
			t.Errorf("response = %+v", resp)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("the call took %v despite a 100 ms timeout", d)
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		resp, err := c.Call(ctx, &abi.GRPCRequest{Cluster: "other", Service: "anywasm.Echo", Method: "Echo",
			Message: []byte("x"), Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != uint32(codes.Unavailable) {
			t.Errorf("response = %+v", resp)
		}
	})

	t.Run("unknown cluster", func(t *testing.T) {
		resp, err := c.Call(ctx, &abi.GRPCRequest{Cluster: "nope", Service: "anywasm.Echo", Method: "Echo"})
		if err == nil || resp != nil {
			t.Fatalf("response = %+v, %v", resp, err)
		}
		for _, s := range []string{`"nope"`, `"backend"`, `"other"`} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not name %s", err, s)
			}
		}
	})
}

func TestNoClusters(t *testing.T) {
	c, err := grpcupstream.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Call(context.Background(), &abi.GRPCRequest{Cluster: "x"}); err == nil || !strings.Contains(err.Error(), "none") {
		t.Errorf("error = %v", err)
	}
	if err := c.Close(); err != nil {
		t.Error(err)
	}
}

// TestPlugin runs abi/testdata/grpc.wasm, which calls grpc-backend
// anywasm.Echo/Echo with "ping", on every runtime against a real server.
func TestPlugin(t *testing.T) {
	wasm, err := os.ReadFile("../testdata/grpc.wasm")
	if err != nil {
		t.Fatal(err)
	}
	// A port with nothing behind it: the call fails with UNAVAILABLE.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := lis.Addr().String()
	lis.Close()
	for _, c := range []struct {
		name        string
		target      string
		reply, meta string
		status      int
	}{
		{"ok", server(t), "gnip", "", 0}, // no metadata callback for a unary call, as in Envoy
		{"unavailable", closed, "", "", 502},
	} {
		t.Run(c.name, func(t *testing.T) {
			up := clusters(t, map[string]string{"grpc-backend": c.target})
			for _, name := range engine.Runtimes() {
				t.Run(name, func(t *testing.T) {
					ctx := context.Background()
					rt, err := engine.Open(name, testrt.Config())
					if err != nil {
						t.Fatal(err)
					}
					// Cleanups run last-in first-out: the host closes
					// before its runtime.
					t.Cleanup(func() { _ = rt.Close(ctx) })
					h := abi.NewHost(rt, abi.Options{GRPCUpstreams: up})
					t.Cleanup(func() { _ = h.Close(ctx) })
					p, err := h.Load(ctx, wasm, abi.PluginConfig{Name: "grpc"})
					if err != nil {
						t.Fatal(err)
					}
					s, err := p.NewHTTPStream(ctx)
					if err != nil {
						t.Fatal(err)
					}
					defer s.Close(ctx)
					if a, err := s.RequestHeaders(ctx, abi.Headers{{Key: ":path", Value: "/"}}, true); err != nil || a != abi.ActionPause {
						t.Fatalf("%s %v", a, err)
					}
					wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					defer cancel()
					if err := s.Wait(wctx, abi.StreamHTTPRequest); err != nil {
						t.Fatal(err)
					}
					hm := s.RequestHeaderMap()
					reply, _ := hm.Get("x-grpc-reply")
					meta, _ := hm.Get("x-grpc-meta")
					if reply != c.reply || meta != c.meta {
						t.Errorf("request headers = %v", hm)
					}
					lr := s.LocalResponse()
					if (c.status == 0) != (lr == nil) || (lr != nil && (lr.Status != c.status || string(lr.Body) != "grpc failed\n")) {
						t.Errorf("local response = %+v", lr)
					}
					if s.Err() != nil {
						t.Error(s.Err())
					}
				})
			}
		})
	}
}

// recorder is an abi.GRPCStreamHandler that records the events it gets.
type recorder struct {
	events chan string
}

func (r *recorder) InitialMetadata(md abi.Headers) { r.events <- fmt.Sprintf("initial %v", md) }
func (r *recorder) Message(msg []byte)             { r.events <- "message " + string(msg) }
func (r *recorder) Closed(trailers abi.Headers, status uint32, message string) {
	r.events <- fmt.Sprintf("closed %v %d %s", trailers, status, message)
	close(r.events)
}

func (r *recorder) all(t *testing.T) []string {
	t.Helper()
	var out []string
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e, ok := <-r.events:
			if !ok {
				return out
			}
			out = append(out, e)
		case <-timeout:
			t.Fatalf("the stream never closed; events: %q", out)
		}
	}
}

// TestOpenStream runs streams through OpenStream against the test server,
// whose handler answers one message per call (a stream of one message
// each way).
func TestOpenStream(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := lis.Addr().String()
	lis.Close()
	c := clusters(t, map[string]string{"backend": server(t), "other": closed})
	ctx := context.Background()
	for _, tc := range []struct {
		name, cluster, method string
		want                  []string
	}{
		{"echo", "backend", "Echo", []string{
			"initial content-type: application/grpc+proto; k: v1; x-in: a; x-method: /anywasm.Echo/Echo",
			"message olleh", "closed t: done 0 "}},
		// Trailers-only: empty initial metadata first, as Envoy's
		// AsyncStreamImpl::onHeaders gives it.
		{"trailers only", "backend", "Fail", []string{"initial ",
			"closed content-type: application/grpc+proto; t: failed 5 nope"}},
		{"unreachable", "other", "Echo", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{events: make(chan string, 16)}
			s, err := c.OpenStream(ctx, &abi.GRPCStreamRequest{Cluster: tc.cluster, Service: "anywasm.Echo", Method: tc.method,
				Metadata: abi.Headers{{Key: "x-in", Value: "a"}}}, r)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Send([]byte("hello"), true); err != nil {
				t.Fatal(err)
			}
			got := r.all(t)
			if tc.want == nil { // no connection: only the close, UNAVAILABLE
				if len(got) != 1 || !strings.HasPrefix(got[0], "closed  14 ") {
					t.Errorf("events = %q", got)
				}
				return
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("events:\n got %q\nwant %q", got, tc.want)
			}
		})
	}

	t.Run("queue bound", func(t *testing.T) {
		sctx, cancel := context.WithCancel(ctx)
		r := &recorder{events: make(chan string, 16)}
		s, err := c.OpenStream(sctx, &abi.GRPCStreamRequest{Cluster: "backend", Service: "s", Method: "Slow"}, r)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(make([]byte, grpcupstream.MaxQueuedBytes+1), false); err == nil {
			t.Error("a message over MaxQueuedBytes was queued")
		}
		if err := s.Send([]byte("x"), false); err != nil { // the stream goes on
			t.Error(err)
		}
		cancel()
		r.all(t)
	})

	t.Run("unknown cluster", func(t *testing.T) {
		if _, err := c.OpenStream(ctx, &abi.GRPCStreamRequest{Cluster: "nope"}, &recorder{}); err == nil || !strings.Contains(err.Error(), `"nope"`) {
			t.Errorf("error = %v", err)
		}
	})
}
