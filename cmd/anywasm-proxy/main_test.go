package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anywasm/anywasm/internal/plugins"
	"github.com/anywasm/anywasm/internal/proxy"
	"github.com/anywasm/anywasm/internal/testrt"
)

func TestUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), nil, &out, &errb, nil); code != 2 || !strings.Contains(errb.String(), "usage: anywasm-proxy -config FILE") {
		t.Errorf("no args: %d %q", code, errb.String())
	}
	if code := run(context.Background(), []string{"-config", "x", "-log-format", "xml"}, &out, &errb, nil); code != 2 {
		t.Errorf("bad -log-format: %d", code)
	}
}

func TestBadConfig(t *testing.T) {
	f := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(f, []byte("listeners: [{address: \"127.0.0.1:0\", http: {cluster: nowhere}}]\n"), 0o644)
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"-config", f}, &out, &errb, nil); code != 1 || !strings.Contains(errb.String(), `listeners[0].http.cluster: unknown cluster "nowhere"`) {
		t.Errorf("%d %q", code, errb.String())
	}
}

// TestExample checks the example configuration the README starts, and runs
// the proxy with it until its context ends.
func TestExample(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile("../../examples/proxy/proxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The example's fixed ports may be taken on a test machine.
	// No reload timer: the test checks that SIGHUP reloads.
	cfg := strings.NewReplacer("127.0.0.1:8080", "127.0.0.1:0", "127.0.0.1:9901", "127.0.0.1:0").Replace(string(b)) +
		"reload_interval: 0s\ncache_dir: " + testrt.Dir() + "\n"
	os.WriteFile(filepath.Join(dir, "proxy.yaml"), []byte(cfg), 0o644)
	for _, p := range []string{"headers", "local_response", "metrics"} {
		w, _ := os.ReadFile(plugins.Path(t, p))
		os.WriteFile(filepath.Join(dir, p+".wasm"), w, 0o644)
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"-config", filepath.Join(dir, "proxy.yaml"), "-check"}, &out, &errb, nil); code != 0 || !strings.HasSuffix(out.String(), ": ok\n") {
		t.Fatalf("-check: %d %q %q", code, out.String(), errb.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *proxy.Proxy, 1)
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"-config", filepath.Join(dir, "proxy.yaml"), "-log-format", "json"}, &out, io.Discard, ready)
	}()
	var p *proxy.Proxy
	select {
	case p = <-ready:
	case code := <-done:
		t.Fatalf("exited %d", code)
	}
	resp, err := http.Get("http://" + p.Addr("ingress").String() + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Anywasm-Plugin") != "headers" || !strings.Contains(string(body), "GET /hello HTTP/1.1") || !strings.Contains(string(body), "x-anywasm-seen: ") {
		t.Errorf("%d %v %q", resp.StatusCode, resp.Header, body)
	}
	req, _ := http.NewRequest("GET", "http://"+p.Addr("ingress").String()+"/", nil)
	req.Header.Set("X-Deny", "1")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("x-deny: %d", resp.StatusCode)
	}
	// SIGHUP reloads a changed plugin file: headers.wasm becomes the body
	// plugin, which adds no X-Anywasm-Plugin header.
	w, _ := os.ReadFile(plugins.Path(t, "body"))
	os.WriteFile(filepath.Join(dir, "headers.wasm.tmp"), w, 0o644)
	os.Rename(filepath.Join(dir, "headers.wasm.tmp"), filepath.Join(dir, "headers.wasm"))
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for { // the reload runs on the command's goroutine: wait until it took
		resp, err := http.Get("http://" + p.Addr("ingress").String() + "/after")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("X-Anywasm-Plugin") == "" {
			break
		}
		select {
		case <-t.Context().Done():
			t.Fatal("SIGHUP did not reload the changed plugin")
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit %d", code)
	}
}

// TestCheckLoadsPlugins: -check fails, naming the filter, for a plugin file
// that is missing, is not wasm, or refuses its configuration.
func TestCheckLoadsPlugins(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "not.wasm"), []byte("not wasm"), 0o644)
	for _, c := range []struct{ filter, want string }{
		{`{name: gone, vm_config: {code: {local: {filename: missing.wasm}}}}`, "listeners[0].http.filters[0].vm_config.code.local.filename"},
		{`{name: bad, vm_config: {code: {local: {filename: not.wasm}}}}`, "listeners[0].http.filters[0] (plugin bad"},
		{`{name: refuses, configuration: fail, vm_config: {code: {local: {filename: ` + plugins.Path(t, "config") + `}}}}`, "refused its configuration"},
	} {
		f := filepath.Join(dir, "c.yaml")
		os.WriteFile(f, []byte("cache_dir: "+testrt.Dir()+"\nlisteners: [{address: \"127.0.0.1:0\", http: {cluster: echo, filters: ["+c.filter+"]}}]\n"), 0o644)
		var out, errb bytes.Buffer
		if code := run(context.Background(), []string{"-config", f, "-check"}, &out, &errb, nil); code != 1 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%s: -check = %d, %q %q; want 1 and %q", c.filter, code, out.String(), errb.String(), c.want)
		}
	}
}

// TestLogLevelFlag: -log-level takes Proxy-Wasm's trace and critical too.
func TestLogLevelFlag(t *testing.T) {
	f := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(f, []byte("listeners: [{address: \"127.0.0.1:0\", http: {cluster: echo}}]\n"), 0o644)
	for level, want := range map[string]int{"trace": 0, "critical": 0, "DEBUG": 0, "loud": 2} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), []string{"-config", f, "-check", "-log-level", level}, &out, &errb, nil); code != want {
			t.Errorf("-log-level %s: %d %q", level, code, errb.String())
		}
	}
}

// TestExampleEnvoy runs examples/proxy/envoy.yaml, the example in Envoy's
// form, with the plugins where it names them (relative to the working
// directory, as Envoy takes them): the plugins' header, the deny plugin's
// 403.
func TestExampleEnvoy(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile("../../examples/proxy/envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer("port_value: 8080", "port_value: 0", "port_value: 9901", "port_value: 0",
		"anywasm:                     # anywasm's knobs (Envoy has no name for them)\n",
		"anywasm:\n  reload_interval: 0s\n  cache_dir: "+testrt.Dir()+"\n").Replace(string(b))
	os.MkdirAll(filepath.Join(dir, "examples/proxy"), 0o755)
	os.WriteFile(filepath.Join(dir, "envoy.yaml"), []byte(cfg), 0o644)
	for _, p := range []string{"headers", "local_response", "metrics"} {
		w, _ := os.ReadFile(plugins.Path(t, p))
		os.WriteFile(filepath.Join(dir, "examples/proxy", p+".wasm"), w, 0o644)
	}
	t.Chdir(dir)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *proxy.Proxy, 1)
	done := make(chan int)
	var errb bytes.Buffer
	go func() {
		done <- run(ctx, []string{"-config", "envoy.yaml"}, io.Discard, &errb, ready)
	}()
	var p *proxy.Proxy
	select {
	case p = <-ready:
	case code := <-done:
		t.Fatalf("exited %d: %s", code, errb.String())
	}
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("exit %d", code)
		}
	}()
	resp, err := http.Get("http://" + p.Addr("ingress").String() + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Anywasm-Plugin") != "headers" || string(body) != "hello from anywasm\n" {
		t.Errorf("%d %v %q", resp.StatusCode, resp.Header, body)
	}
	req, _ := http.NewRequest("GET", "http://"+p.Addr("ingress").String()+"/", nil)
	req.Header.Set("X-Deny", "1")
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("x-deny: %d", resp.StatusCode)
	}
}
