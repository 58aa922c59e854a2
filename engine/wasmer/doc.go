// Package wasmer is anywasm's backend on Wasmer 2.0, through Wasmer's C API
// (wasm.h and wasmer.h) as shipped in github.com/wasmerio/wasmer-go v1.0.4,
// whose libwasmer.so it links. Importing it registers the runtime "wasmer"
// with package engine. It needs cgo (build tag cgo): with CGO_ENABLED=0 the
// package is empty and "wasmer" is not registered.
//
// It must never be linked into a binary that also links engine/wasmtime:
// both libraries define the standard wasm_* C symbols and the linker would
// silently bind one runtime's calls to the other. Open therefore refuses to
// start ("wasmer: refusing to run: the C symbol wasm_engine_new resolves
// to ...") unless dladdr reports that wasm_engine_new and wasmer_version are
// defined by a shared object named libwasmer.* and wasmer_version() says
// 2.x (or 1.0.x, the linux/arm64 build, see below). With Wasmtime's static library linked in, wasm_engine_new would be
// defined by the main executable, so dladdr would name the executable and
// Open would fail. (That case cannot be tested: no binary may link both.)
//
// # Capabilities
//
// Fuel (Config.WithFuel; not on linux/arm64, see below) and the
// compilation cache. Wasmer 2.0's C API can
// neither interrupt a running guest nor cap its memory, so Open refuses
// WithInterruptOnContextDone and WithMemoryLimitPages with
// engine.ErrNotSupported; an infinite loop can only be stopped with fuel.
//
// Fuel uses Wasmer's metering middleware: every operator costs one point,
// and each call of an exported function gets the configured points (a call
// made from a host function gets its own points; the outer call's remaining
// points are restored afterwards). Running out traps with TrapOutOfFuel. A
// start function runs with the same points; if it runs out, the trap cannot
// be told apart from an unreachable instruction (Wasmer reports both as
// "unreachable" and the instance that would say which does not exist), so
// it is reported as TrapUnreachable.
//
// # Engines and compiled code
//
// Wasmer 2.0 keeps the executable mapping of every module it compiles or
// deserializes until its engine is freed (about 30,000 such mappings abort
// the process). This package therefore keeps one engine (and store) per
// fuel setting for the life of the process and interns compiled modules
// process-wide by the SHA-256 of their bytes: the same bytes are compiled
// (or loaded from the disk cache) at most once per process, whatever the
// number of Runtimes. Module.Close frees nothing: the code could not be
// freed anyway, and compiling it again would map it again.
//
// # Compilation cache
//
// With Config.WithCompilationCache(dir), a compiled module is serialized to
// dir/<key>.wasmer, key = SHA-256 over the wasm bytes' SHA-256, the Wasmer
// version, GOARCH and the fuel setting (metering changes the code). The
// files are native code that Wasmer loads and runs without verification, so
// the cache trusts only what it wrote itself (engine/internal/filecache,
// shared with the other backends):
//
//   - Open refuses, with engine.ErrCompilationCache and an error naming the
//     directory and the reason, a directory that is not owned by the
//     process's effective uid or that group or others may write (after
//     following a symlink), and a key file that is malformed, not ours or
//     not private; a missing directory is created with mode 0700.
//   - The directory holds an HMAC-SHA256 key (32 random bytes, mode 0600,
//     created on first use through a temporary file and a hard link, so
//     that processes starting at once share one key). Every file carries
//     the cache key, its payload's SHA-256 and an HMAC of its header under
//     that key.
//   - A file is deserialized only if it is a regular file owned by the
//     effective uid that group and others cannot write, and its header, key,
//     hash and HMAC all verify. A corrupt, truncated or foreign file, one
//     planted by another user, or one copied from another cache directory
//     or machine is never loaded: the module is compiled and the file
//     rewritten (atomically: a temporary file, then a rename).
//
// Anyone running as the same user can still write entries (the key is
// theirs to read): the cache protects the process from other users.
//
// # Precompiled code
//
// Runtime.Precompile and CompilePrecompiled use Wasmer's serialized
// modules, in a custom section named "precompiled_wasmer_v<version>_<platform>"
// (e.g. precompiled_wasmer_v2.0.0_linux_x86_64), in the style of
// proxy-wasm-cpp-host's section names (Envoy has no Wasmer runtime). They
// are interned like compiled modules. A Runtime with fuel never uses them
// (Wasmer cannot tell whether they were compiled with its metering), and
// Wasmer trusts an artifact's contents after its header: see precompiled.go.
//
// # Native objects
//
// Runtime.As, Module.As and Instance.As accept a *unsafe.Pointer and set it
// to the wasm_store_t*, wasm_module_t* and wasm_instance_t* respectively.
// They stay owned by this package: the store and modules live as long as
// the process, an instance until Close. Use them with Wasmer's C API from
// your own cgo code.
//
// # Calls
//
// Function.Call crosses cgo once: arguments are written to C buffers
// preallocated per function, and one C helper calls wasm_func_call and
// refreshes the cached size (and, if it changed, base) of the guest memory,
// so that memory accessors never cross cgo. A module whose code has no
// memory.grow cannot change its memory's size except through Memory.Grow,
// which refreshes the cache itself: for such modules the refresh is skipped.
//
// Host functions are created per instance with wasm_func_new_with_env
// (function types are interned: Wasmer 2.0 leaks part of every function type
// it deletes). Their env carries the instance's registry slot and the import
// index; a C trampoline refreshes the memory cache and calls one exported Go
// function, which finds the instance by index (no map, no cgo.Handle), runs
// the function through engine.CallHost with the caller's context, and writes
// the results. Wasmer 2.0 allocates the argument and result vectors of every
// host call and never frees them; the trampoline frees them (the results are
// handed back in a buffer owned by the instance). Neither direction
// allocates Go memory.
//
// An instance may be closed from one of its own host functions (it is freed
// when the outermost call returns), but not while another goroutine calls
// it; the same holds for closing its Runtime. An instance dropped without
// Close is freed by a cleanup once unreachable (a backstop only).
//
// Known leaks left in Wasmer 2.0, which this package cannot free: about 60
// bytes of C memory per trap, and, per instance, an entry in the
// engine-wide FuncDataRegistry for each imported function and each table
// element (the registry is keyed by the function's address and instance and
// only ever grows: wasmerio/wasmer#2638, fixed in Wasmer 2.1, which no
// wasmer-go release ships). That is about 100 bytes of resident memory per
// such function, fewer when the allocator gives a new instance the address
// of a freed one: ~25 KiB to ~180 KiB for each VM of a Go-SDK plugin (1,705
// table elements), ~0.4 KiB for a small hand-written one. A process that
// creates VMs without end on this backend grows by that much per VM; the
// load/close cycle tests of abi and internal/proxy measure it and allow for
// it on wasmer only.
//
// # Backtraces
//
// A trap's frames come from wasm_trap_trace: Wasmer 2.0 fills in each
// frame's function index and module offset (names are resolved by
// engine.ModuleInfo). A trap raised by a host function has no backtrace in
// Wasmer 2.0, so its Frames hold only the host function (no
// CapHostTrapFrames). The backtrace of a call made by a host function stops
// at that call, as anywasm wants.
//
// # linux/arm64
//
// wasmer-go v1.0.4 ships packaged/lib/linux-aarch64/libwasmer.so but leaves
// its linux/arm64 linker flags commented out, so they must be given
// explicitly. From the repository root, cross-built on linux/amd64 and run
// under qemu-user:
//
//	W=$(go env GOMODCACHE)/github.com/wasmerio/wasmer-go@v1.0.4/wasmer/packaged/lib/linux-aarch64
//	CGO_ENABLED=1 GOARCH=arm64 CC=aarch64-linux-gnu-gcc \
//	  CGO_LDFLAGS="-L$W -Wl,-rpath,$W" go test -c -o wasmer-arm64.test ./engine/wasmer
//	cd engine/wasmer && qemu-aarch64-static -L /usr/aarch64-linux-gnu ../../wasmer-arm64.test -test.short
//
// (On an arm64 machine, drop GOARCH and CC.) That library is not Wasmer
// 2.0: it reports version 1.0.2 and is built without the metering
// middleware and without reference types or multiple tables. So on
// linux/arm64 this backend runs Wasmer 1.0.2 (Version says so), without fuel
// (the metering functions are looked up at run time and Capabilities omits
// CapFuel when they are missing), and modules using reference types or
// several tables fail to compile with Wasmer's validation error. Wasmer 1.0
// also never unmaps an instance's memory: every instantiation leaks its
// reservation (2 mappings; under qemu ~40 MB of resident memory), so
// long-running programs that instantiate repeatedly will run out of memory.
// Measured under qemu-aarch64: this package's tests pass, except those that
// are skipped there (fuel; the leak tests that instantiate thousands of
// times; the cross-process cache test, which cannot exec a child under
// qemu-user), and the conformance kit fails on its guests that need
// reference types or multiple tables, and on trap backtraces: that library
// gives only a trap's innermost frame.
package wasmer
