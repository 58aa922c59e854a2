// Command tcp is a network filter: it prefixes the first downstream chunk of
// each connection with "anywasm:" (or its plugin configuration, when it has
// one; it refuses "fail"), upper-cases upstream data, and logs both close
// events.
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

// init registers a plugin context rather than calling proxywasm.SetTcpContext:
// in this SDK version SetTcpContext leaves the HTTP factory nil and
// proxy_on_context_create calls it first, so every connection would panic.
func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &pluginContext{} })
}

type pluginContext struct {
	types.DefaultPluginContext // NewHttpContext returns nil: not an HTTP filter
	prefix                     string
}

// OnPluginStart takes the prefix from the plugin configuration, if any,
// refusing "fail".
func (p *pluginContext) OnPluginStart(size int) types.OnPluginStartStatus {
	p.prefix = defaultPrefix
	if size > 0 {
		cfg, err := proxywasm.GetPluginConfiguration()
		if err != nil {
			proxywasm.LogError("tcp: plugin configuration: " + err.Error())
			return types.OnPluginStartStatusFailed
		}
		if string(cfg) == "fail" {
			proxywasm.LogError(`tcp: refusing plugin configuration "fail"`)
			return types.OnPluginStartStatusFailed
		}
		p.prefix = string(cfg)
	}
	return types.OnPluginStartStatusOK
}

func (p *pluginContext) NewTcpContext(uint32) types.TcpContext { return &tcpContext{prefix: p.prefix} }

const defaultPrefix = "anywasm:"

type tcpContext struct {
	types.DefaultTcpContext
	prefix   string
	prefixed bool
}

// OnDownstreamData prefixes the first chunk the connection sees, even an empty one.
func (c *tcpContext) OnDownstreamData(int, bool) types.Action {
	if !c.prefixed {
		c.prefixed = true
		if err := proxywasm.PrependDownstreamData([]byte(c.prefix)); err != nil {
			proxywasm.LogError("tcp: prepend downstream data: " + err.Error())
		}
	}
	return types.ActionContinue
}

// OnUpstreamData replaces each non-empty chunk with its ASCII upper-case version.
func (*tcpContext) OnUpstreamData(dataSize int, _ bool) types.Action {
	if dataSize == 0 {
		return types.ActionContinue
	}
	data, err := proxywasm.GetUpstreamData(0, dataSize)
	if err != nil {
		proxywasm.LogError("tcp: get upstream data: " + err.Error())
		return types.ActionContinue
	}
	if err := proxywasm.ReplaceUpstreamData(upper(data)); err != nil {
		proxywasm.LogError("tcp: replace upstream data: " + err.Error())
	}
	return types.ActionContinue
}

func (*tcpContext) OnDownstreamClose(peer types.PeerType) {
	proxywasm.LogInfo("tcp: downstream close peer=" + peerName(peer))
}

func (*tcpContext) OnUpstreamClose(peer types.PeerType) {
	proxywasm.LogInfo("tcp: upstream close peer=" + peerName(peer))
}

func peerName(p types.PeerType) string {
	switch p {
	case types.PeerTypeUnknown:
		return "unknown"
	case types.PeerTypeLocal:
		return "local"
	case types.PeerTypeRemote:
		return "remote"
	}
	return "invalid"
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
