package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"

	"github.com/anywasm/anywasm/abi"
)

// fakeDNS answers lookups from a table that the test changes.
type fakeDNS struct {
	mu sync.Mutex
	m  map[string][]string // host to addresses; missing: a failure
}

func (f *fakeDNS) set(host string, addrs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if addrs == nil {
		delete(f.m, host)
		return
	}
	f.m[host] = addrs
}

func (f *fakeDNS) lookup(_ context.Context, host string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	as, ok := f.m[host]
	if !ok {
		return nil, errors.New("no such host")
	}
	var out []netip.Addr
	for _, a := range as {
		out = append(out, netip.MustParseAddr(a))
	}
	return out, nil
}

func hostsOf(u *upstream) []string {
	var s []string
	for _, e := range *u.hosts.Load() {
		s = append(s, e.addr)
	}
	return s
}

// TestResolve: strict_dns takes every address of every endpoint (Envoy's
// StrictDnsClusterImpl, one ResolveTarget per endpoint, a failed one
// keeping its hosts); logical_dns the first; dns_lookup_family filters;
// an endpoint that stays keeps its count of requests in flight.
func TestResolve(t *testing.T) {
	dns := &fakeDNS{m: map[string][]string{}}
	newU := func(cl *Cluster) *upstream {
		u := newUpstream(cl, nil)
		u.lookup = dns.lookup
		return u
	}
	dns.set("a.test", "10.0.0.1", "10.0.0.2", "fd00::1")
	dns.set("b.test", "10.0.0.3")
	u := newU(&Cluster{Name: "s", Endpoints: []string{"a.test:80", "b.test:81"}, Discovery: "strict_dns", DNSLookupFamily: "ALL"})
	if err := u.resolve(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, want := hostsOf(u), []string{"10.0.0.1:80", "10.0.0.2:80", "[fd00::1]:80", "10.0.0.3:81"}; !slices.Equal(got, want) {
		t.Errorf("hosts %v, want %v", got, want)
	}
	kept := (*u.hosts.Load())[1]
	kept.active.Add(1)
	dns.set("a.test", "10.0.0.2", "10.0.0.9")
	dns.set("b.test") // fails: its hosts stay
	if err := u.resolve(t.Context()); err == nil {
		t.Error("no error for b.test")
	}
	if got, want := hostsOf(u), []string{"10.0.0.2:80", "10.0.0.9:80", "10.0.0.3:81"}; !slices.Equal(got, want) {
		t.Errorf("after a change: hosts %v, want %v", got, want)
	}
	if e := (*u.hosts.Load())[0]; e != kept || e.active.Load() != 1 {
		t.Error("10.0.0.2 was made again: its requests in flight are lost")
	}
	for _, c := range []struct {
		family string
		want   []string
	}{
		{"", []string{"[fd00::1]:80"}}, // AUTO: IPv6 when there is
		{"V4_ONLY", []string{"10.0.0.1:80", "10.0.0.2:80"}},
		{"V6_ONLY", []string{"[fd00::1]:80"}},
		{"V4_PREFERRED", []string{"10.0.0.1:80", "10.0.0.2:80"}},
	} {
		dns.set("a.test", "10.0.0.1", "10.0.0.2", "fd00::1")
		u := newU(&Cluster{Name: "f", Endpoints: []string{"a.test:80"}, Discovery: "strict_dns", DNSLookupFamily: c.family})
		if err := u.resolve(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := hostsOf(u); !slices.Equal(got, c.want) {
			t.Errorf("%q: hosts %v, want %v", c.family, got, c.want)
		}
	}
	u = newU(&Cluster{Name: "l", Address: "a.test:80", Discovery: "logical_dns", DNSLookupFamily: "V4_ONLY"})
	if err := u.resolve(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, want := hostsOf(u), []string{"10.0.0.1:80"}; !slices.Equal(got, want) {
		t.Errorf("logical_dns: hosts %v, want %v", got, want)
	}
}

// TestRefresh: a strict_dns cluster resolves again every dns_refresh_rate.
func TestRefresh(t *testing.T) {
	dns := &fakeDNS{m: map[string][]string{"a.test": {"10.0.0.1"}}}
	rate := Duration("10ms")
	u := newUpstream(&Cluster{Name: "r", Address: "a.test:80", Discovery: "strict_dns", DNSRefreshRate: &rate}, nil)
	u.lookup = dns.lookup
	if err := u.resolve(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); u.refresh(ctx, func(error) {}) }()
	defer func() { cancel(); <-done }()
	dns.set("a.test", "10.0.0.7")
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Equal(hostsOf(u), []string{"10.0.0.7:80"}) {
		if time.Now().After(deadline) {
			t.Fatalf("hosts %v after 10s", hostsOf(u))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCalloutRoundRobin: the plugins' HTTP callouts to a cluster of three
// endpoints go to each in turn.
func TestCalloutRoundRobin(t *testing.T) {
	var addrs []string
	got := make(chan string, 30)
	for i := range 3 {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got <- fmt.Sprintf("b%d %s %s", i, r.Host, r.URL.Path)
		}))
		t.Cleanup(s.Close)
		addrs = append(addrs, s.Listener.Addr().String())
	}
	cl := &Cluster{Name: "three", Type: "http", Endpoints: addrs}
	c := &calloutUpstreams{client: http.DefaultClient, ups: map[string]*upstream{"three": newUpstream(cl, nil)}}
	var up abi.Upstreams = c
	if !c.HasCluster("three") || c.HasCluster("other") {
		t.Error("HasCluster")
	}
	n := map[string]int{}
	for range 9 {
		req, _ := http.NewRequest("GET", "http://plugin.example/call", nil)
		resp, err := up.RoundTrip(t.Context(), "three", req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		n[<-got]++
	}
	for i := range 3 {
		if k := fmt.Sprintf("b%d plugin.example /call", i); n[k] != 3 {
			t.Errorf("%v: want 3 of %q", n, k)
		}
	}
}

// TestGRPCBalanced: a grpc cluster's calls reach every endpoint, under
// each lb_policy.
func TestGRPCBalanced(t *testing.T) {
	for _, policy := range []string{"", "RANDOM", "LEAST_REQUEST"} {
		t.Run("policy="+policy, func(t *testing.T) {
			var addrs []string
			for i := range 2 {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				name := fmt.Sprintf("g%d", i)
				s := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, st grpc.ServerStream) error {
					var in rawFrame
					if err := st.RecvMsg(&in); err != nil && err != io.EOF {
						return err
					}
					return st.SendMsg(&rawFrame{b: []byte(name)})
				}), grpc.ForceServerCodecV2(rawServerCodec{}))
				go s.Serve(ln)
				t.Cleanup(s.Stop)
				addrs = append(addrs, ln.Addr().String())
			}
			u := newUpstream(&Cluster{Name: "g", Type: "grpc", Endpoints: addrs, LbPolicy: policy}, nil)
			cs, err := grpcClusters([]*upstream{u})
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close()
			seen := map[string]int{}
			deadline := time.Now().Add(10 * time.Second)
			for len(seen) < 2 {
				if time.Now().After(deadline) {
					t.Fatalf("after 10s only %v", seen)
				}
				resp, err := cs.Call(t.Context(), &abi.GRPCRequest{Cluster: "g", Service: "s.S", Method: "M", Message: []byte("x")})
				if err != nil || resp.Status != 0 {
					t.Fatalf("%v %+v", err, resp)
				}
				seen[string(resp.Message)]++
			}
		})
	}
}

// rawFrame and rawServerCodec: the test gRPC server's messages are bytes.
type rawFrame struct{ b []byte }

type rawServerCodec struct{}

func (rawServerCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(*rawFrame).b)}, nil
}

func (rawServerCodec) Unmarshal(data mem.BufferSlice, v any) error {
	v.(*rawFrame).b = data.Materialize()
	return nil
}

func (rawServerCodec) Name() string { return "proto" }

// TestGRPCResolvedAgain: a strict_dns grpc cluster's calls follow its
// resolution (the proxy feeds gRPC's resolver): once the name moves from
// 127.0.0.1 to 127.0.0.2, the calls reach the server there.
func TestGRPCResolvedAgain(t *testing.T) {
	one, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(one.Addr().String())
	two, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", port))
	if err != nil {
		one.Close()
		t.Skipf("127.0.0.2: %v", err)
	}
	for ln, name := range map[net.Listener]string{one: "one", two: "two"} {
		s := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, st grpc.ServerStream) error {
			var in rawFrame
			if err := st.RecvMsg(&in); err != nil && err != io.EOF {
				return err
			}
			return st.SendMsg(&rawFrame{b: []byte(name)})
		}), grpc.ForceServerCodecV2(rawServerCodec{}))
		go s.Serve(ln)
		t.Cleanup(s.Stop)
	}
	dns := &fakeDNS{m: map[string][]string{"g.test": {"127.0.0.1"}}}
	u := newUpstream(&Cluster{Name: "g", Type: "grpc", Address: "g.test:" + port, Discovery: "strict_dns"}, nil)
	u.lookup = dns.lookup
	if err := u.resolve(t.Context()); err != nil {
		t.Fatal(err)
	}
	cs, err := grpcClusters([]*upstream{u})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	call := func() string {
		t.Helper()
		resp, err := cs.Call(t.Context(), &abi.GRPCRequest{Cluster: "g", Service: "s.S", Method: "M", Message: []byte("x")})
		if err != nil || resp.Status != 0 {
			t.Fatalf("%v %+v", err, resp)
		}
		return string(resp.Message)
	}
	if got := call(); got != "one" {
		t.Fatalf("%q, want one", got)
	}
	dns.set("g.test", "127.0.0.2")
	if err := u.resolve(t.Context()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for call() != "two" {
		if time.Now().After(deadline) {
			t.Fatal("still one after 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPickAllocates: picking an endpoint allocates nothing, under every
// policy.
func TestPickAllocates(t *testing.T) {
	for _, policy := range []string{"", "RANDOM", "LEAST_REQUEST"} {
		u := newUpstream(&Cluster{Name: "p", Type: "tcp", Endpoints: []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}, LbPolicy: policy}, nil)
		if n := testing.AllocsPerRun(100, func() { u.pick() }); n != 0 {
			t.Errorf("%q: %v allocations per pick", policy, n)
		}
	}
}
