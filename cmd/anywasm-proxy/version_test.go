package main

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"
)

// TestVersion: -version prints one line naming the command and the Go
// version, and exits 0 without a configuration.
func TestVersion(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"-version"}, &out, &errb, nil)
	s := out.String()
	if code != 0 || !strings.HasPrefix(s, "anywasm-proxy ") || !strings.Contains(s, " "+runtime.Version()+" ") || strings.Count(s, "\n") != 1 || errb.Len() != 0 {
		t.Errorf("-version = %d, stdout %q, stderr %q", code, s, errb.String())
	}
}
