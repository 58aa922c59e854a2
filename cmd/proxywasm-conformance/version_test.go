package main

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
)

// TestVersion: -version prints one line naming the command and the Go
// version, and exits 0 without a script.
func TestVersion(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"-version"}, &out, &errb)
	s := out.String()
	if code != 0 || !strings.HasPrefix(s, "proxywasm-conformance ") || !strings.Contains(s, " "+runtime.Version()+" ") || strings.Count(s, "\n") != 1 || errb.Len() != 0 {
		t.Errorf("-version = %d, stdout %q, stderr %q", code, s, errb.String())
	}
}
