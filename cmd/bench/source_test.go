package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestCheckoutRoot(t *testing.T) {
	mk := func(gomod string, benchDir bool) string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
			t.Fatal(err)
		}
		if benchDir {
			if err := os.Mkdir(filepath.Join(dir, "bench"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return filepath.Join(dir, "go.mod")
	}
	for _, c := range []struct {
		name  string
		gomod string
		want  bool
	}{
		{"anywasm", mk("// c\nmodule github.com/anywasm/anywasm\n\ngo 1.26.0\n", true), true},
		{"quoted", mk("module \"github.com/anywasm/anywasm\"\n", true), true},
		{"another module", mk("module github.com/anywasm/anywasmx\n", true), false},
		{"a module requiring anywasm", mk("module example.com/x\n\nrequire github.com/anywasm/anywasm v0.3.0\n", true), false},
		{"no bench directory", mk("module github.com/anywasm/anywasm\n", false), false},
		{"no module", os.DevNull, false},
		{"empty", "", false},
	} {
		root, ok := checkoutRoot(c.gomod)
		if ok != c.want || ok && root != filepath.Dir(c.gomod) {
			t.Errorf("%s: checkoutRoot = %q, %t; want %t", c.name, root, ok, c.want)
		}
	}
	// This test runs in a checkout: locate finds it.
	src, err := locate(os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer src.cleanup()
	if !src.checkout || src.pkg("bench") != "./bench" || src.benchEnv() != nil {
		t.Errorf("locate in the checkout = %+v", src)
	}
	if _, err := os.Stat(filepath.Join(src.benchDir, "bench_test.go")); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(src.pluginsDir, "go.mod")); err != nil {
		t.Error(err)
	}
}

func TestModuleVersions(t *testing.T) {
	perf := []*debug.Module{{Path: "golang.org/x/perf", Version: "v0.0.0-20260908200009-22c9c6c9d4da"}}
	for _, c := range []struct {
		main       debug.Module
		want, perf string
		err        string
	}{
		{debug.Module{Path: benchModule, Version: "v0.3.0"}, "v0.3.0", perf[0].Version, ""},
		{debug.Module{Path: benchModule, Version: "v0.0.0-20261201100000-7a0d7cd1234a"}, "v0.0.0-20261201100000-7a0d7cd1234a", perf[0].Version, ""},
		{debug.Module{Path: benchModule, Version: "(devel)"}, "", "", "built from one"},
		{debug.Module{Path: benchModule}, "", "", "built from one"},
		{debug.Module{Path: benchModule, Version: "v0.0.0-20261201100000-7a0d7cd1234a+dirty"}, "", "", "modified checkout"},
		{debug.Module{Path: modulePath, Version: "v0.3.0"}, "", "", "built from one"},
		{debug.Module{Path: "example.com/other", Version: "v1.0.0"}, "", "", "built from one"},
	} {
		v, p, err := moduleVersions(&debug.BuildInfo{Main: c.main, Deps: perf})
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: error %v, want one saying %q", c.main, err, c.err)
			}
			continue
		}
		if err != nil || v != c.want || p != c.perf {
			t.Errorf("%v: moduleVersions = %q, %q, %v", c.main, v, p, err)
		}
	}
	if !errors.Is(errNoVersion, errNoVersion) {
		t.Fatal()
	}
}

// TestTempGoMod checks the temporary module's go.mod with the go command's
// own parser (go mod edit -json, offline).
func TestTempGoMod(t *testing.T) {
	dir := t.TempDir()
	gomod := filepath.Join(dir, "go.mod")
	content := tempGoMod("v0.3.0", "v0.0.0-20260908200009-22c9c6c9d4da", "go1.26.8")
	if err := os.WriteFile(gomod, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("go", "mod", "edit", "-json", gomod).Output()
	if err != nil {
		t.Fatalf("go mod edit -json: %v\n%s", err, content)
	}
	var m struct {
		Module  struct{ Path string }
		Go      string
		Require []struct{ Path, Version string }
		Tool    []struct{ Path string }
	}
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	req := map[string]string{}
	for _, r := range m.Require {
		req[r.Path] = r.Version
	}
	if m.Module.Path != "anywasm-bench-run" || m.Go != "1.26.8" || len(req) != 3 || req[modulePath] != "v0.3.0" || req[proxyModule] != "v0.3.0" ||
		req[perfModule] != "v0.0.0-20260908200009-22c9c6c9d4da" || len(m.Tool) != 1 || m.Tool[0].Path != "golang.org/x/perf/cmd/benchstat" {
		t.Errorf("go.mod parsed as %+v:\n%s", m, content)
	}
	if strings.Contains(tempGoMod("v0.3.0", "", "go1.26.8"), perfModule+" ") {
		t.Error("an unknown x/perf version is required")
	}
	if v := goVersionLine(); v == "" || v[0] < '1' || v[0] > '9' || strings.ContainsAny(v, " +-") {
		t.Errorf("goVersionLine = %q", v)
	}
}

func TestPluginsRevision(t *testing.T) {
	withOrigin := &downloaded{Version: "v0.3.0"}
	withOrigin.Origin = &struct{ Hash string }{"7a0d7cd5e0c1b2a3f4e5d6c7b8a9f0e1d2c3b4a5"}
	for _, c := range []struct {
		m    *downloaded
		want string
	}{
		{withOrigin, "7a0d7cd5e0c1b2a3f4e5d6c7b8a9f0e1d2c3b4a5"},
		{&downloaded{Version: "v0.0.0-20261201100000-7a0d7cd1234a"}, "7a0d7cd1234a"},
		{&downloaded{Version: "v0.3.1-0.20261201100000-7a0d7cd1234a"}, "7a0d7cd1234a"},
		{&downloaded{Version: "v0.3.0"}, ""},
		{&downloaded{Version: "v0.3.0-rc.1"}, ""},
	} {
		if got := pluginsRevision(c.m); got != c.want {
			t.Errorf("pluginsRevision(%s) = %q, want %q", c.m.Version, got, c.want)
		}
	}
}

// TestTempModuleResolves runs the go commands of the module mode in a
// temporary module like moduleSource's, with anywasm replaced by this
// checkout (the module is not published, and the test is offline): the
// bench package resolves by import path to a directory with its tests,
// and benchstat resolves as the module's tool, from the module cache.
// What it cannot check offline: go mod download of a published version
// and of the plugin module at its commit.
func TestTempModuleResolves(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	src, err := locate(os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer src.cleanup()
	dir := t.TempDir()
	// Every module of the checkout the proxy needs is replaced by its
	// directory, and their go.sum files stand for the checksum database,
	// out of reach offline.
	perf := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		_, perf, _ = moduleVersions(&debug.BuildInfo{Main: debug.Module{Path: benchModule, Version: "v0.0.0"}, Deps: bi.Deps})
	}
	content := tempGoMod("v0.0.0-00010101000000-000000000000", perf, goVersionLine())
	sum, err := os.ReadFile(filepath.Join(src.root, "cmd", "bench", "go.sum")) // x/perf's
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"", "cmd/anywasm-proxy", "internal/proxy", "internal/envoyconfig", "abi/promcollector", "abi/grpcupstream", "abi/celexpr"} {
		path, dir := modulePath, src.root
		if m != "" {
			path, dir = modulePath+"/"+m, filepath.Join(src.root, m)
		}
		content += "\nreplace " + path + " => " + dir + "\n"
		b, err := os.ReadFile(filepath.Join(dir, "go.sum"))
		if err != nil {
			t.Fatal(err)
		}
		sum = append(sum, b...)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	// GOPROXY=off: everything comes from the module cache. GOSUMDB=off
	// too: the temporary module's graph is no one module's, and once the
	// cache holds a module none of the go.sum files has a hash of (the
	// pre-split google.golang.org/genproto, which the go command opens to
	// rule out an ambiguous import once a workspace build downloaded it),
	// the go command asks sum.golang.org for it, which fails offline.
	ms := &source{root: dir, env: []string{"GOFLAGS=-mod=mod", "GOWORK=off", "GOPROXY=off", "GOSUMDB=off"}}
	goOut := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), ms.env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := goOut("list", "-f", "{{.Dir}} {{len .XTestGoFiles}}", ms.pkg("bench")); got == "" || !strings.HasPrefix(got, src.benchDir+" ") || strings.HasSuffix(got, " 0") {
		t.Errorf("go list %s = %q, want %s and its test files", ms.pkg("bench"), got, src.benchDir)
	}
	if got := goOut("list", "-f", "{{.Name}}", ms.pkg("cmd/anywasm-proxy"), "golang.org/x/perf/cmd/benchstat"); got != "main\nmain" {
		t.Errorf("go list proxy, benchstat = %q", got)
	}
}
