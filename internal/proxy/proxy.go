// Package proxy is the reverse proxy of cmd/anywasm-proxy: HTTP and TCP
// listeners whose traffic runs through Proxy-Wasm plugins (abi/nethttp,
// abi/nettcp) on the runtime the configuration or the -runtime flag
// chooses, with an admin endpoint for health and Prometheus metrics, plugin
// files reloaded without dropping requests in flight, and graceful
// shutdown.
package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/abi/celexpr"
	"github.com/anywasm/anywasm/abi/grpcupstream"
	"github.com/anywasm/anywasm/abi/nethttp"
	"github.com/anywasm/anywasm/abi/nettcp"
	"github.com/anywasm/anywasm/engine"
)

// Options are what the command line adds to a configuration.
type Options struct {
	// Runtime, when set, overrides the runtime of every plugin.
	Runtime string
	// Logger receives the proxy's and the plugins' logs. Default
	// slog.Default().
	Logger *slog.Logger

	check bool // load the plugins, bind nothing (Check)
}

// Check does what Start does but bind and serve: it opens the runtimes and
// loads every plugin (reading, compiling and starting it: a plugin that
// refuses its configuration fails here), then closes them all. It is what
// the command's -check runs.
func Check(ctx context.Context, cfg *Config, opts Options) error {
	opts.check = true
	p, err := Start(ctx, cfg, opts)
	if err != nil {
		return err
	}
	return p.Shutdown(ctx)
}

// Proxy is a running proxy.
type Proxy struct {
	cfg       *Config
	log       *slog.Logger
	runtimes  map[string]*engine.Runtime
	hosts     map[string]*abi.Host
	interrupt map[string]bool
	grpc      *grpcupstream.Clusters
	ups       map[string]*upstream // the clusters, by name
	slots     []*slot
	override  string // -runtime
	http      []*httpListener
	tcp       []*tcpListener
	admin     *http.Server
	adminLn   net.Listener
	reg       *prometheus.Registry
	metrics   *proxyMetrics
	// statNames names the plugins' metrics for /stats/prometheus and
	// /stats (cfg.Stats: Envoy's stats_config tag extraction).
	statNames *statNames
	// connLimited counts connections refused at max_connections.
	connLimited *prometheus.CounterVec
	draining    atomic.Bool
	connIDs     atomic.Uint64      // the plugins' connection.id, over every listener
	stop        context.CancelFunc // the reload loop and TCP connections
	ctx         context.Context
	wg          sync.WaitGroup // reload loop, TCP connections, retired plugins
	closed      sync.Once
	// codeCache holds the remote modules by sha256 (remoteCode).
	codeMu    sync.Mutex
	codeCache map[string]*codeEntry
	// warmMu guards the listeners' warming: warming counts the slots
	// that hold them back; lazy are the listeners bound but not
	// listening until it is 0 (Envoy's server init manager, which holds
	// every static listener until every init target is ready).
	warmMu  sync.Mutex
	warming int
	lazy    []*lazyListener
	hold    bool // some filter warms: every listener is bound lazily
}

type httpListener struct {
	name string
	ln   net.Listener
	srv  *http.Server
}

type tcpListener struct {
	name  string
	ln    net.Listener
	proxy nettcp.Proxy
	chain *chain
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// Start opens the runtimes, loads every plugin (a plugin that fails to load
// fails Start, naming it), binds the listeners and serves.
func Start(ctx context.Context, cfg *Config, opts Options) (_ *Proxy, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Runtime != "" {
		if err := checkRuntimeName(opts.Runtime); err != nil {
			return nil, fmt.Errorf("-runtime %s: %w", opts.Runtime, err)
		}
	}
	p := &Proxy{cfg: cfg, log: opts.Logger, runtimes: map[string]*engine.Runtime{}, hosts: map[string]*abi.Host{}, override: opts.Runtime}
	p.ctx, p.stop = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			_ = p.Shutdown(context.Background())
		}
	}()
	tp, err := newTagProducer(cfg.Stats, "stats")
	if err != nil {
		return nil, err
	}
	p.statNames = &statNames{tp: tp}
	p.reg = prometheus.NewRegistry()
	p.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	p.metrics = newProxyMetrics(p.reg)
	p.connLimited = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "anywasm_proxy_connections_refused_total",
		Help: "Connections closed at accept because the listener had max_connections and none idle, by listener."}, []string{"listener"})
	p.reg.MustRegister(p.connLimited)

	p.clusters(ctx, !opts.check)
	upstreams, err := p.upstreams()
	if err != nil {
		return nil, err
	}
	// A runtime is opened able to interrupt guests when one of its plugins
	// has a call timeout.
	p.interrupt = map[string]bool{}
	for i := range cfg.Listeners {
		for _, f := range cfg.Listeners[i].filters() {
			if f.CallTimeout.Get() > 0 {
				p.interrupt[p.runtimeOf(&f, opts.Runtime)] = true
			}
		}
	}
	for _, sv := range cfg.WasmServices {
		if sv.CallTimeout.Get() > 0 {
			p.interrupt[p.runtimeOf(&sv.Plugin, opts.Runtime)] = true
		}
	}
	// A discovered filter that warms holds every listener back, as
	// Envoy's server init manager holds its static listeners.
	for i := range cfg.Listeners {
		for _, f := range cfg.Listeners[i].filters() {
			if f.Discovery != nil && f.Discovery.Warm {
				p.hold = true
			}
		}
	}
	// Services first, so that the filters' roots find the services' queues
	// when they start (Envoy starts its WasmService extensions once the
	// server is initialized; nothing of the ABI says which comes first).
	for i := range cfg.WasmServices {
		if _, err := p.loadSlot(ctx, fmt.Sprintf("wasm_services[%d]", i), nil, &cfg.WasmServices[i], opts.Runtime, upstreams); err != nil {
			return nil, err
		}
	}
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		kind := "http"
		if l.TCP != nil {
			kind = "tcp"
		}
		c := &chain{}
		for j := range l.filters() {
			field := fmt.Sprintf("listeners[%d].%s.filters[%d]", i, kind, j)
			s, err := p.loadSlot(ctx, field, l, &WasmService{Plugin: l.filters()[j]}, opts.Runtime, upstreams)
			if err != nil {
				return nil, err
			}
			c.slots = append(c.slots, s)
		}
		if opts.check {
			continue
		}
		if err := p.listen(l, c); err != nil {
			return nil, fmt.Errorf("listeners[%d] (%s): %w", i, l.Name, err)
		}
	}
	// Every host is open now (reloads reuse them): one collector for all,
	// so that its rules for colliding names hold across runtimes.
	p.reg.MustRegister(p.pluginCollector())
	if opts.check {
		return p, nil
	}
	if a := cfg.Admin.Address; a != "" && !loopback(a) {
		what := "/healthz, /metrics, /stats, /stats/prometheus and /plugins"
		if cfg.Admin.Pprof {
			what += " and Go's profiles (/debug/pprof/: heap contents, CPU profiles, command line)"
		}
		p.log.Warn("the admin endpoint is not on a loopback address: anyone who can reach it reads "+what, "address", a)
	}
	if cfg.Admin.Address != "" {
		ln, err := net.Listen("tcp", cfg.Admin.Address)
		if err != nil {
			return nil, fmt.Errorf("admin.address: %w", err)
		}
		p.adminLn = ln
		p.admin = &http.Server{Handler: p.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = p.admin.Serve(ln) }()
	}
	for _, h := range p.http {
		go func() {
			if err := h.srv.Serve(h.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				p.log.Error("listener stopped", "listener", h.name, "err", err)
			}
		}()
	}
	for _, t := range p.tcp {
		p.wg.Go(func() { p.serveTCP(t) })
	}
	interval := time.Second
	if cfg.ReloadInterval != nil {
		interval = cfg.ReloadInterval.Get()
	}
	if interval > 0 && len(p.slots) > 0 {
		p.wg.Go(func() { p.watch(interval) })
	}
	if p.Warming() {
		var names []string
		for _, s := range p.slots {
			if s.warming {
				names = append(names, s.discovery.Name)
			}
		}
		p.log.Info("listeners bound, warming: not listening until the discovered filters have their first configuration (or initial_fetch_timeout)", "filters", strings.Join(names, ","))
	}
	p.log.Info("proxy started", "listeners", len(p.http)+len(p.tcp), "plugins", len(p.slots), "services", len(cfg.WasmServices),
		"runtimes", strings.Join(p.runtimeNames(), ","))
	return p, nil
}

func (p *Proxy) runtimeNames() []string {
	var s []string
	for n := range p.runtimes {
		s = append(s, n)
	}
	slices.Sort(s)
	return s
}

// ForeignFunctions are the foreign functions the proxy gives plugins:
// Envoy's (abi.EnvoyForeignFunctions and abi/celexpr's CEL functions).
func ForeignFunctions() map[string]abi.ForeignFunc {
	fs := abi.EnvoyForeignFunctions()
	maps.Copy(fs, celexpr.Functions())
	return fs
}

func sortedNames[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// upstreams builds the host options: the callout upstreams of the
// clusters, the node, the foreign functions.
func (p *Proxy) upstreams() (abi.Options, error) {
	o := abi.Options{ForeignFunctions: ForeignFunctions()}
	if n := p.cfg.Node; n != nil {
		o.Node = &abi.Node{ID: n.ID, Cluster: n.Cluster, Metadata: n.Metadata}
	}
	httpc := &calloutUpstreams{client: &http.Client{Timeout: 60 * time.Second}, ups: map[string]*upstream{}}
	var grpcc []*upstream
	for _, c := range p.cfg.Clusters {
		switch c.Type {
		case "http":
			httpc.ups[c.Name] = p.ups[c.Name]
		case "grpc":
			grpcc = append(grpcc, p.ups[c.Name])
		}
	}
	if len(httpc.ups) > 0 {
		o.Upstreams = httpc
	}
	if len(grpcc) > 0 {
		g, err := grpcClusters(grpcc)
		if err != nil {
			return o, fmt.Errorf("clusters: %w", err)
		}
		p.grpc = g
		o.GRPCUpstreams = g
	}
	return o, nil
}

// clusters sets up the clusters' endpoints: a strict_dns or logical_dns
// cluster is resolved once now (a failure is logged: the cluster has no
// endpoint until a resolution succeeds, as an Envoy cluster whose
// resolution failed), then again every dns_refresh_rate when refresh.
func (p *Proxy) clusters(ctx context.Context, refresh bool) {
	p.ups = map[string]*upstream{}
	for i := range p.cfg.Clusters {
		cl := &p.cfg.Clusters[i]
		var build func(addr, scheme string) *endpoint
		if cl.Type == "http" {
			build = p.httpEndpoints(cl)
		}
		u := newUpstream(cl, build)
		p.ups[cl.Name] = u
		if !u.dns() {
			continue
		}
		logErr := func(err error) { p.log.Warn("DNS resolution failed", "cluster", cl.Name, "err", err) }
		if err := u.resolve(ctx); err != nil {
			logErr(err)
		}
		if refresh {
			p.wg.Go(func() { u.refresh(p.ctx, logErr) })
		}
	}
}

// loopback reports whether a host:port listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func clusterURL(addr string) string {
	if strings.Contains(addr, "://") {
		return addr
	}
	return "http://" + addr
}

// host returns the host of a runtime, opening the runtime the first time.
// name is RuntimeName's: each tier of a runtime has a host of its own.
func (p *Proxy) host(name string, o abi.Options) (*abi.Host, error) {
	if h := p.hosts[name]; h != nil {
		return h, nil
	}
	c := engine.NewConfig().WithInterruptOnContextDone(p.interrupt[name])
	if b := p.cfg.GCBallast; b != nil {
		c = c.WithGCBallast(*b)
	}
	if mb := p.cfg.MemoryLimitMB; mb > 0 {
		c = c.WithMemoryLimitPages(uint32(mb) * (1 << 20 / engine.PageSize))
	}
	if p.cfg.CacheDir != "" {
		// A tier without native code (wazero's interpreter) has nothing to
		// keep there: its runtime is opened without it, and that is said.
		if p.runtimeCan(name, engine.CapCompilationCache) {
			c = c.WithCompilationCache(p.cfg.CacheDir)
		} else {
			p.log.Info("cache_dir is not used by this runtime: it has no compilation cache", "runtime", name)
		}
	}
	rt, err := engine.Open(name, c)
	if err != nil {
		return nil, err
	}
	p.runtimes[name] = rt
	o.Logger = p.log
	h := abi.NewHost(rt, o)
	p.hosts[name] = h
	return h, nil
}

// pluginConfig converts a filter's configuration.
func pluginConfig(f *Plugin) (abi.PluginConfig, error) {
	policy, err := f.Policy()
	if err != nil {
		return abi.PluginConfig{}, fmt.Errorf("failure_policy: %w", err)
	}
	conf, err := f.Configuration.Bytes()
	if err != nil {
		return abi.PluginConfig{}, fmt.Errorf("configuration: %w", err)
	}
	vmConf, err := f.VMConfig.Configuration.Bytes()
	if err != nil {
		return abi.PluginConfig{}, fmt.Errorf("vm_config.configuration: %w", err)
	}
	env := map[string]string{}
	if e := f.VMConfig.EnvironmentVariables; e != nil {
		for _, k := range e.HostEnvKeys {
			if v, ok := os.LookupEnv(k); ok {
				env[k] = v
			}
		}
		for k, v := range e.KeyValues {
			env[k] = v
		}
	}
	name := f.Name
	if f.PluginName != nil {
		name = *f.PluginName
	}
	c := abi.PluginConfig{Name: name, RootID: f.RootID, VMID: f.VMConfig.VMID, Configuration: conf,
		VMConfiguration: vmConf, Environment: env, FailurePolicy: policy, PoolSize: f.PoolSize,
		ReloadBackoff: f.ReloadConfig.base(), AllowPrecompiled: f.VMConfig.AllowPrecompiled, Snapshot: f.Snapshot}
	c.CallTimeout = f.CallTimeout.Get()
	if f.ForeignFunctions != nil {
		c.ForeignFunctions = append([]string{}, *f.ForeignFunctions...)
	}
	if cr := f.CapabilityRestrictionConfig; cr != nil {
		c.AllowedCapabilities = slices.Sorted(maps.Keys(cr.AllowedCapabilities))
	}
	if f.LogLevel != "" {
		l, err := abi.ParseLogLevel(f.LogLevel)
		if err != nil {
			return abi.PluginConfig{}, fmt.Errorf("log_level: %w", err)
		}
		c.LogLevel = &l
	}
	return c, nil
}

func (p *Proxy) runtimeCan(rt string, c engine.Capabilities) bool {
	info, err := engine.Lookup(rt)
	return err == nil && info.Capabilities.Has(c)
}

func (p *Proxy) runtimeOf(f *Plugin, override string) string {
	for _, r := range []string{override, f.VMConfig.Runtime, p.cfg.Runtime} {
		if r != "" {
			return RuntimeName(r)
		}
	}
	if rs := engine.Runtimes(); !slices.Contains(rs, "wazero") && len(rs) > 0 {
		return rs[0]
	}
	return "wazero"
}

// loadSlot loads a filter's plugin (l its listener; svc.Plugin the filter)
// or, with l nil, a Wasm service into a reloadable slot. A filter
// configured exactly as an earlier one (the same plugin on two listeners)
// shares its slot: one root context, as Envoy shares one for one plugin
// configuration.
func (p *Proxy) loadSlot(ctx context.Context, field string, l *Listener, svc *WasmService, override string, o abi.Options) (*slot, error) {
	f := &svc.Plugin
	pc, err := pluginConfig(f)
	if err != nil {
		return nil, fmt.Errorf("%s.%w", field, err)
	}
	var md *Metadata
	if l != nil {
		// The listener's attributes (listener_metadata,
		// listener_direction) are the plugin's: a plugin on two listeners
		// that differ in them is two plugins.
		md = l.Metadata
		pc.ListenerMetadata = md.abi()
		pc.ListenerDirection, _ = l.direction() // Validate checked it
	} else {
		// A service has no listener: Envoy's WasmServiceExtension gives
		// its plugin TrafficDirection UNSPECIFIED and no metadata.
		pc.Service = abi.PerWorkerService
		if svc.Singleton {
			pc.Service = abi.SingletonService
		}
	}
	rt := p.runtimeOf(f, override)
	key, _ := json.Marshal(struct {
		Runtime   string
		Plugin    *Plugin
		Discovery *Discovery
		Metadata  *Metadata
		Direction abi.TrafficDirection
		Service   abi.ServiceMode
	}{rt, f, f.Discovery, md, pc.ListenerDirection, pc.Service})
	for _, s := range p.slots {
		if s.key == string(key) {
			return s, nil
		}
	}
	h, err := p.host(rt, o)
	if err != nil {
		if pc.CallTimeout > 0 && errors.Is(err, engine.ErrNotSupported) && !p.runtimeCan(rt, engine.CapInterrupt) {
			return nil, fmt.Errorf("%s.call_timeout: runtime %s cannot interrupt a running guest: %w", field, rt, err)
		}
		if p.cfg.MemoryLimitMB > 0 && errors.Is(err, engine.ErrNotSupported) && !p.runtimeCan(rt, engine.CapMemoryLimit) {
			return nil, fmt.Errorf("memory_limit_mb: runtime %s (for %s) cannot cap guest memory: %w", rt, field, err)
		}
		if errors.Is(err, engine.ErrCompilationCache) {
			return nil, fmt.Errorf("cache_dir: %w", err)
		}
		return nil, fmt.Errorf("%s.vm_config.runtime: %w", field, err)
	}
	s := &slot{proxy: p, name: f.Name, field: field, key: string(key), host: h, runtime: rt, cfg: pc, path: f.VMConfig.Code.Local.Filename,
		inline: f.VMConfig.Code.inline(), remote: f.VMConfig.Code.Remote, nack: f.VMConfig.NackOnCodeCacheMiss,
		discovery: f.Discovery, lmd: pc.ListenerMetadata, ldir: pc.ListenerDirection}
	if f.Discovery != nil {
		s.knobs = ownKnobsOf(f)
	}
	if f.Discovery != nil && f.Discovery.Warm {
		s.warming = true
		p.warming++
	}
	if f.Discovery != nil && f.Discovery.Default {
		s.def = &defaultPlugin{host: h, rt: rt, cfg: pc, m: module{s.path, s.inline, s.remote, s.nack}}
	}
	if f.Discovery != nil && !f.Discovery.Default {
		// No plugin until the control plane sends one.
		p.slots = append(p.slots, s)
		return s, nil
	}
	if err := s.load(ctx); err != nil {
		if errors.Is(err, abi.ErrPoolSize) {
			return nil, fmt.Errorf("%s.pool_size: %w", field, err)
		}
		return nil, err
	}
	p.slots = append(p.slots, s)
	return s, nil
}

// UpdateFilter loads plugin f for the filters discovered as name (Envoy's
// config_discovery) beside their running plugin and swaps it in, as a
// file reload does: the exchanges in flight finish on the old plugin. A
// plugin that is invalid or fails to load (read or fetch, compile,
// start, configure) leaves the running plugin in place and is the error.
// Remote code is fetched through its cluster (retry_policy, the code
// cache; nack_on_code_cache_miss fails at once on a cache miss while the
// fetch goes on: remoteCode). A loaded plugin ends its filters' warming.
// It runs on the runtimes opened at Start only: those of the configured
// plugins, and the default runtime of the discovered filters (a runtime
// opened later would have no share in the settings Start derived from
// every plugin, such as interruption for call timeouts, nor in the
// plugins' metrics collector); a plugin on another is refused, naming
// the runtimes open.
func (p *Proxy) UpdateFilter(ctx context.Context, name string, f *Plugin) error {
	if p.ctx.Err() != nil {
		return errors.New("proxy: shutting down")
	}
	var slots []*slot
	for _, s := range p.slots {
		if s.discovery != nil && s.discovery.Name == name {
			slots = append(slots, s)
		}
	}
	if len(slots) == 0 {
		return fmt.Errorf("proxy: no filter is discovered as %q", name)
	}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	// The proxy's own knobs (pool_size, call_timeout, log_level,
	// foreign_functions: Envoy has no names for them, so a control plane
	// sends none) are the configured filter's, unless the update sets them.
	f = slots[0].knobs.onto(f)
	rt := p.runtimeOf(f, p.override)
	h := p.hosts[rt]
	checkRuntime := func(field, _ string) {
		if h == nil {
			bad(field, "runtime %s is not open: the proxy opens its runtimes at start (it has %s open)", rt, strings.Join(p.runtimeNames(), ", "))
		}
	}
	clusters := map[string]*Cluster{}
	for i := range p.cfg.Clusters {
		clusters[p.cfg.Clusters[i].Name] = &p.cfg.Clusters[i]
	}
	checkPlugin(bad, checkRuntime, slots[0].field, f, clusters)
	if f.CallTimeout.Get() > 0 && !p.interrupt[rt] {
		bad(slots[0].field+".call_timeout", "runtime %s was opened unable to interrupt a guest", rt)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, s := range slots {
		pc, err := pluginConfig(f)
		if err != nil {
			return fmt.Errorf("%s.%w", s.field, err)
		}
		pc.ListenerMetadata, pc.ListenerDirection = s.lmd, s.ldir
		m := module{path: f.VMConfig.Code.Local.Filename, inline: f.VMConfig.Code.inline(), remote: f.VMConfig.Code.Remote, nack: f.VMConfig.NackOnCodeCacheMiss}
		if err := s.update(ctx, h, rt, pc, m); err != nil {
			p.metrics.reloads.WithLabelValues(s.name, "failed").Inc()
			return err
		}
		p.metrics.reloads.WithLabelValues(s.name, "ok").Inc()
		p.markWarm(s)
	}
	return nil
}

// RemoveFilter is the control plane's removal of the configuration of
// the filters discovered as name (delta xDS's removed_resources): each
// goes back to its default_config's plugin, loaded again, or to none
// (an HTTP filter answers 500, a network filter closes connections), as
// Envoy's DynamicFilterConfigProviderImpl::onConfigRemoved. Exchanges in
// flight finish on the plugin they have.
func (p *Proxy) RemoveFilter(ctx context.Context, name string) error {
	if p.ctx.Err() != nil {
		return errors.New("proxy: shutting down")
	}
	var errs []error
	found := false
	for _, s := range p.slots {
		if s.discovery == nil || s.discovery.Name != name {
			continue
		}
		found = true
		if err := s.remove(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if !found {
		return fmt.Errorf("proxy: no filter is discovered as %q", name)
	}
	return errors.Join(errs...)
}

// listen binds a listener.
// While discovered filters warm, it binds the socket without listening
// (lazyListener).
func (p *Proxy) listen(l *Listener, c *chain) error {
	var ln net.Listener
	var err error
	if p.hold {
		var lz *lazyListener
		if lz, err = newLazyListener(l.Address); err == nil {
			p.warmMu.Lock()
			p.lazy = append(p.lazy, lz)
			p.warmMu.Unlock()
			ln = lz
		}
	} else {
		ln, err = net.Listen("tcp", l.Address)
	}
	if err != nil {
		return fmt.Errorf("address: %w", err)
	}
	lim := limitsOf(l, len(p.cfg.Listeners))
	refused := p.connLimited.WithLabelValues(l.Name)
	ll := newLimitListener(ln, lim.maxConnections, refused.Inc)
	if l.TCP != nil {
		cl := p.cluster(l.TCP.Cluster)
		t := &tcpListener{name: l.Name, ln: ll, chain: c, conns: map[net.Conn]struct{}{}}
		info := &abi.ClusterInfo{Name: cl.Name, Metadata: cl.Metadata.abi()}
		t.proxy = nettcp.Proxy{Logger: p.log, MaxBufferBytes: l.TCP.MaxBufferBytes, IdleTimeout: lim.idleTimeout,
			Dial: p.ups[cl.Name].dial,
			Info: func(_ net.Conn, si *abi.StreamInfo) {
				si.ConnectionID = p.connIDs.Add(1)
				si.Cluster = info
			}}
		p.tcp = append(p.tcp, t)
		return nil
	}
	rt := p.router(l)
	h := nethttp.New(rt, c, nethttp.Options{MaxBufferBytes: l.HTTP.MaxBufferBytes, Logger: p.log, Info: rt.info})
	h = &limitHandler{lim: lim, next: h}
	if name, t := l.HTTP.serverHeader(); t != "PASS_THROUGH" {
		h = &serverHeader{name: name, transformation: t, next: h}
	}
	h = p.metrics.instrument(l.Name, h)
	srv := lim.server(h)
	srv.ErrorLog = slog.NewLogLogger(p.log.Handler(), slog.LevelWarn)
	srv.ConnState = ll.connState
	srv.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return nethttp.WithConnectionID(ctx, p.connIDs.Add(1))
	}
	p.http = append(p.http, &httpListener{name: l.Name, ln: ll, srv: srv})
	return nil
}

func (p *Proxy) cluster(name string) *Cluster {
	for i := range p.cfg.Clusters {
		if p.cfg.Clusters[i].Name == name {
			return &p.cfg.Clusters[i]
		}
	}
	return nil
}

// clusterHandler sends a request to the endpoint its cluster picks; 503
// with Envoy's "no healthy upstream" when the cluster has none.
type clusterHandler struct {
	u *upstream
}

func (h clusterHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e := h.u.pick()
	if e == nil {
		if info := nethttp.StreamInfoFrom(r); info != nil {
			info.SetResponseCodeDetails("no_healthy_upstream")
		}
		localReply(w, http.StatusServiceUnavailable, "no healthy upstream")
		return
	}
	e.active.Add(1)
	defer e.active.Add(-1)
	e.handler.ServeHTTP(w, r)
}

// localReply answers as Envoy's sendLocalReply: a text/plain body.
func localReply(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

// httpEndpoints returns what builds the endpoints of an HTTP cluster: a
// reverse proxy to each (one transport for the cluster), keeping the
// request's authority (as Envoy does without host_rewrite) and its
// trailers.
func (p *Proxy) httpEndpoints(cl *Cluster) func(addr, scheme string) *endpoint {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 1024, 1024
	return func(addr, scheme string) *endpoint {
		e := &endpoint{addr: addr, scheme: scheme}
		u := &url.URL{Scheme: scheme, Host: addr}
		e.handler = &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(u)
				pr.Out.Host = pr.In.Host
				pr.Out.Trailer = pr.In.Trailer
				pr.SetXForwarded()
				if info := nethttp.StreamInfoFrom(pr.In); info != nil { // upstream.address for the plugins
					pr.Out = pr.Out.WithContext(httptrace.WithClientTrace(pr.Out.Context(), &httptrace.ClientTrace{
						GotConn: func(c httptrace.GotConnInfo) {
							info.SetUpstream(c.Conn.RemoteAddr().String(), c.Conn.LocalAddr().String(), nil)
						},
					}))
				}
			},
			Transport: tr,
			ErrorLog:  log.New(io.Discard, "", 0),
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				if errors.Is(err, context.Canceled) || errors.Is(err, nethttp.ErrAnswered) {
					return
				}
				if errors.Is(err, nethttp.ErrClientAborted) { // the middleware answers (408, 413) or resets
					p.log.Debug("client request body failed", "cluster", cl.Name, "err", err)
					return
				}
				p.log.Warn("upstream error", "cluster", cl.Name, "endpoint", addr, "err", err)
				// Envoy's Router::Filter::onUpstreamReset: 503, whatever the
				// reset reason, for this attempt (no retry without a
				// retry_policy), with the reason in the details and body.
				reason := "connection termination"
				if op := (*net.OpError)(nil); errors.As(err, &op) && op.Op == "dial" {
					reason = "remote connection failure"
				}
				if info := nethttp.StreamInfoFrom(r); info != nil {
					info.SetResponseCodeDetails("upstream_reset_before_response_started{" + strings.ReplaceAll(reason, " ", "_") + "}")
				}
				localReply(w, http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers. reset reason: "+reason)
			},
		}
		return e
	}
}

// echoHandler is the built-in "echo" cluster: it answers with the request
// line, the headers it received and the body, which it streams back as it
// reads it (it holds no more than one buffer of it).
type echoHandler struct{}

func (echoHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s\nhost: %s\n", r.Method, r.URL.RequestURI(), r.Proto, r.Host)
	keys := make([]string, 0, len(r.Header))
	for k := range r.Header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range r.Header[k] {
			fmt.Fprintf(&b, "%s: %s\n", strings.ToLower(k), v)
		}
	}
	b.WriteString("\n")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if r.ContentLength >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(int64(b.Len())+r.ContentLength, 10))
	}
	// Full duplex: the body is echoed while it is read (HTTP/1 would
	// otherwise stop reading it once the response starts).
	_ = http.NewResponseController(w).EnableFullDuplex()
	_, _ = io.WriteString(w, b.String())
	if r.ContentLength != 0 {
		_, _ = io.Copy(w, r.Body)
	}
}

func (p *Proxy) serveTCP(t *tcpListener) {
	for {
		c, err := t.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.log.Error("tcp listener stopped", "listener", t.name, "err", err)
			}
			return
		}
		t.mu.Lock()
		t.conns[c] = struct{}{}
		t.mu.Unlock()
		p.metrics.tcpConns.WithLabelValues(t.name).Inc()
		p.wg.Go(func() {
			defer func() {
				t.mu.Lock()
				delete(t.conns, c)
				t.mu.Unlock()
			}()
			plugins := t.chain.Acquire()
			defer t.chain.Release(plugins)
			if slices.Contains(plugins, nil) {
				// A discovered network filter without configuration:
				// Envoy's FilterChainUtility::buildFilterChain fails
				// and the connection is closed ("no filters").
				p.log.Debug("tcp connection closed: a discovered filter has no configuration", "listener", t.name)
				_ = c.Close()
				return
			}
			px := t.proxy
			px.Plugins = plugins
			if err := px.Serve(p.ctx, c); err != nil && !errors.Is(err, context.Canceled) {
				p.log.Debug("tcp connection ended", "listener", t.name, "err", err)
			}
		})
	}
}

// Addr returns the address a listener is bound to (the configuration may
// say port 0).
func (p *Proxy) Addr(listener string) net.Addr {
	for _, h := range p.http {
		if h.name == listener {
			return h.ln.Addr()
		}
	}
	for _, t := range p.tcp {
		if t.name == listener {
			return t.ln.Addr()
		}
	}
	return nil
}

// AdminAddr returns the admin endpoint's address, nil without one.
func (p *Proxy) AdminAddr() net.Addr {
	if p.adminLn == nil {
		return nil
	}
	return p.adminLn.Addr()
}

// Shutdown stops accepting, reports unhealthy, waits for exchanges in
// flight until ctx is done (then closes what is left), and closes plugins,
// hosts and runtimes.
func (p *Proxy) Shutdown(ctx context.Context) error {
	var err error
	p.closed.Do(func() {
		p.draining.Store(true)
		var wg sync.WaitGroup
		for _, h := range p.http {
			wg.Go(func() {
				if e := h.srv.Shutdown(ctx); e != nil {
					_ = h.srv.Close()
				}
				_ = h.ln.Close() // when Start failed before serving it
			})
		}
		for _, t := range p.tcp {
			_ = t.ln.Close()
		}
		wg.Wait()
		// TCP connections get what is left of ctx to end by themselves.
		for _, t := range p.tcp {
			for !t.idle() && ctx.Err() == nil {
				select {
				case <-ctx.Done():
				case <-time.After(10 * time.Millisecond):
				}
			}
		}
		p.stop()
		p.wg.Wait()
		cctx := context.WithoutCancel(ctx)
		for _, s := range p.slots {
			s.close(cctx)
		}
		for _, h := range p.hosts {
			err = errors.Join(err, h.Close(cctx))
		}
		for _, rt := range p.runtimes {
			err = errors.Join(err, rt.Close(cctx))
		}
		if p.grpc != nil {
			err = errors.Join(err, p.grpc.Close())
		}
		if p.admin != nil {
			_ = p.admin.Close()
		}
		if p.adminLn != nil {
			_ = p.adminLn.Close()
		}
		p.log.Info("proxy stopped")
	})
	return err
}

func (t *tcpListener) idle() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns) == 0
}

// ownKnobs are the fields of a Plugin that are the proxy's own, not
// Envoy's: a discovered filter keeps those its configuration gave it (the
// proxy's format, or an Envoy file's anywasm block) for every plugin the
// control plane sends.
type ownKnobs struct {
	poolSize         int
	callTimeout      *Duration
	logLevel         string
	foreignFunctions *[]string
}

func ownKnobsOf(f *Plugin) ownKnobs {
	return ownKnobs{poolSize: f.PoolSize, callTimeout: f.CallTimeout, logLevel: f.LogLevel, foreignFunctions: f.ForeignFunctions}
}

// onto returns f with the knobs it leaves unset taken from k.
func (k ownKnobs) onto(f *Plugin) *Plugin {
	g := *f
	if g.PoolSize == 0 {
		g.PoolSize = k.poolSize
	}
	if g.CallTimeout == nil {
		g.CallTimeout = k.callTimeout
	}
	if g.LogLevel == "" {
		g.LogLevel = k.logLevel
	}
	if g.ForeignFunctions == nil {
		g.ForeignFunctions = k.foreignFunctions
	}
	return &g
}
