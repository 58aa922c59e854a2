module github.com/anywasm/anywasm/abi/grpcupstream

go 1.26.0

require (
	github.com/anywasm/anywasm v0.0.0-00010101000000-000000000000
	google.golang.org/grpc v1.85.0
)

require (
	github.com/bytecodealliance/wasmtime-go/v44 v44.0.0 // indirect
	github.com/klauspost/cpuid/v2 v2.4.2 // indirect
	github.com/tetratelabs/wazero v1.12.0 // indirect
	github.com/wasmerio/wasmer-go v1.0.4 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	golang.org/x/text v0.42.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260817212433-ac3dfec99bb1 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

replace github.com/anywasm/anywasm => ../..
