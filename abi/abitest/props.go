package abitest

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/anywasm/anywasm/abi"
)

// Properties are what proxy_get_property answers, beyond what the host
// knows itself (plugin_name, plugin_root_id, plugin_vm_id). In JSON either
// an object whose keys are paths with segments joined by "."
//
//	{"anywasm.custom": "value"}
//
// (so a key answers every path whose segments, joined by ".", give it), or
// an array of paths given as arrays of segments, for segments that hold a
// dot themselves (an item may give a "key" of the first form instead):
//
//	[{"path": ["route_metadata", "filter_metadata", "envoy.filters.http.wasm", "auth"], "value": "cookie"}]
//
// A value is a string (its bytes), an object of string values (a map,
// serialized as Proxy-Wasm pairs, the header-map serialization, as Envoy
// serializes CEL maps), an integer or a number with a fraction (8 bytes
// little-endian, int64 or float64, as Envoy serializes CEL int and double)
// or a boolean (1 byte).
type Properties []Property

// Property is one property. Path is its segments; Key, when Path is nil,
// is the segments joined by ".". Value is a string, []byte, Headers or
// map[string]string (pairs; a map's keys in sorted order), an int, int64,
// float64 or bool.
type Property struct {
	Path  []string `json:"path"`
	Key   string   `json:"-"`
	Value any      `json:"value"`
}

// lookup returns the value of the first property matching path.
func (ps Properties) lookup(path []string) ([]byte, bool) {
	joined := strings.Join(path, ".")
	for _, p := range ps {
		if (p.Path != nil && slices.Equal(p.Path, path)) || (p.Path == nil && p.Key == joined) {
			b, err := encodeProperty(p.Value)
			return b, err == nil
		}
	}
	return nil, false
}

func (ps Properties) validate() error {
	var errs []error
	for _, p := range ps {
		if p.Path == nil && p.Key == "" {
			errs = append(errs, errors.New("a property with no path"))
		}
		if _, err := encodeProperty(p.Value); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.name(), err))
		}
	}
	return errors.Join(errs...)
}

func (p Property) name() string {
	if p.Path != nil {
		b, _ := json.Marshal(p.Path)
		return string(b)
	}
	return p.Key
}

// encodeProperty serializes a property value as Envoy hands it to plugins.
func encodeProperty(v any) ([]byte, error) {
	switch v := v.(type) {
	case string:
		return []byte(v), nil
	case []byte:
		return v, nil
	case Headers:
		return pairs(abi.Headers(v)), nil
	case map[string]string:
		var h abi.Headers
		for _, k := range slices.Sorted(maps.Keys(v)) {
			h = append(h, abi.Header{Key: k, Value: v[k]})
		}
		return pairs(h), nil
	case int:
		return binary.LittleEndian.AppendUint64(nil, uint64(v)), nil
	case int64:
		return binary.LittleEndian.AppendUint64(nil, uint64(v)), nil
	case float64:
		return binary.LittleEndian.AppendUint64(nil, math.Float64bits(v)), nil
	case bool:
		if v {
			return []byte{1}, nil
		}
		return []byte{0}, nil
	}
	return nil, fmt.Errorf("value %v (%T): want a string, an object of strings, a number or a boolean", v, v)
}

// decodePropertyValue reads a JSON property value.
func decodePropertyValue(raw json.RawMessage) (any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, errors.New("no value")
	}
	switch raw[0] {
	case '"':
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	case '{':
		var h Headers
		if err := json.Unmarshal(raw, &h); err != nil {
			return nil, fmt.Errorf("a map value: %w", err)
		}
		return h, nil
	case 't', 'f':
		var b bool
		err := json.Unmarshal(raw, &b)
		return b, err
	case '[', 'n':
		return nil, fmt.Errorf("value %s: want a string, an object of strings, a number or a boolean", raw)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var n json.Number
	if err := dec.Decode(&n); err != nil {
		return nil, err
	}
	if i, err := n.Int64(); err == nil {
		return i, nil
	}
	return n.Float64()
}

// MarshalJSON writes the object form when every property has a key, else
// the array form (a property with a key, not a path, as {"key": ...}), so
// that a script marshals back to one that means the same.
func (ps Properties) MarshalJSON() ([]byte, error) {
	if ps == nil {
		return []byte("null"), nil
	}
	object := true
	for _, p := range ps {
		object = object && p.Path == nil
	}
	var b bytes.Buffer
	if object {
		b.WriteByte('{')
		for i, p := range ps {
			if i > 0 {
				b.WriteByte(',')
			}
			k, _ := json.Marshal(p.Key)
			v, err := json.Marshal(p.Value)
			if err != nil {
				return nil, err
			}
			b.Write(k)
			b.WriteByte(':')
			b.Write(v)
		}
		b.WriteByte('}')
		return b.Bytes(), nil
	}
	type item struct {
		Path  []string `json:"path,omitempty"`
		Key   string   `json:"key,omitempty"`
		Value any      `json:"value"`
	}
	items := make([]item, len(ps))
	for i, p := range ps {
		items[i] = item{p.Path, p.Key, p.Value}
	}
	return json.Marshal(items)
}

// UnmarshalJSON reads either form (see Properties).
func (ps *Properties) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	var out Properties
	switch tok {
	case nil:
		*ps = nil
		return nil
	case json.Delim('{'):
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return err
			}
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return err
			}
			v, err := decodePropertyValue(raw)
			if err != nil {
				return fmt.Errorf("property %q: %w", k, err)
			}
			out = append(out, Property{Key: k.(string), Value: v})
		}
	case json.Delim('['):
		var items []struct {
			Path  []string        `json:"path"`
			Key   string          `json:"key"`
			Value json.RawMessage `json:"value"`
		}
		d := json.NewDecoder(bytes.NewReader(b))
		d.DisallowUnknownFields()
		if err := d.Decode(&items); err != nil {
			return fmt.Errorf("properties: want {\"path\": [segments], \"value\": ...} items: %w", err)
		}
		for i, it := range items {
			if it.Path == nil && it.Key == "" {
				return fmt.Errorf("properties[%d]: no path", i)
			}
			if it.Path != nil && it.Key != "" {
				return fmt.Errorf("properties[%d]: a path or a key, not both", i)
			}
			v, err := decodePropertyValue(it.Value)
			if err != nil {
				return fmt.Errorf("properties[%d]: %w", i, err)
			}
			out = append(out, Property{Path: it.Path, Key: it.Key, Value: v})
		}
	default:
		return fmt.Errorf("properties: want an object or an array, not %v", tok)
	}
	*ps = out
	return nil
}

// pairs serializes a map as Proxy-Wasm pairs (abi.Headers.SerializeTo).
func pairs(h abi.Headers) []byte {
	b := make([]byte, h.SerializedSize())
	h.SerializeTo(b)
	return b
}
