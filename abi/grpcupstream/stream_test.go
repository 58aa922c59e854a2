package grpcupstream_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/abi/grpcupstream"
	"github.com/anywasm/anywasm/engine"
	_ "github.com/anywasm/anywasm/engine/all"
	"github.com/anywasm/anywasm/internal/testrt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// grpcStreamWasm is abi's gRPC stream guest (abi/testdata/grpcstream.wat):
// these tests of abi's gRPC streams over grpc-go live here, with the gRPC
// adapter, so that abi's module does not need grpc-go.
var grpcStreamWasm = func() []byte {
	b, err := os.ReadFile("../testdata/grpcstream.wasm")
	if err != nil {
		panic(err)
	}
	return b
}()

// logSink collects the host's logs, as abi's tests do.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (s *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (s *logSink) Handle(_ context.Context, r slog.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, abi.LevelName(r.Level)+" "+r.Message)
	return nil
}
func (s *logSink) WithAttrs([]slog.Attr) slog.Handler { return s }
func (s *logSink) WithGroup(string) slog.Handler      { return s }

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

// forEachRuntime runs f once per runtime compiled into the test binary.
func forEachRuntime(t *testing.T, f func(t *testing.T, rt *engine.Runtime)) {
	for _, name := range engine.Runtimes() {
		t.Run(name, func(t *testing.T) {
			rt, err := engine.Open(name, testrt.Config())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = rt.Close(context.Background()) })
			f(t, rt)
		})
	}
}

// streamServer is a real grpc-go server with streaming methods (any
// service): Chat sends header k=v1-<incoming x-in>, echoes each message
// reversed and, when the client half-closes, ends OK with trailer t=done;
// Fail reads one message and ends PERMISSION_DENIED "go away" (trailer
// t=failed, no headers before: a trailers-only answer); Hold sends "held"
// (reported on entered) and waits until the call is cancelled, then
// reports it on cancelled.
type streamServer struct {
	addr               string
	entered, cancelled chan string // the full method of each Hold
}

func newStreamServer(t *testing.T) *streamServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &streamServer{addr: lis.Addr().String(), entered: make(chan string, 16), cancelled: make(chan string, 16)}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(bytesCodec{}), grpc.UnknownServiceHandler(s.handle))
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return s
}

func (s *streamServer) handle(_ any, stream grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(stream)
	md, _ := metadata.FromIncomingContext(stream.Context())
	switch {
	case strings.HasSuffix(method, "/Chat"):
		if err := stream.SendHeader(metadata.Pairs("k", "v1-"+strings.Join(md.Get("x-in"), ","))); err != nil {
			return err
		}
		for {
			var in []byte
			if err := stream.RecvMsg(&in); err == io.EOF {
				stream.SetTrailer(metadata.Pairs("t", "done"))
				return nil
			} else if err != nil {
				return err
			}
			out := slices.Clone(in)
			slices.Reverse(out)
			if err := stream.SendMsg(out); err != nil {
				return err
			}
		}
	case strings.HasSuffix(method, "/Fail"):
		var in []byte
		if err := stream.RecvMsg(&in); err != nil {
			return err
		}
		stream.SetTrailer(metadata.Pairs("t", "failed"))
		return status.Error(codes.PermissionDenied, "go away")
	case strings.HasSuffix(method, "/Hold"):
		s.entered <- method
		// The send fails if the client cancelled already (this goroutine
		// may run late on a busy machine): the cancel is reported either
		// way.
		_ = stream.SendMsg([]byte("held"))
		<-stream.Context().Done()
		s.cancelled <- method
		return stream.Context().Err()
	}
	return status.Error(codes.Unimplemented, method)
}

// waitEntered waits until a Hold call reached the server.
func (s *streamServer) waitEntered(t *testing.T) {
	t.Helper()
	wait(t, s.entered, "a Hold call reach it")
}

// waitCancelled waits until the server saw a Hold call cancelled.
func (s *streamServer) waitCancelled(t *testing.T) {
	t.Helper()
	wait(t, s.cancelled, "the Hold call cancelled")
}

// brokenTest bounds the waits for events: it only stops a test that is
// broken (an event that never comes), so it is far beyond what a busy
// machine takes.
const brokenTest = time.Minute

// wait waits for an event (the deadline only stops a broken test).
func wait(t *testing.T, c chan string, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(brokenTest):
		t.Fatalf("the server never saw %s", what)
	}
}

// grpcDriver runs grpcstream.wasm's commands and reads its log.
type grpcDriver struct {
	t    *testing.T
	p    *abi.Plugin
	logs *logSink
}

func (d *grpcDriver) cmd(id uint32, args []byte) string {
	d.t.Helper()
	before := len(d.lines())
	if n, err := d.p.CallForeignFunction(context.Background(), id, args); n != 1 || err != nil {
		d.t.Fatalf("command %d: %d VMs, %v", id, n, err)
	}
	// The command's own line is the first line after it that is not a
	// callback's (callbacks of other streams may run meanwhile).
	for _, l := range d.lines()[before:] {
		if !strings.HasPrefix(l, "on_") {
			return l
		}
	}
	d.t.Fatalf("command %d logged nothing", id)
	return ""
}

func clusterMethod(cluster, method string) []byte {
	return append(append([]byte{byte(len(cluster))}, cluster...), method...)
}

func tokenArg(token uint32) []byte { return binary.LittleEndian.AppendUint32(nil, token) }

func (d *grpcDriver) open(cluster, method string) (status, token uint32) {
	d.t.Helper()
	l := d.cmd(1, clusterMethod(cluster, method))
	if _, err := fmt.Sscanf(l, "stream %d %d", &status, &token); err != nil {
		d.t.Fatalf("%q: %v", l, err)
	}
	return status, token
}

func (d *grpcDriver) call(cluster, method string) (status, token uint32) {
	d.t.Helper()
	l := d.cmd(5, clusterMethod(cluster, method))
	if _, err := fmt.Sscanf(l, "call %d %d", &status, &token); err != nil {
		d.t.Fatalf("%q: %v", l, err)
	}
	return status, token
}

// expect runs a command and checks the line it logged.
func (d *grpcDriver) expect(id uint32, args []byte, want string) {
	d.t.Helper()
	if got := d.cmd(id, args); got != want {
		d.t.Errorf("command %d logged %q, want %q", id, got, want)
	}
}

func (d *grpcDriver) send(token uint32, msg string, end bool, want abi.Status) {
	d.t.Helper()
	args := append(tokenArg(token), 0)
	if end {
		args[4] = 1
	}
	d.expect(2, append(args, msg...), fmt.Sprintf("send %d %d", token, want))
}

func (d *grpcDriver) close(token uint32, want abi.Status) {
	d.t.Helper()
	d.expect(3, tokenArg(token), fmt.Sprintf("grpc_close %d %d", token, want))
}

func (d *grpcDriver) cancel(token uint32, want abi.Status) {
	d.t.Helper()
	d.expect(4, tokenArg(token), fmt.Sprintf("grpc_cancel %d %d", token, want))
}

// lines returns the plugin's log lines (info) so far.
func (d *grpcDriver) lines() []string {
	d.logs.mu.Lock()
	defer d.logs.mu.Unlock()
	var out []string
	for _, l := range d.logs.lines {
		if rest, ok := strings.CutPrefix(l, "INFO "); ok {
			out = append(out, rest)
		}
	}
	return out
}

// callbacks returns the callback lines of one token so far, in order.
func (d *grpcDriver) callbacks(token uint32) []string {
	var out []string
	for _, l := range d.lines() {
		if f := strings.Fields(l); strings.HasPrefix(l, "on_") && len(f) > 1 && f[1] == fmt.Sprint(token) {
			out = append(out, l)
		}
	}
	return out
}

// waitFor waits until the plugin logged line for token (an event, not a
// time: the deadline only stops a broken test).
func (d *grpcDriver) waitFor(token uint32, line string) {
	d.t.Helper()
	for deadline := time.Now().Add(brokenTest); ; {
		if slices.Contains(d.callbacks(token), line) {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("no %q; callbacks of %d: %q", line, token, d.callbacks(token))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (d *grpcDriver) checkCallbacks(token uint32, want ...string) {
	d.t.Helper()
	if got := d.callbacks(token); !slices.Equal(got, want) {
		d.t.Errorf("callbacks of %d:\n got %q\nwant %q", token, got, want)
	}
}

// waitNoStreamGoroutines waits until no goroutine serves a gRPC stream
// (grpcupstream's) or a unary call (abi's doGRPC): whatever could still
// deliver a callback is gone.
func waitNoStreamGoroutines(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(brokenTest); ; {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var left []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "grpcupstream.(*stream)") || strings.Contains(g, "abi.(*vm).doGRPC") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines of gRPC streams or calls left:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestGRPCStream runs grpcstream.wasm against a real grpc-go server on every
// runtime: streams opened, fed, half-closed, failed by the server,
// cancelled, and ended with their root context, and the statuses Envoy
// gives (Context::grpcStream, grpcSend, grpcClose, grpcCancel), with
// tokens numbered as cpp-host's WasmBase numbers them.
func TestGRPCStream(t *testing.T) {
	srv := newStreamServer(t)
	up, err := grpcupstream.New(map[string]string{"grpc-backend": srv.addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = up.Close() })
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		logs := &logSink{}
		h := abi.NewHost(rt, abi.Options{Logger: slog.New(logs), GRPCUpstreams: up})
		defer h.Close(ctx)
		p, err := h.Load(ctx, grpcStreamWasm, abi.PluginConfig{Name: "grpcstream"})
		if err != nil {
			t.Fatal(err)
		}
		d := &grpcDriver{t: t, p: p, logs: logs}

		// Send several messages, half-close; the server echoes them and
		// finishes OK. Both sides closed: the stream is forgotten.
		st, echo := d.open("grpc-backend", "Chat")
		if st != 0 || echo != 6 { // cpp-host: the first stream id is 2+4
			t.Fatalf("proxy_grpc_stream = %d, token %d; want 0, 6", st, echo)
		}
		d.send(echo, "one", false, abi.StatusOK)
		d.send(echo, "two", false, abi.StatusOK)
		d.send(echo, "three", false, abi.StatusOK)
		d.close(echo, abi.StatusOK)
		d.waitFor(echo, fmt.Sprintf("on_close %d 0 ", echo))
		d.checkCallbacks(echo,
			"on_initial_metadata 6 2 k=v1-a", // content-type, k
			"on_receive 6 3 eno", "on_receive 6 3 owt", "on_receive 6 5 eerht",
			"on_trailing_metadata 6 1", "on_close 6 0 ")
		d.close(echo, abi.StatusNotFound)
		d.send(echo, "late", false, abi.StatusNotFound)

		// The server fails the stream before any header (trailers-only):
		// empty initial metadata, trailers, the status and its message.
		// The plugin has not closed it: it stays, sends go nowhere, until
		// proxy_grpc_close.
		_, fail := d.open("grpc-backend", "Fail")
		d.send(fail, "x", true, abi.StatusOK)
		d.waitFor(fail, fmt.Sprintf("on_close %d 7 go away", fail))
		d.checkCallbacks(fail,
			fmt.Sprintf("on_initial_metadata %d 0 k=-", fail),
			fmt.Sprintf("on_trailing_metadata %d 2", fail), // content-type, t
			fmt.Sprintf("on_close %d 7 go away", fail))
		d.send(fail, "after", false, abi.StatusOK)
		d.close(fail, abi.StatusOK)
		d.close(fail, abi.StatusNotFound)

		// Cancel: the server sees the call cancelled, the plugin gets no
		// further callback.
		_, hold := d.open("grpc-backend", "Hold")
		srv.waitEntered(t)
		d.waitFor(hold, fmt.Sprintf("on_receive %d 4 held", hold))
		d.cancel(hold, abi.StatusOK)
		srv.waitCancelled(t)
		waitNoStreamGoroutines(t)
		d.checkCallbacks(hold, fmt.Sprintf("on_initial_metadata %d 1 k=-", hold), fmt.Sprintf("on_receive %d 4 held", hold))
		d.cancel(hold, abi.StatusNotFound)
		d.send(hold, "x", false, abi.StatusNotFound)

		// A unary call cancelled (and closed: the same for a call).
		st, call := d.call("grpc-backend", "Hold")
		if st != 0 || call != 5 { // cpp-host: the first call id is 1+4
			t.Fatalf("proxy_grpc_call = %d, token %d; want 0, 5", st, call)
		}
		srv.waitEntered(t)
		d.cancel(call, abi.StatusOK)
		srv.waitCancelled(t)
		waitNoStreamGoroutines(t)
		d.checkCallbacks(call)
		d.close(call, abi.StatusNotFound)
		d.cancel(call, abi.StatusNotFound)
		_, call = d.call("grpc-backend", "Hold")
		srv.waitEntered(t)
		d.close(call, abi.StatusOK)
		srv.waitCancelled(t)
		waitNoStreamGoroutines(t)
		d.checkCallbacks(call)

		// Tokens: of no gRPC kind, BAD_ARGUMENT; a call's to
		// proxy_grpc_send, BAD_ARGUMENT; unknown, NOT_FOUND.
		d.close(4, abi.StatusBadArgument) // an HTTP call's
		d.cancel(7, abi.StatusBadArgument)
		d.send(5, "x", false, abi.StatusBadArgument)
		d.send(1002, "x", false, abi.StatusNotFound)
		d.close(1001, abi.StatusNotFound)
		d.cancel(1002, abi.StatusNotFound)

		// An unknown cluster is PARSE_FAILURE, as Envoy's.
		if st, _ := d.open("nope", "Chat"); abi.Status(st) != abi.StatusParseFailure {
			t.Errorf("proxy_grpc_stream to an unknown cluster = %s", abi.Status(st))
		}

		// Another root context of the VM (the same code, another
		// configuration) does not see the stream.
		other, err := h.Load(ctx, grpcStreamWasm, abi.PluginConfig{Name: "grpcstream", Configuration: []byte("other")})
		if err != nil {
			t.Fatal(err)
		}
		od := &grpcDriver{t: t, p: other, logs: logs}
		_, mine := d.open("grpc-backend", "Hold")
		srv.waitEntered(t)
		od.send(mine, "x", false, abi.StatusNotFound)
		od.close(mine, abi.StatusNotFound)
		od.cancel(mine, abi.StatusNotFound)

		// The other plugin closes with a stream open: the stream is
		// reset, no callback runs after, nothing is left running.
		_, its := od.open("grpc-backend", "Hold")
		srv.waitEntered(t)
		od.waitFor(its, fmt.Sprintf("on_receive %d 4 held", its))
		if err := other.Close(ctx); err != nil {
			t.Fatal(err)
		}
		srv.waitCancelled(t)
		d.cancel(mine, abi.StatusOK)
		srv.waitCancelled(t)
		waitNoStreamGoroutines(t)
		d.checkCallbacks(its, fmt.Sprintf("on_initial_metadata %d 1 k=-", its), fmt.Sprintf("on_receive %d 4 held", its))

		// The host closes with a stream open: the same.
		_, last := d.open("grpc-backend", "Hold")
		srv.waitEntered(t)
		d.waitFor(last, fmt.Sprintf("on_receive %d 4 held", last))
		if err := h.Close(ctx); err != nil {
			t.Fatal(err)
		}
		srv.waitCancelled(t)
		waitNoStreamGoroutines(t)
		d.checkCallbacks(last, fmt.Sprintf("on_initial_metadata %d 1 k=-", last), fmt.Sprintf("on_receive %d 4 held", last))
	})
}

// TestGRPCStreamRefused: a host whose GRPCUpstreams has no streams answers
// proxy_grpc_stream PARSE_FAILURE (what Envoy answers for a cluster it
// does not know), and so does a host with no gRPC upstreams at all.
func TestGRPCStreamRefused(t *testing.T) {
	for name, up := range map[string]abi.GRPCUpstreams{"unary only": unaryOnly{}, "none": nil} {
		t.Run(name, func(t *testing.T) {
			forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
				ctx := context.Background()
				logs := &logSink{}
				h := abi.NewHost(rt, abi.Options{Logger: slog.New(logs), GRPCUpstreams: up})
				defer h.Close(ctx)
				p, err := h.Load(ctx, grpcStreamWasm, abi.PluginConfig{Name: "grpcstream"})
				if err != nil {
					t.Fatal(err)
				}
				d := &grpcDriver{t: t, p: p, logs: logs}
				if st, tok := d.open("grpc-backend", "Chat"); abi.Status(st) != abi.StatusParseFailure || tok != 0 {
					t.Errorf("proxy_grpc_stream = %s, token %d", abi.Status(st), tok)
				}
			})
		})
	}
}

// TestGRPCStreamLimit: Limits.MaxGRPCStreams bounds the streams open in a
// VM (INTERNAL_FAILURE over it); a stream the server closed and the plugin
// did not is forgotten first.
func TestGRPCStreamLimit(t *testing.T) {
	srv := newStreamServer(t)
	up, err := grpcupstream.New(map[string]string{"grpc-backend": srv.addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = up.Close() })
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		ctx := context.Background()
		logs := &logSink{}
		h := abi.NewHost(rt, abi.Options{Logger: slog.New(logs), GRPCUpstreams: up, Limits: abi.Limits{MaxGRPCStreams: 2}})
		defer h.Close(ctx)
		p, err := h.Load(ctx, grpcStreamWasm, abi.PluginConfig{Name: "grpcstream"})
		if err != nil {
			t.Fatal(err)
		}
		d := &grpcDriver{t: t, p: p, logs: logs}
		_, hold := d.open("grpc-backend", "Hold")
		srv.waitEntered(t)
		_, fail := d.open("grpc-backend", "Fail")
		d.send(fail, "x", true, abi.StatusOK)
		d.waitFor(fail, fmt.Sprintf("on_close %d 7 go away", fail))
		st, third := d.open("grpc-backend", "Hold") // fail is forgotten for it
		srv.waitEntered(t)
		if st != 0 {
			t.Errorf("the second open stream = %s", abi.Status(st))
		}
		if st, _ := d.open("grpc-backend", "Hold"); abi.Status(st) != abi.StatusInternalFailure {
			t.Errorf("a third open stream = %s, want INTERNAL_FAILURE", abi.Status(st))
		}
		d.close(fail, abi.StatusNotFound)
		d.cancel(hold, abi.StatusOK)
		srv.waitCancelled(t)
		if st, _ := d.open("grpc-backend", "Chat"); st != 0 { // room again
			t.Errorf("open after a cancel = %s", abi.Status(st))
		}
		d.cancel(third, abi.StatusOK)
		srv.waitCancelled(t)
		if err := h.Close(ctx); err != nil {
			t.Fatal(err)
		}
		waitNoStreamGoroutines(t)
	})
}

// unaryOnly is a GRPCUpstreams without streams (no GRPCStreamer).
type unaryOnly struct{}

func (unaryOnly) Call(context.Context, *abi.GRPCRequest) (*abi.GRPCResponse, error) {
	return nil, errors.New("unary only")
}
