package nethttp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/abi/nethttp"
)

// earlyUpstream answers at once, without reading the request body, as an
// upstream that refuses a request (401, 413, a redirect) does.
func earlyUpstream(t *testing.T) *httptest.Server {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream", "early")
		_, _ = io.WriteString(w, "upstream answered\n")
	}))
	t.Cleanup(up.Close)
	return up
}

// proxyTo is a reverse proxy to up behind the plugins.
func proxyTo(t *testing.T, up *httptest.Server, opts nethttp.Options, ps ...*abi.Plugin) *httptest.Server {
	u, _ := url.Parse(up.URL)
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(u)
		pr.Out.Trailer = pr.In.Trailer // the same map: trailers are filled as the body ends
	}, ErrorLog: log.New(io.Discard, "", 0)}
	srv := httptest.NewServer(nethttp.New(rp, nethttp.Plugins(ps...), opts))
	t.Cleanup(srv.Close)
	return srv
}

// TestBodyPluginDecidesBeforeEarlyUpstream sends POSTs through a plugin that
// holds the request body until its end (and answers 403 when it contains
// "attack") to an upstream that answers at once without reading: every
// answer must be the plugin's (403 for an attack, the upstream's for a clean
// body the plugin let through), whatever the upstream did first; the
// process must not crash (a stream closed by the handler while the
// transport's goroutine still fed the request body crashed it), and the
// plugin must see every body to its end. 1,000 requests, 8 at a time.
func TestBodyPluginDecidesBeforeEarlyUpstream(t *testing.T) {
	forEachRuntime(t, nil, abi.Options{}, func(t *testing.T, e *env) {
		srv := proxyTo(t, earlyUpstream(t), nethttp.Options{}, e.load("guard", abi.PluginConfig{PoolSize: 2}))
		n := 1000
		if testing.Short() {
			n = 100
		}
		attack := append(bytes.Repeat([]byte("x"), 300<<10), "attack"...)
		clean := bytes.Repeat([]byte("y"), 300<<10)
		var blocked, passed atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, n)
		next := atomic.Int64{}
		for range 8 {
			wg.Go(func() {
				for {
					i := next.Add(1) - 1
					if i >= int64(n) {
						return
					}
					body, want := attack, 403
					if i%10 == 9 {
						body, want = clean, 200
					}
					resp, err := http.Post(srv.URL+"/upload", "application/octet-stream", bytes.NewReader(body))
					if err != nil {
						errs <- fmt.Errorf("request %d: %v", i, err)
						continue
					}
					b, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					switch {
					case err != nil:
						errs <- fmt.Errorf("request %d: read: %v", i, err)
					case resp.StatusCode != want:
						errs <- fmt.Errorf("request %d: status %d (%q, x-upstream %q), want %d", i, resp.StatusCode, b, resp.Header.Get("X-Upstream"), want)
					case want == 403 && (string(b) != "blocked by guard\n" || resp.Header.Get("X-Guard") != "blocked"):
						errs <- fmt.Errorf("request %d: 403 %q %v, not the plugin's answer", i, b, resp.Header)
					case want == 403:
						blocked.Add(1)
					case string(b) != "upstream answered\n":
						errs <- fmt.Errorf("request %d: 200 %q", i, b)
					default:
						passed.Add(1)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		bad := 0
		for err := range errs {
			if bad++; bad <= 10 {
				t.Error(err)
			}
		}
		if bad > 0 {
			t.Fatalf("%d of %d requests got the wrong answer\nlogs:\n%s", bad, n, e.logs.Tail(40))
		}
		if blocked.Load()+passed.Load() != int64(n) {
			t.Fatalf("blocked %d + passed %d != %d", blocked.Load(), passed.Load(), n)
		}
		t.Logf("%d blocked by the plugin, %d passed", blocked.Load(), passed.Load())
	})
}

// TestBodyPluginOverLimitEarlyUpstream: a body past MaxBufferBytes through
// a plugin that holds it is answered 413 by the middleware, even when the
// upstream answered first.
func TestBodyPluginOverLimitEarlyUpstream(t *testing.T) {
	forEachRuntime(t, nil, abi.Options{}, func(t *testing.T, e *env) {
		srv := proxyTo(t, earlyUpstream(t), nethttp.Options{MaxBufferBytes: 64 << 10}, e.load("guard", abi.PluginConfig{}))
		resp, err := http.Post(srv.URL+"/", "text/plain", strings.NewReader(strings.Repeat("z", 200<<10)))
		if err != nil {
			// The middleware may answer before the client finished
			// sending: a write error on the client's side is an answer too.
			if !errors.Is(err, io.ErrUnexpectedEOF) && !strings.Contains(err.Error(), "connection reset") && !strings.Contains(err.Error(), "broken pipe") {
				t.Fatal(err)
			}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 413 || resp.Header.Get("X-Upstream") != "" {
			t.Fatalf("status %d %q %v, want 413 from the middleware", resp.StatusCode, b, resp.Header)
		}
	})
}

// TestHopByHopBeforePlugins: a client's Connection header naming a header a
// plugin sets must not remove the plugin's header on the way upstream (the
// hop-by-hop headers are removed before the plugins see the request), and
// the plugins never see hop-by-hop headers.
func TestHopByHopBeforePlugins(t *testing.T) {
	forEachRuntime(t, nil, abi.Options{ForeignFunctions: map[string]abi.ForeignFunc{
		"reverse": func(_ context.Context, b []byte) ([]byte, error) {
			slices.Reverse(b)
			return b, nil
		},
	}}, func(t *testing.T, e *env) {
		srv := e.proxy(nethttp.Options{}, e.load("foreign", abi.PluginConfig{}), e.load("headers", abi.PluginConfig{}))
		r := e.get(srv, "/", "Connection", "X-Output, keep-alive", "X-Output", "admin", "X-Input", "resu",
			"Keep-Alive", "timeout=5", "Proxy-Authorization", "Basic eDp5", "Te", "trailers")
		got := e.backendSaw()
		if r.status != 200 {
			t.Fatalf("status %d %q", r.status, r.body)
		}
		if v := got.header.Values("X-Output"); !slices.Equal(v, []string{"user"}) {
			t.Errorf("upstream X-Output = %q, want the plugin's [user]", v)
		}
		// headers counts what it saw: :authority :path :method :scheme,
		// x-output, x-output-hex, x-input, user-agent, accept-encoding, te:
		// trailers (kept for gRPC); not connection, keep-alive,
		// proxy-authorization.
		if n := got.header.Get("X-Anywasm-Seen"); n != "10" {
			t.Errorf("the second plugin saw %s headers, want 10 (no hop-by-hop headers)", n)
		}
	})
}

// TestHeldBodyDecidedInTrailers: a body a plugin holds stays held while
// its trailers callback runs (as Envoy's filter chain holds a buffered
// body until the filter's decodeTrailers continues), so a plugin that
// decides there (guard) answers before any of the body goes on: the
// upstream never gets a body guard blocks, trailers or not.
func TestHeldBodyDecidedInTrailers(t *testing.T) {
	forEachRuntime(t, nil, abi.Options{}, func(t *testing.T, e *env) {
		var mu sync.Mutex
		whole := map[string]string{} // path -> body, of bodies that arrived whole
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(r.Body)
			if err == nil {
				mu.Lock()
				whole[r.URL.Path] = string(b) + " trailer=" + r.Trailer.Get("X-Sum")
				mu.Unlock()
			}
		}))
		defer up.Close()
		srv := proxyTo(t, up, nethttp.Options{}, e.load("guard", abi.PluginConfig{}), e.load("headers", abi.PluginConfig{}))
		for _, c := range []struct {
			path, body string
			want       int
		}{{"/attack", "an attack with trailers", 403}, {"/harmless", "harmless, with trailers", 200}} {
			req, _ := http.NewRequest("POST", srv.URL+c.path, io.MultiReader(strings.NewReader(c.body))) // no length: chunked
			req.Trailer = http.Header{"X-Sum": {"1"}}
			r := e.do(req)
			if r.status != c.want {
				t.Errorf("%s: %d %q, want %d", c.path, r.status, r.body, c.want)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if b, ok := whole["/attack"]; ok {
			t.Errorf("the upstream got the body guard blocks: %q", b)
		}
		if b := whole["/harmless"]; b != "harmless, with trailers trailer=1" {
			t.Errorf("the upstream got %q for the harmless body", b)
		}
	})
}
