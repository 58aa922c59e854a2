package proxy_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anywasm/anywasm/internal/proxy"
)

// named starts n HTTP upstreams that answer with their name (b0, b1...)
// and count what they get; it returns their host:port.
func named(t *testing.T, n int) ([]string, *counts) {
	t.Helper()
	c := &counts{m: map[string]int{}}
	var addrs []string
	for i := range n {
		name := fmt.Sprintf("b%d", i)
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c.add(name)
			io.WriteString(w, name)
		}))
		t.Cleanup(s.Close)
		addrs = append(addrs, s.Listener.Addr().String())
	}
	return addrs, c
}

type counts struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counts) add(k string) {
	c.mu.Lock()
	c.m[k]++
	c.mu.Unlock()
}

func (c *counts) get() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := map[string]int{}
	for k, v := range c.m {
		m[k] = v
	}
	return m
}

func quoted(s []string) string {
	q := make([]string, len(s))
	for i, a := range s {
		q[i] = fmt.Sprintf("%q", a)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// TestRoundRobin: a cluster of three endpoints takes 30 requests, 10 each
// (Envoy's round robin; which one starts is random), and its answers come
// in the endpoints' order.
func TestRoundRobin(t *testing.T) {
	addrs, c := named(t, 3)
	h := start(t, "", fmt.Sprintf(`
reload_interval: 0s
clusters: [{name: three, endpoints: %s}]
listeners: [{name: web, address: "127.0.0.1:0", http: {cluster: three}}]
`, quoted(addrs)))
	var order []string
	for range 30 {
		r := h.do("GET", h.url("web", "/"), "")
		if r.status != 200 {
			t.Fatalf("%d %q", r.status, r.body)
		}
		order = append(order, r.body)
	}
	if got := c.get(); got["b0"] != 10 || got["b1"] != 10 || got["b2"] != 10 {
		t.Errorf("requests per endpoint %v, want 10 each", got)
	}
	for i := 3; i < len(order); i++ {
		if order[i] != order[i-3] {
			t.Fatalf("not in turn: %v", order)
		}
	}
}

// TestRandomAndLeastRequest: RANDOM and LEAST_REQUEST send requests to
// every endpoint (60 requests over three: a miss is as likely as
// 3*(2/3)^60, 1e-10).
func TestRandomAndLeastRequest(t *testing.T) {
	for _, policy := range []string{"RANDOM", "LEAST_REQUEST"} {
		t.Run(policy, func(t *testing.T) {
			addrs, c := named(t, 3)
			h := start(t, "", fmt.Sprintf(`
reload_interval: 0s
clusters: [{name: three, endpoints: %s, lb_policy: %s}]
listeners: [{name: web, address: "127.0.0.1:0", http: {cluster: three}}]
`, quoted(addrs), policy))
			for range 60 {
				if r := h.do("GET", h.url("web", "/"), ""); r.status != 200 {
					t.Fatalf("%d %q", r.status, r.body)
				}
			}
			got := c.get()
			if got["b0"] == 0 || got["b1"] == 0 || got["b2"] == 0 || got["b0"]+got["b1"]+got["b2"] != 60 {
				t.Errorf("requests per endpoint %v", got)
			}
		})
	}
}

// TestLeastRequestAvoidsBusy: with one of two endpoints holding a request,
// LEAST_REQUEST sends a request to the busy one only when both its draws
// are it (1 in 4; RANDOM: 1 in 2). Of 100 requests the busy one gets 25
// expected; over 46 is as likely as 2e-6 (for RANDOM it is 3 in 4).
func TestLeastRequestAvoidsBusy(t *testing.T) {
	release := make(chan struct{})
	held := make(chan string, 1)
	c := &counts{m: map[string]int{}}
	var addrs []string
	for i := range 2 {
		name := fmt.Sprintf("b%d", i)
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/hold" {
				held <- name
				<-release
				return
			}
			c.add(name)
			io.WriteString(w, name)
		}))
		t.Cleanup(s.Close)
		addrs = append(addrs, s.Listener.Addr().String())
	}
	h := start(t, "", fmt.Sprintf(`
reload_interval: 0s
clusters: [{name: two, endpoints: %s, lb_policy: LEAST_REQUEST}]
listeners: [{name: web, address: "127.0.0.1:0", http: {cluster: two}}]
`, quoted(addrs)))
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get(h.url("web", "/hold"))
		if err == nil {
			resp.Body.Close()
		}
	}()
	var busy string
	select {
	case busy = <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the held request did not arrive")
	}
	defer func() { close(release); <-done }()
	for range 100 {
		if r := h.do("GET", h.url("web", "/"), ""); r.status != 200 {
			t.Fatalf("%d %q", r.status, r.body)
		}
	}
	got := c.get()
	if got[busy] > 46 || got["b0"]+got["b1"] != 100 {
		t.Errorf("requests per endpoint %v: the busy one (%s) got %d, want at most 46", got, busy, got[busy])
	}
}

// TestFailedEndpoint: a request whose endpoint refuses the connection is
// answered 503 (Envoy's router: no retry without a retry_policy, details
// upstream_reset_before_response_started{remote_connection_failure}); the
// next one goes to the next endpoint.
func TestFailedEndpoint(t *testing.T) {
	addrs, _ := named(t, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	h := start(t, "", fmt.Sprintf(`
reload_interval: 0s
clusters: [{name: two, endpoints: [%q, %q]}]
listeners: [{name: web, address: "127.0.0.1:0", http: {cluster: two}}]
`, addrs[0], dead))
	var ok, failed int
	for range 10 {
		r := h.do("GET", h.url("web", "/"), "")
		switch {
		case r.status == 200 && r.body == "b0":
			ok++
		case r.status == 503 && r.body == "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure":
			failed++
		default:
			t.Errorf("%d %q", r.status, r.body)
		}
	}
	if ok != 5 || failed != 5 {
		t.Errorf("%d answered, %d failed: want 5 and 5", ok, failed)
	}
}

// TestStrictDNS: a strict_dns endpoint is every address of its host name
// (localhost: 127.0.0.1, and ::1 where the machine has it, reached by
// round robin in turn); logical_dns takes the first.
func TestStrictDNS(t *testing.T) {
	v4, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(v4.Addr().String())
	serve := func(ln net.Listener, name string) {
		s := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, name)
		})}}
		s.Start()
		t.Cleanup(s.Close)
	}
	serve(v4, "v4")
	cfg := func(discovery, family string) string {
		return fmt.Sprintf(`
reload_interval: 0s
clusters: [{name: dns, endpoints: ["localhost:%s"], discovery: %s, dns_lookup_family: %s, dns_refresh_rate: 1s}]
listeners: [{name: web, address: "127.0.0.1:0", http: {cluster: dns}}]
`, port, discovery, family)
	}
	t.Run("V4_ONLY", func(t *testing.T) {
		h := start(t, "", cfg("strict_dns", "V4_ONLY"))
		for range 4 {
			if r := h.do("GET", h.url("web", "/"), ""); r.status != 200 || r.body != "v4" {
				t.Fatalf("%d %q\nlogs:\n%s", r.status, r.body, h.logs)
			}
		}
	})
	t.Run("ALL", func(t *testing.T) {
		ips, err := net.DefaultResolver.LookupHost(t.Context(), "localhost")
		if err != nil || !contains(ips, "::1") {
			t.Skipf("localhost is not ::1 here (%v, %v)", ips, err)
		}
		v6, err := net.Listen("tcp", net.JoinHostPort("::1", port))
		if err != nil {
			t.Skipf("[::1]:%s: %v", port, err)
		}
		serve(v6, "v6")
		h := start(t, "", cfg("strict_dns", "ALL"))
		got := map[string]int{}
		for range 10 {
			r := h.do("GET", h.url("web", "/"), "")
			if r.status != 200 {
				t.Fatalf("%d %q\nlogs:\n%s", r.status, r.body, h.logs)
			}
			got[r.body]++
		}
		if got["v4"] != 5 || got["v6"] != 5 {
			t.Errorf("%v: want 5 each", got)
		}
		// logical_dns: one host, the first address (V4_PREFERRED: 127.0.0.1).
		h = start(t, "", cfg("logical_dns", "V4_PREFERRED"))
		for range 4 {
			if r := h.do("GET", h.url("web", "/"), ""); r.status != 200 || r.body != "v4" {
				t.Fatalf("logical_dns: %d %q", r.status, r.body)
			}
		}
	})
	t.Run("unresolvable", func(t *testing.T) {
		// .invalid never resolves (RFC 6761): the cluster has no endpoint,
		// Envoy's 503 "no healthy upstream".
		h := start(t, "", `
reload_interval: 0s
clusters: [{name: dns, endpoints: ["nothing.invalid:80"], discovery: strict_dns}]
listeners: [{name: web, address: "127.0.0.1:0", http: {cluster: dns}}]
`)
		if r := h.do("GET", h.url("web", "/"), ""); r.status != 503 || r.body != "no healthy upstream" {
			t.Errorf("%d %q", r.status, r.body)
		}
		if !h.logs.Has("DNS resolution failed") {
			t.Errorf("no log of the failure:\n%s", h.logs)
		}
	})
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestTCPRoundRobin: a tcp cluster's connections go to its endpoints in
// turn.
func TestTCPRoundRobin(t *testing.T) {
	var addrs []string
	for i := range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				fmt.Fprintf(c, "t%d", i)
				c.Close()
			}
		}()
		addrs = append(addrs, ln.Addr().String())
	}
	h := start(t, "", fmt.Sprintf(`
reload_interval: 0s
clusters: [{name: two, type: tcp, endpoints: %s}]
listeners: [{name: tcp, address: "127.0.0.1:0", tcp: {cluster: two}}]
`, quoted(addrs)))
	got := map[string]int{}
	for range 6 {
		c, err := net.Dial("tcp", h.p.Addr("tcp").String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(c)
		c.Close()
		got[string(b)]++
	}
	if got["t0"] != 3 || got["t1"] != 3 {
		t.Errorf("%v: want 3 each", got)
	}
}

// TestEndpointsRefused: the endpoints' mistakes name their field.
func TestEndpointsRefused(t *testing.T) {
	for _, c := range []struct{ cluster, want string }{
		{`{name: c, address: "127.0.0.1:1", endpoints: ["127.0.0.1:2"]}`, "clusters[0].endpoints: set with address: give one"},
		{`{name: c}`, "clusters[0].address: missing (or give endpoints)"},
		{`{name: c, endpoints: ["127.0.0.1"]}`, "clusters[0].endpoints[0]: address 127.0.0.1: missing port in address"},
		{`{name: c, endpoints: ["127.0.0.1:1", "ftp://x:1"]}`, `clusters[0].endpoints[1]: "ftp://x:1": want host:port or an http(s) URL`},
		{`{name: c, address: "http://127.0.0.1:1/base"}`, `clusters[0].address: "http://127.0.0.1:1/base": a URL with a path, query or user: want scheme://host:port`},
		{`{name: c, endpoints: ["127.0.0.1:1"], lb_policy: RING_HASH}`, `clusters[0].lb_policy: "RING_HASH": want ROUND_ROBIN, RANDOM or LEAST_REQUEST`},
		{`{name: c, endpoints: ["127.0.0.1:1"], discovery: eds}`, `clusters[0].discovery: "eds": want static, strict_dns or logical_dns`},
		{`{name: c, endpoints: ["a:1", "b:1"], discovery: logical_dns}`, "clusters[0].endpoints: logical_dns: 2 endpoints, a logical_dns cluster has exactly one"},
		{`{name: c, endpoints: ["a:1"], dns_refresh_rate: 1s}`, "clusters[0].discovery: static: dns_refresh_rate and dns_lookup_family are for strict_dns and logical_dns"},
		{`{name: c, endpoints: ["a:1"], discovery: strict_dns, dns_lookup_family: V5}`, `clusters[0].dns_lookup_family: "V5": want AUTO, V4_ONLY, V6_ONLY, V4_PREFERRED or ALL`},
		{`{name: c, endpoints: ["a:1"], discovery: strict_dns, dns_refresh_rate: 0s}`, "clusters[0].dns_refresh_rate: 0s: want at least 1ms"},
		{`{name: c, endpoints: ["a:1"], lb_pollicy: RANDOM}`, "clusters[0].lb_pollicy: unknown field"},
	} {
		_, err := proxy.ParseConfig([]byte("clusters: [" + c.cluster + "]\nlisteners: [{address: \"127.0.0.1:0\", http: {cluster: echo}}]\n"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.cluster, err, c.want)
		}
	}
}

// TestMatchRefused: the route matchers' mistakes name their field.
func TestMatchRefused(t *testing.T) {
	const vh = "virtual_hosts[0].routes[0].match"
	for _, c := range []struct{ match, want string }{
		{`{prefix: /, safe_regex: {regex: "/a"}}`, vh + ": more than one of prefix, path and safe_regex"},
		{`{safe_regex: {regex: "a("}}`, vh + `.safe_regex.regex: "a(": error parsing regexp`},
		{`{prefix: /, headers: [{exact_match: a}]}`, vh + ".headers[0].name: missing"},
		{`{prefix: /, headers: [{name: x, exact_match: a, prefix_match: b}]}`, vh + ".headers[0]: more than one of exact_match"},
		{`{prefix: /, headers: [{name: x, safe_regex_match: {regex: "["}}]}`, vh + `.headers[0].safe_regex_match.regex: "[": error parsing regexp`},
		{`{prefix: /, headers: [{name: x, range_match: {start: 5, end: 5}}]}`, vh + ".headers[0].range_match: [5, 5) is empty"},
		{`{prefix: /, headers: [{name: x, string_match: {}}]}`, vh + ".headers[0].string_match: want one of exact, prefix, suffix, contains and safe_regex"},
		{`{prefix: /, headers: [{name: x, string_match: {prefix: ""}}]}`, vh + ".headers[0].string_match.prefix: empty"},
		{`{prefix: /, headers: [{name: x, string_match: {exact: a, suffix: b}}]}`, vh + ".headers[0].string_match: want one of"},
		{`{prefix: /, query_parameters: [{string_match: {exact: a}}]}`, vh + ".query_parameters[0].name: missing"},
		{`{prefix: /, query_parameters: [{name: q, string_match: {exact: a}, present_match: true}]}`, vh + ".query_parameters[0]: both string_match and present_match"},
		{`{prefix: /, headers: [{name: x, exact: a}]}`, vh + ".headers[0].exact: unknown field"},
	} {
		_, err := proxy.ParseConfig([]byte(`listeners: [{address: "127.0.0.1:0", http: {route_config: {virtual_hosts: [{name: a, domains: ["*"], routes: [{match: ` + c.match + `, route: {cluster: echo}}]}]}}}]` + "\n"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.match, err, c.want)
		}
	}
}

// TestRouteByHeader: routes by header, method, query parameter and
// regular expression through the proxy, each to its cluster, in route
// order.
func TestRouteByHeader(t *testing.T) {
	addrs, _ := named(t, 4)
	h := start(t, "", fmt.Sprintf(`
reload_interval: 0s
clusters:
  - {name: c0, address: %q}
  - {name: c1, address: %q}
  - {name: c2, address: %q}
  - {name: c3, address: %q}
listeners:
  - name: web
    address: 127.0.0.1:0
    http:
      route_config:
        virtual_hosts:
          - name: all
            domains: ["*"]
            routes:
              - match: {prefix: /, headers: [{name: x-version, exact_match: v2}, {name: x-canary, present_match: false}]}
                route: {cluster: c1}
              - match: {prefix: /, headers: [{name: ":method", exact_match: POST}]}
                route: {cluster: c2}
              - match: {safe_regex: {regex: "/items/[0-9]+"}, query_parameters: [{name: debug}]}
                route: {cluster: c3}
              - match: {prefix: /API, case_sensitive: false}
                direct_response: {status: 200, body: {inline_string: api}}
              - match: {prefix: /}
                route: {cluster: c0}
`, addrs[0], addrs[1], addrs[2], addrs[3]))
	for _, c := range []struct {
		method, path string
		hdr          []string
		want         string
	}{
		{"GET", "/", nil, "b0"},
		{"GET", "/", []string{"X-Version", "v2"}, "b1"},
		{"GET", "/", []string{"X-Version", "v2", "X-Canary", "1"}, "b0"},
		{"POST", "/", []string{"X-Version", "v2"}, "b1"},
		{"POST", "/", nil, "b2"},
		{"GET", "/items/12?debug", nil, "b3"},
		{"GET", "/items/12", nil, "b0"},
		{"GET", "/items/x?debug", nil, "b0"},
		{"GET", "/api/v1", nil, "api"},
	} {
		r := h.do(c.method, h.url("web", c.path), "", c.hdr...)
		if r.status != 200 || r.body != c.want {
			t.Errorf("%s %s %v: %d %q, want %q", c.method, c.path, c.hdr, r.status, r.body, c.want)
		}
	}
}
