package proxy_test

import (
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
)

// rawCodec passes messages through as bytes.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}
func (rawCodec) Name() string { return "proto" }

// TestGRPCCluster: a plugin's gRPC callout (abi/testdata/grpc.wat calls
// anywasm.Echo/Echo on cluster grpc-backend with "ping") reaches a real
// gRPC server through a grpc cluster of the configuration.
func TestGRPCCluster(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, s grpc.ServerStream) error {
		var in []byte
		if err := s.RecvMsg(&in); err != nil {
			return err
		}
		if err := s.SetHeader(metadata.Pairs("k", "v1")); err != nil {
			return err
		}
		out := slices.Clone(in)
		slices.Reverse(out)
		return s.SendMsg(out)
	}))
	go srv.Serve(lis)
	defer srv.Stop()
	b := newBackend(t)
	wasm, _ := filepath.Abs("../../abi/testdata/grpc.wasm")
	forEachRuntime(t, func(t *testing.T, rt string) {
		h := start(t, rt, fmt.Sprintf(`
clusters:
  - {name: backend, address: %q}
  - {name: grpc-backend, type: grpc, address: %q}
listeners:
  - name: web
    address: 127.0.0.1:0
    http:
      cluster: backend
      filters:
        - name: grpc
          vm_config: {code: {local: {filename: %q}}}
`, b.URL, lis.Addr().String(), wasm))
		r := h.do("GET", h.url("web", "/"), "")
		if r.status != 200 || r.header.Get("X-Got-X-Grpc-Reply") != "gnip" || r.header.Get("X-Got-X-Grpc-Meta") != "" {
			t.Errorf("%d %q %v\nlogs:\n%s", r.status, r.body, r.header, h.logs)
		}
	})
}

// TestGRPCStreamCluster: a plugin's gRPC stream (abi/testdata/grpcstream.wat
// opens anywasm.Echo/Chat on cluster grpc-backend, sends "one" and "two"
// with end_stream, adds each answer as x-grpc-msg and continues on the
// close) goes through a grpc cluster of the configuration to a real
// server with a bidirectional streaming handler, with no configuration of
// its own.
func TestGRPCStreamCluster(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, s grpc.ServerStream) error {
		if m, _ := grpc.MethodFromServerStream(s); m != "/anywasm.Echo/Chat" {
			return fmt.Errorf("method %s", m)
		}
		for {
			var in []byte
			if err := s.RecvMsg(&in); err == io.EOF {
				return nil
			} else if err != nil {
				return err
			}
			out := slices.Clone(in)
			slices.Reverse(out)
			if err := s.SendMsg(out); err != nil {
				return err
			}
		}
	}))
	go srv.Serve(lis)
	defer srv.Stop()
	b := newBackend(t)
	wasm, _ := filepath.Abs("../../abi/testdata/grpcstream.wasm")
	forEachRuntime(t, func(t *testing.T, rt string) {
		h := start(t, rt, fmt.Sprintf(`
clusters:
  - {name: backend, address: %q}
  - {name: grpc-backend, type: grpc, address: %q}
listeners:
  - name: web
    address: 127.0.0.1:0
    http:
      cluster: backend
      filters:
        - name: grpcstream
          vm_config: {code: {local: {filename: %q}}}
`, b.URL, lis.Addr().String(), wasm))
		r := h.do("GET", h.url("web", "/"), "")
		if got := r.header.Values("X-Got-X-Grpc-Msg"); r.status != 200 || !slices.Equal(got, []string{"eno", "owt"}) {
			t.Errorf("%d %q x-grpc-msg %q\nlogs:\n%s", r.status, r.body, got, h.logs)
		}
	})
}
