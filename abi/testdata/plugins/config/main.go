// Command config reads the VM and plugin configurations: it logs the first,
// refuses a plugin configuration of exactly "fail", and adds any other one to
// every response as x-config.
package main

import (
	"fmt"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetVMContext(&vmContext{})
}

type vmContext struct {
	types.DefaultVMContext
}

// OnVMStart logs the VM configuration; it never fails.
func (*vmContext) OnVMStart(size int) types.OnVMStartStatus {
	var cfg []byte
	if size > 0 {
		var err error
		if cfg, err = proxywasm.GetVMConfiguration(); err != nil {
			proxywasm.LogError("config: vm configuration: " + err.Error())
		}
	}
	proxywasm.LogInfo(fmt.Sprintf("config: vm configuration %q", cfg))
	return types.OnVMStartStatusOK
}

func (*vmContext) NewPluginContext(uint32) types.PluginContext {
	return &pluginContext{}
}

type pluginContext struct {
	types.DefaultPluginContext
	config string
}

// OnPluginStart stores the plugin configuration, refusing "fail".
func (p *pluginContext) OnPluginStart(size int) types.OnPluginStartStatus {
	if size > 0 {
		cfg, err := proxywasm.GetPluginConfiguration()
		if err != nil {
			proxywasm.LogError("config: plugin configuration: " + err.Error())
			return types.OnPluginStartStatusFailed
		}
		p.config = string(cfg)
	}
	if p.config == "fail" {
		proxywasm.LogError(`config: refusing plugin configuration "fail"`)
		return types.OnPluginStartStatusFailed
	}
	return types.OnPluginStartStatusOK
}

func (p *pluginContext) NewHttpContext(uint32) types.HttpContext {
	return &httpContext{config: p.config}
}

type httpContext struct {
	types.DefaultHttpContext
	config string
}

func (h *httpContext) OnHttpResponseHeaders(int, bool) types.Action {
	_ = proxywasm.AddHttpResponseHeader("x-config", h.config)
	return types.ActionContinue
}
