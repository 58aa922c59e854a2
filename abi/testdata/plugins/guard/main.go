// Command guard is an edge filter of the kind attackers try to get past: it
// sets the request header x-user to "anonymous" (an identity a client must
// not choose), and it inspects whole request bodies as body-inspecting
// filters (web application firewalls) do: it holds the request body until
// its end and answers 403 itself if the body contains the configured
// pattern (default "attack"), else lets the body through unchanged.
package main

import (
	"bytes"
	"errors"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetVMContext(&vmContext{})
}

type vmContext struct{ types.DefaultVMContext }

func (*vmContext) NewPluginContext(uint32) types.PluginContext {
	return &pluginContext{pattern: []byte("attack")}
}

type pluginContext struct {
	types.DefaultPluginContext
	pattern []byte
}

// OnPluginStart takes the pattern from the plugin configuration, if any.
func (p *pluginContext) OnPluginStart(size int) types.OnPluginStartStatus {
	if size > 0 {
		b, err := proxywasm.GetPluginConfiguration()
		if err != nil {
			proxywasm.LogError("guard: read configuration: " + err.Error())
			return types.OnPluginStartStatusFailed
		}
		p.pattern = b
	}
	return types.OnPluginStartStatusOK
}

func (p *pluginContext) NewHttpContext(uint32) types.HttpContext {
	return &httpContext{pattern: p.pattern}
}

type httpContext struct {
	types.DefaultHttpContext
	pattern []byte
}

// OnHttpRequestHeaders overwrites the client's x-user, whatever it sent.
func (h *httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	if err := proxywasm.ReplaceHttpRequestHeader("x-user", "anonymous"); err != nil {
		proxywasm.LogError("guard: replace x-user: " + err.Error())
	}
	return types.ActionContinue
}

// OnHttpRequestBody holds the body until its end, then decides.
func (h *httpContext) OnHttpRequestBody(bodySize int, endOfStream bool) types.Action {
	if !endOfStream {
		return types.ActionPause
	}
	return h.decide(bodySize)
}

// OnHttpRequestTrailers decides on the body it holds: trailers end a body
// whose last chunk had no end_of_stream.
func (h *httpContext) OnHttpRequestTrailers(int) types.Action {
	return h.decide(1 << 30)
}

// decide reads up to size bytes of the body and answers 403 if they hold
// the pattern.
func (h *httpContext) decide(size int) types.Action {
	body, err := proxywasm.GetHttpRequestBody(0, size)
	if err != nil && !errors.Is(err, types.ErrorStatusNotFound) {
		proxywasm.LogError("guard: get request body: " + err.Error())
		return types.ActionPause
	}
	if bytes.Contains(body, h.pattern) {
		if err := proxywasm.SendHttpResponse(403, [][2]string{{"x-guard", "blocked"}}, []byte("blocked by guard\n"), -1); err != nil {
			proxywasm.LogError("guard: send response: " + err.Error())
		}
		return types.ActionPause
	}
	return types.ActionContinue
}
