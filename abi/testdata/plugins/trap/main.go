// Command trap is an HTTP filter that crashes on demand, to test how a host
// survives a broken plugin. The request header x-crash selects the failure:
// "panic" (Go panic), "loop" (never returns), "oom" (allocates until the
// memory cannot grow). Any other request continues. With x-crash-response:
// panic it panics in its response headers callback instead.
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

// hoard keeps every block the oom case allocates reachable.
var hoard [][]byte

// spins counts loop iterations so the loop has an observable effect.
var spins uint64

func (*httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	mode, _ := proxywasm.GetHttpRequestHeader("x-crash")
	switch mode {
	case "panic":
		panic("trap: x-crash: panic")
	case "loop":
		for {
			spins++
		}
	case "oom":
		for {
			block := make([]byte, 1<<20)
			for i := 0; i < len(block); i += 4096 {
				block[i] = 1 // touch every page
			}
			hoard = append(hoard, block)
		}
	}
	return types.ActionContinue
}

func (*httpContext) OnHttpResponseHeaders(int, bool) types.Action {
	if mode, _ := proxywasm.GetHttpRequestHeader("x-crash-response"); mode == "panic" {
		panic("trap: x-crash-response: panic")
	}
	return types.ActionContinue
}
