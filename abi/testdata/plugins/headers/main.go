// Command headers is the benchmark HTTP filter: it reads the request headers,
// adds one request header and one response header, and logs one line.
//
// Its per-request work is fixed (see README.md): keep it exactly that, the
// benchmarks compare hosts on it.
package main

import (
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetHttpContext(func(uint32) types.HttpContext { return &httpContext{} })
}

type httpContext struct {
	types.DefaultHttpContext
}

// maxNamed is how many headers, taken in order from the full list, are also
// read one by one by name.
const maxNamed = 10

func (*httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	headers, err := proxywasm.GetHttpRequestHeaders()
	if err != nil {
		proxywasm.LogError("headers: get request headers: " + err.Error())
		return types.ActionContinue
	}
	for i := 0; i < len(headers) && i < maxNamed; i++ {
		_, _ = proxywasm.GetHttpRequestHeader(headers[i][0])
	}
	method, _ := proxywasm.GetHttpRequestHeader(":method")
	path, _ := proxywasm.GetHttpRequestHeader(":path")
	_ = proxywasm.AddHttpRequestHeader("x-anywasm-seen", strconv.Itoa(len(headers)))
	proxywasm.LogInfo("headers: " + method + " " + path)
	return types.ActionContinue
}

func (*httpContext) OnHttpResponseHeaders(int, bool) types.Action {
	_ = proxywasm.AddHttpResponseHeader("x-anywasm-plugin", "headers")
	return types.ActionContinue
}
