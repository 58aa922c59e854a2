package engine_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/anywasm/anywasm/engine"
	_ "github.com/anywasm/anywasm/engine/wazero" // registers "wazero"; engine/all links every runtime the build can have
)

// addWasm is this module, as wat2wasm (wabt 1.0.32) encodes it:
//
//	(module
//	  (import "env" "log" (func $log (param i32 i32)))
//	  (memory (export "memory") 1)
//	  (data (i32.const 0) "hello from the guest")
//	  (func (export "add") (param i32 i32) (result i32)
//	    (call $log (i32.const 0) (i32.const 20))
//	    (i32.add (local.get 0) (local.get 1)))
//	  (func (export "boom") unreachable))
var addWasm = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
	// type section: (i32, i32) -> (), (i32, i32) -> i32, () -> ()
	0x01, 0x0f, 0x03, 0x60, 0x02, 0x7f, 0x7f, 0x00, 0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7f, 0x60, 0x00, 0x00,
	// import section: env.log, type 0
	0x02, 0x0b, 0x01, 0x03, 'e', 'n', 'v', 0x03, 'l', 'o', 'g', 0x00, 0x00,
	// function section: add is type 1, boom type 2
	0x03, 0x03, 0x02, 0x01, 0x02,
	// memory section: one memory of 1 page
	0x05, 0x03, 0x01, 0x00, 0x01,
	// export section: memory, add (func 1), boom (func 2)
	0x07, 0x17, 0x03,
	0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00,
	0x03, 'a', 'd', 'd', 0x00, 0x01,
	0x04, 'b', 'o', 'o', 'm', 0x00, 0x02,
	// code section
	0x0a, 0x13, 0x02,
	// add: i32.const 0, i32.const 20, call 0, local.get 0, local.get 1, i32.add, end
	0x0d, 0x00, 0x41, 0x00, 0x41, 0x14, 0x10, 0x00, 0x20, 0x00, 0x20, 0x01, 0x6a, 0x0b,
	// boom: unreachable, end
	0x03, 0x00, 0x00, 0x0b,
	// data section: "hello from the guest" at 0
	0x0b, 0x1a, 0x01, 0x00, 0x41, 0x00, 0x0b, 0x14,
	'h', 'e', 'l', 'l', 'o', ' ', 'f', 'r', 'o', 'm', ' ', 't', 'h', 'e', ' ', 'g', 'u', 'e', 's', 't',
}

// Open a runtime, compile a module, give it a host function, call an export.
func Example() {
	ctx := context.Background()
	// Any name engine.Runtimes() lists: "wazero", "wasmtime", "wasmer".
	rt, err := engine.Open("wazero", engine.NewConfig().WithMemoryLimitPages(256))
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close(ctx) // closes everything the runtime made
	mod, err := rt.Compile(ctx, addWasm)
	if err != nil {
		log.Fatal(err)
	}
	imports, err := rt.NewImports(engine.HostModule{Name: "env", Functions: []engine.HostFunction{{
		Name: "log", Type: engine.FuncType{Params: []engine.ValueType{engine.I32, engine.I32}},
		Func: func(ctx context.Context, c engine.Caller, stack []uint64) error {
			msg, ok := c.Memory().Read(engine.DecodeU32(stack[0]), engine.DecodeU32(stack[1]))
			if !ok {
				return errors.New("log: out of bounds") // traps the guest (engine.TrapHostError)
			}
			fmt.Printf("guest says: %s\n", msg)
			return nil
		},
	}}})
	if err != nil {
		log.Fatal(err)
	}
	inst, err := rt.Instantiate(ctx, mod, imports)
	if err != nil {
		log.Fatal(err)
	}
	add, err := inst.Function("add") // look functions up once and keep them
	if err != nil {
		log.Fatal(err)
	}
	stack := []uint64{engine.EncodeI32(1), engine.EncodeI32(2)}
	if err := add.Call(ctx, stack); err != nil { // 0 allocations
		log.Fatal(err)
	}
	fmt.Println("add(1, 2) =", engine.DecodeI32(stack[0])) // the results replace the parameters
	// Output:
	// guest says: hello from the guest
	// add(1, 2) = 3
}

// A trap is an *engine.Trap with a portable code, and it fails the
// instance: every later call returns engine.ErrFailed.
func Example_trap() {
	ctx := context.Background()
	rt, err := engine.Open("wazero", engine.NewConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close(ctx)
	mod, err := rt.Compile(ctx, addWasm)
	if err != nil {
		log.Fatal(err)
	}
	imports, err := rt.NewImports(engine.HostModule{Name: "env", Functions: []engine.HostFunction{{
		Name: "log", Type: engine.FuncType{Params: []engine.ValueType{engine.I32, engine.I32}},
		Func: func(context.Context, engine.Caller, []uint64) error { return nil },
	}}})
	if err != nil {
		log.Fatal(err)
	}
	inst, err := rt.Instantiate(ctx, mod, imports)
	if err != nil {
		log.Fatal(err)
	}
	boom, _ := inst.Function("boom")
	add, _ := inst.Function("add")
	err = boom.Call(ctx, nil)
	var trap *engine.Trap
	if errors.As(err, &trap) {
		fmt.Println("trap:", trap.Code)
	}
	err = add.Call(ctx, []uint64{1, 2})
	fmt.Println("then:", errors.Is(err, engine.ErrFailed), inst.Failed())
	// Output:
	// trap: unreachable
	// then: true true
}
