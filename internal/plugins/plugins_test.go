package plugins

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// wantNames is the plugin set README.md documents.
var wantNames = []string{
	"body", "callout", "compute", "config", "foreign", "guard", "headers", "local_response",
	"metrics", "props", "reply", "service", "shared", "tagged", "tcp", "tick", "trap",
}

func TestNames(t *testing.T) {
	if got := Names(); !slices.Equal(got, wantNames) {
		t.Fatalf("Names() = %v, want %v (update the README and this list together)", got, wantNames)
	}
}

// wantEnv lists each plugin's env imports (without the proxy_ prefix), as
// README.md documents them: the hostcalls a host must provide to load it.
var wantEnv = map[string]string{
	"body":           "get_buffer_bytes log remove_header_map_value set_buffer_bytes set_effective_context",
	"callout":        "continue_stream get_buffer_bytes get_header_map_pairs http_call log replace_header_map_value send_local_response set_effective_context",
	"compute":        "add_header_map_value get_buffer_bytes log send_local_response set_effective_context",
	"config":         "add_header_map_value get_buffer_bytes log set_effective_context",
	"foreign":        "call_foreign_function get_header_map_value log replace_header_map_value set_effective_context set_property",
	"headers":        "add_header_map_value get_header_map_pairs get_header_map_value log set_effective_context",
	"local_response": "get_header_map_value log send_local_response set_effective_context",
	"metrics":        "define_metric get_header_map_value get_metric increment_metric record_metric set_effective_context",
	"props":          "add_header_map_value get_buffer_bytes get_property log set_effective_context",
	"reply":          "add_header_map_value continue_stream get_header_map_pairs get_header_map_value http_call log send_local_response set_effective_context",
	"service":        "add_header_map_value define_metric dequeue_shared_queue enqueue_shared_queue get_buffer_bytes get_header_map_value get_shared_data increment_metric log register_shared_queue resolve_shared_queue set_effective_context set_shared_data set_tick_period_milliseconds",
	"shared":         "add_header_map_value dequeue_shared_queue enqueue_shared_queue get_header_map_value get_shared_data log register_shared_queue set_effective_context set_shared_data",
	"tagged":         "define_metric get_header_map_value increment_metric record_metric set_effective_context",
	"tcp":            "get_buffer_bytes log set_buffer_bytes set_effective_context",
	"guard":          "get_buffer_bytes log replace_header_map_value send_local_response set_effective_context",
	"tick":           "get_shared_data log set_effective_context set_shared_data set_tick_period_milliseconds",
	"trap":           "get_header_map_value set_effective_context",
}

// abiHostcalls are the env imports a Proxy-Wasm 0.2.x host may be asked for.
var abiHostcalls = map[string]bool{}

func init() {
	for _, name := range strings.Fields(`proxy_log proxy_get_log_level
		proxy_get_current_time_nanoseconds proxy_set_tick_period_milliseconds
		proxy_set_effective_context proxy_done proxy_get_buffer_bytes
		proxy_set_buffer_bytes proxy_get_buffer_status proxy_get_header_map_size
		proxy_get_header_map_pairs proxy_set_header_map_pairs
		proxy_get_header_map_value proxy_add_header_map_value
		proxy_replace_header_map_value proxy_remove_header_map_value
		proxy_continue_stream proxy_close_stream proxy_get_status
		proxy_send_local_response proxy_http_call proxy_grpc_call
		proxy_grpc_stream proxy_grpc_send proxy_grpc_cancel proxy_grpc_close
		proxy_set_shared_data proxy_get_shared_data proxy_register_shared_queue
		proxy_resolve_shared_queue proxy_enqueue_shared_queue
		proxy_dequeue_shared_queue proxy_define_metric proxy_record_metric
		proxy_increment_metric proxy_get_metric proxy_get_property
		proxy_set_property proxy_call_foreign_function`) {
		abiHostcalls[name] = true
	}
}

// TestBuild builds every plugin and checks the shape of its binary: the
// exports a host needs, and imports from env and wasi_snapshot_preview1 only.
func TestBuild(t *testing.T) {
	var mu sync.Mutex
	envImports := map[string][]string{} // hostcall -> plugins importing it
	t.Run("plugins", func(t *testing.T) {
		for _, name := range Names() {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				start := time.Now()
				bin := Build(t, name)
				elapsed := time.Since(start)
				if again := Build(t, name); &again[0] != &bin[0] {
					t.Error("second Build in the same process returned a different slice")
				}
				if path := Path(t, name); !isWasm(path) {
					t.Errorf("Path = %s: not a wasm file", path)
				}
				imports, exports, err := parseWasm(bin)
				if err != nil {
					t.Fatal(err)
				}
				for _, want := range []string{"proxy_abi_version_0_2_0", "proxy_on_memory_allocate", "_initialize"} {
					if !slices.Contains(exports, want) {
						t.Errorf("no export %q", want)
					}
				}
				var env []string
				for _, imp := range imports {
					switch imp.module {
					case "env":
						if !abiHostcalls[imp.name] {
							t.Errorf("imports env.%s, not a Proxy-Wasm 0.2.x hostcall", imp.name)
						}
						env = append(env, imp.name)
					case "wasi_snapshot_preview1":
					default:
						t.Errorf("imports %s.%s: module must be env or wasi_snapshot_preview1", imp.module, imp.name)
					}
				}
				sort.Strings(env)
				env = slices.Compact(env)
				short := strings.ReplaceAll(strings.Join(env, " "), "proxy_", "")
				if short != wantEnv[name] {
					t.Errorf("env imports (without proxy_):\n got  %s\n want %s\n(update README.md and wantEnv together)", short, wantEnv[name])
				}
				mu.Lock()
				for _, h := range env {
					envImports[h] = append(envImports[h], name)
				}
				mu.Unlock()
				t.Logf("%d bytes, %v, %d imports, env: %s", len(bin), elapsed.Round(time.Millisecond),
					len(imports), strings.Join(env, " "))
			})
		}
	})
	var union []string
	for h := range envImports {
		union = append(union, h)
	}
	sort.Strings(union)
	t.Logf("env imports across all plugins (%d):", len(union))
	for _, h := range union {
		sort.Strings(envImports[h])
		t.Logf("  %s: %s", h, strings.Join(envImports[h], " "))
	}
}

// TestConcurrentCold builds one plugin from an empty cache directory in
// several goroutines at once, as parallel test processes would: all must get
// the same binary, and the second round must be a cache hit.
func TestConcurrentCold(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a plugin from scratch")
	}
	dir := t.TempDir()
	const n = 4
	paths := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &cache{dir: func() (string, error) { return dir, nil }}
			paths[i], errs[i] = c.build("headers")
		}()
	}
	wg.Wait()
	cold := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths[1:] {
		if p != paths[0] {
			t.Fatalf("paths differ: %s, %s", p, paths[0])
		}
	}
	start = time.Now()
	c := &cache{dir: func() (string, error) { return dir, nil }}
	p, err := c.build("headers")
	cached := time.Since(start)
	if err != nil || p != paths[0] {
		t.Fatalf("cached build = %s, %v; want %s", p, err, paths[0])
	}
	again, _ := os.ReadFile(p)
	if !bytes.Equal(again, first) {
		t.Fatal("cached binary changed")
	}
	entries, _ := os.ReadDir(dir)
	var kept []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".lock") { // the build lock stays, empty
			kept = append(kept, e.Name())
		}
	}
	if len(kept) != 1 {
		t.Errorf("cache dir holds %q, want one binary (temporary build directories must go)", kept)
	}
	t.Logf("headers: %d concurrent cold builds %v, cache hit %v", n, cold.Round(time.Millisecond), cached.Round(time.Microsecond))
}

func TestUnknown(t *testing.T) {
	c := &cache{dir: func() (string, error) { return t.TempDir(), nil }}
	if _, err := c.build("no-such-plugin"); err == nil || !strings.Contains(err.Error(), "unknown plugin") {
		t.Fatalf("build(no-such-plugin) error = %v", err)
	}
}

// TestDirEnv: $ANYWASM_PLUGINS_DIR names the plugin module's directory
// (cmd/bench outside a checkout) and is refused when it holds no go.mod.
func TestDirEnv(t *testing.T) {
	real, err := findModuleDir()
	if err != nil {
		t.Fatal(err)
	}
	elsewhere := t.TempDir()
	t.Setenv(DirEnv, elsewhere)
	if dir, err := findModuleDir(); err == nil || !strings.Contains(err.Error(), DirEnv) {
		t.Errorf("findModuleDir with $%s=%s (no go.mod) = %q, %v; want an error naming %s", DirEnv, elsewhere, dir, err, DirEnv)
	}
	if err := os.WriteFile(filepath.Join(elsewhere, "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if dir, err := findModuleDir(); err != nil || dir != elsewhere || dir == real {
		t.Errorf("findModuleDir with $%s=%s = %q, %v", DirEnv, elsewhere, dir, err)
	}
}

// wasmImport is one import section entry.
type wasmImport struct{ module, name string }

// parseWasm returns the imports and export names of a WebAssembly binary.
// It reads only the import and export sections, and checks bounds everywhere.
func parseWasm(b []byte) (imports []wasmImport, exports []string, err error) {
	r := &reader{b: b}
	if !bytes.Equal(r.bytes(4), []byte("\x00asm")) || !bytes.Equal(r.bytes(4), []byte{1, 0, 0, 0}) {
		return nil, nil, errors.New("not a WebAssembly 1.0 binary")
	}
	for r.err == nil && r.off < len(r.b) {
		id := r.byte()
		sec := &reader{b: r.bytes(int(r.u32()))}
		switch id {
		case 2: // import
			for n := sec.u32(); n > 0 && sec.err == nil; n-- {
				imp := wasmImport{module: sec.name(), name: sec.name()}
				switch kind := sec.byte(); kind {
				case 0: // func: type index
					sec.u32()
				case 1: // table: reftype, limits
					sec.byte()
					sec.limits()
				case 2: // memory: limits
					sec.limits()
				case 3: // global: valtype, mutability
					sec.byte()
					sec.byte()
				case 4: // tag: attribute, type index
					sec.byte()
					sec.u32()
				default:
					sec.fail(fmt.Errorf("import kind %d", kind))
				}
				imports = append(imports, imp)
			}
		case 7: // export
			for n := sec.u32(); n > 0 && sec.err == nil; n-- {
				name := sec.name()
				sec.byte()
				sec.u32()
				exports = append(exports, name)
			}
		}
		if sec.err != nil {
			return nil, nil, fmt.Errorf("section %d: %w", id, sec.err)
		}
	}
	return imports, exports, r.err
}

// reader decodes the binary format; after the first error every read
// returns zero values and err keeps that error.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b)-r.off {
		r.fail(errors.New("unexpected end"))
		return nil
	}
	r.off += n
	return r.b[r.off-n : r.off]
}

func (r *reader) byte() byte {
	if b := r.bytes(1); b != nil {
		return b[0]
	}
	return 0
}

// u32 reads an unsigned LEB128 of at most 5 bytes.
func (r *reader) u32() uint32 {
	var v uint32
	for shift := 0; shift < 35; shift += 7 {
		c := r.byte()
		v |= uint32(c&0x7f) << shift
		if c&0x80 == 0 {
			return v
		}
	}
	r.fail(errors.New("LEB128 too long"))
	return 0
}

func (r *reader) name() string { return string(r.bytes(int(r.u32()))) }

// limits skips a limits entry: flags, min, and max when flag bit 0 is set.
// (64-bit memories would need wider LEBs; Go's wasm32 output has none.)
func (r *reader) limits() {
	flags := r.byte()
	r.u32()
	if flags&1 != 0 {
		r.u32()
	}
}
