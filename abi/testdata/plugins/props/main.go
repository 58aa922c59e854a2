// Command props reads host properties.
//
// As an HTTP filter it copies four properties into request headers. And
// when its plugin configuration lists property paths, one per line as
// "PHASE PATH" (PATH's segments separated by "/"; PHASE is configure,
// request, response, done, connection or data), it logs each in that
// phase (in proxy_on_configure, the request and response headers
// callbacks, OnHttpStreamDone, a TCP stream's OnNewConnection and
// OnDownstreamData: configured with connection reads, the plugin is a
// network filter only) as
// "attr PHASE PATH = hex:HEX" or "attr PHASE PATH = error:STATUS".
//
// This SDK version has no GetLogLevel (proxy_get_log_level is ABI 0.2.1 and
// the SDK implements 0.2.0), so no x-log-level header is added.
package main

import (
	"encoding/hex"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &pluginContext{} })
}

// missing is the header value used when a property cannot be read.
const missing = "<missing>"

// properties maps each request header to the property path it carries.
var properties = []struct {
	header string
	path   []string
}{
	{"x-plugin-name", []string{"plugin_name"}},
	{"x-root-id", []string{"plugin_root_id"}},
	{"x-vm-id", []string{"plugin_vm_id"}},
	{"x-custom", []string{"anywasm", "custom"}},
}

type pluginContext struct {
	types.DefaultPluginContext
	reads map[string][]string // phase -> paths
}

func (p *pluginContext) OnPluginStart(size int) types.OnPluginStartStatus {
	if size == 0 {
		return types.OnPluginStartStatusOK
	}
	conf, err := proxywasm.GetPluginConfiguration()
	if err != nil {
		proxywasm.LogCriticalf("configuration: %v", err)
		return types.OnPluginStartStatusFailed
	}
	p.reads = map[string][]string{}
	for _, line := range strings.Split(string(conf), "\n") {
		phase, path, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok {
			p.reads[phase] = append(p.reads[phase], path)
		}
	}
	read(p.reads, "configure")
	return types.OnPluginStartStatusOK
}

// read logs the properties listed for phase.
func read(reads map[string][]string, phase string) {
	for _, path := range reads[phase] {
		b, err := proxywasm.GetProperty(strings.Split(path, "/"))
		if err != nil {
			proxywasm.LogInfof("attr %s %s = error:%v", phase, path, err)
			continue
		}
		proxywasm.LogInfof("attr %s %s = hex:%s", phase, path, hex.EncodeToString(b))
	}
}

// NewHttpContext: the SDK asks for an HTTP context first, for every stream;
// a plugin configured with "connection" reads is a network filter.
func (p *pluginContext) NewHttpContext(uint32) types.HttpContext {
	if _, tcp := p.reads["connection"]; tcp {
		return nil
	}
	return &httpContext{reads: p.reads}
}

func (p *pluginContext) NewTcpContext(uint32) types.TcpContext {
	return &tcpContext{reads: p.reads}
}

type httpContext struct {
	types.DefaultHttpContext
	reads map[string][]string
}

func (c *httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	for _, p := range properties {
		value := missing
		if b, err := proxywasm.GetProperty(p.path); err == nil {
			value = string(b)
		}
		_ = proxywasm.AddHttpRequestHeader(p.header, value)
	}
	read(c.reads, "request")
	return types.ActionContinue
}

func (c *httpContext) OnHttpResponseHeaders(int, bool) types.Action {
	read(c.reads, "response")
	return types.ActionContinue
}

func (c *httpContext) OnHttpStreamDone() { read(c.reads, "done") }

type tcpContext struct {
	types.DefaultTcpContext
	reads map[string][]string
}

func (c *tcpContext) OnNewConnection() types.Action {
	read(c.reads, "connection")
	return types.ActionContinue
}

func (c *tcpContext) OnDownstreamData(int, bool) types.Action {
	read(c.reads, "data")
	return types.ActionContinue
}
