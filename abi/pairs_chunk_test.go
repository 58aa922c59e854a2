package abi_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
	_ "github.com/anywasm/anywasm/engine/wazero"
)

// TestPairChunks: the header pairs a guest adds are carved from the VM's
// chunk and are exactly what the guest wrote: the key lower-cased, a
// pair changed in guest memory after it was read not changed in what the
// host holds, pairs read earlier untouched by later ones (across a new
// chunk too), a pair too big for a chunk copied on its own.
func TestPairChunks(t *testing.T) {
	ctx := context.Background()
	rt, err := engine.Open("wazero", engine.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	// (module (memory (export "memory") 1))
	wasm := []byte{0, 'a', 's', 'm', 1, 0, 0, 0, 5, 3, 1, 0, 1, 7, 10, 1, 6, 'm', 'e', 'm', 'o', 'r', 'y', 2, 0}
	mod, err := rt.Compile(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}
	im, err := rt.NewImports()
	if err != nil {
		t.Fatal(err)
	}
	inst, err := rt.Instantiate(ctx, mod, im)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close(ctx)
	mem := inst.Memory()
	r := abi.NewPairReader(mem)
	put := func(at uint32, s string) (uint32, uint32) {
		if !mem.Write(at, []byte(s)) {
			t.Fatal("write")
		}
		return at, uint32(len(s))
	}
	pair := func(k, v string) (string, string) {
		t.Helper()
		kp, kl := put(100, k)
		vp, vl := put(4000, v)
		gk, gv, st := r.KeyValue(kp, kl, vp, vl)
		if st != abi.StatusOK {
			t.Fatalf("%q %q: %s", k, v, st)
		}
		return gk, gv
	}
	k1, v1 := pair("X-Seen", "6")
	if k1 != "x-seen" || v1 != "6" {
		t.Errorf("got %q %q", k1, v1)
	}
	put(100, "Y-OTHER") // the guest reuses its memory
	if k1 != "x-seen" {
		t.Errorf("a pair read before changed with guest memory: %q", k1)
	}
	if got := string(r.Chunk()); got != "x-seen6" {
		t.Errorf("chunk %q, want the pair's bytes", got)
	}
	big := strings.Repeat("v", 600)
	if k, v := pair("x-big", big); k != "x-big" || v != big {
		t.Errorf("a big pair: %q %d bytes", k, len(v))
	}
	if got := string(r.Chunk()); got != "x-seen6" {
		t.Errorf("the big pair went into the chunk: %d bytes", len(got))
	}
	var keys, values []string
	for i := range 2000 { // several chunks
		k, v := pair(fmt.Sprintf("X-Id-%d", i%7), fmt.Sprint(i))
		keys, values = append(keys, k), append(values, v)
	}
	for i := range keys {
		if keys[i] != fmt.Sprintf("x-id-%d", i%7) || values[i] != fmt.Sprint(i) {
			t.Fatalf("pair %d is now %q %q", i, keys[i], values[i])
		}
	}
	if k1 != "x-seen" || v1 != "6" {
		t.Errorf("the first pair is now %q %q", k1, v1)
	}
	if _, _, st := r.KeyValue(65530, 100, 0, 1); st != abi.StatusInvalidMemoryAccess {
		t.Errorf("a key outside memory: %s", st)
	}
}
