// Command reply is local_response (a 403 for requests carrying x-deny) that
// also watches the responses, to test how local responses go through the
// chain: it marks every response it sees, its own too, with
// x-local-response-saw: the status. On a request with x-hold-response it holds the response headers
// while it asks the cluster "backend" for GET /info, and marks the response
// with x-held: the answer's status; with x-answer-again it answers the
// response it sees with a 418 of its own.
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
		proxywasm.LogError("reply: send: " + err.Error())
	}
	return types.ActionPause
}

func (*httpContext) OnHttpResponseHeaders(int, bool) types.Action {
	status, _ := proxywasm.GetHttpResponseHeader(":status")
	_ = proxywasm.AddHttpResponseHeader("x-local-response-saw", status)
	if _, err := proxywasm.GetHttpRequestHeader("x-answer-again"); err == nil {
		if err := proxywasm.SendHttpResponse(418, nil, []byte("again\n"), -1); err != nil {
			proxywasm.LogError("reply: send again: " + err.Error())
		}
		return types.ActionPause
	}
	if _, err := proxywasm.GetHttpRequestHeader("x-hold-response"); err != nil {
		return types.ActionContinue
	}
	headers := [][2]string{{":method", "GET"}, {":path", "/info"}, {":authority", "backend"}}
	if _, err := proxywasm.DispatchHttpCall("backend", headers, nil, nil, 5000, onHeld); err != nil {
		proxywasm.LogError("reply: dispatch: " + err.Error())
		return types.ActionContinue
	}
	return types.ActionPause
}

func onHeld(int, int, int) {
	status := "none"
	if headers, err := proxywasm.GetHttpCallResponseHeaders(); err == nil {
		for _, h := range headers {
			if h[0] == ":status" {
				status = h[1]
			}
		}
	}
	_ = proxywasm.AddHttpResponseHeader("x-held", status)
	if err := proxywasm.ResumeHttpResponse(); err != nil {
		proxywasm.LogError("reply: resume: " + err.Error())
	}
}
