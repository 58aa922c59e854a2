package proxy_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/internal/plugins"
)

// The abuse suite: what clients of an edge proxy send to crash it, starve
// it or get past its plugins, on loopback, against a proxy whose chain is
// guard (x-user is set to "anonymous"; a body containing "attack" is
// answered 403 after the plugin saw all of it) and local_response (x-deny
// is answered 403). After every attack a good request still gets its
// answer, and the backend has only ever seen requests as the plugins left
// them.

// recorder is the abuse suite's backend: it records what reached it.
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	seen []seenReq
}

type seenReq struct {
	path     string
	users    []string
	body     string
	complete bool // the whole body arrived
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/early" { // answers without reading the body
			r.record(req, "", false)
			io.WriteString(w, "early")
			return
		}
		b, err := io.ReadAll(req.Body)
		r.record(req, string(b), err == nil)
		fmt.Fprintf(w, "ok %s", req.URL.Path)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *recorder) record(req *http.Request, body string, complete bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, seenReq{path: req.URL.Path, users: req.Header.Values("X-User"), body: body, complete: complete})
}

// check fails the test if the backend ever saw a request the plugins did
// not decide: one without exactly "x-user: anonymous", or with a body the
// guard blocks.
func (r *recorder) check(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.seen {
		if len(s.users) != 1 || s.users[0] != "anonymous" || strings.Contains(s.body, "attack") {
			t.Errorf("the backend saw %s with x-user %q and a %d-byte body (attack: %v): a plugin was bypassed",
				s.path, s.users, len(s.body), strings.Contains(s.body, "attack"))
		}
	}
}

// saw counts the requests for path whose whole body reached the backend
// (the headers of a request may reach it before its body fails).
func (r *recorder) saw(path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.seen {
		if s.path == path && s.complete {
			n++
		}
	}
	return n
}

const maxConns = 64

func abuseConfig(t *testing.T, backend string) string {
	return fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
reload_interval: 0s
clusters:
  - {name: backend, address: %q}
listeners:
  - name: edge
    address: 127.0.0.1:0
    http:
      cluster: backend
      max_buffer_bytes: 524288
      request_headers_timeout: 1s
      request_timeout: 3s
      stream_idle_timeout: 2s
      idle_timeout: 60s
      max_connections: %d
      filters:
        - name: guard
          pool_size: 2
          vm_config: {vm_id: guard, code: {local: {filename: %q}}}
        - name: deny
          vm_config: {vm_id: deny, code: {local: {filename: %q}}}
`, backend, maxConns, plugins.Path(t, "guard"), plugins.Path(t, "local_response"))
}

// exchange writes raw bytes on a new connection and reads one response;
// status 0 means the proxy closed the connection without answering.
func exchange(t *testing.T, addr, raw string) (status int, body string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second)) // a bound, not an expectation
	if _, err := io.WriteString(c, raw); err != nil {
		return 0, ""
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, ""
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b)
}

// closedWithin reports whether the peer closes c (after any answer) before
// the bound.
func closedWithin(c net.Conn, bound time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(bound))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

func TestAbuse(t *testing.T) {
	for _, rt := range engine.Runtimes() {
		if testing.Short() && rt != "wazero" {
			continue
		}
		t.Run(rt, func(t *testing.T) { abuse(t, rt) })
	}
}

func abuse(t *testing.T, rt string) {
	rec := newRecorder(t)
	h := start(t, rt, abuseConfig(t, rec.URL))
	addr := h.p.Addr("edge").String()
	// send makes a request on a new connection; an attack may leave the
	// listener full until the proxy has seen its connections go: a
	// connection it closes at once is tried again.
	send := func(t *testing.T, method, path, body string, hdr ...string) reply {
		t.Helper()
		for {
			req, _ := http.NewRequest(method, h.url("edge", path), strings.NewReader(body))
			for i := 0; i+1 < len(hdr); i += 2 {
				req.Header.Set(hdr[i], hdr[i+1])
			}
			req.Close = true
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return reply{resp.StatusCode, resp.Header, string(b)}
			}
			select {
			case <-t.Context().Done():
				t.Fatalf("%s %s: %v", method, path, err)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	good := func(t *testing.T) {
		t.Helper()
		if r := send(t, "GET", "/good", "", "X-User", "admin"); r.status != 200 || r.body != "ok /good" {
			t.Fatalf("a good request after the attack: %d %q\nlogs:\n%s", r.status, r.body, h.logs.Tail(30))
		}
		if r := send(t, "POST", "/good", "an attack"); r.status != 403 || r.body != "blocked by guard\n" {
			t.Fatalf("an attack after the attack: %d %q", r.status, r.body)
		}
		if r := send(t, "GET", "/good", "", "X-Deny", "1"); r.status != 403 {
			t.Fatalf("a denied request after the attack: %d %q", r.status, r.body)
		}
		resp, err := http.Get("http://" + h.p.AdminAddr().String() + "/healthz")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("healthz: %v %v", resp, err)
		}
		resp.Body.Close()
		rec.check(t)
	}
	good(t)

	t.Run("malformed", func(t *testing.T) {
		for _, raw := range []string{
			"GARBAGE\r\n\r\n",
			"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
			"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
			"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
			"GET / HTTP/1.1\r\n\r\n", // no Host
			"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
			"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
			"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n",
			"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
			"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nattack\r\n0\r\n\r\n",
			"GET /" + strings.Repeat("a", 100<<10) + " HTTP/1.1\r\nHost: x\r\n\r\n",
		} {
			if status, _ := exchange(t, addr, raw); status != 0 && status < 400 {
				t.Errorf("%.40q: status %d, want the proxy's error (4xx, 5xx) or a close", raw, status)
			}
		}
		good(t)
	})

	t.Run("smuggling", func(t *testing.T) {
		smuggled := "GET /smuggled HTTP/1.1\r\nHost: x\r\nX-User: admin\r\n\r\n"
		for _, raw := range []string{
			// CL.TE: a front end that honours Content-Length passes the
			// smuggled request on as the start of the next one.
			fmt.Sprintf("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n%s", smuggled),
			// TE.CL
			fmt.Sprintf("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(smuggled), smuggled),
			// two lengths
			"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\nhello" + smuggled,
			"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 40\r\n\r\nhello" + smuggled,
			// an obfuscated Transfer-Encoding
			"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding : chunked\r\n\r\nhello" + smuggled,
		} {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			io.WriteString(c, raw)
			c.(*net.TCPConn).CloseWrite() // the proxy answers what it read, then closes
			br := bufio.NewReader(c)
			for range 2 { // whatever comes back, at most two answers
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					break
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			c.Close()
		}
		// /smuggled may reach the backend only as a request the plugins
		// saw (x-user: anonymous): rec.check, in good, says so.
		good(t)
	})

	t.Run("headers", func(t *testing.T) {
		hdrs := func(n, size int) string {
			var b strings.Builder
			b.WriteString("GET /h HTTP/1.1\r\nHost: x\r\n")
			for i := range n {
				fmt.Fprintf(&b, "X-H%d: %s\r\n", i, strings.Repeat("v", size))
			}
			b.WriteString("\r\n")
			return b.String()
		}
		for _, c := range []struct {
			name        string
			raw         string
			want, want2 int
		}{
			{"100 headers", hdrs(100, 1), 200, 200},
			{"101 headers", hdrs(101, 1), 431, 431},
			{"10,000 headers", hdrs(10000, 1), 431, 431},
			{"a 1 MiB header", "GET /h HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 1<<20) + "\r\n\r\n", 431, 0},
			{"59 KiB of headers", hdrs(59, 1000), 200, 200},
			{"62 KB of headers", hdrs(62, 1000), 431, 431},
		} {
			status, body := exchange(t, addr, c.raw)
			if status != c.want && status != c.want2 {
				t.Errorf("%s: %d %.60q, want %d", c.name, status, body, c.want)
			}
		}
		good(t)
	})

	t.Run("slowloris", func(t *testing.T) {
		var wg sync.WaitGroup
		closed := make(chan bool, 20)
		for range 20 {
			wg.Go(func() {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					closed <- true
					return
				}
				defer c.Close()
				io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n")
				for range 100 { // a header line every 100 ms, for up to 10 s
					if _, err := io.WriteString(c, "X-A: b\r\n"); err != nil {
						closed <- true
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
				closed <- closedWithin(c, 5*time.Second)
			})
		}
		good(t) // while they trickle
		wg.Wait()
		close(closed)
		for ok := range closed {
			if !ok {
				t.Error("a connection trickling its headers was not closed (request_headers_timeout)")
			}
		}
		if rec.saw("/slow") != 0 {
			t.Error("a trickled request reached the backend")
		}
		good(t)
	})

	t.Run("trickled body", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "POST /trickle HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range 200 { // 10 bytes every 100 ms: never idle, never done
				if _, err := io.WriteString(c, "0123456789"); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestTimeout {
				t.Errorf("status %d, want 408 (request_timeout)", resp.StatusCode)
			}
		} else if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			t.Error("a trickled body was neither answered nor closed (request_timeout)")
		}
		c.Close()
		<-done
		if rec.saw("/trickle") != 0 {
			t.Error("a trickled body reached the backend")
		}
		good(t)
	})

	t.Run("stalled body", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "POST /stall HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhalf")
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestTimeout {
				t.Errorf("status %d, want 408 (stream_idle_timeout)", resp.StatusCode)
			}
		} else if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			t.Error("a stalled body was neither answered nor closed (stream_idle_timeout)")
		}
		good(t)
	})

	t.Run("idle keep-alives", func(t *testing.T) {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for i := range maxConns + 20 {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			fmt.Fprintf(c, "GET /idle%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("keep-alive %d: %v", i, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		// More idle connections than max_connections were opened: the
		// oldest were closed to make room, and a new client still gets in.
		good(t)
		evicted := 0
		for _, c := range conns[:20] {
			if closedWithin(c, 5*time.Second) {
				evicted++
			}
		}
		if evicted == 0 {
			t.Error("no idle connection was closed to make room")
		}
	})

	t.Run("connection flood", func(t *testing.T) {
		var rl syscall.Rlimit
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
		n := min(1500, (int(rl.Cur)-300)/2)
		if n < 200 {
			t.Skipf("RLIMIT_NOFILE %d is too small for a flood", rl.Cur)
		}
		var conns []net.Conn
		for range n {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				break // the backlog is full: that is the point
			}
			conns = append(conns, c)
		}
		// The admin endpoint stays reachable during the flood.
		resp, err := http.Get("http://" + h.p.AdminAddr().String() + "/healthz")
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("healthz during a flood of %d connections: %v %v", len(conns), resp, err)
		} else {
			resp.Body.Close()
		}
		for _, c := range conns {
			c.Close()
		}
		good(t)
	})

	t.Run("reset mid-body", func(t *testing.T) {
		for range 10 {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(c, "POST /reset HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
			c.Write(bytes.Repeat([]byte("r"), 200<<10))
			c.(*net.TCPConn).SetLinger(0) // RST
			c.Close()
		}
		good(t)
		if rec.saw("/reset") != 0 {
			t.Error("a body cut by a reset reached the backend")
		}
		if h.logs.Has("upstream error") {
			t.Errorf("a client reset was logged as an upstream error:\n%s", h.logs.Tail(20))
		}
	})

	t.Run("pipelining", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		io.WriteString(c, "GET /p1 HTTP/1.1\r\nHost: x\r\nX-User: admin\r\n\r\n"+
			"GET /p2 HTTP/1.1\r\nHost: x\r\nX-Deny: 1\r\n\r\n"+
			"POST /p3 HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nattack"+
			"GET /p4 HTTP/1.1\r\nHost: x\r\nX-User: root\r\n\r\n")
		br := bufio.NewReader(c)
		var got []string
		for range 4 {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("after %q: %v", got, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got = append(got, fmt.Sprintf("%d %s", resp.StatusCode, b))
		}
		want := []string{"200 ok /p1", "403 denied\n", "403 blocked by guard\n", "200 ok /p4"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("pipelined answers %q, want %q", got, want)
		}
		good(t)
	})

	t.Run("early upstream answer", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan string, 100)
		for range 4 {
			wg.Go(func() {
				for range 10 {
					body := strings.Repeat("e", 300<<10) + "attack"
					resp, err := http.Post(h.url("edge", "/early"), "text/plain", strings.NewReader(body))
					if err != nil {
						errs <- err.Error()
						continue
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 403 {
						errs <- fmt.Sprintf("%d %q", resp.StatusCode, b)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Errorf("a body the guard blocks, to an upstream that answers early: %s", e)
		}
		good(t)
	})

	t.Run("over the buffer limit", func(t *testing.T) {
		if r := send(t, "POST", "/big", strings.Repeat("b", 600<<10)); r.status != 413 {
			t.Errorf("a body over max_buffer_bytes through a plugin that holds it: %d %.60q", r.status, r.body)
		}
		good(t)
	})
}
