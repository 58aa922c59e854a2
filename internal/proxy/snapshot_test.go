package proxy_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/anywasm/anywasm/internal/plugins"
)

// TestSnapshot: a filter with snapshot: true serves requests from VMs
// made from its snapshot, as the same filter without it.
func TestSnapshot(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt string) {
		h := start(t, rt, fmt.Sprintf(`
reload_interval: 0s
listeners:
  - name: web
    address: 127.0.0.1:0
    http:
      cluster: echo
      filters:
        - {name: snap, snapshot: true, pool_size: 2, vm_config: {vm_id: a, code: {local: {filename: %q}}}}
`, plugins.Path(t, "headers")))
		for range 3 {
			if r := h.do("GET", h.url("web", "/snapped"), ""); r.status != http.StatusOK {
				t.Fatalf("status %d:\n%s", r.status, h.logs)
			}
		}
		if n := h.logs.Count("/snapped"); n < 3 {
			t.Errorf("the plugin logged %d requests, want 3:\n%s", n, h.logs)
		}
	})
}
