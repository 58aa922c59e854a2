package wasmbin

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

const header = "\x00asm\x01\x00\x00\x00"

// snapModule is a module with one function of type () -> () whose body is
// the given instructions (without locals or end), a memory of one page and
// the extra sections.
func snapModule(instrs string, extra ...string) []byte {
	secs := map[byte]string{
		1:  section(1, "\x01\x60\x00\x00"),
		3:  section(3, "\x01\x00"),
		5:  section(5, "\x01\x00\x01"),
		7:  section(7, "\x01", str("_initialize"), "\x00\x00"),
		10: section(10, "\x01", str("\x00"+instrs+"\x0b")),
	}
	for _, e := range extra {
		secs[e[0]] = e
	}
	m := header
	for _, id := range []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 10, 11} {
		if s, ok := secs[id]; ok && s != section(id) {
			m += s
		}
	}
	return []byte(m)
}

func TestInstrumentRefuses(t *testing.T) {
	zeros16 := strings.Repeat("\x00", 16)
	for _, c := range []struct {
		name string
		wasm []byte
		want string
	}{
		{"imported memory", snapModule("", section(2, "\x01", str("env"), str("m"), "\x02\x00\x01"), section(5)), "imports its memory (env.m)"},
		{"imported global", snapModule("", section(2, "\x01", str("env"), str("g"), "\x03\x7f\x00")), "imports a global (env.g)"},
		{"imported table", snapModule("", section(2, "\x01", str("env"), str("t"), "\x01\x70\x00\x01")), "imports a table (env.t)"},
		{"two memories", snapModule("", section(5, "\x02\x00\x01\x00\x01")), "defines 2 memories"},
		{"no memory", snapModule("", section(5)), "defines 0 memories"},
		{"shared memory", snapModule("", section(5, "\x01\x03\x01\x01")), "memory is shared"},
		{"memory64", snapModule("", section(5, "\x01\x04\x01")), "64-bit"},
		{"passive data", snapModule("", section(11, "\x01\x01\x01x")), "data segment 0 is passive"},
		{"memory.init", snapModule("\x41\x00\x41\x00\x41\x00\xfc\x08\x00\x00"), "uses memory.init"},
		{"data.drop", snapModule("\xfc\x09\x00"), "uses data.drop"},
		{"table.set", snapModule("\x41\x00\xd0\x70\x26\x00"), "uses table.set"},
		{"table.grow", snapModule("\xd0\x70\x41\x01\xfc\x0f\x00\x1a"), "uses table.grow"},
		{"table.fill", snapModule("\x41\x00\xd0\x70\x41\x01\xfc\x11\x00"), "uses table.fill"},
		{"table.copy", snapModule("\x41\x00\x41\x00\x41\x00\xfc\x0e\x00\x00"), "uses table.copy"},
		{"table.init", snapModule("\x41\x00\x41\x00\x41\x00\xfc\x0c\x00\x00"), "uses table.init"},
		{"elem.drop", snapModule("\xfc\x0d\x00"), "uses elem.drop"},
		{"mutable v128", snapModule("", section(6, "\x01\x7b\x01\xfd\x0c"+zeros16+"\x0b")), "global 0 is a mutable v128"},
		{"mutable funcref", snapModule("", section(6, "\x01\x70\x01\xd0\x70\x0b")), "global 0 is a mutable funcref"},
		{"unknown instruction", snapModule("\xff"), "unknown instruction 0xff"},
		{"reserved name", snapModule("", section(7, "\x01", str(SnapshotMemoryExport), "\x02\x00")), "a name the snapshot's instrumentation uses"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Parse(c.wasm); err != nil {
				t.Fatalf("the test module does not parse: %v", err)
			}
			_, err := Instrument(c.wasm)
			if !errors.Is(err, ErrNotSnapshotable) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Instrument = %v, want ErrNotSnapshotable with %q", err, c.want)
			}
		})
	}
	// Malformed modules fail without being ErrNotSnapshotable's.
	for _, b := range [][]byte{
		[]byte(header + section(10, "\x01\x05\x00")),             // body past the section
		[]byte(header + section(6, "\x01\x7f\x01\x41")),          // init expression cut short
		[]byte(header + section(11, "\x01\x00\x41\x00\x0b\x09")), // segment past the section
		[]byte(header + section(5, "\x01\x01\x01")),              // maximum missing
	} {
		if _, err := Instrument(b); err == nil {
			t.Errorf("Instrument(% x) succeeded", b)
		}
	}
}

// segments decodes the data section of m: active segments of memory 0 at
// i32.const offsets.
func segments(t *testing.T, m []byte) (offs []uint32, datas [][]byte, count int) {
	t.Helper()
	secs, err := sections(m)
	if err != nil {
		t.Fatal(err)
	}
	count = -1
	for _, s := range secs {
		r := &reader{b: s.body}
		switch s.id {
		case 12:
			n, _ := r.u32()
			count = int(n)
		case 11:
			n, _ := r.u32()
			for ; n > 0; n-- {
				flag, _ := r.u32()
				op, _ := r.byte()
				off, _ := r.u64()
				end, _ := r.byte()
				if flag != 0 || op != 0x41 || end != 0x0b {
					t.Fatalf("segment flags %d, offset expression %x ... %x", flag, op, end)
				}
				size, _ := r.u32()
				b, err := r.bytes(size)
				if err != nil {
					t.Fatal(err)
				}
				offs = append(offs, uint32(int32(off<<32>>32))) // sign-extended 32-bit LEB
				datas = append(datas, b)
			}
		}
	}
	return offs, datas, count
}

func TestSnapshotModule(t *testing.T) {
	// A mutable i32 global and an immutable one, a data count section, a
	// start section, two memory pages of at most 4.
	m := snapModule("\x41\x07\x24\x00",
		section(5, "\x01\x01\x02\x04"),
		section(6, "\x02\x7f\x01\x41\x00\x0b\x7e\x00\x42\x05\x0b"),
		section(8, "\x00"),
		section(12, "\x01"),
		section(11, "\x01\x00\x41\x00\x0b\x01x"),
	)
	p, err := Instrument(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Globals) != 1 || p.Globals[0].Index != 0 || p.Globals[0].Type != 0x7f {
		t.Fatalf("globals = %+v", p.Globals)
	}
	im, err := Parse(p.Wasm)
	if err != nil {
		t.Fatal(err)
	}
	var getter, memExp bool
	for _, e := range im.Exports {
		if e.Name == p.Globals[0].Export && e.Kind == KindFunc {
			ft, ok := im.FuncTypeOf(e.Index)
			getter = ok && len(ft.Params) == 0 && string(ft.Results) == "\x7f"
		}
		memExp = memExp || e.Name == SnapshotMemoryExport && e.Kind == KindMemory
	}
	if !getter || !memExp {
		t.Errorf("instrumented exports %+v: getter %v, memory %v", im.Exports, getter, memExp)
	}

	mem := make([]byte, 2*65536)
	mem[0], mem[10] = 1, 2 // a gap of 9 zeros: one segment
	mem[100] = 3           // a gap of 89: another
	mem[131071] = 4        // the last byte
	const gap = MaxZeroGap
	mem[1000], mem[1000+gap] = 5, 6 // a gap of exactly MaxZeroGap-1 zeros: kept
	mem[2000], mem[2001+gap] = 7, 8 // MaxZeroGap zeros: split
	snap, err := p.Snapshot(State{Globals: []uint64{0xffffffff}, Memory: mem, NoOps: []string{"_initialize"}})
	if err != nil {
		t.Fatal(err)
	}
	sm, err := Parse(snap)
	if err != nil {
		t.Fatal(err)
	}
	offs, datas, count := segments(t, snap)
	wantOffs := []uint32{0, 100, 1000, 2000, 2001 + gap, 131071}
	if len(offs) != len(wantOffs) {
		t.Fatalf("segments at %v, want %v", offs, wantOffs)
	}
	for i, o := range offs {
		if o != wantOffs[i] || !bytes.Equal(datas[i], mem[o:int(o)+len(datas[i])]) {
			t.Errorf("segment %d at %d (%d bytes), want at %d with the memory's bytes", i, o, len(datas[i]), wantOffs[i])
		}
	}
	if len(datas[0]) != 11 || len(datas[2]) != gap+1 {
		t.Errorf("segment sizes %d, %d; want 11, %d", len(datas[0]), len(datas[2]), gap+1)
	}
	if count != len(offs) {
		t.Errorf("data count %d for %d segments", count, len(offs))
	}
	secs, _ := sections(snap)
	for _, s := range secs {
		r := &reader{b: s.body}
		switch s.id {
		case 8:
			t.Error("the snapshot kept the start section")
		case 5:
			if string(s.body) != "\x01\x01\x02\x04" {
				t.Errorf("memory section % x, want 2 pages of at most 4", s.body)
			}
		case 6:
			if string(s.body) != "\x02\x7f\x01\x41\x7f\x0b\x7e\x00\x42\x05\x0b" {
				t.Errorf("global section % x: want the mutable global at -1 (i32 0xffffffff), the other kept", s.body)
			}
			_ = r
		}
	}
	// _initialize points at a new function of its type.
	for _, e := range sm.Exports {
		if e.Name == "_initialize" && (e.Index != 1 || len(sm.Funcs) != 2 || sm.Funcs[1] != 0) {
			t.Errorf("_initialize is function %d of %d (types %v), want the new function 1", e.Index, len(sm.Funcs), sm.Funcs)
		}
	}
	if _, err := p.Snapshot(State{Globals: []uint64{0}, Memory: make([]byte, 5*65536)}); err == nil {
		t.Error("a memory of 5 pages for a maximum of 4 was accepted")
	}
	if _, err := p.Snapshot(State{Memory: mem}); err == nil {
		t.Error("a state without the global's value was accepted")
	}
	if _, err := p.Snapshot(State{Globals: []uint64{0}, Memory: mem, NoOps: []string{"nope"}}); err == nil {
		t.Error("a no-op for a function the module does not export was accepted")
	}
}

func FuzzInstrument(f *testing.F) {
	f.Add(snapModule("\x41\x07\x24\x00", section(6, "\x01\x7f\x01\x41\x00\x0b")))
	f.Add(snapModule("\x02\x40\x0e\x02\x00\x00\x00\x0b\xfd\x0c" + strings.Repeat("\x01", 16) + "\x1a"))
	f.Add(snapModule("\x41\x00\x41\x00\x41\x00\xfc\x08\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Instrument(b)
		if err != nil {
			return
		}
		if _, err := Parse(p.Wasm); err != nil {
			t.Fatalf("the instrumented module does not parse: %v", err)
		}
		st := State{Globals: make([]uint64, len(p.Globals)), Memory: make([]byte, 65536)}
		st.Memory[7] = 1
		if out, err := p.Snapshot(st); err == nil {
			if _, err := Parse(out); err != nil {
				t.Fatalf("the snapshot does not parse: %v", err)
			}
		}
	})
}
