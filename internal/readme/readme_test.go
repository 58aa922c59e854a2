package readme

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite README.md's example blocks from the examples")

const readmePath = "../../README.md"

// required are the examples README.md must show (a marker removed by
// mistake fails the test instead of leaving a snippet unchecked).
var required = []string{"engine.Example", "abi.Example"}

var marker = regexp.MustCompile(`^<!-- example: ([a-z0-9/]+)\.(Example\w*) -->$`)

// block is one marked snippet of the README: lines[start:end] are its
// content, between the fences.
type block struct {
	name       string // e.g. "abi/nethttp.ExampleNew"
	dir, fn    string
	start, end int
}

func blocks(t *testing.T, lines []string) []block {
	t.Helper()
	var out []block
	for i := 0; i < len(lines); i++ {
		m := marker.FindStringSubmatch(lines[i])
		if m == nil {
			if strings.HasPrefix(lines[i], "<!-- example:") {
				t.Errorf("README.md:%d: malformed example marker %q", i+1, lines[i])
			}
			continue
		}
		if i+1 >= len(lines) || lines[i+1] != "```go" {
			t.Errorf("README.md:%d: marker %s is not followed by a ```go fence", i+1, m[0])
			continue
		}
		end := slices.Index(lines[i+2:], "```")
		if end < 0 {
			t.Fatalf("README.md:%d: the block of %s has no closing fence", i+1, m[0])
		}
		out = append(out, block{name: m[1] + "." + m[2], dir: m[1], fn: m[2], start: i + 2, end: i + 2 + end})
		i += 2 + end
	}
	return out
}

// example returns the body of the example function fn found in the
// _test.go files of dir (relative to the repository's root), dedented one
// tab and cut before its "// Output:" comment, and the import declaration
// of its file.
func example(dir, fn string) (body, imports string, err error) {
	files, _ := filepath.Glob(filepath.Join("../..", dir, "*_test.go"))
	fset := token.NewFileSet()
	for _, path := range files {
		src, err := os.ReadFile(path)
		if err != nil {
			return "", "", err
		}
		f, err := parser.ParseFile(fset, path, src, parser.ParseComments)
		if err != nil {
			return "", "", err
		}
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Recv != nil || fd.Name.Name != fn {
				continue
			}
			text := string(src[fset.Position(fd.Body.Lbrace).Offset+1 : fset.Position(fd.Body.Rbrace).Offset])
			text = strings.TrimPrefix(text, "\n")
			if i := strings.Index(text, "\t// Output:"); i >= 0 {
				text = text[:i]
			} else if i := strings.Index(text, "\t// Unordered output:"); i >= 0 {
				text = text[:i]
			}
			var out []string
			for _, l := range strings.Split(strings.TrimRight(text, "\n\t "), "\n") {
				out = append(out, strings.TrimPrefix(l, "\t"))
			}
			for _, d := range f.Decls {
				if gd, ok := d.(*ast.GenDecl); ok && gd.Tok == token.IMPORT {
					imports = string(src[fset.Position(gd.Pos()).Offset:fset.Position(gd.End()).Offset])
				}
			}
			return strings.Join(out, "\n"), imports, nil
		}
	}
	return "", "", fmt.Errorf("no func %s in %s/*_test.go", fn, dir)
}

// TestReadmeExamples checks that every marked Go block of README.md is the
// code of the example it names.
func TestReadmeExamples(t *testing.T) {
	src, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(src), "\n")
	bs := blocks(t, lines)
	var names []string
	for _, b := range bs {
		names = append(names, b.name)
	}
	for _, r := range required {
		if !slices.Contains(names, r) {
			t.Errorf("README.md shows no block marked <!-- example: %s -->", r)
		}
	}
	changed := false
	// From the last block up, so that a rewrite leaves the earlier
	// blocks' line numbers as they are.
	for _, b := range slices.Backward(bs) {
		body, imports, err := example(b.dir, b.fn)
		if err != nil {
			t.Errorf("README.md:%d: %v", b.start-1, err)
			continue
		}
		got := strings.Join(lines[b.start:b.end], "\n")
		want := body
		if strings.HasPrefix(got, "import") {
			want = imports + "\n\n" + body
		}
		if got == want {
			continue
		}
		if *update {
			lines = slices.Concat(lines[:b.start], strings.Split(want, "\n"), lines[b.end:])
			changed = true
			continue
		}
		t.Errorf("README.md:%d: the block of %s is not the example's code (go test ./internal/readme -update rewrites it):\n%s",
			b.start-1, b.name, firstDiff(got, want))
	}
	if changed {
		if err := os.WriteFile(readmePath, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// firstDiff describes the first line where got and want differ.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d of the block:\n  README:  %q\n  example: %q", i+1, gl, wl)
		}
	}
	return ""
}

// TestBlocks checks the marker parsing on a small document.
func TestBlocks(t *testing.T) {
	doc := "text\n<!-- example: abi/nethttp.ExampleNew -->\n```go\na\n\tb\n```\nmore\n<!-- example: engine.Example -->\n```go\n```\n"
	bs := blocks(t, strings.Split(doc, "\n"))
	if len(bs) != 2 || bs[0].dir != "abi/nethttp" || bs[0].fn != "ExampleNew" || bs[0].start != 3 || bs[0].end != 5 ||
		bs[1].name != "engine.Example" || bs[1].start != bs[1].end {
		t.Errorf("blocks = %+v", bs)
	}
}
