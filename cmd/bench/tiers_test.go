package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/engine"
	_ "github.com/anywasm/anywasm/engine/all"
)

// TestTiersTable: cmd/bench's tiers are the engine's, for each runtime in
// this binary (wasmer's only with -tags anywasm_wasmer).
func TestTiersTable(t *testing.T) {
	for _, rt := range engine.Runtimes() {
		info, err := engine.Lookup(rt)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(tiers[rt], info.Tiers) {
			t.Errorf("%s: cmd/bench has tiers %v, the engine %v", rt, tiers[rt], info.Tiers)
		}
	}
}

func TestColumnName(t *testing.T) {
	for in, want := range map[string]string{
		"wazero": "wazero", "wazero:compiler": "wazero", "wazero:interpreter": "wazero:interpreter",
		"wasmtime:pulley": "wasmtime:pulley", "wasmer:cranelift": "wasmer",
	} {
		if got, err := columnName(in); got != want || err != nil {
			t.Errorf("columnName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"v8": `unknown runtime "v8"`, "wasmtime:winch": "runtime wasmtime has no tier \"winch\" (its tiers: cranelift, pulley)",
	} {
		if _, err := columnName(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("columnName(%q) = %v, want %q", in, err, want)
		}
	}
	var stderr bytes.Buffer
	if code := run([]string{"-runtime", "wazero:turbo"}, &bytes.Buffer{}, &stderr); code != 2 || !strings.Contains(stderr.String(), `no tier "turbo"`) {
		t.Errorf("run -runtime wazero:turbo = %d, %s", code, stderr.String())
	}
}
