//go:build cgo

// The C side of the backend: instance state, the call path and the host
// function trampoline. Each Go->C transition on a hot path is one call of a
// function here, which does all its Wasmtime calls at once.

#include <stdlib.h>
#include <string.h>

#include "_cgo_export.h"
#include "shim.h"
#include "../internal/cshape/cshape.h"

// An epoch deadline that is never reached: the engine's epoch only advances
// while calls with a cancellable context run, once per millisecond.
#define AW_NEVER ((uint64_t)1 << 62)

const char *aw_version(void) { return WASMTIME_VERSION; }

static wasmtime_error_t *aw_epoch_cb(wasmtime_context_t *ctx, void *data,
                                     uint64_t *delta,
                                     wasmtime_update_deadline_kind_t *kind) {
  aw_inst *in = data;
  (void)ctx;
  *kind = WASMTIME_UPDATE_DEADLINE_CONTINUE;
  if (awEpoch(in->slot)) {
    return wasmtime_error_new("interrupted: the context of the call is done");
  }
  *delta = 1;
  return NULL;
}

// ---- Instances ----

aw_inst *aw_inst_new(wasm_engine_t *engine, uint32_t slot, size_t buf_len,
                     size_t nfuncs, size_t nmems, int64_t memory_limit,
                     bool epoch, uint64_t fuel) {
  aw_inst *in = calloc(1, sizeof *in);
  if (in == NULL) {
    return NULL;
  }
  in->slot = slot;
  in->fuel = fuel;
  in->buf_len = buf_len > 0 ? buf_len : 1;
  in->buf = calloc(in->buf_len, sizeof(wasmtime_val_raw_t));
  in->nfuncs = nfuncs;
  in->funcs = calloc(nfuncs > 0 ? nfuncs : 1, sizeof(wasmtime_func_t));
  in->nmems = nmems;
  in->mems = calloc(nmems > 0 ? nmems : 1, sizeof(aw_mem));
  if (in->buf == NULL || in->funcs == NULL || in->mems == NULL) {
    aw_inst_delete(in);
    return NULL;
  }
  in->store = wasmtime_store_new(engine, in, NULL);
  in->ctx = wasmtime_store_context(in->store);
  if (memory_limit >= 0) {
    wasmtime_store_limiter(in->store, memory_limit, -1, -1, -1, -1);
  }
  if (epoch) {
    wasmtime_context_set_epoch_deadline(in->ctx, AW_NEVER);
    wasmtime_store_epoch_deadline_callback(in->store, aw_epoch_cb, in, NULL);
  }
  return in;
}

void aw_inst_delete(aw_inst *in) {
  if (in->store != NULL) {
    wasmtime_store_delete(in->store);
  }
  for (size_t i = 0; in->mems != NULL && i < in->nmems; i++) {
    free((void *)in->mems[i].name);
  }
  free(in->mems);
  free(in->funcs);
  free(in->envs);
  free(in->buf);
  free(in);
}

int aw_set_mem_name(aw_inst *in, size_t i, const char *name, size_t len) {
  char *s = malloc(len + 1);
  if (s == NULL) {
    return 0;
  }
  memcpy(s, name, len);
  s[len] = 0;
  in->mems[i].name = s;
  in->mems[i].name_len = len;
  return 1;
}

// aw_resolve looks up the exported memories not found yet, through the
// instance or, during instantiation, through the calling host function's
// caller.
static void aw_resolve(aw_inst *in, wasmtime_caller_t *caller) {
  for (size_t i = 0; i < in->nmems; i++) {
    aw_mem *m = &in->mems[i];
    if (m->resolved) {
      continue;
    }
    wasmtime_extern_t ext;
    bool ok = in->ready ? wasmtime_instance_export_get(in->ctx, &in->instance,
                                                       m->name, m->name_len,
                                                       &ext)
                        : wasmtime_caller_export_get(caller, m->name,
                                                     m->name_len, &ext);
    if (ok && ext.kind == WASMTIME_EXTERN_MEMORY) {
      m->mem = ext.of.memory;
      m->base = wasmtime_memory_data(in->ctx, &m->mem);
      m->size = wasmtime_memory_data_size(in->ctx, &m->mem);
      m->resolved = true;
    }
  }
}

// aw_refresh updates the size of the watched memories: the guest may have
// grown them. Their base does not move (memory_may_move is off).
void aw_refresh(aw_inst *in) {
  for (size_t i = 0; i < in->nmems; i++) {
    aw_mem *m = &in->mems[i];
    if (m->resolved && m->watched) {
      m->size = wasmtime_memory_data_size(in->ctx, &m->mem);
    }
  }
}

// aw_watch starts keeping memory i's size current.
void aw_watch(aw_inst *in, size_t i) {
  in->mems[i].watched = true;
  in->watched = true;
  aw_refresh(in);
}

// aw_host runs import index of in for a host callback.
static inline wasm_trap_t *aw_host(aw_inst *in, uint32_t index,
                                   wasmtime_caller_t *caller,
                                   wasmtime_val_raw_t *args) {
  wasmtime_caller_t *prev = in->caller;
  in->caller = caller;
  if (!in->ready) {
    aw_resolve(in, caller);
  }
  if (in->watched) {
    aw_refresh(in);
  }
  int rc = awHostCall(in->slot, index, args);
  in->caller = prev;
  if (rc != 0) {
    static const char msg[] = "anywasm: host function failed";
    return wasmtime_trap_new(msg, sizeof msg - 1);
  }
  return NULL;
}

// aw_trampoline is the callback of a host function made in one store
// (wasmtime_func_new_unchecked): env is its aw_env.
static wasm_trap_t *aw_trampoline(void *env, wasmtime_caller_t *caller,
                                  wasmtime_val_raw_t *args, size_t n) {
  aw_env *e = env;
  (void)n;
  return aw_host(e->in, e->index, caller, args);
}

// aw_linked_trampoline is the callback of a host function defined in a
// linker (wasmtime_linker_define_func_unchecked), shared by every store
// instantiated from the module's InstancePre: env is the import index, and
// the instance is the store's data (wasmtime_store_new's data argument).
static wasm_trap_t *aw_linked_trampoline(void *env, wasmtime_caller_t *caller,
                                         wasmtime_val_raw_t *args, size_t n) {
  (void)n;
  aw_inst *in = wasmtime_context_get_data(wasmtime_caller_context(caller));
  return aw_host(in, (uint32_t)(uintptr_t)env, caller, args);
}

static int aw_status(aw_inst *in) {
  return in->err != NULL ? 2 : in->trap != NULL ? 1 : 0;
}

static int aw_enter(aw_inst *in, unsigned flags) {
  in->trap = NULL;
  in->err = NULL;
  if (flags & AW_SET_FUEL) {
    in->err = wasmtime_context_set_fuel(in->ctx, in->fuel);
    if (in->err != NULL) {
      return 0;
    }
  }
  if (flags & AW_ARM) {
    wasmtime_context_set_epoch_deadline(in->ctx, 1);
  }
  return 1;
}

static void aw_leave(aw_inst *in, unsigned flags) {
  if (flags & AW_ARM) {
    wasmtime_context_set_epoch_deadline(in->ctx, AW_NEVER);
  }
}

int aw_instantiate(aw_inst *in, wasmtime_module_t *module,
                   wasm_functype_t **types, size_t n, unsigned flags) {
  wasmtime_extern_t *ext = NULL;
  in->trap = NULL;
  in->err = NULL;
  if (n > 0) {
    ext = calloc(n, sizeof *ext);
    in->envs = calloc(n, sizeof *in->envs);
    if (ext == NULL || in->envs == NULL) {
      free(ext);
      in->err = wasmtime_error_new("anywasm: out of memory");
      return 2;
    }
    in->nenvs = n;
  }
  for (size_t i = 0; i < n; i++) {
    in->envs[i].in = in;
    in->envs[i].index = (uint32_t)i;
    ext[i].kind = WASMTIME_EXTERN_FUNC;
    wasmtime_func_new_unchecked(in->ctx, types[i], aw_trampoline, &in->envs[i],
                                NULL, &ext[i].of.func);
  }
  if (aw_enter(in, flags)) {
    in->err = wasmtime_instance_new(in->ctx, module, ext, n, &in->instance,
                                    &in->trap);
    aw_leave(in, flags);
  }
  free(ext);
  if (aw_status(in) == 0) {
    in->ready = true;
    aw_resolve(in, NULL);
  }
  aw_refresh(in);
  return aw_status(in);
}

// ---- InstancePre ----

// aw_linker_define defines import index, module.name of type ty, as a host
// function that calls the instance's import index.
wasmtime_error_t *aw_linker_define(wasmtime_linker_t *l, const char *module,
                                   size_t module_len, const char *name,
                                   size_t name_len, const wasm_functype_t *ty,
                                   uint32_t index) {
  return wasmtime_linker_define_func_unchecked(
      l, module, module_len, name, name_len, ty, aw_linked_trampoline,
      (void *)(uintptr_t)index, NULL);
}

// aw_instantiate_pre instantiates pre in the instance's store: like
// aw_instantiate, without making the host functions and type-checking the
// imports again.
int aw_instantiate_pre(aw_inst *in, const wasmtime_instance_pre_t *pre,
                       unsigned flags) {
  in->trap = NULL;
  in->err = NULL;
  if (aw_enter(in, flags)) {
    in->err =
        wasmtime_instance_pre_instantiate(pre, in->ctx, &in->instance, &in->trap);
    aw_leave(in, flags);
  }
  if (aw_status(in) == 0) {
    in->ready = true;
    aw_resolve(in, NULL);
  }
  aw_refresh(in);
  return aw_status(in);
}

int aw_call_plain(uintptr_t inp, size_t func, size_t n) {
  aw_inst *in = (aw_inst *)inp;
  in->trap = NULL;
  in->err = wasmtime_func_call_unchecked(in->ctx, &in->funcs[func], in->buf, n,
                                         &in->trap);
  if (in->watched) {
    aw_refresh(in);
  }
  return aw_status(in);
}

int aw_call(uintptr_t inp, size_t func, size_t n, unsigned flags) {
  aw_inst *in = (aw_inst *)inp;
  if (aw_enter(in, flags)) {
    in->err = wasmtime_func_call_unchecked(in->ctx, &in->funcs[func], in->buf,
                                           n, &in->trap);
    aw_leave(in, flags);
  }
  if (in->watched) {
    aw_refresh(in);
  }
  return aw_status(in);
}

int aw_lookup_func(aw_inst *in, size_t k, const char *name, size_t len) {
  wasmtime_extern_t ext;
  bool ok;
  if (in->ready) {
    ok = wasmtime_instance_export_get(in->ctx, &in->instance, name, len, &ext);
  } else if (in->caller != NULL) {
    ok = wasmtime_caller_export_get(in->caller, name, len, &ext);
  } else {
    return 0;
  }
  if (!ok || ext.kind != WASMTIME_EXTERN_FUNC) {
    return 0;
  }
  in->funcs[k] = ext.of.func;
  return 1;
}

int64_t aw_mem_grow(aw_inst *in, size_t i, uint64_t delta) {
  uint64_t prev = 0;
  wasmtime_error_t *err =
      wasmtime_memory_grow(in->ctx, &in->mems[i].mem, delta, &prev);
  aw_refresh(in);
  if (err != NULL) {
    wasmtime_error_delete(err);
    return -1;
  }
  return (int64_t)prev;
}

wasm_functype_t *aw_functype(const uint8_t *params, size_t np,
                             const uint8_t *results, size_t nr) {
  wasm_valtype_t **p = calloc(np + nr + 1, sizeof *p);
  if (p == NULL) {
    return NULL;
  }
  for (size_t i = 0; i < np; i++) {
    p[i] = wasm_valtype_new(params[i]);
  }
  for (size_t i = 0; i < nr; i++) {
    p[np + i] = wasm_valtype_new(results[i]);
  }
  wasm_valtype_vec_t pv, rv;
  wasm_valtype_vec_new(&pv, np, p);
  wasm_valtype_vec_new(&rv, nr, p + np);
  free(p);
  return wasm_functype_new(&pv, &rv);
}

// aw_take_message returns the trap's or error's message in out (owned by the
// caller, free with wasm_byte_vec_delete) and the trap code, or -1 when
// there is none; it deletes the trap and the error.
int aw_take_message(aw_inst *in, wasm_byte_vec_t *out) {
  int code = -1;
  out->size = 0;
  out->data = NULL;
  if (in->trap != NULL) {
    wasmtime_trap_code_t c;
    if (wasmtime_trap_code(in->trap, &c)) {
      code = c;
    }
    wasm_trap_message(in->trap, out); // NUL-terminated
    wasm_trap_delete(in->trap);
    in->trap = NULL;
  }
  if (in->err != NULL) {
    if (out->data == NULL) {
      wasmtime_error_message(in->err, out);
    }
    wasmtime_error_delete(in->err);
    in->err = NULL;
  }
  return code;
}

// aw_error_message moves err's message to out and deletes err.
void aw_error_message(wasmtime_error_t *err, wasm_byte_vec_t *out) {
  wasmtime_error_message(err, out);
  wasmtime_error_delete(err);
}

// ---- Backtraces (only on the failure path) ----

// aw_trace returns the backtrace of the last call's trap or error, empty if
// it has none. The caller deletes it with wasm_frame_vec_delete.
static wasm_frame_vec_t aw_trace(wasm_trap_t *trap, wasmtime_error_t *err) {
  wasm_frame_vec_t v = {0, NULL};
  if (trap != NULL) {
    wasm_trap_trace(trap, &v);
  } else if (err != NULL) {
    wasmtime_error_wasm_trace(err, &v);
  }
  return v;
}

// A module whose one function, exported as "p", traps at once:
// (module (func (export "p") unreachable)).
static const uint8_t aw_probe_wasm[] = {
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // header
    0x01, 0x04, 0x01, 0x60, 0x00, 0x00,             // type () -> ()
    0x03, 0x02, 0x01, 0x00,                         // func 0: type 0
    0x07, 0x05, 0x01, 0x01, 'p', 0x00, 0x00,        // export "p"
    0x0a, 0x05, 0x01, 0x03, 0x00, 0x00, 0x0b,       // unreachable
};

// aw_probe returns the backtrace of a call, made now in the store, of a
// function that traps at once: its own frame, then the frames of the calls
// of the store in progress, across the host functions that made the newer
// ones (Wasmtime's backtraces go on through them). Empty if it cannot. It
// compiles and instantiates the probe each time (in the store, which keeps
// it): it runs only when a nested call failed. It may call awEpoch.
static wasm_frame_vec_t aw_probe(aw_inst *in, wasm_engine_t *engine) {
  wasm_frame_vec_t v = {0, NULL};
  wasmtime_module_t *m = NULL;
  wasmtime_error_t *err =
      wasmtime_module_new(engine, aw_probe_wasm, sizeof aw_probe_wasm, &m);
  if (err != NULL) {
    wasmtime_error_delete(err);
    return v;
  }
  wasmtime_instance_t probe;
  wasm_trap_t *trap = NULL;
  err = wasmtime_instance_new(in->ctx, m, NULL, 0, &probe, &trap);
  wasmtime_module_delete(m); // the store keeps the code
  wasmtime_extern_t ext;
  if (err == NULL && trap == NULL &&
      wasmtime_instance_export_get(in->ctx, &probe, "p", 1, &ext) &&
      ext.kind == WASMTIME_EXTERN_FUNC) {
    wasmtime_val_raw_t buf[1];
    err = wasmtime_func_call_unchecked(in->ctx, &ext.of.func, buf, 0, &trap);
    v = aw_trace(trap, err);
  }
  if (trap != NULL) {
    wasm_trap_delete(trap);
  }
  if (err != NULL) {
    wasmtime_error_delete(err);
  }
  return v;
}

static bool aw_same_frame(const wasm_frame_t *a, const wasm_frame_t *b) {
  return wasm_frame_func_index(a) == wasm_frame_func_index(b) &&
         wasm_frame_module_offset(a) == wasm_frame_module_offset(b);
}

// aw_own_frames returns how many of the frames of t, the backtrace of a call
// made by a host function of the store, are that call's own: t lists them,
// then the frames of the enclosing calls, which the backtrace p of a probe
// made now lists after the probe's own frame. Both backtraces stop at the
// same number of frames (20 by default), so:
//  - if p is shorter than t, p has all the enclosing frames: count them;
//  - else the enclosing frames in t are the longest tail of t (never its
//    first frame) that p lists from its second frame on. A frame of the
//    call's own that matched would have to be at the same instruction as
//    the enclosing call's innermost frame, a call of a host function: only
//    a call_indirect reaching host functions through a table could be,
//    and then fewer frames are kept.
static size_t aw_own_frames(const wasm_frame_vec_t *t,
                            const wasm_frame_vec_t *p) {
  if (p->size == 0) {
    return t->size; // the probe failed: cut nothing
  }
  if (p->size < t->size) {
    return t->size - (p->size - 1);
  }
  for (size_t k = 1; k < t->size; k++) {
    size_t i = 0;
    while (k + i < t->size && aw_same_frame(t->data[k + i], p->data[1 + i])) {
      i++; // p->size >= t->size > k + i - 1, so p->data[1 + i] exists
    }
    if (k + i == t->size) {
      return k;
    }
  }
  return t->size;
}

// aw_frames copies to out the frames, innermost first, of the backtrace of
// the last call's trap or error, at most max, and returns how many it
// copied. If the call was made by a host function of the store (nested),
// the frames of the enclosing calls are left out. Call it before
// aw_take_message, which deletes the trap and error. It may call awEpoch.
size_t aw_frames(aw_inst *in, wasm_engine_t *engine, aw_frame *out,
                 size_t max, bool nested) {
  wasm_frame_vec_t v = aw_trace(in->trap, in->err);
  size_t n = v.size;
  if (nested && n > 1) {
    wasm_frame_vec_t p = aw_probe(in, engine);
    n = aw_own_frames(&v, &p);
    if (p.data != NULL) {
      wasm_frame_vec_delete(&p);
    }
  }
  if (n > max) {
    n = max;
  }
  for (size_t i = 0; i < n; i++) {
    out[i].func_index = wasm_frame_func_index(v.data[i]);
    out[i].module_offset = wasm_frame_module_offset(v.data[i]);
  }
  if (v.data != NULL) {
    wasm_frame_vec_delete(&v);
  }
  return n;
}

// The shape of a module's imports and exports (engine/internal/cshape).
size_t aw_module_shape(const wasmtime_module_t *m, uint8_t *out, size_t cap) {
  wasm_importtype_vec_t im;
  wasm_exporttype_vec_t ex;
  wasmtime_module_imports(m, &im);
  wasmtime_module_exports(m, &ex);
  size_t n = aw_shape(&im, &ex, out, cap);
  wasm_importtype_vec_delete(&im);
  wasm_exporttype_vec_delete(&ex);
  return n;
}
