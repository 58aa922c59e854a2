// Package version says which build of anywasm a command is, for the
// commands' -version flag.
package version

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// Print writes the build's version line for the command name to w:
//
//	anywasm-proxy github.com/anywasm/anywasm v0.3.0 go1.26.0 linux/amd64
//	anywasm-proxy github.com/anywasm/anywasm (devel) vcs.revision=7a0d7cd… vcs.time=2026-12-01T10:00:00Z vcs.modified=true go1.26.0 linux/amd64
//
// The module version is debug.ReadBuildInfo's Main.Version: a tag or
// pseudo-version under go install or go run pkg@version, "(devel)" when
// built from a checkout, which then records the VCS settings.
func Print(w io.Writer, name string) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	fmt.Fprintln(w, Line(name, bi))
}

// Line is Print's line for a build's information; bi may be nil (a
// binary built without module support).
func Line(name string, bi *debug.BuildInfo) string {
	var b strings.Builder
	b.WriteString(name)
	goVersion := runtime.Version()
	if bi == nil {
		b.WriteString(" (unknown build)")
	} else {
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
		path, v := bi.Main.Path, bi.Main.Version
		if path == "" {
			path = bi.Path
		}
		if v == "" {
			v = "(devel)"
		}
		if path != "" {
			b.WriteString(" " + path)
		}
		b.WriteString(" " + v)
		for _, key := range []string{"vcs.revision", "vcs.time", "vcs.modified"} {
			for _, s := range bi.Settings {
				if s.Key == key && s.Value != "" {
					b.WriteString(" " + key + "=" + s.Value)
				}
			}
		}
	}
	b.WriteString(" " + goVersion + " " + runtime.GOOS + "/" + runtime.GOARCH)
	return b.String()
}

// Module returns the main module's path and version from the build
// information, ok false when there is none.
func Module() (path, version string, ok bool) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "", "", false
	}
	return bi.Main.Path, bi.Main.Version, true
}
