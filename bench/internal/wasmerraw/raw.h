//go:build cgo

#include "capi.h"

int raw_setup(const char *wasm, size_t n);
void raw_call_empty(void);
int64_t raw_call_add(int32_t a, int64_t b);
void raw_loop_nop(int32_t n);
int64_t raw_loop_add(int32_t n);
