package promcollector_test

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/abi/promcollector"
	"github.com/anywasm/anywasm/engine"
	_ "github.com/anywasm/anywasm/engine/wazero"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Expose the metrics a plugin defines (abi/testdata/example.wat counts its
// requests in the counter "example.requests") on a Prometheus registry.
func Example() {
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
	for range 3 {
		s, err := plugin.NewHTTPStream(ctx)
		if err != nil {
			log.Fatal(err)
		}
		if _, err := s.RequestHeaders(ctx, abi.Headers{{Key: ":path", Value: "/"}}, true); err != nil {
			log.Fatal(err)
		}
		_ = s.Close(ctx)
	}

	reg := prometheus.NewRegistry()
	// One collector per host; promcollector.NewSources puts several (one per
	// runtime, say) in one, each with its labels.
	reg.MustRegister(promcollector.New(host.Metrics(), prometheus.Labels{"runtime": rt.Name()}))
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(os.Stdout, resp.Body)
	// Output:
	// # HELP anywasm_plugin_example_requests_total Proxy-Wasm plugin counter.
	// # TYPE anywasm_plugin_example_requests_total counter
	// anywasm_plugin_example_requests_total{runtime="wazero"} 3
}
