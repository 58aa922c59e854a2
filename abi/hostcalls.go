package abi

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"unsafe"

	"github.com/anywasm/anywasm/engine"
)

// A hostcall reads its arguments from s and returns a status. v.eff is the
// effective context (nil during the initializer). Pointers and lengths come
// from the guest: every access is bounds-checked.
type hostcallFunc func(v *vm, ctx context.Context, s []uint64) Status

type hostcallDef struct {
	typ engine.FuncType
	fn  hostcallFunc
}

var (
	i32 = engine.I32
	i64 = engine.I64
)

func sig(params ...engine.ValueType) engine.FuncType {
	return engine.FuncType{Params: params, Results: []engine.ValueType{i32}}
}

func i32s(n int) engine.FuncType {
	p := make([]engine.ValueType, n)
	for i := range p {
		p[i] = i32
	}
	return sig(p...)
}

// hostcalls are the env imports anywasm implements, by name. A name may
// have variants for the 0.1.0 shapes.
var hostcalls = map[string][]hostcallDef{
	"proxy_log":                          {{i32s(3), (*vm).hLog}},
	"proxy_get_log_level":                {{i32s(1), (*vm).hGetLogLevel}},
	"proxy_get_current_time_nanoseconds": {{i32s(1), (*vm).hGetCurrentTime}},
	"proxy_set_tick_period_milliseconds": {{i32s(1), (*vm).hSetTickPeriod}},
	"proxy_set_effective_context":        {{i32s(1), (*vm).hSetEffectiveContext}},
	"proxy_done":                         {{i32s(0), (*vm).hDone}},
	"proxy_get_buffer_bytes":             {{i32s(5), (*vm).hGetBufferBytes}},
	"proxy_set_buffer_bytes":             {{i32s(5), (*vm).hSetBufferBytes}},
	"proxy_get_buffer_status":            {{i32s(3), (*vm).hGetBufferStatus}},
	"proxy_get_header_map_size":          {{i32s(2), (*vm).hGetHeaderMapSize}},
	"proxy_get_header_map_pairs":         {{i32s(3), (*vm).hGetHeaderMapPairs}},
	"proxy_set_header_map_pairs":         {{i32s(3), (*vm).hSetHeaderMapPairs}},
	"proxy_get_header_map_value":         {{i32s(5), (*vm).hGetHeaderMapValue}},
	"proxy_add_header_map_value":         {{i32s(5), (*vm).hAddHeaderMapValue}},
	"proxy_replace_header_map_value":     {{i32s(5), (*vm).hReplaceHeaderMapValue}},
	"proxy_remove_header_map_value":      {{i32s(3), (*vm).hRemoveHeaderMapValue}},
	"proxy_continue_stream":              {{i32s(1), (*vm).hContinueStream}},
	"proxy_close_stream":                 {{i32s(1), (*vm).hCloseStream}},
	"proxy_continue_request":             {{i32s(0), (*vm).hContinueRequest}},
	"proxy_continue_response":            {{i32s(0), (*vm).hContinueResponse}},
	"proxy_clear_route_cache":            {{i32s(0), func(*vm, context.Context, []uint64) Status { return StatusOK }}},
	"proxy_get_status":                   {{i32s(3), (*vm).hGetStatus}},
	"proxy_send_local_response":          {{i32s(8), (*vm).hSendLocalResponse}},
	"proxy_http_call":                    {{i32s(10), (*vm).hHTTPCall}},
	"proxy_grpc_call":                    {{i32s(12), (*vm).hGRPCCall}},
	"proxy_grpc_stream":                  {{i32s(9), (*vm).hGRPCStream}},
	"proxy_grpc_send":                    {{i32s(4), (*vm).hGRPCSend}},
	"proxy_grpc_close":                   {{i32s(1), (*vm).hGRPCClose}},
	"proxy_grpc_cancel":                  {{i32s(1), (*vm).hGRPCCancel}},
	"proxy_set_shared_data":              {{i32s(5), (*vm).hSetSharedData}},
	"proxy_get_shared_data":              {{i32s(5), (*vm).hGetSharedData}},
	"proxy_register_shared_queue":        {{i32s(3), (*vm).hRegisterSharedQueue}},
	"proxy_resolve_shared_queue":         {{i32s(5), (*vm).hResolveSharedQueue}},
	"proxy_enqueue_shared_queue":         {{i32s(3), (*vm).hEnqueueSharedQueue}},
	"proxy_dequeue_shared_queue":         {{i32s(3), (*vm).hDequeueSharedQueue}},
	"proxy_define_metric":                {{i32s(4), (*vm).hDefineMetric}},
	"proxy_record_metric":                {{sig(i32, i64), (*vm).hRecordMetric}},
	"proxy_increment_metric":             {{sig(i32, i64), (*vm).hIncrementMetric}},
	"proxy_get_metric":                   {{i32s(2), (*vm).hGetMetric}},
	"proxy_get_property":                 {{i32s(4), (*vm).hGetProperty}},
	"proxy_set_property":                 {{i32s(4), (*vm).hSetProperty}},
	"proxy_call_foreign_function":        {{i32s(6), (*vm).hCallForeignFunction}},
	"proxy_get_configuration":            {{i32s(2), (*vm).hGetConfiguration}},
}

// Implemented returns the names of the env hostcalls anywasm implements;
// any other proxy_* import is linked to a stub returning UNIMPLEMENTED.
func Implemented() []string {
	names := make([]string, 0, len(hostcalls))
	for n := range hostcalls {
		names = append(names, n)
	}
	return names
}

var errNoVM = errors.New("abi: hostcall made outside a Proxy-Wasm callback")

// The host functions a module may call from its initializer and from its
// allocator, exactly proxy-wasm-cpp-host's lists (WasmBase::startVm and
// WasmBase::allocMemory, which V8, Envoy's default runtime, enforces as
// "restricted_callback"): calling any other fails the VM. Keys are
// "module.name"; the WASI ones are listed for both WASI module names.
var (
	allowedInInitializer = hostSet([]string{"env.emscripten_notify_memory_growth", "env.proxy_log"},
		"fd_write", "args_sizes_get", "args_get", "environ_sizes_get", "environ_get",
		"clock_time_get", "clock_res_get", "random_get", "poll_oneoff", "fd_fdstat_get", "fd_fdstat_set_flags",
		"fd_advise", "fd_allocate", "fd_datasync", "fd_fdstat_set_rights", "fd_filestat_get",
		"fd_filestat_set_size", "fd_filestat_set_times", "fd_pread", "fd_prestat_dir_name", "fd_prestat_get",
		"fd_pwrite", "fd_readdir", "fd_renumber", "fd_sync", "fd_tell", "path_create_directory",
		"path_filestat_get", "path_filestat_set_times", "path_link", "path_readlink", "path_remove_directory",
		"path_rename", "path_symlink", "path_unlink_file", "sock_accept", "sock_recv", "sock_send", "sock_shutdown")
	allowedInAllocator = hostSet([]string{"env.proxy_log"}, "fd_write", "clock_time_get", "poll_oneoff")
)

func hostSet(env []string, wasi ...string) map[string]bool {
	m := map[string]bool{}
	for _, n := range env {
		m[n] = true
	}
	for _, n := range wasi {
		m["wasi_unstable."+n] = true
		m["wasi_snapshot_preview1."+n] = true
	}
	return m
}

// restrictedErr returns why module.name may not run now, nil if it may.
func (v *vm) restrictedErr(module, name string, inInit, inAlloc bool) error {
	switch {
	case v.inAlloc && !inAlloc:
		return fmt.Errorf("abi: %s.%s called from inside the allocator (%s), where only proxy_log, fd_write, clock_time_get and poll_oneoff are allowed (proxy-wasm-cpp-host: restricted_callback)",
			module, name, v.allocName)
	case v.initializing && !inInit:
		return fmt.Errorf("abi: %s.%s called from the module's initializer (%s), where proxy-wasm-cpp-host allows only proxy_log, emscripten_notify_memory_growth and WASI's environment, clock, random and stdio calls (restricted_callback)",
			module, name, v.curName)
	}
	return nil
}

// restrict wraps a host function with the initializer's and the
// allocator's restrictions.
func restrict(module string, f engine.HostFunction) engine.HostFunction {
	key := module + "." + f.Name
	inInit, inAlloc := allowedInInitializer[key], allowedInAllocator[key]
	inner := f.Func
	f.Func = func(ctx context.Context, c engine.Caller, s []uint64) error {
		if v := vmOf(ctx); v != nil && (v.inAlloc || v.initializing) {
			if err := v.restrictedErr(module, f.Name, inInit, inAlloc); err != nil {
				return err
			}
		}
		return inner(ctx, c, s)
	}
	return f
}

func hostFunction(name string, d hostcallDef) engine.HostFunction {
	return newHostFunction("env", name, d)
}

// newHostFunction makes the host function of a hostcall or WASI call,
// with the restrictions of restrict, checked without a second wrapper.
func newHostFunction(module, name string, d hostcallDef) engine.HostFunction {
	fn := d.fn
	key := module + "." + name
	inInit, inAlloc := allowedInInitializer[key], allowedInAllocator[key]
	return engine.HostFunction{Name: name, Type: d.typ, Func: func(ctx context.Context, _ engine.Caller, s []uint64) error {
		v := vmOf(ctx)
		if v == nil {
			return errNoVM
		}
		if v.inAlloc || v.initializing {
			if err := v.restrictedErr(module, name, inInit, inAlloc); err != nil {
				return err
			}
		}
		s[0] = uint64(fn(v, ctx, s))
		if v.fatal != nil {
			err := v.fatal
			v.fatal = nil
			return err
		}
		return nil
	}}
}

// stub is linked to a proxy_* (or WASI) import anywasm lacks: it returns
// ret if the import returns an i32.
func stub(name string, t engine.FuncType, ret uint64) engine.HostFunction {
	return engine.HostFunction{Name: name, Type: t, Func: func(_ context.Context, _ engine.Caller, s []uint64) error {
		if len(t.Results) > 0 {
			clear(s[:len(t.Results)])
			s[0] = ret
		}
		return nil
	}}
}

// capabilityAllowed is proxy-wasm-cpp-host's WasmBase::capabilityAllowed:
// with no AllowedCapabilities every capability is allowed.
func (g *vmGroup) capabilityAllowed(name string) bool {
	return g.allowed == nil || g.allowed[name]
}

// ENOTCAPABLE, what cpp-host's restricted WASI stubs return.
const errnoNotcapable = 76

// restrictedStub is linked, as cpp-host's registerCallbacks links its
// _CREATE_PROXY_WASM_STUB and _CREATE_WASI_STUB stubs, to an import that
// PluginConfig.AllowedCapabilities does not list: it logs the attempt at
// error and returns INTERNAL_FAILURE (a hostcall) or ENOTCAPABLE (WASI; a
// function without a result, proc_exit, only logs).
func (g *vmGroup) restrictedStub(module, name string, t engine.FuncType) engine.HostFunction {
	msg, ret := "Attempted call to restricted proxy-wasm capability: "+name, uint64(StatusInternalFailure)
	if module != "env" {
		msg, ret = "Attempted call to restricted WASI capability: "+name, errnoNotcapable
	}
	f := stub(name, t, ret)
	inner := f.Func
	f.Func = func(ctx context.Context, c engine.Caller, s []uint64) error {
		g.log.Error(msg)
		return inner(ctx, c, s)
	}
	return restrict(module, f)
}

// hostModules builds the host modules for a plugin's imports: hostcalls and
// WASI where the signature matches, stubs for other proxy_* and WASI
// imports, restricted stubs for those AllowedCapabilities leaves out;
// anything else stays missing, so instantiation names it.
func (g *vmGroup) hostModules(imports []engine.Import) []engine.HostModule {
	mods := map[string]*engine.HostModule{}
	seen := map[[2]string]bool{} // a module may import one function twice
	add := func(module string, f engine.HostFunction) {
		if seen[[2]string{module, f.Name}] {
			return
		}
		seen[[2]string{module, f.Name}] = true
		m := mods[module]
		if m == nil {
			m = &engine.HostModule{Name: module}
			mods[module] = m
		}
		m.Functions = append(m.Functions, f)
	}
	for _, im := range imports {
		if im.Kind != engine.ExternFunc {
			continue
		}
		restricted := !g.capabilityAllowed(im.Name)
		switch im.Module {
		case "env":
			if restricted && strings.HasPrefix(im.Name, "proxy_") {
				add(im.Module, g.restrictedStub(im.Module, im.Name, im.Type))
			} else if d, ok := findDef(hostcalls[im.Name], im.Type); ok {
				add(im.Module, hostFunction(im.Name, d))
			} else if strings.HasPrefix(im.Name, "proxy_") {
				if !g.probe { // the group that loads it says so
					g.log.Warn("plugin imports a hostcall anywasm does not implement with this signature; it returns UNIMPLEMENTED",
						"import", im.Name, "signature", im.Type.String())
				}
				add(im.Module, restrict(im.Module, stub(im.Name, im.Type, uint64(StatusUnimplemented))))
			} else if im.Name == "emscripten_notify_memory_growth" && len(im.Type.Results) == 0 {
				add(im.Module, restrict(im.Module, stub(im.Name, im.Type, 0)))
			} else if im.Name == "pthread_equal" && im.Type.Equal(i32s(2)) {
				add(im.Module, restrict(im.Module, engine.HostFunction{Name: im.Name, Type: im.Type, Func: func(_ context.Context, _ engine.Caller, s []uint64) error {
					s[0] = boolArg(uint32(s[0]) == uint32(s[1]))
					return nil
				}}))
			}
		case "wasi_snapshot_preview1", "wasi_unstable":
			if restricted {
				add(im.Module, g.restrictedStub(im.Module, im.Name, im.Type))
			} else if d, ok := findDef(wasiCalls[im.Name], im.Type); ok {
				add(im.Module, wasiFunction(im.Module, im.Name, d))
			} else {
				add(im.Module, restrict(im.Module, stub(im.Name, im.Type, errnoNosys)))
			}
		}
	}
	out := make([]engine.HostModule, 0, len(mods))
	for _, m := range mods {
		out = append(out, *m)
	}
	return out
}

func findDef(defs []hostcallDef, t engine.FuncType) (hostcallDef, bool) {
	for _, d := range defs {
		if d.typ.Equal(t) {
			return d, true
		}
	}
	return hostcallDef{}, false
}

// Guest memory helpers. Each returns false when out of bounds.

func (v *vm) bytes(ptr, n uint64) ([]byte, bool) { return v.mem.Read(uint32(ptr), uint32(n)) }

func (v *vm) str(ptr, n uint64) (string, bool) {
	b, ok := v.bytes(ptr, n)
	return string(b), ok
}

func (v *vm) putU32(ptr uint64, x uint32) bool { return v.mem.WriteUint32Le(uint32(ptr), x) }

func (v *vm) writable(ptrs ...uint64) bool {
	for _, p := range ptrs {
		if uint64(uint32(p))+4 > v.mem.Size() {
			return false
		}
	}
	return true
}

// copyOut hands data to the guest: allocates with the guest's allocator,
// copies, and writes the pointer and size to *pPtr and *pSize. Empty data
// is pointer 0, size 0 (SDKs must never be asked to allocate 0 bytes).
func (v *vm) copyOut(ctx context.Context, data []byte, pPtr, pSize uint64) Status {
	return copyOut(v, ctx, data, pPtr, pSize)
}

// copyOutString is copyOut for a string, without converting it.
func (v *vm) copyOutString(ctx context.Context, str string, pPtr, pSize uint64) Status {
	return copyOut(v, ctx, str, pPtr, pSize)
}

func copyOut[T string | []byte](v *vm, ctx context.Context, data T, pPtr, pSize uint64) Status {
	if !v.writable(pPtr, pSize) {
		return StatusInvalidMemoryAccess
	}
	if len(data) == 0 {
		v.putU32(pPtr, 0)
		v.putU32(pSize, 0)
		return StatusOK
	}
	ptr, err := v.alloc(ctx, uint32(len(data)))
	if err != nil {
		v.fatal = err
		return StatusInternalFailure
	}
	dst, _ := v.mem.Read(ptr, uint32(len(data))) // alloc checked the range
	copy(dst, data)
	v.putU32(pPtr, ptr)
	v.putU32(pSize, uint32(len(data)))
	return StatusOK
}

// --- logging, time, ticks, contexts

func (v *vm) plugin() *Plugin {
	if v.cur != nil && v.cur.plugin != nil {
		return v.cur.plugin
	}
	if len(v.group.plugins) > 0 {
		return v.group.plugins[0]
	}
	return nil
}

func (v *vm) logger() *slog.Logger {
	if p := v.plugin(); p != nil {
		return p.log
	}
	return v.group.log
}

// logLevel is the level of the plugin the running callback belongs to:
// its PluginConfig.LogLevel, else the level of the host's logger.
func (v *vm) logLevel() LogLevel {
	if p := v.plugin(); p != nil {
		return p.level
	}
	return v.group.host.logLevel
}

func (v *vm) emit(ctx context.Context, level LogLevel, msg string) {
	if level < v.logLevel() {
		return
	}
	v.logger().LogAttrs(ctx, SlogLevel(level), msg, fromPlugin)
}

// fromPlugin marks the records of what a plugin itself logs (proxy_log,
// and lines it writes to stdout or stderr), as against what the host logs
// about it: its logger's attributes (plugin, root_id, vm_id) are on both.
// Envoy logs the former under its "wasm" logger as "wasm log NAME ROOT_ID
// VM_ID: message" (Context::log, PluginBase::makeLogPrefix).
var fromPlugin = slog.String(SourceKey, SourcePlugin)

// SourceKey and SourcePlugin are the attribute on every record of a
// plugin's own log.
const (
	SourceKey    = "source"
	SourcePlugin = "plugin"
)

// hLog is cpp-host's log: a level past critical is BAD_ARGUMENT.
func (v *vm) hLog(ctx context.Context, s []uint64) Status {
	level := LogLevel(s[0])
	if level > LogCritical {
		return StatusBadArgument
	}
	msg, ok := v.bytes(s[1], s[2])
	if !ok {
		return StatusInvalidMemoryAccess
	}
	if level >= v.logLevel() {
		v.logger().LogAttrs(ctx, SlogLevel(level), string(msg), fromPlugin)
	}
	return StatusOK
}

// hGetLogLevel is Envoy's Context::getLogLevel: the level the plugin's
// logs are kept at.
func (v *vm) hGetLogLevel(_ context.Context, s []uint64) Status {
	if !v.putU32(s[0], uint32(v.logLevel())) {
		return StatusInvalidMemoryAccess
	}
	return StatusOK
}

func (v *vm) hGetCurrentTime(_ context.Context, s []uint64) Status {
	if !v.mem.WriteUint64Le(uint32(s[0]), uint64(v.group.host.opts.Now().UnixNano())) {
		return StatusInvalidMemoryAccess
	}
	return StatusOK
}

// hSetTickPeriod sets the tick period of the root context of the effective
// context, from a stream context too (cpp-host ContextBase::setTimerPeriod:
// wasm()->setTimerPeriod(root_context()->id(), period)).
func (v *vm) hSetTickPeriod(_ context.Context, s []uint64) Status {
	root := v.rootOfEff()
	if root == nil {
		return StatusBadArgument
	}
	v.setTick(root, uint32(s[0]))
	return StatusOK
}

// rootOfEff is the root context of the effective context (cpp-host
// contextOrEffectiveContext()->root_context()), nil outside a callback.
func (v *vm) rootOfEff() *contextState {
	c := v.eff
	if c != nil && c.root != nil {
		return c.root
	}
	return c
}

// hSetEffectiveContext is cpp-host's set_effective_context: an unknown id
// is BAD_ARGUMENT.
func (v *vm) hSetEffectiveContext(_ context.Context, s []uint64) Status {
	c := v.ctxs[uint32(s[0])]
	if c == nil {
		return StatusBadArgument
	}
	v.eff = c
	return StatusOK
}

// hDone is cpp-host WasmBase::done: the plugin of the effective context
// finishes the work it asked to finish at shutdown (its proxy_on_done
// answered false); NOT_FOUND when it is not shutting down that way.
func (v *vm) hDone(_ context.Context, _ []uint64) Status {
	c := v.rootOfEff()
	if c == nil || !c.pendingDone || c.doneCalled {
		return StatusNotFound
	}
	c.doneCalled = true
	close(c.done)
	return StatusOK
}

// --- buffers

// buffer returns the buffer a hostcall names in the effective context (nil
// when there is none) and whether the plugin may change it, as Envoy's
// Context::getBuffer: bodies and TCP data are mutable; the HTTP call
// response body, the gRPC message, the VM and plugin configuration are
// read-only; the plugin configuration is there only while the root context
// is created and configured (cpp-host ContextBase::onStart/onConfigure set
// temp_plugin_ for those calls only).
func (v *vm) buffer(t bufferType) (*[]byte, bool) {
	c := v.eff
	switch t {
	case bufferHTTPRequestBody, bufferHTTPResponseBody:
		if c == nil || c.http == nil {
			return nil, false
		}
		if t == bufferHTTPRequestBody {
			return &c.http.reqBody, true
		}
		return &c.http.respBody, true
	case bufferDownstreamData, bufferUpstreamData:
		if c == nil || c.tcp == nil {
			return nil, false
		}
		if t == bufferDownstreamData {
			return &c.tcp.down, true
		}
		return &c.tcp.up, true
	case bufferHTTPCallResponseBody:
		if v.callout == nil || v.callout.grpc {
			return nil, false
		}
		return &v.callout.body, false
	case bufferGRPCReceiveBuffer:
		if v.callout == nil || !v.callout.grpc {
			return nil, false
		}
		return &v.callout.body, false
	case bufferForeignFunctionArguments:
		if v.callData == nil {
			return nil, false
		}
		b := v.callData
		return &b, false
	case bufferVMConfiguration:
		b := v.group.vmConf
		return &b, false
	case bufferPluginConfiguration:
		p := v.configuring()
		if p == nil {
			return nil, false
		}
		b := p.cfg.Configuration
		return &b, false
	}
	return nil, false
}

// configuring returns the plugin whose root context is being created or
// configured (Envoy's temp_plugin_), nil in any other callback.
func (v *vm) configuring() *Plugin {
	if v.cur == nil || v.cur.root != nil {
		return nil
	}
	switch v.curName {
	case "proxy_on_configure", "proxy_on_context_create":
		return v.cur.plugin
	}
	return nil
}

// hGetBufferBytes is cpp-host's get_buffer_bytes: an unknown type is
// BAD_ARGUMENT, a buffer the context lacks NOT_FOUND; the range is clipped
// to the buffer, and a start past its end reads nothing (OK, pointer 0 and
// size 0).
func (v *vm) hGetBufferBytes(ctx context.Context, s []uint64) Status {
	if bufferType(s[0]) > bufferForeignFunctionArguments {
		return StatusBadArgument
	}
	buf, _ := v.buffer(bufferType(s[0]))
	if buf == nil {
		return StatusNotFound
	}
	b := *buf
	start, n := uint64(uint32(s[1])), uint64(uint32(s[2]))
	if start > uint64(len(b)) {
		start = uint64(len(b))
	}
	end := min(start+n, uint64(len(b)))
	return v.copyOut(ctx, b[start:end], s[3], s[4])
}

// hSetBufferBytes is cpp-host's set_buffer_bytes over Envoy's
// Buffer::copyFrom: start 0 drains the first min(length, size) bytes (none
// for length 0) and prepends data; a start at or past the end appends; any
// other start is BAD_ARGUMENT, as is a read-only buffer.
func (v *vm) hSetBufferBytes(_ context.Context, s []uint64) Status {
	if bufferType(s[0]) > bufferForeignFunctionArguments {
		return StatusBadArgument
	}
	buf, writable := v.buffer(bufferType(s[0]))
	if buf == nil {
		return StatusNotFound
	}
	data, ok := v.bytes(s[3], s[4])
	if !ok {
		return StatusInvalidMemoryAccess
	}
	if !writable {
		return StatusBadArgument
	}
	b := *buf
	start, length := uint64(uint32(s[1])), uint64(uint32(s[2]))
	switch {
	case start == 0:
		rest := b[min(length, uint64(len(b))):]
		out := make([]byte, 0, len(data)+len(rest))
		*buf = append(append(out, data...), rest...)
	case start >= uint64(len(b)):
		*buf = append(b, data...)
	default:
		return StatusBadArgument
	}
	return StatusOK
}

// hGetBufferStatus is cpp-host's get_buffer_status: the size, and flags 0.
func (v *vm) hGetBufferStatus(_ context.Context, s []uint64) Status {
	if bufferType(s[0]) > bufferForeignFunctionArguments {
		return StatusBadArgument
	}
	buf, _ := v.buffer(bufferType(s[0]))
	if buf == nil {
		return StatusNotFound
	}
	if !v.writable(s[1], s[2]) {
		return StatusInvalidMemoryAccess
	}
	v.putU32(s[1], uint32(len(*buf)))
	v.putU32(s[2], 0)
	return StatusOK
}

// --- header maps

// headerMap returns the map a hostcall names in the effective context, nil
// when the context has none (Envoy's Context::getConstMap).
func (v *vm) headerMap(t mapType) *Headers {
	switch t {
	case mapHTTPCallResponseHeaders, mapGRPCInitialMetadata:
		if v.callout != nil && v.callout.grpc == (t == mapGRPCInitialMetadata) {
			return &v.callout.headers
		}
		return nil
	case mapHTTPCallResponseTrailers, mapGRPCTrailingMetadata:
		if v.callout != nil && v.callout.grpc == (t == mapGRPCTrailingMetadata) {
			return &v.callout.trailers
		}
		return nil
	}
	if v.eff == nil || v.eff.http == nil {
		return nil
	}
	return v.eff.http.headerMap(t)
}

// mapTypeOK is cpp-host's bound on a map type (WasmHeaderMapType::MAX):
// a larger one is BAD_ARGUMENT before anything else.
func mapTypeOK(t uint64) bool { return mapType(t) <= mapHTTPCallResponseTrailers }

// hGetHeaderMapSize is Envoy's Context::getHeaderMapSize: the map's byte
// size (its keys' and values' lengths, Envoy's HeaderMap::byteSize), and
// BAD_ARGUMENT for a map the context lacks.
func (v *vm) hGetHeaderMapSize(_ context.Context, s []uint64) Status {
	if !mapTypeOK(s[0]) {
		return StatusBadArgument
	}
	h := v.headerMap(mapType(s[0]))
	if h == nil {
		return StatusBadArgument
	}
	n := 0
	for i := range *h {
		n += len((*h)[i].Key) + len((*h)[i].Value)
	}
	if !v.putU32(s[1], uint32(n)) {
		return StatusInvalidMemoryAccess
	}
	return StatusOK
}

// hGetHeaderMapPairs is cpp-host's get_header_map_pairs over Envoy's
// Context::getHeaderMapPairs: a map the context lacks reads as empty, and an
// empty map is pointer 0, size 0 (copyToPointerSize of "").
func (v *vm) hGetHeaderMapPairs(ctx context.Context, s []uint64) Status {
	if !mapTypeOK(s[0]) {
		return StatusBadArgument
	}
	if !v.writable(s[1], s[2]) {
		return StatusInvalidMemoryAccess
	}
	h := v.headerMap(mapType(s[0]))
	if h == nil || len(*h) == 0 {
		v.putU32(s[1], 0)
		v.putU32(s[2], 0)
		return StatusOK
	}
	// Serialize straight into guest memory: nothing is allocated in Go.
	size := h.SerializedSize()
	ptr, err := v.alloc(ctx, uint32(size))
	if err != nil {
		v.fatal = err
		return StatusInternalFailure
	}
	if h.SerializedSize() != size {
		// The allocator changed the map (it may make hostcalls that do not
		// allocate): it no longer fits what was allocated.
		v.fatal = errors.New("the guest's allocator changed the header map proxy_get_header_map_pairs was serializing")
		return StatusInternalFailure
	}
	dst, _ := v.mem.Read(ptr, uint32(size))
	h.SerializeTo(dst)
	v.putU32(s[1], ptr)
	v.putU32(s[2], uint32(size))
	return StatusOK
}

// hSetHeaderMapPairs is Envoy's Context::setHeaderMapPairs: the map is
// replaced (keys lower-cased); BAD_ARGUMENT for a map the context lacks or
// one that is read-only. Where Envoy (cpp-host PairsUtil::toPairs) reads a
// malformed or over-limit map as empty and so clears every header, anywasm
// refuses it and fails the stream by its failure policy: a header change
// the host cannot make must not pass silently.
func (v *vm) hSetHeaderMapPairs(_ context.Context, s []uint64) Status {
	if !mapTypeOK(s[0]) {
		return StatusBadArgument
	}
	b, ok := v.bytes(s[1], s[2])
	if !ok {
		return StatusInvalidMemoryAccess
	}
	h, st := v.mutableMap(mapType(s[0]))
	if st != StatusOK {
		return st
	}
	m, err := DecodeHeaders(b, v.group.host.opts.Limits)
	if err != nil {
		return v.refuseMutation(StatusSerializationFailure, fmt.Errorf("proxy_set_header_map_pairs: %w", err))
	}
	for i := range m {
		m[i].Key = lowerKey(m[i].Key)
	}
	*h = m
	return StatusOK
}

// lowerKey lower-cases an HTTP header key (Envoy's LowerCaseString),
// without allocating when it is lower-case already.
func lowerKey(k string) string {
	for i := 0; i < len(k); i++ {
		if 'A' <= k[i] && k[i] <= 'Z' {
			return strings.ToLower(k)
		}
	}
	return k
}

// hGetHeaderMapValue is Envoy's Context::getHeaderMapValue: the first
// value; a missing key is NOT_FOUND (ABI 0.1.0: OK and empty), a map the
// context lacks BAD_ARGUMENT.
func (v *vm) hGetHeaderMapValue(ctx context.Context, s []uint64) Status {
	if !mapTypeOK(s[0]) {
		return StatusBadArgument
	}
	key, ok := v.bytes(s[1], s[2])
	if !ok || !v.writable(s[3], s[4]) {
		return StatusInvalidMemoryAccess
	}
	h := v.headerMap(mapType(s[0]))
	if h == nil {
		return StatusBadArgument
	}
	for i := range *h {
		if keyEqual(key, (*h)[i].Key) {
			return v.copyOutString(ctx, (*h)[i].Value, s[3], s[4])
		}
	}
	if v.group.version == Version010 {
		return v.copyOut(ctx, nil, s[3], s[4]) // 0.1.0: OK and empty
	}
	return StatusNotFound
}

// keyEqual compares a header key from the guest with one of the host's,
// ignoring ASCII case (HTTP header names are case-insensitive; Envoy keeps
// them lower-case), without allocating.
func keyEqual[T string | []byte](guest T, key string) bool {
	if len(guest) != len(key) {
		return false
	}
	for i := 0; i < len(key); i++ {
		a, b := guest[i], key[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// keyValue copies a header key (lower-cased, as Envoy stores it) and value
// from the guest, in one allocation.
//
// The pair's bytes are carved from the VM's current chunk of pairs
// (v.pairs, pairBytes): a request that adds a header allocates nothing on
// the host but, every few hundred pairs, a new chunk. A chunk is never
// written again once a pair is carved from it and never reused, so the
// strings stay immutable whoever keeps them (a chunk lives as long as one
// of its strings does); a pair over maxChunkedPair bytes gets an
// allocation of its own.
func (v *vm) keyValue(s []uint64) (string, string, Status) {
	kb, ok1 := v.bytes(s[1], s[2])
	vb, ok2 := v.bytes(s[3], s[4])
	if !ok1 || !ok2 {
		return "", "", StatusInvalidMemoryAccess
	}
	n, size := len(kb), len(kb)+len(vb)
	var buf []byte
	if size > maxChunkedPair {
		buf = make([]byte, size)
	} else {
		if len(v.pairs)+size > cap(v.pairs) {
			v.pairs = make([]byte, 0, pairBytes)
		}
		buf = v.pairs[len(v.pairs) : len(v.pairs)+size]
		v.pairs = v.pairs[:len(v.pairs)+size]
	}
	copy(buf, kb)
	copy(buf[n:], vb)
	lower(buf[:n])
	both := unsafe.String(unsafe.SliceData(buf), len(buf))
	return both[:n], both[n:], StatusOK
}

// The chunks of added header pairs (keyValue).
const (
	pairBytes      = 4 << 10
	maxChunkedPair = 512
)

// lower lower-cases ASCII letters in place.
func lower(b []byte) {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
}

// mutableMap is Envoy's Context::getMap: the request and response headers
// and trailers of the effective context; BAD_ARGUMENT for any other map
// (the answers of callouts are read-only) or one the context lacks.
func (v *vm) mutableMap(t mapType) (*Headers, Status) {
	if t > mapHTTPResponseTrailers {
		return nil, StatusBadArgument
	}
	h := v.headerMap(t)
	if h == nil {
		return nil, StatusBadArgument
	}
	return h, StatusOK
}

func (v *vm) overLimits(h Headers, extra int) bool {
	l := v.group.host.opts.Limits
	return len(h)+1 > l.MaxHeaderMapPairs || h.SerializedSize()+extra > l.MaxHeaderMapBytes
}

// refuseMutation fails the stream of the effective context (its failure
// policy applies: a 503 under FAIL_CLOSED) because the host refused a change
// the plugin asked for, and returns status for the hostcall: a refused
// change must never pass silently (the request would go on without the
// plugin's decision). The VM itself is sound and goes on.
func (v *vm) refuseMutation(status Status, err error) Status {
	c := v.eff
	if c == nil || c.http == nil || c.http.err != nil {
		return status
	}
	s := c.http
	s.err = &PluginError{Plugin: s.p.cfg.Name, Callback: v.curName, Err: err}
	s.p.log.Error("the host refused a plugin's header change; the stream fails by its failure policy",
		"callback", v.curName, "policy", s.p.cfg.FailurePolicy.String(), "err", err)
	s.failed()
	return status
}

func (v *vm) hAddHeaderMapValue(_ context.Context, s []uint64) Status { return v.putHeader(s, false) }

func (v *vm) hReplaceHeaderMapValue(_ context.Context, s []uint64) Status {
	return v.putHeader(s, true)
}

// putHeader is Envoy's Context::addHeaderMapValue (addCopy) and
// replaceHeaderMapValue (HeaderMapImpl::setCopy: every entry of the key is
// removed and one added at the end), with keys lower-cased. An add that
// would take the map over the limits is refused and fails the stream; a
// replace is never refused for size (it adds no entry, and a map over the
// limits, as a client sent it, must still be correctable).
func (v *vm) putHeader(s []uint64, replace bool) Status {
	if !mapTypeOK(s[0]) {
		return StatusBadArgument
	}
	k, val, st := v.keyValue(s)
	if st != StatusOK {
		return st
	}
	h, st := v.mutableMap(mapType(s[0]))
	if st != StatusOK {
		return st
	}
	if replace {
		delFold(h, k)
		h.Add(k, val)
		return StatusOK
	}
	if v.overLimits(*h, 10+len(k)+len(val)) {
		l := v.group.host.opts.Limits
		return v.refuseMutation(StatusBadArgument, fmt.Errorf("%w: adding %q to a map of %d pairs, %d bytes would exceed %d pairs or %d bytes",
			ErrHeaderLimit, k, len(*h), h.SerializedSize(), l.MaxHeaderMapPairs, l.MaxHeaderMapBytes))
	}
	h.Add(k, val)
	return StatusOK
}

// hRemoveHeaderMapValue is Envoy's Context::removeHeaderMapValue: every
// entry of the key goes; BAD_ARGUMENT for a map the context lacks.
func (v *vm) hRemoveHeaderMapValue(_ context.Context, s []uint64) Status {
	if !mapTypeOK(s[0]) {
		return StatusBadArgument
	}
	key, ok := v.bytes(s[1], s[2])
	if !ok {
		return StatusInvalidMemoryAccess
	}
	h, st := v.mutableMap(mapType(s[0]))
	if st != StatusOK {
		return st
	}
	delFold(h, key)
	return StatusOK
}

// --- stream control

// streamTypeOK is cpp-host's bound on a stream type (WasmStreamType::MAX).
func streamTypeOK(t uint64) bool { return StreamType(t) <= StreamUpstream }

func (v *vm) hContinueStream(_ context.Context, s []uint64) Status {
	if !streamTypeOK(s[0]) {
		return StatusBadArgument
	}
	return v.continueStream(StreamType(s[0]))
}

func (v *vm) hContinueRequest(context.Context, []uint64) Status {
	return v.continueStream(StreamHTTPRequest)
}

func (v *vm) hContinueResponse(context.Context, []uint64) Status {
	return v.continueStream(StreamHTTPResponse)
}

// continueStream is Envoy's Context::continueStream: it resumes the
// direction of the effective context's stream if it is paused (and does
// nothing, successfully, for a context of another kind); the upstream
// direction of a TCP stream cannot be continued (UNIMPLEMENTED, as Envoy's
// network write filters have no continueWriting).
func (v *vm) continueStream(t StreamType) Status {
	c := v.eff
	switch t {
	case StreamUpstream:
		return StatusUnimplemented
	case StreamDownstream:
		if c != nil && c.tcp != nil {
			c.tcp.cont(dirOf(t))
		}
	default:
		if c != nil && c.http != nil {
			c.http.cont(dirOf(t))
		}
	}
	return StatusOK
}

// hCloseStream is Envoy's Context::closeStream: the request or response
// direction of an HTTP stream resets the stream (nothing is answered; the
// details are "wasm_close_stream"), the downstream or upstream direction of
// a TCP stream closes the connection; for a context of another kind it
// does nothing, successfully.
func (v *vm) hCloseStream(_ context.Context, s []uint64) Status {
	if !streamTypeOK(s[0]) {
		return StatusBadArgument
	}
	c := v.eff
	switch t := StreamType(s[0]); {
	case (t == StreamHTTPRequest || t == StreamHTTPResponse) && c != nil && c.http != nil:
		c.http.answerWith(&LocalResponse{Reset: true, Details: "wasm_close_stream", GRPCStatus: -1})
		c.http.wake()
	case (t == StreamDownstream || t == StreamUpstream) && c != nil && c.tcp != nil:
		c.tcp.closeReq = true
		c.tcp.wake()
	}
	return StatusOK
}

// hSendLocalResponse is cpp-host's send_local_response over Envoy's
// Context::sendLocalResponse: after the memory checks it always answers OK;
// headers that do not parse are none (PairsUtil::toPairs), keys are
// lower-cased, spaces in the details become underscores
// (StringUtil::replaceAllEmptySpace), a gRPC status outside 0..16 means
// none, and only an HTTP stream gets the response (a first one wins, but
// one sent while a local response goes through the plugin's response
// callbacks replaces it: DownstreamFilterManager::sendLocalReply sends it
// directly). The
// callback that sent it pauses whatever it returns (stopNextIteration).
func (v *vm) hSendLocalResponse(_ context.Context, s []uint64) Status {
	details, ok1 := v.bytes(s[1], s[2])
	body, ok2 := v.bytes(s[3], s[4])
	hb, ok3 := v.bytes(s[5], s[6])
	if !ok1 || !ok2 || !ok3 {
		return StatusInvalidMemoryAccess
	}
	c := v.eff
	if c == nil || c.http == nil || c.http.local != nil && !c.http.mayAnswerAgain() {
		return StatusOK
	}
	headers, err := DecodeHeaders(hb, v.group.host.opts.Limits)
	if err != nil {
		headers = nil
	}
	for i := range headers {
		headers[i].Key = lowerKey(headers[i].Key)
	}
	d := []byte(string(details))
	for i, b := range d {
		if b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\v' || b == '\f' {
			d[i] = '_'
		}
	}
	grpc := int32(uint32(s[7]))
	if grpc < 0 || grpc > 16 {
		grpc = -1
	}
	c.http.answerWith(&LocalResponse{Status: int(uint32(s[0])), Details: string(d), Headers: headers,
		Body: append([]byte(nil), body...), GRPCStatus: grpc})
	return StatusOK
}

func (v *vm) hGetStatus(ctx context.Context, s []uint64) Status {
	if !v.writable(s[0]) {
		return StatusInvalidMemoryAccess
	}
	code, msg := uint32(0), ""
	if v.callout != nil {
		code, msg = v.callout.statusCode, v.callout.statusMessage
	}
	v.putU32(s[0], code)
	return v.copyOutString(ctx, msg, s[1], s[2])
}

// --- properties, configuration, foreign functions

// splitPath splits a property path; segments are NUL-separated (a trailing
// NUL is ignored).
func splitPath(p []byte) []string {
	s := strings.TrimSuffix(string(p), "\x00")
	return strings.Split(s, "\x00")
}

// maxPropBuf is the most of a serialized property a VM keeps to reuse.
const maxPropBuf = 64 << 10

// hGetProperty is Envoy's Context::getProperty (attributes.go): what the
// embedder's Options.Properties answers, then Envoy's attributes, then
// what the plugin set on the stream (filter state).
func (v *vm) hGetProperty(ctx context.Context, s []uint64) Status {
	raw, ok := v.bytes(s[0], s[1])
	if !ok || !v.writable(s[2], s[3]) {
		return StatusInvalidMemoryAccess
	}
	if f := v.group.host.opts.Properties; f != nil {
		if val, ok := f(splitPath(raw)); ok {
			return v.copyOut(ctx, val, s[2], s[3])
		}
	}
	if val, ok := v.lookupProperty(raw); ok {
		if val.kind == propString {
			return v.copyOutString(ctx, val.s, s[2], s[3])
		}
		// The VM's buffer: the guest allocator copyOut calls may not
		// call back here (allowedInAllocator).
		b, ok := val.serialize(v.propBuf[:0])
		if !ok {
			return StatusSerializationFailure
		}
		// Keep a grown buffer, never a stored value (propBytes is the
		// plugin's filter state itself: reusing it would overwrite it).
		if val.kind != propBytes && cap(b) > cap(v.propBuf) && cap(b) <= maxPropBuf {
			v.propBuf = b[:0]
		}
		return v.copyOut(ctx, b, s[2], s[3])
	}
	if c := v.eff; c != nil {
		if val, ok := c.props[string(bytes.TrimSuffix(raw, []byte{0}))]; ok {
			return v.copyOut(ctx, val, s[2], s[3])
		}
	}
	return StatusNotFound
}

// hSetProperty is Envoy's Context::setProperty: a value in the stream's
// filter state, which only a stream has (NOT_FOUND in a root context).
func (v *vm) hSetProperty(_ context.Context, s []uint64) Status {
	raw, ok1 := v.bytes(s[0], s[1])
	val, ok2 := v.bytes(s[2], s[3])
	if !ok1 || !ok2 {
		return StatusInvalidMemoryAccess
	}
	c := v.eff
	if c == nil || c.root == nil {
		return StatusNotFound
	}
	key := string(bytes.TrimSuffix(raw, []byte{0}))
	// A property declared readonly (declare_property) is set once: Envoy's
	// CelState::setValue.
	if proto, ok := c.root.declared[key]; ok && proto.readonly {
		if _, set := c.props[key]; set {
			return StatusBadArgument
		}
	}
	lim := v.group.host.opts.Limits
	old, had := c.props[key]
	size := c.propBytes + len(val)
	if had {
		size -= len(old)
	} else {
		size += len(key)
	}
	if !had && len(c.props) >= lim.MaxProperties || size > lim.MaxPropertyBytes {
		v.logger().Warn("proxy_set_property refused: over the context's property limit",
			"property", key, "properties", len(c.props), "max_properties", lim.MaxProperties,
			"bytes", size, "max_property_bytes", lim.MaxPropertyBytes)
		return StatusInternalFailure
	}
	if c.props == nil {
		c.props = map[string][]byte{}
	}
	c.props[key] = append([]byte(nil), val...)
	c.propBytes = size
	return StatusOK
}

// hGetConfiguration is ABI 0.1.0's proxy_get_configuration(ret_ptr,
// ret_size), Envoy's Context::getConfiguration: the plugin configuration
// while a root context is created or configured, the VM configuration in
// any other callback.
func (v *vm) hGetConfiguration(ctx context.Context, s []uint64) Status {
	if p := v.configuring(); p != nil {
		return v.copyOut(ctx, p.cfg.Configuration, s[0], s[1])
	}
	return v.copyOut(ctx, v.group.vmConf, s[0], s[1])
}

// hCallForeignFunction is cpp-host's call_foreign_function: NOT_FOUND for
// an unknown function; results pointer 0 means the caller wants no result
// (nothing is allocated or written), size pointer 0 that it wants no size.
func (v *vm) hCallForeignFunction(ctx context.Context, s []uint64) Status {
	name, ok1 := v.bytes(s[0], s[1])
	args, ok2 := v.bytes(s[2], s[3])
	if !ok1 || !ok2 {
		return StatusInvalidMemoryAccess
	}
	pRes, pSize := uint32(s[4]), uint32(s[5])
	if (pRes != 0 && !v.writable(s[4])) || (pSize != 0 && !v.writable(s[5])) {
		return StatusInvalidMemoryAccess
	}
	f := v.group.host.opts.ForeignFunctions[string(name)]
	if p := v.plugin(); f == nil || (p != nil && !p.allowed(name)) {
		return StatusNotFound
	}
	out, err := f(ctx, append([]byte(nil), args...))
	if err != nil {
		// Envoy's foreign functions answer a status of their own.
		if se := (*StatusError)(nil); errors.As(err, &se) {
			v.logger().Debug("foreign function refused", "function", string(name), "err", err)
			return se.Status
		}
		v.logger().Warn("foreign function failed", "function", string(name), "err", err)
		return StatusInternalFailure
	}
	var ptr uint32
	if pRes != 0 && len(out) > 0 {
		if ptr, err = v.alloc(ctx, uint32(len(out))); err != nil {
			v.fatal = err
			return StatusInternalFailure
		}
		dst, _ := v.mem.Read(ptr, uint32(len(out)))
		copy(dst, out)
	}
	if pRes != 0 {
		v.putU32(s[4], ptr)
	}
	if pSize != 0 {
		v.putU32(s[5], uint32(len(out)))
	}
	return StatusOK
}

// --- metrics

func (v *vm) hDefineMetric(_ context.Context, s []uint64) Status {
	t := MetricType(s[0])
	if t > MetricHistogram {
		return StatusBadArgument
	}
	name, ok := v.str(s[1], s[2])
	if !ok || !v.writable(s[3]) {
		return StatusInvalidMemoryAccess
	}
	id, err := v.group.host.metrics.define(t, name)
	if err != nil {
		return StatusBadArgument
	}
	v.putU32(s[3], id)
	return StatusOK
}

func (v *vm) hRecordMetric(_ context.Context, s []uint64) Status {
	return v.group.host.metrics.record(uint32(s[0]), s[1])
}

func (v *vm) hIncrementMetric(_ context.Context, s []uint64) Status {
	return v.group.host.metrics.increment(uint32(s[0]), int64(s[1]))
}

func (v *vm) hGetMetric(_ context.Context, s []uint64) Status {
	val, st := v.group.host.metrics.get(uint32(s[0]))
	if st != StatusOK {
		return st
	}
	if !v.mem.WriteUint64Le(uint32(s[1]), val) {
		return StatusInvalidMemoryAccess
	}
	return StatusOK
}

var le = binary.LittleEndian
