//go:build cgo

#include <stddef.h>
#include "raw.h"
#include "_cgo_export.h"

static wasm_store_t *store;
static wasm_instance_t *instance;
static wasm_extern_vec_t exports;
static wasm_func_t *f_empty, *f_add, *f_loop_nop, *f_loop_add;

static wasm_trap_t *cb_nop(const wasm_val_vec_t *args, wasm_val_vec_t *results) {
  rawHostNop();
  return NULL;
}

// Wasmer 2.0 never frees the args and results vectors it passes to a host
// function (~80 bytes per call here): a correct program frees them, so the
// baseline does too, handing the result back in a static buffer.
static wasm_val_t add_result[1];

static wasm_trap_t *cb_add(const wasm_val_vec_t *args, wasm_val_vec_t *results) {
  int64_t r = rawHostAdd(args->data[0].of.i32, args->data[1].of.i64);
  wasm_val_vec_delete((wasm_val_vec_t *)args);
  wasm_val_vec_delete(results);
  add_result[0].kind = WASM_I64;
  add_result[0].of.i64 = r;
  results->size = 1;
  results->data = add_result;
  return NULL;
}

static wasm_functype_t *functype(size_t np, const wasm_valkind_t *p, size_t nr, const wasm_valkind_t *r) {
  wasm_valtype_t *ps[4], *rs[4];
  for (size_t i = 0; i < np; i++) ps[i] = wasm_valtype_new(p[i]);
  for (size_t i = 0; i < nr; i++) rs[i] = wasm_valtype_new(r[i]);
  wasm_valtype_vec_t pv, rv;
  wasm_valtype_vec_new(&pv, np, ps);
  wasm_valtype_vec_new(&rv, nr, rs);
  return wasm_functype_new(&pv, &rv);
}

// raw_setup instantiates the calls guest with env.nop and env.add; exports
// are, in order: memory, empty, add, loop_nop, loop_add, loop_empty.
int raw_setup(const char *wasm, size_t n) {
  store = wasm_store_new(wasm_engine_new());
  wasm_byte_vec_t bytes = {n, (wasm_byte_t *)wasm};
  wasm_module_t *m = wasm_module_new(store, &bytes);
  if (m == NULL) return 1;
  const wasm_valkind_t addp[2] = {WASM_I32, WASM_I64}, addr[1] = {WASM_I64};
  wasm_functype_t *tnop = functype(0, NULL, 0, NULL), *tadd = functype(2, addp, 1, addr);
  wasm_extern_t *imports[2] = {
    wasm_func_as_extern(wasm_func_new(store, tnop, cb_nop)),
    wasm_func_as_extern(wasm_func_new(store, tadd, cb_add)),
  };
  wasm_extern_vec_t iv = {2, imports};
  wasm_trap_t *trap = NULL;
  instance = wasm_instance_new(store, m, &iv, &trap);
  if (instance == NULL) return 2;
  wasm_instance_exports(instance, &exports);
  if (exports.size != 6) return 3;
  f_empty = wasm_extern_as_func(exports.data[1]);
  f_add = wasm_extern_as_func(exports.data[2]);
  f_loop_nop = wasm_extern_as_func(exports.data[3]);
  f_loop_add = wasm_extern_as_func(exports.data[4]);
  return 0;
}

void raw_call_empty(void) {
  wasm_val_t none[1];
  wasm_val_vec_t args = {0, none}, results = {0, none};
  wasm_trap_t *t = wasm_func_call(f_empty, &args, &results);
  if (t != NULL) wasm_trap_delete(t);
}

int64_t raw_call_add(int32_t a, int64_t b) {
  wasm_val_t in[2] = {{.kind = WASM_I32, .of = {.i32 = a}}, {.kind = WASM_I64, .of = {.i64 = b}}};
  wasm_val_t out[1];
  wasm_val_vec_t args = {2, in}, results = {1, out};
  wasm_trap_t *t = wasm_func_call(f_add, &args, &results);
  if (t != NULL) {
    wasm_trap_delete(t);
    return -1;
  }
  return out[0].of.i64;
}

void raw_loop_nop(int32_t n) {
  wasm_val_t in[1] = {{.kind = WASM_I32, .of = {.i32 = n}}};
  wasm_val_vec_t args = {1, in}, results = {0, in};
  wasm_trap_t *t = wasm_func_call(f_loop_nop, &args, &results);
  if (t != NULL) wasm_trap_delete(t);
}

int64_t raw_loop_add(int32_t n) {
  wasm_val_t in[1] = {{.kind = WASM_I32, .of = {.i32 = n}}};
  wasm_val_t out[1];
  wasm_val_vec_t args = {1, in}, results = {1, out};
  wasm_trap_t *t = wasm_func_call(f_loop_add, &args, &results);
  if (t != NULL) {
    wasm_trap_delete(t);
    return -1;
  }
  return out[0].of.i64;
}
