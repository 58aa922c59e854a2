// Command foreign is an HTTP filter that calls the host's foreign functions.
//
// On request headers it passes x-input (or the bytes x-input-hex encodes)
// to the foreign function x-function (default "reverse") and puts the
// result in x-output (and, hex-encoded, x-output-hex); an error goes to
// x-status and an error log "foreign: NAME: ...". With x-set-property:
// NAME=VALUE it first sets that property (proxy_set_property; its status in
// x-set-status).
package main

import (
	"encoding/hex"
	"strings"

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

func status(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func (*httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	if set, err := proxywasm.GetHttpRequestHeader("x-set-property"); err == nil {
		name, value, _ := strings.Cut(set, "=")
		_ = proxywasm.ReplaceHttpRequestHeader("x-set-status", status(proxywasm.SetProperty([]string{name}, []byte(value))))
	}
	name, err := proxywasm.GetHttpRequestHeader("x-function")
	if err != nil {
		name = "reverse"
	}
	input, _ := proxywasm.GetHttpRequestHeader("x-input") // missing: ""
	if h, err := proxywasm.GetHttpRequestHeader("x-input-hex"); err == nil {
		b, _ := hex.DecodeString(h)
		input = string(b)
	}
	output, err := proxywasm.CallForeignFunction(name, []byte(input))
	if err != nil {
		proxywasm.LogError("foreign: " + name + ": " + err.Error())
		_ = proxywasm.ReplaceHttpRequestHeader("x-status", status(err))
		return types.ActionContinue
	}
	_ = proxywasm.ReplaceHttpRequestHeader("x-output", string(output))
	_ = proxywasm.ReplaceHttpRequestHeader("x-output-hex", hex.EncodeToString(output))
	return types.ActionContinue
}
