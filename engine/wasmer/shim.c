//go:build cgo

#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "shim.h"
#include "_cgo_export.h"
#include "../internal/cshape/cshape.h"

// aw_symbol_path returns the file that defines wasm_engine_new (which 0) or
// wasmer_version (which 1), as the dynamic linker resolved them.
const char *aw_symbol_path(int which) {
  void *p = which == 0 ? (void *)&wasm_engine_new : (void *)&wasmer_version;
  Dl_info info;
  if (dladdr(p, &info) == 0 || info.dli_fname == NULL) {
    return "";
  }
  return info.dli_fname;
}

// The metering functions are looked up at run time: the linux-aarch64
// libwasmer.so that wasmer-go v1.0.4 ships is built without middlewares.
// Their types are the header's (capi.h declares them; __typeof__ does not
// reference the symbols, so nothing links against them).
static struct {
  __typeof__(wasmer_metering_new) *metering_new;
  __typeof__(wasmer_metering_as_middleware) *metering_as_middleware;
  __typeof__(wasm_config_push_middleware) *config_push_middleware;
  __typeof__(wasmer_metering_get_remaining_points) *get_remaining_points;
  __typeof__(wasmer_metering_points_are_exhausted) *points_are_exhausted;
  __typeof__(wasmer_metering_set_remaining_points) *set_remaining_points;
} metering;

// aw_metering_init resolves the metering functions; it returns 1 if the
// library has them all.
int aw_metering_init(void) {
  metering.metering_new = dlsym(RTLD_DEFAULT, "wasmer_metering_new");
  metering.metering_as_middleware = dlsym(RTLD_DEFAULT, "wasmer_metering_as_middleware");
  metering.config_push_middleware = dlsym(RTLD_DEFAULT, "wasm_config_push_middleware");
  metering.get_remaining_points = dlsym(RTLD_DEFAULT, "wasmer_metering_get_remaining_points");
  metering.points_are_exhausted = dlsym(RTLD_DEFAULT, "wasmer_metering_points_are_exhausted");
  metering.set_remaining_points = dlsym(RTLD_DEFAULT, "wasmer_metering_set_remaining_points");
  return metering.metering_new != NULL && metering.metering_as_middleware != NULL &&
         metering.config_push_middleware != NULL && metering.get_remaining_points != NULL &&
         metering.points_are_exhausted != NULL && metering.set_remaining_points != NULL;
}

static uint64_t aw_cost(wasmer_parser_operator_t op) {
  (void)op;
  return 1;
}

// aw_engine_new returns an engine compiling with compiler (a
// wasmer_compiler_t); with fuel > 0 it meters every operator at one point,
// starting instances (and their start function) with fuel points.
wasm_engine_t *aw_engine_new(int compiler, uint64_t fuel) {
  if (fuel > 0 && metering.metering_new == NULL) {
    return NULL;
  }
  wasm_config_t *cfg = wasm_config_new();
  if (cfg == NULL) {
    return NULL;
  }
  wasm_config_set_compiler(cfg, (enum wasmer_compiler_t)compiler);
  if (fuel > 0) {
    wasmer_metering_t *m = metering.metering_new(fuel, aw_cost);
    metering.config_push_middleware(cfg, metering.metering_as_middleware(m));
  }
  return wasm_engine_new_with_config(cfg);
}

// aw_last_error returns Wasmer's last error on this thread (malloc'd).
char *aw_last_error(void) {
  int n = wasmer_last_error_length();
  if (n <= 0) {
    return strdup("unknown error");
  }
  char *buf = malloc((size_t)n + 1);
  if (buf == NULL) {
    return NULL;
  }
  int got = wasmer_last_error_message(buf, n + 1);
  buf[got > 0 && got <= n ? got : n] = 0;
  return buf;
}

wasm_module_t *aw_compile(wasm_store_t *store, const char *wasm, size_t n, char **err) {
  wasm_byte_vec_t v = {n, (wasm_byte_t *)wasm};
  wasm_module_t *m = wasm_module_new(store, &v);
  if (m == NULL) {
    *err = aw_last_error();
  }
  return m;
}

wasm_module_t *aw_deserialize(wasm_store_t *store, const char *b, size_t n, char **err) {
  wasm_byte_vec_t v = {n, (wasm_byte_t *)b};
  wasm_module_t *m = wasm_module_deserialize(store, &v);
  if (m == NULL) {
    *err = aw_last_error();
  }
  return m;
}

void aw_serialize(const wasm_module_t *m, wasm_byte_vec_t *out) {
  out->size = 0;
  out->data = NULL;
  wasm_module_serialize(m, out);
}

// aw_refresh updates the cached base and size of the guest memory. Memory
// only moves when it grows, so the base is read again only when the size
// changed; and a module without memory.grow cannot change its memory's size
// (aw_memory_grow refreshes itself).
static void aw_refresh(aw_inst *in) {
  if (in->may_grow && in->memory != NULL) {
    size_t size = wasm_memory_data_size(in->memory);
    if (size != in->mem_size || in->mem_base == NULL) {
      in->mem_base = wasm_memory_data(in->memory);
      in->mem_size = size;
    }
  }
}

// aw_trampoline is the C function of every host function.
//
// Wasmer 2.0's host function wrapper allocates the args and results vectors
// of every call and never frees them (its wasm_val_vec_t has no destructor):
// ~80 bytes per call of a function with two parameters and a result. So
// the trampoline frees the args, and returns the results in the env's own
// buffer after freeing Wasmer's (Wasmer reads them from results->data right
// after the callback returns, before any other call can reuse the buffer).
static wasm_trap_t *aw_trampoline(void *env, const wasm_val_vec_t *args, wasm_val_vec_t *results) {
  aw_hostenv *e = env;
  aw_inst *in = e->inst;
  aw_refresh(in);
  int failed = awHostCall(in->id, e->index, args->data, results->data);
  if (args->size > 0) {
    wasm_val_vec_delete((wasm_val_vec_t *)args);
  }
  if (failed) {
    static const char msg[] = "anywasm: host function failed";
    wasm_message_t m = {sizeof msg, (wasm_byte_t *)msg};
    return wasm_trap_new(in->store, &m);
  }
  if (results->size > 0 && results->size == e->nresults) {
    for (size_t i = 0; i < e->nresults; i++) {
      e->results[i] = results->data[i];
    }
    wasm_val_vec_delete(results);
    results->size = e->nresults;
    results->data = e->results;
  }
  return NULL;
}

static wasm_valtype_vec_t aw_valtypes(size_t n, const uint8_t *kinds) {
  wasm_valtype_t *ts[n > 0 ? n : 1];
  for (size_t i = 0; i < n; i++) {
    ts[i] = wasm_valtype_new(kinds[i]);
  }
  wasm_valtype_vec_t v;
  wasm_valtype_vec_new(&v, n, ts);
  return v;
}

// aw_functype_new makes a function type from its parameter count, the
// parameter kinds, its result count and the result kinds.
wasm_functype_t *aw_functype_new(const uint8_t *sig) {
  size_t np = *sig++;
  wasm_valtype_vec_t params = aw_valtypes(np, sig);
  sig += np;
  size_t nr = *sig++;
  wasm_valtype_vec_t results = aw_valtypes(nr, sig);
  return wasm_functype_new(&params, &results);
}

// aw_inst_new creates the host functions of an instance, one per import,
// of the given types (wasm_functype_t pointers).
aw_inst *aw_inst_new(wasm_store_t *store, uint32_t id, size_t nimports, const uintptr_t *types, const uint8_t *nresults) {
  aw_inst *in = calloc(1, sizeof *in);
  if (in == NULL) {
    return NULL;
  }
  in->store = store;
  in->id = id;
  in->nimports = nimports;
  in->imports = calloc(nimports > 0 ? nimports : 1, sizeof *in->imports);
  in->envs = calloc(nimports > 0 ? nimports : 1, sizeof *in->envs);
  if (in->imports == NULL || in->envs == NULL) {
    aw_inst_delete(in);
    return NULL;
  }
  for (size_t i = 0; i < nimports; i++) {
    in->envs[i].inst = in;
    in->envs[i].index = (uint32_t)i;
    in->envs[i].nresults = nresults[i];
    if (nresults[i] > 0) {
      in->envs[i].results = calloc(nresults[i], sizeof(wasm_val_t));
      if (in->envs[i].results == NULL) {
        aw_inst_delete(in);
        return NULL;
      }
    }
    in->imports[i] = wasm_func_new_with_env(store, (const wasm_functype_t *)types[i], aw_trampoline, &in->envs[i], NULL);
    if (in->imports[i] == NULL) {
      aw_inst_delete(in);
      return NULL;
    }
  }
  return in;
}

// aw_inst_start instantiates m (running its start function). It returns 0 on
// success, 1 with *trap set if the start function trapped, 2 with *err set on
// any other error.
int aw_inst_start(aw_inst *in, const wasm_module_t *m, int may_grow, wasm_trap_t **trap, char **err) {
  wasm_extern_t *ext[in->nimports > 0 ? in->nimports : 1];
  for (size_t i = 0; i < in->nimports; i++) {
    ext[i] = wasm_func_as_extern(in->imports[i]);
  }
  wasm_extern_vec_t imports = {in->nimports, ext};
  *trap = NULL;
  in->may_grow = 1; // until the memory is known
  in->instance = wasm_instance_new(in->store, m, &imports, trap);
  if (in->instance == NULL) {
    if (*trap != NULL) {
      return 1;
    }
    *err = aw_last_error();
    return 2;
  }
  wasm_instance_exports(in->instance, &in->exports);
  for (size_t i = 0; i < in->exports.size; i++) {
    if (wasm_extern_kind(in->exports.data[i]) == WASM_EXTERN_MEMORY) {
      in->memory = wasm_extern_as_memory(in->exports.data[i]);
      break;
    }
  }
  aw_refresh(in);
  in->may_grow = may_grow;
  return 0;
}

void aw_inst_delete(aw_inst *in) {
  if (in == NULL) {
    return;
  }
  if (in->exports.data != NULL) {
    wasm_extern_vec_delete(&in->exports);
  }
  if (in->instance != NULL) {
    wasm_instance_delete(in->instance);
  }
  if (in->imports != NULL) {
    for (size_t i = 0; i < in->nimports; i++) {
      if (in->imports[i] != NULL) {
        wasm_func_delete(in->imports[i]);
      }
    }
  }
  free(in->imports);
  if (in->envs != NULL) {
    for (size_t i = 0; i < in->nimports; i++) {
      free(in->envs[i].results);
    }
  }
  free(in->envs);
  free(in);
}

// aw_call_new prepares calls of export export_index, which must be a function
// of the given signature: the kinds of the values are filled in once.
aw_call *aw_call_new(aw_inst *in, size_t export_index, size_t np, const uint8_t *pk, size_t nr, const uint8_t *rk) {
  if (export_index >= in->exports.size) {
    return NULL;
  }
  wasm_extern_t *e = in->exports.data[export_index];
  if (wasm_extern_kind(e) != WASM_EXTERN_FUNC) {
    return NULL;
  }
  aw_call *c = calloc(1, sizeof *c);
  if (c == NULL) {
    return NULL;
  }
  c->vals = calloc(np + nr > 0 ? np + nr : 1, sizeof(wasm_val_t));
  if (c->vals == NULL) {
    free(c);
    return NULL;
  }
  c->func = wasm_extern_as_func(e);
  for (size_t i = 0; i < np; i++) {
    c->vals[i].kind = pk[i];
  }
  for (size_t i = 0; i < nr; i++) {
    c->vals[np + i].kind = rk[i];
  }
  c->args.size = np;
  c->args.data = c->vals;
  c->results.size = nr;
  c->results.data = c->vals + np;
  return c;
}

void aw_call_delete(aw_call *c) {
  if (c != NULL) {
    free(c->vals);
    free(c);
  }
}

wasm_trap_t *aw_call_run(uintptr_t inp, uintptr_t cp) {
  aw_inst *in = (aw_inst *)inp;
  aw_call *c = (aw_call *)cp;
  wasm_trap_t *t = wasm_func_call(c->func, &c->args, &c->results);
  aw_refresh(in);
  return t;
}

// aw_call_fuel is aw_call_run with fuel points; a nested call (from a host
// function) restores the outer call's remaining points when it returns.
wasm_trap_t *aw_call_fuel(uintptr_t inp, uintptr_t cp, uint64_t fuel, int nested) {
  aw_inst *in = (aw_inst *)inp;
  aw_call *c = (aw_call *)cp;
  uint64_t outer = 0;
  if (nested) {
    outer = metering.get_remaining_points(in->instance);
  }
  metering.set_remaining_points(in->instance, fuel);
  wasm_trap_t *t = wasm_func_call(c->func, &c->args, &c->results);
  in->exhausted = t != NULL && metering.points_are_exhausted(in->instance);
  if (nested && !in->exhausted) {
    metering.set_remaining_points(in->instance, outer);
  }
  aw_refresh(in);
  return t;
}

// aw_trap_frames copies to out the frames, innermost first, of the trap's
// backtrace, at most max, and returns how many it copied. Wasmer 2.0 fills
// in the function index (of the module's function index space) and the
// module offset; a trap raised by a host function has no frames.
size_t aw_trap_frames(const wasm_trap_t *t, aw_frame *out, size_t max) {
  wasm_frame_vec_t v = {0, NULL};
  wasm_trap_trace(t, &v);
  size_t n = v.size < max ? v.size : max;
  for (size_t i = 0; i < n; i++) {
    out[i].func_index = wasm_frame_func_index(v.data[i]);
    out[i].module_offset = wasm_frame_module_offset(v.data[i]);
  }
  if (v.data != NULL) {
    wasm_frame_vec_delete(&v);
  }
  return n;
}

// aw_trap_take returns the trap's message (malloc'd, without a trailing NUL)
// and deletes the trap.
char *aw_trap_take(wasm_trap_t *t, size_t *n) {
  wasm_message_t msg = {0, NULL};
  wasm_trap_message(t, &msg);
  size_t len = msg.size;
  while (len > 0 && msg.data[len - 1] == 0) {
    len--;
  }
  char *s = malloc(len + 1);
  if (s != NULL) {
    memcpy(s, msg.data, len);
    s[len] = 0;
  }
  *n = s != NULL ? len : 0;
  if (msg.data != NULL) {
    wasm_byte_vec_delete(&msg);
  }
  wasm_trap_delete(t);
  return s;
}

int aw_memory_grow(aw_inst *in, uint32_t delta, uint32_t *prev) {
  if (in->memory == NULL) {
    return 0;
  }
  *prev = wasm_memory_size(in->memory);
  int ok = delta == 0 || wasm_memory_grow(in->memory, delta);
  in->mem_base = wasm_memory_data(in->memory);
  in->mem_size = wasm_memory_data_size(in->memory);
  return ok;
}

// The shape of a module's imports and exports (engine/internal/cshape).
size_t aw_module_shape(const wasm_module_t *m, uint8_t *out, size_t cap) {
  wasm_importtype_vec_t im;
  wasm_exporttype_vec_t ex;
  wasm_module_imports(m, &im);
  wasm_module_exports(m, &ex);
  size_t n = aw_shape(&im, &ex, out, cap);
  wasm_importtype_vec_delete(&im);
  wasm_exporttype_vec_delete(&ex);
  return n;
}
