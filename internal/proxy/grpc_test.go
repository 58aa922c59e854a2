package proxy_test

import (
	"fmt"
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
		if r.status != 200 || r.header.Get("X-Got-X-Grpc-Reply") != "gnip" || r.header.Get("X-Got-X-Grpc-Meta") != "v1" {
			t.Errorf("%d %q %v\nlogs:\n%s", r.status, r.body, r.header, h.logs)
		}
	})
}
