//go:build cgo

// Declarations copied from the Wasmer 2.0 C API headers shipped by
// github.com/wasmerio/wasmer-go v1.0.4 (wasmer/packaged/include/wasm.h and
// wasmer.h); only what this package (and bench/internal/wasmerraw) uses, with the same
// layouts.

#ifndef ANYWASM_WASMER_CAPI_H
#define ANYWASM_WASMER_CAPI_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

// wasm.h

typedef char byte_t;
typedef float float32_t;
typedef double float64_t;

typedef byte_t wasm_byte_t;
typedef struct wasm_byte_vec_t {
  size_t size;
  wasm_byte_t *data;
} wasm_byte_vec_t;
void wasm_byte_vec_new(wasm_byte_vec_t *out, size_t, wasm_byte_t const[]);
void wasm_byte_vec_delete(wasm_byte_vec_t *);
typedef wasm_byte_vec_t wasm_name_t;
typedef wasm_name_t wasm_message_t;

typedef struct wasm_config_t wasm_config_t;
void wasm_config_delete(wasm_config_t *);
wasm_config_t *wasm_config_new(void);

typedef struct wasm_engine_t wasm_engine_t;
void wasm_engine_delete(wasm_engine_t *);
wasm_engine_t *wasm_engine_new(void);
wasm_engine_t *wasm_engine_new_with_config(wasm_config_t *);

typedef struct wasm_store_t wasm_store_t;
void wasm_store_delete(wasm_store_t *);
wasm_store_t *wasm_store_new(wasm_engine_t *);

typedef struct wasm_valtype_t wasm_valtype_t;
typedef struct wasm_valtype_vec_t {
  size_t size;
  wasm_valtype_t **data;
} wasm_valtype_vec_t;
void wasm_valtype_vec_new(wasm_valtype_vec_t *out, size_t, wasm_valtype_t *const[]);
typedef uint8_t wasm_valkind_t;
enum wasm_valkind_enum {
  WASM_I32,
  WASM_I64,
  WASM_F32,
  WASM_F64,
  WASM_ANYREF = 128,
  WASM_FUNCREF,
};
wasm_valtype_t *wasm_valtype_new(wasm_valkind_t);

typedef struct wasm_functype_t wasm_functype_t;
void wasm_functype_delete(wasm_functype_t *);
wasm_functype_t *wasm_functype_new(wasm_valtype_vec_t *params, wasm_valtype_vec_t *results);

typedef uint8_t wasm_externkind_t;
enum wasm_externkind_enum {
  WASM_EXTERN_FUNC,
  WASM_EXTERN_GLOBAL,
  WASM_EXTERN_TABLE,
  WASM_EXTERN_MEMORY,
};

struct wasm_ref_t;
typedef struct wasm_val_t {
  wasm_valkind_t kind;
  union {
    int32_t i32;
    int64_t i64;
    float32_t f32;
    float64_t f64;
    struct wasm_ref_t *ref;
  } of;
} wasm_val_t;
typedef struct wasm_val_vec_t {
  size_t size;
  wasm_val_t *data;
} wasm_val_vec_t;
void wasm_val_vec_delete(wasm_val_vec_t *);

typedef struct wasm_trap_t wasm_trap_t;
void wasm_trap_delete(wasm_trap_t *);
wasm_trap_t *wasm_trap_new(wasm_store_t *store, const wasm_message_t *);
void wasm_trap_message(const wasm_trap_t *, wasm_message_t *out);

typedef struct wasm_frame_t wasm_frame_t;
void wasm_frame_delete(wasm_frame_t *);
typedef struct wasm_frame_vec_t {
  size_t size;
  wasm_frame_t **data;
} wasm_frame_vec_t;
void wasm_frame_vec_delete(wasm_frame_vec_t *);
uint32_t wasm_frame_func_index(const wasm_frame_t *);
size_t wasm_frame_module_offset(const wasm_frame_t *);
void wasm_trap_trace(const wasm_trap_t *, wasm_frame_vec_t *out);

typedef struct wasm_module_t wasm_module_t;
void wasm_module_delete(wasm_module_t *);
wasm_module_t *wasm_module_new(wasm_store_t *, const wasm_byte_vec_t *binary);
void wasm_module_serialize(const wasm_module_t *, wasm_byte_vec_t *out);
wasm_module_t *wasm_module_deserialize(wasm_store_t *, const wasm_byte_vec_t *);

wasm_valkind_t wasm_valtype_kind(const wasm_valtype_t *);
const wasm_valtype_vec_t *wasm_functype_params(const wasm_functype_t *);
const wasm_valtype_vec_t *wasm_functype_results(const wasm_functype_t *);
typedef struct wasm_externtype_t wasm_externtype_t;
wasm_externkind_t wasm_externtype_kind(const wasm_externtype_t *);
const wasm_functype_t *wasm_externtype_as_functype_const(const wasm_externtype_t *);
typedef struct wasm_importtype_t wasm_importtype_t;
typedef struct wasm_importtype_vec_t {
  size_t size;
  wasm_importtype_t **data;
} wasm_importtype_vec_t;
void wasm_importtype_vec_delete(wasm_importtype_vec_t *);
const wasm_name_t *wasm_importtype_module(const wasm_importtype_t *);
const wasm_name_t *wasm_importtype_name(const wasm_importtype_t *);
const wasm_externtype_t *wasm_importtype_type(const wasm_importtype_t *);
typedef struct wasm_exporttype_t wasm_exporttype_t;
typedef struct wasm_exporttype_vec_t {
  size_t size;
  wasm_exporttype_t **data;
} wasm_exporttype_vec_t;
void wasm_exporttype_vec_delete(wasm_exporttype_vec_t *);
const wasm_name_t *wasm_exporttype_name(const wasm_exporttype_t *);
const wasm_externtype_t *wasm_exporttype_type(const wasm_exporttype_t *);
void wasm_module_imports(const wasm_module_t *, wasm_importtype_vec_t *out);
void wasm_module_exports(const wasm_module_t *, wasm_exporttype_vec_t *out);

typedef struct wasm_func_t wasm_func_t;
void wasm_func_delete(wasm_func_t *);
typedef wasm_trap_t *(*wasm_func_callback_t)(
  const wasm_val_vec_t *args, wasm_val_vec_t *results);
typedef wasm_trap_t *(*wasm_func_callback_with_env_t)(
  void *env, const wasm_val_vec_t *args, wasm_val_vec_t *results);
wasm_func_t *wasm_func_new(
  wasm_store_t *, const wasm_functype_t *, wasm_func_callback_t);
wasm_func_t *wasm_func_new_with_env(
  wasm_store_t *, const wasm_functype_t *type, wasm_func_callback_with_env_t,
  void *env, void (*finalizer)(void *));
wasm_trap_t *wasm_func_call(
  const wasm_func_t *, const wasm_val_vec_t *args, wasm_val_vec_t *results);

typedef struct wasm_memory_t wasm_memory_t;
typedef uint32_t wasm_memory_pages_t;
byte_t *wasm_memory_data(wasm_memory_t *);
size_t wasm_memory_data_size(const wasm_memory_t *);
wasm_memory_pages_t wasm_memory_size(const wasm_memory_t *);
bool wasm_memory_grow(wasm_memory_t *, wasm_memory_pages_t delta);

typedef struct wasm_extern_t wasm_extern_t;
typedef struct wasm_extern_vec_t {
  size_t size;
  wasm_extern_t **data;
} wasm_extern_vec_t;
void wasm_extern_vec_delete(wasm_extern_vec_t *);
wasm_externkind_t wasm_extern_kind(const wasm_extern_t *);
wasm_extern_t *wasm_func_as_extern(wasm_func_t *);
wasm_func_t *wasm_extern_as_func(wasm_extern_t *);
wasm_memory_t *wasm_extern_as_memory(wasm_extern_t *);

typedef struct wasm_instance_t wasm_instance_t;
void wasm_instance_delete(wasm_instance_t *);
wasm_instance_t *wasm_instance_new(
  wasm_store_t *, const wasm_module_t *, const wasm_extern_vec_t *imports,
  wasm_trap_t **);
void wasm_instance_exports(const wasm_instance_t *, wasm_extern_vec_t *out);

// wasmer.h

typedef struct wasmer_metering_t wasmer_metering_t;
typedef struct wasmer_middleware_t wasmer_middleware_t;
// wasmer.h passes an enum wasmer_parser_operator_t (a plain C enum, so an
// int) that lists ~500 operators; every operator costs the same here, so the
// enum is declared as its int representation instead of being copied.
typedef uint64_t (*wasmer_metering_cost_function_t)(int wasm_operator);

typedef enum wasmer_compiler_t {
  CRANELIFT = 0,
  LLVM = 1,
  SINGLEPASS = 2,
} wasmer_compiler_t;
void wasm_config_set_compiler(wasm_config_t *config, enum wasmer_compiler_t compiler);
bool wasmer_is_compiler_available(enum wasmer_compiler_t compiler);

int wasmer_last_error_length(void);
int wasmer_last_error_message(char *buffer, int length);
const char *wasmer_version(void);
// Looked up with dlsym (see shim.c), with these signatures:
//   void wasm_config_push_middleware(wasm_config_t *config, struct wasmer_middleware_t *middleware);
//   struct wasmer_middleware_t *wasmer_metering_as_middleware(struct wasmer_metering_t *metering);
//   uint64_t wasmer_metering_get_remaining_points(const wasm_instance_t *instance);
//   struct wasmer_metering_t *wasmer_metering_new(uint64_t initial_limit,
//                                                 wasmer_metering_cost_function_t cost_function);
//   bool wasmer_metering_points_are_exhausted(const wasm_instance_t *instance);
//   void wasmer_metering_set_remaining_points(const wasm_instance_t *instance, uint64_t new_limit);

#endif
