//go:build cgo

// Setup of the raw benchmark path and its two host function trampolines,
// each of which calls one exported Go function.

#include <stdlib.h>
#include <string.h>

#include "_cgo_export.h"
#include "raw.h"

static wasm_trap_t *nop_cb(void *env, wasmtime_caller_t *caller,
                           wasmtime_val_raw_t *args, size_t n) {
  rawNop();
  return NULL;
}

static wasm_trap_t *add_cb(void *env, wasmtime_caller_t *caller,
                           wasmtime_val_raw_t *args, size_t n) {
  rawAdd(args);
  return NULL;
}

static wasm_functype_t *functype(int np, const wasm_valkind_t *p, int nr,
                                 const wasm_valkind_t *r) {
  wasm_valtype_t *v[4];
  wasm_valtype_vec_t pv, rv;
  for (int i = 0; i < np; i++) {
    v[i] = wasm_valtype_new(p[i]);
  }
  wasm_valtype_vec_new(&pv, np, v);
  for (int i = 0; i < nr; i++) {
    v[i] = wasm_valtype_new(r[i]);
  }
  wasm_valtype_vec_new(&rv, nr, v);
  return wasm_functype_new(&pv, &rv);
}

raw *raw_new(const uint8_t *wasm, size_t len) {
  raw *r = calloc(1, sizeof *r);
  r->engine = wasm_engine_new();
  wasmtime_module_t *m = NULL;
  wasmtime_error_t *err = wasmtime_module_new(r->engine, wasm, len, &m);
  if (err != NULL) {
    wasmtime_error_delete(err);
    wasm_engine_delete(r->engine);
    free(r);
    return NULL;
  }
  r->store = wasmtime_store_new(r->engine, NULL, NULL);
  r->ctx = wasmtime_store_context(r->store);
  static const wasm_valkind_t addp[] = {WASM_I32, WASM_I64};
  static const wasm_valkind_t addr[] = {WASM_I64};
  wasm_functype_t *nopt = functype(0, NULL, 0, NULL);
  wasm_functype_t *addt = functype(2, addp, 1, addr);
  wasmtime_extern_t imports[2];
  imports[0].kind = WASMTIME_EXTERN_FUNC;
  wasmtime_func_new_unchecked(r->ctx, nopt, nop_cb, NULL, NULL,
                              &imports[0].of.func);
  imports[1].kind = WASMTIME_EXTERN_FUNC;
  wasmtime_func_new_unchecked(r->ctx, addt, add_cb, NULL, NULL,
                              &imports[1].of.func);
  wasm_functype_delete(nopt);
  wasm_functype_delete(addt);
  wasmtime_instance_t inst;
  err = wasmtime_instance_new(r->ctx, m, imports, 2, &inst, &r->trap);
  wasmtime_module_delete(m);
  if (err != NULL || r->trap != NULL) {
    if (err != NULL) {
      wasmtime_error_delete(err);
    }
    raw_delete(r);
    return NULL;
  }
  static const char *names[] = {"empty", "add", "loop_nop", "loop_add",
                                "loop_empty"};
  for (int i = 0; i < 5; i++) {
    wasmtime_extern_t e;
    if (!wasmtime_instance_export_get(r->ctx, &inst, names[i],
                                      strlen(names[i]), &e)) {
      raw_delete(r);
      return NULL;
    }
    r->fn[i] = e.of.func;
  }
  return r;
}

// raw_call calls export fn with n values in r->buf and reports success. r
// is passed as an integer: cgo checks pointer arguments, which costs more
// than the rest of the call's Go side.
int raw_call(uintptr_t rp, int fn, size_t n) {
  raw *r = (raw *)rp;
  wasmtime_error_t *err =
      wasmtime_func_call_unchecked(r->ctx, &r->fn[fn], r->buf, n, &r->trap);
  if (err != NULL) {
    wasmtime_error_delete(err);
    return 0;
  }
  return r->trap == NULL;
}

void raw_delete(raw *r) {
  if (r->trap != NULL) {
    wasm_trap_delete(r->trap);
  }
  wasmtime_store_delete(r->store);
  wasm_engine_delete(r->engine);
  free(r);
}
