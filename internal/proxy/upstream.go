package proxy

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// lbPolicy is a cluster's load balancing policy.
type lbPolicy uint8

const (
	roundRobin lbPolicy = iota
	randomLB
	leastRequest
)

// leastRequestChoices is Envoy's LeastRequest choice_count default.
const leastRequestChoices = 2

// defaultDNSRefreshRate is Envoy's dns_refresh_rate default (5000 ms).
const defaultDNSRefreshRate = 5 * time.Second

// lookupFamilies are Envoy's Cluster.DnsLookupFamily values ("" is AUTO).
var lookupFamilies = map[string]struct{}{"": {}, "AUTO": {}, "V4_ONLY": {}, "V6_ONLY": {}, "V4_PREFERRED": {}, "ALL": {}}

// endpoint is one address of a cluster: a host of Envoy's host set.
type endpoint struct {
	addr   string       // host:port, as dialed
	scheme string       // an http cluster's: http or https
	active atomic.Int64 // requests (connections, for tcp) in flight
	// handler is an http cluster's reverse proxy to this endpoint.
	handler http.Handler
}

// upstream is a cluster at run time: its endpoints (resolved again in the
// background for strict_dns and logical_dns) and the policy that picks one
// per request. Picking takes no lock and allocates nothing.
type upstream struct {
	cl     *Cluster
	policy lbPolicy
	hosts  atomic.Pointer[[]*endpoint]
	rr     atomic.Uint64
	// build makes an endpoint for an address (its reverse proxy, for an
	// http cluster).
	build func(addr, scheme string) *endpoint
	// onUpdate, when set, hears every new host set (the gRPC resolver).
	onUpdate func([]*endpoint)

	mu       sync.Mutex           // resolutions
	resolved map[int][]*endpoint  // strict_dns: the last addresses of each endpoint
	known    map[string]*endpoint // every endpoint built, by scheme://addr
	targets  []cfgEndpoint        // the endpoints as configured
	lookup   func(ctx context.Context, host string) ([]netip.Addr, error)
}

// cfgEndpoint is a configured endpoint: a host name (or IP) and port.
type cfgEndpoint struct {
	scheme, host, port string
}

func newUpstream(cl *Cluster, build func(addr, scheme string) *endpoint) *upstream {
	u := &upstream{cl: cl, build: build, known: map[string]*endpoint{}, resolved: map[int][]*endpoint{},
		lookup: func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}}
	switch cl.LbPolicy {
	case "RANDOM":
		u.policy = randomLB
	case "LEAST_REQUEST":
		u.policy = leastRequest
	}
	// Envoy's round robin starts at a random index (each worker's balancer
	// is seeded), so that restarts do not all begin with the first host.
	u.rr.Store(rand.Uint64())
	for _, e := range cl.endpoints() {
		host, port, _ := splitEndpoint(cl.Type, e) // Validate checked it
		scheme := "http"
		if pu, err := url.Parse(e); err == nil && pu.Scheme == "https" {
			scheme = "https"
		}
		u.targets = append(u.targets, cfgEndpoint{scheme: scheme, host: host, port: port})
	}
	if !u.dns() {
		var hs []*endpoint
		for _, t := range u.targets {
			hs = append(hs, u.endpoint(t.scheme, net.JoinHostPort(t.host, t.port)))
		}
		u.hosts.Store(&hs)
	}
	return u
}

// dns reports whether the cluster resolves its endpoints itself.
func (u *upstream) dns() bool {
	return u.cl.Discovery == "strict_dns" || u.cl.Discovery == "logical_dns"
}

// endpoint returns the endpoint of an address, the one built before when
// there is one (its requests in flight count on).
func (u *upstream) endpoint(scheme, addr string) *endpoint {
	k := scheme + "://" + addr
	if e := u.known[k]; e != nil {
		return e
	}
	var e *endpoint
	if u.build != nil {
		e = u.build(addr, scheme)
	} else {
		e = &endpoint{addr: addr, scheme: scheme}
	}
	u.known[k] = e
	return e
}

// pick chooses the endpoint of one request; nil when the cluster has none
// (Envoy's "no healthy upstream").
func (u *upstream) pick() *endpoint {
	hp := u.hosts.Load()
	if hp == nil || len(*hp) == 0 {
		return nil
	}
	hs := *hp
	if len(hs) == 1 {
		return hs[0]
	}
	switch u.policy {
	case randomLB:
		// Envoy's RandomLoadBalancer: hosts[random % size].
		return hs[rand.Uint64()%uint64(len(hs))]
	case leastRequest:
		// Envoy's LeastRequestLoadBalancer::unweightedHostPick (N_CHOICES):
		// choice_count hosts drawn at random, the first with the fewest
		// active requests kept.
		var c *endpoint
		for range leastRequestChoices {
			h := hs[rand.IntN(len(hs))]
			if c == nil || h.active.Load() < c.active.Load() {
				c = h
			}
		}
		return c
	}
	// Envoy's RoundRobinLoadBalancer::unweightedHostPick: hosts[rr++ % size].
	return hs[(u.rr.Add(1)-1)%uint64(len(hs))]
}

// byFamily filters resolved addresses by Envoy's dns_lookup_family.
func byFamily(f string, addrs []netip.Addr) []netip.Addr {
	var v4, v6 []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	switch f {
	case "V4_ONLY":
		return v4
	case "V6_ONLY":
		return v6
	case "V4_PREFERRED":
		if len(v4) > 0 {
			return v4
		}
		return v6
	case "ALL":
		return append(v4, v6...)
	}
	// AUTO: IPv6 first, IPv4 when there is none.
	if len(v6) > 0 {
		return v6
	}
	return v4
}

// resolve resolves every endpoint once, as Envoy's StrictDnsClusterImpl's
// ResolveTarget does for each of its targets (every address is a host; a
// target whose resolution fails keeps its hosts), or LogicalDnsCluster
// (the first address of the one endpoint is the host). It reports the
// errors.
func (u *upstream) resolve(ctx context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	var errs []error
	for i, t := range u.targets {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		addrs, err := u.lookup(lctx, t.host)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster %s: resolving %s: %w", u.cl.Name, t.host, err))
			continue
		}
		addrs = byFamily(u.cl.DNSLookupFamily, addrs)
		if u.cl.Discovery == "logical_dns" && len(addrs) > 1 {
			addrs = addrs[:1]
		}
		var hs []*endpoint
		for _, a := range addrs {
			hs = append(hs, u.endpoint(t.scheme, net.JoinHostPort(a.String(), t.port)))
		}
		if len(hs) == 0 {
			errs = append(errs, fmt.Errorf("cluster %s: %s has no address of family %s", u.cl.Name, t.host, u.familyName()))
		}
		u.resolved[i] = hs
	}
	var all []*endpoint
	for i := range u.targets {
		all = append(all, u.resolved[i]...)
	}
	if old := u.hosts.Load(); old == nil || !slices.Equal(*old, all) {
		u.hosts.Store(&all)
		if u.onUpdate != nil {
			u.onUpdate(all)
		}
	}
	return errors.Join(errs...)
}

func (u *upstream) familyName() string {
	if u.cl.DNSLookupFamily == "" {
		return "AUTO"
	}
	return u.cl.DNSLookupFamily
}

// refresh resolves the endpoints every dns_refresh_rate until ctx is done.
func (u *upstream) refresh(ctx context.Context, log func(error)) {
	rate := defaultDNSRefreshRate
	if u.cl.DNSRefreshRate != nil {
		rate = u.cl.DNSRefreshRate.Get()
	}
	t := time.NewTicker(rate)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := u.resolve(ctx); err != nil && ctx.Err() == nil {
			log(err)
		}
	}
}

// errNoHealthyUpstream is a cluster without an endpoint (all its host
// names failed to resolve).
var errNoHealthyUpstream = errors.New("no healthy upstream")

// countedConn is a TCP upstream connection, counted in flight until closed.
type countedConn struct {
	net.Conn
	e    *endpoint
	once sync.Once
}

// CloseWrite half-closes, as the connection's own (nettcp relays a
// downstream half-close).
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.e.active.Add(-1) })
	return c.Conn.Close()
}

// dial connects to the endpoint the cluster picks.
func (u *upstream) dial(ctx context.Context) (net.Conn, error) {
	e := u.pick()
	if e == nil {
		return nil, fmt.Errorf("cluster %s: %w", u.cl.Name, errNoHealthyUpstream)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", e.addr)
	if err != nil {
		return nil, err
	}
	e.active.Add(1)
	return &countedConn{Conn: c, e: e}, nil
}

// calloutUpstreams carries the plugins' HTTP callouts (abi.Upstreams) to
// an endpoint of the named cluster, picked per callout.
type calloutUpstreams struct {
	client *http.Client
	ups    map[string]*upstream
}

func (c *calloutUpstreams) HasCluster(name string) bool {
	_, ok := c.ups[name]
	return ok
}

func (c *calloutUpstreams) RoundTrip(ctx context.Context, cluster string, req *http.Request) (*http.Response, error) {
	u, ok := c.ups[cluster]
	if !ok {
		return nil, fmt.Errorf("unknown cluster %q", cluster)
	}
	e := u.pick()
	if e == nil {
		return nil, fmt.Errorf("cluster %s: %w", cluster, errNoHealthyUpstream)
	}
	out := req.Clone(ctx)
	out.URL.Scheme, out.URL.Host = e.scheme, e.addr
	out.RequestURI = ""
	// In flight until the response's headers: the body is the callout's
	// to read.
	e.active.Add(1)
	defer e.active.Add(-1)
	return c.client.Do(out)
}
