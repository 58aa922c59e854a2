// Command metrics is an HTTP filter that defines one metric of each kind when
// the plugin starts and updates all three on every request.
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &pluginContext{} })
}

type pluginContext struct {
	types.DefaultPluginContext
	requests    proxywasm.MetricCounter
	lastPathLen proxywasm.MetricGauge
	headerCount proxywasm.MetricHistogram
}

// OnPluginStart defines the metrics. The SDK panics (the guest aborts) if the
// host refuses a definition.
func (p *pluginContext) OnPluginStart(int) types.OnPluginStartStatus {
	p.requests = proxywasm.DefineCounterMetric("anywasm_requests_total")
	p.lastPathLen = proxywasm.DefineGaugeMetric("anywasm_last_path_len")
	p.headerCount = proxywasm.DefineHistogramMetric("anywasm_header_count")
	return types.OnPluginStartStatusOK
}

func (p *pluginContext) NewHttpContext(uint32) types.HttpContext {
	return &httpContext{plugin: p}
}

type httpContext struct {
	types.DefaultHttpContext
	plugin *pluginContext
}

func (h *httpContext) OnHttpRequestHeaders(numHeaders int, _ bool) types.Action {
	p := h.plugin
	p.requests.Increment(1)
	path, _ := proxywasm.GetHttpRequestHeader(":path")
	// The SDK's gauge has no Set, only Add (proxy_increment_metric with a
	// signed delta): read the current value and add the difference.
	p.lastPathLen.Add(int64(len(path)) - p.lastPathLen.Value())
	p.headerCount.Record(uint64(numHeaders))
	return types.ActionContinue
}
