// The part of Wasmtime's C API this package uses, and the C side of the
// backend (shim.c).
//
// The declarations below are copied, unchanged, from the headers of
// github.com/bytecodealliance/wasmtime-go/v44@v44.0.0 (build/include: wasm.h,
// wasmtime.h, wasmtime/*.h), whose static libwasmtime.a this package links
// through its blank import of wasmtime-go. Copy declarations exactly when
// adding to this list; a Go module cannot add another module's directory to
// its include path.

#ifndef ANYWASM_WASMTIME_SHIM_H
#define ANYWASM_WASMTIME_SHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// ---- wasm.h ----

typedef char byte_t;
typedef float float32_t;
typedef double float64_t;

typedef byte_t wasm_byte_t;
typedef struct wasm_byte_vec_t {
  size_t size;
  wasm_byte_t *data;
} wasm_byte_vec_t;
void wasm_byte_vec_delete(wasm_byte_vec_t *);
typedef wasm_byte_vec_t wasm_name_t;
typedef wasm_name_t wasm_message_t; // null terminated

typedef struct wasm_config_t wasm_config_t;
void wasm_config_delete(wasm_config_t *);
wasm_config_t *wasm_config_new(void);

typedef struct wasm_engine_t wasm_engine_t;
void wasm_engine_delete(wasm_engine_t *);
wasm_engine_t *wasm_engine_new_with_config(wasm_config_t *);

typedef struct wasm_valtype_t wasm_valtype_t;
void wasm_valtype_delete(wasm_valtype_t *);
typedef struct wasm_valtype_vec_t {
  size_t size;
  wasm_valtype_t **data;
} wasm_valtype_vec_t;
void wasm_valtype_vec_new(wasm_valtype_vec_t *out, size_t,
                          wasm_valtype_t *const[]);
typedef uint8_t wasm_valkind_t;
enum wasm_valkind_enum {
  WASM_I32,
  WASM_I64,
  WASM_F32,
  WASM_F64,
  WASM_EXTERNREF = 128,
  WASM_FUNCREF,
};
wasm_valtype_t *wasm_valtype_new(wasm_valkind_t);

typedef struct wasm_functype_t wasm_functype_t;
void wasm_functype_delete(wasm_functype_t *);
wasm_functype_t *wasm_functype_new(wasm_valtype_vec_t *params,
                                   wasm_valtype_vec_t *results);

typedef struct wasm_trap_t wasm_trap_t;
void wasm_trap_delete(wasm_trap_t *);
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

wasm_valkind_t wasm_valtype_kind(const wasm_valtype_t *);
const wasm_valtype_vec_t *wasm_functype_params(const wasm_functype_t *);
const wasm_valtype_vec_t *wasm_functype_results(const wasm_functype_t *);
typedef struct wasm_externtype_t wasm_externtype_t;
typedef uint8_t wasm_externkind_t;
enum wasm_externkind_enum {
  WASM_EXTERN_FUNC,
  WASM_EXTERN_GLOBAL,
  WASM_EXTERN_TABLE,
  WASM_EXTERN_MEMORY,
  WASM_EXTERN_TAG,
};
wasm_externkind_t wasm_externtype_kind(const wasm_externtype_t *);
const wasm_functype_t *
wasm_externtype_as_functype_const(const wasm_externtype_t *);
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

// ---- wasmtime.h ----

#define WASMTIME_VERSION "44.0.0"

// ---- wasmtime/error.h ----

typedef struct wasmtime_error wasmtime_error_t;
wasmtime_error_t *wasmtime_error_new(const char *);
void wasmtime_error_delete(wasmtime_error_t *error);
void wasmtime_error_message(const wasmtime_error_t *error,
                            wasm_name_t *message);
void wasmtime_error_wasm_trace(const wasmtime_error_t *,
                               wasm_frame_vec_t *out);

// ---- wasmtime/config.h ----

void wasmtime_config_consume_fuel_set(wasm_config_t *, bool);
void wasmtime_config_epoch_interruption_set(wasm_config_t *, bool);
void wasmtime_config_memory_may_move_set(wasm_config_t *, bool);
wasmtime_error_t *wasmtime_config_target_set(wasm_config_t *, const char *);

// ---- wasmtime/engine.h ----

void wasmtime_engine_increment_epoch(wasm_engine_t *engine);

// ---- wasmtime/module.h ----

typedef struct wasmtime_module wasmtime_module_t;
wasmtime_error_t *wasmtime_module_new(wasm_engine_t *engine,
                                      const uint8_t *wasm, size_t wasm_len,
                                      wasmtime_module_t **ret);
void wasmtime_module_delete(wasmtime_module_t *m);
wasmtime_error_t *wasmtime_module_validate(wasm_engine_t *engine,
                                           const uint8_t *wasm,
                                           size_t wasm_len);
wasmtime_error_t *wasmtime_module_serialize(wasmtime_module_t *module,
                                            wasm_byte_vec_t *ret);
wasmtime_error_t *wasmtime_module_deserialize(wasm_engine_t *engine,
                                              const uint8_t *bytes,
                                              size_t bytes_len,
                                              wasmtime_module_t **ret);
void wasmtime_module_imports(const wasmtime_module_t *module,
                             wasm_importtype_vec_t *out);
void wasmtime_module_exports(const wasmtime_module_t *module,
                             wasm_exporttype_vec_t *out);

// ---- wasmtime/store.h ----

typedef struct wasmtime_store wasmtime_store_t;
typedef struct wasmtime_context wasmtime_context_t;
wasmtime_store_t *wasmtime_store_new(wasm_engine_t *engine, void *data,
                                     void (*finalizer)(void *));
wasmtime_context_t *wasmtime_store_context(wasmtime_store_t *store);
void wasmtime_store_limiter(wasmtime_store_t *store, int64_t memory_size,
                            int64_t table_elements, int64_t instances,
                            int64_t tables, int64_t memories);
void wasmtime_store_delete(wasmtime_store_t *store);
wasmtime_error_t *wasmtime_context_set_fuel(wasmtime_context_t *store,
                                            uint64_t fuel);
void wasmtime_context_set_epoch_deadline(wasmtime_context_t *context,
                                         uint64_t ticks_beyond_current);
typedef uint8_t wasmtime_update_deadline_kind_t;
#define WASMTIME_UPDATE_DEADLINE_CONTINUE 0
#define WASMTIME_UPDATE_DEADLINE_YIELD 1
void wasmtime_store_epoch_deadline_callback(
    wasmtime_store_t *store,
    wasmtime_error_t *(*func)(wasmtime_context_t *context, void *data,
                              uint64_t *epoch_deadline_delta,
                              wasmtime_update_deadline_kind_t *update_kind),
    void *data, void (*finalizer)(void *));

// ---- wasmtime/extern.h, wasmtime/tag.h ----

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
#define WASMTIME_EXTERN_GLOBAL 1
#define WASMTIME_EXTERN_TABLE 2
#define WASMTIME_EXTERN_MEMORY 3
#define WASMTIME_EXTERN_SHAREDMEMORY 4
#define WASMTIME_EXTERN_TAG 5
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

// ---- wasmtime/val.h ----

typedef uint8_t wasmtime_v128[16];
typedef union wasmtime_val_raw {
  int32_t i32;
  int64_t i64;
  float32_t f32;
  float64_t f64;
  wasmtime_v128 v128;
  uint32_t anyref;
  uint32_t externref;
  void *funcref;
} wasmtime_val_raw_t;

// ---- wasmtime/func.h ----

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
bool wasmtime_caller_export_get(wasmtime_caller_t *caller, const char *name,
                                size_t name_len, wasmtime_extern_t *item);

// ---- wasmtime/instance.h ----

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

// ---- wasmtime/memory.h ----

uint8_t *wasmtime_memory_data(const wasmtime_context_t *store,
                              const wasmtime_memory_t *memory);
size_t wasmtime_memory_data_size(const wasmtime_context_t *store,
                                 const wasmtime_memory_t *memory);
wasmtime_error_t *wasmtime_memory_grow(wasmtime_context_t *store,
                                       const wasmtime_memory_t *memory,
                                       uint64_t delta, uint64_t *prev_size);

// ---- wasmtime/trap.h ----

typedef uint8_t wasmtime_trap_code_t;
enum wasmtime_trap_code_enum {
  WASMTIME_TRAP_CODE_STACK_OVERFLOW = 0,
  WASMTIME_TRAP_CODE_MEMORY_OUT_OF_BOUNDS = 1,
  WASMTIME_TRAP_CODE_HEAP_MISALIGNED = 2,
  WASMTIME_TRAP_CODE_TABLE_OUT_OF_BOUNDS = 3,
  WASMTIME_TRAP_CODE_INDIRECT_CALL_TO_NULL = 4,
  WASMTIME_TRAP_CODE_BAD_SIGNATURE = 5,
  WASMTIME_TRAP_CODE_INTEGER_OVERFLOW = 6,
  WASMTIME_TRAP_CODE_INTEGER_DIVISION_BY_ZERO = 7,
  WASMTIME_TRAP_CODE_BAD_CONVERSION_TO_INTEGER = 8,
  WASMTIME_TRAP_CODE_UNREACHABLE_CODE_REACHED = 9,
  WASMTIME_TRAP_CODE_INTERRUPT = 10,
  WASMTIME_TRAP_CODE_OUT_OF_FUEL = 11,
};
wasm_trap_t *wasmtime_trap_new(const char *msg, size_t msg_len);
bool wasmtime_trap_code(const wasm_trap_t *, wasmtime_trap_code_t *code);

// ---- wasmtime/linker.h, wasmtime/config.h: InstancePre and pooling ----
// (with what they need from wasmtime/instance.h, wasmtime/func.h and
// wasmtime/store.h; WASMTIME_CONFIG_PROP and
// WASMTIME_POOLING_ALLOCATION_CONFIG_PROP expanded)

typedef struct wasmtime_linker wasmtime_linker_t;
wasmtime_linker_t *wasmtime_linker_new(wasm_engine_t *engine);
void wasmtime_linker_delete(wasmtime_linker_t *linker);
wasmtime_error_t *wasmtime_linker_define_func_unchecked(
    wasmtime_linker_t *linker, const char *module, size_t module_len,
    const char *name, size_t name_len, const wasm_functype_t *ty,
    wasmtime_func_unchecked_callback_t cb, void *data,
    void (*finalizer)(void *));
typedef struct wasmtime_instance_pre wasmtime_instance_pre_t;
wasmtime_error_t *
wasmtime_linker_instantiate_pre(const wasmtime_linker_t *linker,
                                const wasmtime_module_t *module,
                                wasmtime_instance_pre_t **instance_pre);
void wasmtime_instance_pre_delete(wasmtime_instance_pre_t *instance_pre);
wasmtime_error_t *wasmtime_instance_pre_instantiate(
    const wasmtime_instance_pre_t *instance_pre, wasmtime_context_t *store,
    wasmtime_instance_t *instance, wasm_trap_t **trap_ptr);
wasmtime_context_t *wasmtime_caller_context(wasmtime_caller_t *caller);
void *wasmtime_context_get_data(const wasmtime_context_t *context);

void wasmtime_config_memory_init_cow_set(wasm_config_t *, bool);
typedef struct wasmtime_pooling_allocation_config_t
    wasmtime_pooling_allocation_config_t;
wasmtime_pooling_allocation_config_t *wasmtime_pooling_allocation_config_new();
void wasmtime_pooling_allocation_config_delete(
    wasmtime_pooling_allocation_config_t *);
void wasmtime_pooling_allocation_config_total_core_instances_set(
    wasmtime_pooling_allocation_config_t *, uint32_t);
void wasmtime_pooling_allocation_config_total_memories_set(
    wasmtime_pooling_allocation_config_t *, uint32_t);
void wasmtime_pooling_allocation_config_total_tables_set(
    wasmtime_pooling_allocation_config_t *, uint32_t);
void wasmtime_pooling_allocation_config_max_memory_size_set(
    wasmtime_pooling_allocation_config_t *, size_t);
void wasmtime_pooling_allocation_config_max_memories_per_module_set(
    wasmtime_pooling_allocation_config_t *, uint32_t);
void wasmtime_pooling_allocation_config_max_tables_per_module_set(
    wasmtime_pooling_allocation_config_t *, uint32_t);
void wasmtime_pooling_allocation_config_table_elements_set(
    wasmtime_pooling_allocation_config_t *, size_t);
void wasmtime_pooling_allocation_strategy_set(
    wasm_config_t *, const wasmtime_pooling_allocation_config_t *);

// ---- anywasm: the C side of the backend (shim.c) ----

// aw_mem is one exported memory of an instance. base is set when the export
// is resolved and never changes (the engine is configured with
// memory_may_move false). Once Go has handed out the memory (watched), C
// refreshes size after every guest call and before every host callback, so
// Go reads both without crossing cgo; until then nothing reads size and it
// is not kept current.
typedef struct aw_mem {
  wasmtime_memory_t mem;
  uint8_t *base;
  size_t size;
  const char *name; // owned (malloc)
  size_t name_len;
  bool resolved;
  bool watched;
} aw_mem;

// aw_env is the env of one imported host function: its instance and its
// import index.
typedef struct aw_inst aw_inst;
typedef struct aw_env {
  aw_inst *in;
  uint32_t index;
} aw_env;

// aw_inst is the C side of an instance. It is allocated with calloc and
// owned by the Go instance; it holds no Go pointers.
struct aw_inst {
  wasmtime_store_t *store;
  wasmtime_context_t *ctx;
  wasmtime_instance_t instance;
  bool ready; // instance is set (instantiation returned)
  uint32_t slot; // index of the Go instance in the callback table

  // The caller of the innermost running host callback, for export lookups
  // before instantiation returns (start functions). NULL outside callbacks.
  wasmtime_caller_t *caller;

  // Call buffer of wasmtime_func_call_unchecked, sized for the largest
  // exported signature; nested calls reuse it (arguments are read on entry,
  // results written on return).
  wasmtime_val_raw_t *buf;
  size_t buf_len;

  aw_mem *mems;
  size_t nmems;
  bool watched; // some memory is watched: refresh on transitions

  wasmtime_func_t *funcs; // one per exported function, filled on lookup
  size_t nfuncs;

  aw_env *envs; // one per import
  size_t nenvs;

  uint64_t fuel; // per top-level call, 0 for none

  // Out parameters of the last call.
  wasm_trap_t *trap;
  wasmtime_error_t *err;
};

// Flags of aw_call.
#define AW_SET_FUEL 1u // set the fuel before the call (top-level calls)
#define AW_ARM 2u      // arm the epoch deadline for this call

const char *aw_version(void);
aw_inst *aw_inst_new(wasm_engine_t *engine, uint32_t slot, size_t buf_len,
                     size_t nfuncs, size_t nmems, int64_t memory_limit,
                     bool epoch, uint64_t fuel);
void aw_inst_delete(aw_inst *in);
int aw_set_mem_name(aw_inst *in, size_t i, const char *name, size_t len);
int aw_instantiate(aw_inst *in, wasmtime_module_t *module,
                   wasm_functype_t **types, size_t n, unsigned flags);
wasmtime_error_t *aw_linker_define(wasmtime_linker_t *l, const char *module,
                                   size_t module_len, const char *name,
                                   size_t name_len, const wasm_functype_t *ty,
                                   uint32_t index);
int aw_instantiate_pre(aw_inst *in, const wasmtime_instance_pre_t *pre,
                       unsigned flags);
// aw_call takes the instance as an integer: cgo checks every pointer
// argument of a call, which costs more than the rest of the call's Go side.
int aw_call(uintptr_t in, size_t func, size_t n, unsigned flags);
int aw_call_plain(uintptr_t in, size_t func, size_t n); // aw_call, no flags
int aw_lookup_func(aw_inst *in, size_t k, const char *name, size_t len);
int64_t aw_mem_grow(aw_inst *in, size_t i, uint64_t delta);
void aw_refresh(aw_inst *in);
void aw_watch(aw_inst *in, size_t i);
wasm_functype_t *aw_functype(const uint8_t *params, size_t np,
                             const uint8_t *results, size_t nr);
int aw_take_message(aw_inst *in, wasm_byte_vec_t *out);
void aw_error_message(wasmtime_error_t *err, wasm_byte_vec_t *out);

// aw_frame is one frame of a backtrace.
typedef struct aw_frame {
  uint32_t func_index;
  uint64_t module_offset;
} aw_frame;
// aw_module_shape writes the shape of m's imports and exports (see package
// engine/internal/cshape) to out, up to cap bytes, and returns its length.
size_t aw_module_shape(const wasmtime_module_t *m, uint8_t *out, size_t cap);

size_t aw_frames(aw_inst *in, wasm_engine_t *engine, aw_frame *out,
                 size_t max, bool nested);

#endif
