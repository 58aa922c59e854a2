// Command foreign is an HTTP filter that passes the request header x-input to
// the host's foreign function "reverse" and puts its result in x-output.
package main

import (
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

func (*httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	input, _ := proxywasm.GetHttpRequestHeader("x-input") // missing: ""
	output, err := proxywasm.CallForeignFunction("reverse", []byte(input))
	if err != nil {
		proxywasm.LogError("foreign: reverse: " + err.Error())
		return types.ActionContinue
	}
	_ = proxywasm.ReplaceHttpRequestHeader("x-output", string(output))
	return types.ActionContinue
}
