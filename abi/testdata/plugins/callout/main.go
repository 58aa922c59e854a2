// Command callout is an HTTP filter that holds each request while it asks the
// upstream cluster "backend" for GET /info, then copies the answer's status
// and body into request headers and resumes the request.
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetHttpContext(func(uint32) types.HttpContext { return &httpContext{} })
}

const (
	cluster   = "backend"
	timeoutMS = 5000
)

type httpContext struct {
	types.DefaultHttpContext
}

func (*httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	headers := [][2]string{
		{":method", "GET"},
		{":path", "/info"},
		{":authority", "backend"},
	}
	if _, err := proxywasm.DispatchHttpCall(cluster, headers, nil, nil, timeoutMS, onResponse); err != nil {
		proxywasm.LogError("callout: dispatch: " + err.Error())
		fail()
	}
	return types.ActionPause
}

// onResponse runs in proxy_on_http_call_response; the SDK has already made the
// HTTP context that dispatched the call the effective context.
func onResponse(numHeaders, bodySize, _ int) {
	if numHeaders == 0 { // the host could not complete the call
		fail()
		return
	}
	status := ""
	headers, err := proxywasm.GetHttpCallResponseHeaders()
	if err != nil {
		proxywasm.LogError("callout: response headers: " + err.Error())
	}
	for _, h := range headers {
		if h[0] == ":status" {
			status = h[1]
			break
		}
	}
	var body []byte
	if bodySize > 0 {
		if body, err = proxywasm.GetHttpCallResponseBody(0, bodySize); err != nil {
			proxywasm.LogError("callout: response body: " + err.Error())
		}
	}
	_ = proxywasm.ReplaceHttpRequestHeader("x-callout-status", status)
	_ = proxywasm.ReplaceHttpRequestHeader("x-callout-body", string(body))
	if err := proxywasm.ResumeHttpRequest(); err != nil {
		proxywasm.LogError("callout: resume: " + err.Error())
	}
}

// fail answers the paused request with a local 503.
func fail() {
	if err := proxywasm.SendHttpResponse(503, nil, []byte("callout failed\n"), -1); err != nil {
		proxywasm.LogError("callout: send: " + err.Error())
	}
}
