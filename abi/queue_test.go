package abi_test

import (
	"context"
	_ "embed"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
)

//go:embed testdata/queue1.wasm
var queue1Wasm []byte

// TestQueueReadyPerItem: proxy_on_queue_ready runs once per enqueued item,
// as proxy-wasm-cpp-host's SharedQueue::enqueue posts one onQueueReady per
// item: a receiver that dequeues one item each time (the Go SDK's
// shared_queue example) gets every item, even two enqueued in one callback.
func TestQueueReadyPerItem(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		logs := &logSink{}
		h := abi.NewHost(rt, abi.Options{Logger: newSlog(logs)})
		defer h.Close(ctx)
		p, err := h.Load(ctx, queue1Wasm, abi.PluginConfig{Name: "queue1", VMID: "vm"})
		if err != nil {
			t.Fatal(err)
		}
		s, err := p.NewHTTPStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.RequestHeaders(ctx, abi.Headers{{Key: ":path", Value: "/"}}, true); err != nil {
			t.Fatal(err)
		}
		s.Close(ctx)
		items := func() string {
			var got []string
			for _, l := range strings.Split(logs.String(), "\n") {
				if l == "INFO a" || l == "INFO b" {
					got = append(got, l[len("INFO "):])
				}
			}
			return strings.Join(got, ",")
		}
		eventually(t, func() bool { return len(items()) == len("a,b") }, "both items dequeued:\n%s", logs)
		if got := items(); got != "a,b" {
			t.Errorf("dequeued %q, want a,b in order\n%s", got, logs)
		}
	})
}
