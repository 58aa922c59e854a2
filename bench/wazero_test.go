package bench_test

import (
	"context"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// wazero's raw path: api.Function.CallWithStack and api.GoModuleFunc, the
// fastest public way to cross in each direction.
func init() {
	raws["wazero"] = rawImpl{
		callEmpty: func(b *testing.B) { wazeroCall(b, "empty", make([]uint64, 1)) },
		callAdd:   func(b *testing.B) { wazeroCall(b, "add", []uint64{1, 2}) },
		hostNop:   func(b *testing.B) { wazeroLoop(b, "loop_nop") },
		hostAdd:   func(b *testing.B) { wazeroLoop(b, "loop_add") },
	}
}

func wazeroModule(b *testing.B) api.Module {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	b.Cleanup(func() { _ = r.Close(ctx) })
	_, err := r.NewHostModuleBuilder("env").
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(context.Context, api.Module, []uint64) {}), nil, nil).Export("nop").
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, s []uint64) {
		s[0] = uint64(uint32(s[0])) + s[1]
	}), []api.ValueType{api.ValueTypeI32, api.ValueTypeI64}, []api.ValueType{api.ValueTypeI64}).Export("add").
		Instantiate(ctx)
	if err != nil {
		b.Fatal(err)
	}
	m, err := r.InstantiateWithConfig(ctx, callsWasm, wazero.NewModuleConfig().WithStartFunctions())
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func wazeroCall(b *testing.B, name string, stack []uint64) {
	f := wazeroModule(b).ExportedFunction(name)
	ctx := context.Background()
	for b.Loop() {
		if err := f.CallWithStack(ctx, stack); err != nil {
			b.Fatal(err)
		}
	}
}

func wazeroLoop(b *testing.B, name string) {
	f := wazeroModule(b).ExportedFunction(name)
	stack := []uint64{uint64(b.N)}
	b.ReportAllocs()
	b.ResetTimer()
	if err := f.CallWithStack(context.Background(), stack); err != nil {
		b.Fatal(err)
	}
}
