package abi_test

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/internal/plugins"
	"github.com/anywasm/anywasm/internal/testrt"
)

// The host's semantics where they follow Envoy's code rather than the
// spec's text: each test names the Envoy or proxy-wasm-cpp-host function it
// checks against.

//go:embed testdata/edge.wasm
var edgeWasm []byte

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// setbufConfig is edge.wat's 'b' mode: proxy_set_buffer_bytes(t, start,
// length, data).
func setbufConfig(t abi.BufferType, start, length uint32, data string) []byte {
	b := []byte{'b'}
	b = append(b, le32(uint32(t))...)
	b = append(b, le32(start)...)
	b = append(b, le32(length)...)
	return append(b, data...)
}

// loadEdge loads edge.wat with a configuration.
func loadEdge(t *testing.T, h *abi.Host, name string, conf []byte) *abi.Plugin {
	t.Helper()
	p, err := h.Load(context.Background(), edgeWasm, abi.PluginConfig{Name: name, VMID: name, Configuration: conf})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSetBufferBytes: proxy_set_buffer_bytes as Envoy's Buffer::copyFrom,
// on every mutable buffer: start 0 drains min(length, size) bytes and
// prepends the data, a start at or past the end appends, any other start
// is BAD_ARGUMENT (the buffer unchanged); read-only buffers are
// BAD_ARGUMENT, a buffer the context lacks NOT_FOUND.
func TestSetBufferBytes(t *testing.T) {
	hundred := strings.Repeat("0123456789", 10)
	cases := []struct {
		name          string
		start, length uint32
		in, data      string
		want          string
		status        abi.Status
	}{
		{"prepend", 0, 0, "hello world", "XX", "XXhello world", abi.StatusOK},
		{"replace first 12 of 3", 0, 12, "abc", "Hello, world", "Hello, world", abi.StatusOK},
		{"replace first 5 of 5", 0, 5, "hello", "HELLO", "HELLO", abi.StatusOK},
		{"replace first 12 of 100", 0, 12, hundred, "Hello, world", "Hello, world" + hundred[12:], abi.StatusOK},
		{"replace all", 0, 0x7fffffff, hundred, "short", "short", abi.StatusOK},
		{"append at the end", 3, 0, "abc", "def", "abcdef", abi.StatusOK},
		{"append past the end", 1000, 7, "abc", "def", "abcdef", abi.StatusOK},
		{"start inside", 1, 0, "abc", "X", "abc", abi.StatusBadArgument},
		{"start inside, with length", 2, 1, "abc", "X", "abc", abi.StatusBadArgument},
	}
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		for _, bt := range []abi.BufferType{abi.BufferHTTPRequestBody, abi.BufferHTTPResponseBody, abi.BufferDownstreamData, abi.BufferUpstreamData} {
			for _, c := range cases {
				logs := &logSink{}
				h := newHost(rt, logs)
				p := loadEdge(t, h, "setbuf", setbufConfig(bt, c.start, c.length, c.data))
				var out []byte
				var a abi.Action
				var err error
				switch bt {
				case abi.BufferHTTPRequestBody, abi.BufferHTTPResponseBody:
					s, serr := p.NewHTTPStream(ctx)
					if serr != nil {
						t.Fatal(serr)
					}
					if bt == abi.BufferHTTPRequestBody {
						out, a, err = s.RequestBody(ctx, []byte(c.in), true)
					} else {
						out, a, err = s.ResponseBody(ctx, []byte(c.in), true)
					}
					_ = s.Close(ctx)
				default:
					s, _, serr := p.NewTCPStream(ctx)
					if serr != nil {
						t.Fatal(serr)
					}
					if bt == abi.BufferDownstreamData {
						out, a, err = s.DownstreamData(ctx, []byte(c.in), false)
					} else {
						out, a, err = s.UpstreamData(ctx, []byte(c.in), false)
					}
					_ = s.Close(ctx)
				}
				if err != nil || a != abi.ActionContinue {
					t.Fatalf("buffer %d %s: %v %s", bt, c.name, err, a)
				}
				if string(out) != c.want || !logs.has(fmt.Sprintf("status %d", c.status)) {
					t.Errorf("buffer %d %s: %q, want %q; logs:\n%s", bt, c.name, out, c.want, logs)
				}
				_ = h.Close(ctx)
			}
		}
		// Read-only buffers: the VM and plugin configurations (the latter
		// is there only in proxy_on_configure: NOT_FOUND in a stream), and
		// the HTTP call response body outside its callback (NOT_FOUND).
		for bt, want := range map[abi.BufferType]abi.Status{
			abi.BufferVMConfiguration: abi.StatusBadArgument, abi.BufferPluginConfiguration: abi.StatusNotFound,
			abi.BufferHTTPCallResponseBody: abi.StatusNotFound,
		} {
			logs := &logSink{}
			h := newHost(rt, logs)
			p := loadEdge(t, h, "readonly", setbufConfig(bt, 0, 0, "x"))
			s, err := p.NewHTTPStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.RequestBody(ctx, []byte("body"), true); err != nil {
				t.Fatal(err)
			}
			_ = s.Close(ctx)
			if !logs.has(fmt.Sprintf("status %d", want)) {
				t.Errorf("set_buffer_bytes on buffer %d: want %s; logs:\n%s", bt, want, logs)
			}
			_ = h.Close(ctx)
		}
	})
}

// TestEnvoyExampleBodyChunks: Envoy's C++ example replaces the first 12
// bytes of each response body chunk it sees with "Hello, world"
// (setBuffer(HttpResponseBody, 0, 12, ...)): one 100-byte chunk keeps its
// other 88 bytes; three chunks, each let through, are each rewritten.
func TestEnvoyExampleBodyChunks(t *testing.T) {
	wasm := sharedGuest(t, "envoy-wasm-cc-example.wasm")
	hundred := strings.Repeat("0123456789", 10)
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		h := newHost(rt, &logSink{})
		defer h.Close(ctx)
		p, err := h.Load(ctx, wasm, abi.PluginConfig{Name: "example", RootID: "my_root_id"})
		if err != nil {
			t.Fatal(err)
		}
		for _, chunks := range [][]string{{hundred}, {hundred[:40], hundred[40:80], hundred[80:]}} {
			s, err := p.NewHTTPStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.ResponseHeaders(ctx, abi.Headers{{":status", "200"}}, false); err != nil {
				t.Fatal(err)
			}
			var got, want string
			for i, c := range chunks {
				out, a, err := s.ResponseBody(ctx, []byte(c), i == len(chunks)-1)
				if err != nil || a != abi.ActionContinue {
					t.Fatalf("%v %s", err, a)
				}
				got += string(out)
				want += "Hello, world" + c[min(12, len(c)):]
			}
			if got != want {
				t.Errorf("%d chunks: %q, want %q", len(chunks), got, want)
			}
			_ = s.Close(ctx)
		}
	})
}

// TestRootContextsByConfiguration: as proxy-wasm-cpp-host keys root
// contexts (PluginBase::key: the root id and the plugin configuration), the
// same code loaded twice into one vm_id with the same (empty) root id and
// two configurations gets two root contexts, each with its configuration
// and its ticks; an identical plugin shares one.
func TestRootContextsByConfiguration(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		logs := &logSink{}
		h := abi.NewHost(rt, abi.Options{Logger: slog.New(logs), ManualTicks: true})
		defer h.Close(ctx)
		wasm := plugins.Build(t, "config")
		a, err := h.Load(ctx, wasm, abi.PluginConfig{Name: "c", VMID: "one", Configuration: []byte("A")})
		if err != nil {
			t.Fatal(err)
		}
		b, err := h.Load(ctx, wasm, abi.PluginConfig{Name: "c", VMID: "one", Configuration: []byte("B")})
		if err != nil {
			t.Fatalf("the same code and root id with another configuration: %v", err)
		}
		a2, err := h.Load(ctx, wasm, abi.PluginConfig{Name: "c", VMID: "one", Configuration: []byte("A")})
		if err != nil || a2 != a {
			t.Fatalf("an identical plugin: %p %v, want the loaded %p", a2, err, a)
		}
		check := func(p *abi.Plugin, want string) {
			t.Helper()
			s, err := p.NewHTTPStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(ctx)
			if _, err := s.ResponseHeaders(ctx, abi.Headers{{":status", "200"}}, true); err != nil || s.Err() != nil {
				t.Fatal(err, s.Err())
			}
			if got := get(s.ResponseHeaderMap(), "x-config"); got != want {
				t.Errorf("x-config = %s, want %s", got, want)
			}
		}
		check(a, "A")
		check(b, "B")
		_ = a2.Close(ctx) // a is still loaded once
		check(a, "A")
		_ = a.Close(ctx)
		check(b, "B")

		// Ticks: two root contexts of the tick plugin tick on their own.
		tick := plugins.Build(t, "tick")
		t1, err := h.Load(ctx, tick, abi.PluginConfig{Name: "t", VMID: "ticks", Configuration: []byte("1")})
		if err != nil {
			t.Fatal(err)
		}
		t2, err := h.Load(ctx, tick, abi.PluginConfig{Name: "t", VMID: "ticks", Configuration: []byte("2")})
		if err != nil {
			t.Fatal(err)
		}
		if t1.TickPeriod() != 100*time.Millisecond || t2.TickPeriod() != 100*time.Millisecond {
			t.Errorf("tick periods %s %s, want 100ms each", t1.TickPeriod(), t2.TickPeriod())
		}
		if n := t1.Tick(ctx) + t2.Tick(ctx) + t1.Tick(ctx); n != 3 {
			t.Errorf("%d ticks ran, want 3", n)
		}
		if v, _, _ := h.SharedData("ticks", "ticks"); string(v) != "3" {
			t.Errorf("shared ticks = %q, want 3 (each root context ticked)\n%s", v, logs)
		}
	})
}

// callConfig is edge.wat's 'c' mode.
func callConfig(cluster string, timeoutMS uint32, h abi.Headers) []byte {
	b := append([]byte{'c'}, le32(uint32(len(cluster)))...)
	b = append(b, cluster...)
	b = append(b, le32(timeoutMS)...)
	m := make([]byte, h.SerializedSize())
	h.SerializeTo(m)
	return append(b, m...)
}

// TestHTTPCallDispatch: proxy_http_call as Envoy's Context::httpCall: an
// unknown cluster, a missing :method, :path or :authority, and a timeout
// that is negative as an int are BAD_ARGUMENT when the call is made; the
// pseudo-headers may be empty (an empty :authority is the cluster's).
func TestHTTPCallDispatch(t *testing.T) {
	got := make(chan *http.Request, 10)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r
		w.Write([]byte("ok"))
	}))
	defer up.Close()
	full := abi.Headers{{":method", "GET"}, {":path", "/x"}, {":authority", "backend"}}
	empty := abi.Headers{{":method", ""}, {":path", ""}, {":authority", ""}}
	cases := []struct {
		name    string
		cluster string
		timeout uint32
		headers abi.Headers
		status  abi.Status
	}{
		{"known cluster", "backend", 1000, full, abi.StatusOK},
		{"empty pseudo-headers", "backend", 1000, empty, abi.StatusOK},
		{"unknown cluster", "nowhere", 1000, full, abi.StatusBadArgument},
		{"no :authority", "backend", 1000, full[:2], abi.StatusBadArgument},
		{"no :path", "backend", 1000, abi.Headers{full[0], full[2]}, abi.StatusBadArgument},
		{"negative timeout", "backend", 0x80000000, full, abi.StatusBadArgument},
	}
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		for _, c := range cases {
			logs := &logSink{}
			h := abi.NewHost(rt, abi.Options{Logger: slog.New(logs), Upstreams: &abi.HTTPUpstreams{Clusters: map[string]string{"backend": up.URL}}})
			p := loadEdge(t, h, "call", callConfig(c.cluster, c.timeout, c.headers))
			s, err := p.NewHTTPStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			s.RequestHeaders(ctx, abi.Headers{{":path", "/"}}, true)
			if !logs.has(fmt.Sprintf("status %d", c.status)) {
				t.Errorf("%s: want %s; logs:\n%s", c.name, c.status, logs)
			}
			if c.status == abi.StatusOK {
				wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err := s.Wait(wctx, abi.StreamHTTPRequest)
				cancel()
				if err != nil || s.LocalResponse() != nil {
					t.Errorf("%s: the call's answer did not continue the stream: %v %+v\n%s", c.name, err, s.LocalResponse(), logs)
				}
				r := <-got
				if c.name == "empty pseudo-headers" && (r.Method != "GET" || r.URL.Path != "/") {
					t.Errorf("empty pseudo-headers sent as %s %s", r.Method, r.URL.Path)
				}
			}
			_ = s.Close(ctx)
			_ = h.Close(ctx)
		}
	})
}

// TestCalloutAnswerOwnDeadline: a callout answered (here: failed by its
// own timeout) after the call deadline of the callback that made it runs
// proxy_on_http_call_response under a deadline of its own, on every
// runtime that interrupts: the plugin answers (401), the VM is not killed
// (which would answer 503).
func TestCalloutAnswerOwnDeadline(t *testing.T) {
	block := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer up.Close()
	defer close(block)
	for _, name := range engine.Runtimes() {
		t.Run(name, func(t *testing.T) {
			rt, err := engine.Open(name, testrt.Config().WithInterruptOnContextDone(true))
			if errors.Is(err, engine.ErrNotSupported) {
				t.Skipf("%s cannot interrupt: %v", name, err)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Close(context.Background())
			ctx := context.Background()
			logs := &logSink{}
			h := abi.NewHost(rt, abi.Options{Logger: slog.New(logs), Upstreams: &abi.HTTPUpstreams{Clusters: map[string]string{"backend": up.URL}}})
			defer h.Close(ctx)
			p, err := h.Load(ctx, edgeWasm, abi.PluginConfig{Name: "late", VMID: "late", CallTimeout: 100 * time.Millisecond,
				Configuration: callConfig("backend", 300, abi.Headers{{":method", "GET"}, {":path", "/"}, {":authority", "b"}})})
			if err != nil {
				t.Fatal(err)
			}
			s, err := p.NewHTTPStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(ctx)
			if a, _ := s.RequestHeaders(ctx, abi.Headers{{":path", "/"}}, true); a != abi.ActionPause {
				t.Fatalf("action %s", a)
			}
			wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			if err := s.Wait(wctx, abi.StreamHTTPRequest); err != nil {
				t.Fatal(err)
			}
			if lr := s.LocalResponse(); lr == nil || lr.Status != 401 || string(lr.Body) != "no answer\n" || s.Err() != nil {
				t.Errorf("local response %+v, err %v: want the plugin's 401\n%s", lr, s.Err(), logs)
			}
		})
	}
}

// TestAllocatorRestricted: inside the allocator only proxy_log, fd_write,
// clock_time_get and poll_oneoff may run (cpp-host WasmBase::allocMemory);
// proxy_done or proxy_set_tick_period_milliseconds there fail the VM with
// an error naming the allocator and the hostcall.
func TestAllocatorRestricted(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		for mode, want := range map[byte]string{
			'd': "env.proxy_done called from inside the allocator (proxy_on_memory_allocate)",
			't': "env.proxy_set_tick_period_milliseconds called from inside the allocator (proxy_on_memory_allocate)",
			'l': "",
		} {
			logs := &logSink{}
			h := newHost(rt, logs)
			p := loadEdge(t, h, "alloc", []byte{mode})
			s, err := p.NewHTTPStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			s.RequestHeaders(ctx, abi.Headers{{":path", "/"}}, true)
			if want == "" {
				if s.Err() != nil || !logs.has("allocating") {
					t.Errorf("proxy_log in the allocator: %v\n%s", s.Err(), logs)
				}
			} else if s.Err() == nil || !strings.Contains(s.Err().Error(), want) {
				t.Errorf("mode %c: %v, want an error containing %q", mode, s.Err(), want)
			}
			_ = s.Close(ctx)
			_ = h.Close(ctx)
		}
	})
}

// TestLogLevels: proxy_get_log_level answers the level the plugin's logs
// are kept at (Envoy's Context::getLogLevel): the host logger's, or the
// plugin's own LogLevel; trace lines are kept only at trace, and TRACE is
// the level's name.
func TestLogLevels(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		var out bytes.Buffer
		logger := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: abi.ReplaceLevelNames}))
		h := abi.NewHost(rt, abi.Options{Logger: logger})
		defer h.Close(ctx)
		trace := abi.LogTrace
		for _, c := range []struct {
			level *abi.LogLevel
			want  string
			trace bool
		}{{nil, "level 2", false}, {&trace, "level 0", true}} {
			out.Reset()
			p, err := h.Load(ctx, edgeWasm, abi.PluginConfig{Name: fmt.Sprint("lv", c.trace), VMID: fmt.Sprint("lv", c.trace), Configuration: []byte("g"), LogLevel: c.level})
			if err != nil {
				t.Fatal(err)
			}
			s, _ := p.NewHTTPStream(ctx)
			s.RequestHeaders(ctx, abi.Headers{{":path", "/"}}, true)
			_ = s.Close(ctx)
			logs := out.String()
			if !strings.Contains(logs, c.want) || strings.Contains(logs, "level=TRACE msg=\"a trace line\"") != c.trace {
				t.Errorf("level %v: want %q, trace line %v; logs:\n%s", c.level, c.want, c.trace, logs)
			}
		}
	})
}

// TestTrapBacktrace: a plugin's trap names the plugin, the callback, the
// trap code and the guest's backtrace with the names of the module's name
// section, on every runtime.
func TestTrapBacktrace(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		f := load(t, rt, "trap", abi.PluginConfig{}, abi.Options{})
		s := f.stream()
		s.RequestHeaders(f.ctx, abi.Headers{{":path", "/"}, {"x-crash", "panic"}}, true)
		err := s.Err()
		var trap *engine.Trap
		if !errors.As(err, &trap) || trap.Code != engine.TrapUnreachable || len(trap.Frames) == 0 {
			t.Fatalf("Err() = %v, want an unreachable trap with frames", err)
		}
		for _, want := range []string{`plugin "trap" failed in proxy_on_request_headers [unreachable]`,
			"proxy_on_request_headers -> ", "main.__httpContext_.OnHttpRequestHeaders -> runtime.gopanic"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%v\nlacks %q", err, want)
			}
		}
		_ = s.Close(f.ctx)
	})
}
