package nethttp_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/abi/nethttp"
	"github.com/anywasm/anywasm/engine"
	_ "github.com/anywasm/anywasm/engine/wazero"
)

// Put a plugin (abi/testdata/example.wat: it adds x-example to a request and
// x-plugin to its response, and answers 403 to one with x-deny) in front of
// a handler.
func ExampleNew() {
	ctx := context.Background()
	wasm, err := os.ReadFile("../testdata/example.wasm")
	if err != nil {
		log.Fatal(err)
	}
	rt, err := engine.Open("wazero", engine.NewConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close(ctx)
	host := abi.NewHost(rt, abi.Options{})
	defer host.Close(ctx)
	plugin, err := host.Load(ctx, wasm, abi.PluginConfig{Name: "example"})
	if err != nil {
		log.Fatal(err)
	}
	defer plugin.Close(ctx)

	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "x-example: %s\n", r.Header.Get("X-Example")) // the plugin's header
	})
	// Request callbacks in chain order, response callbacks in reverse.
	srv := httptest.NewServer(nethttp.New(app, nethttp.Plugins(plugin), nethttp.Options{}))
	defer srv.Close()

	for _, deny := range []bool{false, true} {
		req, _ := http.NewRequest("GET", srv.URL+"/", nil)
		if deny {
			req.Header.Set("X-Deny", "1")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("%d x-plugin=%s body=%q\n", resp.StatusCode, resp.Header.Get("X-Plugin"), body)
	}
	// Output:
	// 200 x-plugin=example body="x-example: hello\n"
	// 403 x-plugin=example body="denied\n"
}
