package envoyconfig_test

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/internal/envoyconfig"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

var update = flag.Bool("update", false, "rewrite the README's table of the Envoy subset")

const (
	tableBegin = "<!-- The Envoy subset: written by `go test ./internal/envoyconfig -run TestSubsetTable -update` from subset.go. -->\n"
	tableEnd   = "<!-- end of the Envoy subset -->\n"
)

// TestSubsetTable: the README's table of the Envoy subset is subset.go's,
// message by message in the order a bootstrap reaches them, so the two
// cannot drift apart. -update rewrites it.
func TestSubsetTable(t *testing.T) {
	const readme = "../../README.md"
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i, j := strings.Index(s, tableBegin), strings.Index(s, tableEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md has no table between %q and %q", tableBegin, tableEnd)
	}
	want := table(t)
	if got := s[i+len(tableBegin) : j]; got != want {
		if *update {
			if err := os.WriteFile(readme, []byte(s[:i+len(tableBegin)]+want+s[j:]), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Errorf("README.md's table of the Envoy subset is not subset.go's: run go test ./internal/envoyconfig -run TestSubsetTable -update\ngot\n%s\nwant\n%s", got, want)
	}
}

// table renders the subset: every message it lists, reached from the
// bootstrap breadth first through the fields it accepts (then Anys'
// targets, then anything not reached, by name), with its accepted fields
// (taken whole: marked) and how many of its fields are refused.
func table(t *testing.T) string {
	subset := envoyconfig.Subset()
	var order []protoreflect.FullName
	seen := map[protoreflect.FullName]bool{}
	visit := func(n protoreflect.FullName) {
		if _, ok := subset[n]; ok && !seen[n] {
			seen[n] = true
			order = append(order, n)
		}
	}
	find := func(n protoreflect.FullName) protoreflect.MessageDescriptor {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(n)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		return d.(protoreflect.MessageDescriptor)
	}
	visit("envoy.config.bootstrap.v3.Bootstrap")
	var rest []protoreflect.FullName
	for n := range subset {
		rest = append(rest, n)
	}
	slices.Sort(rest)
	for k := 0; k < len(order) || len(rest) > 0; k++ {
		if k == len(order) { // an Any's target, not reached by a field
			for len(rest) > 0 && seen[rest[0]] {
				rest = rest[1:]
			}
			if len(rest) == 0 {
				break
			}
			visit(rest[0])
		}
		md := find(order[k])
		fields := md.Fields()
		for f := range fields.Len() {
			fd := fields.Get(f)
			if whole, ok := subset[order[k]][fd.Name()]; ok && !whole && fd.Message() != nil {
				if fd.IsMap() {
					if m := fd.MapValue().Message(); m != nil {
						visit(m.FullName())
					}
				} else {
					visit(fd.Message().FullName())
				}
			}
		}
	}
	var w strings.Builder
	w.WriteString("| Envoy message | Supported fields | Refused |\n|---|---|---|\n")
	for _, n := range order {
		md := find(n)
		var ok []string
		refused := 0
		for f := range md.Fields().Len() {
			fd := md.Fields().Get(f)
			whole, in := subset[n][fd.Name()]
			switch {
			case !in:
				refused++
			case whole:
				ok = append(ok, "`"+string(fd.Name())+"` (whole)")
			default:
				ok = append(ok, "`"+string(fd.Name())+"`")
			}
		}
		sup := strings.Join(ok, ", ")
		if sup == "" {
			sup = "(none: the message itself)"
		}
		ref := "none"
		if refused > 0 {
			ref = fmt.Sprintf("%d other fields", refused)
			if refused == 1 {
				ref = "1 other field"
			}
		}
		fmt.Fprintf(&w, "| `%s` | %s | %s |\n", strings.TrimPrefix(string(n), "envoy."), sup, ref)
	}
	return w.String()
}
