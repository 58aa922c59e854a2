package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// src is preprocessed C of the shapes the runtimes' headers have: macro
// lines, declarations several to a line (expanded macros) or spread over
// lines, function pointer typedefs, struct, union and enum definitions,
// attributes and an inline function whose body holds semicolons.
const src = `#define WASM_API_EXTERN
#define WASMTIME_EXTERN_FUNC   0
#define WASM_DECLARE(name)  typedef struct name name;
typedef struct wasm_byte_vec_t { size_t size; wasm_byte_t * data; } wasm_byte_vec_t; void wasm_byte_vec_delete( wasm_byte_vec_t*);
 wasm_config_t* wasm_config_new(void);
typedef wasm_trap_t* (*wasm_func_callback_t)(
    const wasm_val_vec_t* args, wasm_val_vec_t* results);
enum wasm_valkind_enum {
  WASM_I32,
  WASM_EXTERNREF = 128,
};
struct wasmtime_sharedmemory;
struct fwd *make_fwd(void);
typedef union u { int32_t i32; void *p; } u_t;
__attribute__((deprecated("use y"))) int old_x(int);
static inline _Bool is_num(wasm_valkind_t k) {
  for (int i = 0; i < 2; i++) { k++; }
  return k < 128;
}
typedef uint8_t wasmtime_v128[16];
`

func TestSplit(t *testing.T) {
	decls, err := split(src)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	byName := map[string]string{}
	for _, d := range decls {
		names = append(names, d.name)
		byName[d.name] = d.text
	}
	want := []string{"WASM_API_EXTERN", "WASMTIME_EXTERN_FUNC", "WASM_DECLARE", "wasm_byte_vec_t",
		"wasm_byte_vec_delete", "wasm_config_new", "wasm_func_callback_t", "wasm_valkind_enum",
		"wasmtime_sharedmemory", "make_fwd", "u_t", "old_x", "is_num", "wasmtime_v128"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("names:\n got %v\nwant %v", names, want)
	}
	for name, text := range map[string]string{
		"WASMTIME_EXTERN_FUNC": "#define WASMTIME_EXTERN_FUNC 0",
		"WASM_DECLARE":         "#define WASM_DECLARE(name) typedef struct name name;",
		"wasm_byte_vec_t":      "typedef struct wasm_byte_vec_t {\n  size_t size;\n  wasm_byte_t *data;\n} wasm_byte_vec_t;",
		"wasm_byte_vec_delete": "void wasm_byte_vec_delete(wasm_byte_vec_t *);",
		"wasm_config_new":      "wasm_config_t *wasm_config_new(void);",
		"wasm_func_callback_t": "typedef wasm_trap_t *(*wasm_func_callback_t)(const wasm_val_vec_t *args, wasm_val_vec_t *results);",
		"wasm_valkind_enum":    "enum wasm_valkind_enum {\n  WASM_I32,\n  WASM_EXTERNREF = 128,\n};",
		"u_t":                  "typedef union u {\n  int32_t i32;\n  void *p;\n} u_t;",
		"is_num":               "static inline _Bool is_num(wasm_valkind_t k) {\n  for (int i = 0; i < 2; i++) {\n    k++;\n  }\n  return k < 128;\n}",
		"wasmtime_v128":        "typedef uint8_t wasmtime_v128[16];",
	} {
		if byName[name] != text {
			t.Errorf("%s:\n got %q\nwant %q", name, byName[name], text)
		}
	}
}

func TestSplitRefusesUnbalanced(t *testing.T) {
	for _, bad := range []string{"void f(int;\n", "struct s { int x; \n", "int x)\n"} {
		if _, err := split(bad); err == nil {
			t.Errorf("split(%q) = nil error", bad)
		}
	}
}

// TestGenerate runs the generator on a header of its own, as go generate
// does, and checks that a listed name the header lacks is an error naming
// it.
func TestGenerate(t *testing.T) {
	if _, err := exec.LookPath("cc"); err != nil {
		t.Skip("no cc")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	dir := t.TempDir()
	inc := filepath.Join(dir, "include")
	if err := os.Mkdir(inc, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(inc, "api.h"), "#include <stdint.h>\n#define API_VERSION \"1.0\"\n/* a comment */\ntypedef struct api_t api_t;\napi_t *api_new(uint32_t size);\nvoid api_unused(void);\n")
	write(filepath.Join(dir, "go.mod"), "module example.com/api\n\ngo 1.26\n")
	names := filepath.Join(dir, "capi.names")
	write(names, "# what we use\napi_t\napi_new  # the constructor\nAPI_VERSION\n")
	out := filepath.Join(dir, "capi.h")
	t.Chdir(dir)
	t.Setenv("GOWORK", "off")
	t.Setenv("GOFLAGS", "-mod=mod")
	if err := run("example.com/api", "include", "api.h", names, out); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DO NOT EDIT.", "#define API_VERSION \"1.0\"\ntypedef struct api_t api_t;\napi_t *api_new(uint32_t size);\n", "#endif"} {
		if !strings.Contains(string(got), want) {
			t.Errorf("capi.h lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(string(got), "api_unused") || strings.Contains(string(got), "comment") {
		t.Errorf("capi.h holds what is not listed:\n%s", got)
	}
	write(names, "api_t\napi_gone\n")
	if err := run("example.com/api", "include", "api.h", names, out); err == nil || !strings.Contains(err.Error(), "declares no api_gone") {
		t.Errorf("a missing name: err = %v, want one naming api_gone", err)
	}
}
