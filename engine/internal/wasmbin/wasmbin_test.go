package wasmbin

import (
	"os"
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
	for _, p := range []string{"values", "features", "small", "startcall"} {
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
		}
	})
}
