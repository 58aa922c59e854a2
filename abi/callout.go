package abi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// calloutResult is an HTTP call's response while proxy_on_http_call_response
// runs: the call response header, trailer and body buffers point at it.
type calloutResult struct {
	headers, trailers Headers
	body              []byte
	statusCode        uint32
	statusMessage     string
	grpc              bool // a gRPC call's: metadata and message buffer types
}

// maxCalloutBody bounds a callout response body held for the plugin.
const maxCalloutBody = 16 << 20

// ClusterChecker is implemented by Upstreams and GRPCUpstreams that know
// their clusters: a callout to a cluster they do not have is refused when
// it is dispatched, as Envoy refuses it (getThreadLocalCluster returns
// nothing): BAD_ARGUMENT for proxy_http_call, PARSE_FAILURE for
// proxy_grpc_call. Without it a callout to an unknown cluster fails later,
// in its answer.
type ClusterChecker interface {
	HasCluster(name string) bool
}

// decodePairs reads a header map as cpp-host's PairsUtil::toPairs does: a
// map that does not parse, or is over the limits, is empty.
func (v *vm) decodePairs(b []byte) Headers {
	h, err := DecodeHeaders(b, v.group.host.opts.Limits)
	if err != nil {
		return nil
	}
	return h
}

// hHTTPCall is proxy_http_call(upstream, headers, body, trailers,
// timeout_ms, ret_token), cpp-host's http_call over Envoy's
// Context::httpCall: the token is written (as 0) first, to check it can be;
// a timeout that is negative as an int is BAD_ARGUMENT, and so is an unknown
// cluster and a request without :method, :path or :authority (present but
// empty is fine: an empty :method is sent as GET, an empty :path as /, an
// empty :authority as the cluster's). The request goes in the background;
// the answer goes to the root context of the effective context with
// proxy_on_http_call_response, under a call deadline of its own.
func (v *vm) hHTTPCall(_ context.Context, s []uint64) Status {
	cluster, ok1 := v.str(s[0], s[1])
	hb, ok2 := v.bytes(s[2], s[3])
	body, ok3 := v.bytes(s[4], s[5])
	tb, ok4 := v.bytes(s[6], s[7])
	if !ok1 || !ok2 || !ok3 || !ok4 || !v.writable(s[9]) {
		return StatusInvalidMemoryAccess
	}
	v.putU32(s[9], 0)
	if int32(uint32(s[8])) < 0 {
		return StatusBadArgument
	}
	up := v.group.host.opts.Upstreams
	if up == nil {
		v.logger().Warn("proxy_http_call refused: the host has no upstreams", "cluster", cluster)
		return StatusBadArgument
	}
	if c, ok := up.(ClusterChecker); ok && !c.HasCluster(cluster) {
		return StatusBadArgument
	}
	headers, trailers := v.decodePairs(hb), v.decodePairs(tb)
	method, okm := headers.Get(":method")
	path, okp := headers.Get(":path")
	authority, oka := headers.Get(":authority")
	if !okm || !okp || !oka {
		return StatusBadArgument // Envoy checks Path(), Method() and Host()
	}
	root, token, ok := v.newCall(calloutHTTP)
	if !ok {
		return StatusBadArgument
	}
	v.putU32(s[9], token)
	timeout := time.Duration(uint32(s[8])) * time.Millisecond
	if path == "" {
		path = "/"
	}
	u, perr := url.ParseRequestURI(path)
	if perr != nil { // sent by Envoy as is, and refused by the upstream: an answer that failed
		go v.deliverCallout(root.id, token, &calloutResult{statusCode: 1, statusMessage: fmt.Sprintf("invalid :path %q", path)})
		return StatusOK
	}
	u.Scheme, u.Host = "http", authority
	req := &http.Request{Method: method, URL: u, Host: authority, Header: http.Header{},
		Body: io.NopCloser(bytes.NewReader(bytes.Clone(body))), ContentLength: int64(len(body))}
	for _, h := range headers {
		if !strings.HasPrefix(h.Key, ":") {
			req.Header.Add(h.Key, h.Value)
		}
	}
	if len(trailers) > 0 {
		req.Trailer = http.Header{}
		for _, h := range trailers {
			req.Trailer.Add(h.Key, h.Value)
		}
	}
	go v.doCallout(v.logger(), cluster, req, timeout, root.id, token)
	return StatusOK
}

func (v *vm) doCallout(log *slog.Logger, cluster string, req *http.Request, timeout time.Duration, rootID, token uint32) {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	res := &calloutResult{}
	resp, err := v.group.host.opts.Upstreams.RoundTrip(ctx, cluster, req.WithContext(ctx))
	if err == nil {
		res.body, err = io.ReadAll(io.LimitReader(resp.Body, maxCalloutBody+1))
		resp.Body.Close()
		if err == nil && len(res.body) > maxCalloutBody {
			err = fmt.Errorf("response body over %d bytes", maxCalloutBody)
		}
	}
	if err != nil {
		log.Warn("HTTP callout failed", "cluster", cluster, "path", req.URL.Path, "err", err)
		res = &calloutResult{statusCode: 1, statusMessage: err.Error()} // 0 headers: failed
	} else {
		res.headers = append(res.headers, Header{":status", strconv.Itoa(resp.StatusCode)})
		res.headers = appendSorted(res.headers, resp.Header)
		res.trailers = appendSorted(res.trailers, resp.Trailer)
	}
	v.deliverCallout(rootID, token, res)
}

// deliverCallout runs proxy_on_http_call_response for an answer. The call
// gets a deadline of its own (the callout's own timeout, which may have
// expired, is not the callback's).
func (v *vm) deliverCallout(rootID, token uint32, res *calloutResult) {
	v.mu.Lock()
	defer v.mu.Unlock()
	root := v.ctxs[rootID]
	if v.closed || v.failed.Load() || root == nil {
		return
	}
	v.callout = res
	_, _ = v.call(context.Background(), root, v.cb.httpCallResponse, "proxy_on_http_call_response",
		uint64(rootID), uint64(token), uint64(len(res.headers)), uint64(len(res.body)), uint64(len(res.trailers)))
	v.callout = nil
}

// appendSorted appends an http.Header with lower-case keys in key order (Go
// maps have none; plugins must see the same order every time).
func appendSorted(h Headers, from http.Header) Headers {
	for _, k := range slices.Sorted(maps.Keys(from)) {
		for _, val := range from[k] {
			h = append(h, Header{strings.ToLower(k), val})
		}
	}
	return h
}

// Callout tokens are numbered as cpp-host's WasmBase numbers them
// (nextHttpCallId, nextGrpcCallId, nextGrpcStreamId), per VM: the two low
// bits say the kind (HTTP call 0, gRPC call 1, gRPC stream 2; isGrpcCallId,
// isGrpcStreamId) and each kind counts up by 4. cpp-host has no rollover
// protection; here a token still in use, and 0, are skipped.
const (
	calloutHTTP       = 0
	calloutGRPCCall   = 1
	calloutGRPCStream = 2
	calloutKindMask   = 3
	calloutIncrement  = 4
)

func isGRPCCallToken(t uint32) bool   { return t&calloutKindMask == calloutGRPCCall }
func isGRPCStreamToken(t uint32) bool { return t&calloutKindMask == calloutGRPCStream }

// newCall numbers a callout of the given kind made by the running callback
// and returns the root context its answer goes to. v.mu is held.
func (v *vm) newCall(kind uint32) (root *contextState, token uint32, ok bool) {
	root = v.rootOfEff() // cpp-host: contextOrEffectiveContext()->root_context()
	if root == nil {
		return nil, 0, false
	}
	next := &v.nextCall[kind]
	for {
		*next += calloutIncrement
		token = *next | kind
		if token == 0 {
			continue
		}
		if _, used := v.grpcCalls[token]; used {
			continue
		}
		if _, used := v.grpcStreams[token]; used {
			continue
		}
		return root, token, true
	}
}

// HTTPUpstreams is an Upstreams over net/http: each cluster name maps to a
// base URL ("http://127.0.0.1:8080"); the plugin's :path is resolved against it.
type HTTPUpstreams struct {
	Client   *http.Client
	Clusters map[string]string
}

// HasCluster implements ClusterChecker.
func (u *HTTPUpstreams) HasCluster(name string) bool {
	_, ok := u.Clusters[name]
	return ok
}

// RoundTrip implements Upstreams.
func (u *HTTPUpstreams) RoundTrip(ctx context.Context, cluster string, req *http.Request) (*http.Response, error) {
	base, ok := u.Clusters[cluster]
	if !ok {
		return nil, fmt.Errorf("unknown cluster %q", cluster)
	}
	b, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: %w", cluster, err)
	}
	out := req.Clone(ctx)
	out.URL.Scheme, out.URL.Host = b.Scheme, b.Host
	out.RequestURI = ""
	c := u.Client
	if c == nil {
		c = http.DefaultClient
	}
	return c.Do(out)
}
