// The C side of package cshape: the shape of a module's imports and
// exports, written from the standard wasm.h type API that Wasmtime's and
// Wasmer's C APIs both implement. engine/wasmtime/shim.c and
// engine/wasmer/shim.c include it after their own capi.h (which declares
// the wasm_* functions used here) and call aw_shape with the vectors their
// runtime's module returns. The form is package cshape's (cshape.go).

#ifndef ANYWASM_CSHAPE_H
#define ANYWASM_CSHAPE_H

#include <string.h>

static inline size_t aw_put(uint8_t *out, size_t cap, size_t n, const void *p,
                            size_t len) {
  if (n <= cap && len <= cap - n) {
    memcpy(out + n, p, len);
  }
  return n + len;
}

static inline size_t aw_put_u32(uint8_t *out, size_t cap, size_t n, size_t v) {
  uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16),
                  (uint8_t)(v >> 24)};
  return aw_put(out, cap, n, b, 4);
}

static inline size_t aw_put_name(uint8_t *out, size_t cap, size_t n,
                                 const wasm_name_t *s) {
  n = aw_put_u32(out, cap, n, s->size);
  return aw_put(out, cap, n, s->data, s->size);
}

static inline size_t aw_put_extern(uint8_t *out, size_t cap, size_t n,
                                   const wasm_externtype_t *t) {
  uint8_t k = wasm_externtype_kind(t);
  n = aw_put(out, cap, n, &k, 1);
  if (k != WASM_EXTERN_FUNC) {
    return n;
  }
  const wasm_functype_t *f = wasm_externtype_as_functype_const(t);
  const wasm_valtype_vec_t *vs[2] = {wasm_functype_params(f),
                                     wasm_functype_results(f)};
  for (int j = 0; j < 2; j++) {
    n = aw_put_u32(out, cap, n, vs[j]->size);
    for (size_t i = 0; i < vs[j]->size; i++) {
      uint8_t v = wasm_valtype_kind(vs[j]->data[i]);
      n = aw_put(out, cap, n, &v, 1);
    }
  }
  return n;
}

// aw_shape writes the shape of im and ex to out (at most cap bytes) and
// returns its length, which may exceed cap: the caller retries with a
// buffer that large.
static inline size_t aw_shape(const wasm_importtype_vec_t *im,
                              const wasm_exporttype_vec_t *ex, uint8_t *out,
                              size_t cap) {
  size_t n = aw_put_u32(out, cap, 0, im->size);
  for (size_t i = 0; i < im->size; i++) {
    n = aw_put_name(out, cap, n, wasm_importtype_module(im->data[i]));
    n = aw_put_name(out, cap, n, wasm_importtype_name(im->data[i]));
    n = aw_put_extern(out, cap, n, wasm_importtype_type(im->data[i]));
  }
  n = aw_put_u32(out, cap, n, ex->size);
  for (size_t i = 0; i < ex->size; i++) {
    n = aw_put_name(out, cap, n, wasm_exporttype_name(ex->data[i]));
    n = aw_put_extern(out, cap, n, wasm_exporttype_type(ex->data[i]));
  }
  return n;
}

#endif // ANYWASM_CSHAPE_H
