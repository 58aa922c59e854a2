package version

import (
	"bytes"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestLine(t *testing.T) {
	for _, c := range []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{"released", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/anywasm/anywasm", Version: "v0.3.0"}},
			"tool github.com/anywasm/anywasm v0.3.0 go1.26.0 "},
		{"checkout", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/anywasm/anywasm", Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.modified", Value: "true"}, {Key: "-tags", Value: "x"}, {Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}}},
			"tool github.com/anywasm/anywasm (devel) vcs.revision=abc123 vcs.time=2026-12-01T10:00:00Z vcs.modified=true go1.26.0 "},
		{"no version", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/anywasm/anywasm"}},
			"tool github.com/anywasm/anywasm (devel) go1.26.0 "},
		{"no build info", nil, "tool (unknown build) " + runtime.Version() + " "},
	} {
		got := Line("tool", c.bi)
		if want := c.want + runtime.GOOS + "/" + runtime.GOARCH; got != want {
			t.Errorf("%s: Line = %q, want %q", c.name, got, want)
		}
	}
}

func TestPrint(t *testing.T) {
	var b bytes.Buffer
	Print(&b, "tool")
	s := b.String()
	if !strings.HasPrefix(s, "tool ") || !strings.HasSuffix(s, " "+runtime.GOOS+"/"+runtime.GOARCH+"\n") || !strings.Contains(s, "go1.") {
		t.Errorf("Print = %q", s)
	}
}
