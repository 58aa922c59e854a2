package proxy_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/internal/plugins"
	"github.com/anywasm/anywasm/internal/proxy"
	"github.com/anywasm/anywasm/internal/testlog"
)

// codeServer is the upstream of the cluster remote code is fetched from:
// it answers 503 to the first fail GETs, then body, and records each
// request's host and path.
type codeServer struct {
	*httptest.Server
	mu   sync.Mutex
	fail int
	body []byte
	seen []string
}

func newCodeServer(t *testing.T, body []byte, fail int) *codeServer {
	s := &codeServer{body: body, fail: fail}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.seen = append(s.seen, r.Method+" "+r.Host+r.URL.Path)
		fail := len(s.seen) <= s.fail
		s.mu.Unlock()
		if fail {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write(s.body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *codeServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

func remoteConfig(cacheDir, addr, sum, retry string) string {
	return fmt.Sprintf(`
reload_interval: 0s
cache_dir: %q
clusters: [{name: code, address: %q}]
listeners:
  - name: web
    address: 127.0.0.1:0
    http:
      cluster: echo
      filters:
        - name: config
          configuration: remote-conf
          vm_config:
            vm_id: remote
            code:
              remote:
                http_uri: {uri: "http://plugins.example/wasm/config.wasm", cluster: code, timeout: 10s}
                sha256: %s
                %s
admin: {address: "127.0.0.1:0"}
`, cacheDir, addr, sum, retry)
}

func startErr(t *testing.T, config string) error {
	t.Helper()
	cfg, err := proxy.ParseConfig([]byte(config))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, config)
	}
	p, err := proxy.Start(context.Background(), cfg, proxy.Options{Runtime: "wazero", Logger: slog.New(&testlog.Sink{})})
	if err == nil {
		_ = p.Shutdown(context.Background())
	}
	return err
}

// TestRemoteCode: vm_config.code.remote is fetched from its cluster (the
// URI's host and path), retried with backoff after failures, checked
// against sha256 and kept in cache_dir/remote, from which a restart loads
// it without the cluster; a reload refetches nothing; a cached file whose
// sha256 does not match is not used.
func TestRemoteCode(t *testing.T) {
	wasm := plugins.Build(t, "config")
	sum := sha256.Sum256(wasm)
	hexSum := hex.EncodeToString(sum[:])
	srv := newCodeServer(t, wasm, 2)
	dir := t.TempDir()
	cfg := remoteConfig(dir, srv.URL, strings.ToUpper(hexSum), "retry_policy: {retry_back_off: {base_interval: 1ms, max_interval: 2ms}, num_retries: 2}")

	h := start(t, "wazero", cfg)
	if r := h.do("GET", h.url("web", "/"), ""); r.status != 200 || r.header.Get("X-Config") != "remote-conf" {
		t.Errorf("%d %v", r.status, r.header)
	}
	want := "GET plugins.example/wasm/config.wasm"
	if got := srv.requests(); len(got) != 3 || got[0] != want || got[2] != want {
		t.Errorf("requests %q, want 3 of %q (two 503s, then the module)", got, want)
	}
	if ps := h.plugins(); len(ps) != 1 || ps[0]["file"] != "http://plugins.example/wasm/config.wasm" || ps[0]["sha256"] != hexSum {
		t.Errorf("/plugins: %v", ps)
	}
	if n := h.p.Reload(t.Context()); n != 0 || len(srv.requests()) != 3 {
		t.Errorf("reload: %d swapped, %d requests", n, len(srv.requests()))
	}
	cached := filepath.Join(dir, "remote", hexSum+".wasm")
	if b, err := os.ReadFile(cached); err != nil || string(b) != string(wasm) {
		t.Fatalf("cache file: %v (%d bytes)", err, len(b))
	}

	// A restart with the cluster gone loads from the cache.
	srv.Close()
	h2 := start(t, "wazero", cfg)
	if r := h2.do("GET", h2.url("web", "/"), ""); r.status != 200 || r.header.Get("X-Config") != "remote-conf" {
		t.Errorf("from the cache: %d %v", r.status, r.header)
	}

	// A cached file that does not match is a miss; the fetch then fails.
	if err := os.WriteFile(cached, []byte("\x00asm tampered"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := startErr(t, remoteConfig(dir, srv.URL, hexSum, "retry_policy: {num_retries: 0}"))
	if err == nil || !strings.Contains(err.Error(), "listeners[0].http.filters[0].vm_config.code.remote: fetching http://plugins.example/wasm/config.wasm from cluster code") ||
		!strings.Contains(err.Error(), "(1 attempt)") {
		t.Errorf("start with a bad cache entry and no cluster: %v", err)
	}
}

// TestRemoteCodeFetchFails: a module whose sha256 is not the
// configuration's, or an answer other than 200, fails the start after the
// retries, naming the field, both hashes or the status.
func TestRemoteCodeFetchFails(t *testing.T) {
	wasm := plugins.Build(t, "config")
	sum := sha256.Sum256(wasm)
	other := sha256.Sum256([]byte("other"))
	srv := newCodeServer(t, wasm, 0)
	err := startErr(t, remoteConfig(t.TempDir(), srv.URL, hex.EncodeToString(other[:]), "retry_policy: {retry_back_off: {base_interval: 1ms}, num_retries: 1}"))
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("the module's sha256 is %x, the configuration's sha256 %x (2 attempts)", sum, other)) {
		t.Errorf("sha256 mismatch: %v", err)
	}
	if n := len(srv.requests()); n != 2 {
		t.Errorf("%d requests, want 2 (num_retries: 1)", n)
	}
	down := newCodeServer(t, wasm, 1000)
	err = startErr(t, remoteConfig(t.TempDir(), down.URL, hex.EncodeToString(sum[:]), "retry_policy: {retry_back_off: {base_interval: 1ms}, num_retries: 3}"))
	if err == nil || !strings.Contains(err.Error(), "status 503, want 200 (4 attempts)") {
		t.Errorf("503: %v", err)
	}
}

// TestRemoteCodeRefused: the remote block's fields are checked at start,
// each named by its path.
func TestRemoteCodeRefused(t *testing.T) {
	const sum = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	f := "listeners[0].http.filters[0].vm_config.code"
	for _, c := range []struct{ code, want string }{
		{`{remote: {http_uri: {uri: "http://x/a.wasm", cluster: code, timeout: 1s}}}`, f + ".remote.sha256: \"\": want the module's SHA-256"},
		{`{remote: {http_uri: {uri: "http://x/a.wasm", cluster: nope, timeout: 1s}, sha256: ` + sum + `}}`, f + `.remote.http_uri.cluster: unknown cluster "nope" (clusters: code, t)`},
		{`{remote: {http_uri: {uri: "http://x/a.wasm", cluster: t, timeout: 1s}, sha256: ` + sum + `}}`, f + `.remote.http_uri.cluster: cluster "t" is of type tcp`},
		{`{remote: {http_uri: {uri: "http://x/a.wasm", cluster: code}, sha256: ` + sum + `}}`, f + ".remote.http_uri.timeout: missing"},
		{`{remote: {http_uri: {uri: "/a.wasm", cluster: code, timeout: 1s}, sha256: ` + sum + `}}`, f + ".remote.http_uri.uri: \"/a.wasm\": want an http(s) URL"},
		{`{remote: {http_uri: {uri: "http://x/a.wasm", cluster: code, timeout: 1s}, sha256: ` + sum + `, retry_policy: {retry_back_off: {max_interval: 1s}}}}`,
			f + ".remote.retry_policy.retry_back_off.base_interval: missing or under 1ms"},
		{`{remote: {http_uri: {uri: "http://x/a.wasm", cluster: code, timeout: 1s}, sha256: ` + sum + `, retry_policy: {retry_back_off: {base_interval: 2s, max_interval: 1s}}}}`,
			f + ".remote.retry_policy.retry_back_off.max_interval: 1s is under base_interval"},
		{`{remote: {http_uri: {uri: "http://x/a.wasm", cluster: code, timeout: 1s}, sha256: ` + sum + `, retry_policy: {num_retries: 1, retry_on: x}}}`,
			f + ".remote.retry_policy.retry_on: unknown field"},
		{`{local: {filename: a.wasm}, remote: {http_uri: {uri: "http://x/a.wasm", cluster: code, timeout: 1s}, sha256: ` + sum + `}}`, f + ": give one of local and remote"},
	} {
		_, err := proxy.ParseConfig([]byte(`clusters: [{name: code, address: "127.0.0.1:1"}, {name: t, type: tcp, address: "127.0.0.1:2"}]
listeners: [{address: "127.0.0.1:0", http: {cluster: echo, filters: [{name: a, vm_config: {code: ` + c.code + `}}]}}]
`))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.code, err, c.want)
		}
	}
}

// TestCapabilityRestriction: capability_restriction_config reaches the
// plugin: allowing every hostcall, WASI function and callback but
// proxy_on_request_headers and proxy_on_response_headers, those two are
// never called (cpp-host's getFunctions), so the header the plugin sets is
// missing; a field in a SanitizationConfig (Envoy's has none) is refused.
func TestCapabilityRestriction(t *testing.T) {
	path := plugins.Path(t, "config")
	cfg := func(caps string) string {
		return fmt.Sprintf(`
reload_interval: 0s
listeners:
  - name: web
    address: 127.0.0.1:0
    http:
      cluster: echo
      filters:
        - name: config
          configuration: conf
          vm_config: {code: {local: {filename: %q}}}
          %s
admin: {address: "127.0.0.1:0"}
`, path, caps)
	}
	h := start(t, "wazero", cfg(""))
	if r := h.do("GET", h.url("web", "/"), ""); r.status != 200 || r.header.Get("X-Config") != "conf" {
		t.Errorf("unrestricted: %d %v", r.status, r.header)
	}
	allowed := append(abi.Implemented(), "fd_write", "fd_read", "fd_close", "fd_fdstat_get", "fd_fdstat_set_flags",
		"fd_prestat_get", "fd_prestat_dir_name", "random_get", "clock_time_get", "clock_res_get", "environ_get",
		"environ_sizes_get", "args_get", "args_sizes_get", "sched_yield", "poll_oneoff", "proc_exit",
		"proxy_on_context_create", "proxy_on_vm_start", "proxy_on_configure", "proxy_on_done", "proxy_on_log", "proxy_on_delete")
	var caps []string
	for _, c := range allowed {
		caps = append(caps, c+": {}")
	}
	h = start(t, "wazero", cfg("capability_restriction_config: {allowed_capabilities: {"+strings.Join(caps, ", ")+"}}"))
	if r := h.do("GET", h.url("web", "/"), ""); r.status != 200 || r.header.Get("X-Config") != "" {
		t.Errorf("restricted: %d %v", r.status, r.header)
	}
	_, err := proxy.ParseConfig([]byte(cfg("capability_restriction_config: {allowed_capabilities: {proxy_log: {sanitize: true}}}")))
	if err == nil || !strings.Contains(err.Error(), "listeners[0].http.filters[0].capability_restriction_config.allowed_capabilities.proxy_log.sanitize: unknown field") {
		t.Errorf("sanitization field: %v", err)
	}
}

// TestRemoteCodeNackOnCacheMiss: with vm_config.nack_on_code_cache_miss,
// remote code that is not in the cache fails the start at once (Envoy's
// createWasm fails while the fetch fills the cache in the background);
// the module in cache_dir/remote loads without a fetch.
func TestRemoteCodeNackOnCacheMiss(t *testing.T) {
	wasm := plugins.Build(t, "config")
	sum := sha256.Sum256(wasm)
	hexSum := hex.EncodeToString(sum[:])
	srv := newCodeServer(t, wasm, 0)
	dir := t.TempDir()
	cfg := strings.Replace(remoteConfig(dir, srv.URL, hexSum, ""), "vm_id: remote", "vm_id: remote\n            nack_on_code_cache_miss: true", 1)
	err := startErr(t, cfg)
	if err == nil || !strings.Contains(err.Error(), "listeners[0].http.filters[0].vm_config.code.remote: Unable to create Wasm filter config: http://plugins.example/wasm/config.wasm (sha256 "+hexSum+") is not in the code cache (nack_on_code_cache_miss)") {
		t.Fatalf("start on a cache miss: %v", err)
	}
	if n := len(srv.requests()); n > 1 {
		t.Fatalf("%d requests, want at most the background fetch", n)
	}
	if err := os.MkdirAll(filepath.Join(dir, "remote"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "remote", hexSum+".wasm"), wasm, 0o600); err != nil {
		t.Fatal(err)
	}
	before := len(srv.requests())
	h := start(t, "wazero", cfg)
	if r := h.do("GET", h.url("web", "/"), ""); r.status != 200 || r.header.Get("X-Config") != "remote-conf" {
		t.Errorf("from the cache: %d %v", r.status, r.header)
	}
	if n := len(srv.requests()); n != before {
		t.Errorf("from the cache: %d more requests, want none", n-before)
	}
}
