// Package abitest is a conformance kit for Proxy-Wasm plugins: it drives a
// compiled plugin (.wasm) through scripted HTTP or TCP exchanges on every
// runtime compiled into the binary, with the real host of package abi, and
// checks that each runtime gives what the script expects and that all
// runtimes give the same transcript (every step's action, headers, bodies,
// local response, logs, foreign calls, callouts and metrics).
//
// From a plugin's Go test:
//
//	func TestPlugin(t *testing.T) {
//		wasm, _ := os.ReadFile("plugin.wasm")
//		script, err := abitest.LoadScript("testdata/plugin.json")
//		if err != nil {
//			t.Fatal(err)
//		}
//		abitest.Run(t, wasm, script)
//	}
//
// The command proxywasm-conformance runs the same checks outside go test.
//
// The host is deterministic: its clock is fixed (2025-01-01T00:00:00Z),
// random_get yields the same bytes on every runtime, it runs no timers
// (tick steps run proxy_on_tick), HTTP callouts are answered in process from
// the script's canned upstreams and every step ends once the plugin has
// handled the answers (the host ends a callout's context after delivering
// its answer: that is what is waited for; an answer held by the script
// waits for a release step), and logs are recorded at every level. A
// plugin failure is read from the host's failure log, whatever callback
// and goroutine it happened in. Queue deliveries (proxy_on_queue_ready)
// come when the host makes them: the logs they write are listed in the
// script's async_logs and checked by await steps.
//
// The runtimes are the caller's: a script runs on every runtime the
// binary registers (engine.Runtimes), and this package links none of its
// own. Import the backends to compare, e.g. _
// "github.com/anywasm/anywasm/engine/all" for every runtime the build can
// have (wazero, plus wasmtime with cgo, or wasmer with cgo and -tags
// anywasm_wasmer), or _ "github.com/anywasm/anywasm/engine/wazero" alone.
package abitest

import "testing"

// Run checks the script with Check and reports through t: one subtest per
// runtime with that runtime's failures (naming exchange and step), and the
// differences between runtimes' transcripts in t itself.
func Run(t *testing.T, wasm []byte, s *Script) {
	t.Helper()
	r, err := Check(t.Context(), wasm, s)
	if err != nil {
		t.Fatal(err)
	}
	for _, rr := range r.Runtimes {
		t.Run(rr.Runtime, func(t *testing.T) {
			for _, f := range rr.Failures {
				t.Error(f)
			}
			if t.Failed() && rr.Transcript != nil {
				t.Logf("%s transcript:\n%s", rr.Runtime, rr.Transcript)
			}
		})
	}
	for _, d := range r.Diffs {
		t.Error(d)
	}
}
