package engine

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"

	"github.com/anywasm/anywasm/engine/internal/wasmbin"
)

// Precompiled code: Envoy's vm_config.allow_precompiled, as
// proxy-wasm-cpp-host implements it (WasmBase::load in src/wasm.cc). A
// module may carry, in a custom section, a runtime's own compiled form of
// its code; the section's name says which runtime, version and platform
// made it (cpp-host's WasmVm::getPrecompiledSectionName). A host that allows
// precompiled code strips every section whose name contains
// PrecompiledPrefix from the bytecode (StripPrecompiled), looks up its
// runtime's section (Runtime.PrecompiledSectionName, CustomSection) and
// gives both to CompilePrecompiled, which loads the precompiled code and
// compiles the bytecode only if the runtime refuses it.
//
// Precompiled code is native code: the runtime maps and runs it without
// validating it, as it does entries of its own compilation cache. Load only
// modules whose origin you trust with running native code in the process.

// PrecompiledPrefix is what the names of precompiled code sections contain
// (cpp-host's getStrippedSource strips sections whose name contains it).
const PrecompiledPrefix = "precompiled_"

// PrecompiledPlatform is the platform part of a precompiled section name
// for GOOS and GOARCH, as proxy-wasm-cpp-host's PROXY_WASM_PLATFORM
// (include/proxy-wasm/wasm_vm.h) names it: "linux_x86_64",
// "linux_aarch64", "linux_ppc64le", "linux_s390x", "macos_x86_64",
// "macos_arm64", "windows_x64"; "" for any other.
func PrecompiledPlatform(goos, goarch string) string {
	switch goos + "/" + goarch {
	case "linux/amd64":
		return "linux_x86_64"
	case "linux/arm64":
		return "linux_aarch64"
	case "linux/ppc64le":
		return "linux_ppc64le"
	case "linux/s390x":
		return "linux_s390x"
	case "darwin/amd64":
		return "macos_x86_64"
	case "darwin/arm64":
		return "macos_arm64"
	case "windows/amd64":
		return "windows_x64"
	}
	return ""
}

// PrecompiledSectionName returns the name of the custom section that
// carries this runtime's precompiled code, or "" if the runtime has no
// precompiled format (wazero) or none on this platform; see the backend's
// documentation.
func (r *Runtime) PrecompiledSectionName() string {
	if p, ok := r.rt.(drvPrecompiler); ok {
		return p.PrecompiledSectionName()
	}
	return ""
}

// StripPrecompiled returns code without its precompiled code sections
// (custom sections whose name contains PrecompiledPrefix), or code itself if
// it has none: cpp-host's BytecodeUtil::getStrippedSource, which Envoy
// applies to every module whatever allow_precompiled says. The other
// sections are kept byte for byte. A module whose section table is
// malformed (a section or name size past the bytes there are) is refused.
func StripPrecompiled(code []byte) ([]byte, error) {
	b, err := wasmbin.StripCustomSections(code, func(name string) bool { return strings.Contains(name, PrecompiledPrefix) })
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	return b, nil
}

// CustomSection returns the contents (after its name) of the first custom
// section of code named name, and whether there is one: cpp-host's
// BytecodeUtil::getCustomSection. The contents alias code. A module whose
// section table is malformed is refused.
func CustomSection(code []byte, name string) (contents []byte, found bool, err error) {
	contents, found, err = wasmbin.CustomSection(code, name)
	if err != nil {
		return nil, false, fmt.Errorf("engine: %w", err)
	}
	return contents, found, nil
}

// Precompile compiles code (without its precompiled sections) and returns
// code with this runtime's precompiled form of it in a custom section named
// PrecompiledSectionName, appended (replacing a section of that name;
// other runtimes' sections stay): cpp-host's WasmVm::serialize and
// BytecodeUtil::writeModuleWithCustomSection. A runtime without a
// precompiled format refuses with ErrNotSupported.
//
// The code is compiled with this runtime's configuration: a runtime whose
// code depends on it (Wasmtime: fuel, interruption) loads it only with the
// same settings, and compiles the bytecode otherwise.
func (r *Runtime) Precompile(ctx context.Context, code []byte) ([]byte, error) {
	p, ok := r.rt.(drvPrecompiler)
	name := ""
	if ok {
		name = p.PrecompiledSectionName()
	}
	if name == "" {
		return nil, fmt.Errorf("engine: precompile: %s has no precompiled format on this platform: %w", r.Name(), ErrNotSupported)
	}
	stripped, err := StripPrecompiled(code)
	if err != nil {
		return nil, err
	}
	m, err := r.Compile(ctx, stripped)
	if err != nil {
		return nil, err
	}
	defer m.Close(context.WithoutCancel(ctx))
	art, err := p.Serialize(ctx, m.e.drv)
	if err != nil {
		return nil, fmt.Errorf("engine: precompile (%s): %w", r.Name(), err)
	}
	out, err := wasmbin.WithCustomSection(code, name, art)
	if err != nil {
		return nil, fmt.Errorf("engine: precompile: %w", err)
	}
	return out, nil
}

// CompilePrecompiled returns the module of bytecode wasm whose precompiled
// code for this runtime is precompiled (the contents of its
// PrecompiledSectionName section, which the caller looked up and stripped
// from wasm, as cpp-host's WasmBase::load does). If precompiled is empty it
// is Compile. Otherwise the runtime loads the precompiled code and, if it
// refuses it (another runtime version, configuration or CPU, bytes that are
// not its format, imports or exports other than wasm's) or has no
// precompiled format, compiles wasm instead, as cpp-host's
// Wasmtime::load does; Module.Precompiled says which happened and why.
//
// wasm is parsed and must be well formed either way: its imports and
// exports are the module's. Precompiled code runs unchecked: see
// PrecompiledPrefix.
func (r *Runtime) CompilePrecompiled(ctx context.Context, wasm, precompiled []byte) (*Module, error) {
	if len(precompiled) == 0 {
		return r.Compile(ctx, wasm)
	}
	h := sha256.New()
	h.Write([]byte("anywasm precompiled\x00"))
	ws, ps := sha256.Sum256(wasm), sha256.Sum256(precompiled)
	h.Write(ws[:])
	h.Write(ps[:])
	var key [32]byte
	h.Sum(key[:0])
	return r.compile(ctx, key, wasm, func(info *ModuleInfo) (built, error) {
		var why error
		if p, ok := r.rt.(drvPrecompiler); ok && p.PrecompiledSectionName() != "" {
			dm, err := p.Deserialize(ctx, precompiled, info)
			if err == nil {
				return built{dm: dm, precompiled: true}, nil
			}
			why = fmt.Errorf("engine: %s refused the precompiled code: %w", r.Name(), err)
		} else {
			why = fmt.Errorf("engine: %s has no precompiled format on this platform: %w", r.Name(), ErrNotSupported)
		}
		dm, err := r.rt.Compile(ctx, wasm, info)
		if err != nil {
			return built{}, fmt.Errorf("%w (and the precompiled code was not used: %v)", err, why)
		}
		return built{dm: dm, fallback: why}, nil
	})
}

// Precompiled reports whether the module's code was loaded from precompiled
// code (CompilePrecompiled) rather than compiled from its bytecode, and,
// when CompilePrecompiled was given precompiled code but compiled the
// bytecode, why (an error wrapping ErrNotSupported if the runtime has no
// precompiled format).
func (m *Module) Precompiled() (loaded bool, fallback error) {
	return m.e.precompiled, m.e.fallback
}
