package wasmbin

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func TestParseValues(t *testing.T) {
	b, err := os.ReadFile("../../enginetest/testdata/values.wasm")
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Imports) != 3 || m.Imports[0].Module != "env" || m.Imports[0].Name != "echo" || m.Imports[0].Kind != KindFunc {
		t.Fatalf("imports = %+v", m.Imports)
	}
	echo := m.Types[m.Imports[0].Type]
	if string(echo.Params) != "\x7f\x7e\x7d\x7c" || string(echo.Results) != "\x7f\x7e\x7d\x7c" {
		t.Errorf("echo type = %x -> %x", echo.Params, echo.Results)
	}
	found := false
	for _, e := range m.Exports {
		if e.Name == "five" && e.Kind == KindFunc {
			ft, ok := m.FuncTypeOf(e.Index)
			found = ok && len(ft.Results) == 5 && len(ft.Params) == 1
		}
	}
	if !found {
		t.Error("export five (i32) -> 5 x i32 not found")
	}
}

// section encodes a section (sizes below 128 bytes).
func section(id byte, body ...string) string {
	b := strings.Join(body, "")
	return string([]byte{id, byte(len(b))}) + b
}

// str encodes a name (below 128 bytes).
func str(s string) string { return string([]byte{byte(len(s))}) + s }

// namesModule is a module with one imported and three defined functions and
// the given name section body ("" for none).
func namesModule(names string) []byte {
	m := "\x00asm\x01\x00\x00\x00" +
		section(1, "\x01\x60\x00\x00") +
		section(2, "\x01", str("env"), str("f"), "\x00\x00") +
		section(3, "\x03\x00\x00\x00") +
		section(10, "\x03", "\x02\x00\x0b", "\x02\x00\x0b", "\x02\x00\x0b")
	if names != "" {
		m += section(0, str("name"), names)
	}
	return []byte(m)
}

func TestParseNames(t *testing.T) {
	for _, c := range []struct {
		name   string
		names  string
		module string
		funcs  []string
	}{
		{"none", "", "", nil},
		{"module and functions",
			section(0, str("mod")) + section(1, "\x03", "\x00", str("imp"), "\x02", str("two"), "\x09", str("nine")),
			"mod", []string{"imp", "", "two", ""}},
		{"functions only", section(1, "\x01\x03", str("last")), "", []string{"", "", "", "last"}},
		{"other subsections are skipped",
			section(2, "\x01\x01\x01\x00", str("x")) + section(1, "\x01\x01", str("one")),
			"", []string{"", "one", "", ""}},
		{"truncated: what came before is kept",
			section(1, "\x02", "\x01", str("one"), "\x02\x05ab"), "", []string{"", "one", "", ""}},
		{"a subsection past the end", section(0, str("mod")) + "\x01\x7f", "mod", nil},
		{"a count past the end", section(1, "\x7f"), "", nil},
		{"an empty name section", "\x00", "", nil},
	} {
		m, err := Parse(namesModule(c.names))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if m.Name != c.module || !slices.Equal(m.FuncNames, c.funcs) {
			t.Errorf("%s: Name %q FuncNames %q, want %q %q", c.name, m.Name, m.FuncNames, c.module, c.funcs)
		}
		if m.NumFuncs() != 4 {
			t.Errorf("%s: NumFuncs() = %d, want 4", c.name, m.NumFuncs())
		}
	}
}

func TestWithoutNames(t *testing.T) {
	plain := namesModule("")
	if got := WithoutNames(plain); &got[0] != &plain[0] {
		t.Error("WithoutNames copied a module without names")
	}
	// Other custom sections stay, before and after the name section.
	header, body := string(plain[:8]), string(plain[8:])
	other := section(0, str("other"), "x")
	names := section(0, str("name"), section(1, "\x01\x01", str("one")))
	got := WithoutNames([]byte(header + other + body + names + other))
	if want := header + other + body + other; string(got) != want {
		t.Errorf("WithoutNames =\n% x\nwant\n% x", got, want)
	}
	m, err := Parse(got)
	if err != nil || m.FuncNames != nil || len(m.Funcs) != 3 {
		t.Errorf("Parse(WithoutNames) = %+v, %v", m, err)
	}
}

func TestParseRefuses(t *testing.T) {
	for name, b := range map[string]string{
		"empty":      "",
		"magic":      "\x00asn\x01\x00\x00\x00",
		"version":    "\x00asm\x02\x00\x00\x00",
		"section":    "\x00asm\x01\x00\x00\x00\x01\x10",
		"leb":        "\x00asm\x01\x00\x00\x00\x01\xff\xff\xff\xff\xff\xff",
		"count":      "\x00asm\x01\x00\x00\x00\x01\x02\xff\x01",
		"type form":  "\x00asm\x01\x00\x00\x00\x01\x02\x01\x5f",
		"valtype":    "\x00asm\x01\x00\x00\x00\x01\x04\x01\x60\x01\x01",
		"importkind": "\x00asm\x01\x00\x00\x00\x02\x06\x01\x01a\x01b\x09",
		"exportkind": "\x00asm\x01\x00\x00\x00\x07\x05\x01\x01a\x09\x00",
	} {
		if _, err := Parse([]byte(b)); err == nil {
			t.Errorf("%s: Parse succeeded", name)
		}
	}
}

// FuzzParse checks that no input makes Parse panic or hang.
func FuzzParse(f *testing.F) {
	f.Add(namesModule(section(0, str("mod")) + section(1, "\x02\x00", str("a"), "\x03", str("b"))))
	for _, p := range []string{"values", "features", "small", "startcall", "frames"} {
		if b, err := os.ReadFile("../../enginetest/testdata/" + p + ".wasm"); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("\x00asm\x01\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err == nil {
			for _, e := range m.Exports {
				m.FuncTypeOf(e.Index)
			}
			if m.FuncNames != nil && len(m.FuncNames) != m.NumFuncs() {
				t.Errorf("%d function names for %d functions", len(m.FuncNames), m.NumFuncs())
			}
			if s := WithoutNames(b); len(s) > len(b) {
				t.Errorf("WithoutNames grew the module from %d to %d bytes", len(b), len(s))
			}
		}
	})
}
