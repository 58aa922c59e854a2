package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/engine/internal/registry"
)

func TestFuncTypeString(t *testing.T) {
	ft := FuncType{Params: []ValueType{I32, I64}, Results: []ValueType{F32, F64}}
	if s := ft.String(); s != "(i32, i64) -> (f32, f64)" {
		t.Errorf("String() = %q", s)
	}
	if s := (FuncType{}).String(); s != "() -> ()" {
		t.Errorf("empty String() = %q", s)
	}
	if !ft.Equal(FuncType{Params: []ValueType{I32, I64}, Results: []ValueType{F32, F64}}) || ft.Equal(FuncType{Params: []ValueType{I32}}) {
		t.Error("Equal is wrong")
	}
	if ft.StackSize() != 2 || (FuncType{Results: []ValueType{I32, I32, I32}}).StackSize() != 3 {
		t.Error("StackSize is wrong")
	}
}

func TestEncoding(t *testing.T) {
	if EncodeI32(-1) != 0xffffffff || DecodeI32(0xffffffff) != -1 {
		t.Error("i32 encoding must zero-extend")
	}
	if DecodeF32(EncodeF32(1.5)) != 1.5 || DecodeF64(EncodeF64(-2.25)) != -2.25 {
		t.Error("float round trip")
	}
}

func TestConfig(t *testing.T) {
	base := NewConfig()
	c := base.WithMemoryLimitPages(10).WithInterruptOnContextDone(true).WithFuel(5).WithCompilationCache("/tmp/x")
	if base.Required() != 0 {
		t.Error("WithX modified the original")
	}
	if c.Required() != CapMemoryLimit|CapInterrupt|CapFuel|CapCompilationCache {
		t.Errorf("Required() = %s", c.Required())
	}
	err := c.validate("x", CapMemoryLimit|CapInterrupt)
	if !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), "fuel,compilation-cache") {
		t.Errorf("validate = %v", err)
	}
	if err := NewConfig().WithMemoryLimitPages(MaxPages+1).validate("x", CapMemoryLimit); err == nil {
		t.Error("a limit over 65536 pages validated")
	}
	p := base.WithInstancePool(4)
	if p.InstancePool() != 4 || p.Required() != CapInstancePool || base.InstancePool() != 0 {
		t.Errorf("WithInstancePool(4): InstancePool() = %d, Required() = %s", p.InstancePool(), p.Required())
	}
	if err := p.validate("x", CapFuel); !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), "instance-pool") {
		t.Errorf("validate of a pool without CapInstancePool = %v", err)
	}
	if err := base.WithInstancePool(-1).validate("x", CapInstancePool); err == nil || !strings.Contains(err.Error(), "WithInstancePool(-1)") {
		t.Errorf("a pool of -1 instances: %v, want an error naming WithInstancePool(-1)", err)
	}
	if err := base.WithInstancePoolKeepResident(1<<20).validate("x", CapInstancePool); err == nil || !strings.Contains(err.Error(), "WithInstancePoolKeepResident(1048576) needs an instance pool") {
		t.Errorf("keep-resident without a pool: %v, want an error naming both", err)
	}
	if err := base.WithInstancePool(2).WithInstancePoolKeepResident(1<<20).validate("x", CapInstancePool); err != nil {
		t.Errorf("keep-resident with a pool: %v", err)
	}
}

func TestTrapError(t *testing.T) {
	cause := errors.New("cause")
	for _, c := range []struct {
		t    *Trap
		want string
	}{
		{&Trap{Code: TrapUnreachable, Runtime: "r", Message: "unreachable"}, "engine: wasm trap: unreachable (r)"},
		{&Trap{Code: TrapUnreachable, Runtime: "r", Message: "wasm `unreachable`"}, "engine: wasm trap: unreachable (r: wasm `unreachable`)"},
		{&Trap{Code: TrapHostError, Runtime: "r", Cause: cause}, "engine: wasm trap: host function error: cause"},
		{&Trap{Code: TrapExit, ExitCode: 7}, "engine: guest exited with code 7"},
		// Frames, innermost first, print outermost first.
		{&Trap{Code: TrapUnreachable, Runtime: "r", Frames: []Frame{{Func: "one", FuncIndex: 2}, {FuncIndex: 7}, {Func: "three", FuncIndex: 4}}},
			"engine: wasm trap: unreachable (r): three -> func[7] -> one"},
		{&Trap{Code: TrapHostError, Runtime: "r", Cause: cause, Frames: []Frame{{Module: "env", Func: "fail", Host: true}, {Module: "m", Func: "caller", FuncIndex: 3}}},
			"engine: wasm trap: host function error: cause: caller -> env.fail"},
		{&Trap{Code: TrapExit, ExitCode: 7, Frames: []Frame{{Module: "wasi", Func: "proc_exit", Host: true}}},
			"engine: guest exited with code 7: wasi.proc_exit"},
		{&Trap{Code: TrapUnreachable, Runtime: "r", Frames: []Frame{{Func: "a\nb"}, {Func: "f(int, char)"}}},
			`engine: wasm trap: unreachable (r): f(int, char) -> "a\nb"`},
	} {
		if got := c.t.Error(); got != c.want {
			t.Errorf("Error() = %q, want %q", got, c.want)
		}
	}
	deep := &Trap{Code: TrapStackOverflow, Runtime: "r", Frames: make([]Frame, MaxFrames)}
	if got, want := deep.Error(), "engine: wasm trap: stack overflow (r): ... -> func[0] -> "; !strings.HasPrefix(got, want) ||
		strings.Count(got, "func[0]") != MaxFrames {
		t.Errorf("Error() of %d frames = %q, want %q and %d frames", MaxFrames, got, want, MaxFrames)
	}
	tr := HostTrap("r", fmt.Errorf("wrapped: %w", cause))
	if tr.Code != TrapHostError || !errors.Is(tr, cause) {
		t.Errorf("HostTrap = %v", tr)
	}
	if tr := HostTrap("r", Exit(2)); tr.Code != TrapExit || tr.ExitCode != 2 {
		t.Errorf("HostTrap(Exit) = %v", tr)
	}
	if TrapCode(200).String() != "TrapCode(200)" {
		t.Error("unknown code string")
	}
}

func TestModuleInfoFrame(t *testing.T) {
	for _, c := range []struct {
		guest  string
		module string
		names  [4]string // of functions 0 (an import), 2, 5 and 99 (none)
	}{
		{"frames", "frames", [4]string{"fail", "one", "trigger2", ""}},
		{"frames_nonames", "", [4]string{"", "", "", ""}},
	} {
		b, err := os.ReadFile("enginetest/testdata/" + c.guest + ".wasm")
		if err != nil {
			t.Fatal(err)
		}
		info, err := parseModuleInfo(b)
		if err != nil {
			t.Fatal(err)
		}
		for i, idx := range []uint32{0, 2, 5, 99} {
			if got := info.FuncName(idx); got != c.names[i] {
				t.Errorf("%s: FuncName(%d) = %q, want %q", c.guest, idx, got, c.names[i])
			}
		}
		// An import is a host frame named by its import, with no offset.
		if got, want := info.Frame(1, 40), (Frame{Module: "env", Func: "reenter", FuncIndex: 1, Host: true}); got != want {
			t.Errorf("%s: Frame(1) = %+v, want %+v", c.guest, got, want)
		}
		if got, want := info.Frame(5, 40), (Frame{Module: c.module, Func: c.names[2], FuncIndex: 5, Offset: 40}); got != want {
			t.Errorf("%s: Frame(5) = %+v, want %+v", c.guest, got, want)
		}
	}
}

func TestCallHostRecovers(t *testing.T) {
	f := &HostFunction{Name: "f", qualified: "m.f", Func: func(context.Context, Caller, []uint64) error { panic("oops") }}
	err := CallHost(f, context.Background(), nil, nil)
	var p *PanicError
	if !errors.As(err, &p) || p.Value != "oops" || p.Function != "m.f" || len(p.Stack) == 0 {
		t.Errorf("CallHost = %v", err)
	}
	if tr := HostTrap("r", err); tr.Code != TrapHostPanic {
		t.Errorf("HostTrap(panic) = %s", tr.Code)
	}
}

// register registers d as a backend does (engine/internal/backend's
// Register, which this package cannot import).
func register(d drvDriver) { registry.Add(d.Name(), d) }

type fakeDriver struct{ name string }

func (d fakeDriver) Name() string                        { return d.name }
func (fakeDriver) Version() string                       { return "0" }
func (fakeDriver) Capabilities() Capabilities            { return 0 }
func (fakeDriver) NewRuntime(Config) (drvRuntime, error) { return nil, errors.New("fake") }

func TestRegistry(t *testing.T) {
	register(fakeDriver{"zz-fake"})
	defer func() {
		registry.Remove("zz-fake")
	}()
	names := Runtimes()
	if names[len(names)-1] != "zz-fake" {
		t.Errorf("Runtimes() = %v", names)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("duplicate Register did not panic")
			}
		}()
		register(fakeDriver{"zz-fake"})
	}()
	_, err := Open("nope", NewConfig())
	if err == nil || !strings.Contains(err.Error(), "zz-fake") || !strings.Contains(err.Error(), "CGO_ENABLED=1") {
		t.Errorf("Open(unknown) = %v", err)
	}
	if _, err := Open("zz-fake", NewConfig().WithFuel(1)); !errors.Is(err, ErrNotSupported) {
		t.Errorf("Open with fuel = %v", err)
	}
	if _, err := Open("zz-fake", NewConfig()); err == nil || !strings.Contains(err.Error(), "fake") {
		t.Errorf("Open with a failing driver = %v", err)
	}
	if info, err := Lookup("zz-fake"); err != nil || info.Version != "0" {
		t.Errorf("Lookup = %+v %v", info, err)
	}
}

// tieredDriver has tiers "fast" (the default) and "small"; "small" cannot
// enforce fuel. It records the tier NewRuntime was given.
type tieredDriver struct {
	fakeDriver
	got *string
}

func (tieredDriver) Tiers() []string { return []string{"fast", "small"} }
func (tieredDriver) TierCapabilities(t string) Capabilities {
	if t == "fast" {
		return CapFuel
	}
	return 0
}
func (tieredDriver) TierUnavailable(t string) string {
	if t == "huge" {
		return "not on this platform"
	}
	return ""
}
func (d tieredDriver) NewRuntime(c Config) (drvRuntime, error) {
	*d.got = c.Tier()
	return nil, errors.New("fake")
}

func TestTiers(t *testing.T) {
	var got string
	register(tieredDriver{fakeDriver{"zz-tiered"}, &got})
	register(fakeDriver{"zz-plain"}) // no tiers
	defer func() {
		registry.Remove("zz-tiered")
		registry.Remove("zz-plain")
	}()
	// Open resolves the tier and passes it to the driver, from the
	// configuration or from the name.
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"zz-tiered", NewConfig(), "fast"},
		{"zz-tiered", NewConfig().WithTier("small"), "small"},
		{"zz-tiered:small", NewConfig(), "small"},
		{"zz-tiered:small", NewConfig().WithTier("small"), "small"},
	} {
		got = ""
		if _, err := Open(c.name, c.cfg); err == nil || !strings.Contains(err.Error(), "fake") || got != c.want {
			t.Errorf("Open(%s, tier %q): driver got tier %q (%v), want %q", c.name, c.cfg.Tier(), got, err, c.want)
		}
	}
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"zz-tiered:turbo", NewConfig(), `runtime "zz-tiered" has no tier "turbo"; its tiers here: fast, small`},
		{"zz-tiered:huge", NewConfig(), `no tier "huge" (not on this platform)`},
		{"zz-tiered:", NewConfig(), `no tier ""`},
		{"zz-tiered", NewConfig().WithTier("turbo"), `no tier "turbo"`},
		{"zz-tiered:small", NewConfig().WithFuel(1), "cannot enforce fuel"},
		{"zz-plain:fast", NewConfig(), "has no tiers to choose from"},
	} {
		got = ""
		_, err := Open(c.name, c.cfg)
		if !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), c.want) || got != "" {
			t.Errorf("Open(%s, tier %q) = %v (driver called: %q), want ErrNotSupported with %q", c.name, c.cfg.Tier(), err, got, c.want)
		}
	}
	if _, err := Open("zz-tiered:small", NewConfig().WithTier("fast")); err == nil || errors.Is(err, ErrNotSupported) || got != "" {
		t.Errorf("Open with tiers that disagree = %v", err)
	}
	if info, err := Lookup("zz-tiered:small"); err != nil || info.Tier != "small" || info.Capabilities != 0 || len(info.Tiers) != 2 {
		t.Errorf("Lookup(zz-tiered:small) = %+v, %v", info, err)
	}
	if info, err := Lookup("zz-tiered"); err != nil || info.Tier != "fast" || info.Capabilities != CapFuel {
		t.Errorf("Lookup(zz-tiered) = %+v, %v", info, err)
	}
	for in, want := range map[string]string{"zz-tiered": "zz-tiered", "zz-tiered:fast": "zz-tiered", "zz-tiered:small": "zz-tiered:small"} {
		if c, err := CanonicalName(in); c != want || err != nil {
			t.Errorf("CanonicalName(%s) = %q, %v; want %q", in, c, err, want)
		}
	}
	if _, err := CanonicalName("zz-tiered:turbo"); !errors.Is(err, ErrNotSupported) {
		t.Errorf("CanonicalName of an unknown tier = %v", err)
	}
}
