package abi

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anywasm/anywasm/engine"
)

// callback is an exported Proxy-Wasm callback and its parameter count.
type callback struct {
	f engine.Function
	n int
}

// callbacks are the exports the host calls; f is nil when absent.
type callbacks struct {
	malloc                                       engine.Function
	contextCreate, vmStart, configure, tick      callback
	done, log, delete                            callback
	newConnection, downstreamData, upstreamData  callback
	downstreamClose, upstreamClose               callback
	requestHeaders, requestBody, requestTrailers callback
	responseHeaders, responseBody                callback
	responseTrailers, httpCallResponse           callback
	queueReady, foreignFunction                  callback
	grpcInitialMetadata, grpcTrailingMetadata    callback
	grpcReceive, grpcClose                       callback
}

// vm is one instance of a plugin module with the root contexts of the
// plugins sharing it. One callback runs at a time (mu).
type vm struct {
	group *vmGroup
	inst  engine.Instance
	mem   engine.Memory
	cb    callbacks
	cc    callCtx // the context of calls made without a timeout

	mu        sync.Mutex
	stack     [8]uint64 // callback arguments and results
	aStack    [1]uint64 // the allocator's
	inAlloc   bool
	allocName string // the allocator's export
	nextID    uint32
	roots     map[*Plugin]*contextState
	ctxs      map[uint32]*contextState
	cur       *contextState // the context of the running callback
	curName   string        // the running callback's export
	eff       *contextState // the effective context (proxy_set_effective_context)
	fatal     error         // a host-side error that must end the guest call
	// initializing: the module's initializer runs; hostcalls are restricted
	initializing bool

	made    time.Time // when newVM began making it (FailReload's interval counts from here)
	streams atomic.Int64
	failed  atomic.Bool
	err     error // why it failed
	closed  bool  // no callback runs any more
	closing bool  // closeLocked started
	ticks   map[uint32]*ticker

	callout  *calloutResult // during proxy_on_http_call_response
	callData []byte         // during proxy_on_foreign_function: buffer type 8
	// propBuf is reused by proxy_get_property to serialize a value
	// (up to maxPropBuf kept)
	propBuf []byte
	// pairs is the chunk the header pairs the guest adds are carved from
	// (keyValue); only its free capacity is ever written
	pairs    []byte
	nextCall [3]uint32 // per callout kind (newCall)
	// grpcCalls and grpcStreams are the gRPC calls and streams in flight,
	// by token (grpc.go)
	grpcCalls   map[uint32]*grpcCall
	grpcStreams map[uint32]*grpcStream
	out         [2][]byte // stdout and stderr not yet logged
	// queues are the shared queues a root context of this VM registered
	// (guarded by mu, like the rest; also written under the host's
	// queueRegistry.mu): closing the VM forgets it there.
	queues []*queue
}

// callCtx is the context.Context guest calls run under; host functions find
// their VM in it with one type assertion.
type callCtx struct {
	context.Context
	vm *vm
}

func vmOf(ctx context.Context) *vm {
	if c, ok := ctx.(*callCtx); ok {
		return c.vm
	}
	return nil
}

// contextState is a root or stream context inside a VM.
type contextState struct {
	id     uint32
	plugin *Plugin
	root   *contextState // nil for a root context
	http   *HTTPStream
	tcp    *TCPStream
	props  map[string][]byte // proxy_set_property
	// propBytes is what props holds, names and values (Limits.MaxPropertyBytes)
	propBytes int
	// root contexts: properties declared with declare_property, and what
	// foreign functions keep (Caller.RootData)
	declared map[string]propertyPrototype
	foreign  map[string]any
	// root contexts: pendingDone is set when proxy_on_done answered false
	// at shutdown (cpp-host's pending_done_); proxy_done then closes done
	// (once: doneCalled)
	done        chan struct{}
	pendingDone bool
	doneCalled  bool
}

// lookupFn returns the callback name exports, or none. The module's
// exports are asked first: most plugins lack some of the callbacks, and
// an instance's error for a missing function is made with fmt (14% of
// the CPU profile of a new VM of the Go-SDK snapshot on wasmtime).
func lookupFn(info *engine.ModuleInfo, inst engine.Instance, name string) callback {
	if _, ok := info.ExportedFunction(name); !ok {
		return callback{}
	}
	f, err := inst.Function(name)
	if err != nil {
		return callback{}
	}
	return callback{f: f, n: len(f.Type().Params)}
}

// newVM instantiates the module, runs its initializer and starts the root
// context of each plugin. It touches nothing of g that g.mu guards.
func (g *vmGroup) newVM(ctx context.Context, plugins []*Plugin) (*vm, error) {
	v, err := g.instantiate(ctx)
	if err != nil {
		return nil, err
	}
	defer v.mu.Unlock()
	for _, p := range plugins {
		if err := v.startRoot(ctx, p); err != nil {
			v.closeLocked(ctx)
			return nil, err
		}
	}
	return v, nil
}

// instantiate instantiates the module and runs its initializer; it returns
// the VM with v.mu held.
func (g *vmGroup) instantiate(ctx context.Context) (*vm, error) {
	v := &vm{group: g, roots: map[*Plugin]*contextState{}, ctxs: map[uint32]*contextState{}, made: time.Now()}
	v.cc = callCtx{Context: context.Background(), vm: v}
	inst, err := g.host.rt.Instantiate(&v.cc, g.mod, g.imports)
	if err != nil {
		return nil, fmt.Errorf("instantiate: %w", err)
	}
	v.inst = inst
	v.mem = inst.Memory()
	if v.mem == nil {
		_ = inst.Close(ctx)
		return nil, errors.New(`the module exports no memory named "memory"`)
	}
	// malloc first, as cpp-host's WasmBase::getFunctions looks them up.
	info := g.mod.Info()
	if f := lookupFn(info, inst, "malloc").f; f != nil {
		v.cb.malloc, v.allocName = f, "malloc"
	} else if f := lookupFn(info, inst, "proxy_on_memory_allocate").f; f != nil {
		v.cb.malloc, v.allocName = f, "proxy_on_memory_allocate"
	}
	if v.cb.malloc == nil || len(v.cb.malloc.Type().Params) != 1 || len(v.cb.malloc.Type().Results) != 1 {
		_ = inst.Close(ctx)
		return nil, errors.New("the allocator (proxy_on_memory_allocate or malloc) is missing or not (i32) -> i32")
	}
	c := &v.cb
	for _, x := range []struct {
		p    *callback
		name string
	}{
		{&c.contextCreate, "proxy_on_context_create"}, {&c.vmStart, "proxy_on_vm_start"},
		{&c.configure, "proxy_on_configure"}, {&c.tick, "proxy_on_tick"},
		{&c.done, "proxy_on_done"}, {&c.log, "proxy_on_log"}, {&c.delete, "proxy_on_delete"},
		{&c.newConnection, "proxy_on_new_connection"}, {&c.downstreamData, "proxy_on_downstream_data"},
		{&c.upstreamData, "proxy_on_upstream_data"}, {&c.downstreamClose, "proxy_on_downstream_connection_close"},
		{&c.upstreamClose, "proxy_on_upstream_connection_close"},
		{&c.requestHeaders, "proxy_on_request_headers"}, {&c.requestBody, "proxy_on_request_body"},
		{&c.requestTrailers, "proxy_on_request_trailers"}, {&c.responseHeaders, "proxy_on_response_headers"},
		{&c.responseBody, "proxy_on_response_body"}, {&c.responseTrailers, "proxy_on_response_trailers"},
		{&c.httpCallResponse, "proxy_on_http_call_response"}, {&c.queueReady, "proxy_on_queue_ready"},
		{&c.foreignFunction, "proxy_on_foreign_function"},
		{&c.grpcInitialMetadata, "proxy_on_grpc_receive_initial_metadata"},
		{&c.grpcTrailingMetadata, "proxy_on_grpc_receive_trailing_metadata"},
		{&c.grpcReceive, "proxy_on_grpc_receive"}, {&c.grpcClose, "proxy_on_grpc_close"},
	} {
		// cpp-host's WasmBase::getFunctions: a callback that is not an
		// allowed capability is never looked up, so never called.
		if g.capabilityAllowed(x.name) {
			*x.p = lookupFn(info, inst, x.name)
		}
	}
	v.mu.Lock()
	if err := v.initialize(ctx); err != nil {
		v.closeLocked(ctx)
		v.mu.Unlock()
		return nil, err
	}
	return v, nil
}

// initializers returns the WASI initializer functions cpp-host's
// WasmBase::startVm calls, in order: _initialize, then main(0, 0) if
// exported, else __main_void(); without _initialize, _start.
func initializers(info *engine.ModuleInfo) []string {
	if _, ok := info.ExportedFunction("_initialize"); ok {
		if t, ok := info.ExportedFunction("main"); ok && len(t.Params) == 2 {
			return []string{"_initialize", "main"}
		}
		if t, ok := info.ExportedFunction("__main_void"); ok && len(t.Params) == 0 {
			return []string{"_initialize", "__main_void"}
		}
		return []string{"_initialize"}
	}
	if _, ok := info.ExportedFunction("_start"); ok {
		return []string{"_start"}
	}
	return nil
}

// initialize runs the WASI initializer (initializers).
func (v *vm) initialize(ctx context.Context) error {
	v.initializing = true
	defer func() { v.initializing = false }()
	for _, name := range initializers(v.group.mod.Info()) {
		f, err := v.inst.Function(name)
		if err != nil {
			return fmt.Errorf("the initializer %s: %w", name, err)
		}
		nargs := 0
		if name == "main" {
			nargs = 2
		}
		err = v.callRaw(ctx, f, name, nargs)
		if name == "_start" {
			var t *engine.Trap
			if errors.As(err, &t) && t.Code == engine.TrapExit && t.ExitCode == 0 && !v.inst.Failed() {
				err = nil
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// startRoot creates p's root context and runs proxy_on_vm_start and
// proxy_on_configure. v.mu is held.
func (v *vm) startRoot(ctx context.Context, p *Plugin) error {
	v.nextID++
	root := &contextState{id: v.nextID, plugin: p, done: make(chan struct{})}
	v.ctxs[root.id] = root
	v.roots[p] = root
	if _, err := v.call(ctx, root, v.cb.contextCreate, "proxy_on_context_create", uint64(root.id), 0); err != nil {
		return err
	}
	ok, err := v.call(ctx, root, v.cb.vmStart, "proxy_on_vm_start", uint64(root.id), uint64(len(v.group.vmConf)))
	if err != nil {
		return err
	}
	if v.cb.vmStart.f != nil && ok == 0 {
		return errors.New("proxy_on_vm_start returned false: the plugin refused the VM configuration")
	}
	ok, err = v.call(ctx, root, v.cb.configure, "proxy_on_configure", uint64(root.id), uint64(len(p.cfg.Configuration)))
	if err != nil {
		return err
	}
	if v.cb.configure.f != nil && ok == 0 {
		return errors.New("proxy_on_configure returned false: the plugin refused its configuration")
	}
	return nil
}

// callRaw calls an export with no Proxy-Wasm context.
func (v *vm) callRaw(ctx context.Context, f engine.Function, name string, nargs int) error {
	clear(v.stack[:])
	_, err := v.call(ctx, nil, callback{f: f, n: nargs}, name)
	return err
}

// call runs callback cb for context c with up to 5 arguments (extra ones are
// dropped for callbacks of older ABI shapes) and returns its result, 0 when
// the plugin does not export it. v.mu is held.
func (v *vm) call(ctx context.Context, c *contextState, cb callback, name string, args ...uint64) (uint64, error) {
	if cb.f == nil {
		return 0, nil
	}
	if v.failed.Load() {
		return 0, v.failure()
	}
	copy(v.stack[:], args[:min(len(args), cb.n)])
	prevCur, prevEff, prevName := v.cur, v.eff, v.curName
	v.cur, v.eff, v.curName = c, c, name
	cc := &v.cc
	var cancel context.CancelFunc
	if t := v.timeout(c); t > 0 {
		tctx, cf := context.WithTimeout(ctx, t)
		cc, cancel = &callCtx{Context: tctx, vm: v}, cf
	}
	err := cb.f.Call(cc, v.stack[:])
	if cancel != nil {
		cancel()
	}
	v.cur, v.eff, v.curName = prevCur, prevEff, prevName
	if err == nil && v.fatal != nil {
		err = v.fatal
	}
	if err != nil {
		v.fail(c, name, err)
		return 0, v.failure()
	}
	return v.stack[0], nil
}

func (v *vm) timeout(c *contextState) time.Duration {
	if c != nil && c.plugin != nil {
		return c.plugin.cfg.CallTimeout
	}
	var t time.Duration
	for _, p := range v.group.plugins {
		t = max(t, p.cfg.CallTimeout)
	}
	return t
}

// PluginError is the error of a stream or plugin whose callback failed.
type PluginError struct {
	Plugin   string
	Callback string
	// Err is the cause: usually an *engine.Trap, so errors.As reaches its
	// Code and errors.Is(err, context.DeadlineExceeded) works.
	Err error
}

func (e *PluginError) Error() string {
	code := ""
	var t *engine.Trap
	if errors.As(e.Err, &t) {
		code = " [" + t.Code.String() + "]"
	}
	return fmt.Sprintf("abi: plugin %q failed in %s%s: %v", e.Plugin, e.Callback, code, e.Err)
}

func (e *PluginError) Unwrap() error { return e.Err }

// fail marks the VM failed: it is never entered again.
func (v *vm) fail(c *contextState, callback string, err error) {
	if v.failed.Load() {
		return
	}
	name := ""
	if c != nil && c.plugin != nil {
		name = c.plugin.cfg.Name
	} else if len(v.group.plugins) > 0 {
		name = v.group.plugins[0].cfg.Name
	}
	v.err = &PluginError{Plugin: name, Callback: callback, Err: err}
	v.failed.Store(true)
	v.flushOutput(context.Background(), true)
	v.group.log.Error("plugin failed; its VM will be replaced", "plugin", name, "callback", callback, "err", err)
	for _, t := range v.ticks {
		t.stop()
	}
	v.cancelGRPC(0) // no callback runs any more: end the calls and streams
	// Wake the streams waiting for this VM: they fail by their policy.
	for _, sc := range v.ctxs {
		if sc.http != nil {
			sc.http.wake()
		} else if sc.tcp != nil {
			sc.tcp.wake()
		}
	}
	if c != nil && c.plugin != nil && c.plugin.cfg.FailurePolicy == FailReload {
		v.group.replaceSoon()
	}
}

func (v *vm) failure() error {
	if v.err != nil {
		return v.err
	}
	return errors.New("abi: VM failed")
}

// alloc allocates size bytes in the guest through its allocator and returns
// a pointer that was checked to lie inside guest memory. v.mu is held and a
// callback is running (this is called from hostcalls).
func (v *vm) alloc(ctx context.Context, size uint32) (uint32, error) {
	if v.inAlloc {
		return 0, errors.New("the guest's allocator called a hostcall that allocates")
	}
	v.inAlloc = true
	v.aStack[0] = uint64(size)
	err := v.cb.malloc.Call(ctx, v.aStack[:])
	v.inAlloc = false
	if err != nil {
		return 0, err
	}
	ptr := uint32(v.aStack[0])
	if ptr == 0 {
		return 0, fmt.Errorf("the guest's allocator returned 0 for %d bytes", size)
	}
	if uint64(ptr)+uint64(size) > v.mem.Size() {
		return 0, fmt.Errorf("the guest's allocator returned %#x for %d bytes, outside its %d bytes of memory", ptr, size, v.mem.Size())
	}
	return ptr, nil
}

func (v *vm) close(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.closeLocked(ctx)
}

// closeLocked ends every root context (see shutdownRoot) and closes the
// instance. v.mu is held (and released while a plugin finishes its work).
func (v *vm) closeLocked(ctx context.Context) error {
	if v.closing {
		return nil
	}
	v.closing = true
	defer v.flushOutput(ctx, true)
	if !v.failed.Load() {
		for _, root := range v.roots {
			if err := v.shutdownRoot(ctx, root); err != nil {
				break
			}
		}
	}
	v.closed = true
	for _, t := range v.ticks {
		t.stop()
	}
	v.cancelGRPC(0)
	v.group.host.queues.forget(v, 0)
	return v.inst.Close(ctx)
}

// shutdownRoot ends a root context as Envoy does: proxy_on_done; if the
// plugin answers false it has work to finish (callouts, queue items) and
// will call proxy_done, which is waited for, up to Options.DoneTimeout,
// while its ticks, callouts and queue deliveries go on; then
// proxy_on_delete. v.mu is held, and released while waiting.
func (v *vm) shutdownRoot(ctx context.Context, root *contextState) error {
	// The callbacks get call deadlines of their own: ctx bounds the wait,
	// and a cancelled ctx must not interrupt (and so fail) the plugin.
	cctx := context.WithoutCancel(ctx)
	ok, err := v.call(cctx, root, v.cb.done, "proxy_on_done", uint64(root.id))
	if err != nil {
		return err
	}
	if v.cb.done.f != nil && ok == 0 {
		root.pendingDone = true
		wait := v.group.host.opts.DoneTimeout
		log := root.plugin.log
		timer := time.NewTimer(wait)
		v.mu.Unlock() // nothing of the VM is touched until it is locked again
		select {
		case <-root.done:
		case <-timer.C:
			log.Warn("the plugin did not call proxy_done after proxy_on_done returned false", "waited", wait)
		case <-ctx.Done():
		}
		timer.Stop()
		v.mu.Lock()
		if v.failed.Load() {
			return v.failure()
		}
	}
	_, err = v.call(cctx, root, v.cb.delete, "proxy_on_delete", uint64(root.id))
	return err
}
