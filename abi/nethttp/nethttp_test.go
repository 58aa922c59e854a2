package nethttp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/abi/nethttp"
	"github.com/anywasm/anywasm/engine"
	_ "github.com/anywasm/anywasm/engine/all"
	"github.com/anywasm/anywasm/internal/plugins"
	"github.com/anywasm/anywasm/internal/testlog"
	"github.com/anywasm/anywasm/internal/testrt"
)

// env is one runtime, one host and a backend the proxy in front of it
// forwards to.
type env struct {
	t       *testing.T
	rt      *engine.Runtime
	host    *abi.Host
	logs    *testlog.Sink
	backend *httptest.Server
	seen    chan *seenRequest // what the backend received
}

type seenRequest struct {
	method, path, host string
	header             http.Header
	body               string
	trailer            http.Header
}

func forEachRuntime(t *testing.T, cfg *engine.Config, opts abi.Options, f func(t *testing.T, e *env)) {
	for _, name := range engine.Runtimes() {
		t.Run(name, func(t *testing.T) {
			c := testrt.Config()
			if cfg != nil {
				c = *cfg
			}
			rt, err := engine.Open(name, c)
			if errors.Is(err, engine.ErrNotSupported) {
				t.Skipf("%s: %v", name, err)
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = rt.Close(context.Background()) })
			e := &env{t: t, rt: rt, logs: &testlog.Sink{}, seen: make(chan *seenRequest, 1000)}
			o := opts
			o.Logger = slog.New(e.logs)
			e.host = abi.NewHost(rt, o)
			t.Cleanup(func() { _ = e.host.Close(context.Background()) })
			e.backend = httptest.NewServer(http.HandlerFunc(e.serveBackend))
			t.Cleanup(e.backend.Close)
			f(t, e)
		})
	}
}

// serveBackend records the request and answers "abc" (or what the
// x-backend-body header asks for), with trailers when asked.
func (e *env) serveBackend(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	e.seen <- &seenRequest{method: r.Method, path: r.URL.RequestURI(), host: r.Host, header: r.Header.Clone(), body: string(b), trailer: r.Trailer.Clone()}
	if r.Header.Get("X-Backend-Trailer") != "" {
		w.Header().Set("Trailer", "X-Checksum")
	}
	w.Header().Set("Content-Type", "text/plain")
	body := "abc"
	if v := r.Header.Get("X-Backend-Body"); v != "" {
		body = v
	}
	if n := r.Header.Get("X-Backend-Size"); n != "" {
		var size int
		fmt.Sscan(n, &size)
		body = strings.Repeat("z", size)
	}
	_, _ = io.WriteString(w, body)
	if r.Header.Get("X-Backend-Trailer") != "" {
		w.Header().Set("X-Checksum", "sum-1")
	}
}

func (e *env) load(name string, cfg abi.PluginConfig) *abi.Plugin {
	e.t.Helper()
	return e.loadWasm(plugins.Build(e.t, name), name, cfg)
}

func (e *env) loadWasm(wasm []byte, name string, cfg abi.PluginConfig) *abi.Plugin {
	e.t.Helper()
	if cfg.Name == "" {
		cfg.Name = name
	}
	if cfg.VMID == "" {
		cfg.VMID = "vm-" + name
	}
	p, err := e.host.Load(context.Background(), wasm, cfg)
	if err != nil {
		e.t.Fatalf("load %s: %v\nlogs:\n%s", name, err, e.logs)
	}
	return p
}

// proxy starts a reverse proxy to the backend behind the plugins.
func (e *env) proxy(opts nethttp.Options, ps ...*abi.Plugin) *httptest.Server {
	u, _ := url.Parse(e.backend.URL)
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(u)
		pr.Out.Host = pr.In.Host
		pr.Out.Trailer = pr.In.Trailer
	}, ErrorLog: log.New(io.Discard, "", 0)}
	srv := httptest.NewServer(nethttp.New(rp, nethttp.Plugins(ps...), opts))
	e.t.Cleanup(srv.Close)
	return srv
}

type response struct {
	status  int
	header  http.Header
	body    string
	trailer http.Header
}

func (e *env) do(req *http.Request) *response {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v\nlogs:\n%s", req.Method, req.URL, err, e.logs)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("read body: %v", err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: string(b), trailer: resp.Trailer}
}

func (e *env) get(srv *httptest.Server, path string, hdr ...string) *response {
	e.t.Helper()
	req, _ := http.NewRequest("GET", srv.URL+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return e.do(req)
}

func (e *env) backendSaw() *seenRequest {
	e.t.Helper()
	select {
	case s := <-e.seen:
		return s
	case <-time.After(10 * time.Second):
		e.t.Fatal("the backend saw no request")
		return nil
	}
}

func (e *env) backendSawNothing() {
	e.t.Helper()
	select {
	case s := <-e.seen:
		e.t.Errorf("the backend saw %s %s", s.method, s.path)
	default:
	}
}

func TestHeaders(t *testing.T) {
	forEachRuntime(t, nil, abi.Options{}, func(t *testing.T, e *env) {
		srv := e.proxy(nethttp.Options{}, e.load("headers", abi.PluginConfig{}))
		r := e.get(srv, "/hello?x=1", "X-One", "1")
		got := e.backendSaw()
		if r.status != 200 || r.body != "abc" || r.header.Get("X-Anywasm-Plugin") != "headers" {
			t.Errorf("response %d %q %v", r.status, r.body, r.header)
		}
		if got.path != "/hello?x=1" || got.header.Get("X-Anywasm-Seen") == "" || got.header.Get("X-One") != "1" {
			t.Errorf("backend saw %s %v", got.path, got.header)
		}
		if !strings.Contains(e.logs.String(), "headers: GET /hello?x=1") {
			t.Errorf("logs:\n%s", e.logs)
		}
	})
}

func TestBody(t *testing.T) {
	forEachRuntime(t, nil, abi.Options{}, func(t *testing.T, e *env) {
		srv := e.proxy(nethttp.Options{MaxBufferBytes: 256 << 10}, e.load("body", abi.PluginConfig{}))
		// A body larger than one read, so that the plugin pauses and
		// buffers before it sees the end.
		in := strings.Repeat("hello wasm ", 10000)
		req, _ := http.NewRequest("POST", srv.URL+"/up", strings.NewReader(in))
		r := e.do(req)
		got := e.backendSaw()
		if got.body != strings.ToUpper(in) {
			t.Errorf("backend body: %d bytes, %q...", len(got.body), got.body[:min(len(got.body), 40)])
		}
		if r.status != 200 || r.body != "abc\n-- anywasm" {
			t.Errorf("response %d %q", r.status, r.body)
		}
		// Streamed request body (chunked, no length).
		pr, pw := io.Pipe()
		go func() {
			for range 5 {
				_, _ = pw.Write([]byte("chunk "))
				time.Sleep(time.Millisecond)
			}
			pw.Close()
		}()
		req, _ = http.NewRequest("PUT", srv.URL+"/stream", pr)
		r = e.do(req)
		if got := e.backendSaw(); got.body != strings.Repeat("CHUNK ", 5) || r.status != 200 {
			t.Errorf("streamed: backend %q, response %d", got.body, r.status)
		}
		// Over the bound: 413, and the backend gets nothing whole.
		big := strings.Repeat("x", 300<<10)
		req, _ = http.NewRequest("POST", srv.URL+"/big", strings.NewReader(big))
		r = e.do(req)
		if r.status != http.StatusRequestEntityTooLarge || !strings.Contains(r.body, "plugin body buffered more than 262144 bytes") {
			t.Errorf("over the bound: %d %q", r.status, r.body)
		}
		select {
		case s := <-e.seen:
			if len(s.body) == len(big) {
				t.Errorf("the backend got the whole body")
			}
		case <-time.After(100 * time.Millisecond):
		}
		// A response body over the bound: headers are not sent yet (the
		// plugin waits for the end), so the client gets a 500.
		r = e.get(srv, "/bigresp", "X-Backend-Size", fmt.Sprint(300<<10))
		e.backendSaw()
		if r.status != 200 || len(r.body) != 300<<10+len("\n-- anywasm") {
			// the body plugin continues every response chunk: nothing
			// is held, so nothing exceeds the bound.
			t.Errorf("big response: %d, %d bytes", r.status, len(r.body))
		}
	})
}

func TestLocalResponse(t *testing.T) {
	forEachRuntime(t, nil, abi.Options{}, func(t *testing.T, e *env) {
		srv := e.proxy(nethttp.Options{}, e.load("local_response", abi.PluginConfig{}))
		r := e.get(srv, "/", "X-Deny", "yes")
		if r.status != 403 || r.body != "denied\n" || r.header.Get("X-Denied-By") != "anywasm" {
			t.Errorf("denied: %d %q %v", r.status, r.body, r.header)
		}
		e.backendSawNothing()
		if r := e.get(srv, "/"); r.status != 200 || r.body != "abc" {
			t.Errorf("allowed: %d %q", r.status, r.body)
		}
		e.backendSaw()
	})
}

func TestCallout(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "info for %s", r.URL.Path)
	}))
	defer up.Close()
	opts := abi.Options{Upstreams: &abi.HTTPUpstreams{Clusters: map[string]string{"backend": up.URL}}}
	forEachRuntime(t, nil, opts, func(t *testing.T, e *env) {
		srv := e.proxy(nethttp.Options{}, e.load("callout", abi.PluginConfig{}))
		r := e.get(srv, "/")
		got := e.backendSaw()
		if r.status != 200 || got.header.Get("X-Callout-Status") != "200" || got.header.Get("X-Callout-Body") != "info for /info" {
			t.Errorf("%d; backend saw %v", r.status, got.header)
		}
	})
}

// TestChain runs three plugins: request callbacks in chain order, response
// callbacks in reverse, a local response stopping the chain.
func TestChain(t *testing.T) {
	forEachRuntime(t, nil, abi.Options{}, func(t *testing.T, e *env) {
		srv := e.proxy(nethttp.Options{},
			e.load("headers", abi.PluginConfig{}),
			e.load("local_response", abi.PluginConfig{}),
			e.load("body", abi.PluginConfig{}))
		req, _ := http.NewRequest("POST", srv.URL+"/c", strings.NewReader("mixed Case"))
		r := e.do(req)
		got := e.backendSaw()
		if got.body != "MIXED CASE" || got.header.Get("X-Anywasm-Seen") == "" {
			t.Errorf("backend saw %q %v", got.body, got.header)
		}
		if r.status != 200 || r.body != "abc\n-- anywasm" || r.header.Get("X-Anywasm-Plugin") != "headers" {
			t.Errorf("response %d %q %v", r.status, r.body, r.header)
		}
		r = e.get(srv, "/", "X-Deny", "1")
		if r.status != 403 || r.body != "denied\n" {
			t.Errorf("denied: %d %q", r.status, r.body)
		}
		e.backendSawNothing()
	})
}

// TestLocalResponseThroughChain (with reply, local_response watching the
// responses): a local response runs through the
// response callbacks of the plugins the request reached, the sender's own
// included, last first, as in Envoy; a plugin after the sender is not
// called; for a gRPC request it is trailers-only; a plugin that fails on it
// answers in its place (fail closed) or lets it pass (fail open).
func TestLocalResponseThroughChain(t *testing.T) {
	forEachRuntime(t, nil, abi.Options{}, func(t *testing.T, e *env) {
		srv := e.proxy(nethttp.Options{},
			e.load("headers", abi.PluginConfig{}),
			e.load("body", abi.PluginConfig{}),
			e.load("reply", abi.PluginConfig{}),
			e.load("headers", abi.PluginConfig{Name: "headers-after"}))
		r := e.get(srv, "/", "X-Deny", "1")
		e.backendSawNothing()
		want := "denied\n\n-- anywasm" // body appends its trailer
		if r.status != 403 || r.body != want || r.header.Get("X-Denied-By") != "anywasm" ||
			r.header.Get("X-Local-Response-Saw") != "403" || r.header.Get("Content-Length") != strconv.Itoa(len(want)) ||
			r.header.Get("Content-Type") != "text/plain" {
			t.Errorf("denied: %d %q %v", r.status, r.body, r.header)
		}
		if got := r.header.Values("X-Anywasm-Plugin"); len(got) != 1 {
			t.Errorf("x-anywasm-plugin %q: want the one of headers, not of headers-after", got)
		}
		// The same chain on an allowed request: all four see the response.
		r = e.get(srv, "/")
		e.backendSaw()
		if r.status != 200 || len(r.header.Values("X-Anywasm-Plugin")) != 2 || r.header.Get("X-Local-Response-Saw") != "200" {
			t.Errorf("allowed: %d %v", r.status, r.header)
		}

		// gRPC: trailers-only, grpc-status mapped from 403, the body as
		// grpc-message; no body callback.
		req, _ := http.NewRequest("POST", srv.URL+"/pkg.Svc/M", strings.NewReader("\x00\x00\x00\x00\x00"))
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("X-Deny", "1")
		r = e.do(req)
		e.backendSawNothing()
		if r.status != 200 || r.body != "" || r.header.Get("Grpc-Status") != "7" || r.header.Get("Grpc-Message") != "denied%0A" ||
			r.header.Get("Content-Type") != "application/grpc" || r.header.Get("X-Local-Response-Saw") != "200" ||
			len(r.header.Values("X-Anywasm-Plugin")) != 1 {
			t.Errorf("gRPC denied: %d %q %v", r.status, r.body, r.header)
		}
	})
	for _, policy := range []abi.FailurePolicy{abi.FailClosed, abi.FailOpen} {
		t.Run(policy.String(), func(t *testing.T) {
			forEachRuntime(t, nil, abi.Options{}, func(t *testing.T, e *env) {
				srv := e.proxy(nethttp.Options{},
					e.load("trap", abi.PluginConfig{FailurePolicy: policy}),
					e.load("reply", abi.PluginConfig{}))
				r := e.get(srv, "/", "X-Deny", "1", "X-Crash-Response", "panic")
				e.backendSawNothing()
				if policy == abi.FailClosed {
					// Envoy's failStream while the local reply is encoded:
					// its own 503, sent directly.
					if r.status != 503 || !strings.Contains(r.body, "plugin trap failed") || r.header.Get("X-Local-Response-Saw") != "" {
						t.Errorf("trap fails on the local response: %d %q %v", r.status, r.body, r.header)
					}
				} else if r.status != 403 || r.body != "denied\n" || r.header.Get("X-Local-Response-Saw") != "403" {
					t.Errorf("trap fails open on the local response: %d %q %v", r.status, r.body, r.header)
				}
			})
		})
	}
}

// TestLocalResponseHeldOrAnswered: a plugin may hold a local response in
// its response callbacks (a callout) and change it when it continues, or
// answer it with a response of its own, which is then sent as it is
// (Envoy's sendDirectLocalReply: the plugins before it are not called).
func TestLocalResponseHeldOrAnswered(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) }))
	defer up.Close()
	opts := abi.Options{Upstreams: &abi.HTTPUpstreams{Clusters: map[string]string{"backend": up.URL}}}
	forEachRuntime(t, nil, opts, func(t *testing.T, e *env) {
		srv := e.proxy(nethttp.Options{}, e.load("headers", abi.PluginConfig{}), e.load("reply", abi.PluginConfig{}))
		r := e.get(srv, "/", "X-Deny", "1", "X-Hold-Response", "1")
		e.backendSawNothing()
		if r.status != 403 || r.body != "denied\n" || r.header.Get("X-Held") != "202" || r.header.Get("X-Anywasm-Plugin") != "headers" {
			t.Errorf("held: %d %q %v", r.status, r.body, r.header)
		}
		r = e.get(srv, "/", "X-Deny", "1", "X-Answer-Again", "1")
		e.backendSawNothing()
		if r.status != 418 || r.body != "again\n" || r.header.Get("X-Anywasm-Plugin") != "" || r.header.Get("X-Denied-By") != "" {
			t.Errorf("answered again: %d %q %v", r.status, r.body, r.header)
		}
		// On the upstream's response, an answer replaces it as before.
		r = e.get(srv, "/", "X-Answer-Again", "1")
		e.backendSaw()
		if r.status != 418 || r.body != "again\n" || r.header.Get("X-Anywasm-Plugin") != "" {
			t.Errorf("answered the upstream's: %d %q %v", r.status, r.body, r.header)
		}
	})
}

// TestEnvoyCppExample: Envoy's C++ example replaces the response body and
// headers.
func TestEnvoyCppExample(t *testing.T) {
	wasm, err := os.ReadFile(filepath.Join("..", "..", "..", "shared", "guests", "envoy-wasm-cc-example.wasm"))
	if err != nil {
		t.Skipf("../shared/guests beside the checkout: %v", err)
	}
	forEachRuntime(t, nil, abi.Options{}, func(t *testing.T, e *env) {
		srv := e.proxy(nethttp.Options{}, e.loadWasm(wasm, "example", abi.PluginConfig{RootID: "my_root_id"}))
		r := e.get(srv, "/")
		e.backendSaw()
		if r.status != 200 || r.body != "Hello, world" || r.header.Get("X-Wasm-Custom") != "FOO" || r.header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Errorf("%d %q %v", r.status, r.body, r.header)
		}
	})
}

func TestTrailers(t *testing.T) {
	forEachRuntime(t, nil, abi.Options{}, func(t *testing.T, e *env) {
		srv := e.proxy(nethttp.Options{}, e.load("headers", abi.PluginConfig{}))
		// Request trailers reach the backend; response trailers the client.
		pr, pw := io.Pipe()
		go func() { _, _ = pw.Write([]byte("data")); pw.Close() }()
		req, _ := http.NewRequest("POST", srv.URL+"/t", pr)
		req.Header.Set("X-Backend-Trailer", "1")
		req.Trailer = http.Header{"X-Req-Sum": []string{"r1"}}
		r := e.do(req)
		got := e.backendSaw()
		if got.body != "data" || got.trailer.Get("X-Req-Sum") != "r1" {
			t.Errorf("backend saw %q trailer %v", got.body, got.trailer)
		}
		if r.status != 200 || r.body != "abc" || r.trailer.Get("X-Checksum") != "sum-1" {
			t.Errorf("response %d %q trailer %v", r.status, r.body, r.trailer)
		}

		// Trailers end the stream: a plugin that holds a body until its
		// end (body) never sees end_of_stream and passes the body on
		// unchanged when the trailers come.
		srv = e.proxy(nethttp.Options{}, e.load("body", abi.PluginConfig{}))
		req, _ = http.NewRequest("POST", srv.URL+"/t", io.MultiReader(strings.NewReader("data")))
		req.Header.Set("X-Backend-Trailer", "1")
		req.Trailer = http.Header{"X-Req-Sum": []string{"r2"}}
		r = e.do(req)
		got = e.backendSaw()
		if got.body != "data" || got.trailer.Get("X-Req-Sum") != "r2" {
			t.Errorf("body plugin: backend saw %q trailer %v", got.body, got.trailer)
		}
		if r.status != 200 || r.body != "abc" || r.trailer.Get("X-Checksum") != "sum-1" {
			t.Errorf("body plugin: response %d %q trailer %v", r.status, r.body, r.trailer)
		}
	})
}

// TestTrailersDeclaredNotSent: a client that declares trailers (Trailer:
// x-req-sum) and sends none ends the stream with the body, so plugins see
// its end: body upper-cases it, guard blocks an attack. (The declaration
// alone used to count as trailers: no plugin saw the end, and guard let an
// attack through; FuzzMiddleware found it.)
func TestTrailersDeclaredNotSent(t *testing.T) {
	forEachRuntime(t, nil, abi.Options{}, func(t *testing.T, e *env) {
		post := func(srv *httptest.Server, body string) *response {
			pr, pw := io.Pipe()
			go func() { _, _ = io.WriteString(pw, body); pw.Close() }()
			req, _ := http.NewRequest("POST", srv.URL+"/t", pr)
			req.Trailer = http.Header{"X-Req-Sum": nil} // declared, never given a value
			return e.do(req)
		}
		srv := e.proxy(nethttp.Options{}, e.load("body", abi.PluginConfig{}))
		r := post(srv, "data")
		if got := e.backendSaw(); got.body != "DATA" || r.status != 200 {
			t.Errorf("body plugin: backend saw %q, response %d %q", got.body, r.status, r.body)
		}
		srv = e.proxy(nethttp.Options{}, e.load("guard", abi.PluginConfig{}))
		if r := post(srv, "an attack"); r.status != 403 || r.body != "blocked by guard\n" {
			t.Errorf("guard: %d %q, want 403", r.status, r.body)
		}
	})
}

func TestTrap(t *testing.T) {
	for _, policy := range []abi.FailurePolicy{abi.FailClosed, abi.FailOpen, abi.FailReload} {
		t.Run(policy.String(), func(t *testing.T) {
			forEachRuntime(t, nil, abi.Options{}, func(t *testing.T, e *env) {
				srv := e.proxy(nethttp.Options{}, e.load("trap", abi.PluginConfig{FailurePolicy: policy}))
				r := e.get(srv, "/", "X-Crash", "panic")
				if policy == abi.FailOpen {
					if r.status != 200 || r.body != "abc" {
						t.Errorf("fail open: %d %q", r.status, r.body)
					}
					e.backendSaw()
				} else {
					if r.status != 503 || !strings.Contains(r.body, "plugin trap failed") {
						t.Errorf("%s: %d %q", policy, r.status, r.body)
					}
					e.backendSawNothing()
				}
				// The VM is replaced: the next request goes through.
				for { // FAIL_RELOAD rebuilds the VM in the background
					r = e.get(srv, "/")
					if r.status == 200 || t.Context().Err() != nil {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				if r.status != 200 || r.body != "abc" {
					t.Errorf("after the trap: %d %q", r.status, r.body)
				}
			})
		})
	}
}

func TestInfiniteLoop(t *testing.T) {
	cfg := testrt.Config().WithInterruptOnContextDone(true)
	cfgp := &cfg
	forEachRuntime(t, cfgp, abi.Options{}, func(t *testing.T, e *env) {
		// The timeout bounds the Go initializer too: generous under -race and load.
		srv := e.proxy(nethttp.Options{}, e.load("trap", abi.PluginConfig{CallTimeout: time.Second}))
		r := e.get(srv, "/", "X-Crash", "loop")
		if r.status != 503 {
			t.Errorf("loop: %d %q", r.status, r.body)
		}
		e.backendSawNothing()
		if r := e.get(srv, "/"); r.status != 200 {
			t.Errorf("after: %d %q", r.status, r.body)
		}
	})
}

// TestClientGone: a client that goes away while a plugin holds its request
// leaves the plugin's VM healthy, even on a runtime that interrupts guests
// whose call context is done.
func TestClientGone(t *testing.T) {
	var gate atomic.Pointer[chan struct{}] // the upstream answers when it is closed
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-*gate.Load():
		case <-time.After(10 * time.Second):
		}
		io.WriteString(w, "late")
	}))
	defer up.Close()
	opts := abi.Options{Upstreams: &abi.HTTPUpstreams{Clusters: map[string]string{"backend": up.URL}}}
	cfg := testrt.Config().WithInterruptOnContextDone(true)
	forEachRuntime(t, &cfg, opts, func(t *testing.T, e *env) {
		ch := make(chan struct{})
		gate.Store(&ch)
		srv := e.proxy(nethttp.Options{}, e.load("callout", abi.PluginConfig{CallTimeout: 5 * time.Second}))
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/", nil)
		if _, err := http.DefaultClient.Do(req); err == nil {
			t.Error("want the client's deadline")
		}
		cancel()
		e.backendSawNothing()
		// The callout answers late; the next request runs on a healthy VM.
		close(ch)
		r := e.get(srv, "/next")
		got := e.backendSaw()
		if r.status != 200 || got.header.Get("X-Callout-Body") != "late" {
			t.Errorf("after the client went: %d %q; backend saw %v\nlogs:\n%s", r.status, r.body, got.header, e.logs)
		}
		if e.logs.Has("plugin failed") {
			t.Errorf("the client's leaving failed the VM:\n%s", e.logs)
		}
	})
}

func TestConcurrent(t *testing.T) {
	forEachRuntime(t, nil, abi.Options{}, func(t *testing.T, e *env) {
		srv := e.proxy(nethttp.Options{},
			e.load("headers", abi.PluginConfig{PoolSize: 2}),
			e.load("body", abi.PluginConfig{PoolSize: 2}))
		var wg sync.WaitGroup
		errs := make(chan error, 200)
		for g := range 8 {
			wg.Go(func() {
				for i := range 20 {
					in := fmt.Sprintf("g%d-r%d ", g, i)
					req, _ := http.NewRequest("POST", srv.URL+"/", strings.NewReader(strings.Repeat(in, 100)))
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						errs <- err
						return
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 || string(b) != "abc\n-- anywasm" {
						errs <- fmt.Errorf("%d %q", resp.StatusCode, b)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		for range 160 {
			if s := e.backendSaw(); !bytes.Equal([]byte(s.body), bytes.ToUpper([]byte(s.body))) {
				t.Errorf("backend saw %q", s.body[:20])
			}
		}
	})
}

// TestNoPlugins: an empty chain is the handler itself.
func TestNoPlugins(t *testing.T) {
	h := nethttp.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "direct") }), nethttp.Plugins(), nethttp.Options{})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Body.String() != "direct" {
		t.Errorf("%q", rec.Body)
	}
}
