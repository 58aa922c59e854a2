package abi_test

import (
	"context"
	_ "embed"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
)

//go:embed testdata/fuzzguest.wasm
var fuzzGuestWasm []byte

// The memory of testdata/fuzzguest.wat.
const (
	guestPages    = 3
	guestScratch  = 0x100   // to 0x500: out-parameters
	guestNested   = 0x500   // to 0x600: the nested op's out-parameters
	guestHeap     = 0x1000  // the bump allocator's start: the program lands here
	guestNoOut    = 0x10000 // to guestNoOutEnd: the shadow and the report;
	guestNoOutEnd = 0x22000 // out-parameters pointing there are moved to scratch
	guestMaxOps   = 48
	opSetMode     = 100 // the pseudo-op that sets the allocator's mode
)

// Argument roles of a hostcall: a value, a pointer and its length (read by
// the host), a 4- or 8-byte out-parameter, an i64 value.
const (
	roleV = iota
	roleP
	roleL
	roleO4
	roleO8
	roleI64
)

// fuzzCall is a hostcall of the fuzz guest: its import's name, the roles of
// its arguments, and its ret pair (the ret_ptr and ret_size arguments of
// the calls that hand data to the guest; -1: none).
type fuzzCall struct {
	name           string
	roles          []int
	retPtr, retLen int
}

// fuzzCalls are the imports of testdata/fuzzguest.wat, in its order: every
// hostcall anywasm implements (TestFuzzGuestImports checks both).
var fuzzCalls = []fuzzCall{
	{"proxy_log", []int{roleV, roleP, roleL}, -1, -1},
	{"proxy_get_log_level", []int{roleO4}, -1, -1},
	{"proxy_get_current_time_nanoseconds", []int{roleO8}, -1, -1},
	{"proxy_set_tick_period_milliseconds", []int{roleV}, -1, -1},
	{"proxy_set_effective_context", []int{roleV}, -1, -1},
	{"proxy_done", nil, -1, -1},
	{"proxy_get_buffer_bytes", []int{roleV, roleV, roleV, roleO4, roleO4}, 3, 4},
	{"proxy_set_buffer_bytes", []int{roleV, roleV, roleV, roleP, roleL}, -1, -1},
	{"proxy_get_buffer_status", []int{roleV, roleO4, roleO4}, -1, -1},
	{"proxy_get_header_map_size", []int{roleV, roleO4}, -1, -1},
	{"proxy_get_header_map_pairs", []int{roleV, roleO4, roleO4}, 1, 2},
	{"proxy_set_header_map_pairs", []int{roleV, roleP, roleL}, -1, -1},
	{"proxy_get_header_map_value", []int{roleV, roleP, roleL, roleO4, roleO4}, 3, 4},
	{"proxy_add_header_map_value", []int{roleV, roleP, roleL, roleP, roleL}, -1, -1},
	{"proxy_replace_header_map_value", []int{roleV, roleP, roleL, roleP, roleL}, -1, -1},
	{"proxy_remove_header_map_value", []int{roleV, roleP, roleL}, -1, -1},
	{"proxy_continue_stream", []int{roleV}, -1, -1},
	{"proxy_close_stream", []int{roleV}, -1, -1},
	{"proxy_continue_request", nil, -1, -1},
	{"proxy_continue_response", nil, -1, -1},
	{"proxy_clear_route_cache", nil, -1, -1},
	{"proxy_get_status", []int{roleO4, roleO4, roleO4}, 1, 2},
	{"proxy_send_local_response", []int{roleV, roleP, roleL, roleP, roleL, roleP, roleL, roleV}, -1, -1},
	{"proxy_http_call", []int{roleP, roleL, roleP, roleL, roleP, roleL, roleP, roleL, roleV, roleO4}, -1, -1},
	{"proxy_grpc_call", []int{roleP, roleL, roleP, roleL, roleP, roleL, roleP, roleL, roleP, roleL, roleV, roleO4}, -1, -1},
	{"proxy_set_shared_data", []int{roleP, roleL, roleP, roleL, roleV}, -1, -1},
	{"proxy_get_shared_data", []int{roleP, roleL, roleO4, roleO4, roleO4}, 2, 3},
	{"proxy_register_shared_queue", []int{roleP, roleL, roleO4}, -1, -1},
	{"proxy_resolve_shared_queue", []int{roleP, roleL, roleP, roleL, roleO4}, -1, -1},
	{"proxy_enqueue_shared_queue", []int{roleV, roleP, roleL}, -1, -1},
	{"proxy_dequeue_shared_queue", []int{roleV, roleO4, roleO4}, 1, 2},
	{"proxy_define_metric", []int{roleV, roleP, roleL, roleO4}, -1, -1},
	{"proxy_record_metric", []int{roleV, roleI64}, -1, -1},
	{"proxy_increment_metric", []int{roleV, roleI64}, -1, -1},
	{"proxy_get_metric", []int{roleV, roleO8}, -1, -1},
	{"proxy_get_property", []int{roleP, roleL, roleO4, roleO4}, 2, 3},
	{"proxy_set_property", []int{roleP, roleL, roleP, roleL}, -1, -1},
	{"proxy_call_foreign_function", []int{roleP, roleL, roleP, roleL, roleO4, roleO4}, 4, 5},
	{"proxy_get_configuration", []int{roleO4, roleO4}, 0, 1},
	{"proxy_grpc_stream", []int{roleP, roleL, roleP, roleL, roleP, roleL, roleP, roleL, roleO4}, -1, -1},
	{"proxy_grpc_send", []int{roleV, roleP, roleL, roleV}, -1, -1},
	{"proxy_grpc_close", []int{roleV}, -1, -1},
	{"proxy_grpc_cancel", []int{roleV}, -1, -1},
}

// TestFuzzGuestImports: the fuzz guest imports every hostcall anywasm
// implements, in fuzzCalls' order and with its argument types.
func TestFuzzGuestImports(t *testing.T) {
	rt, err := engine.Open("wazero", engine.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(context.Background())
	mod, err := rt.Compile(context.Background(), fuzzGuestWasm)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, im := range mod.Imports() {
		if im.Module != "env" {
			t.Errorf("import %s.%s", im.Module, im.Name)
			continue
		}
		names = append(names, im.Name)
		i := len(names) - 1
		if i >= len(fuzzCalls) || fuzzCalls[i].name != im.Name {
			t.Errorf("import %d is %s, fuzzCalls says otherwise", i, im.Name)
			continue
		}
		var want []engine.ValueType
		for _, r := range fuzzCalls[i].roles {
			want = append(want, map[bool]engine.ValueType{false: engine.I32, true: engine.I64}[r == roleI64])
		}
		if !slices.Equal(im.Type.Params, want) || len(im.Type.Results) != 1 {
			t.Errorf("%s: %s, fuzzCalls says %d parameters %v", im.Name, im.Type, len(want), want)
		}
	}
	implemented := abi.Implemented()
	slices.Sort(implemented)
	slices.Sort(names)
	if !slices.Equal(names, implemented) {
		t.Errorf("the guest imports %v\nanywasm implements %v", names, implemented)
	}
}

// fuzzOp is a hostcall of a program, with its arguments as the guest makes
// them.
type fuzzOp struct {
	call int // index in fuzzCalls, or opSetMode
	args []uint64
}

// fuzzProgram is what the guest runs.
type fuzzProgram struct {
	ops    []fuzzOp
	nested *fuzzOp // run from inside the allocator (mode 3)
	data   []byte  // after the ops; arguments point into it
	// selfMod: an out-parameter points into the program, which may then
	// change under the guest's feet; the ops run are not compared with it.
	selfMod bool
	bytes   []byte
}

// fuzzDict are strings the host knows, placed in the program's data for
// the fuzzer to point at.
var fuzzDict = func() []string {
	ser := func(h abi.Headers) string {
		b := make([]byte, h.SerializedSize())
		h.SerializeTo(b)
		return string(b)
	}
	return []string{":path", ":method", ":authority", "x-a", "X-A", "content-length", "", "plugin_name",
		"plugin_root_id", "plugin_vm_id", "fuzz\x00prop", "fuzz\x00prop\x00", "echo", "fail", "empty", "q1", "hits",
		"backend", "vm", "service", "method", "x-fuzz",
		ser(abi.Headers{{":method", "GET"}, {":path", "/x"}, {":authority", "backend"}, {"x-a", "1"}}),
		ser(abi.Headers{{":method", "GET"}, {":path", "not a path"}, {":authority", "backend"}}),
		ser(abi.Headers{{"grpc-md", "v"}}), ser(nil), "\x00", "\x05\x00\x00\x00\x01\x00", "\xff\xff\x00\x00",
		strings.Repeat("v", 700)}
}()

// memory size the fuzzer's pointers are chosen against.
const guestMemory = guestPages << 16

// hostcallsProgram decodes fuzz bytes into a program: up to 24 ops, each a
// hostcall with arguments chosen by role (values, pointers into the
// program's data, scratch, the ends of memory or outside it, raw words),
// and the allocator's modes.
func hostcallsProgram(data []byte) *fuzzProgram {
	r := &byteReader{b: data}
	p := &fuzzProgram{}
	dictAt := make([]int, len(fuzzDict))
	for i, s := range fuzzDict {
		dictAt[i] = len(p.data)
		p.data = append(p.data, s...)
	}
	var windows [][2]uint64 // out-parameter windows, for selfMod
	u32 := func() uint64 { return uint64(binary.LittleEndian.Uint32(append(r.bytes(4), 0, 0, 0, 0))) }
	// dataAt is filled in once the ops' size is known: pointers into the
	// data are relative to it until then.
	const dataRel = 1 << 40
	region := func() (uint64, uint64) {
		switch b := r.byte(); b % 10 {
		case 0, 1, 2:
			i := int(r.byte()) % len(fuzzDict)
			return dataRel + uint64(dictAt[i]), uint64(len(fuzzDict[i]))
		case 3: // bytes of the input
			raw := r.bytes(int(r.byte()) % 64)
			at := len(p.data)
			p.data = append(p.data, raw...)
			return dataRel + uint64(at), uint64(len(raw))
		case 4:
			return guestScratch + uint64(r.byte())*4%0x400, uint64(r.byte() % 64)
		case 5:
			return 0, 0
		case 6: // outside memory, or wrapping around 2^32
			l := uint64(r.byte() % 16)
			return []uint64{0xfffffff0, guestMemory - l + 1, 0xffffff00, guestMemory}[r.byte()%4], []uint64{l, l, 0x200, 1}[b%4]
		case 7: // the last bytes of memory
			l := uint64(r.byte() % 16)
			return guestMemory - l, l
		case 8:
			return u32(), u32()
		default: // the program and the heap
			return guestHeap + u32()%0xf000, uint64(r.byte())
		}
	}
	out := func(width uint64, nested bool) uint64 {
		var ptr uint64
		if nested {
			ptr = guestNested + uint64(r.byte())%(0x100/width-1)*width
			windows = append(windows, [2]uint64{ptr, ptr + width})
			return ptr
		}
		switch b := r.byte(); b % 8 {
		case 0, 1, 2, 3:
			ptr = guestScratch + uint64(r.byte())%0xfc*4 + uint64(b/8%4) // unaligned too
		case 4:
			ptr = []uint64{guestMemory - 2, guestMemory, 0xfffffffc, guestMemory - width + 1}[r.byte()%4]
		case 5:
			ptr = guestMemory - width
		case 6:
			ptr = u32()
		default:
			ptr = guestHeap + u32()%0xf000
		}
		if ptr+width > guestNoOut && ptr < guestNoOutEnd {
			ptr = guestScratch + ptr%0xfc*4
		}
		windows = append(windows, [2]uint64{ptr, ptr + width})
		return ptr
	}
	value := func() uint64 {
		switch r.byte() % 8 {
		case 0, 1, 2, 3:
			return uint64(r.byte() % 10)
		case 4:
			return []uint64{100, 200, 403, 503, 999, 1000, 99, 5000}[r.byte()%8]
		case 5:
			return 0xffffffff
		case 6:
			return u32()
		default:
			return uint64(r.byte())
		}
	}
	decodeOp := func(call int, nested bool) fuzzOp {
		op := fuzzOp{call: call}
		roles := fuzzCalls[call].roles
		for i := 0; i < len(roles); i++ {
			switch roles[i] {
			case roleV:
				op.args = append(op.args, value())
			case roleP:
				ptr, l := region()
				op.args = append(op.args, ptr, l)
				i++
			case roleO4:
				op.args = append(op.args, out(4, nested))
			case roleO8:
				op.args = append(op.args, out(8, nested))
			case roleI64:
				switch r.byte() % 4 {
				case 0:
					op.args = append(op.args, uint64(int64(int8(r.byte()))))
				case 1:
					op.args = append(op.args, u32()|u32()<<32)
				case 2:
					op.args = append(op.args, 1<<63)
				default:
					op.args = append(op.args, ^uint64(0))
				}
			}
		}
		return op
	}
	for range 1 + int(r.byte())%24 {
		if len(r.b) == 0 {
			break
		}
		c := int(r.byte())
		if c >= 250 && p.nested == nil { // the allocator misbehaves once
			mode := uint64(c - 249) // 1 zero, 2 outside, 3 nested, 4 grow; 5, 6: normal
			if mode == 3 {
				n := decodeOp(int(r.byte())%len(fuzzCalls), true)
				p.nested = &n
			}
			p.ops = append(p.ops, fuzzOp{call: opSetMode, args: []uint64{mode, 0}})
			continue
		}
		p.ops = append(p.ops, decodeOp(c%len(fuzzCalls), false))
	}
	// Lay out: header, ops, the nested op, data.
	opSize := func(op *fuzzOp) int { return 8 + 8*len(op.args) }
	size := 8
	for i := range p.ops {
		size += opSize(&p.ops[i])
	}
	nestedAt := guestHeap + size
	if p.nested != nil {
		size += opSize(p.nested)
	}
	dataAt := uint64(guestHeap + size)
	// An out-parameter into the ops would let the host rewrite an op the
	// guest runs later (its call, its masks, its arguments), and the
	// guest's checks would then judge a program nobody wrote: move it to
	// scratch. (Into the data it may point: that only changes what later
	// ops read.)
	windows = slices.DeleteFunc(windows, func(w [2]uint64) bool { return w[0] < dataAt && w[1] > guestHeap })
	for i := range p.ops {
		op := &p.ops[i]
		if op.call == opSetMode {
			continue
		}
		for j, role := range fuzzCalls[op.call].roles {
			width := map[int]uint64{roleO4: 4, roleO8: 8}[role]
			if width != 0 && op.args[j] < dataAt && op.args[j]+width > guestHeap {
				op.args[j] = guestScratch + op.args[j]%0xfc*4
				windows = append(windows, [2]uint64{op.args[j], op.args[j] + width})
			}
		}
	}
	b := binary.LittleEndian.AppendUint32(nil, 0x7a7a7566)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(p.ops)))
	encode := func(op *fuzzOp) {
		var o4, o8 uint16
		rp, rl := 0xff, 0xff
		if op.call != opSetMode {
			c := fuzzCalls[op.call]
			for i, role := range c.roles {
				switch role {
				case roleO4:
					o4 |= 1 << i
				case roleO8:
					o8 |= 1 << i
				}
			}
			// (A foreign function's results pointer 0 asks for no result:
			// only the size is written, nothing is allocated; its size
			// pointer 0 asks for no size: only the pointer is written.
			// Both as cpp-host's call_foreign_function.)
			foreignNoPair := c.name == "proxy_call_foreign_function" && (op.args[c.retPtr] == 0 || op.args[c.retLen] == 0)
			if c.retPtr >= 0 && !overlapping(op, c) && !foreignNoPair {
				rp, rl = c.retPtr, c.retLen
			}
			for i, role := range c.roles {
				if role == roleP && op.args[i] >= dataRel {
					op.args[i] = op.args[i] - dataRel + dataAt
				}
			}
		} else if op.args[0] == 3 {
			op.args[1] = uint64(nestedAt)
		}
		b = append(b, byte(op.call), byte(len(op.args)))
		b = binary.LittleEndian.AppendUint16(b, o4)
		b = binary.LittleEndian.AppendUint16(b, o8)
		b = append(b, byte(rp), byte(rl))
		for _, a := range op.args {
			b = binary.LittleEndian.AppendUint64(b, a)
		}
	}
	for i := range p.ops {
		encode(&p.ops[i])
	}
	if p.nested != nil {
		encode(p.nested)
	}
	b = append(b, p.data...)
	p.bytes = b
	end := uint64(guestHeap + len(b))
	for _, w := range windows {
		if w[0] < end && w[1] > guestHeap {
			p.selfMod = true
		}
	}
	return p
}

// overlapping reports whether an out-parameter of op overlaps its ret_ptr
// or ret_size: then what the guest reads there after the call is not what
// the host meant to say, and the ret pair is not checked.
func overlapping(op *fuzzOp, c fuzzCall) bool {
	width := func(i int) uint64 { return map[int]uint64{roleO4: 4, roleO8: 8}[c.roles[i]] }
	for _, r := range []int{c.retPtr, c.retLen} {
		for i := range c.roles {
			if i != r && width(i) > 0 && op.args[i] < op.args[r]+4 && op.args[r] < op.args[i]+width(i) {
				return true
			}
		}
	}
	return false
}

// byteReader hands out the fuzz input; past its end it gives zeros.
type byteReader struct{ b []byte }

func (r *byteReader) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *byteReader) bytes(n int) []byte {
	n = min(n, len(r.b))
	b := r.b[:n]
	r.b = r.b[n:]
	return b
}

// fuzzReport is what the guest reports of a program.
type fuzzReport struct {
	ops, base, size, flags         uint32
	violationOp, kind, addr, size2 uint32
	entries                        []fuzzEntry
}

type fuzzEntry struct{ call, status, allocStart, allocEnd, pages uint32 }

func parseReport(msg string) (*fuzzReport, error) {
	b, ok := strings.CutPrefix(msg, "FUZZREPORT")
	if !ok || len(b) < 0x30-10 {
		return nil, fmt.Errorf("not a report: %q", msg)
	}
	w := func(i int) uint32 { return binary.LittleEndian.Uint32([]byte(b[6+4*i:])) }
	r := &fuzzReport{ops: w(0), base: w(1), size: w(2), flags: w(3), violationOp: w(4), kind: w(5), addr: w(6), size2: w(7)}
	if len(b) != 0x30-10+24*int(r.ops) {
		return nil, fmt.Errorf("a report of %d ops in %d bytes", r.ops, len(b))
	}
	for i := range int(r.ops) {
		e := 8 + 6*i
		r.entries = append(r.entries, fuzzEntry{w(e), w(e + 1), w(e + 2), w(e + 3), w(e + 4)})
	}
	return r, nil
}

// fuzzLog keeps what the guest reports and announces.
type fuzzLog struct {
	mu       sync.Mutex
	reports  []string
	announce map[string]bool // FUZZALLOC zero, outside, nested, exhausted
	errors   []string
}

func (l *fuzzLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *fuzzLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case strings.HasPrefix(r.Message, "FUZZREPORT"):
		l.reports = append(l.reports, r.Message)
	case strings.HasPrefix(r.Message, "FUZZALLOC "):
		l.announce[strings.TrimPrefix(r.Message, "FUZZALLOC ")] = true
	case r.Level >= slog.LevelError && len(l.errors) < 5:
		l.errors = append(l.errors, r.Message)
	}
	return nil
}
func (l *fuzzLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *fuzzLog) WithGroup(string) slog.Handler      { return l }

// takeReport returns the last report since the previous call.
func (l *fuzzLog) takeReport() (*fuzzReport, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.reports) == 0 {
		return nil, errors.New("the guest logged no report")
	}
	last := l.reports[len(l.reports)-1]
	l.reports = nil
	return parseReport(last)
}

// fakeUpstreams answer every callout at once, in process.
type fakeUpstreams struct{}

func (fakeUpstreams) RoundTrip(_ context.Context, cluster string, req *http.Request) (*http.Response, error) {
	if cluster != "backend" {
		return nil, fmt.Errorf("unknown cluster %q", cluster)
	}
	return &http.Response{StatusCode: 200, Header: http.Header{"X-B": {"1"}}, Body: io.NopCloser(strings.NewReader("pong")),
		Trailer: http.Header{"X-T": {"2"}}}, nil
}

func (fakeUpstreams) Call(_ context.Context, req *abi.GRPCRequest) (*abi.GRPCResponse, error) {
	if req.Cluster != "backend" {
		return nil, errors.New("unknown cluster")
	}
	return &abi.GRPCResponse{InitialMetadata: abi.Headers{{"a", "1"}}, Message: req.Message, TrailingMetadata: abi.Headers{{"t", "2"}}}, nil
}

// knownStatus are the statuses a hostcall may answer.
var knownStatus = map[uint32]bool{0: true, 1: true, 2: true, 3: true, 4: true, 6: true, 7: true, 8: true, 10: true, 12: true}

// fuzzRuntimes are the runtimes FuzzHostcalls runs each input on: those
// ANYWASM_FUZZ_RUNTIMES names (comma-separated), else wazero while
// fuzzing and every runtime of the binary when the seeds run as tests.
func fuzzRuntimes() []string {
	if s := os.Getenv("ANYWASM_FUZZ_RUNTIMES"); s != "" {
		return strings.Split(s, ",")
	}
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		return []string{"wazero"}
	}
	return engine.Runtimes()
}

// FuzzHostcalls drives the hostcall surface from a guest
// (testdata/fuzzguest.wat) that runs, inside proxy_on_request_body of a
// real HTTP stream, a program of hostcalls with fuzzer-chosen pointers,
// lengths and values (hostcallsProgram), the program being the request
// body. Properties, on each runtime of fuzzRuntimes:
//   - the host never panics;
//   - each hostcall changes guest memory only inside what it allocated
//     through proxy_on_memory_allocate and inside its out-parameters (the
//     guest compares memory with a copy taken before the call), and a
//     ret_ptr it answers OK with points into what it allocated;
//   - hostcalls answer known statuses, INVALID_MEMORY_ACCESS only when an
//     argument does lie outside memory, and never ask for 0 bytes;
//   - the VM fails only when the allocator misbehaved as the program asked
//     (returned 0, a pointer outside memory, called a hostcall that
//     allocates, or changed the header map being serialized) or ran out;
//     a refused header change fails only the stream;
//   - the program runs whole (unless it rewrote itself through an
//     out-parameter, or broke a rule);
//   - afterwards a plain stream through the same plugin works (on a new VM
//     if the old one failed);
//   - every runtime gives the same report.
//
// Seeds: testdata/fuzz/FuzzHostcalls.
func FuzzHostcalls(f *testing.F) {
	var rts []*engine.Runtime
	for _, name := range fuzzRuntimes() {
		rt, err := engine.Open(name, engine.NewConfig())
		if err != nil {
			f.Fatal(err)
		}
		f.Cleanup(func() { _ = rt.Close(context.Background()) })
		// Held for the whole run, the module stays compiled in the
		// runtime's cache: the host of each input reuses it.
		mod, err := rt.Compile(context.Background(), fuzzGuestWasm)
		if err != nil {
			f.Fatal(err)
		}
		f.Cleanup(func() { _ = mod.Close(context.Background()) })
		rts = append(rts, rt)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := hostcallsProgram(data)
		var first string
		for _, rt := range rts {
			got := runHostcalls(t, rt, p)
			if first == "" {
				first = got
			} else if got != first {
				t.Fatalf("runtimes differ:\n%s: %s\n%s: %s", rts[0].Name(), first, rt.Name(), got)
			}
		}
	})
}

// runHostcalls runs p on a new host over rt, checks it, and returns a
// summary of what happened for comparing runtimes.
func runHostcalls(t *testing.T, rt *engine.Runtime, p *fuzzProgram) string {
	ctx := context.Background()
	logs := &fuzzLog{announce: map[string]bool{}}
	h := abi.NewHost(rt, abi.Options{Logger: slog.New(logs), Upstreams: fakeUpstreams{}, GRPCUpstreams: fakeUpstreams{},
		Limits: abi.Limits{MaxHeaderMapBytes: 2048, MaxHeaderMapPairs: 32},
		Properties: func(path []string) ([]byte, bool) {
			return []byte("v"), slices.Equal(path, []string{"fuzz", "prop"})
		},
		ForeignFunctions: map[string]abi.ForeignFunc{
			"echo":  func(_ context.Context, b []byte) ([]byte, error) { return b, nil },
			"fail":  func(context.Context, []byte) ([]byte, error) { return nil, errors.New("failed") },
			"empty": func(context.Context, []byte) ([]byte, error) { return nil, nil },
		}})
	defer h.Close(ctx)
	plugin, err := h.Load(ctx, fuzzGuestWasm, abi.PluginConfig{Name: "fuzz", RootID: "root", VMID: "vm",
		Configuration: []byte("plugin-config"), VMConfiguration: []byte("vm-config")})
	if err != nil {
		t.Fatal(err)
	}
	where := func() string { return fmt.Sprintf("on %s, program %x", rt.Name(), p.bytes) }
	s, err := plugin.NewHTTPStream(ctx)
	if err != nil {
		t.Fatalf("%s: %v", where(), err)
	}
	if a, err := s.RequestHeaders(ctx, abi.Headers{{":path", "/"}, {":method", "POST"}, {"x-a", "1"}}, false); err != nil || a != abi.ActionContinue || s.Err() != nil {
		t.Fatalf("request headers: %v %v %v", a, err, s.Err())
	}
	if _, _, err := s.RequestBody(ctx, p.bytes, true); err != nil {
		t.Fatalf("%s: request body: %v", where(), err)
	}
	streamErr := s.Err()
	_ = s.Close(ctx)
	summary := checkFailure(t, streamErr, logs, where)
	if summary == "" { // the VM is alive: the program ran to its end
		r, err := logs.takeReport()
		if err != nil {
			t.Fatalf("%s: %v", where(), err)
		}
		checkReport(t, r, p, where)
		summary = fmt.Sprintf("%+v", *r)
	}
	// A plain stream through the same plugin (a new VM if it failed).
	s, err = plugin.NewHTTPStream(ctx)
	if err != nil {
		t.Fatalf("%s: after the program, no stream: %v", where(), err)
	}
	defer s.Close(ctx)
	if a, err := s.RequestHeaders(ctx, abi.Headers{{":path", "/"}}, false); err != nil || a != abi.ActionContinue || s.Err() != nil {
		t.Fatalf("%s: after the program, request headers: %v %v %v", where(), a, err, s.Err())
	}
	if _, a, err := s.RequestBody(ctx, nil, true); err != nil || a != abi.ActionContinue || s.Err() != nil {
		t.Fatalf("%s: after the program, request body: %v %v %v", where(), a, err, s.Err())
	}
	if r, err := logs.takeReport(); err != nil || r.ops != 0 || r.violationOp != ^uint32(0) || r.flags != 0 {
		t.Fatalf("%s: after the program, a plain stream reports %+v, %v", where(), r, err)
	}
	return summary
}

// checkFailure checks the stream's failure, if any: "" when the VM is
// alive (the stream may have failed by a refused header change), else a
// summary of a documented failure.
func checkFailure(t *testing.T, err error, logs *fuzzLog, where func() string) string {
	t.Helper()
	if err == nil || errors.Is(err, abi.ErrHeaderLimit) || strings.Contains(err.Error(), "proxy_set_header_map_pairs: malformed") {
		return ""
	}
	var trap *engine.Trap
	if !errors.As(err, &trap) {
		t.Fatalf("%s: the stream failed without a trap: %v", where(), err)
	}
	if trap.Code == engine.TrapHostPanic {
		t.Fatalf("%s: a hostcall panicked: %v", where(), err)
	}
	if trap.Code != engine.TrapHostError {
		t.Fatalf("%s: the VM trapped: %v (errors logged: %q)", where(), err, logs.errors)
	}
	logs.mu.Lock()
	defer logs.mu.Unlock()
	msg := err.Error()
	for _, d := range []struct{ cause, announced, also string }{
		{"allocator returned 0", "zero", "exhausted"},
		{"outside its", "outside", ""},
		{"allocator called a hostcall that allocates", "nested", ""},
		{"allocator changed the header map", "nested", ""},
		{"called from inside the allocator", "nested", ""}, // cpp-host's restricted_callback
	} {
		if strings.Contains(msg, d.cause) && (logs.announce[d.announced] || logs.announce[d.also]) {
			return "failed: " + d.cause
		}
	}
	t.Fatalf("%s: the VM failed, and not for an allocator the program made misbehave: %v (announced %v)", where(), err, logs.announce)
	return ""
}

// checkReport checks the guest's report of a program that ran.
func checkReport(t *testing.T, r *fuzzReport, p *fuzzProgram, where func() string) {
	t.Helper()
	if r.base != guestHeap || r.size != uint32(len(p.bytes)) {
		t.Fatalf("%s: the program was placed at %#x, %d bytes; want %#x, %d", where(), r.base, r.size, guestHeap, len(p.bytes))
	}
	if r.flags&1 != 0 {
		t.Fatalf("%s: the host asked the allocator for 0 bytes", where())
	}
	if r.violationOp != ^uint32(0) {
		k := int(r.violationOp)
		op := "?"
		if k < len(p.ops) && p.ops[k].call < len(fuzzCalls) {
			op = fmt.Sprintf("%s%#x", fuzzCalls[p.ops[k].call].name, p.ops[k].args)
		}
		switch r.kind {
		case 1:
			t.Fatalf("%s: op %d (%s) changed guest memory at %#x, outside what it allocated and its out-parameters", where(), k, op, r.addr)
		default:
			t.Fatalf("%s: op %d (%s) answered OK with ret_ptr %#x, ret_size %d: not what it allocated (%+v)", where(), k, op, r.addr, r.size2, r.entries[k])
		}
	}
	if !p.selfMod {
		if r.flags&2 != 0 || int(r.ops) != len(p.ops) {
			t.Fatalf("%s: ran %d of %d ops (flags %d)", where(), r.ops, len(p.ops), r.flags)
		}
		for i, e := range r.entries {
			if int(e.call) != p.ops[i].call {
				t.Fatalf("%s: op %d ran call %d, the program has %d", where(), i, e.call, p.ops[i].call)
			}
		}
	}
	for i, e := range r.entries {
		if e.call == opSetMode {
			continue
		}
		if !knownStatus[e.status] {
			t.Fatalf("%s: op %d (%s) answered status %d", where(), i, fuzzCalls[e.call].name, e.status)
		}
		if e.status == uint32(abi.StatusInvalidMemoryAccess) && !p.selfMod && !outside(p.ops[i], uint64(e.pages)<<16) {
			t.Fatalf("%s: op %d (%s %#x) answered INVALID_MEMORY_ACCESS with every argument inside its %d pages", where(), i, fuzzCalls[e.call].name, p.ops[i].args, e.pages)
		}
	}
}

// outside reports whether an argument of op lies (partly) outside memory
// of size bytes.
func outside(op fuzzOp, size uint64) bool {
	roles := fuzzCalls[op.call].roles
	for i, role := range roles {
		a := op.args[i]
		switch role {
		case roleP:
			if a+op.args[i+1] > size {
				return true
			}
		case roleO4:
			if a+4 > size {
				return true
			}
		case roleO8:
			if a+8 > size {
				return true
			}
		}
	}
	return false
}
