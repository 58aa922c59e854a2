module github.com/anywasm/anywasm/internal/proxy

go 1.26.0

require (
	github.com/anywasm/anywasm v0.0.0-00010101000000-000000000000
	github.com/anywasm/anywasm/abi/celexpr v0.0.0-00010101000000-000000000000
	github.com/anywasm/anywasm/abi/grpcupstream v0.0.0-00010101000000-000000000000
	github.com/anywasm/anywasm/abi/promcollector v0.0.0-00010101000000-000000000000
	github.com/prometheus/client_golang v1.25.0
	github.com/prometheus/client_model v0.6.3
	github.com/prometheus/common v0.72.0
	google.golang.org/grpc v1.85.0
	sigs.k8s.io/yaml v1.6.0
)

require (
	cel.dev/cel-go v0.33.2 // indirect
	cel.dev/expr v0.25.3 // indirect
	github.com/antlr4-go/antlr/v4 v4.13.1 // indirect
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/bytecodealliance/wasmtime-go/v44 v44.0.0 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/klauspost/cpuid/v2 v2.4.2 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/prometheus/procfs v0.22.0 // indirect
	github.com/tetratelabs/wazero v1.12.0 // indirect
	github.com/wasmerio/wasmer-go v1.0.4 // indirect
	go.yaml.in/yaml/v2 v2.4.4 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
	golang.org/x/exp v0.0.0-20260824195058-e88cd73687aa // indirect
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	golang.org/x/text v0.42.0 // indirect
	google.golang.org/genproto/googleapis/api v0.0.0-20260817212433-ac3dfec99bb1 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260817212433-ac3dfec99bb1 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

replace github.com/anywasm/anywasm => ../..

replace github.com/anywasm/anywasm/abi/promcollector => ../../abi/promcollector

replace github.com/anywasm/anywasm/abi/grpcupstream => ../../abi/grpcupstream

replace github.com/anywasm/anywasm/abi/celexpr => ../../abi/celexpr
