package enginetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/engine"
)

// step is one call of a differential script.
type step struct {
	fn   string
	args []uint64
}

// script is what RunDifferential runs on every runtime: calls with edge-case
// values, memory writes and growth, a re-entrant call and a trap at the end.
func script() []step {
	f32 := func(v float32) uint64 { return engine.EncodeF32(v) }
	f64 := func(v float64) uint64 { return engine.EncodeF64(v) }
	var s []step
	edges32 := []uint64{0, 1, 0x7fffffff, 0x80000000, 0xffffffff}
	for _, a := range edges32 {
		for _, b := range edges32 {
			s = append(s, step{"i32_add", []uint64{a, b}})
		}
	}
	for _, v := range []float64{0, math.Copysign(0, -1), 1.5, math.Inf(-1), math.MaxFloat64, math.SmallestNonzeroFloat64} {
		s = append(s, step{"f64_mul", []uint64{f64(v), f64(3)}})
		s = append(s, step{"f32_mul", []uint64{f32(float32(v)), f32(0.5)}})
		s = append(s, step{"reverse", []uint64{1, 2, f32(float32(v)), f64(v)}})
		s = append(s, step{"call_echo", []uint64{0xffffffff, 1 << 62, f32(float32(v)), f64(v)}})
	}
	for i := uint64(0); i < 64; i++ {
		s = append(s, step{"store", []uint64{i * 1021 % 65000, i * 0x9e3779b9}})
	}
	s = append(s, step{"grow", []uint64{1}}, step{"store", []uint64{65536 + 12, 0xabcdef}}, step{"size", nil})
	s = append(s, step{"outer", []uint64{7}}, step{"counter", nil}, step{"five", []uint64{0xfffffffe}})
	s = append(s, step{"trap_overflow", nil})
	return s
}

// outcome is what one runtime did with the script.
type outcome struct {
	results []string
	memory  [32]byte
	pages   uint32
}

func runScript(rt *engine.Runtime) (outcome, error) {
	ctx := context.Background()
	var o outcome
	m, err := rt.Compile(ctx, Guest("values"))
	if err != nil {
		return o, err
	}
	n := 0
	imp, err := rt.NewImports(env(&n))
	if err != nil {
		return o, err
	}
	inst, err := rt.Instantiate(ctx, m, imp)
	if err != nil {
		return o, err
	}
	defer inst.Close(ctx)
	for _, st := range script() {
		f, err := inst.Function(st.fn)
		if err != nil {
			return o, err
		}
		stack := make([]uint64, max(len(st.args), f.Type().StackSize()))
		copy(stack, st.args)
		err = f.Call(ctx, stack)
		var tr *engine.Trap
		switch {
		case errors.As(err, &tr):
			// The frames, without offsets (only some runtimes have them).
			frames := make([]string, len(tr.Frames))
			for i, f := range tr.Frames {
				frames[i] = f.String()
			}
			o.results = append(o.results, fmt.Sprintf("%s%x = trap %s at %v", st.fn, st.args, tr.Code, frames))
		case err != nil:
			return o, err
		default:
			res := stack[:len(f.Type().Results)]
			for i, t := range f.Type().Results {
				if t == engine.I32 || t == engine.F32 {
					res[i] = uint64(uint32(res[i])) // the high bits are undefined
				}
			}
			o.results = append(o.results, fmt.Sprintf("%s%x = %x", st.fn, st.args, res))
		}
	}
	mem := inst.Memory()
	b, _ := mem.Read(0, uint32(mem.Size()))
	o.memory = sha256.Sum256(b)
	o.pages = mem.Pages()
	return o, nil
}

// RunDifferential runs the same script on every runtime compiled into the
// test binary and fails if any two disagree on a result, a trap code and
// backtrace, or a byte of memory. It skips when fewer than two runtimes are linked in.
func RunDifferential(t *testing.T) {
	names := engine.Runtimes()
	if len(names) < 2 {
		t.Skipf("only %v compiled in", names)
	}
	var first outcome
	for i, name := range names {
		rt, err := engine.Open(name, engine.NewConfig())
		if err != nil {
			t.Fatal(err)
		}
		o, err := runScript(rt)
		_ = rt.Close(context.Background())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if i == 0 {
			first = o
			continue
		}
		if len(o.results) != len(first.results) {
			t.Fatalf("%s ran %d steps, %s %d", name, len(o.results), names[0], len(first.results))
		}
		for k := range o.results {
			if o.results[k] != first.results[k] {
				t.Errorf("step %d: %s: %s; %s: %s", k, names[0], first.results[k], name, o.results[k])
			}
		}
		if o.pages != first.pages || !bytes.Equal(o.memory[:], first.memory[:]) {
			t.Errorf("memory differs: %s %d pages %x, %s %d pages %x", names[0], first.pages, first.memory[:6], name, o.pages, o.memory[:6])
		}
	}
	t.Logf("%d steps agree on %s", len(first.results), strings.Join(names, ", "))
}
