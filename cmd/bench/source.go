package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/anywasm/anywasm/internal/plugins"
)

// modulePath is anywasm's module; pluginsModule the nested module of the
// Go-SDK test plugins, which its module zip leaves out.
const (
	modulePath    = "github.com/anywasm/anywasm"
	pluginsModule = modulePath + "/abi/testdata/plugins"
	perfModule    = "golang.org/x/perf"
)

// source is where cmd/bench takes the code it builds and runs: a checkout
// of anywasm (the working directory is inside one), or, outside a
// checkout, the module cache, through a temporary module that requires
// anywasm at this binary's own version (go run
// github.com/anywasm/anywasm/cmd/bench@v0.3.0, or go install).
type source struct {
	checkout   bool
	root       string   // where the go commands run: the checkout's root, or the temporary module
	env        []string // for those go commands
	benchDir   string   // package bench's directory: the working directory of its test binaries
	pluginsDir string   // the plugin module (abi/testdata/plugins)
	cleanup    func()
}

// pkg is the import path of one of anywasm's packages (dir relative to the
// module root) for a go command run in s.root.
func (s *source) pkg(dir string) string {
	if s.checkout {
		return "./" + dir
	}
	return modulePath + "/" + dir
}

// benchEnv is what the bench test binaries need beside the environment:
// outside a checkout, where the plugin module is.
func (s *source) benchEnv() []string {
	if s.checkout {
		return nil
	}
	return []string{plugins.DirEnv + "=" + s.pluginsDir}
}

// checkoutRoot is the root of the anywasm checkout whose go.mod is gomod
// (go env GOMOD), or ok false when gomod is no anywasm go.mod.
func checkoutRoot(gomod string) (string, bool) {
	if gomod == "" || gomod == os.DevNull {
		return "", false
	}
	f, err := os.Open(gomod)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "module"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			if strings.Trim(strings.TrimSpace(rest), `"`) != modulePath {
				return "", false
			}
			root := filepath.Dir(gomod)
			if st, err := os.Stat(filepath.Join(root, "bench")); err != nil || !st.IsDir() {
				return "", false
			}
			return root, true
		}
	}
	return "", false
}

// checkoutOf is checkoutRoot of gomod or, for a module nested in the
// checkout (cmd/bench's own), of the go.mod of a directory above it.
func checkoutOf(gomod string) (string, bool) {
	if root, ok := checkoutRoot(gomod); ok || gomod == "" || gomod == os.DevNull {
		return root, ok
	}
	for dir := filepath.Dir(filepath.Dir(gomod)); ; dir = filepath.Dir(dir) {
		if root, ok := checkoutRoot(filepath.Join(dir, "go.mod")); ok {
			return root, true
		}
		if parent := filepath.Dir(dir); parent == dir {
			return "", false
		}
	}
}

// locate finds the source: the checkout the working directory is in, else
// the module cache at this binary's version.
func locate(stderr io.Writer) (*source, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOMOD: %w", err)
	}
	if root, ok := checkoutOf(strings.TrimSpace(string(out))); ok {
		return &source{
			checkout: true, root: root, cleanup: func() {},
			benchDir:   filepath.Join(root, "bench"),
			pluginsDir: filepath.Join(root, "abi", "testdata", "plugins"),
		}, nil
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil, errors.New("not inside a checkout of " + modulePath + ", and this binary has no build information")
	}
	return moduleSource(stderr, bi)
}

// errNoVersion: outside a checkout, a binary built from a checkout does
// not know which version of the module to fetch.
var errNoVersion = errors.New("not inside a checkout of " + modulePath + ", and this binary was built from one (version (devel)): run it inside the checkout, or go run " + benchModule + "@VERSION")

// benchModule and proxyModule are the modules of this command and of the
// proxy its load and soak runs build: modules of their own, nested in the
// repository, released with the same version as the library (their tags
// cmd/bench/vX.Y.Z and cmd/anywasm-proxy/vX.Y.Z beside vX.Y.Z).
const (
	benchModule = modulePath + "/cmd/bench"
	proxyModule = modulePath + "/cmd/anywasm-proxy"
)

// moduleVersions are the version of anywasm a binary was built at (its
// own module's: the library and the proxy are taken at the same) and the
// version of golang.org/x/perf it has: the temporary module requires the
// same.
func moduleVersions(bi *debug.BuildInfo) (anywasm, perf string, err error) {
	if bi.Main.Path != benchModule || bi.Main.Version == "" || bi.Main.Version == "(devel)" {
		return "", "", errNoVersion
	}
	if strings.HasSuffix(bi.Main.Version, "+dirty") {
		return "", "", fmt.Errorf("not inside a checkout of %s, and this binary was built from a modified checkout (%s), whose code no module version has: run it inside the checkout", modulePath, bi.Main.Version)
	}
	for _, d := range bi.Deps {
		if d.Path == perfModule {
			perf = d.Version
			if d.Replace != nil {
				perf = d.Replace.Version
			}
		}
	}
	return bi.Main.Version, perf, nil
}

// tempGoMod is the go.mod of the temporary module: it requires anywasm and
// its proxy at version (and golang.org/x/perf at perf, when known, for benchstat) and
// has benchstat as a tool. The go commands run in it with -mod=mod, which
// fills in go.sum from the module cache or the module proxy.
func tempGoMod(version, perf, goVersion string) string {
	var b strings.Builder
	b.WriteString("// A temporary module made by " + modulePath + "/cmd/bench to run anywasm's\n// benchmarks from the module cache.\nmodule anywasm-bench-run\n\n")
	fmt.Fprintf(&b, "go %s\n\n", strings.TrimPrefix(goVersion, "go"))
	fmt.Fprintf(&b, "require %s %s\n", modulePath, version)
	fmt.Fprintf(&b, "\nrequire %s %s\n", proxyModule, version)
	if perf != "" {
		fmt.Fprintf(&b, "\nrequire %s %s\n", perfModule, perf)
	}
	b.WriteString("\ntool golang.org/x/perf/cmd/benchstat\n")
	return b.String()
}

// goVersionLine is runtime.Version() as a go.mod go line: go1.26.8 is
// 1.26.8; a development toolchain's version is left to the go command.
func goVersionLine() string {
	v := strings.TrimPrefix(runtime.Version(), "go")
	if i := strings.IndexAny(v, " -+"); i >= 0 {
		v = v[:i]
	}
	if v == "" || v[0] < '0' || v[0] > '9' {
		return "1.26.0"
	}
	return v
}

// downloaded is what go mod download -json says of a module.
type downloaded struct {
	Path, Version, Dir, Error string
	Origin                    *struct{ Hash string }
}

// moduleSource makes the temporary module and downloads anywasm and its
// plugin module at the version of this binary.
func moduleSource(stderr io.Writer, bi *debug.BuildInfo) (*source, error) {
	version, perf, err := moduleVersions(bi)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "anywasm-bench-module-")
	if err != nil {
		return nil, err
	}
	s := &source{root: tmp, env: []string{"GOFLAGS=-mod=mod", "GOWORK=off"}, cleanup: func() { os.RemoveAll(tmp) }}
	fail := func(err error) (*source, error) {
		s.cleanup()
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "go.mod"), []byte(tempGoMod(version, perf, goVersionLine())), 0o644); err != nil {
		return fail(err)
	}
	fmt.Fprintf(stderr, "bench: not in a checkout: running %s@%s from the module cache (temporary module %s)\n", modulePath, version, tmp)
	main, err := s.download(stderr, modulePath+"@"+version)
	if err != nil {
		return fail(err)
	}
	s.benchDir = filepath.Join(main.Dir, "bench")
	rev := pluginsRevision(main)
	if rev == "" {
		return fail(fmt.Errorf("cannot tell the commit of %s@%s, so not the version of %s its benchmarks build their plugins from", modulePath, version, pluginsModule))
	}
	pl, err := s.download(stderr, pluginsModule+"@"+rev)
	if err != nil {
		return fail(err)
	}
	s.pluginsDir = pl.Dir
	return s, nil
}

// pluginsRevision is the commit of a downloaded anywasm version, at which
// the plugin module is taken: the origin the go command records, else the
// revision a pseudo-version ends with.
func pluginsRevision(m *downloaded) string {
	if m.Origin != nil && m.Origin.Hash != "" {
		return m.Origin.Hash
	}
	v := strings.TrimSuffix(m.Version, "+incompatible")
	if i := strings.LastIndexByte(v, '-'); i >= 0 && strings.Count(v, "-") >= 2 {
		if rev := v[i+1:]; len(rev) == 12 && strings.Trim(rev, "0123456789abcdef") == "" {
			return rev
		}
	}
	return ""
}

// download runs go mod download -json for one module in the temporary
// module.
func (s *source) download(stderr io.Writer, query string) (*downloaded, error) {
	fmt.Fprintf(stderr, "bench: go mod download %s\n", query)
	cmd := exec.Command("go", "mod", "download", "-json", query)
	cmd.Dir = s.root
	cmd.Env = append(os.Environ(), s.env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, stderr
	err := cmd.Run()
	var m downloaded
	if jerr := json.Unmarshal(out.Bytes(), &m); jerr != nil {
		if err == nil {
			err = jerr
		}
		return nil, fmt.Errorf("go mod download %s: %w", query, err)
	}
	if m.Error != "" || err != nil || m.Dir == "" {
		return nil, fmt.Errorf("go mod download %s: %s (%v)", query, m.Error, err)
	}
	return &m, nil
}
