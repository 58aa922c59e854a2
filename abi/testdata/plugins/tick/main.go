// Command tick asks for a tick every 100 ms and counts the ticks in the
// shared data key "ticks". It is also a no-op HTTP filter.
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
	periodMS = 100
	ticksKey = "ticks"
)

type pluginContext struct {
	types.DefaultPluginContext
}

func (*pluginContext) OnPluginStart(int) types.OnPluginStartStatus {
	if err := proxywasm.SetTickPeriodMilliSeconds(periodMS); err != nil {
		proxywasm.LogError("tick: set tick period: " + err.Error())
		return types.OnPluginStartStatusFailed
	}
	return types.OnPluginStartStatusOK
}

func (*pluginContext) OnTick() {
	n, err := increment(ticksKey)
	if err != nil {
		proxywasm.LogError("tick: increment: " + err.Error())
		return
	}
	proxywasm.LogInfo("tick " + strconv.FormatUint(n, 10))
}

func (*pluginContext) NewHttpContext(uint32) types.HttpContext {
	return &types.DefaultHttpContext{}
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
