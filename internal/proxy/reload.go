package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
)

// slot holds the current plugin of one filter. A changed plugin file is
// loaded beside the running plugin and swapped in; the old plugin keeps the
// exchanges it has and is closed when the last of them ends.
type slot struct {
	proxy   *Proxy
	field   string // names the filter or service in errors: listeners[0].http.filters[1], wasm_services[0]
	key     string // the runtime and configuration: identical filters share a slot
	host    *abi.Host
	runtime string
	cfg     abi.PluginConfig
	path    string
	inline  []byte      // the module given inline (no path: never reloaded)
	remote  *RemoteCode // the module fetched (no path: never reloaded)
	nack    bool        // vm_config.nack_on_code_cache_miss, for remote
	// discovery is set for a filter whose plugin a control plane sends:
	// never reloaded from its file; host, runtime, cfg, path, inline,
	// remote and nack change with each update (under mu, and reloadMu),
	// and lmd and ldir are its listener's, for each update's
	// configuration. warming says it holds the listeners back
	// (Discovery.Warm) until it is ready (Proxy.markWarm; under the
	// proxy's warmMu).
	// name is the plugin's name in the proxy (logs, metrics, /plugins):
	// Plugin.Name, which the plugin may not see (Plugin.PluginName)
	name      string
	discovery *Discovery
	knobs     ownKnobs // a discovered filter's own knobs, for each update
	warming   bool
	// def is a discovered filter's default_config, loaded again when the
	// control plane removes the configuration (nil: none).
	def  *defaultPlugin
	lmd  abi.Metadata
	ldir abi.TrafficDirection

	reloadMu sync.Mutex // one load at a time
	mod      fileStamp  // the file as last loaded (or tried)

	mu   sync.RWMutex
	cur  *generation
	gens map[*abi.Plugin]*generation // current and draining
	n    int                         // generations loaded
}

type fileStamp struct {
	size  int64
	mtime time.Time
	sum   [32]byte
}

type generation struct {
	p        *abi.Plugin
	n        int
	name     string // the plugin's
	sum      [32]byte
	loadedAt time.Time
	refs     atomic.Int64
	retired  atomic.Bool
	once     sync.Once
}

// defaultPlugin is what a discovered filter's default_config loads.
type defaultPlugin struct {
	host *abi.Host
	rt   string
	cfg  abi.PluginConfig
	m    module
}

// remove goes back to the default_config's plugin, or to none, when the
// control plane removed the configuration of a discovered filter (Envoy's
// DynamicFilterConfigProviderImpl::onConfigRemoved applies the default
// configuration, or none). The plugin it replaces keeps its exchanges.
func (s *slot) remove(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if d := s.def; d != nil {
		return s.loadPlugin(ctx, d.host, d.rt, d.cfg, d.m)
	}
	s.mu.Lock()
	old := s.cur
	s.cur = nil
	if old != nil {
		old.retired.Store(true)
	}
	s.mu.Unlock()
	if old != nil && old.refs.Load() == 0 {
		s.retire(old)
	}
	return nil
}

// module is where a plugin's module comes from: a file, inline bytes, or
// a remote source (with nack_on_code_cache_miss or not).
type module struct {
	path   string
	inline []byte
	remote *RemoteCode
	nack   bool
}

// load reads the file (or fetches the remote module) and loads it; on
// success the new plugin becomes the current one.
func (s *slot) load(ctx context.Context) error {
	return s.loadPlugin(ctx, s.host, s.runtime, s.cfg, module{s.path, s.inline, s.remote, s.nack})
}

// loadPlugin loads a plugin (its module m) on host h; on success it
// becomes the current one, and h, rt, cfg and m the slot's. A discovered
// filter's update changes them; a file reload gives the slot's own.
func (s *slot) loadPlugin(ctx context.Context, h *abi.Host, rt string, cfg abi.PluginConfig, m module) error {
	path, inline := m.path, m.inline
	wasm := inline
	var st os.FileInfo
	if m.remote != nil {
		var err error
		if wasm, err = s.proxy.remoteCode(ctx, m.remote, m.nack, s.name); err != nil {
			return fmt.Errorf("%s.vm_config.code.remote: %w", s.field, err)
		}
	} else if wasm == nil {
		var err error
		if st, err = os.Stat(path); err != nil {
			return fmt.Errorf("%s.vm_config.code.local.filename: %w", s.field, err)
		}
		if wasm, err = os.ReadFile(path); err != nil {
			return fmt.Errorf("%s.vm_config.code.local.filename: %w", s.field, err)
		}
	}
	sum := sha256.Sum256(wasm)
	if st != nil {
		s.mod = fileStamp{size: st.Size(), mtime: st.ModTime(), sum: sum}
	}
	p, err := h.Load(ctx, wasm, cfg)
	if err != nil {
		return fmt.Errorf("%s (plugin %s, %s, runtime %s): %w", s.field, s.name, fileName(path, inline, m.remote), rt, err)
	}
	s.mu.Lock()
	s.host, s.runtime, s.cfg, s.path, s.inline, s.remote, s.nack = h, rt, cfg, path, inline, m.remote, m.nack
	s.n++
	g := &generation{p: p, n: s.n, name: s.name, sum: sum, loadedAt: time.Now()}
	if s.gens == nil {
		s.gens = map[*abi.Plugin]*generation{}
	}
	s.gens[p] = g
	old := s.cur
	s.cur = g
	if old != nil {
		old.retired.Store(true)
	}
	s.mu.Unlock()
	if old != nil && old.refs.Load() == 0 {
		s.retire(old)
	}
	return nil
}

// update loads a plugin a control plane sent for a discovered filter
// beside the running one and swaps it in, as a file reload does: the
// exchanges in flight finish on the old plugin. A plugin that fails to
// load leaves the running one (or none) in place.
func (s *slot) update(ctx context.Context, h *abi.Host, rt string, cfg abi.PluginConfig, m module) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	return s.loadPlugin(ctx, h, rt, cfg, m)
}

// reload loads the file again if it changed; it reports whether a new
// plugin was swapped in. A file that fails to load leaves the running
// plugin in place.
func (s *slot) reload(ctx context.Context) (bool, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if s.inline != nil || s.remote != nil || s.discovery != nil {
		// A discovered filter's plugin is the control plane's to change.
		return false, nil
	}
	st, err := os.Stat(s.path)
	if err != nil {
		return false, err
	}
	if st.Size() == s.mod.size && st.ModTime().Equal(s.mod.mtime) {
		return false, nil
	}
	wasm, err := os.ReadFile(s.path)
	if err != nil {
		return false, err
	}
	if sha256.Sum256(wasm) == s.mod.sum {
		s.mod.size, s.mod.mtime = st.Size(), st.ModTime()
		return false, nil
	}
	if err := s.load(ctx); err != nil {
		return false, err
	}
	return true, nil
}

// acquire returns the current plugin, held until release; nil for a
// discovered filter whose first configuration has not arrived (nethttp
// answers 500, as Envoy's MissingConfigFilter).
func (s *slot) acquire() *abi.Plugin {
	s.mu.RLock()
	defer s.mu.RUnlock()
	g := s.cur
	if g == nil {
		return nil
	}
	g.refs.Add(1)
	return g.p
}

func (s *slot) release(p *abi.Plugin) {
	s.mu.RLock()
	g := s.gens[p]
	s.mu.RUnlock()
	if g != nil && g.refs.Add(-1) == 0 && g.retired.Load() {
		s.retire(g)
	}
}

// retire closes a generation that has no exchange left, in the background.
func (s *slot) retire(g *generation) {
	g.once.Do(func() {
		s.proxy.wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := g.p.Close(ctx); err != nil {
				s.proxy.log.Warn("closing a replaced plugin", "plugin", g.name, "generation", g.n, "err", err)
			}
			s.mu.Lock()
			delete(s.gens, g.p)
			s.mu.Unlock()
		})
	})
}

// close closes every generation (at shutdown, when no exchange is left).
func (s *slot) close(ctx context.Context) {
	s.mu.Lock()
	gens := make([]*generation, 0, len(s.gens))
	for _, g := range s.gens {
		gens = append(gens, g)
	}
	s.mu.Unlock()
	for _, g := range gens {
		g.once.Do(func() { _ = g.p.Close(ctx) })
	}
}

// fileName names a module in logs and /plugins.
func fileName(path string, inline []byte, remote *RemoteCode) string {
	switch {
	case inline != nil:
		return "(inline)"
	case remote != nil:
		return remote.HTTPURI.URI
	}
	return path
}

// status describes the current generation for /plugins.
func (s *slot) status() map[string]any {
	s.mu.RLock()
	g := s.cur
	draining := len(s.gens) - 1
	cfg, rt, file := s.cfg, s.runtime, fileName(s.path, s.inline, s.remote)
	s.mu.RUnlock()
	var m map[string]any
	if g == nil { // a discovered filter before its first configuration
		m = map[string]any{"name": s.discovery.Name, "generation": 0, "draining": 0}
	} else {
		m = map[string]any{
			"name": s.name, "runtime": rt, "root_id": cfg.RootID, "vm_id": cfg.VMID,
			"file": file, "sha256": hex.EncodeToString(g.sum[:]), "generation": g.n, "loaded_at": g.loadedAt.Format(time.RFC3339Nano),
			"abi_version": g.p.ABIVersion().String(), "failure_policy": cfg.FailurePolicy.String(), "draining": draining,
			"pool_size": cfg.PoolSize, "vms": g.p.VMs(),
		}
		if info, err := engine.Lookup(rt); err == nil && info.Tier != "" {
			m["tier"] = info.Tier
		}
	}
	if s.discovery != nil {
		m["discovered"] = s.discovery.Name
	}
	if cfg.Service == abi.NotService {
		m["filter"] = s.field
	} else {
		m["service"] = s.field // wasm_services[0]
		m["singleton"] = cfg.Service == abi.SingletonService
	}
	return m
}

// chain is a listener's filters; it implements nethttp.Chain.
type chain struct {
	slots []*slot
}

func (c *chain) Acquire() []*abi.Plugin {
	ps := make([]*abi.Plugin, len(c.slots))
	for i, s := range c.slots {
		ps[i] = s.acquire()
	}
	return ps
}

func (c *chain) Release(ps []*abi.Plugin) {
	for i, s := range c.slots {
		s.release(ps[i])
	}
}

// Reload checks every plugin file now (what SIGHUP does) and returns the
// number of plugins swapped.
func (p *Proxy) Reload(ctx context.Context) int {
	n := 0
	for _, s := range p.slots {
		ok, err := s.reload(ctx)
		switch {
		case err != nil:
			p.metrics.reloads.WithLabelValues(s.name, "failed").Inc()
			p.log.Error("plugin reload failed; the running plugin stays", "plugin", s.name, "file", s.path, "err", err)
		case ok:
			n++
			p.metrics.reloads.WithLabelValues(s.name, "ok").Inc()
			p.log.Info("plugin reloaded", "plugin", s.name, "file", s.path)
		}
	}
	return n
}

func (p *Proxy) watch(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
			p.Reload(p.ctx)
		}
	}
}
