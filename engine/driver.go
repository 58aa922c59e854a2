package engine

import "context"

// The driver API, as package engine sees it. Backends implement it through
// engine/internal/backend, whose exported aliases name these same unnamed
// interface types (the two must stay identical: TestBackendIdentity opens a
// driver registered there); registration is internal to this module (see
// that package's sealing policy).
type (
	drvDriver = interface {
		Name() string
		Version() string
		Capabilities() Capabilities
		NewRuntime(cfg Config) (drvRuntime, error)
	}
	drvTiers = interface {
		Tiers() []string
		TierCapabilities(t string) Capabilities
		TierUnavailable(t string) string
	}
	drvRuntime = interface {
		Compile(ctx context.Context, wasm []byte, info *ModuleInfo) (drvModule, error)
		NewHost(mods []*HostModule) (drvHost, error)
		Instantiate(ctx context.Context, m drvModule, host drvHost, imports []*HostFunction) (Instance, error)
		Close(ctx context.Context) error
		As(target any) bool
	}
	drvModule = interface {
		Close(ctx context.Context) error
		As(target any) bool
	}
	drvHost = interface {
		Close(ctx context.Context) error
	}
	drvPrecompiler = interface {
		PrecompiledSectionName() string
		Serialize(ctx context.Context, m drvModule) ([]byte, error)
		Deserialize(ctx context.Context, precompiled []byte, info *ModuleInfo) (drvModule, error)
	}
)
