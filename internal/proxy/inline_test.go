package proxy_test

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/internal/plugins"
	"github.com/anywasm/anywasm/internal/proxy"
)

// TestInlineCode: a module given inline (vm_config.code.local.inline_bytes,
// Envoy's DataSource) loads, shows as "(inline)" in /plugins and is not
// reloaded; a BytesValue configuration reaches the plugin as its bytes.
func TestInlineCode(t *testing.T) {
	wasm := base64.StdEncoding.EncodeToString(plugins.Build(t, "config"))
	conf := base64.RawURLEncoding.EncodeToString([]byte("bytes-conf?>")) // URL-safe, unpadded: protojson takes both forms
	cfg := fmt.Sprintf(`
reload_interval: 0s
listeners:
  - name: web
    address: 127.0.0.1:0
    http:
      cluster: echo
      filters:
        - name: config
          configuration: {"@type": type.googleapis.com/google.protobuf.BytesValue, value: %q}
          vm_config: {vm_id: inline, code: {local: {inline_bytes: %q}}}
admin: {address: "127.0.0.1:0"}
`, conf, wasm)
	forEachRuntime(t, func(t *testing.T, rt string) {
		h := start(t, rt, cfg)
		if r := h.do("GET", h.url("web", "/"), ""); r.status != 200 || r.header.Get("X-Config") != "bytes-conf?>" {
			t.Errorf("%d %v", r.status, r.header)
		}
		if ps := h.plugins(); len(ps) != 1 || ps[0]["file"] != "(inline)" {
			t.Errorf("/plugins: %v", ps)
		}
		if n := h.p.Reload(t.Context()); n != 0 {
			t.Errorf("reloaded %d", n)
		}
	})
}

// TestInlineCodeRefused: a module is one of filename, inline_bytes and
// inline_string; a configuration Any of another type is refused.
func TestInlineCodeRefused(t *testing.T) {
	for _, c := range []struct{ filter, want string }{
		{`{name: a, vm_config: {code: {local: {filename: a.wasm, inline_string: x}}}}`,
			"listeners[0].http.filters[0].vm_config.code.local: give one of filename, inline_bytes and inline_string"},
		{`{name: a, vm_config: {code: {local: {}}}}`,
			"listeners[0].http.filters[0].vm_config.code.local.filename: missing (or give inline_bytes or inline_string)"},
		{`{name: a, vm_config: {code: {local: {filename: a.wasm}}}, configuration: {"@type": type.googleapis.com/google.protobuf.BytesValue, value: "!!"}}`,
			"listeners[0].http.filters[0].configuration: value of a BytesValue: illegal base64"},
		{`{name: a, vm_config: {code: {local: {filename: a.wasm}}}, configuration: {"@type": type.googleapis.com/google.protobuf.Struct, value: {}}}`,
			`listeners[0].http.filters[0].configuration: @type "type.googleapis.com/google.protobuf.Struct": only google.protobuf.StringValue and BytesValue`},
	} {
		_, err := proxy.ParseConfig([]byte("listeners: [{address: \"127.0.0.1:0\", http: {cluster: echo, filters: [" + c.filter + "]}}]\n"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.filter, err, c.want)
		}
	}
}
