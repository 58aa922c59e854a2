package abi

import (
	"bytes"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// StatusError is an error a ForeignFunc returns to answer the plugin with
// a status of its own (Envoy's foreign functions answer BAD_ARGUMENT,
// NOT_FOUND or SERIALIZATION_FAILURE where their input is wrong); any
// other error is INTERNAL_FAILURE.
type StatusError struct {
	Status Status
	Err    error
}

func (e *StatusError) Error() string {
	if e.Err == nil {
		return e.Status.String()
	}
	return e.Status.String() + ": " + e.Err.Error()
}

func (e *StatusError) Unwrap() error { return e.Err }

// Caller is the plugin context a foreign function was called from. It is
// valid only during the call (the VM runs nothing else meanwhile).
type Caller struct{ v *vm }

// CallerOf returns the caller of the foreign function that ctx is the
// context of; ok false outside a foreign function call.
func CallerOf(ctx context.Context) (Caller, bool) {
	v := vmOf(ctx)
	if v == nil || v.eff == nil {
		return Caller{}, false
	}
	return Caller{v}, true
}

// Plugin returns the calling plugin's configuration.
func (c Caller) Plugin() PluginConfig {
	if p := c.v.plugin(); p != nil {
		return p.cfg
	}
	return PluginConfig{}
}

// Property answers as proxy_get_property would for path: Envoy's
// serialization of the attribute, or the status (NOT_FOUND,
// SERIALIZATION_FAILURE).
func (c Caller) Property(path ...string) ([]byte, Status) {
	val, ok := c.v.lookupProperty([]byte(strings.Join(path, "\x00")))
	if !ok {
		return nil, StatusNotFound
	}
	if val.kind == propString {
		return []byte(val.s), StatusOK
	}
	var scratch [8]byte
	b, ok := val.serialize(scratch[:])
	if !ok {
		return nil, StatusSerializationFailure
	}
	return bytes.Clone(b), StatusOK
}

// Value returns the attribute at path as a Go value, for expression
// languages: string, []byte, int64, uint64, float64, bool, time.Time
// (request.time), time.Duration (request.duration), nil (a null),
// []any, map[string]any (header maps as map[string]string; Envoy's
// request, response, connection, upstream, source, destination and xds as
// maps of the fields known now; Metadata as {"filter_metadata": ...};
// Node as {"id", "cluster", "metadata"}). ok false is NOT_FOUND.
func (c Caller) Value(path ...string) (any, bool) {
	if len(path) == 0 {
		return nil, false
	}
	val, ok := c.v.lookupProperty([]byte(strings.Join(path, "\x00")))
	if !ok {
		return nil, false
	}
	var a attrStream
	c.v.attrStream(&a)
	return c.v.goValue(&a, val, path[len(path)-1])
}

// RootData returns the value the plugin's root context keeps under key
// for foreign functions (Envoy's getForeignData/setForeignData: CEL keeps
// its expressions there), creating it with create the first time. It goes
// away with the root context.
func (c Caller) RootData(key string, create func() any) any {
	r := c.v.eff
	if r.root != nil {
		r = r.root
	}
	if x, ok := r.foreign[key]; ok {
		return x
	}
	if r.foreign == nil {
		r.foreign = map[string]any{}
	}
	x := create()
	r.foreign[key] = x
	return x
}

// SerializeValue encodes a Go value (the kinds Caller.Value returns) as
// proxy_get_property does (Envoy's serializeValue); ok false is
// SERIALIZATION_FAILURE (a null, a type it cannot encode).
func SerializeValue(x any) ([]byte, bool) {
	var b [8]byte
	switch x := x.(type) {
	case time.Time:
		return appendLE(b[:0], uint64(x.UnixNano())), true
	case time.Duration:
		return appendLE(b[:0], uint64(x)), true
	case int64:
		return appendLE(b[:0], uint64(x)), true
	case uint64:
		return appendLE(b[:0], x), true
	case []byte:
		return bytes.Clone(x), true
	case map[string]string:
		pairs := make([]pair, 0, len(x))
		for _, k := range sortedKeys(x) {
			pairs = append(pairs, pair{k, []byte(x[k])})
		}
		return marshalPairs(pairs), true
	case map[string]any:
		pairs := make([]pair, 0, len(x))
		for _, k := range sortedKeys(x) {
			v, ok := SerializeValue(x[k])
			if !ok {
				return nil, false
			}
			pairs = append(pairs, pair{k, v})
		}
		return marshalPairs(pairs), true
	case []any:
		pairs := make([]pair, 0, len(x))
		for _, e := range x {
			v, ok := SerializeValue(e)
			if !ok {
				return nil, false
			}
			pairs = append(pairs, pair{string(v), nil})
		}
		return marshalPairs(pairs), true
	}
	return serializeAny(x)
}

func appendLE(b []byte, n uint64) []byte {
	for i := 0; i < 8; i++ {
		b = append(b, byte(n>>(8*i)))
	}
	return b
}

// attrStream fills a with what the effective context is a stream of.
func (v *vm) attrStream(a *attrStream) {
	if c := v.eff; c != nil {
		a.c = c
		if c.http != nil {
			a.st, a.info = &c.http.stream, c.http.info
		} else if c.tcp != nil {
			a.st, a.info = &c.tcp.stream, c.tcp.info
		}
	}
}

// The fields of Envoy's wrappers, for goValue.
var objFields = map[objKind][]string{
	objRequest: {"path", "url_path", "host", "scheme", "method", "referer", "useragent", "id", "query",
		"headers", "headers_bytes", "time", "size", "total_size", "duration", "protocol"},
	objResponse:    {"code", "code_details", "headers", "headers_bytes", "trailers", "grpc_status", "size", "total_size"},
	objConnection:  {"mtls", "requested_server_name", "id", "termination_details", "tls_version", "subject_local_certificate", "subject_peer_certificate", "uri_san_local_certificate", "uri_san_peer_certificate", "dns_san_local_certificate", "dns_san_peer_certificate", "sha256_peer_certificate_digest"},
	objUpstream:    {"address", "port", "local_address"},
	objSource:      {"address", "port"},
	objDestination: {"address", "port"},
	objXDS: {"node", "cluster_name", "cluster_metadata", "route_name", "route_metadata", "virtual_host_name",
		"virtual_host_metadata", "upstream_host_metadata", "filter_chain_name", "listener_metadata", "listener_direction"},
}

// goValue converts an attribute to a Go value; name is its last segment
// (request.time and request.duration are a time and a duration).
func (v *vm) goValue(a *attrStream, p prop, name string) (any, bool) {
	switch p.kind {
	case propString:
		return p.s, true
	case propBytes:
		return bytes.Clone(p.b), true
	case propInt:
		switch name {
		case "time":
			return time.Unix(0, int64(p.n)).UTC(), true
		case "duration", "backend_latency":
			return time.Duration(int64(p.n)), true
		}
		return int64(p.n), true
	case propUint:
		return p.n, true
	case propDouble:
		return math.Float64frombits(p.n), true
	case propBool:
		return p.n != 0, true
	case propNull:
		return nil, true
	case propHeaders:
		m := make(map[string]string, len(p.h))
		for i := range p.h {
			if prev, ok := m[p.h[i].Key]; ok {
				m[p.h[i].Key] = prev + "," + p.h[i].Value
			} else {
				m[p.h[i].Key] = p.h[i].Value
			}
		}
		return m, true
	case propStruct:
		return p.m, true
	case propList:
		return p.l, true
	case propMetadata:
		fm := make(map[string]any, len(p.md))
		for k, s := range p.md {
			fm[k] = s
		}
		return map[string]any{"filter_metadata": fm}, true
	case propMetaMap:
		fm := make(map[string]any, len(p.md))
		for k, s := range p.md {
			fm[k] = s
		}
		return fm, true
	case propNode:
		return map[string]any{"id": p.node.ID, "cluster": p.node.Cluster, "metadata": p.node.Metadata}, true
	case propObject:
		m := map[string]any{}
		for _, f := range objFields[p.obj] {
			if fv, ok := v.objField(a, p.obj, []byte(f)); ok {
				if x, ok := v.goValue(a, fv, f); ok {
					m[f] = x
				}
			}
		}
		return m, true
	}
	return nil, false
}

// EnvoyForeignFunctions returns the foreign functions Envoy registers for
// every plugin that need nothing beyond the standard library
// (source/extensions/common/wasm/foreign.cc): compress and uncompress
// (zlib), declare_property and clear_route_cache. Give them (and your
// own) in Options.ForeignFunctions; abi/celexpr has Envoy's expr_create,
// expr_evaluate and expr_delete.
func EnvoyForeignFunctions() map[string]ForeignFunc {
	return map[string]ForeignFunc{
		"compress":          compressFunc,
		"uncompress":        uncompressFunc,
		"declare_property":  declareProperty,
		"clear_route_cache": clearRouteCache,
	}
}

// compressFunc is Envoy's "compress": zlib's compress() (the zlib format,
// default level) of the arguments.
func compressFunc(_ context.Context, args []byte) ([]byte, error) {
	var b bytes.Buffer
	w := zlib.NewWriter(&b)
	if _, err := w.Write(args); err != nil {
		return nil, &StatusError{StatusSerializationFailure, err}
	}
	if err := w.Close(); err != nil {
		return nil, &StatusError{StatusSerializationFailure, err}
	}
	return b.Bytes(), nil
}

// maxUncompressed bounds what uncompress produces: a plugin may not make
// the host inflate a zlib bomb into its memory.
const maxUncompressed = 64 << 20

// uncompressFunc is Envoy's "uncompress": zlib's uncompress();
// SERIALIZATION_FAILURE for data that is not zlib (and, anywasm's bound,
// for more than 64 MiB of output).
func uncompressFunc(_ context.Context, args []byte) ([]byte, error) {
	r, err := zlib.NewReader(bytes.NewReader(args))
	if err != nil {
		return nil, &StatusError{StatusSerializationFailure, err}
	}
	out, err := io.ReadAll(io.LimitReader(r, maxUncompressed+1))
	if err != nil {
		return nil, &StatusError{StatusSerializationFailure, err}
	}
	if len(out) > maxUncompressed {
		return nil, &StatusError{StatusSerializationFailure, fmt.Errorf("more than %d bytes uncompressed", maxUncompressed)}
	}
	return out, nil
}

// clearRouteCache is Envoy's "clear_route_cache": the route is computed
// again from the headers. anywasm's embedders route by the request as the
// plugins left it anyway (the attributes keep the first route): OK.
func clearRouteCache(ctx context.Context, _ []byte) ([]byte, error) { return nil, nil }

// propertyPrototype is Envoy's CelStatePrototype of a declared property.
type propertyPrototype struct {
	readonly bool
	typ      uint64 // WasmType: 0 bytes, 1 string, 2 flatbuffers, 3 protobuf
}

// declareProperty is Envoy's "declare_property" (DeclarePropertyArguments:
// name 1, readonly 2, type 3, schema 4, span 5) and
// Context::declareProperty: the first declaration of a name holds
// (BAD_ARGUMENT for a second); a readonly property can be set once per
// stream.
func declareProperty(ctx context.Context, args []byte) ([]byte, error) {
	c, ok := CallerOf(ctx)
	if !ok {
		return nil, &StatusError{Status: StatusBadArgument}
	}
	var name string
	var proto propertyPrototype
	err := parseProto(args, func(field int, varint uint64, data []byte) {
		switch field {
		case 1:
			name = string(data)
		case 2:
			proto.readonly = varint != 0
		case 3:
			proto.typ = varint
		}
	})
	if err != nil {
		return nil, &StatusError{StatusBadArgument, err}
	}
	root := c.v.eff
	if root.root != nil {
		root = root.root
	}
	if _, dup := root.declared[name]; dup {
		return nil, &StatusError{StatusBadArgument, fmt.Errorf("property %q is declared already", name)}
	}
	if max := c.v.group.host.opts.Limits.MaxProperties; len(root.declared) >= max {
		return nil, &StatusError{StatusBadArgument, fmt.Errorf("property %q: the root context declared %d properties already (Limits.MaxProperties)", name, max)}
	}
	if root.declared == nil {
		root.declared = map[string]propertyPrototype{}
	}
	root.declared[name] = proto
	return nil, nil
}

// parseProto walks a protobuf message's fields (varints and
// length-delimited only; fixed-size fields are skipped).
func parseProto(b []byte, f func(field int, varint uint64, data []byte)) error {
	for len(b) > 0 {
		tag, n := uvarint(b)
		if n <= 0 {
			return errors.New("bad tag")
		}
		b = b[n:]
		field, wire := int(tag>>3), tag&7
		switch wire {
		case 0:
			x, n := uvarint(b)
			if n <= 0 {
				return errors.New("bad varint")
			}
			b = b[n:]
			f(field, x, nil)
		case 2:
			l, n := uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return errors.New("bad length")
			}
			f(field, 0, b[n:n+int(l)])
			b = b[n+int(l):]
		case 1:
			if len(b) < 8 {
				return errors.New("short fixed64")
			}
			b = b[8:]
		case 5:
			if len(b) < 4 {
				return errors.New("short fixed32")
			}
			b = b[4:]
		default:
			return fmt.Errorf("wire type %d", wire)
		}
	}
	return nil
}

func uvarint(b []byte) (uint64, int) {
	var x uint64
	for i := 0; i < len(b) && i < 10; i++ {
		x |= uint64(b[i]&0x7f) << (7 * i)
		if b[i] < 0x80 {
			return x, i + 1
		}
	}
	return 0, 0
}

// allowed reports whether the plugin may call the foreign function name
// (PluginConfig.ForeignFunctions).
func (p *Plugin) allowed(name []byte) bool {
	return p.cfg.ForeignFunctions == nil || slices.Contains(p.cfg.ForeignFunctions, string(name))
}

// CallForeignFunction runs the plugin's proxy_on_foreign_function(root
// context, id, len(args)) on each of its live VMs, with args as buffer
// type FOREIGN_FUNCTION_ARGUMENTS (8): how a host hands a plugin an event
// of its own (Envoy's Context::onForeignFunction). It returns the number of
// VMs that ran it (0 when the plugin does not export the callback) and the
// first plugin failure.
func (p *Plugin) CallForeignFunction(ctx context.Context, id uint32, args []byte) (int, error) {
	n := 0
	var first error
	for _, v := range p.group.liveVMs() {
		v.mu.Lock()
		if root := v.roots[p]; root != nil && v.cb.foreignFunction.f != nil && !v.closed && !v.failed.Load() {
			v.callData = append([]byte{}, args...)
			_, err := v.call(context.WithoutCancel(ctx), root, v.cb.foreignFunction, "proxy_on_foreign_function",
				uint64(root.id), uint64(id), uint64(len(args)))
			v.callData = nil
			n++
			if err != nil && first == nil {
				first = err
			}
		}
		v.mu.Unlock()
	}
	return n, first
}
