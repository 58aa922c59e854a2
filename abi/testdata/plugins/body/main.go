// Command body is an HTTP filter that rewrites bodies: it buffers the whole
// request body and replaces it with its ASCII upper-case version, and appends
// "\n-- anywasm" to the end of the response body.
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetHttpContext(func(uint32) types.HttpContext { return &httpContext{} })
}

// trailer is appended to every response body.
const trailer = "\n-- anywasm"

type httpContext struct {
	types.DefaultHttpContext
}

// OnHttpRequestHeaders removes content-length: the body changes, and the SDK
// asks plugins that modify a body to drop it here.
func (*httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	_ = proxywasm.RemoveHttpRequestHeader("content-length")
	return types.ActionContinue
}

// OnHttpRequestBody buffers until end of stream, then replaces the body.
func (*httpContext) OnHttpRequestBody(bodySize int, endOfStream bool) types.Action {
	if !endOfStream {
		return types.ActionPause
	}
	if bodySize == 0 {
		return types.ActionContinue
	}
	body, err := proxywasm.GetHttpRequestBody(0, bodySize)
	if err != nil {
		proxywasm.LogError("body: get request body: " + err.Error())
		return types.ActionContinue
	}
	if err := proxywasm.ReplaceHttpRequestBody(upper(body)); err != nil {
		proxywasm.LogError("body: replace request body: " + err.Error())
	}
	return types.ActionContinue
}

func (*httpContext) OnHttpResponseHeaders(int, bool) types.Action {
	_ = proxywasm.RemoveHttpResponseHeader("content-length")
	return types.ActionContinue
}

// OnHttpResponseBody streams the response and appends the trailer to its last chunk.
func (*httpContext) OnHttpResponseBody(_ int, endOfStream bool) types.Action {
	if endOfStream {
		if err := proxywasm.AppendHttpResponseBody([]byte(trailer)); err != nil {
			proxywasm.LogError("body: append response body: " + err.Error())
		}
	}
	return types.ActionContinue
}

// upper returns a copy of b with the ASCII letters a-z made upper case; every
// other byte is kept as is.
func upper(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		out[i] = c
	}
	return out
}
