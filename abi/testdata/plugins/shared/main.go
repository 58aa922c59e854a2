// Command shared is an HTTP filter that counts requests in the shared data key
// "hits" and publishes each request's path on the shared queue "events",
// which its own plugin context drains and logs.
package main

import (
	"errors"
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &pluginContext{} })
}

const (
	hitsKey   = "hits"
	queueName = "events"
)

type pluginContext struct {
	types.DefaultPluginContext
	queueID uint32
}

func (p *pluginContext) OnPluginStart(int) types.OnPluginStartStatus {
	id, err := proxywasm.RegisterSharedQueue(queueName)
	if err != nil {
		proxywasm.LogError("shared: register queue: " + err.Error())
		return types.OnPluginStartStatusFailed
	}
	p.queueID = id
	return types.OnPluginStartStatusOK
}

// OnQueueReady drains the queue, logging each item.
func (p *pluginContext) OnQueueReady(queueID uint32) {
	for {
		item, err := proxywasm.DequeueSharedQueue(queueID)
		if err != nil {
			if !errors.Is(err, types.ErrorStatusEmpty) {
				proxywasm.LogError("shared: dequeue: " + err.Error())
			}
			return
		}
		proxywasm.LogInfo("queue: " + string(item))
	}
}

func (p *pluginContext) NewHttpContext(uint32) types.HttpContext {
	return &httpContext{plugin: p}
}

type httpContext struct {
	types.DefaultHttpContext
	plugin *pluginContext
}

func (h *httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	n, err := increment(hitsKey)
	if err != nil {
		proxywasm.LogError("shared: increment: " + err.Error())
	} else {
		_ = proxywasm.AddHttpRequestHeader("x-hits", strconv.FormatUint(n, 10))
	}
	// The SDK cannot enqueue an empty item, so a request without :path publishes nothing.
	if path, _ := proxywasm.GetHttpRequestHeader(":path"); path != "" {
		if err := proxywasm.EnqueueSharedQueue(h.plugin.queueID, []byte(path)); err != nil {
			proxywasm.LogError("shared: enqueue: " + err.Error())
		}
	}
	return types.ActionContinue
}

// increment adds one to the decimal counter stored under key (missing = 0)
// with compare-and-swap, retrying once on a CAS mismatch, and returns the new
// value.
func increment(key string) (uint64, error) {
	var err error
	for range 2 {
		var n uint64
		var value []byte
		var cas uint32
		value, cas, err = proxywasm.GetSharedData(key)
		switch {
		case errors.Is(err, types.ErrorStatusNotFound):
			// Missing: start at 0; cas is 0, so the write is unconditional.
		case err != nil:
			return 0, err
		default:
			if n, err = strconv.ParseUint(string(value), 10, 64); err != nil {
				return 0, err
			}
		}
		n++
		err = proxywasm.SetSharedData(key, []byte(strconv.FormatUint(n, 10)), cas)
		if err == nil {
			return n, nil
		}
		if !errors.Is(err, types.ErrorStatusCasMismatch) {
			return 0, err
		}
	}
	return 0, err
}
