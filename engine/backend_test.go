package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/engine"
	"github.com/anywasm/anywasm/engine/internal/backend"
	"github.com/anywasm/anywasm/engine/internal/registry"
)

// identityDriver is a backend written against engine/internal/backend, as
// engine/wazero and the others are.
type identityDriver struct{}

func (identityDriver) Name() string                      { return "zz-identity" }
func (identityDriver) Version() string                   { return "1" }
func (identityDriver) Capabilities() engine.Capabilities { return engine.CapFuel }
func (identityDriver) NewRuntime(engine.Config) (backend.Runtime, error) {
	return identityRuntime{}, nil
}

type identityRuntime struct{}

func (identityRuntime) Compile(context.Context, []byte, *engine.ModuleInfo) (backend.Module, error) {
	return nil, errors.New("identity: no compiler")
}
func (identityRuntime) NewHost([]*engine.HostModule) (backend.Host, error) { return nil, nil }
func (identityRuntime) Instantiate(context.Context, backend.Module, backend.Host, []*engine.HostFunction) (engine.Instance, error) {
	return nil, errors.New("identity: no instances")
}
func (identityRuntime) Close(context.Context) error { return nil }
func (identityRuntime) As(any) bool                 { return false }

// TestBackendIdentity: a driver registered through engine/internal/backend
// is one engine opens, i.e. the package's aliases and engine's own
// (engine/driver.go) name identical types. Were they to differ, Open would
// answer "registered a ..., not a driver".
func TestBackendIdentity(t *testing.T) {
	backend.Register(identityDriver{})
	defer registry.Remove("zz-identity")
	rt, err := engine.Open("zz-identity", engine.NewConfig().WithFuel(10))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(context.Background())
	if rt.Name() != "zz-identity" || rt.Version() != "1" {
		t.Errorf("Name, Version = %q, %q", rt.Name(), rt.Version())
	}
	// The engine reached the driver's own Compile (a valid empty module).
	if _, err := rt.Compile(context.Background(), []byte("\x00asm\x01\x00\x00\x00")); err == nil || !strings.Contains(err.Error(), "identity: no compiler") {
		t.Errorf("Compile = %v", err)
	}
	// And a value that is not a driver is refused by name, not panicked on.
	registry.Add("zz-notadriver", struct{}{})
	defer registry.Remove("zz-notadriver")
	if _, err := engine.Open("zz-notadriver", engine.NewConfig()); err == nil || !strings.Contains(err.Error(), "not a driver") {
		t.Errorf("Open(not a driver) = %v", err)
	}
}
