package envoyconfig

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	extensionv3 "github.com/envoyproxy/go-control-plane/envoy/service/extension/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/anywasm/anywasm/internal/proxy"
)

// ExtensionConfigType is the type URL of the resources of Envoy's
// Extension Config Discovery Service.
const ExtensionConfigType = typeURLPrefix + "envoy.config.core.v3.TypedExtensionConfig"

// Envoy's retry backoff of an xDS stream (RETRY_INITIAL_DELAY_MS and
// RETRY_MAX_DELAY_MS of source/common/config/grpc_stream.h), jittered.
const (
	retryInitial = 500 * time.Millisecond
	retryMax     = 30 * time.Second
)

// maxErrorDetail bounds a NACK's message, as Envoy's
// truncateGrpcStatusMessage does.
const maxErrorDetail = 4096

// Discover subscribes to the management servers of the proxy's
// discovered filters (proxy.Discovery: Envoy's config_discovery, on HTTP
// and network filters) and applies what they send until ctx ends; it
// returns then. One stream per management server (cluster, ADS or not)
// asks for the TypedExtensionConfigs named by its filters, state of the
// world (or delta xDS, DELTA_GRPC: delta). The filters that warm hold the proxy's listeners back until
// their first configuration loads, a response is rejected, or their
// initial_fetch_timeout ends (proxy.FilterWarmed), as Envoy's
// FilterConfigSubscription and GrpcSubscriptionImpl end an init target. A
// response whose every resource translates (ExtensionConfig) and loads
// (proxy.UpdateFilter) is ACKed: the next request carries its
// version_info and nonce. Otherwise it is NACKed: the last accepted
// version_info, the nonce, and error_detail (code INTERNAL, the errors),
// as Envoy's GrpcMuxImpl does; the filters whose resource failed keep
// their running plugin. A broken stream is opened again after a backoff
// (Envoy's: 500ms doubling to 30s, jittered), the running plugins kept.
// Without discovered filters it returns at once.
func Discover(ctx context.Context, p *proxy.Proxy, cfg *proxy.Config, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	subs := map[proxy.ConfigSource]*subscription{}
	var order []proxy.ConfigSource
	// timeouts are the initial_fetch_timeouts of the filters that warm,
	// by name (the shortest when filters of one name differ).
	timeouts := map[string]time.Duration{}
	for _, l := range cfg.Listeners {
		var filters []proxy.Plugin
		switch {
		case l.HTTP != nil:
			filters = l.HTTP.Filters
		case l.TCP != nil:
			filters = l.TCP.Filters
		}
		for _, f := range filters {
			d := f.Discovery
			if d == nil {
				continue
			}
			s := subs[d.Source]
			if s == nil {
				var addr string
				for _, c := range cfg.Clusters {
					if c.Name == d.Source.Cluster {
						addr = c.Address
					}
				}
				s = &subscription{proxy: p, log: log.With("xds_cluster", d.Source.Cluster), src: d.Source, addr: addr,
					node: node(cfg.Node), applied: map[string][]byte{}, failed: map[string]failure{}, types: map[string][]string{}, versions: map[string]string{}}
				subs[d.Source] = s
				order = append(order, d.Source)
			}
			if !slices.Contains(s.names, d.Name) {
				s.names = append(s.names, d.Name)
			}
			if !slices.Contains(s.types[d.Name], d.Type) {
				s.types[d.Name] = append(s.types[d.Name], d.Type)
			}
			if d.Warm && d.InitialFetchTimeout > 0 {
				if t, ok := timeouts[d.Name]; !ok || d.InitialFetchTimeout < t {
					timeouts[d.Name] = d.InitialFetchTimeout
				}
			}
		}
	}
	// Envoy's GrpcSubscriptionImpl::start arms the initial fetch timer
	// when the subscription starts; when it fires, before a
	// configuration, the filter's warming ends (onConfigUpdateFailed,
	// FetchTimedout) and its listeners serve it without one.
	for _, name := range slices.Sorted(maps.Keys(timeouts)) {
		tm := time.AfterFunc(timeouts[name], func() {
			if p.FilterWaiting(name) {
				log.Warn("xds: initial fetch timed out; the listeners serve the filter without its configuration (default_config, or none)",
					"filter", name, "initial_fetch_timeout", timeouts[name])
				p.FilterWarmed(name)
			}
		})
		defer tm.Stop()
	}
	var wg sync.WaitGroup
	for _, src := range order {
		s := subs[src]
		slices.Sort(s.names)
		wg.Go(func() { s.run(ctx) })
	}
	wg.Wait()
}

func node(n *proxy.Node) *corev3.Node {
	if n == nil {
		return nil
	}
	out := &corev3.Node{Id: n.ID, Cluster: n.Cluster}
	if n.Metadata != nil {
		out.Metadata, _ = structpb.NewStruct(n.Metadata)
	}
	return out
}

// subscription is one management server's stream.
type subscription struct {
	proxy *proxy.Proxy
	log   *slog.Logger
	src   proxy.ConfigSource
	addr  string
	node  *corev3.Node
	names []string
	// types are, per name, the configuration types its filters take
	// (the HTTP or the network Wasm filter).
	types map[string][]string
	// versions are, per name, the resource version last applied (delta
	// xDS: the next stream's initial_resource_versions).
	versions map[string]string
	// version is the last version_info accepted; applied is, per name,
	// the typed_config last applied (Envoy skips an update whose
	// typed_config hashes as the last one's).
	version string
	applied map[string][]byte
	// failed is, per name, the typed_config that failed last and its
	// error: sent again (a management server may answer a NACK with the
	// same resources, as go-control-plane's snapshot cache does), it is
	// NACKed again without being loaded again, and the NACK waits a
	// backoff (lastNACK, nackDelay) so that the two do not spin.
	failed    map[string]failure
	lastNACK  string
	nackDelay time.Duration
}

type failure struct {
	hash []byte
	err  error
}

// stream is what the ADS and ECDS streams share.
type stream interface {
	Send(*discoveryv3.DiscoveryRequest) error
	Recv() (*discoveryv3.DiscoveryResponse, error)
}

func (s *subscription) run(ctx context.Context) {
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		s.log.Error("xds: the management server's address", "address", s.addr, "err", err)
		return
	}
	defer conn.Close()
	delay := retryInitial
	for ctx.Err() == nil {
		stream := s.stream
		if s.src.Delta {
			stream = s.delta
		}
		received, err := stream(ctx, conn)
		if ctx.Err() != nil {
			return
		}
		if received {
			delay = retryInitial
		}
		wait := delay/2 + rand.N(delay/2+1)
		s.log.Warn("xds: stream to the management server ended; the running plugins stay", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		delay = min(2*delay, retryMax)
	}
}

// stream runs one stream until it breaks; received says a response came.
func (s *subscription) stream(ctx context.Context, conn *grpc.ClientConn) (received bool, _ error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var st stream
	var err error
	if s.src.ADS {
		st, err = discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	} else {
		st, err = extensionv3.NewExtensionConfigDiscoveryServiceClient(conn).StreamExtensionConfigs(sctx)
	}
	if err != nil {
		return false, err
	}
	// The first request carries the version last accepted (none at
	// first) and no nonce.
	if err := st.Send(s.request(s.version, "", nil)); err != nil {
		return false, err
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return received, err
		}
		received = true
		if resp.GetTypeUrl() != ExtensionConfigType {
			s.log.Warn("xds: a response of a type not asked for, ignored", "type_url", resp.GetTypeUrl())
			continue
		}
		err = s.apply(ctx, resp.GetResources(), resp.GetVersionInfo(), nil)
		detail, err := s.answer(ctx, resp.GetVersionInfo(), err)
		if err != nil {
			return received, err
		}
		if detail == nil {
			s.version = resp.GetVersionInfo()
		}
		if err := st.Send(s.request(s.version, resp.GetNonce(), detail)); err != nil {
			return received, err
		}
	}
}

// answer turns the outcome of a response (version: its version_info,
// err: apply's) into the error_detail of its NACK, nil for an ACK. A
// rejected response ends the warming of every filter of the stream
// (GrpcMuxImpl calls onConfigUpdateFailed, UpdateRejected, on every watch
// of the type, and FilterConfigSubscription marks its init target
// ready). The same rejection twice in a row is paced (a backoff before
// the NACK); it fails only when ctx ends meanwhile.
func (s *subscription) answer(ctx context.Context, version string, err error) (*statuspb.Status, error) {
	if err == nil {
		s.lastNACK, s.nackDelay = "", 0
		s.log.Info("xds: configuration accepted (ACK)", "version_info", version)
		return nil, nil
	}
	for _, name := range s.names {
		s.proxy.FilterWarmed(name)
	}
	msg := err.Error()
	if len(msg) > maxErrorDetail {
		msg = msg[:maxErrorDetail]
	}
	if msg == s.lastNACK { // the same rejection again: pace it
		s.nackDelay = min(max(2*s.nackDelay, retryInitial), retryMax)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(s.nackDelay):
		}
	} else {
		s.log.Error("xds: configuration rejected (NACK); the running plugins stay", "version_info", version, "err", err)
		s.lastNACK, s.nackDelay = msg, 0
	}
	return &statuspb.Status{Code: int32(codes.Internal), Message: msg}, nil
}

// deltaStream is what the delta ADS and ECDS streams share.
type deltaStream interface {
	Send(*discoveryv3.DeltaDiscoveryRequest) error
	Recv() (*discoveryv3.DeltaDiscoveryResponse, error)
}

// delta runs one delta xDS stream until it breaks, as Envoy's
// NewGrpcMuxImpl and DeltaSubscriptionState: the first request
// subscribes to the names, with the node and the versions of the
// resources accepted (initial_resource_versions, after a reconnection);
// a response's resources are applied as a state-of-the-world response's
// (each with its own version), its removed_resources go back to their
// default_config or none (proxy.RemoveFilter); the ACK or NACK is the
// response's nonce, with error_detail for a NACK.
func (s *subscription) delta(ctx context.Context, conn *grpc.ClientConn) (received bool, _ error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var st deltaStream
	var err error
	if s.src.ADS {
		st, err = discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(sctx)
	} else {
		st, err = extensionv3.NewExtensionConfigDiscoveryServiceClient(conn).DeltaExtensionConfigs(sctx)
	}
	if err != nil {
		return false, err
	}
	first := &discoveryv3.DeltaDiscoveryRequest{Node: s.node, TypeUrl: ExtensionConfigType, ResourceNamesSubscribe: s.names}
	if len(s.versions) > 0 {
		first.InitialResourceVersions = maps.Clone(s.versions)
	}
	if err := st.Send(first); err != nil {
		return false, err
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return received, err
		}
		received = true
		if resp.GetTypeUrl() != ExtensionConfigType {
			s.log.Warn("xds: a response of a type not asked for, ignored", "type_url", resp.GetTypeUrl())
			continue
		}
		var anys []*anypb.Any
		versions := map[string]string{}
		for _, r := range resp.GetResources() {
			anys = append(anys, r.GetResource())
			versions[r.GetName()] = r.GetVersion()
		}
		err = s.apply(ctx, anys, resp.GetSystemVersionInfo(), versions)
		for _, name := range resp.GetRemovedResources() {
			if !slices.Contains(s.names, name) {
				continue
			}
			if rerr := s.proxy.RemoveFilter(ctx, name); rerr != nil {
				err = errors.Join(err, fmt.Errorf("%s: removing: %w", name, rerr))
				continue
			}
			delete(s.applied, name)
			delete(s.failed, name)
			delete(s.versions, name)
			s.log.Info("xds: filter configuration removed: default_config, or none", "filter", name)
		}
		detail, err := s.answer(ctx, resp.GetSystemVersionInfo(), err)
		if err != nil {
			return received, err
		}
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: ExtensionConfigType, ResponseNonce: resp.GetNonce(), ErrorDetail: detail}); err != nil {
			return received, err
		}
	}
}

func (s *subscription) request(version, nonce string, detail *statuspb.Status) *discoveryv3.DiscoveryRequest {
	return &discoveryv3.DiscoveryRequest{VersionInfo: version, Node: s.node, ResourceNames: s.names,
		TypeUrl: ExtensionConfigType, ResponseNonce: nonce, ErrorDetail: detail}
}

// apply translates the response's resources, then loads each changed
// one into its filters. A name the response lacks keeps its plugin (as
// Envoy's watches of a type with several watches are not called); a
// name it does not ask for is ignored. The first failures do not stop
// the others: what loaded stays loaded, as Envoy's watches that
// succeeded stay updated when another fails.
func (s *subscription) apply(ctx context.Context, resources []*anypb.Any, version string, versions map[string]string) error {
	byName := map[string][]*corev3.TypedExtensionConfig{}
	var errs []error
	for i, r := range resources {
		tec := &corev3.TypedExtensionConfig{}
		if err := r.UnmarshalTo(tec); err != nil {
			errs = append(errs, fmt.Errorf("resources[%d]: %s: %w", i, r.GetTypeUrl(), err))
			continue
		}
		byName[tec.GetName()] = append(byName[tec.GetName()], tec)
	}
	type update struct {
		name   string
		plugin proxy.Plugin
		hash   []byte
	}
	var updates []update
	for _, name := range s.names {
		rs := byName[name]
		switch len(rs) {
		case 0:
			continue
		case 1:
		default:
			// FilterConfigSubscription::onConfigUpdate's message.
			errs = append(errs, fmt.Errorf("%s: Unexpected number of resources in ExtensionConfigDS response: %d", name, len(rs)))
			continue
		}
		hash, _ := proto.MarshalOptions{Deterministic: true}.Marshal(rs[0].GetTypedConfig())
		if old, ok := s.applied[name]; ok && bytes.Equal(old, hash) {
			if v, ok := versions[name]; ok {
				s.versions[name] = v
			}
			continue
		}
		if f, ok := s.failed[name]; ok && bytes.Equal(f.hash, hash) {
			errs = append(errs, f.err)
			continue
		}
		p, notes, err := ExtensionConfig(rs[0], s.types[name]...)
		if err != nil {
			err = fmt.Errorf("%s: %w", name, err)
			s.failed[name] = failure{hash, err}
			errs = append(errs, err)
			continue
		}
		for _, n := range notes {
			s.log.Info("xds: "+n.Message, "filter", name, "field", n.Field)
		}
		updates = append(updates, update{name, p, hash})
	}
	for _, u := range updates {
		if err := s.proxy.UpdateFilter(ctx, u.name, &u.plugin); err != nil {
			err = fmt.Errorf("%s: %w", u.name, err)
			if !errors.Is(err, proxy.ErrRemoteCode) {
				// Remote code that did not load may load when sent
				// again (a fetch filled the code cache; a failed one's
				// negative caching ended): tried again each time.
				s.failed[u.name] = failure{u.hash, err}
			}
			errs = append(errs, err)
			continue
		}
		s.applied[u.name] = u.hash
		delete(s.failed, u.name)
		if v, ok := versions[u.name]; ok {
			s.versions[u.name] = v
		}
		s.log.Info("xds: filter updated", "filter", u.name, "version_info", version)
	}
	if len(errs) == 0 {
		return nil
	}
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	return errors.New(strings.Join(msgs, "; "))
}
