// Command props is an HTTP filter that copies four host properties into
// request headers.
//
// This SDK version has no GetLogLevel (proxy_get_log_level is ABI 0.2.1 and
// the SDK implements 0.2.0), so no x-log-level header is added.
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetHttpContext(func(uint32) types.HttpContext { return &httpContext{} })
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

type httpContext struct {
	types.DefaultHttpContext
}

func (*httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	for _, p := range properties {
		value := missing
		if b, err := proxywasm.GetProperty(p.path); err == nil {
			value = string(b)
		}
		_ = proxywasm.AddHttpRequestHeader(p.header, value)
	}
	return types.ActionContinue
}
