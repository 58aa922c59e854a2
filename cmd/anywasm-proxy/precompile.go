package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/anywasm/anywasm/engine"
)

// precompile is "anywasm-proxy precompile": it compiles a module with a
// runtime and writes it with the runtime's precompiled code in the custom
// section that runtime names (replacing one of that name; other runtimes'
// sections stay), as proxy-wasm-cpp-host's WasmVm::serialize and
// BytecodeUtil::writeModuleWithCustomSection make them. A plugin with
// vm_config.allow_precompiled then loads that code instead of compiling
// the bytecode, if the proxy's runtime is the same runtime, version,
// platform and code-generation settings: -interrupt must be given when any
// plugin on that runtime has a call_timeout (the proxy then opens it with
// interruption, which changes Wasmtime's code); otherwise the proxy
// compiles the bytecode and logs why at warn.
func precompile(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("anywasm-proxy precompile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runtime := fs.String("runtime", "wasmtime", "runtime to precompile for (compiled in: "+strings.Join(engine.Runtimes(), ", ")+")")
	interrupt := fs.Bool("interrupt", false, "compile for a runtime the proxy opens with interruption (some plugin on it has call_timeout)")
	out := fs.String("o", "", "output module")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" || fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: anywasm-proxy precompile [-runtime NAME] [-interrupt] -o OUT.wasm IN.wasm")
		return 2
	}
	in := fs.Arg(0)
	code, err := os.ReadFile(in)
	if err != nil {
		fmt.Fprintf(stderr, "precompile: %v\n", err)
		return 1
	}
	rt, err := engine.Open(*runtime, engine.NewConfig().WithInterruptOnContextDone(*interrupt))
	if err != nil {
		fmt.Fprintf(stderr, "precompile: -runtime: %v\n", err)
		return 1
	}
	defer rt.Close(ctx)
	b, err := rt.Precompile(ctx, code)
	if err != nil {
		fmt.Fprintf(stderr, "precompile: %s: %v\n", in, err)
		return 1
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		fmt.Fprintf(stderr, "precompile: %v\n", err)
		return 1
	}
	name := rt.PrecompiledSectionName()
	sec, _, _ := engine.CustomSection(b, name)
	fmt.Fprintf(stdout, "%s: section %s, %d bytes of precompiled code\n", *out, name, len(sec))
	return 0
}
