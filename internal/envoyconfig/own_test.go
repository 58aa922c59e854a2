package envoyconfig_test

import (
	"strings"
	"testing"

	"github.com/anywasm/anywasm/internal/envoyconfig"
)

// TestOwnBlock: the top-level anywasm block carries the proxy's own knobs
// into an Envoy file, by plugin and listener name; a name that names
// nothing, a field the block lacks and a bad value are refused by path.
func TestOwnBlock(t *testing.T) {
	const block = `anywasm:
  runtime: wazero
  memory_limit_mb: 64
  gc_ballast: false
  reload_interval: 0s
  shutdown_timeout: 3s
  admin: {pprof: true, plugin_metrics_prefix: edge_}
  plugins:
    headers: {pool_size: 4, call_timeout: 250ms, log_level: debug, foreign_functions: [compress], snapshot: true}
  listeners:
    web: {max_buffer_bytes: 65536, max_connections: 100}
`
	cfg, _, err := envoyconfig.Parse([]byte(block + base))
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Listeners[0].HTTP
	p := l.Filters[0]
	switch {
	case cfg.Runtime != "wazero", cfg.MemoryLimitMB != 64, cfg.GCBallast == nil || *cfg.GCBallast, cfg.ReloadInterval.Get() != 0, cfg.ShutdownTimeout.Get().String() != "3s",
		!cfg.Admin.Pprof, cfg.Admin.PluginMetricsPrefix != "edge_":
		t.Errorf("top level: %+v", cfg)
	case p.PoolSize != 4, p.CallTimeout.Get().String() != "250ms", p.LogLevel != "debug", p.ForeignFunctions == nil || strings.Join(*p.ForeignFunctions, ",") != "compress", !p.Snapshot:
		t.Errorf("plugin: %+v", p)
	case l.MaxBufferBytes != 65536, l.MaxConnections == nil || *l.MaxConnections != 100:
		t.Errorf("listener: %+v", l)
	}
	for _, c := range []struct{ block, want string }{
		{"anywasm: {plugins: {nobody: {pool_size: 2}}}\n", "anywasm.plugins.nobody: no plugin of that name (the plugins are [headers])"},
		{"anywasm: {listeners: {nowhere: {max_connections: 2}}}\n", "anywasm.listeners.nowhere: no listener of that name"},
		{"anywasm: {pool_size: 2}\n", `anywasm: json: unknown field "pool_size"`},
		{"anywasm: {plugins: {headers: {pool_size: 5000}}}\n", "listeners[0].http.filters[0].pool_size"},
		{"anywasm: {plugins: {headers: {call_timeout: soon}}}\n", "call_timeout"},
	} {
		if _, _, err := envoyconfig.Parse([]byte(c.block + base)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", strings.TrimSpace(c.block), err, c.want)
		}
	}
}
