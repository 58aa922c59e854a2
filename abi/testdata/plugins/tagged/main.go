// Command tagged is an HTTP filter whose metric names carry tags, for
// Envoy's stats_config tag extraction: each request with an x-tag-value
// header counts in a counter named after the header's value,
// "tagged_requests_value=<value>_reporter=anywasm" (defined on the first
// request with that value), and records the value's length in the
// histogram "tagged_header_bytes_reporter=anywasm".
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext {
		return &pluginContext{byValue: map[string]proxywasm.MetricCounter{}}
	})
}

type pluginContext struct {
	types.DefaultPluginContext
	byValue map[string]proxywasm.MetricCounter
	bytes   proxywasm.MetricHistogram
}

func (p *pluginContext) OnPluginStart(int) types.OnPluginStartStatus {
	p.bytes = proxywasm.DefineHistogramMetric("tagged_header_bytes_reporter=anywasm")
	return types.OnPluginStartStatusOK
}

func (p *pluginContext) NewHttpContext(uint32) types.HttpContext {
	return &httpContext{plugin: p}
}

type httpContext struct {
	types.DefaultHttpContext
	plugin *pluginContext
}

func (h *httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	v, err := proxywasm.GetHttpRequestHeader("x-tag-value")
	if err != nil {
		return types.ActionContinue
	}
	p := h.plugin
	c, ok := p.byValue[v]
	if !ok {
		c = proxywasm.DefineCounterMetric("tagged_requests_value=" + v + "_reporter=anywasm")
		p.byValue[v] = c
	}
	c.Increment(1)
	p.bytes.Record(uint64(len(v)))
	return types.ActionContinue
}
