package engine

import (
	"fmt"
	"slices"
	"strings"

	"github.com/anywasm/anywasm/engine/internal/registry"
)

// Runtimes returns the sorted names of the runtimes compiled into this
// binary, e.g. for a -runtime flag's help.
func Runtimes() []string {
	return registry.Names()
}

// Info describes a registered runtime, on one of its tiers.
type Info struct {
	Name    string
	Version string
	// Tier is the tier described ("" for a runtime without tiers) and
	// Tiers every tier the runtime has in this binary, the default first.
	Tier  string
	Tiers []string
	// Capabilities is what the runtime can enforce on Tier.
	Capabilities Capabilities
}

// Lookup returns the description of a compiled-in runtime, on its default
// tier or on the tier name carries ("wasmtime:pulley"). A tier the runtime
// lacks is refused as Open refuses it.
func Lookup(name string) (Info, error) {
	rt, tier := SplitName(name)
	d, err := driver(rt)
	if err != nil {
		return Info{}, err
	}
	tier, caps, err := resolveTier(d, tier, strings.Contains(name, ":"))
	if err != nil {
		return Info{}, err
	}
	return Info{Name: d.Name(), Version: d.Version(), Tier: tier, Tiers: tiersOf(d), Capabilities: caps}, nil
}

// SplitName splits a runtime name that may carry a tier, "wasmtime:pulley",
// into the runtime and the tier ("" if it carries none).
func SplitName(name string) (runtime, tier string) {
	runtime, tier, _ = strings.Cut(name, ":")
	return runtime, tier
}

// CanonicalName returns the name of runtime name on the tier it carries in
// its canonical form: the runtime alone on its default tier ("wasmtime" for
// "wasmtime" and "wasmtime:cranelift"), "runtime:tier" on another
// ("wasmtime:pulley"). Two names with one canonical name open runtimes that
// compile alike. An unknown runtime or tier is refused as Open refuses it.
func CanonicalName(name string) (string, error) {
	rt, tier := SplitName(name)
	d, err := driver(rt)
	if err != nil {
		return "", err
	}
	tier, _, err = resolveTier(d, tier, strings.Contains(name, ":"))
	if err != nil {
		return "", err
	}
	if ts := tiersOf(d); len(ts) == 0 || tier == ts[0] {
		return rt, nil
	}
	return rt + ":" + tier, nil
}

// tiersOf returns the tiers of d, the default first; nil without tiers.
func tiersOf(d drvDriver) []string {
	if t, ok := d.(drvTiers); ok {
		return slices.Clone(t.Tiers())
	}
	return nil
}

// resolveTier returns the tier of d that tier names ("" for its default,
// unless explicit: a name with an empty tier, "wazero:") and what d can
// enforce on it, or an error wrapping ErrNotSupported for a tier d lacks.
func resolveTier(d drvDriver, tier string, explicit bool) (string, Capabilities, error) {
	t, ok := d.(drvTiers)
	if !ok {
		if tier != "" || explicit {
			return "", 0, fmt.Errorf("engine: runtime %q has no tiers to choose from (asked for %q): %w", d.Name(), tier, ErrNotSupported)
		}
		return "", d.Capabilities(), nil
	}
	tiers := t.Tiers()
	if tier == "" && !explicit && len(tiers) > 0 {
		tier = tiers[0]
	}
	if !slices.Contains(tiers, tier) {
		why := ""
		if s := t.TierUnavailable(tier); s != "" {
			why = " (" + s + ")"
		}
		return "", 0, fmt.Errorf("engine: runtime %q has no tier %q%s; its tiers here: %s: %w",
			d.Name(), tier, why, strings.Join(tiers, ", "), ErrNotSupported)
	}
	return tier, t.TierCapabilities(tier), nil
}

func driver(name string) (drvDriver, error) {
	if v, ok := registry.Get(name); ok {
		d, ok := v.(drvDriver)
		if !ok { // engine/internal/backend's drvDriver and drvDriver differ
			return nil, fmt.Errorf("engine: runtime %q registered a %T, not a driver", name, v)
		}
		return d, nil
	}
	have := Runtimes()
	list := "none"
	if len(have) > 0 {
		list = strings.Join(have, ", ")
	}
	return nil, fmt.Errorf("engine: unknown runtime %q (compiled in: %s); import its package "+
		"(github.com/anywasm/anywasm/engine/%s, or engine/all), and for wasmtime or wasmer build "+
		"with CGO_ENABLED=1 (engine/all links wasmer instead of wasmtime with -tags anywasm_wasmer)",
		name, list, name)
}

// Open returns a Runtime of the named backend. name may carry a tier
// ("wazero:interpreter"; see Config.WithTier). It refuses, with an error
// wrapping ErrNotSupported, a tier the backend lacks and a configuration
// that asks for a limit the backend cannot enforce on its tier.
func Open(name string, cfg Config) (*Runtime, error) {
	rtName, tier := SplitName(name)
	if tier != "" {
		if cfg.tier != "" && cfg.tier != tier {
			return nil, fmt.Errorf("engine: open %s: the name asks for tier %q, the configuration for %q", name, tier, cfg.tier)
		}
		cfg.tier = tier
	}
	d, err := driver(rtName)
	if err != nil {
		return nil, err
	}
	tier, caps, err := resolveTier(d, cfg.tier, strings.Contains(name, ":") && cfg.tier == "")
	if err != nil {
		return nil, err
	}
	cfg.tier = tier
	label := rtName
	if tier != "" {
		label += ":" + tier
	}
	if err := cfg.validate(label, caps); err != nil {
		return nil, err
	}
	rt, err := d.NewRuntime(cfg)
	if err != nil {
		return nil, fmt.Errorf("engine: open %s: %w", label, err)
	}
	return &Runtime{drv: d, rt: rt, cfg: cfg, caps: caps, modules: map[[32]byte]*moduleEntry{}, imports: map[*Imports]struct{}{}}, nil
}
