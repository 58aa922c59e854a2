package abi_test

import (
	"context"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
)

// Expected encodings (Envoy's serializeValue).
func i64(n int64) string { return hexOf(binary.LittleEndian.AppendUint64(nil, uint64(n))) }
func f64(f float64) string {
	return hexOf(binary.LittleEndian.AppendUint64(nil, math.Float64bits(f)))
}
func hexOf(b []byte) string { return "hex:" + hex.EncodeToString(b) }
func str(s string) string   { return hexOf([]byte(s)) }

// pairs is cpp-host's marshalPairs.
func pairs(kv ...string) string {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(kv)/2))
	for i := 0; i < len(kv); i += 2 {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(kv[i])))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(kv[i+1])))
	}
	for _, s := range kv {
		b = append(append(b, s...), 0)
	}
	return hexOf(b)
}

func raw(h string) string { b, _ := hex.DecodeString(strings.TrimPrefix(h, "hex:")); return string(b) }

// structBytes is protobuf's encoding of m as a google.protobuf.Struct.
func structBytes(t *testing.T, m map[string]any) []byte {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// metadataBytes is protobuf's encoding of a config.core.v3.Metadata with
// one filter_metadata entry (field 1: map<string, Struct>).
func metadataBytes(t *testing.T, filter string, m map[string]any) string {
	entry := protowire.AppendTag(nil, 1, protowire.BytesType)
	entry = protowire.AppendString(entry, filter)
	entry = protowire.AppendTag(entry, 2, protowire.BytesType)
	entry = protowire.AppendBytes(entry, structBytes(t, m))
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	return hexOf(protowire.AppendBytes(b, entry))
}

const (
	notFound      = "error:error status returned by host: not found"
	serialization = "error:unknown status code: 3" // the SDK has no name for SERIALIZATION_FAILURE
)

// TestAttributes: Envoy's attributes through proxy_get_property, read by a
// Go-SDK plugin in each phase of an HTTP stream, with Envoy's encodings
// (context.cc serializeValue) and NOT_FOUND for what is not known (yet).
func TestAttributes(t *testing.T) {
	start := time.Date(2026, 12, 2, 10, 0, 0, 123456789, time.UTC)
	routeMeta := map[string]any{"auth": "x-token", "n": 3.0, "on": true, "list": []any{"a", "b"}, "nested": map[string]any{"k": "v"}}
	nodeMeta := map[string]any{"region": "eu", "weight": 2.0}
	cases := []struct{ phase, path, want string }{
		{"configure", "plugin_name", str("attrs")},
		{"configure", "plugin_root_id", str("root-a")},
		{"configure", "plugin_vm_id", str("vm-attrs")},
		{"configure", "node/id", str("node-1")},
		{"configure", "xds/node/cluster", str("edge")},
		{"configure", "node/metadata/region", str("eu")},
		{"configure", "node/metadata/weight", f64(2)},
		{"configure", "listener_direction", i64(2)},
		{"configure", "xds/listener_direction", i64(2)},
		{"configure", "listener_metadata/filter_metadata/envoy.filters.listener/k", str("v")},
		{"configure", "request/path", notFound},
		{"configure", "source/address", notFound},
		{"configure", "xds/route_name", notFound},
		{"configure", "no_such_attribute", notFound},

		{"request", "request/path", str("/a/b?x=1#f")},
		{"request", "request/url_path", str("/a/b")},
		{"request", "request/query", str("x=1")},
		{"request", "request/host", str("example.com")},
		{"request", "request/scheme", str("https")},
		{"request", "request/method", str("POST")},
		{"request", "request/referer", str("https://ref/")},
		{"request", "request/useragent", str("ua/1")},
		{"request", "request/id", str("rid-7")},
		{"request", "request/protocol", str("HTTP/1.1")},
		{"request", "request/time", i64(start.UnixNano())},
		{"request", "request/headers/x-multi", str("a,b")},
		{"request", "request/headers/x-none", notFound},
		{"request", "request/size", i64(5)}, // content-length
		{"request", "request/duration", notFound},
		{"request", "request", serialization}, // Envoy's wrappers list no keys
		{"request", "response/code", notFound},
		{"request", "response/headers", pairs()},
		{"request", "source/address", str("10.0.0.1:5555")},
		{"request", "source/port", i64(5555)},
		{"request", "destination/address", str("127.0.0.1:8080")},
		{"request", "destination/port", i64(8080)},
		{"request", "connection/id", i64(42)},
		{"request", "connection_id", i64(42)},
		{"request", "connection/mtls", hexOf([]byte{0})},
		{"request", "connection/requested_server_name", "hex:"},
		{"request", "connection/tls_version", notFound},
		{"request", "upstream/address", notFound},
		{"request", "xds/cluster_name", str("backend")},
		{"request", "cluster_name", str("backend")},
		{"request", "xds/cluster_metadata/filter_metadata/istio/app", str("b")},
		{"request", "xds/route_name", str("r1")},
		{"request", "route_name", str("r1")},
		{"request", "xds/virtual_host_name", str("vh")},
		{"request", "route_metadata/filter_metadata/envoy.filters.http.wasm/auth", str("x-token")},
		{"request", "xds/route_metadata/filter_metadata/envoy.filters.http.wasm/n", f64(3)},
		{"request", "xds/route_metadata/filter_metadata/envoy.filters.http.wasm/on", hexOf([]byte{1})},
		{"request", "xds/route_metadata/filter_metadata/envoy.filters.http.wasm/list", pairs("a", "", "b", "")},
		{"request", "xds/route_metadata/filter_metadata/envoy.filters.http.wasm/list/1", str("b")},
		{"request", "xds/route_metadata/filter_metadata/envoy.filters.http.wasm/nested", pairs("k", "v")},
		{"request", "xds/route_metadata/filter_metadata/envoy.filters.http.wasm/none", notFound},
		{"request", "xds/route_metadata/filter_metadata/envoy.filters.http.wasm",
			pairs("auth", "x-token", "list", raw(pairs("a", "", "b", "")), "n", raw(f64(3)), "nested", raw(pairs("k", "v")), "on", "\x01")},
		{"request", "route_metadata", metadataBytes(t, "envoy.filters.http.wasm", routeMeta)},
		{"request", "xds/upstream_host_metadata", notFound},
		{"request", "metadata", "hex:"}, // no dynamic metadata
		{"request", "xds/filter_chain_name", "hex:"},

		{"response", "response/code", i64(201)},
		{"response", "response/code_details", str("via_upstream")},
		{"response", "response/grpc_status", i64(7)},
		{"response", "response/headers/x-r", str("1")},
		{"response", "response/headers", pairs(":status", "201", "grpc-status", "7", "x-r", "1")},
		{"response", "response/flags", notFound},
		{"response", "request/size", i64(5)},
		{"response", "request/total_size", i64(5 + int64(headerBytes(attrReqHeaders)+headerBytes(propsAdded)))},
		{"response", "upstream/address", str("10.1.1.1:9000")},
		{"response", "upstream/port", i64(9000)},
		{"response", "upstream/local_address", str("10.0.0.9:40000")},
		{"response", "xds/upstream_host_metadata/filter_metadata/istio/h", str("v")},

		{"done", "response/size", i64(3)},
		{"done", "request/duration", i64(int64(5 * time.Second))},
	}
	var conf strings.Builder
	for _, c := range cases {
		fmt.Fprintf(&conf, "%s %s\n", c.phase, c.path)
	}
	node := &abi.Node{ID: "node-1", Cluster: "edge", Metadata: nodeMeta}
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		f := load(t, rt, "props", abi.PluginConfig{Name: "attrs", RootID: "root-a", VMID: "vm-attrs",
			Configuration: []byte(conf.String()), ListenerDirection: abi.DirectionOutbound,
			ListenerMetadata: abi.Metadata{"envoy.filters.listener": {"k": "v"}}},
			abi.Options{Node: node, Now: func() time.Time { return start.Add(5 * time.Second) }})
		info := &abi.StreamInfo{
			SourceAddress: "10.0.0.1:5555", DestinationAddress: "127.0.0.1:8080", ConnectionID: 42,
			Protocol: "HTTP/1.1", StartTime: start,
			Route:   &abi.RouteInfo{Name: "r1", VirtualHostName: "vh", Metadata: abi.Metadata{"envoy.filters.http.wasm": routeMeta}},
			Cluster: &abi.ClusterInfo{Name: "backend", Metadata: abi.Metadata{"istio": {"app": "b"}}},
		}
		s, err := f.p.NewHTTPStreamInfo(f.ctx, info)
		if err != nil {
			t.Fatal(err)
		}
		f.requestHeaders(s, attrReqHeaders.Clone(), false)
		if _, _, err := s.RequestBody(f.ctx, []byte("hello"), true); err != nil {
			t.Fatal(err)
		}
		info.SetUpstream("10.1.1.1:9000", "10.0.0.9:40000", abi.Metadata{"istio": {"h": "v"}})
		info.SetResponseCodeDetails("via_upstream")
		if _, err := s.ResponseHeaders(f.ctx, abi.Headers{{":status", "201"}, {"grpc-status", "7"}, {"x-r", "1"}}, false); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.ResponseBody(f.ctx, []byte("abc"), true); err != nil {
			t.Fatal(err)
		}
		f.close(s)
		for _, c := range cases {
			line := fmt.Sprintf("attr %s %s = %s", c.phase, c.path, c.want)
			if !f.logs.hasLine("INFO " + line) {
				t.Errorf("want %q; got %q", line, f.logs.find("attr "+c.phase+" "+c.path+" ="))
			}
		}
	})
}

var attrReqHeaders = abi.Headers{
	{":method", "POST"}, {":path", "/a/b?x=1#f"}, {":authority", "example.com"}, {":scheme", "https"},
	{"user-agent", "ua/1"}, {"referer", "https://ref/"}, {"x-request-id", "rid-7"},
	{"x-multi", "a"}, {"content-length", "5"}, {"x-multi", "b"},
}

// propsAdded are the headers the props plugin adds to a request.
var propsAdded = abi.Headers{{"x-plugin-name", "attrs"}, {"x-root-id", "root-a"}, {"x-vm-id", "vm-attrs"}, {"x-custom", "<missing>"}}

func headerBytes(h abi.Headers) int {
	n := 0
	for _, e := range h {
		n += len(e.Key) + len(e.Value)
	}
	return n
}

// TestAttributesTCP: a network plugin's proxy_on_new_connection sees the
// connection and its cluster; the upstream once it is known.
func TestAttributesTCP(t *testing.T) {
	cases := []struct{ path, want string }{
		{"source/address", str("10.0.0.1:5555")},
		{"destination/port", i64(9999)},
		{"connection/id", i64(7)},
		{"xds/cluster_name", str("db")},
		{"upstream/address", notFound},
		{"request/path", notFound},
	}
	var conf strings.Builder
	for _, c := range cases {
		fmt.Fprintf(&conf, "connection %s\n", c.path)
	}
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		f := load(t, rt, "props", abi.PluginConfig{Configuration: []byte(conf.String())}, abi.Options{})
		info := &abi.StreamInfo{SourceAddress: "10.0.0.1:5555", DestinationAddress: "127.0.0.1:9999", ConnectionID: 7,
			Cluster: &abi.ClusterInfo{Name: "db"}}
		s, _, err := f.p.NewTCPStreamInfo(context.Background(), info)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			line := fmt.Sprintf("attr connection %s = %s", c.path, c.want)
			if !f.logs.hasLine("INFO " + line) {
				t.Errorf("want %q; got %q", line, f.logs.find("attr connection "+c.path+" ="))
			}
		}
	})
}

//go:embed testdata/propalias.wasm
var propAliasWasm []byte

// TestPropertyBufferKeepsFilterState: a property the plugin set
// (filter_state.wasm.k) reads back unchanged after a read that serializes
// into the VM's reused buffer (request.headers): the buffer must never be
// the stored value itself. propalias.wat traps otherwise.
func TestPropertyBufferKeepsFilterState(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		h := abi.NewHost(rt, abi.Options{Logger: newSlog(&logSink{})})
		defer h.Close(ctx)
		p, err := h.Load(ctx, propAliasWasm, abi.PluginConfig{Name: "propalias"})
		if err != nil {
			t.Fatal(err)
		}
		s, err := p.NewHTTPStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close(ctx)
		hs := abi.Headers{{Key: ":path", Value: "/"}, {Key: ":method", Value: "GET"}, {Key: "x-a", Value: "1"}, {Key: "x-b", Value: "2"}}
		if a, err := s.RequestHeaders(ctx, hs, true); err != nil || a != abi.ActionContinue || s.Err() != nil {
			t.Fatalf("%v %v %v", a, err, s.Err())
		}
	})
}
