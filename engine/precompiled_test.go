package engine

import (
	"bytes"
	"strings"
	"testing"
)

// TestStripPrecompiled: every custom section whose name contains
// "precompiled_" goes (cpp-host's getStrippedSource uses find, not a
// prefix), the other sections stay byte for byte, and a section table that
// lies is refused.
func TestStripPrecompiled(t *testing.T) {
	sec := func(name, body string) string {
		return string([]byte{0, byte(1 + len(name) + len(body)), byte(len(name))}) + name + body
	}
	hdr := "\x00asm\x01\x00\x00\x00"
	typ := "\x01\x04\x01\x60\x00\x00"
	in := hdr + sec("precompiled_wasmtime_v1_linux_x86_64", "code") + typ + sec("name", "\x00\x02\x01m") +
		sec("x_precompiled_y", "other") + sec("precompiled", "kept: no underscore")
	want := hdr + typ + sec("name", "\x00\x02\x01m") + sec("precompiled", "kept: no underscore")
	got, err := StripPrecompiled([]byte(in))
	if err != nil || string(got) != want {
		t.Errorf("StripPrecompiled = %q, %v\nwant %q", got, err, want)
	}
	if c, found, err := CustomSection([]byte(in), "precompiled_wasmtime_v1_linux_x86_64"); err != nil || !found || string(c) != "code" {
		t.Errorf("CustomSection = %q, %v, %v", c, found, err)
	}
	plain := []byte(hdr + typ)
	if got, err := StripPrecompiled(plain); err != nil || !bytes.Equal(got, plain) {
		t.Errorf("StripPrecompiled of a plain module = %q, %v", got, err)
	}
	for _, bad := range []string{hdr + "\x00\x09\x01a", hdr + typ + "\x00", "not wasm"} {
		if _, err := StripPrecompiled([]byte(bad)); err == nil || !strings.HasPrefix(err.Error(), "engine: malformed module: ") {
			t.Errorf("StripPrecompiled(%q) = %v", bad, err)
		}
		if _, _, err := CustomSection([]byte(bad), "x"); err == nil {
			t.Errorf("CustomSection(%q) succeeded", bad)
		}
	}
}

func TestPrecompiledPlatform(t *testing.T) {
	for in, want := range map[[2]string]string{
		{"linux", "amd64"}: "linux_x86_64", {"linux", "arm64"}: "linux_aarch64",
		{"darwin", "arm64"}: "macos_arm64", {"windows", "amd64"}: "windows_x64", {"freebsd", "amd64"}: "",
	} {
		if got := PrecompiledPlatform(in[0], in[1]); got != want {
			t.Errorf("PrecompiledPlatform(%s/%s) = %q, want %q", in[0], in[1], got, want)
		}
	}
}
