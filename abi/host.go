package abi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/anywasm/anywasm/engine"
)

// ForeignFunc is a function the embedder offers plugins through
// proxy_call_foreign_function.
type ForeignFunc func(ctx context.Context, args []byte) ([]byte, error)

// Options configure a Host. The zero value works: logs go to slog.Default(),
// HTTP callouts are refused, no properties beyond the plugin's own.
type Options struct {
	// Logger receives plugin logs (proxy_log, and WASI stdout/stderr) with
	// attributes plugin, root_id and vm_id. proxy_get_log_level reports the
	// lowest Proxy-Wasm level its handler is enabled for (trace is
	// LevelTrace, critical LevelCritical; ReplaceLevelNames names them),
	// unless the plugin has a PluginConfig.LogLevel.
	Logger *slog.Logger
	// Upstreams carries HTTP callouts (proxy_http_call). Nil refuses them.
	// NewHTTPUpstreams gives a net/http implementation over named clusters.
	Upstreams Upstreams
	// GRPCUpstreams carries unary gRPC callouts (proxy_grpc_call) and,
	// when it implements GRPCStreamer, gRPC streams (proxy_grpc_stream).
	// Nil refuses them. abi/grpcupstream implements both over grpc-go.
	GRPCUpstreams GRPCUpstreams
	// Properties, when set, answers proxy_get_property first (so an
	// embedder or a test can give any attribute); paths it does not know
	// go to Envoy's attributes (README, "Attributes": the stream's own, its
	// StreamInfo, Node, the plugin's listener), then to what the plugin
	// set with proxy_set_property.
	Properties func(path []string) ([]byte, bool)
	// Node is the proxy's identity (the attributes node and xds.node); nil
	// answers NOT_FOUND.
	Node *Node
	// ForeignFunctions are callable by name from plugins.
	ForeignFunctions map[string]ForeignFunc
	// Limits bound what a plugin may hand the host.
	Limits Limits
	// Now is the clock of proxy_get_current_time_nanoseconds and WASI's
	// realtime clock. Default time.Now.
	Now func() time.Time
	// Random fills random_get. Default crypto/rand.
	Random io.Reader
	// DoneTimeout bounds the wait for proxy_done when a plugin's
	// proxy_on_done answers false at shutdown. Default 5 s.
	DoneTimeout time.Duration
	// ManualTicks: the host runs no timers; proxy_on_tick runs only when
	// Plugin.Tick is called (deterministic tests, hosts with a clock of
	// their own).
	ManualTicks bool
}

// Host runs Proxy-Wasm plugins on one engine.Runtime. It holds what plugins
// of one vm_id share: shared data, shared queues, and the metrics of every
// plugin. It is safe for concurrent use.
type Host struct {
	rt       *engine.Runtime
	opts     Options
	log      *slog.Logger
	logLevel LogLevel

	metrics *Metrics

	mu     sync.Mutex
	shared map[string]*sharedStore // by vm_id
	queues *queueRegistry
	groups map[groupKey]*vmGroup
	closed bool
}

// NewHost returns a host for plugins running on rt.
func NewHost(rt *engine.Runtime, opts Options) *Host {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Random == nil {
		opts.Random = rand.Reader
	}
	if opts.DoneTimeout <= 0 {
		opts.DoneTimeout = 5 * time.Second
	}
	opts.Limits = opts.Limits.withDefaults()
	return &Host{
		rt: rt, opts: opts, log: opts.Logger, logLevel: levelOf(opts.Logger.Handler()),
		metrics: newMetrics(),
		shared:  map[string]*sharedStore{},
		queues:  newQueueRegistry(),
		groups:  map[groupKey]*vmGroup{},
	}
}

// Runtime returns the engine runtime plugins run on.
func (h *Host) Runtime() *engine.Runtime { return h.rt }

// Metrics returns the metrics every plugin of this host defined.
func (h *Host) Metrics() *Metrics { return h.metrics }

// Close closes every plugin loaded by the host, waiting for callbacks in
// progress (ticks, callout answers, queue deliveries run on goroutines of
// their own). Close the host before its engine.Runtime.
func (h *Host) Close(ctx context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	groups := h.groups
	h.groups = map[groupKey]*vmGroup{}
	h.mu.Unlock()
	var errs []error
	for _, g := range groups {
		errs = append(errs, g.close(ctx))
	}
	return errors.Join(errs...)
}

func (h *Host) sharedFor(vmID string) *sharedStore {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.shared[vmID]
	if s == nil {
		s = newSharedStore()
		h.shared[vmID] = s
	}
	return s
}

// FailurePolicy decides what happens to a stream whose plugin fails (traps,
// exits, times out). Whatever the policy, a VM that failed is never used
// again: it is closed and replaced.
type FailurePolicy int

// The failure policies.
const (
	// FailClosed answers the stream with a local 503 response (default).
	FailClosed FailurePolicy = iota // fail_closed
	// FailOpen lets the stream continue as if the plugin were absent.
	FailOpen // fail_open
	// FailReload answers the stream with a local 503 like FailClosed and
	// replaces the VM in the background as Envoy's FAIL_RELOAD does
	// (PluginConfig::maybeReloadHandleIfNeeded): no sooner than a random
	// interval in [ReloadBackoff, 1.5 ReloadBackoff) after the failed VM
	// was made (at once if it was made longer ago), and again that
	// interval after every attempt that fails. Streams that find no live
	// VM meanwhile fail as under FailClosed.
	FailReload // fail_reload
)

// DefaultReloadBackoff is PluginConfig.ReloadBackoff's default, Envoy's
// for reload_config.backoff.base_interval.
const DefaultReloadBackoff = time.Second

// PluginConfig describes a plugin, in the shape of Envoy's Wasm filter
// configuration.
type PluginConfig struct {
	// Name is answered for the property plugin_name and names the plugin in
	// logs and errors.
	Name string
	// RootID selects the plugin's root context in the module (property
	// plugin_root_id). Plugins of one module and VMID each get a root
	// context of their own, whatever their RootID.
	RootID string
	// VMID groups plugins: plugins with the same VMID and code share VMs
	// (each has its own root context in them), shared data and queues.
	VMID string
	// Configuration is the plugin configuration (proxy_on_configure).
	Configuration []byte
	// VMConfiguration is the VM configuration (proxy_on_vm_start). Only
	// plugins with the same VMID, code and VM configuration share VMs.
	VMConfiguration []byte
	// Environment is what WASI environ_get shows; nothing else is visible.
	Environment map[string]string
	// FailurePolicy decides a stream's fate when the plugin fails.
	FailurePolicy FailurePolicy
	// ReloadBackoff is, with FailReload, the base interval between a VM's
	// making and its replacement's (Envoy's reload_config.backoff.
	// base_interval; see FailReload). 0 means DefaultReloadBackoff. Plugins
	// sharing VMs with different intervals get the smallest.
	ReloadBackoff time.Duration
	// PoolSize is the number of VMs streams are spread over (Envoy runs one
	// per worker thread). Default 1; each VM runs one callback at a time.
	// VMs are made as streams need them, one at a time. At most
	// MaxPoolSize, and no more than the machine's memory holds: Load
	// refuses a pool whose VMs, at the runtime's memory limit (or, without
	// one, at the memory the first VM has after its initializer), would
	// need more than the machine's RAM.
	PoolSize int
	// LogLevel, when set, is the plugin's own log level: its logs at this
	// level and above are kept (whatever the level of Options.Logger's
	// handler) and proxy_get_log_level answers it. Nil: the host logger's.
	LogLevel *LogLevel
	// ListenerDirection and ListenerMetadata are those of the listener the
	// plugin serves (the attributes listener_direction, listener_metadata
	// and their xds forms; NOT_FOUND when unset).
	ListenerDirection TrafficDirection
	ListenerMetadata  Metadata
	// ForeignFunctions, when not nil, are the names of the
	// Options.ForeignFunctions this plugin may call (others are
	// NOT_FOUND); nil allows every one, as Envoy does.
	ForeignFunctions []string
	// CallTimeout bounds each callback. It needs a runtime opened with
	// engine.Config.WithInterruptOnContextDone(true); Load refuses it on
	// others. 0 means no bound.
	CallTimeout time.Duration
	// Service, when not NotService, loads the plugin as a Wasm service
	// (Envoy's WasmService bootstrap extension): its root context serves
	// no streams, and is started at Load on every VM it runs on, so that
	// its ticks, callouts and queue deliveries run with no stream to start
	// them. See ServiceMode.
	Service ServiceMode
	// AllowedCapabilities, when not empty, are the only hostcalls
	// (proxy_log, ...), WASI functions (fd_write, ... for both WASI
	// modules) and callbacks (proxy_on_request_headers, ...) the plugin's
	// module is linked to: Envoy's capability_restriction_config
	// (proxy-wasm-cpp-host's allowed_capabilities_ and
	// WasmBase::capabilityAllowed). Another proxy_* import is linked to a
	// stub that logs "Attempted call to restricted proxy-wasm capability:
	// NAME" at error and returns INTERNAL_FAILURE, another WASI import to
	// one that logs "Attempted call to restricted WASI capability: NAME"
	// and returns ENOTCAPABLE (76; proc_exit only logs), and a callback
	// not listed is never called, as cpp-host's registerCallbacks and
	// getFunctions do. The allocator (malloc, proxy_on_memory_allocate),
	// the initializer and the ABI version marker are never restricted.
	// Empty allows everything, as cpp-host's empty map does. Plugins share
	// VMs only with plugins of the same capabilities.
	AllowedCapabilities []string
	// AllowPrecompiled lets the module's precompiled code for the host's
	// runtime, in the custom section the runtime names
	// (engine.Runtime.PrecompiledSectionName, e.g.
	// precompiled_wasmtime_v44.0.0_linux_x86_64; made by
	// engine.Runtime.Precompile), be loaded instead of compiling its
	// bytecode: Envoy's vm_config.allow_precompiled (cpp-host's
	// WasmBase::load). If the runtime refuses that code (another version,
	// configuration or CPU, not its format) or has none (wazero), the
	// bytecode is compiled and the reason logged at warn. Whatever it says,
	// every custom section whose name contains "precompiled_" is stripped
	// before the bytecode is compiled, as Envoy does; a module whose
	// section table is malformed is refused ("Failed to parse corrupted
	// Wasm module").
	//
	// Precompiled code is native code that the runtime runs without
	// checking it: set this only for modules you trust as much as the
	// proxy's own binary. Plugins share VMs only with plugins of the same
	// setting.
	AllowPrecompiled bool
	// Snapshot makes the plugin's VMs from a pre-initialized snapshot
	// (the Wizer technique): when its VM group is made, the module's
	// initializer (_initialize, and main or __main_void, or _start) runs
	// once, with this host's WASI and hostcalls as in any VM, on a copy
	// of the module instrumented to export its globals and memory; the
	// group's module is then the original with that memory as its data
	// and those globals as its initial values, whose initializer does
	// nothing (Host.Snapshot returns it). Every VM of the group is an
	// instance of it, so making one costs an instantiation and no
	// initializer. proxy_on_vm_start, proxy_on_configure and everything
	// after still run on every VM.
	//
	// Every VM then shares what the initializer computed, once: the
	// random seeds it drew (random_get: Go's map hash seeds, math/rand's
	// default source), the clocks it read, the environment it saw, and
	// its logs are written once, when the snapshot is made. Plugins share
	// VMs only with plugins of the same setting (and, with it, the same
	// Environment). A module the technique cannot capture faithfully
	// (engine.NewSnapshotProbe: an imported memory, global or table,
	// several memories, passive data segments, instructions that change
	// tables or data segments, non-numeric mutable globals) fails Load
	// with the reason; nothing falls back to the normal path silently.
	// It cannot be combined with AllowPrecompiled (the precompiled code is
	// the original module's).
	Snapshot bool
}

// ServiceMode says whether a plugin is a Wasm service, and on how many VMs
// it runs: Envoy's envoy.extensions.wasm.v3.WasmService and its singleton
// field. A service gets its root context only: proxy_on_vm_start,
// proxy_on_configure, ticks, HTTP and gRPC callouts, shared data and
// queues (with every plugin of its VMID, as filters), metrics and logs;
// Plugin.NewHTTPStream and NewTCPStream refuse it (ErrService). Close ends
// it as a filter's root context (proxy_on_done, proxy_on_delete).
//
// A service VM that fails (a trap in proxy_on_tick, say) is never entered
// again, as any VM; with FailReload it is replaced (at FailReload's
// interval) and the service's root context started on the new VM, with the
// other policies the service stays without it until it is loaded again
// (Envoy leaves a failed service VM failed).
type ServiceMode int

// The service modes.
const (
	// NotService is a filter: a root context whose streams come through
	// NewHTTPStream and NewTCPStream (default).
	NotService ServiceMode = iota // not_service
	// SingletonService runs on one VM (Envoy's singleton: true, a VM on
	// the main thread). That VM is never shared with filters or
	// per-worker services; singleton services with the same VMID, code and
	// VM configuration share it (each with its own root context), as they
	// share Envoy's main-thread VM. PoolSize must be 0 or 1.
	SingletonService // singleton_service
	// PerWorkerService runs on PoolSize VMs (Envoy's singleton: false, one
	// VM per worker thread; PoolSize stands for the worker count), all made
	// at Load, each with the service's root context and its own ticks.
	// They are the VMs of the filters with the same VMID, code and VM
	// configuration, as Envoy's per-worker VMs are: every VM holds each
	// such plugin's root context, and those filters' streams are spread
	// over all of them.
	PerWorkerService // per_worker_service
)

// ErrService is what NewHTTPStream and NewTCPStream answer for a service
// (PluginConfig.Service): services have no streams.
var ErrService = errors.New("abi: the plugin is a Wasm service: services have no streams")

// groupKey is what makes VMs shareable: the vm_id, the code and the VM
// configuration (cpp-host's makeVmKey). Shared data and queues are by
// vm_id alone.
type groupKey struct {
	vmID string
	code [32]byte
	conf [32]byte
	// singleton: the VM of singleton services, Envoy's main-thread VM,
	// which filters and per-worker services never share.
	singleton bool
	// caps: the sorted, NUL-joined AllowedCapabilities, linked per group.
	caps string
	// precompiled: AllowPrecompiled (the same code may then run other
	// native code).
	precompiled bool
	// snapshot: PluginConfig.Snapshot; env, with it, the environment the
	// snapshot's initializer saw (zero without).
	snapshot bool
	env      [32]byte
}

// same reports whether two plugin configurations are identical: such
// plugins share one root context.
func (c PluginConfig) same(o PluginConfig) bool {
	return c.Name == o.Name && c.RootID == o.RootID && c.VMID == o.VMID &&
		string(c.Configuration) == string(o.Configuration) && string(c.VMConfiguration) == string(o.VMConfiguration) &&
		maps.Equal(c.Environment, o.Environment) && c.FailurePolicy == o.FailurePolicy &&
		c.PoolSize == o.PoolSize && c.CallTimeout == o.CallTimeout && c.Service == o.Service &&
		(c.LogLevel == nil) == (o.LogLevel == nil) && (c.LogLevel == nil || *c.LogLevel == *o.LogLevel) &&
		c.ListenerDirection == o.ListenerDirection && equalMetadata(c.ListenerMetadata, o.ListenerMetadata) &&
		(c.ForeignFunctions == nil) == (o.ForeignFunctions == nil) && slices.Equal(c.ForeignFunctions, o.ForeignFunctions) &&
		capsKey(c.AllowedCapabilities) == capsKey(o.AllowedCapabilities) && c.AllowPrecompiled == o.AllowPrecompiled &&
		c.Snapshot == o.Snapshot
}

// envKey is a hash of the environment as a set.
func envKey(env map[string]string) [32]byte {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(env)) {
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write([]byte(env[k]))
		h.Write([]byte{0})
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// capsKey is AllowedCapabilities as a set: sorted, without duplicates.
func capsKey(caps []string) string {
	c := slices.Clone(caps)
	slices.Sort(c)
	return strings.Join(slices.Compact(c), "\x00")
}

// Load compiles a plugin (or reuses the VMs of a plugin with the same VMID
// and code), checks its ABI version, creates its first VM and runs
// proxy_on_vm_start and proxy_on_configure, so that a broken plugin fails
// here with a clear error rather than on the first request. A
// PerWorkerService gets all its VMs here, each started and configured.
func (h *Host) Load(ctx context.Context, wasm []byte, cfg PluginConfig) (*Plugin, error) {
	if cfg.Name == "" {
		cfg.Name = cfg.RootID
	}
	if cfg.Service < NotService || cfg.Service > PerWorkerService {
		return nil, fmt.Errorf("abi: plugin %q: unknown %s", cfg.Name, cfg.Service)
	}
	if cfg.Service == SingletonService && cfg.PoolSize > 1 {
		return nil, fmt.Errorf("abi: plugin %q: %w: %d, a singleton service runs on one VM", cfg.Name, ErrPoolSize, cfg.PoolSize)
	}
	if cfg.PoolSize <= 0 {
		cfg.PoolSize = 1
	}
	if cfg.ReloadBackoff < 0 {
		return nil, fmt.Errorf("abi: plugin %q: ReloadBackoff %s is negative", cfg.Name, cfg.ReloadBackoff)
	}
	if cfg.PoolSize > MaxPoolSize {
		return nil, fmt.Errorf("abi: plugin %q: %w: %d, at most %d VMs", cfg.Name, ErrPoolSize, cfg.PoolSize, MaxPoolSize)
	}
	if cfg.CallTimeout > 0 && !h.rt.Config().InterruptOnContextDone() {
		return nil, fmt.Errorf("abi: plugin %q: CallTimeout needs a runtime opened with WithInterruptOnContextDone(true) (%s offers: %s): %w",
			cfg.Name, h.rt.Name(), h.rt.Capabilities(), engine.ErrNotSupported)
	}
	if cfg.Snapshot && cfg.AllowPrecompiled {
		return nil, fmt.Errorf("abi: plugin %q: Snapshot and AllowPrecompiled cannot be combined: the precompiled code is the original module's, not the snapshot's", cfg.Name)
	}
	key := groupKey{vmID: cfg.VMID, code: sha256.Sum256(wasm), conf: sha256.Sum256(cfg.VMConfiguration),
		singleton: cfg.Service == SingletonService, caps: capsKey(cfg.AllowedCapabilities), precompiled: cfg.AllowPrecompiled,
		snapshot: cfg.Snapshot}
	if cfg.Snapshot {
		key.env = envKey(cfg.Environment)
	}
	for {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return nil, engine.ErrClosed
		}
		g := h.groups[key]
		h.mu.Unlock()
		if g == nil {
			var err error
			if g, err = h.newGroup(ctx, key, wasm, cfg); err != nil {
				return nil, fmt.Errorf("abi: plugin %q: %w", cfg.Name, err)
			}
			h.mu.Lock()
			if other := h.groups[key]; other != nil { // loaded concurrently
				h.mu.Unlock()
				_ = g.close(ctx)
				g = other
			} else {
				h.groups[key] = g
				h.mu.Unlock()
			}
		}
		p, err := g.addPlugin(ctx, cfg)
		if errors.Is(err, errGroupClosed) {
			// The group's last plugin closed, or its first failed to
			// load, between the lookup and now: make a new one.
			h.forgetGroup(g)
			continue
		}
		if err != nil {
			h.dropIfUnused(ctx, g)
			return nil, fmt.Errorf("abi: plugin %q: %w", cfg.Name, err)
		}
		if err := g.checkPoolMemory(cfg.PoolSize); err != nil {
			_ = p.Close(ctx)
			return nil, fmt.Errorf("abi: plugin %q: %w", cfg.Name, err)
		}
		if cfg.Service == PerWorkerService {
			if err := g.fill(ctx, cfg.PoolSize); err != nil {
				_ = p.Close(ctx)
				return nil, fmt.Errorf("abi: plugin %q: %w", cfg.Name, err)
			}
		}
		return p, nil
	}
}

// errGroupClosed is what addPlugin answers for a group closed since it was
// looked up; Load then looks again.
var errGroupClosed = errors.New("abi: the plugin's VM group is closed")

// dropIfUnused closes g and removes it from the host if no plugin uses it,
// as after its first plugin failed to load: otherwise it would keep its
// compiled module and host modules as long as the host lives.
func (h *Host) dropIfUnused(ctx context.Context, g *vmGroup) {
	g.mu.Lock()
	var vms []*vm
	ok := false
	if len(g.plugins) == 0 {
		vms, ok = g.shut()
	}
	g.mu.Unlock()
	if ok {
		h.forgetGroup(g)
		_ = g.free(ctx, vms)
	}
}

// MaxPoolSize bounds PluginConfig.PoolSize.
const MaxPoolSize = 1024

// ErrPoolSize is wrapped by Load's error for a PoolSize it refuses.
var ErrPoolSize = errors.New("PoolSize")

// checkPoolMemory refuses a pool of n VMs the machine's memory cannot hold.
func (g *vmGroup) checkPoolMemory(n int) error {
	ram := physicalMemory()
	if ram == 0 {
		return nil
	}
	per, what := uint64(g.host.rt.Config().MemoryLimitPages())*engine.PageSize, "the runtime's memory limit"
	if per == 0 {
		g.mu.Lock()
		if len(g.vms) > 0 {
			per = g.vms[0].mem.Size()
		}
		g.mu.Unlock()
		what = "the memory of a VM after its initializer"
	}
	if need := uint64(n) * per; need > ram {
		return fmt.Errorf("%w %d: %d VMs of %d MiB (%s) need %d MiB, more than this machine's %d MiB",
			ErrPoolSize, n, n, per>>20, what, need>>20, ram>>20)
	}
	return nil
}

// forgetGroup removes g from the host's groups if it is there.
func (h *Host) forgetGroup(g *vmGroup) {
	h.mu.Lock()
	if h.groups[g.key] == g {
		delete(h.groups, g.key)
	}
	h.mu.Unlock()
}

// Upstreams carries HTTP callouts to named clusters.
type Upstreams interface {
	// RoundTrip sends req to cluster. The request's URL has the path,
	// query and authority the plugin asked for; Host is the cluster's to set.
	RoundTrip(ctx context.Context, cluster string, req *http.Request) (*http.Response, error)
}
