package abi_test

import (
	"context"
	_ "embed"
	"strings"
	"testing"
	"time"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
)

//go:embed testdata/done.wasm
var doneWasm []byte

// TestProxyDone: a root context whose proxy_on_done answers false keeps
// running (ticks) until it calls proxy_done; then proxy_on_delete runs. A
// plugin that never calls it is deleted after Options.DoneTimeout.
func TestProxyDone(t *testing.T) {
	for _, c := range []struct {
		config string
		want   []string
	}{
		{"", []string{"done requested", "calling proxy_done", "deleted"}},
		{"never", []string{"done requested", "did not call proxy_done", "deleted"}},
	} {
		t.Run("config="+c.config, func(t *testing.T) {
			forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
				ctx := context.Background()
				logs := &logSink{}
				h := abi.NewHost(rt, abi.Options{Logger: newSlog(logs), DoneTimeout: 200 * time.Millisecond})
				defer h.Close(ctx)
				p, err := h.Load(ctx, doneWasm, abi.PluginConfig{Name: "done", Configuration: []byte(c.config)})
				if err != nil {
					t.Fatal(err)
				}
				if err := p.Close(ctx); err != nil {
					t.Fatal(err)
				}
				got := logs.String()
				at := 0
				for _, w := range c.want {
					i := strings.Index(got[at:], w)
					if i < 0 {
						t.Fatalf("log %q missing or out of order in:\n%s", w, got)
					}
					at += i
				}
			})
		})
	}
}
