package grpcupstream_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"slices"
	"time"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/abi/grpcupstream"
	"github.com/anywasm/anywasm/engine"
	_ "github.com/anywasm/anywasm/engine/wazero"
	"google.golang.org/grpc"
)

// rawCodec is the example server's codec: messages are raw bytes, as
// plugins send and read them.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return v.([]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { *v.(*[]byte) = slices.Clone(data); return nil }
func (rawCodec) Name() string                       { return "proto" }

// Carry a plugin's gRPC call (abi/testdata/grpc.wat: on request headers it
// calls grpc-backend anywasm.Echo/Echo with "ping", pauses, and puts the
// reply in x-grpc-reply) to a gRPC server.
func Example() {
	ctx := context.Background()
	// A server that answers every method with the message reversed.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		var in []byte
		if err := stream.RecvMsg(&in); err != nil {
			return err
		}
		slices.Reverse(in)
		return stream.SendMsg(in)
	}))
	go srv.Serve(lis)
	defer srv.Stop()

	// Cluster names, as plugins give them, to gRPC targets.
	clusters, err := grpcupstream.New(map[string]string{"grpc-backend": lis.Addr().String()})
	if err != nil {
		log.Fatal(err)
	}
	defer clusters.Close()

	wasm, err := os.ReadFile("../testdata/grpc.wasm")
	if err != nil {
		log.Fatal(err)
	}
	rt, err := engine.Open("wazero", engine.NewConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close(ctx)
	host := abi.NewHost(rt, abi.Options{GRPCUpstreams: clusters})
	defer host.Close(ctx)
	plugin, err := host.Load(ctx, wasm, abi.PluginConfig{Name: "grpc"})
	if err != nil {
		log.Fatal(err)
	}
	defer plugin.Close(ctx)
	s, err := plugin.NewHTTPStream(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close(ctx)
	action, err := s.RequestHeaders(ctx, abi.Headers{{Key: ":path", Value: "/"}}, true)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("request headers:", action)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.Wait(wctx, abi.StreamHTTPRequest); err != nil { // the reply continues the request
		log.Fatal(err)
	}
	reply, _ := s.RequestHeaderMap().Get("x-grpc-reply")
	fmt.Println("x-grpc-reply:", reply)
	// Output:
	// request headers: pause
	// x-grpc-reply: gnip
}
