package proxy_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/internal/proxy"
)

// TestServerHeader: server_name and server_header_transformation set the
// Server header as Envoy's connection manager does, on upstream answers
// and on the listener's own (a 431) alike; without server_name the
// upstream's passes through.
func TestServerHeader(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/with" {
			w.Header().Set("Server", "backend")
		}
		fmt.Fprint(w, "ok")
	}))
	defer backend.Close()
	for _, c := range []struct {
		opts          string
		with, without string // the Server header of /with and /without
		tooLarge      string
	}{
		{"", "backend", "", ""},
		{"server_name: edge", "edge", "edge", "edge"},
		{"server_name: edge, server_header_transformation: OVERWRITE", "edge", "edge", "edge"},
		{"server_name: edge, server_header_transformation: APPEND_IF_ABSENT", "backend", "edge", "edge"},
		{"server_name: edge, server_header_transformation: PASS_THROUGH", "backend", "", ""},
	} {
		t.Run(c.opts, func(t *testing.T) {
			h := start(t, "wazero", fmt.Sprintf(`clusters: [{name: b, address: %q}]
listeners:
  - name: web
    address: 127.0.0.1:0
    http: {cluster: b, max_headers_count: 5, %s}
`, backend.URL, c.opts))
			for path, want := range map[string]string{"/with": c.with, "/without": c.without} {
				if r := h.do("GET", h.url("web", path), ""); r.status != 200 || r.header.Get("Server") != want {
					t.Errorf("%s: %d, Server %q, want %q", path, r.status, r.header.Get("Server"), want)
				}
			}
			hdr := []string{}
			for i := range 6 {
				hdr = append(hdr, fmt.Sprintf("x-%d", i), "v")
			}
			if r := h.do("GET", h.url("web", "/"), "", hdr...); r.status != 431 || r.header.Get("Server") != c.tooLarge {
				t.Errorf("431: %d, Server %q, want %q", r.status, r.header.Get("Server"), c.tooLarge)
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		for _, c := range []struct{ opts, want string }{
			{"server_header_transformation: OVERWRITE", "listeners[0].http.server_name: missing"},
			{"server_name: a, server_header_transformation: SOMETIMES", `listeners[0].http.server_header_transformation: "SOMETIMES"`},
		} {
			_, err := proxy.ParseConfig([]byte(fmt.Sprintf(`listeners: [{name: web, address: "127.0.0.1:0", http: {cluster: echo, %s}}]`, c.opts)))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: %v, want %q", c.opts, err, c.want)
			}
		}
	})
}
