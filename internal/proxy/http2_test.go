package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/internal/plugins"
)

// client returns an HTTP client speaking only HTTP/1.1, or only HTTP/2
// with prior knowledge over plaintext.
func client(h2c bool) *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetHTTP1(!h2c)
	tr.Protocols.SetUnencryptedHTTP2(h2c)
	return &http.Client{Transport: tr}
}

// TestHTTP2Listener: codec_type AUTO serves HTTP/1.1 and prior-knowledge
// HTTP/2 on one port, as Envoy's AUTO codec on plaintext; HTTP1 and HTTP2
// serve only theirs. Over HTTP/2 the plugins run as over HTTP/1.1 (the
// headers plugin's response header, its count of request headers seen by
// the echo), and a body goes through.
func TestHTTP2Listener(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt string) {
		for _, c := range []struct {
			codec          string
			http1, http2ok bool
		}{{"AUTO", true, true}, {"HTTP1", true, false}, {"HTTP2", false, true}} {
			t.Run(c.codec, func(t *testing.T) {
				h := start(t, rt, fmt.Sprintf(`listeners:
  - name: web
    address: 127.0.0.1:0
    http:
      cluster: echo
      codec_type: %s
      filters:
        - name: headers
          vm_config: {code: {local: {filename: %q}}}
`, c.codec, plugins.Path(t, "headers")))
				for _, h2 := range []bool{false, true} {
					want := c.http1
					if h2 {
						want = c.http2ok
					}
					resp, err := client(h2).Post(h.url("web", "/up"), "text/plain", strings.NewReader("hello"))
					if !want {
						if err == nil {
							resp.Body.Close()
							t.Errorf("h2c %v on %s: %d, want no exchange", h2, c.codec, resp.StatusCode)
						}
						continue
					}
					if err != nil {
						t.Fatalf("h2c %v on %s: %v", h2, c.codec, err)
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					major := 1
					if h2 {
						major = 2
					}
					if resp.StatusCode != 200 || resp.ProtoMajor != major || resp.Header.Get("X-Anywasm-Plugin") != "headers" ||
						!strings.Contains(string(body), "x-anywasm-seen: ") || !strings.HasSuffix(string(body), "hello") {
						t.Errorf("h2c %v on %s: %d %s %v %q", h2, c.codec, resp.StatusCode, resp.Proto, resp.Header, body)
					}
				}
			})
		}
	})
}
