package nettcp_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/abi/nettcp"
	"github.com/anywasm/anywasm/engine"
	_ "github.com/anywasm/anywasm/engine/all"
	"github.com/anywasm/anywasm/internal/plugins"
	"github.com/anywasm/anywasm/internal/testlog"
	"github.com/anywasm/anywasm/internal/testrt"
)

// forEachRuntime runs f once per runtime compiled into the test binary,
// with a host logging to logs; the host is closed before the runtime.
func forEachRuntime(t *testing.T, f func(t *testing.T, h *abi.Host, logs *testlog.Sink)) {
	for _, name := range engine.Runtimes() {
		t.Run(name, func(t *testing.T) {
			rt, err := engine.Open(name, testrt.Config())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = rt.Close(context.Background()) })
			logs := &testlog.Sink{}
			h := abi.NewHost(rt, abi.Options{Logger: slog.New(logs)})
			t.Cleanup(func() { _ = h.Close(context.Background()) })
			f(t, h, logs)
		})
	}
}

func load(t *testing.T, h *abi.Host, wasm []byte, name string) *abi.Plugin {
	t.Helper()
	p, err := h.Load(context.Background(), wasm, abi.PluginConfig{Name: name, VMID: name})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// echo is an upstream that echoes what it reads, then half-closes, and
// records what each connection sent.
type echo struct {
	ln   net.Listener
	mu   sync.Mutex
	got  []string
	wg   sync.WaitGroup
	dial func(ctx context.Context) (net.Conn, error)
}

func newEcho(t *testing.T) *echo {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echo{ln: ln}
	var d net.Dialer
	e.dial = func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", ln.Addr().String()) }
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				var buf bytes.Buffer
				_, _ = io.Copy(io.MultiWriter(c, &buf), c)
				// Record before half-closing: the client's read ends at
				// this EOF and the test asks received() right after.
				e.mu.Lock()
				e.got = append(e.got, buf.String())
				e.mu.Unlock()
				_ = c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); e.wg.Wait() })
	return e
}

func (e *echo) received() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.got...)
}

// front listens for clients and serves each with p; Serve's results arrive
// on the returned channel.
func front(t *testing.T, ctx context.Context, p *nettcp.Proxy) (string, <-chan error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 1024)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- p.Serve(ctx, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String(), errs
}

func result(t *testing.T, errs <-chan error) error {
	t.Helper()
	select {
	case err := <-errs:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return")
		return nil
	}
}

// exchange sends msg, half-closes and reads everything back.
func exchange(t *testing.T, addr, msg string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPing: the tcp plugin prefixes the first downstream chunk and
// upper-cases upstream data; both sides' EOFs reach the plugin as remote
// closes.
func TestPing(t *testing.T) {
	wasm := plugins.Build(t, "tcp")
	forEachRuntime(t, func(t *testing.T, h *abi.Host, logs *testlog.Sink) {
		up := newEcho(t)
		p := &nettcp.Proxy{Plugins: []*abi.Plugin{load(t, h, wasm, "tcp")}, Dial: up.dial, Logger: slog.New(logs)}
		addr, errs := front(t, context.Background(), p)
		if got := exchange(t, addr, "ping"); got != "ANYWASM:PING" {
			t.Errorf("client read %q, want ANYWASM:PING", got)
		}
		if err := result(t, errs); err != nil {
			t.Errorf("Serve: %v", err)
		}
		if got := up.received(); len(got) != 1 || got[0] != "anywasm:ping" {
			t.Errorf("upstream received %q, want [anywasm:ping]", got)
		}
		for _, l := range []string{"tcp: downstream close peer=remote", "tcp: upstream close peer=remote"} {
			if logs.Count(l) != 1 {
				t.Errorf("log %q not seen once; logs:\n%s", l, logs)
			}
		}
	})
}

// TestChain: downstream data goes through the chain in order, upstream data
// in reverse order, each plugin's output feeding the next.
func TestChain(t *testing.T) {
	wasm := plugins.Build(t, "tcp")
	forEachRuntime(t, func(t *testing.T, h *abi.Host, logs *testlog.Sink) {
		up := newEcho(t)
		p := &nettcp.Proxy{Plugins: []*abi.Plugin{load(t, h, wasm, "tcp1"), load(t, h, wasm, "tcp2")}, Dial: up.dial, Logger: slog.New(logs)}
		addr, errs := front(t, context.Background(), p)
		if got := exchange(t, addr, "ping"); got != "ANYWASM:ANYWASM:PING" {
			t.Errorf("client read %q", got)
		}
		if err := result(t, errs); err != nil {
			t.Errorf("Serve: %v", err)
		}
		if got := up.received(); len(got) != 1 || got[0] != "anywasm:anywasm:ping" {
			t.Errorf("upstream received %q, want [anywasm:anywasm:ping]", got)
		}
		for _, l := range []string{"tcp: downstream close peer=remote", "tcp: upstream close peer=remote"} {
			if n := logs.Count(l); n != 2 {
				t.Errorf("log %q seen %d times, want 2; logs:\n%s", l, n, logs)
			}
		}
	})
}

// TestNoPlugins: an empty chain is a plain proxy.
func TestNoPlugins(t *testing.T) {
	up := newEcho(t)
	addr, errs := front(t, context.Background(), &nettcp.Proxy{Dial: up.dial})
	if got := exchange(t, addr, "ping"); got != "ping" {
		t.Errorf("client read %q", got)
	}
	if err := result(t, errs); err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// TestShutdown: canceling Serve's context closes both connections; the
// plugin sees local closes.
func TestShutdown(t *testing.T) {
	wasm := plugins.Build(t, "tcp")
	forEachRuntime(t, func(t *testing.T, h *abi.Host, logs *testlog.Sink) {
		up := newEcho(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		p := &nettcp.Proxy{Plugins: []*abi.Plugin{load(t, h, wasm, "tcp")}, Dial: up.dial, Logger: slog.New(logs)}
		addr, errs := front(t, ctx, p)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len("ANYWASM:PING"))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ANYWASM:PING" {
			t.Fatalf("read %q, %v", buf, err)
		}
		cancel()
		if err := result(t, errs); !errors.Is(err, context.Canceled) {
			t.Errorf("Serve: %v, want context.Canceled", err)
		}
		if n, err := c.Read(buf); n != 0 || err == nil {
			t.Errorf("client read %d, %v after shutdown; want EOF", n, err)
		}
		for _, l := range []string{"tcp: downstream close peer=local", "tcp: upstream close peer=local"} {
			if logs.Count(l) != 1 {
				t.Errorf("log %q not seen once; logs:\n%s", l, logs)
			}
		}
	})
}

// TestConcurrent runs many connections at once through one plugin.
func TestConcurrent(t *testing.T) {
	wasm := plugins.Build(t, "tcp")
	forEachRuntime(t, func(t *testing.T, h *abi.Host, logs *testlog.Sink) {
		up := newEcho(t)
		pl, err := h.Load(context.Background(), wasm, abi.PluginConfig{Name: "tcp", VMID: "tcp", PoolSize: 4})
		if err != nil {
			t.Fatal(err)
		}
		p := &nettcp.Proxy{Plugins: []*abi.Plugin{pl, pl}, Dial: up.dial, Logger: slog.New(logs)}
		addr, errs := front(t, context.Background(), p)
		const G, N = 8, 20
		var wg sync.WaitGroup
		for g := range G {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range N {
					msg := fmt.Sprintf("ping-%d-%d", g, i)
					want := strings.ToUpper("anywasm:anywasm:" + msg)
					if got := exchange(t, addr, msg); got != want {
						t.Errorf("client read %q, want %q", got, want)
					}
				}
			}()
		}
		wg.Wait()
		for range G * N {
			if err := result(t, errs); err != nil {
				t.Errorf("Serve: %v", err)
			}
		}
		if n := logs.Count("tcp: downstream close peer=remote"); n != 2*G*N {
			t.Errorf("%d downstream closes logged, want %d", n, 2*G*N)
		}
	})
}

// TestDialFailure: an upstream that cannot be dialed closes the downstream;
// the plugin sees a local downstream close and no upstream close.
func TestDialFailure(t *testing.T) {
	wasm := plugins.Build(t, "tcp")
	forEachRuntime(t, func(t *testing.T, h *abi.Host, logs *testlog.Sink) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := ln.Addr().String()
		ln.Close()
		var d net.Dialer
		p := &nettcp.Proxy{
			Plugins: []*abi.Plugin{load(t, h, wasm, "tcp")},
			Dial:    func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", dead) },
			Logger:  slog.New(logs),
		}
		addr, errs := front(t, context.Background(), p)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		if b, _ := io.ReadAll(c); len(b) != 0 {
			t.Errorf("client read %q", b)
		}
		var oe *net.OpError
		if err := result(t, errs); !errors.As(err, &oe) {
			t.Errorf("Serve: %v, want the dial error", err)
		}
		if logs.Count("tcp: downstream close peer=local") != 1 || logs.Count("upstream close") != 0 {
			t.Errorf("logs:\n%s", logs)
		}
	})
}

// A hand-assembled Proxy-Wasm module (ABI 0.2.0) exporting memory, an
// allocator and the callbacks given, each ((i32)->i32 or (i32,i32,i32)->i32)
// with the body given.
type callback struct {
	name   string
	params int // 1 or 3
	body   []byte
}

var (
	// pauseUntilEnd: return end_of_stream == 0 (Pause until the end).
	pauseUntilEnd = []byte{0x20, 0x02, 0x45}
	unreachable   = []byte{0x00}
)

func module(cbs ...callback) []byte {
	vec := func(n int, b ...[]byte) []byte {
		out := []byte{byte(n)}
		for _, x := range b {
			out = append(out, x...)
		}
		return out
	}
	section := func(id byte, body []byte) []byte {
		return append([]byte{id, byte(len(body))}, body...) // every section < 128 bytes
	}
	name := func(s string) []byte { return append([]byte{byte(len(s))}, s...) }
	types := section(1, vec(3,
		[]byte{0x60, 0, 0},
		[]byte{0x60, 1, 0x7f, 1, 0x7f},
		[]byte{0x60, 3, 0x7f, 0x7f, 0x7f, 1, 0x7f}))
	funcs := []byte{0, 1}
	exports := [][]byte{
		append(name("memory"), 2, 0),
		append(name("proxy_abi_version_0_2_0"), 0, 0),
		append(name("proxy_on_memory_allocate"), 0, 1),
	}
	bodies := [][]byte{
		{2, 0, 0x0b},
		{5, 0, 0x41, 0x80, 0x08, 0x0b}, // i32.const 1024
	}
	for i, cb := range cbs {
		ty := byte(1)
		if cb.params == 3 {
			ty = 2
		}
		funcs = append(funcs, ty)
		exports = append(exports, append(name(cb.name), 0, byte(2+i)))
		body := append(append([]byte{0}, cb.body...), 0x0b)
		bodies = append(bodies, append([]byte{byte(len(body))}, body...))
	}
	var m []byte
	m = append(m, 0, 'a', 's', 'm', 1, 0, 0, 0)
	m = append(m, types...)
	m = append(m, section(3, vec(len(funcs), funcs))...)
	m = append(m, section(5, []byte{1, 0, 1})...)
	m = append(m, section(7, vec(len(exports), exports...))...)
	m = append(m, section(10, vec(len(bodies), bodies...))...)
	return m
}

// TestPauseUntilEnd: a plugin that pauses every chunk holds the data until
// the end of the stream; what it releases then feeds the next plugin.
func TestPauseUntilEnd(t *testing.T) {
	tcp := plugins.Build(t, "tcp")
	pause := module(callback{"proxy_on_downstream_data", 3, pauseUntilEnd})
	forEachRuntime(t, func(t *testing.T, h *abi.Host, logs *testlog.Sink) {
		up := newEcho(t)
		p := &nettcp.Proxy{Plugins: []*abi.Plugin{load(t, h, pause, "pause"), load(t, h, tcp, "tcp")}, Dial: up.dial, Logger: slog.New(logs)}
		addr, errs := front(t, context.Background(), p)
		msg := strings.Repeat("ping", 20000) // several reads
		if got := exchange(t, addr, msg); got != strings.ToUpper("anywasm:"+msg) {
			t.Errorf("client read %d bytes", len(got))
		}
		if err := result(t, errs); err != nil {
			t.Errorf("Serve: %v", err)
		}
		if got := up.received(); len(got) != 1 || got[0] != "anywasm:"+msg {
			t.Errorf("upstream received %d strings", len(got))
		}
	})
}

// TestBufferLimit: a paused plugin may hold at most MaxBufferBytes.
func TestBufferLimit(t *testing.T) {
	pause := module(callback{"proxy_on_downstream_data", 3, pauseUntilEnd})
	forEachRuntime(t, func(t *testing.T, h *abi.Host, logs *testlog.Sink) {
		up := newEcho(t)
		p := &nettcp.Proxy{Plugins: []*abi.Plugin{load(t, h, pause, "pause")}, Dial: up.dial, Logger: slog.New(logs), MaxBufferBytes: 1000}
		addr, errs := front(t, context.Background(), p)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		go func() {
			for i := 0; i < 100; i++ {
				if _, err := c.Write(make([]byte, 100)); err != nil {
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
		if err := result(t, errs); !errors.Is(err, nettcp.ErrBufferLimit) {
			t.Errorf("Serve: %v, want ErrBufferLimit", err)
		}
		if b, _ := io.ReadAll(c); len(b) != 0 {
			t.Errorf("client read %q", b)
		}
		if logs.Count("paused plugins hold too much data") != 1 {
			t.Errorf("logs:\n%s", logs)
		}
	})
}

// TestPluginFailure: a plugin that traps on data closes the connection
// (FailClosed); one that traps in proxy_on_new_connection closes it before
// the upstream is dialed.
func TestPluginFailure(t *testing.T) {
	onData := module(callback{"proxy_on_downstream_data", 3, unreachable})
	onNew := module(callback{"proxy_on_new_connection", 1, unreachable})
	forEachRuntime(t, func(t *testing.T, h *abi.Host, logs *testlog.Sink) {
		up := newEcho(t)
		var dials atomic.Int32
		dial := func(ctx context.Context) (net.Conn, error) { dials.Add(1); return up.dial(ctx) }
		for _, c := range []struct {
			name  string
			wasm  []byte
			dials int32
		}{{"data", onData, 1}, {"new", onNew, 0}} {
			dials.Store(0)
			p := &nettcp.Proxy{Plugins: []*abi.Plugin{load(t, h, c.wasm, c.name)}, Dial: dial, Logger: slog.New(logs)}
			addr, errs := front(t, context.Background(), p)
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
			_, _ = conn.Write([]byte("ping"))
			if b, _ := io.ReadAll(conn); len(b) != 0 {
				t.Errorf("%s: client read %q", c.name, b)
			}
			conn.Close()
			var pe *abi.PluginError
			if err := result(t, errs); !errors.As(err, &pe) {
				t.Errorf("%s: Serve: %v, want a PluginError", c.name, err)
			}
			if n := dials.Load(); n != c.dials {
				t.Errorf("%s: %d dials, want %d", c.name, n, c.dials)
			}
		}
	})
}

// TestIdleTimeout: a connection that carries no data for IdleTimeout is
// closed (both sides), and Serve says why; what was sent before went
// through.
func TestIdleTimeout(t *testing.T) {
	wasm := plugins.Build(t, "tcp")
	forEachRuntime(t, func(t *testing.T, h *abi.Host, logs *testlog.Sink) {
		e := newEcho(t)
		p := &nettcp.Proxy{Plugins: []*abi.Plugin{load(t, h, wasm, "tcp")}, Dial: e.dial,
			Logger: slog.New(logs), IdleTimeout: 100 * time.Millisecond}
		addr, errs := front(t, context.Background(), p)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second)) // a bound, not an expectation
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(c) // then nothing more: the proxy closes
		if string(b) != "ANYWASM:PING" {
			t.Errorf("client read %q", b)
		}
		if err := result(t, errs); !errors.Is(err, nettcp.ErrIdleTimeout) {
			t.Errorf("Serve: %v, want ErrIdleTimeout", err)
		}
	})
}

// TestAttributes: network plugins see the connection's addresses and what
// Proxy.Info adds in proxy_on_new_connection, the upstream once dialed.
func TestAttributes(t *testing.T) {
	props := plugins.Build(t, "props")
	reads := "connection source/address\nconnection destination/address\nconnection xds/cluster_name\n" +
		"connection connection/id\nconnection upstream/address\ndata upstream/address\n"
	forEachRuntime(t, func(t *testing.T, h *abi.Host, logs *testlog.Sink) {
		up := newEcho(t)
		p, err := h.Load(context.Background(), props, abi.PluginConfig{Name: "props", VMID: "props", Configuration: []byte(reads)})
		if err != nil {
			t.Fatal(err)
		}
		var local string
		proxy := &nettcp.Proxy{Plugins: []*abi.Plugin{p}, Dial: up.dial, Logger: slog.New(logs),
			Info: func(down net.Conn, info *abi.StreamInfo) {
				local = down.LocalAddr().String()
				info.ConnectionID = 5
				info.Cluster = &abi.ClusterInfo{Name: "db"}
			}}
		addr, errs := front(t, context.Background(), proxy)
		if got := exchange(t, addr, "ping"); got != "ping" {
			t.Errorf("client read %q", got)
		}
		if err := result(t, errs); err != nil {
			t.Errorf("Serve: %v", err)
		}
		hx := func(s string) string { return "hex:" + hex.EncodeToString([]byte(s)) }
		for _, want := range []string{
			"attr connection destination/address = " + hx(local),
			"attr connection xds/cluster_name = " + hx("db"),
			"attr connection connection/id = hex:0500000000000000",
			"attr connection upstream/address = error:error status returned by host: not found",
			"attr data upstream/address = " + hx(up.ln.Addr().String()),
		} {
			if !logs.Has(want) {
				t.Errorf("no %q in\n%s", want, logs)
			}
		}
		if !logs.Has("attr connection source/address = hex:" + hex.EncodeToString([]byte("127.0.0.1:"))) {
			t.Errorf("source/address:\n%s", logs)
		}
	})
}
