package proxy

import (
	"fmt"
	"math/rand/v2"

	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
	"google.golang.org/grpc/balancer/leastrequest"
	"google.golang.org/grpc/balancer/roundrobin"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/anywasm/anywasm/abi/grpcupstream"
)

// randomName is the gRPC balancer of lb_policy RANDOM (grpc-go has none):
// a ready endpoint drawn at random per call, as Envoy's RandomLoadBalancer.
const randomName = "anywasm_random"

func init() {
	balancer.Register(base.NewBalancerBuilder(randomName, randomPickerBuilder{}, base.Config{HealthCheck: false}))
}

type randomPickerBuilder struct{}

func (randomPickerBuilder) Build(info base.PickerBuildInfo) balancer.Picker {
	if len(info.ReadySCs) == 0 {
		return base.NewErrPicker(balancer.ErrNoSubConnAvailable)
	}
	p := &randomPicker{}
	for sc := range info.ReadySCs {
		p.scs = append(p.scs, sc)
	}
	return p
}

type randomPicker struct{ scs []balancer.SubConn }

func (p *randomPicker) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	return balancer.PickResult{SubConn: p.scs[rand.IntN(len(p.scs))]}, nil
}

// grpcClusters makes the client connections of the gRPC clusters: each
// has a resolver of its own that the cluster's endpoints feed (again at
// every DNS resolution that changes them) and the balancer of its
// lb_policy, grpc-go's round_robin and least_request (choice_count 2, as
// Envoy's) or anywasm_random, which pick per call.
func grpcClusters(ups []*upstream) (*grpcupstream.Clusters, error) {
	conns := map[string]*grpc.ClientConn{}
	closeAll := func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}
	for _, u := range ups {
		r := manual.NewBuilderWithScheme("anywasm")
		state := func(hs []*endpoint) resolver.State {
			var st resolver.State
			for _, e := range hs {
				// gRPC makes an endpoint of each address (base balancers,
				// anywasm_random's, read the addresses).
				st.Addresses = append(st.Addresses, resolver.Address{Addr: e.addr})
			}
			return st
		}
		u.mu.Lock() // against a resolution under way
		if hp := u.hosts.Load(); hp != nil {
			r.InitialState(state(*hp))
		} else {
			r.InitialState(resolver.State{})
		}
		u.onUpdate = func(hs []*endpoint) { r.UpdateState(state(hs)) }
		u.mu.Unlock()
		lb := fmt.Sprintf(`{"loadBalancingConfig":[{%q:{}}]}`, roundrobin.Name)
		switch u.policy {
		case randomLB:
			lb = fmt.Sprintf(`{"loadBalancingConfig":[{%q:{}}]}`, randomName)
		case leastRequest:
			lb = fmt.Sprintf(`{"loadBalancingConfig":[{%q:{"choiceCount":%d}}]}`, leastrequest.Name, leastRequestChoices)
		}
		c, err := grpc.NewClient("anywasm:///"+u.cl.Name, grpc.WithResolvers(r),
			grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultServiceConfig(lb))
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("cluster %q: %w", u.cl.Name, err)
		}
		conns[u.cl.Name] = c
	}
	return grpcupstream.FromConns(conns), nil
}
