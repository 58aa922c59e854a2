package envoyconfig

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/anywasm/anywasm/internal/proxy"
)

// ownKey is the top-level key of an Envoy file that holds anywasm's own
// knobs: what the proxy has and Envoy has no name for. It is taken out
// before the rest is decoded as Envoy's Bootstrap (Envoy itself refuses a
// file with it: keep it in the anywasm copy of a file).
const ownKey = "anywasm"

// own is the anywasm block: the proxy's top-level knobs, and per plugin
// and per listener, by name, theirs.
type own struct {
	Runtime         string          `json:"runtime,omitempty"`
	CacheDir        string          `json:"cache_dir,omitempty"`
	MemoryLimitMB   int             `json:"memory_limit_mb,omitempty"`
	GCBallast       *bool           `json:"gc_ballast,omitempty"`
	ReloadInterval  *proxy.Duration `json:"reload_interval,omitempty"`
	ShutdownTimeout *proxy.Duration `json:"shutdown_timeout,omitempty"`
	Admin           *ownAdmin       `json:"admin,omitempty"`
	// Plugins are by plugin name (config.name, or the filter's or the
	// extension's name when that is empty): every plugin of that name,
	// filters and services alike.
	Plugins map[string]ownPlugin `json:"plugins,omitempty"`
	// Listeners are by listener name.
	Listeners map[string]ownListener `json:"listeners,omitempty"`
}

type ownAdmin struct {
	Pprof               bool   `json:"pprof,omitempty"`
	PluginMetricsPrefix string `json:"plugin_metrics_prefix,omitempty"`
}

type ownPlugin struct {
	PoolSize         int             `json:"pool_size,omitempty"`
	CallTimeout      *proxy.Duration `json:"call_timeout,omitempty"`
	LogLevel         string          `json:"log_level,omitempty"`
	ForeignFunctions *[]string       `json:"foreign_functions,omitempty"`
	// Snapshot is proxy.Plugin's: VMs from a pre-initialized snapshot.
	Snapshot bool `json:"snapshot,omitempty"`
}

type ownListener struct {
	MaxBufferBytes int  `json:"max_buffer_bytes,omitempty"`
	MaxConnections *int `json:"max_connections,omitempty"`
}

// decodeOwn reads the anywasm block (JSON), refusing a field it does not
// have by its path.
func decodeOwn(raw any) (*own, error) {
	j, err := json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	d := json.NewDecoder(bytes.NewReader(j))
	d.DisallowUnknownFields()
	var o own
	if err := d.Decode(&o); err != nil {
		return nil, fmt.Errorf("%s: %w (the anywasm block has runtime, cache_dir, memory_limit_mb, reload_interval, shutdown_timeout, admin, plugins and listeners)", ownKey, err)
	}
	return &o, nil
}

// apply puts the block's knobs into the translated configuration. A
// plugin or listener name that names none is refused: the knob would
// otherwise be lost without a word.
func (o *own) apply(cfg *proxy.Config) []error {
	var errs []error
	if o.Runtime != "" {
		cfg.Runtime = o.Runtime
	}
	if o.CacheDir != "" {
		cfg.CacheDir = o.CacheDir
	}
	if o.MemoryLimitMB != 0 {
		cfg.MemoryLimitMB = o.MemoryLimitMB
	}
	if o.GCBallast != nil {
		cfg.GCBallast = o.GCBallast
	}
	if o.ReloadInterval != nil {
		cfg.ReloadInterval = o.ReloadInterval
	}
	if o.ShutdownTimeout != nil {
		cfg.ShutdownTimeout = o.ShutdownTimeout
	}
	if a := o.Admin; a != nil {
		cfg.Admin.Pprof = a.Pprof
		cfg.Admin.PluginMetricsPrefix = a.PluginMetricsPrefix
	}
	found := map[string]bool{}
	set := func(p *proxy.Plugin) {
		k, ok := o.Plugins[p.Name]
		if !ok {
			return
		}
		found[p.Name] = true
		if k.PoolSize != 0 {
			p.PoolSize = k.PoolSize
		}
		if k.CallTimeout != nil {
			p.CallTimeout = k.CallTimeout
		}
		if k.LogLevel != "" {
			p.LogLevel = k.LogLevel
		}
		if k.ForeignFunctions != nil {
			p.ForeignFunctions = k.ForeignFunctions
		}
		if k.Snapshot {
			p.Snapshot = true
		}
	}
	seen := map[string]bool{}
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		k, ok := o.Listeners[l.Name]
		seen[l.Name] = ok
		switch {
		case l.HTTP != nil:
			for j := range l.HTTP.Filters {
				set(&l.HTTP.Filters[j])
			}
			if ok && k.MaxBufferBytes != 0 {
				l.HTTP.MaxBufferBytes = k.MaxBufferBytes
			}
			if ok && k.MaxConnections != nil {
				l.HTTP.MaxConnections = k.MaxConnections
			}
		case l.TCP != nil:
			for j := range l.TCP.Filters {
				set(&l.TCP.Filters[j])
			}
			if ok && k.MaxBufferBytes != 0 {
				l.TCP.MaxBufferBytes = k.MaxBufferBytes
			}
			if ok && k.MaxConnections != nil {
				l.TCP.MaxConnections = k.MaxConnections
			}
		}
	}
	for i := range cfg.WasmServices {
		set(&cfg.WasmServices[i].Plugin)
	}
	for _, name := range sortedKeys(o.Plugins) {
		if !found[name] {
			errs = append(errs, fmt.Errorf("%s.plugins.%s: no plugin of that name (the plugins are %v)", ownKey, name, pluginNames(cfg)))
		}
	}
	for _, name := range sortedKeys(o.Listeners) {
		if _, ok := seen[name]; !ok {
			errs = append(errs, fmt.Errorf("%s.listeners.%s: no listener of that name", ownKey, name))
		}
	}
	return errs
}

func pluginNames(cfg *proxy.Config) []string {
	var names []string
	add := func(ps []proxy.Plugin) {
		for _, p := range ps {
			if !slices.Contains(names, p.Name) {
				names = append(names, p.Name)
			}
		}
	}
	for _, l := range cfg.Listeners {
		if l.HTTP != nil {
			add(l.HTTP.Filters)
		}
		if l.TCP != nil {
			add(l.TCP.Filters)
		}
	}
	for _, s := range cfg.WasmServices {
		add([]proxy.Plugin{s.Plugin})
	}
	slices.Sort(names)
	return names
}
