package wasmbin

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func isPrecompiled(n string) bool { return strings.Contains(n, "precompiled_") }

func TestCustomSections(t *testing.T) {
	base := namesModule(section(0, str("mod")))
	pre := section(0, str("precompiled_x"), "NATIVE")
	other := section(0, str("precompiled_y"), "OTHER")
	m := []byte(string(base[:8]) + pre + string(base[8:]) + other)

	got, found, err := CustomSection(m, "precompiled_x")
	if err != nil || !found || string(got) != "NATIVE" {
		t.Errorf("CustomSection(precompiled_x) = %q, %v, %v", got, found, err)
	}
	if got, found, err := CustomSection(m, "precompiled_"); err != nil || found || got != nil {
		t.Errorf("CustomSection(precompiled_) (a prefix only) = %q, %v, %v", got, found, err)
	}
	stripped, err := StripCustomSections(m, isPrecompiled)
	if err != nil || !bytes.Equal(stripped, base) {
		t.Errorf("StripCustomSections = %q, %v; want the module without both sections", stripped, err)
	}
	// Other custom sections (the name section) and the code stay.
	if p, err := Parse(stripped); err != nil || p.Name != "mod" || len(p.Funcs) != 3 {
		t.Errorf("Parse(stripped) = %+v, %v", p, err)
	}
	if s, err := StripCustomSections(base, isPrecompiled); err != nil || &s[0] != &base[0] {
		t.Errorf("StripCustomSections of a module without them copied it or failed: %v", err)
	}

	// WithCustomSection replaces a section of that name and appends it.
	w, err := WithCustomSection(m, "precompiled_x", []byte("NEW"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _, _ := CustomSection(w, "precompiled_x"); string(got) != "NEW" {
		t.Errorf("after WithCustomSection the section holds %q", got)
	}
	if got, _, _ := CustomSection(w, "precompiled_y"); string(got) != "OTHER" {
		t.Errorf("WithCustomSection dropped another section: %q", got)
	}
	if s, _ := StripCustomSections(w, isPrecompiled); !bytes.Equal(s, base) {
		t.Errorf("WithCustomSection changed the rest of the module")
	}
	// Sizes that need multi-byte LEB128s.
	big := bytes.Repeat([]byte{0xab}, 300)
	w, err = WithCustomSection(base, strings.Repeat("n", 200), big)
	if err != nil {
		t.Fatal(err)
	}
	if got, found, err := CustomSection(w, strings.Repeat("n", 200)); err != nil || !found || !bytes.Equal(got, big) {
		t.Errorf("long section: found %v, %d bytes, %v", found, len(got), err)
	}
	if _, err := Parse(w); err != nil {
		t.Errorf("Parse after WithCustomSection: %v", err)
	}
}

// TestSectionsMalformed checks that a module whose section table lies is
// refused with an error, by every function that reads it.
func TestSectionsMalformed(t *testing.T) {
	hdr := "\x00asm\x01\x00\x00\x00"
	for name, tc := range map[string]struct{ b, want string }{
		"empty":                 {"", "magic"},
		"short header":          {"\x00asm\x01", "magic"},
		"not wasm":              {"\x7fELF\x01\x00\x00\x00", "magic"},
		"component":             {"\x00asm\x0d\x00\x01\x00", "version"},
		"id only":               {hdr + "\x00", "unexpected end"},
		"size past the end":     {hdr + "\x00\x05\x01a", "past the end"},
		"huge size":             {hdr + "\x00\xff\xff\xff\xff\x0f\x01a", "past the end"},
		"unterminated size":     {hdr + "\x00\x80\x80", "unexpected end"},
		"size too long":         {hdr + "\x00\x80\x80\x80\x80\x80\x00", "too long"},
		"size over 32 bits":     {hdr + "\x00\xff\xff\xff\xff\x7f", "too large"},
		"name past section":     {hdr + "\x00\x02\x05ab", "name"},
		"name len unterminated": {hdr + "\x00\x01\x80", "name"},
		"empty custom section":  {hdr + "\x00\x00", "name"},
		"second section lies":   {hdr + section(1, "\x00") + "\x0a\x09\x00", "past the end"},
	} {
		b := []byte(tc.b)
		_, _, err1 := CustomSection(b, "a")
		_, err2 := StripCustomSections(b, isPrecompiled)
		_, err3 := WithCustomSection(b, "a", nil)
		for i, err := range []error{err1, err2, err3} {
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "malformed module: ") {
				t.Errorf("%s: function %d: error %v, want one mentioning %q", name, i, err, tc.want)
			}
		}
	}
	// A well-formed module with an empty body is fine.
	if _, found, err := CustomSection([]byte(hdr), "a"); err != nil || found {
		t.Errorf("header only: %v, %v", found, err)
	}
}

// FuzzCustomSections checks that no input makes the section functions
// panic, and that stripping and appending keep a module readable.
func FuzzCustomSections(f *testing.F) {
	f.Add(namesModule(section(0, str("mod"))))
	for _, p := range []string{"values", "small", "frames"} {
		if b, err := os.ReadFile("../../enginetest/testdata/" + p + ".wasm"); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("\x00asm\x01\x00\x00\x00\x00\x0e\x0dprecompiled_xy"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, err := CustomSection(b, "precompiled_x")
		s, err2 := StripCustomSections(b, isPrecompiled)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("CustomSection and StripCustomSections disagree: %v, %v", err, err2)
		}
		if err != nil {
			return
		}
		if len(s) > len(b) {
			t.Errorf("stripping grew the module")
		}
		w, err := WithCustomSection(b, "precompiled_x", []byte("code"))
		if err != nil {
			t.Fatal(err)
		}
		if got, found, err := CustomSection(w, "precompiled_x"); err != nil || !found || string(got) != "code" {
			t.Errorf("after WithCustomSection: %q, %v, %v", got, found, err)
		}
		if s2, err := StripCustomSections(w, isPrecompiled); err != nil || !bytes.Equal(s2, s) {
			t.Errorf("WithCustomSection changed more than its section: %v", err)
		}
	})
}
