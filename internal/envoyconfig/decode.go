package envoyconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"sigs.k8s.io/yaml"

	// The types an Any (typed_config, configuration) may hold; protojson
	// finds them in the global registry.
	_ "github.com/cncf/xds/go/udpa/type/v1"
	_ "github.com/cncf/xds/go/xds/type/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/wasm/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	_ "google.golang.org/protobuf/types/known/wrapperspb"
)

// typedStructs are the wrappers that carry a message as a Struct
// ({type_url, value}); Envoy, and the Go SDK's examples, use them in
// typed_config.
var typedStructs = map[protoreflect.FullName]bool{
	"udpa.type.v1.TypedStruct": true,
	"xds.type.v3.TypedStruct":  true,
}

// IsBootstrap reports whether a configuration file (YAML or JSON) is an
// Envoy bootstrap: whether it has a top-level key of Envoy's Bootstrap
// other than node and admin, which anywasm's format has too.
func IsBootstrap(b []byte) (bool, error) {
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return false, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(j, &top); err != nil {
		return false, err
	}
	fields := (&bootstrapv3.Bootstrap{}).ProtoReflect().Descriptor().Fields()
	for k := range top {
		if k == "node" || k == "admin" {
			continue
		}
		if fields.ByName(protoreflect.Name(k)) != nil || fields.ByJSONName(k) != nil {
			return true, nil
		}
	}
	return false, nil
}

// decode reads an Envoy bootstrap: YAML to JSON (sigs.k8s.io/yaml), the
// JSON normalized against the descriptors (below), then protojson and
// Envoy's generated validation. It returns the paths of the Anys that
// were written as TypedStructs (for error paths).
//
// The top-level anywasm block (own.go) is taken out first and returned
// apart (nil without one).
func decode(b []byte) (*bootstrapv3.Bootstrap, map[string]bool, *own, error) {
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, nil, nil, err
	}
	d := json.NewDecoder(bytes.NewReader(j))
	d.UseNumber()
	var raw any
	if err := d.Decode(&raw); err != nil {
		return nil, nil, nil, err
	}
	var o *own
	if top, ok := raw.(map[string]any); ok {
		if v, ok := top[ownKey]; ok {
			delete(top, ownKey)
			if o, err = decodeOwn(v); err != nil {
				return nil, nil, nil, err
			}
		}
	}
	n := &normalizer{typedStruct: map[string]bool{}}
	raw = n.message(raw, (&bootstrapv3.Bootstrap{}).ProtoReflect().Descriptor(), "")
	if len(n.errs) > 0 {
		return nil, nil, nil, errors.Join(n.errs...)
	}
	j, err = json.Marshal(raw)
	if err != nil {
		return nil, nil, nil, err
	}
	var bs bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(j, &bs); err != nil {
		return nil, nil, nil, err
	}
	if err := bs.ValidateAll(); err != nil {
		return nil, nil, nil, fmt.Errorf("Envoy's validation: %w", err)
	}
	return &bs, n.typedStruct, o, nil
}

// normalizer prepares decoded JSON for protojson as Envoy reads its
// files: enum values in any case (Envoy's loader parses enums case
// insensitively: the Go SDK's examples write "codec_type: auto", "type:
// strict_dns"), TypedStructs unwrapped into the Any of their type. It
// names, by path, fields that are not Envoy's and Any types that are
// unknown here, which protojson would report by offset in the JSON.
type normalizer struct {
	errs        []error
	typedStruct map[string]bool
}

func (n *normalizer) fail(path, format string, args ...any) {
	n.errs = append(n.errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// message normalizes v, the JSON of a message of type d.
func (n *normalizer) message(v any, d protoreflect.MessageDescriptor, path string) any {
	if d.FullName() == "google.protobuf.Any" {
		return n.any(v, path)
	}
	if strings.HasPrefix(string(d.FullName()), "google.protobuf.") {
		return v // well-known types have JSON forms of their own
	}
	m, ok := v.(map[string]any)
	if !ok {
		return v // protojson refuses it
	}
	fields := d.Fields()
	for _, k := range sortedKeys(m) {
		fd := fields.ByName(protoreflect.Name(k))
		if fd == nil {
			fd = fields.ByJSONName(k)
		}
		if fd == nil {
			n.fail(join(path, k), "unknown field (not in Envoy's %s)", d.FullName())
			continue
		}
		m[k] = n.field(m[k], fd, join(path, k))
	}
	return m
}

func (n *normalizer) field(v any, fd protoreflect.FieldDescriptor, path string) any {
	switch {
	case fd.IsMap():
		if m, ok := v.(map[string]any); ok {
			for _, k := range sortedKeys(m) {
				m[k] = n.single(m[k], fd.MapValue(), join(path, k))
			}
		}
	case fd.IsList():
		if l, ok := v.([]any); ok {
			for i := range l {
				l[i] = n.single(l[i], fd, fmt.Sprintf("%s[%d]", path, i))
			}
		}
	default:
		return n.single(v, fd, path)
	}
	return v
}

// single normalizes one value of a field (an element of a list or map).
func (n *normalizer) single(v any, fd protoreflect.FieldDescriptor, path string) any {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return n.message(v, fd.Message(), path)
	case protoreflect.EnumKind:
		s, ok := v.(string)
		if !ok {
			return v
		}
		vals := fd.Enum().Values()
		if vals.ByName(protoreflect.Name(s)) == nil && vals.ByName(protoreflect.Name(strings.ToUpper(s))) != nil {
			return strings.ToUpper(s)
		}
	}
	return v
}

// any normalizes an Any: its @type must be known; a TypedStruct becomes
// the Any of the type it carries.
func (n *normalizer) any(v any, path string) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	url, _ := m["@type"].(string)
	if url == "" {
		n.fail(join(path, "@type"), "missing")
		return v
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(url)
	if err != nil {
		n.fail(join(path, "@type"), "%s: not supported by anywasm", url)
		return v
	}
	d := mt.Descriptor()
	if !typedStructs[d.FullName()] {
		return n.body(m, d, url, path)
	}
	for _, k := range sortedKeys(m) {
		if k != "@type" && k != "type_url" && k != "value" {
			n.fail(join(path, k), "unknown field (not in Envoy's %s)", d.FullName())
		}
	}
	inner, _ := m["type_url"].(string)
	value, ok := m["value"].(map[string]any)
	if m["value"] == nil {
		value, ok = map[string]any{}, true
	}
	if inner == "" || !ok {
		n.fail(path, "a %s needs a type_url and a value object", d.FullName())
		return v
	}
	mt, err = protoregistry.GlobalTypes.FindMessageByURL(inner)
	if err != nil {
		n.fail(join(path, "type_url"), "%s: not supported by anywasm", inner)
		return v
	}
	if strings.HasPrefix(string(mt.Descriptor().FullName()), "google.protobuf.") {
		n.fail(join(path, "type_url"), "%s in a %s: not supported by anywasm", inner, d.FullName())
		return v
	}
	n.typedStruct[path] = true
	return n.body(value, mt.Descriptor(), inner, join(path, "value"))
}

// body normalizes the fields of an Any (m without its @type) of type d.
func (n *normalizer) body(m map[string]any, d protoreflect.MessageDescriptor, url, path string) any {
	if strings.HasPrefix(string(d.FullName()), "google.protobuf.") {
		return m // {"@type": ..., "value": ...}
	}
	body := map[string]any{}
	for k, e := range m {
		if k != "@type" {
			body[k] = e
		}
	}
	body, _ = n.message(body, d, path).(map[string]any)
	body["@type"] = url
	return body
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
