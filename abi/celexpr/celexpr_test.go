package celexpr_test

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"log/slog"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/abi/celexpr"
	"github.com/anywasm/anywasm/engine"
	_ "github.com/anywasm/anywasm/engine/all"
	"github.com/anywasm/anywasm/internal/plugins"
	"github.com/anywasm/anywasm/internal/testlog"
	"github.com/anywasm/anywasm/internal/testrt"
)

// call runs one request through the foreign plugin and returns what it
// put in x-output-hex, or its x-status.
func call(t *testing.T, p *abi.Plugin, fn string, input []byte) (out []byte, status string) {
	t.Helper()
	s, err := p.NewHTTPStreamInfo(context.Background(), &abi.StreamInfo{SourceAddress: "10.0.0.1:4000"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	var hdr abi.Headers
	for _, kv := range [][2]string{{":path", "/p"}, {":method", "GET"}, {"x-a", "b"}, {"x-function", fn}, {"x-input-hex", hex.EncodeToString(input)}} {
		hdr.Add(kv[0], kv[1])
	}
	if _, err := s.RequestHeaders(context.Background(), hdr, true); err != nil {
		t.Fatal(err)
	}
	h := s.RequestHeaderMap()
	if st, ok := h.Get("x-status"); ok {
		return nil, st
	}
	o, _ := h.Get("x-output-hex")
	b, _ := hex.DecodeString(o)
	return b, ""
}

func u32(n uint32) []byte { return binary.LittleEndian.AppendUint32(nil, n) }
func i64(n int64) string  { return string(binary.LittleEndian.AppendUint64(nil, uint64(n))) }

// TestExpressions: expr_create, expr_evaluate and expr_delete, as Envoy's:
// tokens from 0, values serialized as proxy_get_property's, and the
// statuses for a bad expression, a bad or unknown token and an evaluation
// error.
func TestExpressions(t *testing.T) {
	wasm := plugins.Build(t, "foreign")
	for _, name := range engine.Runtimes() {
		t.Run(name, func(t *testing.T) {
			rt, err := engine.Open(name, testrt.Config())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = rt.Close(context.Background()) })
			logs := &testlog.Sink{}
			h := abi.NewHost(rt, abi.Options{Logger: slog.New(logs), ForeignFunctions: celexpr.Functions()})
			t.Cleanup(func() { _ = h.Close(context.Background()) })
			p, err := h.Load(context.Background(), wasm, abi.PluginConfig{Name: "cel"})
			if err != nil {
				t.Fatal(err)
			}
			tokens := map[string]uint32{}
			for i, expr := range []string{
				"request.path + '!'", "size(request.headers) > 1 && request.headers['x-a'] == 'b'",
				"1 + 2", "{'k': 'v', 'n': 2}", "[source.port, 7]", "plugin_name", "no_such.attr", "null",
				"[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, [1,2,3,4,5,6,7,8,9,10].all(d, [1,2,3,4,5,6,7,8,9,10].all(e, [1,2,3,4,5,6,7,8,9,10].all(f, a+b+c+d+e+f > 0))))))",
			} {
				out, st := call(t, p, "expr_create", []byte(expr))
				if st != "" || string(out) != string(u32(uint32(i))) {
					t.Fatalf("expr_create(%s) = %x %s, want token %d", expr, out, st, i)
				}
				tokens[expr] = uint32(i)
			}
			for expr, want := range map[string]string{
				"request.path + '!'": "/p!",
				"size(request.headers) > 1 && request.headers['x-a'] == 'b'": "\x01",
				"1 + 2":              i64(3),
				"{'k': 'v', 'n': 2}": "\x02\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x08\x00\x00\x00k\x00v\x00n\x00" + i64(2) + "\x00",
				"[source.port, 7]":   "\x02\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00" + i64(4000) + "\x00\x00" + i64(7) + "\x00\x00",
				"plugin_name":        "cel",
			} {
				out, st := call(t, p, "expr_evaluate", u32(tokens[expr]))
				if st != "" || string(out) != want {
					t.Errorf("expr_evaluate(%s) = %q %s, want %q", expr, out, st, want)
				}
			}
			for _, c := range []struct {
				fn    string
				input []byte
				want  string
			}{
				{"expr_create", []byte("((("), "bad argument"},
				{"expr_evaluate", []byte{0, 0}, "bad argument"},
				{"expr_evaluate", u32(99), "not found"},
				{"expr_evaluate", u32(tokens["no_such.attr"]), "internal failure"},
				{"expr_evaluate", u32(tokens["null"]), "unknown status code: 3"},
				{"expr_evaluate", u32(8), "internal failure"}, // 10^6 iterations: over MaxCost
			} {
				if _, st := call(t, p, c.fn, c.input); !strings.Contains(st, c.want) {
					t.Errorf("%s(%x): %q, want %q", c.fn, c.input, st, c.want)
				}
			}
			if _, st := call(t, p, "expr_delete", u32(0)); st != "" {
				t.Errorf("expr_delete: %s", st)
			}
			if _, st := call(t, p, "expr_evaluate", u32(0)); !strings.Contains(st, "not found") {
				t.Errorf("after expr_delete: %q", st)
			}
			// Envoy's counter goes on: a freed token is not taken again first.
			if out, st := call(t, p, "expr_create", []byte("2")); st != "" || string(out) != string(u32(9)) {
				t.Errorf("expr_create after a delete: %x %s, want token 9", out, st)
			}
		})
	}
}
