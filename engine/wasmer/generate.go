package wasmer

// capi.h holds the declarations of Wasmer's C API that shim.c and
// bench/internal/wasmerraw use, generated from the headers the wasmer-go
// module ships (capi.names lists what to take).
//go:generate go run ../internal/cdecl -module github.com/wasmerio/wasmer-go -include wasmer/packaged/include -header wasmer.h -names capi.names -o capi.h
