package nethttp_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/abi/nethttp"
	"github.com/anywasm/anywasm/internal/loadreq"
)

const maxMiddlewareAllocs = 30

// TestMiddlewareAllocs counts the allocations the middleware adds to one
// GET through the Go-SDK headers plugin (which reads every request header,
// adds a request and a response header and logs): the request's and the
// response's header maps converted to the plugin's and back, the stream,
// the request handed on. It is the host's share of the GC work a plugin
// costs under load (cmd/bench load); the bound keeps it from growing.
func TestMiddlewareAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the Go-SDK plugin")
	}
	forEachRuntime(t, nil, abi.Options{}, func(t *testing.T, e *env) {
		p := e.load("headers", abi.PluginConfig{})
		body := loadreq.Body()
		next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Date", "Wed, 02 Dec 2026 14:00:00 GMT")
			_, _ = w.Write(body)
		})
		mw := nethttp.New(next, nethttp.Plugins(p), nethttp.Options{})
		req := httptest.NewRequest("GET", "http://example.com"+loadreq.Path, nil)
		req.RequestURI = loadreq.Path
		for _, kv := range loadreq.Headers {
			req.Header.Set(kv[0], kv[1])
		}
		w := loadreq.NewDiscardWriter()
		serve := func(h http.Handler) func() {
			return func() {
				w.Reset()
				h.ServeHTTP(w, req)
				if w.Status != 0 && w.Status != http.StatusOK {
					t.Fatalf("status %d", w.Status)
				}
			}
		}
		for i := 0; i < 200; i++ {
			serve(mw)()
		}
		if w.H.Get("X-Anywasm-Plugin") != "headers" {
			t.Fatalf("the plugin did not run: response headers %v", w.H)
		}
		base := testing.AllocsPerRun(500, serve(next))
		with := testing.AllocsPerRun(500, serve(mw))
		t.Logf("%.1f allocations per request through the middleware and the plugin (the handler alone: %.1f)", with-base, base)
		// 40 before the header maps' values shared one allocation, the
		// plugins' maps had room for what they add and :status was
		// interned; 28 after (Go 1.26).
		if with-base > maxMiddlewareAllocs {
			t.Errorf("%.1f allocations per request through the middleware, want at most %d", with-base, maxMiddlewareAllocs)
		}
	})
}
