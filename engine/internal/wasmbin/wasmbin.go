// Package wasmbin reads what the engine needs from a WebAssembly binary
// without compiling it: the function types of its imports and exports, and
// the names of its name section.
//
// It is not a validator: the runtime validates. It is written to never panic
// and never allocate more than the input justifies, whatever the bytes.
package wasmbin

import (
	"errors"
	"fmt"
)

// Kinds of imports and exports, as in the binary format.
const (
	KindFunc   = 0
	KindTable  = 1
	KindMemory = 2
	KindGlobal = 3
	KindTag    = 4
)

// FuncType is a function signature as value type bytes.
type FuncType struct {
	Params, Results []byte
}

// Import is one entry of the import section.
type Import struct {
	Module, Name string
	Kind         byte
	Type         uint32 // type index, for KindFunc and KindTag
}

// Export is one entry of the export section.
type Export struct {
	Name  string
	Kind  byte
	Index uint32
}

// Module is what Parse read.
type Module struct {
	Types   []FuncType
	Imports []Import
	Funcs   []uint32 // type index of each function defined in the module
	Exports []Export
	// Name is the module name of the name section, "" if none.
	Name string
	// FuncNames holds the function names of the name section, indexed by
	// function index (imported functions first); "" where a function has
	// none. It is nil when the module has no function names.
	FuncNames []string
}

// NumFuncs returns the size of the function index space: imported and
// defined functions.
func (m *Module) NumFuncs() int {
	n := len(m.Funcs)
	for _, im := range m.Imports {
		if im.Kind == KindFunc {
			n++
		}
	}
	return n
}

// FuncTypeOf returns the type of the function at index idx of the function
// index space (imported functions first).
func (m *Module) FuncTypeOf(idx uint32) (FuncType, bool) {
	for _, im := range m.Imports {
		if im.Kind != KindFunc {
			continue
		}
		if idx == 0 {
			return m.typeAt(im.Type)
		}
		idx--
	}
	if uint64(idx) < uint64(len(m.Funcs)) {
		return m.typeAt(m.Funcs[idx])
	}
	return FuncType{}, false
}

func (m *Module) typeAt(i uint32) (FuncType, bool) {
	if uint64(i) < uint64(len(m.Types)) {
		return m.Types[i], true
	}
	return FuncType{}, false
}

var errEOF = errors.New("unexpected end")

type reader struct {
	b   []byte
	off int
}

func (r *reader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, errEOF
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *reader) u32() (uint32, error) {
	var v uint64
	for shift := 0; shift < 35; shift += 7 {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			if v > 0xffffffff {
				return 0, errors.New("integer too large")
			}
			return uint32(v), nil
		}
	}
	return 0, errors.New("integer representation too long")
}

func (r *reader) u64() (uint64, error) {
	var v uint64
	for shift := 0; shift < 70; shift += 7 {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, nil
		}
	}
	return 0, errors.New("integer representation too long")
}

func (r *reader) bytes(n uint32) ([]byte, error) {
	if uint64(n) > uint64(len(r.b)-r.off) {
		return nil, errEOF
	}
	b := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return b, nil
}

func (r *reader) name() (string, error) {
	n, err := r.u32()
	if err != nil {
		return "", err
	}
	b, err := r.bytes(n)
	return string(b), err
}

// count reads a vector length and refuses one larger than the bytes left
// (each element takes at least one byte), so a hostile length cannot make us
// allocate.
func (r *reader) count() (uint32, error) {
	n, err := r.u32()
	if err != nil {
		return 0, err
	}
	if uint64(n) > uint64(len(r.b)-r.off) {
		return 0, fmt.Errorf("vector length %d exceeds the section", n)
	}
	return n, nil
}

func (r *reader) limits() error {
	flags, err := r.byte()
	if err != nil {
		return err
	}
	if flags > 0x07 {
		return fmt.Errorf("invalid limits flags 0x%x", flags)
	}
	read := r.u64
	if _, err := read(); err != nil {
		return err
	}
	if flags&1 != 0 {
		if _, err := read(); err != nil {
			return err
		}
	}
	return nil
}

func (r *reader) reftype() error {
	t, err := r.byte()
	if err != nil {
		return err
	}
	switch t {
	case 0x70, 0x6f:
		return nil
	case 0x63, 0x64: // (ref null ht), (ref ht)
		_, err := r.u64() // heap type, s33
		return err
	}
	return fmt.Errorf("unsupported reference type 0x%x", t)
}

func (r *reader) valtype() error {
	t, err := r.byte()
	if err != nil {
		return err
	}
	switch t {
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b:
		return nil
	}
	r.off--
	return r.reftype()
}

// Parse reads the type, import, function and export sections of b, and the
// module and function names of its name section (custom section "name",
// subsections 0 and 1). A malformed name section is ignored, as runtimes
// ignore it: it never makes Parse fail.
func Parse(b []byte) (*Module, error) {
	m, err := parse(b)
	if err != nil {
		return nil, fmt.Errorf("malformed module: %w", err)
	}
	return m, nil
}

func parse(b []byte) (*Module, error) {
	if len(b) < 8 || string(b[:4]) != "\x00asm" {
		return nil, errors.New("missing the \\0asm magic header (not a WebAssembly binary)")
	}
	if b[4] != 1 || b[5] != 0 || b[6] != 0 || b[7] != 0 {
		return nil, fmt.Errorf("unsupported binary version % x (only version 1 modules are supported; components are not)", b[4:8])
	}
	m := &Module{}
	r := &reader{b: b, off: 8}
	var names []byte // the first name section's body, after its name
	for r.off < len(b) {
		id, err := r.byte()
		if err != nil {
			return nil, err
		}
		size, err := r.u32()
		if err != nil {
			return nil, fmt.Errorf("section %d: %w", id, err)
		}
		body, err := r.bytes(size)
		if err != nil {
			return nil, fmt.Errorf("section %d: size %d past the end of the module", id, size)
		}
		s := &reader{b: body}
		switch id {
		case 1:
			err = m.parseTypes(s)
		case 2:
			err = m.parseImports(s)
		case 3:
			err = m.parseFuncs(s)
		case 7:
			err = m.parseExports(s)
		case 0:
			if n, err := s.name(); err == nil && n == "name" && names == nil {
				names = body[s.off:]
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s section: %w", sectionName(id), err)
		}
	}
	if names != nil {
		// The function count is known only once every section is read.
		m.parseNames(&reader{b: names})
	}
	return m, nil
}

// parseNames reads the module name (subsection 0) and the function names
// (subsection 1) of a name section. It keeps what it read before an error:
// names are for diagnosis, and a broken section must not fail the module.
// The names share one copy of the section's bytes.
func (m *Module) parseNames(r *reader) {
	text := string(r.b) // one copy; every name is a substring of it
	// name reads a name of the subsection sub, which starts at base in r.b.
	name := func(sub *reader, base int) (string, bool) {
		n, err := sub.u32()
		if err != nil || uint64(n) > uint64(len(sub.b)-sub.off) {
			return "", false
		}
		start := base + sub.off
		sub.off += int(n)
		return text[start : start+int(n)], true
	}
	nfuncs := m.NumFuncs()
	for r.off < len(r.b) {
		id, err := r.byte()
		if err != nil {
			return
		}
		size, err := r.u32()
		if err != nil {
			return
		}
		base := r.off
		body, err := r.bytes(size)
		if err != nil {
			return
		}
		sub := &reader{b: body}
		switch id {
		case 0:
			if n, ok := name(sub, base); ok {
				m.Name = n
			}
		case 1:
			count, err := sub.count()
			if err != nil {
				return
			}
			for i := uint32(0); i < count; i++ {
				idx, err := sub.u32()
				if err != nil {
					return
				}
				n, ok := name(sub, base)
				if !ok {
					return
				}
				if uint64(idx) >= uint64(nfuncs) {
					continue // names a function the module does not have
				}
				if m.FuncNames == nil {
					m.FuncNames = make([]string, nfuncs)
				}
				m.FuncNames[idx] = n
			}
		}
	}
}

// WithoutNames returns b without its name sections (custom sections named
// "name"), or b itself if it has none. b must be a module Parse accepts.
func WithoutNames(b []byte) []byte {
	var keep [][2]int // byte ranges to keep
	start := 8
	r := &reader{b: b, off: 8}
	for r.off < len(b) {
		sec := r.off
		id, err := r.byte()
		if err != nil {
			return b
		}
		size, err := r.u32()
		if err != nil {
			return b
		}
		body, err := r.bytes(size)
		if err != nil {
			return b
		}
		if id != 0 {
			continue
		}
		if n, err := (&reader{b: body}).name(); err == nil && n == "name" {
			keep = append(keep, [2]int{start, sec})
			start = r.off
		}
	}
	if keep == nil {
		return b
	}
	keep = append(keep, [2]int{start, len(b)})
	out := make([]byte, 0, len(b))
	out = append(out, b[:8]...)
	for _, k := range keep {
		out = append(out, b[k[0]:k[1]]...)
	}
	return out
}

func sectionName(id byte) string {
	switch id {
	case 1:
		return "type"
	case 2:
		return "import"
	case 3:
		return "function"
	case 7:
		return "export"
	case 0:
		return "custom"
	}
	return fmt.Sprintf("section %d", id)
}

func (m *Module) parseTypes(r *reader) error {
	n, err := r.count()
	if err != nil {
		return err
	}
	m.Types = make([]FuncType, 0, n)
	for i := uint32(0); i < n; i++ {
		form, err := r.byte()
		if err != nil {
			return err
		}
		if form != 0x60 {
			return fmt.Errorf("type %d: unsupported type form 0x%x (only function types; the GC proposal is not supported)", i, form)
		}
		var ft FuncType
		for j := 0; j < 2; j++ {
			k, err := r.count()
			if err != nil {
				return err
			}
			ts := make([]byte, 0, k)
			for ; k > 0; k-- {
				start := r.off
				if err := r.valtype(); err != nil {
					return fmt.Errorf("type %d: %w", i, err)
				}
				ts = append(ts, r.b[start])
			}
			if j == 0 {
				ft.Params = ts
			} else {
				ft.Results = ts
			}
		}
		m.Types = append(m.Types, ft)
	}
	return nil
}

func (m *Module) parseImports(r *reader) error {
	n, err := r.count()
	if err != nil {
		return err
	}
	m.Imports = make([]Import, 0, n)
	for i := uint32(0); i < n; i++ {
		var im Import
		if im.Module, err = r.name(); err != nil {
			return err
		}
		if im.Name, err = r.name(); err != nil {
			return err
		}
		if im.Kind, err = r.byte(); err != nil {
			return err
		}
		switch im.Kind {
		case KindFunc:
			im.Type, err = r.u32()
		case KindTable:
			if err = r.reftype(); err == nil {
				err = r.limits()
			}
		case KindMemory:
			err = r.limits()
		case KindGlobal:
			if err = r.valtype(); err == nil {
				_, err = r.byte()
			}
		case KindTag:
			if _, err = r.byte(); err == nil {
				im.Type, err = r.u32()
			}
		default:
			return fmt.Errorf("import %s.%s: unknown kind 0x%x", im.Module, im.Name, im.Kind)
		}
		if err != nil {
			return fmt.Errorf("import %s.%s: %w", im.Module, im.Name, err)
		}
		m.Imports = append(m.Imports, im)
	}
	return nil
}

func (m *Module) parseFuncs(r *reader) error {
	n, err := r.count()
	if err != nil {
		return err
	}
	m.Funcs = make([]uint32, 0, n)
	for i := uint32(0); i < n; i++ {
		t, err := r.u32()
		if err != nil {
			return err
		}
		m.Funcs = append(m.Funcs, t)
	}
	return nil
}

func (m *Module) parseExports(r *reader) error {
	n, err := r.count()
	if err != nil {
		return err
	}
	m.Exports = make([]Export, 0, n)
	for i := uint32(0); i < n; i++ {
		var ex Export
		if ex.Name, err = r.name(); err != nil {
			return err
		}
		if ex.Kind, err = r.byte(); err != nil {
			return err
		}
		if ex.Kind > KindTag {
			return fmt.Errorf("export %q: unknown kind 0x%x", ex.Name, ex.Kind)
		}
		if ex.Index, err = r.u32(); err != nil {
			return err
		}
		m.Exports = append(m.Exports, ex)
	}
	return nil
}

// A rawSection is one section of a module: its id, its bytes from the id to
// the end of its body, and, for a custom section, its name.
type rawSection struct {
	id         byte
	start, end int    // b[start:end] is the whole section
	body       []byte // the body; for a custom section, after its name
	name       string // the custom section's name
}

// sections splits b into its sections, checking the header, every section
// size and every custom section's name against the bytes there are, as
// proxy-wasm-cpp-host's BytecodeUtil does (src/bytecode_util.cc). It reads
// nothing inside the other sections: the runtime validates them.
func sections(b []byte) ([]rawSection, error) {
	if len(b) < 8 || string(b[:4]) != "\x00asm" {
		return nil, errors.New("missing the \\0asm magic header (not a WebAssembly binary)")
	}
	if b[4] != 1 || b[5] != 0 || b[6] != 0 || b[7] != 0 {
		return nil, fmt.Errorf("unsupported binary version % x (only version 1 modules are supported; components are not)", b[4:8])
	}
	var out []rawSection
	r := &reader{b: b, off: 8}
	for r.off < len(b) {
		s := rawSection{start: r.off}
		var err error
		if s.id, err = r.byte(); err != nil {
			return nil, err
		}
		size, err := r.u32()
		if err != nil {
			return nil, fmt.Errorf("%s section at offset %d: size: %w", sectionName(s.id), s.start, err)
		}
		if s.body, err = r.bytes(size); err != nil {
			return nil, fmt.Errorf("%s section at offset %d: size %d past the end of the module (%d bytes left)", sectionName(s.id), s.start, size, len(b)-r.off)
		}
		s.end = r.off
		if s.id == 0 {
			cr := &reader{b: s.body}
			if s.name, err = cr.name(); err != nil {
				return nil, fmt.Errorf("custom section at offset %d: name: %w", s.start, err)
			}
			s.body = s.body[cr.off:]
		}
		out = append(out, s)
	}
	return out, nil
}

// CustomSection returns the contents (after the name) of the first custom
// section of b named name: proxy-wasm-cpp-host's
// BytecodeUtil::getCustomSection. found is false if b has none; err is
// set if b's section table is malformed. The contents alias b.
func CustomSection(b []byte, name string) (contents []byte, found bool, err error) {
	secs, err := sections(b)
	if err != nil {
		return nil, false, fmt.Errorf("malformed module: %w", err)
	}
	for _, s := range secs {
		if s.id == 0 && s.name == name {
			return s.body, true, nil
		}
	}
	return nil, false, nil
}

// StripCustomSections returns b without the custom sections whose name
// match accepts, or b itself if it has none; err is set if b's section
// table is malformed. The other sections are kept, in order, byte for
// byte.
func StripCustomSections(b []byte, match func(name string) bool) ([]byte, error) {
	secs, err := sections(b)
	if err != nil {
		return nil, fmt.Errorf("malformed module: %w", err)
	}
	var out []byte
	for _, s := range secs {
		drop := s.id == 0 && match(s.name)
		if drop && out == nil {
			out = make([]byte, 0, len(b))
			out = append(out, b[:s.start]...)
		} else if !drop && out != nil {
			out = append(out, b[s.start:s.end]...)
		}
	}
	if out == nil {
		return b, nil
	}
	return out, nil
}

// WithCustomSection returns a copy of b without its custom sections named
// name and with one such section holding contents appended:
// proxy-wasm-cpp-host's BytecodeUtil::writeModuleWithCustomSection (which
// replaces sections whose name contains name; this replaces those named
// exactly name).
func WithCustomSection(b []byte, name string, contents []byte) ([]byte, error) {
	if uint64(len(name))+uint64(len(contents))+5 > 0xffffffff {
		return nil, errors.New("custom section too large")
	}
	stripped, err := StripCustomSections(b, func(n string) bool { return n == name })
	if err != nil {
		return nil, err
	}
	nameLen := appendU32(nil, uint32(len(name)))
	size := uint32(len(nameLen) + len(name) + len(contents))
	out := make([]byte, 0, len(stripped)+1+5+int(size))
	out = append(out, stripped...)
	out = append(out, 0)
	out = appendU32(out, size)
	out = append(out, nameLen...)
	out = append(out, name...)
	return append(out, contents...), nil
}

func appendU32(b []byte, v uint32) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}
