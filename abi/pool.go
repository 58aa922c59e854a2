package abi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/anywasm/anywasm/engine"
)

// This file is a plugin group's VM pool: its VMs, how a stream gets one, how
// failed ones are replaced; vm.go is one VM.

// vmGroup is the VMs of one module and vm_id, shared by the plugins loaded
// with them.
type vmGroup struct {
	host    *Host
	key     groupKey
	mod     *engine.Module
	imports *engine.Imports
	version Version
	vmConf  []byte
	env     map[string]string
	shared  *sharedStore
	log     *slog.Logger
	allowed map[string]bool // PluginConfig.AllowedCapabilities; nil allows all
	// probe: the group of the instrumented module a snapshot is made
	// from (Host.snapshot), whose one VM runs the initializer only
	probe bool

	mu       sync.Mutex
	cond     sync.Cond // signalled when creating goes false; L is &mu
	plugins  []*Plugin
	vms      []*vm // live VMs, at most the largest PoolSize of the plugins
	creating bool  // a VM is being made outside mu (grow)
	closed   bool
	shutCh   chan struct{} // closed when closed is set; made by replaceSoon

	// crash-loop protection: consecutive failures to create a VM, and no
	// VM is made before notBefore (backoff, or FailReload's interval)
	failures  int
	notBefore time.Time
}

// compile compiles a plugin's code as cpp-host's WasmBase::load does
// (src/wasm.cc): every "precompiled_" custom section is stripped from the
// bytecode (BytecodeUtil::getStrippedSource); with allowPrecompiled, the
// runtime's own section (getPrecompiledSectionName,
// BytecodeUtil::getCustomSection) is loaded in place of the bytecode if the
// runtime accepts it, and the bytecode compiled otherwise (as
// Wasmtime::load falls back to Module::compile).
func (h *Host) compile(ctx context.Context, code []byte, allowPrecompiled bool, log *slog.Logger) (*engine.Module, error) {
	stripped, err := engine.StripPrecompiled(code)
	if err != nil {
		return nil, fmt.Errorf("Failed to parse corrupted Wasm module: %w", err)
	}
	var pre []byte
	name := ""
	if allowPrecompiled {
		if name = h.rt.PrecompiledSectionName(); name != "" {
			if pre, _, err = engine.CustomSection(code, name); err != nil {
				return nil, fmt.Errorf("Failed to parse corrupted Wasm module: %w", err)
			}
		}
	}
	mod, err := h.rt.CompilePrecompiled(ctx, stripped, pre)
	if err != nil {
		return nil, err
	}
	switch loaded, why := mod.Precompiled(); {
	case loaded:
		log.Debug("loaded the module's precompiled code", "section", name)
	case why != nil:
		log.Warn("the module's precompiled code was not used; compiled its bytecode", "section", name, "err", why)
	}
	return mod, nil
}

func (h *Host) newGroup(ctx context.Context, key groupKey, wasm []byte, cfg PluginConfig) (*vmGroup, error) {
	log := h.log.With("vm_id", key.vmID)
	var mod *engine.Module
	var err error
	if cfg.Snapshot {
		var snap []byte
		if snap, err = h.snapshot(ctx, wasm, cfg); err == nil {
			mod, err = h.rt.Compile(ctx, snap)
		}
	} else {
		mod, err = h.compile(ctx, wasm, cfg.AllowPrecompiled, log)
	}
	if err != nil {
		return nil, err
	}
	g, err := h.groupOf(ctx, key, mod, cfg, log, false)
	if err != nil {
		_ = mod.Close(ctx)
		return nil, err
	}
	return g, nil
}

// groupOf makes the group of a compiled module, with its host modules.
func (h *Host) groupOf(ctx context.Context, key groupKey, mod *engine.Module, cfg PluginConfig, log *slog.Logger, probe bool) (*vmGroup, error) {
	version, err := detectVersion(mod.Info())
	if err != nil {
		return nil, err
	}
	g := &vmGroup{
		host: h, key: key, mod: mod, version: version,
		vmConf: cfg.VMConfiguration, env: cfg.Environment,
		shared: h.sharedFor(key.vmID),
		log:    log, probe: probe,
	}
	if len(cfg.AllowedCapabilities) > 0 {
		g.allowed = map[string]bool{}
		for _, c := range cfg.AllowedCapabilities {
			g.allowed[c] = true
		}
	}
	g.cond.L = &g.mu
	if err := g.checkExports(); err != nil {
		return nil, err
	}
	imports, err := h.rt.NewImports(g.hostModules(mod.Imports())...)
	if err != nil {
		return nil, err
	}
	g.imports = imports
	return g, nil
}

// Snapshot returns the snapshot module PluginConfig.Snapshot makes of
// wasm for cfg (its VMID, VMConfiguration, Environment and
// AllowedCapabilities matter): the module's initializer run once on this
// host, its memory and globals captured into a module whose initializer
// does nothing (see PluginConfig.Snapshot). That module is a plugin like
// any other: it can be stored and loaded without Snapshot.
func (h *Host) Snapshot(ctx context.Context, wasm []byte, cfg PluginConfig) ([]byte, error) {
	if cfg.Name == "" {
		cfg.Name = cfg.RootID
	}
	out, err := h.snapshot(ctx, wasm, cfg)
	if err != nil {
		return nil, fmt.Errorf("abi: plugin %q: %w", cfg.Name, err)
	}
	return out, nil
}

// snapshot runs wasm's initializer on an instrumented copy and returns the
// snapshot module (engine.SnapshotProbe). The copy's VM is a VM of a group
// of its own, with the host modules and the restrictions of any VM: only
// its initializer runs, and it is closed before snapshot returns.
func (h *Host) snapshot(ctx context.Context, wasm []byte, cfg PluginConfig) ([]byte, error) {
	stripped, err := engine.StripPrecompiled(wasm)
	if err != nil {
		return nil, fmt.Errorf("Failed to parse corrupted Wasm module: %w", err)
	}
	probe, err := engine.NewSnapshotProbe(stripped)
	if err != nil {
		return nil, err
	}
	mod, err := h.rt.Compile(ctx, probe.Wasm())
	if err != nil {
		return nil, fmt.Errorf("snapshot: compiling the instrumented module: %w", err)
	}
	defer mod.Close(ctx)
	log := h.log.With("vm_id", cfg.VMID)
	g, err := h.groupOf(ctx, groupKey{vmID: cfg.VMID}, mod, cfg, log, true)
	if err != nil {
		return nil, err
	}
	defer g.imports.Close(ctx)
	// The plugin, for the initializer's CallTimeout and to name it in
	// errors; it has no root context in the VM.
	g.plugins = []*Plugin{{group: g, cfg: cfg, log: log.With("plugin", cfg.Name)}}
	v, err := g.instantiate(ctx)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	defer v.mu.Unlock()
	defer v.closeLocked(ctx)
	out, err := probe.Snapshot(ctx, v.inst, initializers(g.mod.Info())...)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// detectVersion reads the ABI version from the marker export.
func detectVersion(info *engine.ModuleInfo) (Version, error) {
	var found []string
	v := VersionUnknown
	for _, e := range info.Exports {
		if !strings.HasPrefix(e.Name, "proxy_abi_version_") || e.Kind != engine.ExternFunc {
			continue
		}
		found = append(found, e.Name)
		switch e.Name {
		case "proxy_abi_version_0_1_0":
			v = max(v, Version010)
		case "proxy_abi_version_0_2_0":
			v = max(v, Version020)
		case "proxy_abi_version_0_2_1":
			v = max(v, Version021)
		}
	}
	if v == VersionUnknown {
		if len(found) > 0 {
			return 0, fmt.Errorf("unsupported Proxy-Wasm ABI version %s (supported: 0.1.0, 0.2.0, 0.2.1)", strings.Join(found, ", "))
		}
		return 0, errors.New("the module exports no Proxy-Wasm ABI version marker (proxy_abi_version_0_1_0, _0_2_0 or _0_2_1): not a Proxy-Wasm plugin, or built by an SDK too old to say which ABI it speaks")
	}
	return v, nil
}

func (g *vmGroup) checkExports() error {
	info := g.mod.Info()
	if _, ok := info.ExportedFunction("proxy_on_memory_allocate"); !ok {
		if _, ok := info.ExportedFunction("malloc"); !ok {
			return errors.New("the module exports neither proxy_on_memory_allocate nor malloc: the host cannot hand it data")
		}
	}
	if !info.HasExport("memory", engine.ExternMemory) {
		return errors.New(`the module exports no memory named "memory"`)
	}
	return nil
}

func (g *vmGroup) addPlugin(ctx context.Context, cfg PluginConfig) (*Plugin, error) {
	log, level := g.host.log, g.host.logLevel
	if cfg.LogLevel != nil {
		level = *cfg.LogLevel
		log = slog.New(levelHandler{log.Handler(), SlogLevel(level)})
	}
	p := &Plugin{group: g, cfg: cfg, refs: 1, level: level,
		log: log.With("plugin", cfg.Name, "root_id", cfg.RootID, "vm_id", cfg.VMID)}
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.creating { // a VM made meanwhile must get this root too
		g.cond.Wait()
	}
	if g.closed {
		return nil, errGroupClosed
	}
	// Root contexts are keyed as proxy-wasm-cpp-host keys plugins
	// (PluginBase::key: root_id and the plugin configuration, and Envoy's
	// own key of the whole filter configuration): the same code loaded
	// twice with two configurations gets two root contexts; only an
	// identical plugin shares one.
	for _, o := range g.plugins {
		if o.cfg.same(cfg) {
			o.refs++
			return o, nil
		}
	}
	// Start the plugin's root context on every live VM; with none, make one
	// now, so a broken plugin fails at load.
	if len(g.vms) == 0 {
		g.plugins = append(g.plugins, p)
		v, err := g.newVM(ctx, g.plugins)
		if err != nil {
			g.plugins = g.plugins[:len(g.plugins)-1]
			return nil, err
		}
		g.vms = append(g.vms, v)
		return p, nil
	}
	for i, v := range g.vms {
		v.mu.Lock()
		err := v.startRoot(ctx, p)
		v.mu.Unlock()
		if err != nil {
			// Undo the root contexts started: the plugin is not loaded,
			// and they would stay in the VMs as long as the VMs live.
			for _, v := range g.vms[:i+1] {
				v.mu.Lock()
				v.dropRoot(ctx, p)
				v.mu.Unlock()
			}
			return nil, err
		}
	}
	g.plugins = append(g.plugins, p)
	return p, nil
}

// liveVMs returns the VMs of the pool that have not failed.
func (g *vmGroup) liveVMs() []*vm {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*vm
	for _, v := range g.vms {
		if !v.failed.Load() {
			out = append(out, v)
		}
	}
	return out
}

// poolSize is the largest pool any plugin of the group asked for.
func (g *vmGroup) poolSize() int {
	n := 1
	for _, p := range g.plugins {
		n = max(n, p.cfg.PoolSize)
	}
	return n
}

// acquire picks the VM for a new stream: the live VM with the fewest
// streams, or a new one when the pool is not full and every live VM has a
// stream already. VMs are created one at a time per group and outside g.mu
// (backpressure: a burst of streams shares the VMs there are while one more
// is made, instead of making one per stream), with backoff after failures.
// Failed VMs are dropped from the pool and closed here. g.mu must not be
// held.
func (g *vmGroup) acquire(ctx context.Context) (*vm, error) {
	var dead []*vm
	defer func() {
		for _, d := range dead {
			_ = d.close(ctx)
		}
	}()
	g.mu.Lock()
	defer g.mu.Unlock()
	for {
		if g.closed {
			return nil, engine.ErrClosed
		}
		dead = append(dead, g.dropFailed()...)
		var best *vm
		for _, v := range g.vms {
			if best == nil || v.streams.Load() < best.streams.Load() {
				best = v
			}
		}
		grow := len(g.vms) < g.poolSize() && !g.creating && (best == nil || best.streams.Load() > 0)
		if grow {
			if now := time.Now(); now.Before(g.notBefore) {
				if best == nil {
					return nil, g.noVM(now)
				}
			} else {
				v, err := g.grow(ctx)
				if err == nil {
					v.streams.Add(1)
					return v, nil
				}
				if best == nil || errors.Is(err, engine.ErrClosed) {
					return nil, err
				}
				g.log.Error("creating a VM failed; using the live ones", "err", err)
				continue // the pool may have changed meanwhile
			}
		}
		if best != nil {
			best.streams.Add(1)
			return best, nil
		}
		g.cond.Wait() // no live VM: another stream is creating one
	}
}

// dropFailed removes the failed VMs from the pool and returns them. g.mu is
// held.
func (g *vmGroup) dropFailed() (dead []*vm) {
	live := g.vms[:0]
	for _, v := range g.vms {
		if v.failed.Load() {
			dead = append(dead, v)
			if base := g.reloadBase(); base > 0 {
				// FailReload: no new VM sooner than the interval after
				// the failed one was made (Envoy's last_load).
				g.later(v.made.Add(jitteredLowerBound(base)))
			}
			continue
		}
		live = append(live, v)
	}
	clear(g.vms[len(live):])
	g.vms = live
	return dead
}

// grow creates a VM and adds it to the pool. g.mu is held, and released
// while the VM is made; plugins loaded or closed meanwhile get their root
// context started or ended in it before it joins the pool.
func (g *vmGroup) grow(ctx context.Context) (*vm, error) {
	g.creating = true
	plugins := slices.Clone(g.plugins)
	g.mu.Unlock()
	v, err := g.newVM(ctx, plugins)
	g.mu.Lock()
	g.creating = false
	g.cond.Broadcast()
	if err == nil {
		err = g.syncRoots(ctx, v)
	}
	if err != nil {
		if !errors.Is(err, engine.ErrClosed) {
			g.failures++
			g.later(time.Now().Add(g.retryDelay()))
		}
		return nil, err
	}
	g.failures = 0
	g.vms = append(g.vms, v)
	return v, nil
}

// later moves notBefore to t if t is later. g.mu is held.
func (g *vmGroup) later(t time.Time) {
	if t.After(g.notBefore) {
		g.notBefore = t
	}
}

// noVM is the error of a stream that finds no live VM while none may be
// made before notBefore. g.mu is held.
func (g *vmGroup) noVM(now time.Time) error {
	wait := g.notBefore.Sub(now).Round(time.Millisecond)
	if g.failures == 0 {
		return fmt.Errorf("no VM: the last one failed; the next is made in %s (FailReload's interval)", wait)
	}
	return fmt.Errorf("no VM: creating one failed %d times, next attempt in %s", g.failures, wait)
}

// retryDelay is how long after a failed attempt to make a VM the next may
// be made: FailReload's interval if a plugin of the group has that policy
// (reloadBase), else backoff. g.mu is held.
func (g *vmGroup) retryDelay() time.Duration {
	if base := g.reloadBase(); base > 0 {
		return jitteredLowerBound(base)
	}
	return backoff(g.failures)
}

// reloadBase is the base interval of FailReload (PluginConfig.ReloadBackoff,
// default 1 s) of the group's plugins that have that policy, the smallest
// if they differ; 0 if none has. g.mu is held.
func (g *vmGroup) reloadBase() time.Duration {
	var base time.Duration
	for _, p := range g.plugins {
		if p.cfg.FailurePolicy != FailReload {
			continue
		}
		b := p.cfg.ReloadBackoff
		if b <= 0 {
			b = DefaultReloadBackoff
		}
		if base == 0 || b < base {
			base = b
		}
	}
	return base
}

// jitteredLowerBound is a random duration in [base, 1.5 base), as Envoy's
// JitteredLowerBoundBackOffStrategy::nextBackOffMs (in milliseconds there:
// random() % (base >> 1) + base), the interval of its FAIL_RELOAD
// (PluginConfig::maybeReloadHandleIfNeeded).
func jitteredLowerBound(base time.Duration) time.Duration {
	if half := base / 2; half > 0 {
		return base + rand.N(half)
	}
	return base
}

// syncRoots gives v the root contexts of the group's plugins as they are
// now. g.mu is held; v is not in the pool yet. On an error v is closed.
func (g *vmGroup) syncRoots(ctx context.Context, v *vm) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	fail := func(err error) error {
		v.closeLocked(ctx)
		return err
	}
	if g.closed {
		return fail(engine.ErrClosed)
	}
	for p := range v.roots {
		if !slices.Contains(g.plugins, p) { // closed while v was made
			v.dropRoot(ctx, p)
		}
	}
	for _, p := range g.plugins {
		if v.roots[p] == nil { // loaded while v was made
			if err := v.startRoot(ctx, p); err != nil {
				return fail(err)
			}
		}
	}
	if v.failed.Load() {
		return fail(v.failure())
	}
	return nil
}

// backoff is 100 ms doubling per consecutive failure, at most 30 s.
func backoff(failures int) time.Duration {
	d := 100 * time.Millisecond
	for i := 1; i < failures && d < 30*time.Second; i++ {
		d *= 2
	}
	return min(d, 30*time.Second)
}

// fill makes VMs until the group has n live ones, for a per-worker
// service: Envoy's WasmServiceExtension::createWasm gives every worker
// thread its plugin handle (getOrCreateThreadLocalPlugin: the worker's VM,
// then cpp-host's WasmBase::start and configure on it) when the service is
// created, not when a stream comes, for a service has none. Failed VMs are
// dropped and closed. g.mu must not be held.
func (g *vmGroup) fill(ctx context.Context, n int) error {
	var dead []*vm
	defer func() {
		for _, d := range dead {
			_ = d.close(ctx)
		}
	}()
	g.mu.Lock()
	defer g.mu.Unlock()
	for {
		if g.closed {
			return engine.ErrClosed
		}
		dead = append(dead, g.dropFailed()...)
		switch {
		case len(g.vms) >= n:
			return nil
		case g.creating: // a stream is making one: count it when it is in
			g.cond.Wait()
		default:
			if _, err := g.grow(ctx); err != nil {
				return err
			}
		}
	}
}

// serviceVMs is the number of VMs the group's services need at all times:
// the largest PoolSize of its per-worker services, 1 for a singleton
// service, 0 without a service. g.mu is held.
func (g *vmGroup) serviceVMs() int {
	n := 0
	for _, p := range g.plugins {
		if p.cfg.Service != NotService {
			n = max(n, p.cfg.PoolSize)
		}
	}
	return n
}

// replaceSoon creates VMs in the background to replace failed ones, for
// FailReload: until one VM is live, or, in a group with services, as many
// as they need (serviceVMs). As Envoy's PluginConfig::maybeReloadHandleIfNeeded,
// a VM is made no sooner than a random interval in [base, 1.5 base) after
// the failed one was made, and the same interval after every attempt that
// fails (reloadBase, jitteredLowerBound; dropFailed and grow set
// notBefore), so a plugin that fails at once is reloaded at most once per
// interval. Envoy reloads when the next stream comes; here the VM is made
// when the interval ends, so that the next stream need not wait for it.
// v.mu of the failed VM may be held: g.mu is taken on another goroutine.
func (g *vmGroup) replaceSoon() {
	go func() {
		ctx := context.Background()
		attempts := 0
		for {
			g.mu.Lock()
			if g.closed {
				g.mu.Unlock()
				return
			}
			if g.shutCh == nil {
				g.shutCh = make(chan struct{})
			}
			shut := g.shutCh
			dead := g.dropFailed()
			short := len(g.vms) < max(1, g.serviceVMs())
			if short && g.creating { // a stream is making one: see how it went
				g.cond.Wait()
				short = false
			}
			wait := time.Until(g.notBefore)
			var err error
			if short && wait <= 0 {
				attempts++
				_, err = g.grow(ctx)
			}
			again := g.creating || len(g.vms) < max(1, g.serviceVMs())
			g.mu.Unlock()
			for _, d := range dead {
				_ = d.close(ctx)
			}
			switch {
			case errors.Is(err, engine.ErrClosed): // the runtime is gone
				return
			case err != nil:
				g.log.Error("reloading the VM failed", "attempt", attempts, "err", err)
			case !again:
				return
			case short && wait > 0:
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-shut: // closed: the loop ends
					t.Stop()
				}
			}
		}
	}()
}

func (g *vmGroup) close(ctx context.Context) error {
	g.mu.Lock()
	vms, ok := g.shut()
	g.mu.Unlock()
	if !ok {
		return nil
	}
	return g.free(ctx, vms)
}

// shut marks the group closed, so that no plugin joins it any more, and
// takes its VMs for free; ok is false if it was closed already. g.mu is
// held.
func (g *vmGroup) shut() (vms []*vm, ok bool) {
	if g.closed {
		return nil, false
	}
	g.closed = true
	if g.shutCh != nil {
		close(g.shutCh)
	}
	vms = g.vms
	g.vms = nil
	return vms, true
}

// free closes the VMs, host modules and module of a group that was shut.
func (g *vmGroup) free(ctx context.Context, vms []*vm) error {
	var errs []error
	for _, v := range vms {
		errs = append(errs, v.close(ctx))
	}
	errs = append(errs, g.imports.Close(ctx), g.mod.Close(ctx))
	return errors.Join(errs...)
}
