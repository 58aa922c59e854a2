package abi

import (
	"bytes"
	"encoding/binary"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Attributes: what proxy_get_property answers, as Envoy does.
//
// Envoy's Context::getProperty (source/extensions/common/wasm/context.cc)
// takes the first path segment as a top-level name (Context::findValue: the
// wasm tokens node, listener_direction, listener_metadata, cluster_name,
// cluster_metadata, route_name, route_metadata, upstream_host_metadata,
// plugin_name, plugin_root_id, plugin_vm_id and connection_id, then the CEL
// activation's request, response, connection, upstream, source,
// destination, metadata, filter_state and xds, then what the plugin set
// with proxy_set_property), walks the further segments as map keys,
// message fields or list indexes, and serializes the value it ends on with
// serializeValue: strings and bytes as they are, integers (int64 and
// uint64) as 8 bytes little-endian, doubles as their 8 IEEE-754 bytes,
// booleans as one byte, timestamps and durations as int64 nanoseconds,
// maps as serialized pairs (key and value each serialized), lists as pairs
// with the element as key and an empty value, messages (Metadata, Node)
// in protobuf's binary encoding. A value that cannot be serialized (a null,
// a whole request or response wrapper, whose keys Envoy does not list) is
// SERIALIZATION_FAILURE; what the host does not know is NOT_FOUND.
//
// The attribute names are Envoy's (source/extensions/filters/common/expr/
// context.h), their values those of its wrappers (context.cc:
// RequestWrapper, ResponseWrapper, ConnectionWrapper, UpstreamWrapper,
// PeerWrapper, XDSWrapper).

// Metadata is Envoy's config.core.v3.Metadata: filter_metadata, a struct
// per filter name. Values are what encoding/json decodes into an any:
// string, float64 (other Go numbers are taken as float64), bool, nil,
// []any and map[string]any (google.protobuf.Struct's Value kinds).
type Metadata map[string]map[string]any

// Node is the proxy's identity, Envoy's config.core.v3.Node (id, cluster
// and metadata; the attribute node and xds.node).
type Node struct {
	ID       string
	Cluster  string
	Metadata map[string]any
}

// TrafficDirection is Envoy's config.core.v3.TrafficDirection, the
// attribute listener_direction.
type TrafficDirection int64

// Envoy's TrafficDirection values.
const (
	DirectionUnspecified TrafficDirection = 0
	DirectionInbound     TrafficDirection = 1
	DirectionOutbound    TrafficDirection = 2
)

// TLSInfo is what is known of a TLS connection (Envoy's
// Ssl::ConnectionInfo): the attributes connection.tls_version,
// connection.subject_peer_certificate, ... (the first SAN of each kind, as
// Envoy).
type TLSInfo struct {
	Version                     string // "TLSv1.3", as Envoy (BoringSSL) names it
	ServerName                  string // SNI (connection.requested_server_name)
	PeerCertificatePresented    bool   // connection.mtls
	SubjectLocalCertificate     string
	SubjectPeerCertificate      string
	URISanLocalCertificate      string
	URISanPeerCertificate       string
	DNSSanLocalCertificate      string
	DNSSanPeerCertificate       string
	SHA256PeerCertificateDigest string
}

// RouteInfo is the route a stream took (xds.route_name, route_metadata,
// virtual_host_name, virtual_host_metadata).
type RouteInfo struct {
	Name                string
	Metadata            Metadata
	VirtualHostName     string
	VirtualHostMetadata Metadata
}

// ClusterInfo is the cluster a stream goes to (xds.cluster_name,
// xds.cluster_metadata).
type ClusterInfo struct {
	Name     string
	Metadata Metadata
}

// StreamInfo is what the embedder knows of a stream, Envoy's StreamInfo:
// what proxy_get_property answers for source.*, destination.*,
// connection.*, upstream.*, xds.* and the request's protocol and time.
// Request and response headers, sizes and codes the host takes from the
// stream itself. The exported fields are set before the stream is created
// and not changed after; what is learnt later (the upstream, the response
// code details) is set with the methods, which are safe to call while a
// plugin reads them. One StreamInfo may serve every plugin of a chain.
// Empty fields are NOT_FOUND.
type StreamInfo struct {
	// SourceAddress is the downstream peer, "ip:port" (source.address;
	// source.port is its port).
	SourceAddress string
	// DestinationAddress is the local address the downstream connected to
	// (destination.address, destination.port).
	DestinationAddress string
	// ConnectionID identifies the downstream connection (connection.id,
	// connection_id); 0 is unknown.
	ConnectionID uint64
	// Protocol is "HTTP/1.0", "HTTP/1.1", "HTTP/2" or "HTTP/3"
	// (request.protocol).
	Protocol string
	// StartTime is when the first byte of the request arrived
	// (request.time); zero: when the stream was created.
	StartTime time.Time
	// TLS describes the downstream TLS connection; nil for plaintext.
	TLS *TLSInfo
	// Route and Cluster are where the stream goes; nil when there is none.
	Route   *RouteInfo
	Cluster *ClusterInfo

	mu          sync.Mutex
	upstream    string
	upLocal     string
	upMeta      Metadata
	details     string
	termination string
}

// SetUpstream records the upstream host the stream reached: its address
// and the local address of the connection to it ("ip:port"; upstream.address,
// upstream.port, upstream.local_address) and its metadata
// (xds.upstream_host_metadata; nil if none).
func (i *StreamInfo) SetUpstream(address, localAddress string, metadata Metadata) {
	i.mu.Lock()
	i.upstream, i.upLocal, i.upMeta = address, localAddress, metadata
	i.mu.Unlock()
}

// SetResponseCodeDetails records why the response is what it is
// (response.code_details; Envoy says "via_upstream" for an upstream's
// answer).
func (i *StreamInfo) SetResponseCodeDetails(details string) {
	i.mu.Lock()
	i.details = details
	i.mu.Unlock()
}

// ResponseCodeDetails returns what SetResponseCodeDetails recorded.
func (i *StreamInfo) ResponseCodeDetails() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.details
}

// SetTerminationDetails records why the downstream connection ended
// (connection.termination_details).
func (i *StreamInfo) SetTerminationDetails(details string) {
	i.mu.Lock()
	i.termination = details
	i.mu.Unlock()
}

func (i *StreamInfo) snapshot() (up, local string, meta Metadata, details, termination string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.upstream, i.upLocal, i.upMeta, i.details, i.termination
}

// propKind is the CEL type of an attribute value.
type propKind uint8

const (
	propNone     propKind = iota
	propString            // s
	propBytes             // b
	propInt               // n as int64 (timestamps and durations too)
	propUint              // n
	propDouble            // n holds the bits
	propBool              // n != 0
	propNull              // a null Value: not serializable
	propHeaders           // h: a header map, looked up by name
	propStruct            // m: a google.protobuf.Struct, a map
	propList              // l: a google.protobuf.ListValue
	propMetadata          // md: a config.core.v3.Metadata message
	propMetaMap           // md: its filter_metadata field, a map
	propNode              // node: a config.core.v3.Node message
	propObject            // obj: one of Envoy's wrappers, a map without keys
)

// objKind names Envoy's attribute wrappers.
type objKind uint8

const (
	objRequest objKind = iota + 1
	objResponse
	objConnection
	objUpstream
	objSource
	objDestination
	objXDS
	objFilterState
)

type prop struct {
	kind propKind
	obj  objKind
	n    uint64
	s    string
	b    []byte
	h    Headers
	m    map[string]any
	l    []any
	md   Metadata
	node *Node
}

func strProp(s string) (prop, bool)            { return prop{kind: propString, s: s}, true }
func intProp(n int64) (prop, bool)             { return prop{kind: propInt, n: uint64(n)}, true }
func objProp(o objKind) (prop, bool)           { return prop{kind: propObject, obj: o}, true }
func metaProp(md Metadata) (prop, bool)        { return prop{kind: propMetadata, md: md}, true }
func nonEmpty(s string) (prop, bool)           { return prop{kind: propString, s: s}, s != "" }
func timeProp(t time.Time) (prop, bool)        { return intProp(t.UnixNano()) }
func boolProp(b bool) (prop, bool)             { return prop{kind: propBool, n: b2u(b)}, true }
func headersProp(h Headers) (prop, bool)       { return prop{kind: propHeaders, h: h}, true }
func structProp(m map[string]any) (prop, bool) { return prop{kind: propStruct, m: m}, true }

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// attrStream is what a property lookup knows of the stream whose context
// is current.
type attrStream struct {
	c    *contextState
	info *StreamInfo
	st   *stream
}

// lookupProperty resolves a NUL-separated path. ok false is NOT_FOUND.
func (v *vm) lookupProperty(path []byte) (prop, bool) {
	path = bytes.TrimSuffix(path, []byte{0})
	seg, rest, more := bytes.Cut(path, []byte{0})
	var a attrStream
	if c := v.eff; c != nil {
		a.c = c
		if c.http != nil {
			a.st, a.info = &c.http.stream, c.http.info
		} else if c.tcp != nil {
			a.st, a.info = &c.tcp.stream, c.tcp.info
		}
	}
	val, ok := v.topLevel(&a, seg)
	for ok && more {
		seg, rest, more = bytes.Cut(rest, []byte{0})
		val, ok = v.field(&a, val, seg)
	}
	return val, ok
}

// topLevel is Envoy's Context::findValue and StreamActivation::FindValue.
func (v *vm) topLevel(a *attrStream, name []byte) (prop, bool) {
	p := v.plugin()
	stream := a.st != nil
	switch string(name) {
	case "plugin_name":
		if p != nil {
			return strProp(p.cfg.Name)
		}
	case "plugin_root_id":
		if p != nil {
			return strProp(p.cfg.RootID)
		}
	case "plugin_vm_id":
		if p != nil {
			return strProp(p.cfg.VMID)
		}
	case "node":
		if n := v.group.host.opts.Node; n != nil {
			return prop{kind: propNode, node: n}, true
		}
	case "listener_direction":
		if p != nil && p.cfg.ListenerDirection != DirectionUnspecified {
			return intProp(int64(p.cfg.ListenerDirection))
		}
	case "listener_metadata":
		if p != nil && p.cfg.ListenerMetadata != nil {
			return metaProp(p.cfg.ListenerMetadata)
		}
	case "cluster_name":
		if a.info != nil && a.info.Cluster != nil {
			return strProp(a.info.Cluster.Name)
		}
	case "cluster_metadata":
		if a.info != nil && a.info.Cluster != nil {
			return metaProp(a.info.Cluster.Metadata)
		}
	case "route_name":
		// Envoy: StreamInfo::getRouteName, empty without a route.
		if a.info != nil {
			if a.info.Route != nil {
				return strProp(a.info.Route.Name)
			}
			return strProp("")
		}
	case "route_metadata":
		if a.info != nil && a.info.Route != nil {
			return metaProp(a.info.Route.Metadata)
		}
	case "upstream_host_metadata":
		if a.info != nil {
			if up, _, md, _, _ := a.info.snapshot(); up != "" && md != nil {
				return metaProp(md)
			}
		}
	case "connection_id":
		if a.info != nil && a.info.ConnectionID != 0 {
			return prop{kind: propUint, n: a.info.ConnectionID}, true
		}
	case "request":
		if a.c != nil && a.c.http != nil {
			return objProp(objRequest)
		}
	case "response":
		if a.c != nil && a.c.http != nil {
			return objProp(objResponse)
		}
	case "connection":
		if a.info != nil {
			return objProp(objConnection)
		}
	case "upstream":
		if a.info != nil {
			return objProp(objUpstream)
		}
	case "source":
		if a.info != nil {
			return objProp(objSource)
		}
	case "destination":
		if a.info != nil {
			return objProp(objDestination)
		}
	case "xds":
		return objProp(objXDS)
	case "metadata":
		// The stream's dynamic metadata: anywasm has none to give.
		if stream {
			return metaProp(nil)
		}
	case "filter_state":
		if stream {
			return objProp(objFilterState)
		}
	}
	// Envoy: a name that is no attribute is what the plugin set with
	// proxy_set_property (a CelState in the filter state under "wasm.").
	return prop{}, false
}

// field walks one segment into val (Envoy's getProperty loop: a map by key,
// a message by field name, a list by index).
func (v *vm) field(a *attrStream, val prop, seg []byte) (prop, bool) {
	switch val.kind {
	case propObject:
		return v.objField(a, val.obj, seg)
	case propHeaders:
		// Envoy's HeadersWrapper: every value of the header, joined by ",".
		return headerValue(val.h, seg)
	case propStruct:
		x, ok := val.m[string(seg)]
		if !ok {
			return prop{}, false
		}
		return anyProp(x)
	case propList:
		i, err := strconv.Atoi(string(seg))
		if err != nil || i < 0 || i >= len(val.l) {
			return prop{}, false
		}
		return anyProp(val.l[i])
	case propMetadata:
		switch string(seg) {
		case "filter_metadata":
			return prop{kind: propMetaMap, md: val.md}, true
		}
	case propMetaMap:
		s, ok := val.md[string(seg)]
		if !ok {
			return prop{}, false
		}
		return structProp(s)
	case propNode:
		switch string(seg) {
		case "id":
			return strProp(val.node.ID)
		case "cluster":
			return strProp(val.node.Cluster)
		case "metadata":
			return structProp(val.node.Metadata)
		}
	}
	return prop{}, false
}

// objField is the lookup of Envoy's wrappers.
func (v *vm) objField(a *attrStream, o objKind, f []byte) (prop, bool) {
	info := a.info
	switch o {
	case objRequest: // RequestLookupValues
		s := a.c.http
		h := s.reqHeaders
		switch string(f) {
		case "path":
			return headerEntry(h, ":path")
		case "url_path":
			if p, ok := h.Get(":path"); ok {
				p, _, _ = strings.Cut(p, "?")
				return strProp(p)
			}
		case "host":
			return headerEntry(h, ":authority")
		case "scheme":
			return headerEntry(h, ":scheme")
		case "method":
			return headerEntry(h, ":method")
		case "referer":
			return headerEntry(h, "referer")
		case "useragent":
			return headerEntry(h, "user-agent")
		case "id":
			return headerEntry(h, "x-request-id")
		case "query":
			if p, ok := h.Get(":path"); ok {
				_, q, _ := strings.Cut(p, "?")
				q, _, _ = strings.Cut(q, "#")
				return strProp(q)
			}
		case "headers":
			return headersProp(h)
		case "headers_bytes":
			return intProp(int64(headerBytes(h)))
		case "time":
			return timeProp(s.started)
		case "size":
			// Content-Length when there is one, else the body bytes so far.
			if cl, ok := h.Get("content-length"); ok {
				n, err := strconv.ParseInt(cl, 10, 64)
				if err != nil {
					return prop{}, false
				}
				return intProp(n)
			}
			return intProp(s.reqBytes)
		case "total_size":
			return intProp(s.reqBytes + int64(headerBytes(h)))
		case "duration":
			// Envoy's requestComplete: known once the stream ended (in
			// proxy_on_done and proxy_on_log).
			if !s.ended.IsZero() {
				return intProp(int64(s.ended.Sub(s.started)))
			}
		case "protocol":
			if info != nil {
				return nonEmpty(info.Protocol)
			}
		}
	case objResponse: // ResponseLookupValues
		s := a.c.http
		switch string(f) {
		case "code":
			if code, ok := s.responseCode(); ok {
				return intProp(int64(code))
			}
		case "code_details":
			if lr := s.answer(); lr != nil {
				return strProp(lr.Details)
			}
			if info != nil {
				_, _, _, d, _ := info.snapshot()
				return nonEmpty(d)
			}
		case "headers":
			return headersProp(s.respHeaders)
		case "headers_bytes":
			return intProp(int64(headerBytes(s.respHeaders)))
		case "trailers":
			return headersProp(s.respTrailers)
		case "grpc_status":
			// Grpc::Common::getGrpcStatus: trailers, then headers.
			for _, h := range []Headers{s.respTrailers, s.respHeaders} {
				if g, ok := h.Get("grpc-status"); ok {
					n, err := strconv.ParseUint(g, 10, 32)
					if err != nil {
						return prop{}, false
					}
					return intProp(int64(n))
				}
			}
			if lr := s.answer(); lr != nil && lr.GRPCStatus >= 0 {
				return intProp(int64(lr.GRPCStatus))
			}
		case "size":
			return intProp(s.respBytes)
		case "total_size":
			return intProp(s.respBytes + int64(headerBytes(s.respHeaders)+headerBytes(s.respTrailers)))
		}
	case objConnection: // ConnectionLookupValues and the SSL extractors
		switch string(f) {
		case "mtls":
			return boolProp(info.TLS != nil && info.TLS.PeerCertificatePresented)
		case "requested_server_name":
			if info.TLS != nil {
				return strProp(info.TLS.ServerName)
			}
			return strProp("")
		case "id":
			if info.ConnectionID != 0 {
				return prop{kind: propUint, n: info.ConnectionID}, true
			}
		case "termination_details":
			_, _, _, _, t := info.snapshot()
			return nonEmpty(t)
		}
		if t := info.TLS; t != nil {
			switch string(f) {
			case "tls_version":
				return strProp(t.Version)
			case "subject_local_certificate":
				return strProp(t.SubjectLocalCertificate)
			case "subject_peer_certificate":
				return strProp(t.SubjectPeerCertificate)
			case "uri_san_local_certificate":
				return nonEmpty(t.URISanLocalCertificate)
			case "uri_san_peer_certificate":
				return nonEmpty(t.URISanPeerCertificate)
			case "dns_san_local_certificate":
				return nonEmpty(t.DNSSanLocalCertificate)
			case "dns_san_peer_certificate":
				return nonEmpty(t.DNSSanPeerCertificate)
			case "sha256_peer_certificate_digest":
				return nonEmpty(t.SHA256PeerCertificateDigest)
			}
		}
	case objUpstream: // UpstreamLookupValues
		up, local, _, _, _ := info.snapshot()
		switch string(f) {
		case "address":
			return nonEmpty(up)
		case "port":
			return portOf(up)
		case "local_address":
			return nonEmpty(local)
		}
	case objSource, objDestination: // PeerWrapper
		addr := info.SourceAddress
		if o == objDestination {
			addr = info.DestinationAddress
		}
		switch string(f) {
		case "address":
			return nonEmpty(addr)
		case "port":
			return portOf(addr)
		}
	case objXDS: // XDSLookupValues
		switch string(f) {
		case "node":
			return v.topLevel(a, f)
		case "listener_metadata", "listener_direction":
			return v.topLevel(a, f)
		}
		if info == nil {
			return prop{}, false
		}
		switch string(f) {
		case "cluster_name", "cluster_metadata", "upstream_host_metadata":
			return v.topLevel(a, f)
		case "route_name":
			if info.Route != nil {
				return strProp(info.Route.Name)
			}
		case "route_metadata":
			if info.Route != nil {
				return metaProp(info.Route.Metadata)
			}
		case "virtual_host_name":
			if info.Route != nil && info.Route.VirtualHostName != "" {
				return strProp(info.Route.VirtualHostName)
			}
		case "virtual_host_metadata":
			if info.Route != nil && info.Route.VirtualHostName != "" {
				return metaProp(info.Route.VirtualHostMetadata)
			}
		case "filter_chain_name":
			return strProp("") // no filter chains: Envoy's empty name
		}
	case objFilterState: // FilterStateWrapper over what set_property stored
		if k, ok := bytes.CutPrefix(f, []byte("wasm.")); ok && a.c != nil {
			if val, ok := a.c.props[string(k)]; ok {
				return prop{kind: propBytes, b: val}, true
			}
		}
	}
	return prop{}, false
}

// headerEntry is Envoy's convertHeaderEntry of one inline header: its
// first value.
func headerEntry(h Headers, key string) (prop, bool) {
	val, ok := h.Get(key)
	return prop{kind: propString, s: val}, ok
}

// headerValue is HeadersWrapper's lookup: all values of the header joined
// by "," (Http::HeaderUtility::getAllOfHeaderAsString).
func headerValue(h Headers, key []byte) (prop, bool) {
	first, n := -1, 0
	for i := range h {
		if h[i].Key == string(key) {
			if first < 0 {
				first = i
			}
			n++
		}
	}
	switch {
	case n == 0:
		return prop{}, false
	case n == 1:
		return strProp(h[first].Value)
	}
	var b strings.Builder
	for i := range h {
		if h[i].Key == string(key) {
			if b.Len() > 0 || i != first {
				b.WriteByte(',')
			}
			b.WriteString(h[i].Value)
		}
	}
	return strProp(b.String())
}

// headerBytes is Envoy's HeaderMap::byteSize: the keys' and values' bytes.
func headerBytes(h Headers) int {
	n := 0
	for i := range h {
		n += len(h[i].Key) + len(h[i].Value)
	}
	return n
}

// portOf is PeerWrapper's port: the port of an "ip:port" address, an
// int64.
func portOf(addr string) (prop, bool) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return prop{}, false
	}
	n, err := strconv.ParseUint(addr[i+1:], 10, 16)
	if err != nil {
		return prop{}, false
	}
	return intProp(int64(n))
}

// anyProp is a Struct value: CelProtoWrapper's unwrapping of
// google.protobuf.Value.
func anyProp(x any) (prop, bool) {
	switch x := x.(type) {
	case nil:
		return prop{kind: propNull}, true
	case string:
		return strProp(x)
	case bool:
		return boolProp(x)
	case map[string]any:
		return structProp(x)
	case []any:
		return prop{kind: propList, l: x}, true
	}
	if f, ok := number(x); ok {
		return prop{kind: propDouble, n: math.Float64bits(f)}, true
	}
	return prop{}, false
}

// number is a Go number as a Struct's double.
func number(x any) (float64, bool) {
	switch x := x.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case int32:
		return float64(x), true
	case uint64:
		return float64(x), true
	case uint32:
		return float64(x), true
	case interface{ Float64() (float64, error) }: // json.Number
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}

// serialize is Envoy's serializeValue; ok false is SERIALIZATION_FAILURE.
// Scalars are written into scratch (8 bytes) so that they need no
// allocation.
func (p prop) serialize(buf []byte) ([]byte, bool) {
	switch p.kind {
	case propString:
		return nil, true // the caller copies p.s
	case propBytes:
		return p.b, true
	case propInt, propUint, propDouble:
		return binary.LittleEndian.AppendUint64(buf[:0], p.n), true
	case propBool:
		return append(buf[:0], byte(p.n)), true
	case propHeaders:
		return appendHeaderPairs(buf[:0], p.h), true
	case propStruct:
		return structPairs(p.m)
	case propList:
		return listPairs(p.l)
	case propMetaMap:
		pairs := make([]pair, 0, len(p.md))
		for _, k := range sortedKeys(p.md) {
			val, ok := structPairs(p.md[k])
			if !ok {
				return nil, false
			}
			pairs = append(pairs, pair{k, val})
		}
		return marshalPairs(pairs), true
	case propMetadata:
		return appendMetadata(nil, p.md), true
	case propNode:
		return appendNode(nil, p.node), true
	}
	return nil, false // null, a wrapper
}

type pair struct {
	k string
	v []byte
}

// marshalPairs is cpp-host's exports::marshalPairs.
func marshalPairs(pairs []pair) []byte {
	n := 4
	for _, p := range pairs {
		n += 8 + len(p.k) + len(p.v) + 2
	}
	b := make([]byte, n)
	binary.LittleEndian.PutUint32(b, uint32(len(pairs)))
	sizes, data := b[4:], b[4+8*len(pairs):]
	for i, p := range pairs {
		binary.LittleEndian.PutUint32(sizes[8*i:], uint32(len(p.k)))
		binary.LittleEndian.PutUint32(sizes[8*i+4:], uint32(len(p.v)))
		m := copy(data, p.k)
		data = data[m+1:]
		m = copy(data, p.v)
		data = data[m+1:]
	}
	return b
}

// appendHeaderPairs appends a header map serialized as Envoy's
// HeadersWrapper is: each name once, in the order it first appears, its
// values joined by ",". A small map (the common request) is done in place,
// finding a name's other values by scanning, so that only b may grow.
func appendHeaderPairs(b []byte, h Headers) []byte {
	if len(h) > 32 {
		return append(b, headerPairs(h)...)
	}
	first := func(i int) bool {
		for j := range i {
			if h[j].Key == h[i].Key {
				return false
			}
		}
		return true
	}
	n, size := 0, 4
	for i := range h {
		if first(i) {
			n++
			size += 8 + len(h[i].Key) + 2 + len(h[i].Value)
		} else {
			size += 1 + len(h[i].Value)
		}
	}
	b = slices.Grow(b, size)
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	for i := range h {
		if !first(i) {
			continue
		}
		vlen := len(h[i].Value)
		for j := i + 1; j < len(h); j++ {
			if h[j].Key == h[i].Key {
				vlen += 1 + len(h[j].Value)
			}
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(len(h[i].Key)))
		b = binary.LittleEndian.AppendUint32(b, uint32(vlen))
	}
	for i := range h {
		if !first(i) {
			continue
		}
		b = append(append(b, h[i].Key...), 0)
		b = append(b, h[i].Value...)
		for j := i + 1; j < len(h); j++ {
			if h[j].Key == h[i].Key {
				b = append(append(b, ','), h[j].Value...)
			}
		}
		b = append(b, 0)
	}
	return b
}

// headerPairs is appendHeaderPairs for any size of map.
func headerPairs(h Headers) []byte {
	pairs := make([]pair, 0, len(h))
	index := make(map[string]int, len(h))
	for i := range h {
		if k, ok := index[h[i].Key]; ok {
			pairs[k].v = append(append(pairs[k].v, ','), h[i].Value...)
			continue
		}
		index[h[i].Key] = len(pairs)
		pairs = append(pairs, pair{h[i].Key, []byte(h[i].Value)})
	}
	return marshalPairs(pairs)
}

func serializeAny(x any) ([]byte, bool) {
	p, ok := anyProp(x)
	if !ok {
		return nil, false
	}
	if p.kind == propString {
		return []byte(p.s), true
	}
	var scratch [8]byte
	b, ok := p.serialize(scratch[:])
	return bytes.Clone(b), ok
}

func structPairs(m map[string]any) ([]byte, bool) {
	pairs := make([]pair, 0, len(m))
	for _, k := range sortedKeys(m) {
		val, ok := serializeAny(m[k])
		if !ok {
			return nil, false
		}
		pairs = append(pairs, pair{k, val})
	}
	return marshalPairs(pairs), true
}

func listPairs(l []any) ([]byte, bool) {
	pairs := make([]pair, 0, len(l))
	for _, x := range l {
		val, ok := serializeAny(x)
		if !ok {
			return nil, false
		}
		pairs = append(pairs, pair{string(val), nil})
	}
	return marshalPairs(pairs), true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Protobuf's binary encoding of the messages an attribute can be (map
// entries in key order, as protobuf's deterministic serialization).

func appendVarint(b []byte, x uint64) []byte {
	for x >= 0x80 {
		b = append(b, byte(x)|0x80)
		x >>= 7
	}
	return append(b, byte(x))
}

func appendLen(b []byte, field int, data []byte) []byte {
	b = appendVarint(b, uint64(field)<<3|2)
	b = appendVarint(b, uint64(len(data)))
	return append(b, data...)
}

// appendMetadata: Metadata{map<string, Struct> filter_metadata = 1}.
func appendMetadata(b []byte, md Metadata) []byte {
	for _, k := range sortedKeys(md) {
		entry := appendLen(nil, 1, []byte(k))
		entry = appendLen(entry, 2, appendStruct(nil, md[k]))
		b = appendLen(b, 1, entry)
	}
	return b
}

// appendNode: Node{string id = 1; string cluster = 2; Struct metadata = 3}.
func appendNode(b []byte, n *Node) []byte {
	if n.ID != "" {
		b = appendLen(b, 1, []byte(n.ID))
	}
	if n.Cluster != "" {
		b = appendLen(b, 2, []byte(n.Cluster))
	}
	if n.Metadata != nil {
		b = appendLen(b, 3, appendStruct(nil, n.Metadata))
	}
	return b
}

// appendStruct: Struct{map<string, Value> fields = 1}.
func appendStruct(b []byte, m map[string]any) []byte {
	for _, k := range sortedKeys(m) {
		entry := appendLen(nil, 1, []byte(k))
		entry = appendLen(entry, 2, appendValue(nil, m[k]))
		b = appendLen(b, 1, entry)
	}
	return b
}

// appendValue: Value{oneof kind: null_value = 1, number_value = 2,
// string_value = 3, bool_value = 4, struct_value = 5, list_value = 6}.
func appendValue(b []byte, x any) []byte {
	switch x := x.(type) {
	case nil:
		return append(b, 1<<3|0, 0)
	case string:
		return appendLen(b, 3, []byte(x))
	case bool:
		return append(b, 4<<3|0, byte(b2u(x)))
	case map[string]any:
		return appendLen(b, 5, appendStruct(nil, x))
	case []any:
		var list []byte
		for _, e := range x {
			list = appendLen(list, 1, appendValue(nil, e))
		}
		return appendLen(b, 6, list)
	}
	if f, ok := number(x); ok {
		b = append(b, 2<<3|1)
		return binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
	}
	return append(b, 1<<3|0, 0) // not a Struct value: null
}

// equalMetadata and equalAny compare metadata (PluginConfig.same).
func equalMetadata(a, b Metadata) bool {
	if len(a) != len(b) || (a == nil) != (b == nil) {
		return false
	}
	for k, x := range a {
		y, ok := b[k]
		if !ok || !equalAny(x, y) {
			return false
		}
	}
	return true
}

func equalAny(x, y any) bool {
	switch x := x.(type) {
	case map[string]any:
		y, ok := y.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, e := range x {
			f, ok := y[k]
			if !ok || !equalAny(e, f) {
				return false
			}
		}
		return true
	case []any:
		y, ok := y.([]any)
		return ok && slices.EqualFunc(x, y, equalAny)
	case nil, string, bool:
		return x == y
	}
	f, ok1 := number(x)
	g, ok2 := number(y)
	return ok1 && ok2 && f == g
}
