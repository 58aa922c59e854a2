// Declarations copied from the headers of
// github.com/bytecodealliance/wasmtime-go/v44@v44.0.0 (build/include), only
// what the raw benchmark path needs.

#ifndef ANYWASM_WASMTIMERAW_H
#define ANYWASM_WASMTIMERAW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct wasm_engine_t wasm_engine_t;
wasm_engine_t *wasm_engine_new(void);
void wasm_engine_delete(wasm_engine_t *);
typedef struct wasm_valtype_t wasm_valtype_t;
typedef struct wasm_valtype_vec_t {
  size_t size;
  wasm_valtype_t **data;
} wasm_valtype_vec_t;
void wasm_valtype_vec_new(wasm_valtype_vec_t *out, size_t,
                          wasm_valtype_t *const[]);
void wasm_valtype_vec_new_empty(wasm_valtype_vec_t *out);
typedef uint8_t wasm_valkind_t;
enum wasm_valkind_enum { WASM_I32, WASM_I64, WASM_F32, WASM_F64 };
wasm_valtype_t *wasm_valtype_new(wasm_valkind_t);
typedef struct wasm_functype_t wasm_functype_t;
void wasm_functype_delete(wasm_functype_t *);
wasm_functype_t *wasm_functype_new(wasm_valtype_vec_t *params,
                                   wasm_valtype_vec_t *results);
typedef struct wasm_trap_t wasm_trap_t;
void wasm_trap_delete(wasm_trap_t *);

typedef struct wasmtime_error wasmtime_error_t;
void wasmtime_error_delete(wasmtime_error_t *error);
typedef struct wasmtime_module wasmtime_module_t;
wasmtime_error_t *wasmtime_module_new(wasm_engine_t *engine,
                                      const uint8_t *wasm, size_t wasm_len,
                                      wasmtime_module_t **ret);
void wasmtime_module_delete(wasmtime_module_t *m);
typedef struct wasmtime_store wasmtime_store_t;
typedef struct wasmtime_context wasmtime_context_t;
wasmtime_store_t *wasmtime_store_new(wasm_engine_t *engine, void *data,
                                     void (*finalizer)(void *));
wasmtime_context_t *wasmtime_store_context(wasmtime_store_t *store);
void wasmtime_store_delete(wasmtime_store_t *store);

typedef struct wasmtime_func {
  uint64_t store_id;
  void *__private;
} wasmtime_func_t;
typedef struct wasmtime_table {
  struct {
    uint64_t store_id;
    uint32_t __private1;
  };
  uint32_t __private2;
} wasmtime_table_t;
typedef struct wasmtime_memory {
  struct {
    uint64_t store_id;
    uint32_t __private1;
  };
  uint32_t __private2;
} wasmtime_memory_t;
typedef struct wasmtime_global {
  uint64_t store_id;
  uint32_t __private1;
  uint32_t __private2;
  uint32_t __private3;
} wasmtime_global_t;
typedef struct wasmtime_tag {
  struct {
    uint64_t store_id;
    uint32_t __private1;
  };
  uint32_t __private2;
} wasmtime_tag_t;
typedef uint8_t wasmtime_extern_kind_t;
#define WASMTIME_EXTERN_FUNC 0
typedef union wasmtime_extern_union {
  wasmtime_func_t func;
  wasmtime_global_t global;
  wasmtime_table_t table;
  wasmtime_memory_t memory;
  struct wasmtime_sharedmemory *sharedmemory;
  wasmtime_tag_t tag;
} wasmtime_extern_union_t;
typedef struct wasmtime_extern {
  wasmtime_extern_kind_t kind;
  wasmtime_extern_union_t of;
} wasmtime_extern_t;

typedef uint8_t wasmtime_v128[16];
typedef union wasmtime_val_raw {
  int32_t i32;
  int64_t i64;
  float f32;
  double f64;
  wasmtime_v128 v128;
  uint32_t anyref;
  uint32_t externref;
  void *funcref;
} wasmtime_val_raw_t;

typedef struct wasmtime_caller wasmtime_caller_t;
typedef wasm_trap_t *(*wasmtime_func_unchecked_callback_t)(
    void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args_and_results,
    size_t num_args_and_results);
void wasmtime_func_new_unchecked(wasmtime_context_t *store,
                                 const wasm_functype_t *type,
                                 wasmtime_func_unchecked_callback_t callback,
                                 void *env, void (*finalizer)(void *),
                                 wasmtime_func_t *ret);
wasmtime_error_t *wasmtime_func_call_unchecked(
    wasmtime_context_t *store, const wasmtime_func_t *func,
    wasmtime_val_raw_t *args_and_results, size_t args_and_results_len,
    wasm_trap_t **trap);

typedef struct wasmtime_instance {
  uint64_t store_id;
  size_t __private;
} wasmtime_instance_t;
wasmtime_error_t *wasmtime_instance_new(wasmtime_context_t *store,
                                        const wasmtime_module_t *module,
                                        const wasmtime_extern_t *imports,
                                        size_t nimports,
                                        wasmtime_instance_t *instance,
                                        wasm_trap_t **trap);
bool wasmtime_instance_export_get(wasmtime_context_t *store,
                                  const wasmtime_instance_t *instance,
                                  const char *name, size_t name_len,
                                  wasmtime_extern_t *item);

// The raw benchmark's state: everything the calls touch is C memory.
typedef struct raw {
  wasm_engine_t *engine;
  wasmtime_store_t *store;
  wasmtime_context_t *ctx;
  wasmtime_func_t fn[5]; // empty, add, loop_nop, loop_add, loop_empty
  wasmtime_val_raw_t buf[2];
  wasm_trap_t *trap;
} raw;

raw *raw_new(const uint8_t *wasm, size_t len);
int raw_call(uintptr_t r, int fn, size_t n);
void raw_delete(raw *r);

#endif
