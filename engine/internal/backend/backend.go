// Package backend is the driver API of package engine: what a backend
// (engine/wazero, engine/wasmtime, engine/wasmer) implements and registers.
//
// # Sealing policy
//
// Backends are part of the anywasm module, and only of it: this package is
// internal, so only packages of the module can register a backend, and the
// handles a backend returns (engine.Instance, engine.Function,
// engine.Memory) are sealed interfaces that only types embedding the
// module's seal.Marker implement. The engine documents guarantees of every
// runtime it opens (no allocation per Call, a trap fails the instance,
// limits refused when they cannot be enforced, guest memory bounds-checked);
// they hold because every backend that can be linked is in this module and
// passes engine/enginetest, the conformance suite, in CI. A new backend is
// added as a package under engine/ (CONTRIBUTING.md says how), not from
// outside.
//
// The interfaces below are aliases of unnamed interface types, so that
// package engine, which this package imports for its types, can state the
// identical types without importing this package. Change one only together
// with its twin in engine/driver.go.
package backend

import (
	"context"

	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/engine/internal/registry"
)

// Register makes a backend available to engine.Open under d.Name().
// Backends call it from init. It panics if d is nil or the name is taken,
// as database/sql does.
func Register(d Driver) {
	if d == nil {
		panic("engine: Register of a nil driver")
	}
	registry.Add(d.Name(), d)
}

// Driver is what a backend registers. Its methods are called by package
// engine only; users call engine.Open.
//
//	Name() string                // the runtime's name, e.g. "wazero"
//	Version() string             // of the runtime library that runs the guests
//	Capabilities() engine.Capabilities
//	                             // what it can enforce on its default tier (see Tiers)
//	NewRuntime(engine.Config) (Runtime, error)
//	                             // for a configuration Open validated against the capabilities
type Driver = interface {
	Name() string
	Version() string
	Capabilities() engine.Capabilities
	NewRuntime(cfg engine.Config) (Runtime, error)
}

// Tiers is implemented by a Driver whose runtime has compiler tiers to
// choose from (engine.Config.WithTier). Open resolves the tier before
// NewRuntime: the Config it passes names one of Tiers.
//
//	Tiers() []string             // this binary's tiers, the default first
//	TierCapabilities(t string) engine.Capabilities
//	                             // what it can enforce on tier t, one of Tiers
//	TierUnavailable(t string) string
//	                             // why t, a tier the runtime has elsewhere (another platform,
//	                             // version or build), is not among Tiers here; "" if t is
//	                             // not a tier of the runtime at all
type Tiers = interface {
	Tiers() []string
	TierCapabilities(t string) engine.Capabilities
	TierUnavailable(t string) string
}

// Runtime is a backend's runtime. It must be safe for concurrent use.
//
//	Compile(ctx, wasm, info) (Module, error)
//	    validates and compiles wasm; info was parsed from it already. Called
//	    once per distinct module bytes per engine.Runtime.
//	NewHost(mods) (Host, error)
//	    prepares validated host modules for instantiation.
//	Instantiate(ctx, m, host, imports) (engine.Instance, error)
//	    instantiates m. imports holds, in the module's import order, the
//	    host function for each import; all were type-checked. Start
//	    functions run here; a trap in one is returned as an *engine.Trap.
//	Close(ctx) error
//	    closes the runtime and every instance it made.
//	As(target any) bool
//	    sets target to the backend's native object, as engine.Runtime.As.
type Runtime = interface {
	Compile(ctx context.Context, wasm []byte, info *engine.ModuleInfo) (Module, error)
	NewHost(mods []*engine.HostModule) (Host, error)
	Instantiate(ctx context.Context, m Module, host Host, imports []*engine.HostFunction) (engine.Instance, error)
	Close(ctx context.Context) error
	As(target any) bool
}

// Module is a backend's compiled module.
type Module = interface {
	Close(ctx context.Context) error
	As(target any) bool
}

// Host is a backend's prepared host modules.
type Host = interface {
	Close(ctx context.Context) error
}

// Precompiler is implemented by a Runtime that can load and make
// precompiled code (engine.Runtime.CompilePrecompiled).
//
//	PrecompiledSectionName() string
//	    the name of the custom section that carries this runtime's
//	    precompiled code, in cpp-host's style:
//	    "precompiled_<runtime>_v<version>_<platform>". "" means none here
//	    (an unknown platform): precompiled code is then never used.
//	Serialize(ctx, m) ([]byte, error)
//	    the precompiled form of m.
//	Deserialize(ctx, precompiled, info) (Module, error)
//	    loads precompiled code. info was parsed from the module's bytecode;
//	    a driver must refuse, with an error, code whose imports or exports
//	    differ from info's (the engine calls it through info's signatures),
//	    and code the runtime refuses (another version, configuration or CPU,
//	    or not its format). It must never crash on bytes that are not its
//	    format.
type Precompiler = interface {
	PrecompiledSectionName() string
	Serialize(ctx context.Context, m Module) ([]byte, error)
	Deserialize(ctx context.Context, precompiled []byte, info *engine.ModuleInfo) (Module, error)
}
