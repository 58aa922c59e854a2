//go:build cgo

// The C side of the wasmer backend: small helpers so that each Go operation
// crosses cgo once, and the trampoline of every host function.

#ifndef ANYWASM_WASMER_SHIM_H
#define ANYWASM_WASMER_SHIM_H

#include "capi.h"

struct aw_inst;

// The env of one imported host function: its instance and import index,
// and the buffer its results are returned in (see aw_trampoline).
typedef struct aw_hostenv {
  struct aw_inst *inst;
  uint32_t index;
  uint32_t nresults;
  wasm_val_t *results;
} aw_hostenv;

// An instance and everything it owns on the C side.
typedef struct aw_inst {
  wasm_store_t *store;          // borrowed: process-wide, never freed
  wasm_instance_t *instance;    // owned
  wasm_extern_vec_t exports;    // owned
  wasm_memory_t *memory;        // borrowed from exports; NULL if none exported
  byte_t *mem_base;             // refreshed after every call into the guest
  size_t mem_size;              // and at the start of every host callback
  uint32_t id;                  // registry slot of the Go instance
  size_t nimports;
  wasm_func_t **imports;        // owned
  aw_hostenv *envs;             // owned
  int exhausted;                // set by aw_call_fuel: the fuel ran out
  int may_grow;                 // 0 if the code has no memory.grow
} aw_inst;

// A call of one exported function with preallocated argument and result
// buffers: vals[0:nparams] are the arguments, the rest the results.
typedef struct aw_call {
  wasm_func_t *func;            // borrowed from the instance's exports
  wasm_val_vec_t args;
  wasm_val_vec_t results;
  wasm_val_t *vals;
} aw_call;

const char *aw_symbol_path(int which);
int aw_metering_init(void);
wasm_engine_t *aw_engine_new(int compiler, uint64_t fuel);
char *aw_last_error(void);
wasm_module_t *aw_compile(wasm_store_t *store, const char *wasm, size_t n, char **err);
wasm_module_t *aw_deserialize(wasm_store_t *store, const char *b, size_t n, char **err);
void aw_serialize(const wasm_module_t *m, wasm_byte_vec_t *out);
// aw_module_shape writes the shape of m's imports and exports (see package
// engine/internal/cshape) to out, up to cap bytes, and returns its length.
size_t aw_module_shape(const wasm_module_t *m, uint8_t *out, size_t cap);
wasm_functype_t *aw_functype_new(const uint8_t *sig);
aw_inst *aw_inst_new(wasm_store_t *store, uint32_t id, size_t nimports, const uintptr_t *types, const uint8_t *nresults);
int aw_inst_start(aw_inst *in, const wasm_module_t *m, int may_grow, wasm_trap_t **trap, char **err);
void aw_inst_delete(aw_inst *in);
aw_call *aw_call_new(aw_inst *in, size_t export_index, size_t np, const uint8_t *pk, size_t nr, const uint8_t *rk);
void aw_call_delete(aw_call *c);
// The call functions take their pointers as integers so that cgo does not
// check them (they point to C memory) on every call.
wasm_trap_t *aw_call_run(uintptr_t in, uintptr_t c);
wasm_trap_t *aw_call_fuel(uintptr_t in, uintptr_t c, uint64_t fuel, int nested);
char *aw_trap_take(wasm_trap_t *t, size_t *n);

// One frame of a trap's backtrace.
typedef struct aw_frame {
  uint32_t func_index;
  uint64_t module_offset;
} aw_frame;
size_t aw_trap_frames(const wasm_trap_t *t, aw_frame *out, size_t max);
int aw_memory_grow(aw_inst *in, uint32_t delta, uint32_t *prev);

#endif
