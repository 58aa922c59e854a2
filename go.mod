module github.com/anywasm/anywasm

go 1.26.0

require (
	github.com/bytecodealliance/wasmtime-go/v44 v44.0.0
	github.com/klauspost/cpuid/v2 v2.4.2
	github.com/tetratelabs/wazero v1.12.0
	github.com/wasmerio/wasmer-go v1.0.4
	google.golang.org/protobuf v1.36.12
)

require (
	github.com/stretchr/testify v1.12.1 // indirect
	golang.org/x/sys v0.48.0 // indirect
)
