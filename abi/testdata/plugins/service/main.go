// Command service is a Wasm service and the HTTP filter that talks to it,
// over the shared queues and shared data of their vm_id. The first word of
// the plugin configuration is the root context's role:
//
//   - "service": registers the queue "to-service" and drains it (each item:
//     counter metric "service_items" +1, shared data "service.items" +1 and
//     "service.last" = the item, log "service: got ITEM"); asks for ticks
//     (option tick=MS, default 100), and on each tick adds one to the shared
//     data "service.ticks" and enqueues "tick N" on the queue "to-filter"
//     when a filter registered it. Its root context makes no HTTP or TCP
//     context (the SDK's defaults: a stream on it panics).
//   - "filter": registers "to-filter" and keeps the last item it dequeues;
//     on request headers it adds request headers x-service-reply (the last
//     item it got, when any) and x-service-items (shared data
//     "service.items", when set), then enqueues the :path on "to-service".
//
// Options after the role: panic-configure (panics in proxy_on_configure),
// panic-tick (in proxy_on_tick). A VM configuration "panic" panics in
// proxy_on_vm_start. Both roles log "ROLE: done" in proxy_on_done.
package main

import (
	"errors"
	"strconv"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() { proxywasm.SetVMContext(&vmContext{}) }

type vmContext struct{}

func (*vmContext) OnVMStart(size int) types.OnVMStartStatus {
	if size > 0 {
		conf, err := proxywasm.GetVMConfiguration()
		if err != nil {
			proxywasm.LogError("service: vm configuration: " + err.Error())
			return types.OnVMStartStatusFailed
		}
		if string(conf) == "panic" {
			panic("service: vm start: panic")
		}
	}
	return types.OnVMStartStatusOK
}

func (*vmContext) NewPluginContext(uint32) types.PluginContext { return &rootContext{} }

type rootContext struct {
	types.DefaultPluginContext
	role      string
	panicTick bool
	items     proxywasm.MetricCounter
	last      string // filter: the last item from the service
}

func (r *rootContext) OnPluginStart(size int) types.OnPluginStartStatus {
	var conf []byte
	if size > 0 {
		var err error
		if conf, err = proxywasm.GetPluginConfiguration(); err != nil {
			proxywasm.LogError("service: plugin configuration: " + err.Error())
			return types.OnPluginStartStatusFailed
		}
	}
	words := strings.Fields(string(conf))
	if len(words) == 0 {
		proxywasm.LogError("service: the plugin configuration names no role (service or filter)")
		return types.OnPluginStartStatusFailed
	}
	r.role = words[0]
	tick := uint32(100)
	for _, w := range words[1:] {
		switch {
		case w == "panic-configure":
			panic("service: configure: panic")
		case w == "panic-tick":
			r.panicTick = true
		case strings.HasPrefix(w, "tick="):
			n, err := strconv.ParseUint(w[len("tick="):], 10, 32)
			if err != nil {
				proxywasm.LogError("service: " + w + ": " + err.Error())
				return types.OnPluginStartStatusFailed
			}
			tick = uint32(n)
		default:
			proxywasm.LogError("service: unknown option " + w)
			return types.OnPluginStartStatusFailed
		}
	}
	queue := "to-filter"
	switch r.role {
	case "service":
		queue = "to-service"
		r.items = proxywasm.DefineCounterMetric("service_items")
		if err := proxywasm.SetTickPeriodMilliSeconds(tick); err != nil {
			proxywasm.LogError("service: set tick period: " + err.Error())
			return types.OnPluginStartStatusFailed
		}
	case "filter":
	default:
		proxywasm.LogError("service: unknown role " + r.role)
		return types.OnPluginStartStatusFailed
	}
	if _, err := proxywasm.RegisterSharedQueue(queue); err != nil {
		proxywasm.LogError("service: register " + queue + ": " + err.Error())
		return types.OnPluginStartStatusFailed
	}
	return types.OnPluginStartStatusOK
}

func (r *rootContext) OnQueueReady(id uint32) {
	for {
		item, err := proxywasm.DequeueSharedQueue(id)
		if err != nil {
			if !errors.Is(err, types.ErrorStatusEmpty) {
				proxywasm.LogError("service: dequeue: " + err.Error())
			}
			return
		}
		// The log line comes last: a test that sees it sees what the
		// item changed.
		if r.role == "filter" {
			r.last = string(item)
			proxywasm.LogInfo(r.role + ": got " + string(item))
			continue
		}
		r.items.Increment(1)
		if err := proxywasm.SetSharedData("service.last", item, 0); err != nil {
			proxywasm.LogError("service: set service.last: " + err.Error())
		}
		if _, err := increment("service.items"); err != nil {
			proxywasm.LogError("service: increment service.items: " + err.Error())
		}
		proxywasm.LogInfo(r.role + ": got " + string(item))
	}
}

func (r *rootContext) OnTick() {
	if r.panicTick {
		panic("service: tick: panic")
	}
	n, err := increment("service.ticks")
	if err != nil {
		proxywasm.LogError("service: increment service.ticks: " + err.Error())
		return
	}
	id, err := proxywasm.ResolveSharedQueue("", "to-filter")
	if err != nil {
		return // no filter yet
	}
	if err := proxywasm.EnqueueSharedQueue(id, []byte("tick "+strconv.FormatUint(n, 10))); err != nil {
		proxywasm.LogError("service: enqueue: " + err.Error())
	}
}

func (r *rootContext) OnPluginDone() bool {
	proxywasm.LogInfo(r.role + ": done")
	return true
}

func (r *rootContext) NewHttpContext(uint32) types.HttpContext {
	if r.role != "filter" {
		return nil // a service: no streams
	}
	return &httpContext{root: r}
}

type httpContext struct {
	types.DefaultHttpContext
	root *rootContext
}

func (h *httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	// Read before enqueuing: the service, on another VM, may take this
	// request's item at once.
	if h.root.last != "" {
		_ = proxywasm.AddHttpRequestHeader("x-service-reply", h.root.last)
	}
	if v, _, err := proxywasm.GetSharedData("service.items"); err == nil {
		_ = proxywasm.AddHttpRequestHeader("x-service-items", string(v))
	}
	if path, _ := proxywasm.GetHttpRequestHeader(":path"); path != "" {
		id, err := proxywasm.ResolveSharedQueue("", "to-service")
		if err == nil {
			err = proxywasm.EnqueueSharedQueue(id, []byte(path))
		}
		if err != nil {
			proxywasm.LogError("filter: enqueue: " + err.Error())
		}
	}
	return types.ActionContinue
}

// increment adds one to the decimal counter stored under key (missing = 0)
// with compare-and-swap, retrying on a CAS mismatch (VMs of a per-worker
// service tick concurrently), and returns the new value.
func increment(key string) (uint64, error) {
	for {
		var n uint64
		value, cas, err := proxywasm.GetSharedData(key)
		switch {
		case errors.Is(err, types.ErrorStatusNotFound):
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
}
