package all_test

import (
	"slices"
	"testing"

	"github.com/anywasm/anywasm/engine"
	_ "github.com/anywasm/anywasm/engine/all"
	"github.com/anywasm/anywasm/engine/enginetest"
)

// TestOneCgoRuntime: wasmtime and wasmer never share a binary.
func TestOneCgoRuntime(t *testing.T) {
	names := engine.Runtimes()
	if slices.Contains(names, "wasmtime") && slices.Contains(names, "wasmer") {
		t.Fatalf("wasmtime and wasmer are linked into one binary: %v", names)
	}
	if !slices.Contains(names, "wazero") {
		t.Fatalf("wazero missing: %v", names)
	}
	t.Logf("runtimes: %v", names)
}

// TestDifferential runs the same guests on every runtime in this binary
// and compares results and memory.
func TestDifferential(t *testing.T) { enginetest.RunDifferential(t) }
