// Command proxywasm-conformance runs a Proxy-Wasm plugin through a
// conformance script (package abi/abitest) on every runtime compiled into
// the command, checks the script's expectations and that all runtimes agree:
//
//	proxywasm-conformance [-v] -script s.json plugin.wasm
//
// It prints one line per runtime with its failures, the differences between
// runtimes, and PASS or FAIL; -v adds each runtime's transcript. It exits 0
// when every runtime passed and all agreed, 1 when an expectation failed or
// runtimes disagreed, 2 on usage errors: bad flags or arguments, a script
// that cannot be read or is invalid, a plugin file (the argument, or one the
// script names) that cannot be read or is not a WebAssembly binary.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/anywasm/anywasm/abi/abitest"
	"github.com/anywasm/anywasm/engine"
	_ "github.com/anywasm/anywasm/engine/all" // every runtime the build can have
	"github.com/anywasm/anywasm/internal/version"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("proxywasm-conformance", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scriptPath := fs.String("script", "", "the conformance script (JSON)")
	verbose := fs.Bool("v", false, "print every runtime's transcript")
	cache := fs.String("cache", "", "keep compiled plugins in this directory (private to the user) across runs")
	showVersion := fs.Bool("version", false, "print the build's module version and Go version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: proxywasm-conformance [-v] [-cache DIR] -script s.json plugin.wasm\n\n"+
			"Runs the plugin through the script on every runtime compiled in (%v).\n\n", engine.Runtimes())
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *showVersion {
		version.Print(stdout, "proxywasm-conformance")
		return 0
	}
	if *scriptPath == "" || fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	script, err := abitest.LoadScript(*scriptPath)
	if err != nil {
		fmt.Fprintln(stderr, "proxywasm-conformance:", err)
		return 2
	}
	wasm, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, "proxywasm-conformance:", err)
		return 2
	}
	if !abitest.IsWasm(wasm) {
		fmt.Fprintf(stderr, "proxywasm-conformance: %s is not a WebAssembly binary\n", fs.Arg(0))
		return 2
	}
	abitest.CompileCacheDir = *cache
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	report, err := abitest.Check(ctx, wasm, script)
	if err != nil {
		fmt.Fprintln(stderr, "proxywasm-conformance:", err)
		return 2
	}
	report.Write(stdout, *verbose)
	if !report.OK() {
		return 1
	}
	return 0
}
