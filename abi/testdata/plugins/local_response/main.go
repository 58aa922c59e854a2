// Command local_response is an HTTP filter that answers requests carrying an
// x-deny header itself, with a 403, and lets the others through.
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
	if _, err := proxywasm.GetHttpRequestHeader("x-deny"); err != nil {
		return types.ActionContinue // absent (NOT_FOUND) or unreadable
	}
	headers := [][2]string{{"x-denied-by", "anywasm"}}
	if err := proxywasm.SendHttpResponse(403, headers, []byte("denied\n"), -1); err != nil {
		proxywasm.LogError("local_response: send: " + err.Error())
	}
	return types.ActionPause
}
