// Package celexpr gives plugins Envoy's CEL foreign functions, expr_create,
// expr_evaluate and expr_delete (source/extensions/common/wasm/foreign.cc),
// over cel.dev/cel-go, evaluated against the calling stream's attributes
// (abi.Caller.Value: request, response, source, destination, connection,
// upstream, xds, node, the plugin's names, metadata...).
//
//	opts.ForeignFunctions = celexpr.Functions()
//
// As in Envoy, expressions are parsed, not type-checked (an unknown
// attribute is an evaluation error), and belong to the root context of the
// plugin that created them: expr_create answers a 4-byte little-endian
// token (the first is 0), expr_evaluate takes one and answers the value
// serialized as proxy_get_property would (abi.SerializeValue), expr_delete
// forgets one.
package celexpr

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/interpreter"

	"github.com/anywasm/anywasm/abi"
)

// MaxExpressions bounds the expressions one root context may hold.
const MaxExpressions = 1024

// MaxCost bounds one evaluation (cel-go's runtime cost: roughly one unit
// per operation and per element a comprehension visits): a plugin's
// expression cannot keep the host busy (an evaluation over it is
// INTERNAL_FAILURE). Evaluations also stop when the plugin's callback
// runs out of time (PluginConfig.CallTimeout).
const MaxCost = 1_000_000

// Functions returns expr_create, expr_evaluate and expr_delete.
func Functions() map[string]abi.ForeignFunc {
	return map[string]abi.ForeignFunc{
		"expr_create":   create,
		"expr_evaluate": evaluate,
		"expr_delete":   remove,
	}
}

var env = sync.OnceValues(func() (*cel.Env, error) { return cel.NewEnv() })

// store is what a root context keeps (Envoy's ExpressionContext).
type store struct {
	next  uint32
	progs map[uint32]cel.Program
}

func storeOf(c abi.Caller) *store {
	return c.RootData("cel", func() any { return &store{progs: map[uint32]cel.Program{}} }).(*store)
}

func bad(format string, args ...any) error {
	return &abi.StatusError{Status: abi.StatusBadArgument, Err: fmt.Errorf(format, args...)}
}

// create is Envoy's CreateExpressionFactory: BAD_ARGUMENT for an
// expression that does not parse or build.
func create(ctx context.Context, expr []byte) ([]byte, error) {
	c, ok := abi.CallerOf(ctx)
	if !ok {
		return nil, bad("no calling plugin")
	}
	e, err := env()
	if err != nil {
		return nil, err
	}
	ast, iss := e.Parse(string(expr))
	if iss.Err() != nil {
		return nil, bad("expr_create parse error: %v", iss.Err())
	}
	prg, err := e.Program(ast, cel.CostLimit(MaxCost), cel.InterruptCheckFrequency(100))
	if err != nil {
		return nil, bad("expr_create compile error: %v", err)
	}
	s := storeOf(c)
	if len(s.progs) >= MaxExpressions {
		return nil, bad("more than %d expressions", MaxExpressions)
	}
	token := s.next
	s.next++
	for {
		if _, used := s.progs[token]; !used {
			break
		}
		token = s.next
		s.next++
	}
	s.progs[token] = prg
	return binary.LittleEndian.AppendUint32(nil, token), nil
}

func token(arg []byte) (uint32, error) {
	if len(arg) != 4 {
		return 0, bad("a token is 4 bytes, got %d", len(arg))
	}
	return binary.LittleEndian.Uint32(arg), nil
}

// evaluate is Envoy's EvaluateExpressionFactory: BAD_ARGUMENT for an
// argument that is no token, NOT_FOUND for an unknown one,
// INTERNAL_FAILURE for an evaluation error, SERIALIZATION_FAILURE for a
// value that cannot be serialized.
func evaluate(ctx context.Context, arg []byte) ([]byte, error) {
	c, ok := abi.CallerOf(ctx)
	if !ok {
		return nil, bad("no calling plugin")
	}
	t, err := token(arg)
	if err != nil {
		return nil, err
	}
	prg, ok := storeOf(c).progs[t]
	if !ok {
		return nil, &abi.StatusError{Status: abi.StatusNotFound, Err: fmt.Errorf("no expression %d", t)}
	}
	out, _, err := prg.ContextEval(ctx, activation{c})
	if err != nil {
		return nil, fmt.Errorf("expr_evaluate: %w", err)
	}
	v, err := native(out)
	if err != nil {
		return nil, &abi.StatusError{Status: abi.StatusSerializationFailure, Err: err}
	}
	b, ok := abi.SerializeValue(v)
	if !ok {
		return nil, &abi.StatusError{Status: abi.StatusSerializationFailure, Err: fmt.Errorf("cannot serialize %T", v)}
	}
	return b, nil
}

// remove is Envoy's DeleteExpressionFactory.
func remove(ctx context.Context, arg []byte) ([]byte, error) {
	c, ok := abi.CallerOf(ctx)
	if !ok {
		return nil, bad("no calling plugin")
	}
	t, err := token(arg)
	if err != nil {
		return nil, err
	}
	delete(storeOf(c).progs, t)
	return nil, nil
}

// activation resolves the expression's names to the caller's attributes.
type activation struct{ c abi.Caller }

func (a activation) ResolveName(name string) (any, bool) { return a.c.Value(name) }
func (activation) Parent() interpreter.Activation        { return nil }

// native converts a CEL value to the Go values abi.SerializeValue takes.
func native(v ref.Val) (any, error) {
	switch v.Type() {
	case types.NullType:
		return nil, nil
	case types.MapType:
		m, ok := v.(traits.Mapper)
		if !ok {
			return nil, errors.New("a map that cannot be iterated")
		}
		out := map[string]any{}
		for it := m.Iterator(); it.HasNext() == types.True; {
			k := it.Next()
			kv, err := native(k)
			if err != nil {
				return nil, err
			}
			key, ok := kv.(string)
			if !ok {
				b, ok := abi.SerializeValue(kv)
				if !ok {
					return nil, fmt.Errorf("map key %v", k)
				}
				key = string(b)
			}
			val, err := native(m.Get(k))
			if err != nil {
				return nil, err
			}
			out[key] = val
		}
		return out, nil
	case types.ListType:
		l, ok := v.(traits.Lister)
		if !ok {
			return nil, errors.New("a list that cannot be indexed")
		}
		n, _ := l.Size().Value().(int64)
		out := make([]any, 0, n)
		for i := int64(0); i < n; i++ {
			e, err := native(l.Get(types.Int(i)))
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
		return out, nil
	}
	if types.IsError(v) {
		return nil, fmt.Errorf("%v", v)
	}
	return v.Value(), nil
}
