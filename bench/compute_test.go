package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/internal/plugins"
)

// computeWorks are the works of the Go-SDK compute plugin, its plugin
// configurations: json decodes the body with encoding/json, rules runs 50
// WAF-like rules over it, none only reads it (the baseline: subtract it to
// see the work alone).
var computeWorks = []string{"json", "rules", "none"}

// computeHeaders start a request with a body.
var computeHeaders = abi.Headers{
	{Key: ":method", Value: "POST"}, {Key: ":path", Value: "/api/v1/items"}, {Key: ":authority", Value: "example.com"},
	{Key: "user-agent", Value: "anywasm-bench/1.0"}, {Key: "content-type", Value: "application/json"},
	{Key: "content-length", Value: strconv.Itoa(bodySize)},
}

// computePlugins loads the compute plugin once per work on one runtime;
// they share the VMs of one VMID (one VM: PoolSize 1). Errors fail tb;
// the runtime and host are closed when owner (tb or its parent) ends.
func computePlugins(tb, owner testing.TB, name string) (map[string]*abi.Plugin, *abi.Host) {
	ctx := context.Background()
	rt, err := engine.Open(name, engine.NewConfig())
	if err != nil {
		tb.Fatal(err)
	}
	owner.Cleanup(func() { _ = rt.Close(ctx) })
	h := abi.NewHost(rt, abi.Options{Logger: quietLogger})
	owner.Cleanup(func() { _ = h.Close(ctx) })
	wasm := plugins.Build(tb, "compute")
	ps := map[string]*abi.Plugin{}
	for _, w := range computeWorks {
		p, err := h.Load(ctx, wasm, abi.PluginConfig{Name: "compute-" + w, VMID: "bench", Configuration: []byte(w), PoolSize: 1})
		if err != nil {
			tb.Fatal(err)
		}
		ps[w] = p
	}
	return ps, h
}

// computeBody is a deterministic 64 KiB body for a work and the x-compute
// the plugin answers for it.
func computeBody(work string) (body []byte, want string) {
	switch work {
	case "json":
		return jsonBody(bodySize)
	case "rules":
		return rulesBody(bodySize)
	}
	body, _ = rulesBody(bodySize)
	return body, "bytes=" + strconv.Itoa(len(body))
}

// jsonBody is a document of items {"id", "name", "price", "tags",
// "active"} padded with spaces to size bytes, and the summary the plugin
// computes of it, added up here as the items are written.
func jsonBody(size int) ([]byte, string) {
	const tail = `],"next":null}`
	b := []byte(`{"items":[`)
	var n, ids, cents, names, tags, active int
	var it []byte
	for i := 1; ; i++ {
		c, name, ntags := (i*37)%10000+1, "item-"+strconv.Itoa(i)+" "+words[i%len(words)], i%4
		it = append(it[:0], `{"id":`...)
		it = strconv.AppendInt(it, int64(i), 10)
		it = append(it, `,"name":`...)
		it = strconv.AppendQuote(it, name)
		it = append(it, `,"price":`...)
		it = strconv.AppendInt(it, int64(c/100), 10)
		it = append(it, '.', byte('0'+c%100/10), byte('0'+c%10))
		it = append(it, `,"tags":[`...)
		for t := range ntags {
			if t > 0 {
				it = append(it, ',')
			}
			it = strconv.AppendQuote(it, words[(i+t)%len(words)])
		}
		it = append(it, `],"active":`...)
		it = strconv.AppendBool(it, i%3 != 0)
		it = append(it, '}')
		if len(b)+1+len(it)+len(tail) > size {
			break
		}
		if i > 1 {
			b = append(b, ',')
		}
		b = append(b, it...)
		n, ids, cents, names, tags = n+1, ids+i, cents+c, names+len(name), tags+ntags
		if i%3 != 0 {
			active++
		}
	}
	b = append(b, tail[:len(tail)-1]...)
	b = append(b, bytes.Repeat([]byte{' '}, size-len(b)-1)...)
	b = append(b, '}')
	return b, "items=" + strconv.Itoa(n) + " ids=" + strconv.Itoa(ids) + " cents=" + strconv.Itoa(cents) +
		" names=" + strconv.Itoa(names) + " tags=" + strconv.Itoa(tags) + " active=" + strconv.Itoa(active)
}

// rulesTail ends rulesBody: an HTML comment, which only the notice rule
// 44 matches (score 2, below the block score 5).
const (
	rulesTail = "\n<!-- generated -->\n"
	rulesWant = "score=2 rules=44"
)

// rulesBody is size bytes of text in lines of 72 bytes at most (words,
// sentences starting upper case) that no rule matches, ending with
// rulesTail, so every rule runs over the whole body.
func rulesBody(size int) ([]byte, string) {
	b := make([]byte, 0, size+16)
	line, x := 0, uint32(1)
	for len(b) < size {
		x = x*1664525 + 1013904223
		w := words[x>>24%uint32(len(words))]
		if line+len(w) > 71 {
			b, line = append(b, '\n'), 0
		}
		if x&0x700 == 0 { // about one word in eight starts a sentence
			b = append(b, w[0]-'a'+'A')
			b = append(b, w[1:]...)
		} else {
			b = append(b, w...)
		}
		b = append(b, ' ')
		line += len(w) + 1
	}
	b = b[:size]
	copy(b[size-len(rulesTail):], rulesTail)
	return b, rulesWant
}

var words = strings.Fields(`lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor
	incididunt ut labore et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco
	laboris nisi aliquip ex ea commodo consequat duis aute irure in reprehenderit voluptate velit esse
	cillum fugiat nulla pariatur excepteur sint occaecat cupidatat non proident sunt culpa qui officia
	deserunt mollit anim id est laborum`)

// computeRequest is one request through the compute plugin: headers, the
// body in one chunk (the plugin reads it all and works on it), response
// headers, close. It checks that the body went through unchanged and that
// the plugin's x-compute is want.
func computeRequest(b testing.TB, ctx context.Context, p *abi.Plugin, body []byte, want string, req, resp abi.Headers) {
	s, err := p.NewHTTPStream(ctx)
	if err != nil {
		b.Fatal(err)
	}
	req = append(req[:0], computeHeaders...)
	if _, err := s.RequestHeaders(ctx, req, false); err != nil {
		b.Fatal(err)
	}
	out, a, err := s.RequestBody(ctx, body, true)
	if err != nil || a != abi.ActionContinue || len(out) != len(body) {
		b.Fatalf("request body: %v %v, %d bytes; local response %+v", a, err, len(out), s.LocalResponse())
	}
	resp = append(resp[:0], responseHeaders...)
	if _, err := s.ResponseHeaders(ctx, resp, true); err != nil {
		b.Fatal(err)
	}
	if got, _ := s.ResponseHeaderMap().Get("x-compute"); got != want {
		b.Fatalf("x-compute = %q, want %q", got, want)
	}
	if err := s.Close(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkCompute is one request with a 64 KiB body through the Go-SDK
// compute plugin, serially on one VM, per work: here the code the runtime
// generates dominates, not the cost of its hostcalls. work=none is the
// same request without the work.
func BenchmarkCompute(b *testing.B) {
	for _, name := range benchRuntimes() {
		// The plugins are compiled once per runtime, by the first work
		// that runs, and closed when the family ends.
		var ps map[string]*abi.Plugin
		for _, work := range computeWorks {
			b.Run("runtime="+name+"/plugin=compute/work="+work+"/body=64KiB", func(sb *testing.B) {
				if ps == nil {
					ps, _ = computePlugins(sb, b, name)
				}
				b := sb
				p := ps[work]
				body, want := computeBody(work)
				ctx := context.Background()
				req, resp := make(abi.Headers, 0, 16), make(abi.Headers, 0, 8)
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					computeRequest(b, ctx, p, body, want, req, resp)
				}
			})
		}
	}
}

// TestCompute checks the compute plugin's answers on every runtime: the
// summaries of bodies let through, the local responses of bodies refused,
// bodies in chunks and bodies ended by trailers, and the benchmark's
// bodies.
func TestCompute(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the Go-SDK plugin")
	}
	// jsonError is what encoding/json says of a document that is not
	// JSON: the plugin, built by the same Go, must say the same.
	jsonError := func(body string) string {
		err := json.Unmarshal([]byte(body), new(any))
		if err == nil {
			t.Fatalf("%q is valid JSON", body)
		}
		return err.Error()
	}
	type answer struct {
		status int    // 0: let through
		key    string // the header that holds the outcome
		value  string
	}
	pass := func(v string) answer { return answer{0, "x-compute", v} }
	attack := "id=1 UNION SELECT password FROM users"
	cases := []struct {
		work, name string
		chunks     []string
		trailers   bool // the body ends with trailers, not end_of_stream
		want       answer
	}{
		{"json", "valid", []string{`{"items":[{"id":1,"name":"a","price":0.1,"tags":["x"],"active":true},` +
			`{"id":41,"name":"bcd","price":2.25,"tags":[]}],"extra":{"ignored":[1,2]}}`}, false,
			pass("items=2 ids=42 cents=235 names=4 tags=1 active=1")},
		{"json", "no items", []string{` {} `}, false, pass("items=0 ids=0 cents=0 names=0 tags=0 active=0")},
		{"json", "chunks", []string{`{"items":[{"id":7,`, `"name":"xyz"}]}`}, false, pass("items=1 ids=7 cents=0 names=3 tags=0 active=0")},
		{"json", "trailers", []string{`{"items":[{"id":7,`, `"tags":["a","b"]}]}`}, true, pass("items=1 ids=7 cents=0 names=0 tags=2 active=0")},
		{"json", "truncated", []string{`{"items":[{"id":1`}, false, answer{400, "x-compute-error", jsonError(`{"items":[{"id":1`)}},
		{"json", "syntax", []string{`{"items":[1,,2]}`}, false, answer{400, "x-compute-error", jsonError(`{"items":[1,,2]}`)}},
		{"json", "wrong type", []string{`{"items":{"id":1}}`}, false, // A type error names the plugin's Go types.
			answer{400, "x-compute-error", "json: cannot unmarshal object into Go struct field document.items of type []main.item"}},
		{"json", "empty", []string{""}, false, answer{400, "x-compute-error", jsonError("")}},
		{"rules", "clean", []string{"hello world"}, false, pass("score=0 rules=none")},
		{"rules", "empty", []string{""}, false, pass("score=0 rules=none")},
		{"rules", "notice", []string{"<!-- draft -->\nHello"}, false, pass("score=2 rules=44")},
		{"rules", "control byte", []string{"a\x00b"}, false, pass("score=3 rules=47")},
		{"rules", "percent", []string{strings.Repeat("%2E%2e%2f", 3)}, false, pass("score=4 rules=49")},
		{"rules", "long line", []string{strings.Repeat("a", 8<<10+1)}, false, pass("score=2 rules=50")},
		{"rules", "high bytes", []string{"caf\xc3\xa9 \xe2\x82\xac\xe2\x82\xac"}, false, pass("score=3 rules=48")},
		{"rules", "sqli", []string{attack}, false, answer{403, "x-compute", "score=5 rules=1"}},
		{"rules", "sqli in chunks", []string{attack[:9], attack[9:]}, false, answer{403, "x-compute", "score=5 rules=1"}},
		{"rules", "sqli with trailers", []string{attack[:9], attack[9:]}, true, answer{403, "x-compute", "score=5 rules=1"}},
		{"rules", "two notices", []string{"<?xml version=\"1.0\"?>\n" + strings.Repeat("x", 100) + "<!-- -->"}, false, pass("score=4 rules=44,45")},
		{"rules", "xxe", []string{`<?XML version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>`}, false,
			answer{403, "x-compute", "score=14 rules=23,39,43,45"}},
		{"rules", "notice and percent", []string{"<!--" + strings.Repeat("%41", 8)}, false, answer{403, "x-compute", "score=6 rules=44,49"}},
	}
	for _, work := range computeWorks {
		body, want := computeBody(work)
		cases = append(cases, struct {
			work, name string
			chunks     []string
			trailers   bool
			want       answer
		}{work, "benchmark body", []string{string(body)}, false, pass(want)})
	}
	for _, name := range engine.Runtimes() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			ps, h := computePlugins(t, t, name)
			// A configuration it does not know is refused, and the VM the
			// plugins share serves on.
			_, err := h.Load(ctx, plugins.Build(t, "compute"), abi.PluginConfig{Name: "compute-xml", VMID: "bench", Configuration: []byte("xml")})
			if err == nil || !strings.Contains(err.Error(), "proxy_on_configure") {
				t.Errorf("configuration xml: Load error %v, want proxy_on_configure to refuse it", err)
			}
			for _, c := range cases {
				s, err := ps[c.work].NewHTTPStream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if a, err := s.RequestHeaders(ctx, computeHeaders.Clone(), false); err != nil || a != abi.ActionContinue {
					t.Fatalf("%s/%s: request headers: %v %v", c.work, c.name, a, err)
				}
				var out []byte
				var a abi.Action
				for i, chunk := range c.chunks {
					last := i == len(c.chunks)-1 && !c.trailers
					if out, a, err = s.RequestBody(ctx, []byte(chunk), last); err != nil {
						t.Fatalf("%s/%s: request body: %v", c.work, c.name, err)
					}
					if !last && (a != abi.ActionPause || s.LocalResponse() != nil) {
						t.Fatalf("%s/%s: chunk %d: %v, local response %+v; want the plugin to hold the body", c.work, c.name, i, a, s.LocalResponse())
					}
				}
				if c.trailers {
					if a, err = s.RequestTrailers(ctx, abi.Headers{{Key: "x-checksum", Value: "none"}}); err != nil {
						t.Fatalf("%s/%s: request trailers: %v", c.work, c.name, err)
					}
					if a == abi.ActionContinue {
						out = s.TakeRequestBody()
					}
				}
				lr := s.LocalResponse()
				if c.want.status == 0 {
					if a != abi.ActionContinue || lr != nil || string(out) != strings.Join(c.chunks, "") {
						t.Fatalf("%s/%s: %v, local response %+v, body %d bytes; want the body through unchanged", c.work, c.name, a, lr, len(out))
					}
					if _, err := s.ResponseHeaders(ctx, responseHeaders.Clone(), true); err != nil {
						t.Fatal(err)
					}
					if got, _ := s.ResponseHeaderMap().Get(c.want.key); got != c.want.value {
						t.Errorf("%s/%s: %s = %q, want %q", c.work, c.name, c.want.key, got, c.want.value)
					}
				} else {
					if a != abi.ActionPause || lr == nil || lr.Status != c.want.status {
						t.Fatalf("%s/%s: %v, local response %+v; want %d", c.work, c.name, a, lr, c.want.status)
					}
					if got, _ := lr.Headers.Get(c.want.key); got != c.want.value {
						t.Errorf("%s/%s: local response %s = %q, want %q", c.work, c.name, c.want.key, got, c.want.value)
					}
					wantBody := map[int]string{400: "invalid json\n", 403: "blocked by compute\n"}[c.want.status]
					if string(lr.Body) != wantBody {
						t.Errorf("%s/%s: local response body %q, want %q", c.work, c.name, lr.Body, wantBody)
					}
				}
				if err := s.Close(ctx); err != nil {
					t.Errorf("%s/%s: close: %v", c.work, c.name, err)
				}
			}
		})
	}
}
