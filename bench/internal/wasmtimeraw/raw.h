// The raw benchmark path's C side, over Wasmtime's C API as declared in
// engine/wasmtime/capi.h (generated from wasmtime-go's headers; a name this
// path needs goes into engine/wasmtime/capi.names).

#ifndef ANYWASM_WASMTIMERAW_H
#define ANYWASM_WASMTIMERAW_H

#include "capi.h"

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
