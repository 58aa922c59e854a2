package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testdata = "../../abi/abitest/testdata"

// addHeader is a third-party plugin from ../shared/guests beside the
// checkout, with its script in abi/abitest/testdata.
func addHeader(t *testing.T) (wasm, script string) {
	t.Helper()
	wasm = filepath.Join("..", "..", "..", "shared", "guests", "tinygo-add-req-header-abi010.wasm")
	if _, err := os.Stat(wasm); err != nil {
		t.Skipf("third-party guest not found: %v", err)
	}
	return wasm, filepath.Join(testdata, "tinygo-add-header-abi010.json")
}

func runCmd(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestPass(t *testing.T) {
	wasm, script := addHeader(t)
	code, out, errOut := runCmd("-script", script, wasm)
	if code != 0 || !strings.HasSuffix(out, "PASS\n") || !strings.Contains(out, "wazero") || errOut != "" {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	code, out, _ = runCmd("-v", "-script", script, wasm)
	if code != 0 || !strings.Contains(out, "headers: {:path: /; wasm-context: 3}") {
		t.Errorf("-v: exit %d\n%s", code, out)
	}
}

func TestFail(t *testing.T) {
	wasm, script := addHeader(t)
	b, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(t.TempDir(), "wrong.json")
	os.WriteFile(wrong, bytes.Replace(b, []byte(`"wasm-context": "3"`), []byte(`"wasm-context": "7"`), 1), 0o644)
	code, out, _ := runCmd("-script", wrong, wasm)
	if code != 1 || !strings.HasSuffix(out, "FAIL\n") ||
		!strings.Contains(out, `wazero: exchange "second", step 1 (request_headers): headers = {:path: /; wasm-context: 3}, want {:path: /; wasm-context: 7}`) {
		t.Errorf("exit %d\n%s", code, out)
	}
}

// names writes, beside junk.wasm (not wasm), a script whose one plugin has
// the given field.
func names(t *testing.T, field string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "named")
	os.Mkdir(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "junk.wasm"), []byte("not wasm"), 0o644)
	p := filepath.Join(dir, "s.json")
	os.WriteFile(p, []byte(`{"plugins": [{"name": "p", `+field+`}], "exchanges": []}`), 0o644)
	return p
}

func TestUsage(t *testing.T) {
	junk := filepath.Join(t.TempDir(), "junk.wasm")
	os.WriteFile(junk, []byte("\x00asn not wasm"), 0o644)
	wasm := filepath.Join("..", "..", "abi", "testdata", "done.wasm") // a plugin
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"exchanges": [{"name": "e", "steps": [{"call": "request_header"}]}]}`), 0o644)
	script := filepath.Join(testdata, "headers.json")
	for _, c := range []struct {
		args []string
		code int
		err  string
	}{
		{nil, 2, "usage: proxywasm-conformance"},
		{[]string{"plugin.wasm"}, 2, "usage:"},
		{[]string{"-script", script}, 2, "usage:"},
		{[]string{"-script", script, "a.wasm", "b.wasm"}, 2, "usage:"},
		{[]string{"-nope"}, 2, "flag provided but not defined: -nope"},
		{[]string{"-h"}, 0, "usage:"},
		{[]string{"-script", "missing.json", "a.wasm"}, 2, "missing.json"},
		{[]string{"-script", bad, "a.wasm"}, 2, "unknown call"},
		{[]string{"-script", script, filepath.Join(t.TempDir(), "missing.wasm")}, 2, "missing.wasm"},
		{[]string{"-script", script, junk}, 2, "junk.wasm is not a WebAssembly binary"},
		{[]string{"-script", names(t, `"wasm": "junk.wasm"`), wasm}, 2, "named/junk.wasm is not a WebAssembly binary"},
		{[]string{"-script", names(t, `"wasm": "nope.wasm"`), wasm}, 2, "nope.wasm: no such file"},
	} {
		code, out, errOut := runCmd(c.args...)
		if code != c.code || !strings.Contains(errOut, c.err) || out != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr:\n%s\nwant exit %d and %q", c.args, code, out, errOut, c.code, c.err)
		}
	}
}
