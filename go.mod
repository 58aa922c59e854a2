module github.com/anywasm/anywasm

go 1.26

require (
	github.com/bytecodealliance/wasmtime-go/v44 v44.0.0 // indirect
	github.com/klauspost/cpuid/v2 v2.4.2 // indirect
	github.com/tetratelabs/wazero v1.12.0 // indirect
	github.com/wasmerio/wasmer-go v1.0.4 // indirect
	golang.org/x/sys v0.44.0 // indirect
)
