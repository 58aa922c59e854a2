package wasmbin

import (
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Pre-initialized snapshots, the Wizer technique: Instrument returns a copy
// of a module that also exports a getter for each of its mutable globals
// and its memory; the caller instantiates that copy, runs its initializer,
// reads the globals and the memory, and Snapshot writes the original module
// with that state as its data segments and global initializers, its start
// section removed and its initializer exports pointed at functions that do
// nothing.
//
// Modules whose state after initialization is not only their memory and
// globals are refused (ErrNotSnapshotable): an imported memory or global,
// not exactly one memory, a shared or 64-bit memory, passive data segments,
// memory.init and data.drop (the data section is replaced), table.set,
// table.grow, table.fill, table.copy, table.init and elem.drop (tables are
// not captured: their contents must be what the element segments make),
// mutable globals that are not i32, i64, f32 or f64, and instructions this
// reader does not know.

// ErrNotSnapshotable is wrapped by Instrument's errors for a module whose
// state after initialization a snapshot cannot hold.
var ErrNotSnapshotable = errors.New("the module cannot be snapshotted")

// Names the instrumented copy exports.
const (
	SnapshotMemoryExport = "__anywasm_snapshot_memory"
	snapshotGlobalPrefix = "__anywasm_snapshot_global_"
)

// ProbeGlobal is a mutable global of the module and the export of its
// getter in the instrumented copy.
type ProbeGlobal struct {
	Index  uint32 // in the global index space
	Type   byte   // 0x7f i32, 0x7e i64, 0x7d f32, 0x7c f64
	Export string // a function () -> (Type)
}

// Probe is a module prepared for a snapshot.
type Probe struct {
	// Wasm is the instrumented copy.
	Wasm []byte
	// Globals are the mutable globals, whose values Snapshot needs in this
	// order.
	Globals []ProbeGlobal

	orig    []byte
	secs    []rawSection
	m       *Module
	globals []global
	memFlag byte   // the memory's limits flags (0 or 1)
	memMax  uint64 // its maximum when memFlag is 1
}

type global struct {
	entry int // the entry (its type) in the global section's body
	typ   byte
	mut   bool
	start int // the init expression in the global section's body
	end   int
}

// State is what the instrumented copy held once initialized.
type State struct {
	// Globals holds the value of each of Probe.Globals, as stack words.
	Globals []uint64
	// Memory is the whole memory; its length is a multiple of 64 KiB.
	Memory []byte
	// NoOps are exported functions (the initializer that ran: _initialize,
	// main, __main_void, _start) the snapshot points at a function that
	// does nothing and returns zeros.
	NoOps []string
}

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNotSnapshotable, fmt.Sprintf(format, args...))
}

// Instrument checks that b can be snapshotted and returns its probe.
func Instrument(b []byte) (*Probe, error) {
	m, err := Parse(b)
	if err != nil {
		return nil, err
	}
	secs, err := sections(b)
	if err != nil {
		return nil, fmt.Errorf("malformed module: %w", err)
	}
	p := &Probe{orig: b, secs: secs, m: m}
	for _, im := range m.Imports {
		switch im.Kind {
		case KindMemory:
			return nil, refuse("it imports its memory (%s.%s): a snapshot holds a memory the module defines", im.Module, im.Name)
		case KindGlobal:
			return nil, refuse("it imports a global (%s.%s): a snapshot replaces global initializers by constants", im.Module, im.Name)
		case KindTable:
			return nil, refuse("it imports a table (%s.%s): tables are not captured", im.Module, im.Name)
		}
	}
	for _, ex := range m.Exports {
		if ex.Name == SnapshotMemoryExport || len(ex.Name) >= len(snapshotGlobalPrefix) && ex.Name[:len(snapshotGlobalPrefix)] == snapshotGlobalPrefix {
			return nil, refuse("it exports %q, a name the snapshot's instrumentation uses", ex.Name)
		}
	}
	mems := 0
	for _, s := range secs {
		r := &reader{b: s.body}
		switch s.id {
		case 5:
			n, err := r.count()
			if err != nil {
				return nil, fmt.Errorf("malformed module: memory section: %w", err)
			}
			mems += int(n)
			if n == 1 {
				if err := p.parseMemory(r); err != nil {
					return nil, err
				}
			}
		case 6:
			if err := p.parseGlobals(r); err != nil {
				return nil, fmt.Errorf("global section: %w", err)
			}
		case 10:
			if err := scanCode(r); err != nil {
				return nil, err
			}
		case 11:
			if err := checkData(r); err != nil {
				return nil, err
			}
		}
	}
	if mems != 1 {
		return nil, refuse("it defines %d memories: a snapshot holds exactly one", mems)
	}
	// The getters: a type () -> (t) per value type, a function per mutable
	// global.
	typeOf := map[byte]uint32{}
	var newTypes, funcs, code []byte
	nTypes := uint32(len(m.Types))
	var getters []uint32 // type index of each getter
	for i, g := range p.globals {
		if !g.mut {
			continue
		}
		switch g.typ {
		case 0x7f, 0x7e, 0x7d, 0x7c:
		default:
			return nil, refuse("global %d is a mutable %s: only i32, i64, f32 and f64 globals are captured", i, typeName(g.typ))
		}
		ti, ok := typeOf[g.typ]
		if !ok {
			ti = nTypes
			nTypes++
			typeOf[g.typ] = ti
			newTypes = append(newTypes, 0x60, 0, 1, g.typ)
		}
		getters = append(getters, ti)
		p.Globals = append(p.Globals, ProbeGlobal{Index: uint32(i), Type: g.typ, Export: snapshotGlobalPrefix + strconv.Itoa(i)})
	}
	first := uint32(m.NumFuncs())
	var exports []byte
	for k, ti := range getters {
		funcs = appendU32(funcs, ti)
		body := []byte{0, 0x23} // no locals; global.get
		body = appendU32(body, p.Globals[k].Index)
		body = append(body, 0x0b)
		code = appendU32(code, uint32(len(body)))
		code = append(code, body...)
		exports = appendName(exports, p.Globals[k].Export)
		exports = append(exports, KindFunc)
		exports = appendU32(exports, first+uint32(k))
	}
	exports = appendName(exports, SnapshotMemoryExport)
	exports = append(exports, KindMemory, 0)
	ed := editor{secs: secs, orig: b}
	ed.extend(1, uint32(len(typeOf)), newTypes, len(typeOf) > 0)
	ed.extend(3, uint32(len(getters)), funcs, len(getters) > 0)
	ed.extend(7, uint32(len(getters)+1), exports, true)
	ed.extend(10, uint32(len(getters)), code, len(getters) > 0)
	if p.Wasm, err = ed.write(); err != nil {
		return nil, err
	}
	return p, nil
}

func typeName(t byte) string {
	switch t {
	case 0x7f:
		return "i32"
	case 0x7e:
		return "i64"
	case 0x7d:
		return "f32"
	case 0x7c:
		return "f64"
	case 0x7b:
		return "v128"
	case 0x70:
		return "funcref"
	case 0x6f:
		return "externref"
	}
	return fmt.Sprintf("reference (0x%x)", t)
}

func appendName(b []byte, s string) []byte {
	b = appendU32(b, uint32(len(s)))
	return append(b, s...)
}

func (p *Probe) parseMemory(r *reader) error {
	flags, err := r.byte()
	if err != nil {
		return fmt.Errorf("malformed module: memory section: %w", err)
	}
	switch {
	case flags&2 != 0:
		return refuse("its memory is shared (threads): a snapshot of one thread's view is not the state")
	case flags&4 != 0:
		return refuse("its memory is 64-bit (memory64)")
	case flags > 1:
		return refuse("its memory has limits flags 0x%x", flags)
	}
	p.memFlag = flags
	if _, err := r.u32(); err != nil {
		return fmt.Errorf("malformed module: memory section: %w", err)
	}
	if flags == 1 {
		mx, err := r.u32()
		if err != nil {
			return fmt.Errorf("malformed module: memory section: %w", err)
		}
		p.memMax = uint64(mx)
	}
	return nil
}

func (p *Probe) parseGlobals(r *reader) error {
	n, err := r.count()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		start := r.off
		if err := r.valtype(); err != nil {
			return fmt.Errorf("global %d: %w", i, err)
		}
		g := global{entry: start, typ: r.b[start]}
		mut, err := r.byte()
		if err != nil {
			return err
		}
		if mut > 1 {
			return fmt.Errorf("global %d: invalid mutability 0x%x", i, mut)
		}
		g.mut = mut == 1
		g.start = r.off
		if err := r.constExpr(); err != nil {
			return fmt.Errorf("global %d: %w", i, err)
		}
		g.end = r.off
		p.globals = append(p.globals, g)
	}
	return nil
}

// constExpr skips a constant expression, up to its end.
func (r *reader) constExpr() error {
	for {
		pre, _, err := r.instr()
		if err != nil {
			return err
		}
		if pre == 0x0b {
			return nil
		}
	}
}

// checkData refuses passive data segments: memory.init could copy them
// after the snapshot, and the snapshot's data section replaces them.
func checkData(r *reader) error {
	n, err := r.count()
	if err != nil {
		return fmt.Errorf("malformed module: data section: %w", err)
	}
	for i := uint32(0); i < n; i++ {
		flag, err := r.u32()
		if err != nil {
			return fmt.Errorf("malformed module: data section: %w", err)
		}
		switch flag {
		case 0:
		case 1:
			return refuse("data segment %d is passive (bulk memory): its later memory.init would copy data the snapshot does not keep", i)
		case 2:
			if _, err := r.u32(); err != nil {
				return fmt.Errorf("malformed module: data section: %w", err)
			}
		default:
			return fmt.Errorf("malformed module: data segment %d: invalid flags %d", i, flag)
		}
		if err := r.constExpr(); err != nil {
			return fmt.Errorf("malformed module: data segment %d: %w", i, err)
		}
		size, err := r.u32()
		if err != nil {
			return fmt.Errorf("malformed module: data segment %d: %w", i, err)
		}
		if _, err := r.bytes(size); err != nil {
			return fmt.Errorf("malformed module: data segment %d: size %d past the section", i, size)
		}
	}
	return nil
}

// scanCode reads every instruction of the code section and refuses those
// whose effect a snapshot cannot hold.
func scanCode(r *reader) error {
	n, err := r.count()
	if err != nil {
		return fmt.Errorf("malformed module: code section: %w", err)
	}
	for i := uint32(0); i < n; i++ {
		size, err := r.u32()
		if err != nil {
			return fmt.Errorf("malformed module: code section: %w", err)
		}
		b, err := r.bytes(size)
		if err != nil {
			return fmt.Errorf("malformed module: function body %d: size %d past the section", i, size)
		}
		fr := &reader{b: b}
		groups, err := fr.count()
		if err != nil {
			return fmt.Errorf("malformed module: function body %d: locals: %w", i, err)
		}
		for ; groups > 0; groups-- {
			if _, err := fr.u32(); err != nil {
				return fmt.Errorf("malformed module: function body %d: locals: %w", i, err)
			}
			if err := fr.valtype(); err != nil {
				return fmt.Errorf("malformed module: function body %d: locals: %w", i, err)
			}
		}
		for fr.off < len(fr.b) {
			at := fr.off
			pre, sub, err := fr.instr()
			if err != nil {
				return fmt.Errorf("%w: function body %d, offset %d: %v", ErrNotSnapshotable, i, at, err)
			}
			if name := mutator(pre, sub); name != "" {
				return refuse("function body %d uses %s: %s", i, name, mutatorWhy(pre, sub))
			}
		}
	}
	return nil
}

// mutator names the instructions a snapshot refuses.
func mutator(pre byte, sub uint32) string {
	if pre == 0x26 {
		return "table.set"
	}
	if pre != 0xfc {
		return ""
	}
	switch sub {
	case 8:
		return "memory.init"
	case 9:
		return "data.drop"
	case 12:
		return "table.init"
	case 13:
		return "elem.drop"
	case 14:
		return "table.copy"
	case 15:
		return "table.grow"
	case 17:
		return "table.fill"
	}
	return ""
}

func mutatorWhy(pre byte, sub uint32) string {
	if pre == 0xfc && (sub == 8 || sub == 9) {
		return "the snapshot replaces the data segments it names"
	}
	return "tables are not captured, so the initializer must not change them"
}

// instr reads one instruction and returns its opcode (pre) and, for the
// prefixed opcodes 0xfc, 0xfd and 0xfe, its sub-opcode. Only the immediates'
// encodings are read, every length bounded by the bytes there are; nothing
// is validated.
func (r *reader) instr() (pre byte, sub uint32, err error) {
	if pre, err = r.byte(); err != nil {
		return 0, 0, err
	}
	switch {
	case pre == 0x00, pre == 0x01, pre == 0x05, pre == 0x0a, pre == 0x0b, pre == 0x0f,
		pre == 0x19, pre == 0x1a, pre == 0x1b, pre == 0xd1, pre == 0xd3, pre == 0xd4,
		pre >= 0x45 && pre <= 0xc4:
		return pre, 0, nil
	case pre == 0x02, pre == 0x03, pre == 0x04, pre == 0x06:
		return pre, 0, r.blockType()
	case pre == 0x07, pre == 0x08, pre == 0x09, pre == 0x0c, pre == 0x0d, pre == 0x10, pre == 0x12,
		pre == 0x14, pre == 0x15, pre == 0x18, pre >= 0x20 && pre <= 0x26, pre == 0x3f, pre == 0x40,
		pre == 0xd2, pre == 0xd5, pre == 0xd6:
		_, err = r.u32()
		return pre, 0, err
	case pre == 0x11, pre == 0x13:
		return pre, 0, r.skipU32s(2)
	case pre == 0x0e:
		n, err := r.count()
		if err != nil {
			return pre, 0, err
		}
		return pre, 0, r.skipU32s(int(n) + 1)
	case pre == 0x1c:
		n, err := r.count()
		if err != nil {
			return pre, 0, err
		}
		for ; n > 0; n-- {
			if err := r.valtype(); err != nil {
				return pre, 0, err
			}
		}
		return pre, 0, nil
	case pre == 0x1f: // try_table
		if err := r.blockType(); err != nil {
			return pre, 0, err
		}
		n, err := r.count()
		if err != nil {
			return pre, 0, err
		}
		for ; n > 0; n-- {
			kind, err := r.byte()
			if err != nil {
				return pre, 0, err
			}
			k := 1
			if kind < 2 {
				k = 2
			}
			if err := r.skipU32s(k); err != nil {
				return pre, 0, err
			}
		}
		return pre, 0, nil
	case pre >= 0x28 && pre <= 0x3e:
		return pre, 0, r.memarg()
	case pre == 0x41, pre == 0x42, pre == 0xd0:
		_, err = r.u64() // s32, s64, heap type (s33): LEB128 all
		return pre, 0, err
	case pre == 0x43:
		_, err = r.bytes(4)
		return pre, 0, err
	case pre == 0x44:
		_, err = r.bytes(8)
		return pre, 0, err
	case pre == 0xfc:
		if sub, err = r.u32(); err != nil {
			return pre, 0, err
		}
		switch {
		case sub <= 7:
			return pre, sub, nil
		case sub == 8, sub == 10, sub == 12, sub == 14:
			return pre, sub, r.skipU32s(2)
		case sub == 9, sub == 11, sub == 13, sub == 15, sub == 16, sub == 17:
			return pre, sub, r.skipU32s(1)
		}
	case pre == 0xfd:
		if sub, err = r.u32(); err != nil {
			return pre, 0, err
		}
		switch {
		case sub <= 11, sub == 92, sub == 93:
			return pre, sub, r.memarg()
		case sub == 12, sub == 13:
			_, err = r.bytes(16)
			return pre, sub, err
		case sub >= 21 && sub <= 34:
			_, err = r.byte()
			return pre, sub, err
		case sub >= 84 && sub <= 91:
			if err := r.memarg(); err != nil {
				return pre, sub, err
			}
			_, err = r.byte()
			return pre, sub, err
		case sub <= 0x113:
			return pre, sub, nil
		}
	case pre == 0xfe:
		if sub, err = r.u32(); err != nil {
			return pre, 0, err
		}
		if sub == 3 {
			_, err = r.byte()
			return pre, sub, err
		}
		if sub <= 0x4e {
			return pre, sub, r.memarg()
		}
	}
	return pre, sub, fmt.Errorf("unknown instruction 0x%x %d", pre, sub)
}

func (r *reader) skipU32s(n int) error {
	for ; n > 0; n-- {
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	return nil
}

func (r *reader) memarg() error {
	align, err := r.u32()
	if err != nil {
		return err
	}
	if align&0x40 != 0 { // multi-memory: a memory index follows
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	_, err = r.u64()
	return err
}

func (r *reader) blockType() error {
	if r.off >= len(r.b) {
		return errEOF
	}
	switch t := r.b[r.off]; {
	case t == 0x40, t >= 0x7b && t <= 0x7f, t == 0x70, t == 0x6f:
		r.off++
		return nil
	case t == 0x63, t == 0x64:
		r.off++
	}
	_, err := r.u64() // a type index (s33) or a heap type
	return err
}

// editor rewrites a module section by section.
type editor struct {
	orig []byte
	secs []rawSection
	// bodies replaces the body of a (non-custom) section, by id; drop
	// removes it.
	bodies map[byte][]byte
	drop   map[byte]bool
}

// order is the position of each non-custom section id in a module.
func order(id byte) int {
	switch id {
	case 13: // tag: between memory and global
		return 55
	case 12: // data count: before code
		return 95
	}
	return int(id) * 10
}

func (e *editor) find(id byte) *rawSection {
	for i := range e.secs {
		if e.secs[i].id == id {
			return &e.secs[i]
		}
	}
	return nil
}

// extend appends n entries to the vector of section id (creating the
// section if the module has none), when do is set.
func (e *editor) extend(id byte, n uint32, entries []byte, do bool) {
	if !do {
		return
	}
	var have uint32
	var rest []byte
	if s := e.find(id); s != nil {
		if b, ok := e.bodies[id]; ok {
			rest = b
		} else {
			rest = s.body
		}
		r := &reader{b: rest}
		have, _ = r.u32() // read by Parse or a check already
		rest = rest[r.off:]
	}
	body := appendU32(nil, have+n)
	body = append(body, rest...)
	body = append(body, entries...)
	e.set(id, body)
}

func (e *editor) set(id byte, body []byte) {
	if e.bodies == nil {
		e.bodies = map[byte][]byte{}
	}
	e.bodies[id] = body
}

// write emits the module: sections in their order, with their new bodies,
// custom sections where they were, new sections before the first section
// that follows them.
func (e *editor) write() ([]byte, error) {
	out := make([]byte, 0, len(e.orig)+64)
	out = append(out, e.orig[:8]...)
	done := map[byte]bool{}
	emit := func(id byte, body []byte) error {
		if uint64(len(body)) > math.MaxUint32 {
			return fmt.Errorf("section %d too large", id)
		}
		out = append(out, id)
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
		return nil
	}
	// pending emits the new sections ordered before rank.
	pending := func(rank int) error {
		for _, id := range []byte{1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11} {
			if order(id) >= rank || done[id] || e.drop[id] {
				continue
			}
			if b, ok := e.bodies[id]; ok && e.find(id) == nil {
				done[id] = true
				if err := emit(id, b); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, s := range e.secs {
		if s.id == 0 {
			out = append(out, e.orig[s.start:s.end]...)
			continue
		}
		if err := pending(order(s.id)); err != nil {
			return nil, err
		}
		done[s.id] = true
		switch b, ok := e.bodies[s.id]; {
		case e.drop[s.id]:
		case ok:
			if err := emit(s.id, b); err != nil {
				return nil, err
			}
		default:
			out = append(out, e.orig[s.start:s.end]...)
		}
	}
	if err := pending(math.MaxInt); err != nil {
		return nil, err
	}
	return out, nil
}

// MaxZeroGap is the longest run of zero bytes a data segment of a snapshot
// may hold: shorter gaps between non-zero bytes are kept in one segment,
// which bounds the number of segments.
const MaxZeroGap = 32

// Snapshot returns the module of p with st as its state: each mutable
// global initialized to its captured value, the memory's initial size the
// captured size (its maximum kept) and its data the captured memory (one
// active segment per run of non-zero bytes), no start section, and the
// exports st.NoOps pointing at functions of their types that return zeros.
func (p *Probe) Snapshot(st State) ([]byte, error) {
	if len(st.Globals) != len(p.Globals) {
		return nil, fmt.Errorf("wasmbin: %d global values for %d globals", len(st.Globals), len(p.Globals))
	}
	if len(st.Memory)%65536 != 0 || len(st.Memory) > 65536*65536 {
		return nil, fmt.Errorf("wasmbin: memory of %d bytes is not whole pages", len(st.Memory))
	}
	pages := uint64(len(st.Memory) / 65536)
	if p.memFlag == 1 && pages > p.memMax {
		return nil, fmt.Errorf("wasmbin: memory of %d pages exceeds the module's maximum %d", pages, p.memMax)
	}
	ed := editor{orig: p.orig, secs: p.secs, drop: map[byte]bool{8: true}}

	// Globals.
	if s := ed.find(6); s != nil {
		values := map[uint32]uint64{}
		for i, g := range p.Globals {
			values[g.Index] = st.Globals[i]
		}
		body := appendU32(nil, uint32(len(p.globals)))
		for i, g := range p.globals {
			body = append(body, s.body[g.entry:g.start]...) // type and mutability
			v, ok := values[uint32(i)]
			if !ok {
				body = append(body, s.body[g.start:g.end]...)
				continue
			}
			body = appendConst(body, g.typ, v)
			body = append(body, 0x0b)
		}
		ed.set(6, body)
	}

	// Memory.
	mem := []byte{1, p.memFlag}
	mem = appendU32(mem, uint32(pages))
	if p.memFlag == 1 {
		mem = appendU32(mem, uint32(p.memMax))
	}
	ed.set(5, mem)

	// Data.
	var segs []byte
	nseg := uint32(0)
	m := st.Memory
	for i := 0; i < len(m); {
		for i < len(m) && m[i] == 0 {
			i++
		}
		if i == len(m) {
			break
		}
		start, end := i, i
		for i < len(m) {
			if m[i] != 0 {
				i++
				end = i
				continue
			}
			z := i // a run of zeros: kept inside the segment if short
			for i < len(m) && m[i] == 0 && i-z < MaxZeroGap {
				i++
			}
			if i == len(m) || i-z >= MaxZeroGap {
				break
			}
		}
		segs = append(segs, 0, 0x41) // active, memory 0, i32.const
		segs = appendS32(segs, int32(uint32(start)))
		segs = append(segs, 0x0b)
		segs = appendU32(segs, uint32(end-start))
		segs = append(segs, m[start:end]...)
		nseg++
		i = end
	}
	ed.set(11, append(appendU32(nil, nseg), segs...))
	if ed.find(12) != nil {
		ed.set(12, appendU32(nil, nseg))
	}

	// The no-op functions, one per type, and the exports pointed at them.
	if len(st.NoOps) > 0 {
		noop := map[uint32]uint32{} // type index -> new function index
		var funcs, code []byte
		next := uint32(p.m.NumFuncs())
		target := map[string]uint32{}
		for _, name := range st.NoOps {
			idx, ok := p.exportedFunc(name)
			if !ok {
				return nil, fmt.Errorf("wasmbin: the module exports no function %q", name)
			}
			ti, ok := p.funcTypeIndex(idx)
			if !ok {
				return nil, fmt.Errorf("wasmbin: function %q has no type", name)
			}
			f, ok := noop[ti]
			if !ok {
				ft := p.m.Types[ti]
				body := []byte{0}
				for _, t := range ft.Results {
					switch t {
					case 0x7f:
						body = append(body, 0x41, 0) // i32.const 0
					case 0x7e:
						body = append(body, 0x42, 0) // i64.const 0
					case 0x7d:
						body = append(body, 0x43, 0, 0, 0, 0)
					case 0x7c:
						body = append(body, 0x44, 0, 0, 0, 0, 0, 0, 0, 0)
					default:
						return nil, fmt.Errorf("%w: %q returns a %s", ErrNotSnapshotable, name, typeName(t))
					}
				}
				body = append(body, 0x0b)
				funcs = appendU32(funcs, ti)
				code = appendU32(code, uint32(len(body)))
				code = append(code, body...)
				f = next
				next++
				noop[ti] = f
			}
			target[name] = f
		}
		var exports []byte
		for _, ex := range p.m.Exports {
			exports = appendName(exports, ex.Name)
			exports = append(exports, ex.Kind)
			idx := ex.Index
			if f, ok := target[ex.Name]; ok && ex.Kind == KindFunc {
				idx = f
			}
			exports = appendU32(exports, idx)
		}
		ed.set(7, append(appendU32(nil, uint32(len(p.m.Exports))), exports...))
		ed.extend(3, uint32(len(noop)), funcs, true)
		ed.extend(10, uint32(len(noop)), code, true)
	}
	return ed.write()
}

func appendConst(b []byte, t byte, v uint64) []byte {
	switch t {
	case 0x7f:
		return appendS32(append(b, 0x41), int32(uint32(v)))
	case 0x7e:
		return appendS64(append(b, 0x42), int64(v))
	case 0x7d:
		u := uint32(v)
		return append(b, 0x43, byte(u), byte(u>>8), byte(u>>16), byte(u>>24))
	}
	b = append(b, 0x44)
	for i := 0; i < 8; i++ {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

func appendS32(b []byte, v int32) []byte { return appendS64(b, int64(v)) }

func appendS64(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func (p *Probe) exportedFunc(name string) (uint32, bool) {
	for _, ex := range p.m.Exports {
		if ex.Name == name && ex.Kind == KindFunc {
			return ex.Index, true
		}
	}
	return 0, false
}

// funcTypeIndex returns the type index of function idx.
func (p *Probe) funcTypeIndex(idx uint32) (uint32, bool) {
	for _, im := range p.m.Imports {
		if im.Kind != KindFunc {
			continue
		}
		if idx == 0 {
			return im.Type, true
		}
		idx--
	}
	if uint64(idx) < uint64(len(p.m.Funcs)) {
		t := p.m.Funcs[idx]
		return t, uint64(t) < uint64(len(p.m.Types))
	}
	return 0, false
}
