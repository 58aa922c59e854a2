package abi_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
	_ "github.com/anywasm/anywasm/engine/wazero"
)

// Load a plugin (testdata/example.wat: it adds x-example to a request, and
// answers 403 to one with x-deny) and run HTTP streams through it.
func Example() {
	ctx := context.Background()
	wasm, err := os.ReadFile("testdata/example.wasm")
	if err != nil {
		log.Fatal(err)
	}
	rt, err := engine.Open("wazero", engine.NewConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close(ctx)
	// Options.Upstreams would carry the plugins' HTTP callouts (abi.HTTPUpstreams
	// is a net/http one), GRPCUpstreams their gRPC calls (abi/grpcupstream).
	host := abi.NewHost(rt, abi.Options{Logger: slog.Default()})
	defer host.Close(ctx)
	plugin, err := host.Load(ctx, wasm, abi.PluginConfig{Name: "example", RootID: "example", VMID: "edge",
		Configuration: []byte(`{"mode":"strict"}`), FailurePolicy: abi.FailClosed, PoolSize: 4})
	if err != nil {
		log.Fatal(err)
	}
	defer plugin.Close(ctx) // each Load is matched by a Close
	for _, deny := range []bool{false, true} {
		request := abi.Headers{{Key: ":method", Value: "GET"}, {Key: ":path", Value: "/"}}
		if deny {
			request = append(request, abi.Header{Key: "x-deny", Value: "1"})
		}
		s, err := plugin.NewHTTPStream(ctx)
		if err != nil {
			log.Fatal(err)
		}
		action, err := s.RequestHeaders(ctx, request, true)
		if err != nil {
			log.Fatal(err) // the plugin failed: s.LocalResponse() is the 503 of FailClosed
		}
		if action == abi.ActionPause {
			if lr := s.LocalResponse(); lr != nil { // or lr.Reset: answer nothing, reset the stream
				fmt.Printf("local response: %d %s %q\n", lr.Status, lr.Details, lr.Body)
			} else if err := s.Wait(ctx, abi.StreamHTTPRequest); err != nil { // until the plugin continues (after a callout, say)
				log.Fatal(err)
			}
		} else {
			fmt.Println("request as the plugin left it:", s.RequestHeaderMap())
			if _, err := s.ResponseHeaders(ctx, abi.Headers{{Key: ":status", Value: "200"}}, true); err != nil {
				log.Fatal(err)
			}
			fmt.Println("response:", s.ResponseHeaderMap())
		}
		// Bodies: RequestBody, ResponseBody (buffered while the plugin pauses); trailers.
		if err := s.Close(ctx); err != nil { // proxy_on_done, proxy_on_log, proxy_on_delete
			log.Fatal(err)
		}
	}
	// Output:
	// request as the plugin left it: :method: GET; :path: /; x-example: hello
	// response: :status: 200; x-plugin: example
	// local response: 403 example_denied "denied\n"
}
