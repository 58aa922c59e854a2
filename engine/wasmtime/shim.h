// The C side of the backend (shim.c), over the part of Wasmtime's C API this
// package uses.
//
// Wasmtime's declarations are in capi.h, generated (go generate, see
// generate.go) from the headers of github.com/bytecodealliance/wasmtime-go/v44,
// whose static libwasmtime.a this package links through its blank import of
// wasmtime-go: to use another function or type of the C API, add its name to
// capi.names and run go generate.

#ifndef ANYWASM_WASMTIME_SHIM_H
#define ANYWASM_WASMTIME_SHIM_H

#include "capi.h"

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
