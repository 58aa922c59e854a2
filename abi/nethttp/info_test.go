package nethttp_test

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/abi/nethttp"
)

// attr returns what the props plugin logged for phase and path ("hex:..."
// or "error:..."), "" when it logged nothing.
func attr(e *env, phase, path string) string {
	prefix := "attr " + phase + " " + path + " = "
	for _, l := range strings.Split(e.logs.String(), "\n") {
		if i := strings.Index(l, prefix); i >= 0 {
			rest := l[i+len(prefix):]
			if j := strings.IndexAny(rest, " \""); j >= 0 {
				rest = rest[:j]
			}
			return rest
		}
	}
	return ""
}

func hexStr(s string) string { return "hex:" + hex.EncodeToString([]byte(s)) }
func hexI64(n int64) string {
	return "hex:" + hex.EncodeToString(binary.LittleEndian.AppendUint64(nil, uint64(n)))
}

// TestAttributes: the middleware gives the plugins the downstream
// connection (source, destination, connection id through
// WithConnectionID), the protocol, what Options.Info adds (route,
// cluster), the upstream the handler records, and response.code_details.
func TestAttributes(t *testing.T) {
	reads := []string{
		"request source/address", "request source/port", "request destination/address",
		"request connection/id", "request request/protocol", "request xds/route_name",
		"request xds/cluster_name", "request upstream/address", "request request/path",
		"response upstream/address", "response upstream/port", "response response/code",
		"response response/code_details", "done response/size",
	}
	forEachRuntime(t, nil, abi.Options{}, func(t *testing.T, e *env) {
		p := e.load("props", abi.PluginConfig{Configuration: []byte(strings.Join(reads, "\n"))})
		next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			nethttp.StreamInfoFrom(r).SetUpstream("10.1.1.1:9000", "10.0.0.9:1234", nil)
			w.WriteHeader(202)
			_, _ = w.Write([]byte("four"))
		})
		srv := httptest.NewUnstartedServer(nethttp.New(next, nethttp.Plugins(p), nethttp.Options{
			Info: func(r *http.Request, info *abi.StreamInfo) {
				info.Route = &abi.RouteInfo{Name: "r-" + r.URL.Path}
				info.Cluster = &abi.ClusterInfo{Name: "backend"}
			},
		}))
		srv.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context { return nethttp.WithConnectionID(ctx, 77) }
		srv.Start()
		t.Cleanup(srv.Close)
		var local string
		client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err == nil {
				local = c.LocalAddr().String()
			}
			return c, err
		}}}
		resp, err := client.Get(srv.URL + "/x?y=1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		client.CloseIdleConnections()
		_, port, _ := net.SplitHostPort(local)
		portN, _ := strconv.Atoi(port)
		for path, want := range map[string]string{
			"request source/address":         hexStr(local),
			"request source/port":            hexI64(int64(portN)),
			"request destination/address":    hexStr(srv.Listener.Addr().String()),
			"request connection/id":          hexI64(77),
			"request request/protocol":       hexStr("HTTP/1.1"),
			"request xds/route_name":         hexStr("r-/x"),
			"request xds/cluster_name":       hexStr("backend"),
			"request upstream/address":       "error:error",
			"request request/path":           hexStr("/x?y=1"),
			"response upstream/address":      hexStr("10.1.1.1:9000"),
			"response upstream/port":         hexI64(9000),
			"response response/code":         hexI64(202),
			"response response/code_details": hexStr("via_upstream"),
			"done response/size":             hexI64(4),
		} {
			got := attr(e, strings.Fields(path)[0], strings.Fields(path)[1])
			if got != want && !(strings.HasPrefix(want, "error:") && strings.HasPrefix(got, want)) {
				t.Errorf("%s = %q, want %q", path, got, want)
			}
		}
		if t.Failed() {
			t.Logf("logs:\n%s", e.logs)
		}
	})
}

// TestOwnLocalResponseThroughChain: the middleware's own local response
// (413: guard holds a body over MaxBufferBytes) runs through the response
// callbacks of the plugins before it, which read its status and, as Envoy's
// sendLocalReply sets it, its details.
func TestOwnLocalResponseThroughChain(t *testing.T) {
	forEachRuntime(t, nil, abi.Options{}, func(t *testing.T, e *env) {
		srv := e.proxy(nethttp.Options{MaxBufferBytes: 1 << 10},
			e.load("props", abi.PluginConfig{Configuration: []byte("response response/code\nresponse response/code_details")}),
			e.load("guard", abi.PluginConfig{}))
		req, _ := http.NewRequest("POST", srv.URL+"/", strings.NewReader(strings.Repeat("x", 8<<10)))
		r := e.do(req)
		if r.status != http.StatusRequestEntityTooLarge {
			t.Fatalf("%d %q", r.status, r.body)
		}
		if got := attr(e, "response", "response/code"); got != hexI64(413) {
			t.Errorf("response.code in props' response callback: %s, want 413", got)
		}
		if got := attr(e, "response", "response/code_details"); got != hexStr("request_payload_too_large") {
			t.Errorf("response.code_details: %s, want request_payload_too_large", got)
		}
	})
}
