package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
)

// Sentinel errors. Compare with errors.Is.
var (
	// ErrNotSupported is returned when a configuration asks a runtime for a
	// limit or feature it cannot enforce. anywasm never pretends.
	ErrNotSupported = errors.New("not supported by this runtime")
	// ErrClosed is returned by calls on a closed runtime, module or instance.
	ErrClosed = errors.New("engine: closed")
	// ErrFailed is returned by calls on an instance whose earlier call
	// trapped. Guest state after a trap is not trusted: make a new instance.
	ErrFailed = errors.New("engine: instance failed after an earlier trap")
	// ErrStackSize is returned when a call's stack is shorter than the
	// function's parameter or result count.
	ErrStackSize = errors.New("engine: stack is shorter than the function's parameters or results")
	// ErrCompilationCache is wrapped by the error Open returns when the
	// directory given to Config.WithCompilationCache cannot be trusted: it
	// cannot be created or opened, is not a directory, is not owned by the
	// process's effective user or is writable by group or others (checked on
	// the directory a symlink points to), or its key file is malformed, not a
	// regular file, not owned by that user or has any group or other
	// permission bit. The error names the path and the reason. A cache entry
	// that fails such a check later is not an error: it is never loaded, and
	// the module is compiled again.
	ErrCompilationCache = errors.New("engine: compilation cache refused")
	// ErrPoolExhausted is wrapped by the error Instantiate returns when
	// every slot of the instance pool (Config.WithInstancePool) holds an
	// instance not yet closed. The error names the pool's size.
	ErrPoolExhausted = errors.New("engine: instance pool exhausted")
)

// TrapCode says why a call into the guest stopped. The codes are the same on
// every runtime: the conformance suite checks each one.
type TrapCode uint8

// The trap codes.
const (
	// TrapUnknown is a trap the backend could not classify; Message has the
	// runtime's own text.
	TrapUnknown TrapCode = iota
	TrapUnreachable
	TrapMemoryOutOfBounds
	TrapTableOutOfBounds // includes calls through an uninitialized table element
	TrapIndirectCallTypeMismatch
	TrapStackOverflow
	TrapIntegerDivideByZero
	TrapIntegerOverflow
	TrapInvalidConversion
	// TrapInterrupted: the context passed to Call was cancelled or its
	// deadline passed while the guest ran. Cause is ctx.Err(), so
	// errors.Is(err, context.DeadlineExceeded) holds after a timeout.
	TrapInterrupted
	// TrapOutOfFuel: the per-call fuel (Config.WithFuel) ran out.
	TrapOutOfFuel
	// TrapHostError: a host function returned an error; Cause is that error.
	TrapHostError
	// TrapHostPanic: a host function panicked; Cause is a *PanicError.
	TrapHostPanic
	// TrapExit: a host function returned Exit(code); ExitCode holds the code.
	TrapExit
)

var trapNames = [...]string{
	TrapUnknown:                  "unknown",
	TrapUnreachable:              "unreachable",
	TrapMemoryOutOfBounds:        "out of bounds memory access",
	TrapTableOutOfBounds:         "out of bounds table access",
	TrapIndirectCallTypeMismatch: "indirect call type mismatch",
	TrapStackOverflow:            "stack overflow",
	TrapIntegerDivideByZero:      "integer divide by zero",
	TrapIntegerOverflow:          "integer overflow",
	TrapInvalidConversion:        "invalid conversion to integer",
	TrapInterrupted:              "interrupted",
	TrapOutOfFuel:                "out of fuel",
	TrapHostError:                "host function error",
	TrapHostPanic:                "host function panic",
	TrapExit:                     "exit",
}

// String returns a short name such as "unreachable".
func (c TrapCode) String() string {
	if int(c) < len(trapNames) {
		return trapNames[c]
	}
	return fmt.Sprintf("TrapCode(%d)", uint8(c))
}

// Trap is the error returned when a call into the guest stops abnormally.
// Every backend returns a *Trap for every abnormal end of a guest call, so
// callers can switch on Code without knowing the runtime.
type Trap struct {
	Code TrapCode
	// Runtime is the name of the backend that ran the guest.
	Runtime string
	// Message is the runtime's own text, kept for diagnosis. It differs
	// between runtimes; Code does not.
	Message string
	// ExitCode is the code given to Exit, for TrapExit.
	ExitCode uint32
	// Cause is the host function's error, the *PanicError, or ctx.Err().
	Cause error
	// Frames is the guest's backtrace when the trap happened, innermost
	// first: the function that trapped, then its callers, up to the
	// exported function the call entered (or the start function). It holds
	// at most MaxFrames frames, the innermost ones.
	//
	// A trap raised by a host function (TrapHostError, TrapHostPanic,
	// TrapExit) has that host function as its innermost frame (Host set),
	// then, on runtimes with CapHostTrapFrames, the guest frames that called
	// it. A call made by a host function back into the guest (re-entrancy)
	// lists only its own frames, up to the function it entered; if the
	// host function fails with its trap, the enclosing call's trap
	// (TrapHostError, Cause set to it) lists the host function and the
	// enclosing call's frames.
	//
	// What each runtime gives (engine/enginetest checks it): function
	// indexes, and names from the module's name section, which anywasm
	// resolves itself (ModuleInfo.Frame), the same way on every runtime.
	// Code offsets (CapFrameOffsets): wasmtime and wasmer; 0 on wazero. The
	// guest frames below a failing host function (CapHostTrapFrames): wazero
	// and wasmtime; wasmer lists the host function alone. No frames at all:
	// a stack overflow or an interrupted call on wazero (wasmtime lists
	// both, wasmer its stack overflows; wasmer cannot interrupt).
	Frames []Frame
}

// MaxFrames is the most frames a Trap holds: the innermost ones. It is
// Wasmtime's limit (its backtraces stop at 20 frames, a setting its C API
// does not offer); wazero keeps 30 and Wasmer all, and anywasm cuts theirs
// to it, so that every runtime gives the same frames.
const MaxFrames = 20

// Frame is one function of a trap's backtrace.
type Frame struct {
	// Module is the module's name from its name section ("" if it has
	// none); for a host function, the name of its host module.
	Module string
	// Func is the function's name from the module's name section ("" if
	// absent); for a host function, its name in its host module.
	Func string
	// FuncIndex is the function's index in the module's function index
	// space (imported functions first); for a host function, the index of
	// the import it was called through.
	FuncIndex uint32
	// Offset is the offset in the module binary of the instruction the
	// frame was executing (the trapping instruction for the innermost frame,
	// a call for the others) where the runtime gives it (CapFrameOffsets),
	// else 0. It is 0 for a host function.
	Offset uint64
	// Host marks a host function: an imported function, not guest code.
	Host bool
}

// String returns the function's name, "func[N]" for a guest function
// without one, or "module.name" for a host function. A name with characters
// that do not print is quoted.
func (f Frame) String() string {
	var s string
	switch {
	case f.Host:
		s = f.Module + "." + f.Func
	case f.Func == "":
		return "func[" + strconv.FormatUint(uint64(f.FuncIndex), 10) + "]"
	default:
		s = f.Func
	}
	for _, r := range s {
		if !strconv.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

// Error formats the trap as "engine: wasm trap: <code> (<runtime>: <message>)",
// followed, when the trap has frames, by ": " and its backtrace on one line,
// outermost call first, each function calling the next:
//
//	engine: wasm trap: unreachable (wazero): trigger2 -> three -> two -> one
//
// A backtrace of MaxFrames frames, which the stack may have exceeded, starts
// with "... -> ".
func (t *Trap) Error() string {
	s := t.text()
	if len(t.Frames) == 0 {
		return s
	}
	var b strings.Builder
	b.WriteString(s)
	b.WriteString(": ")
	if len(t.Frames) >= MaxFrames {
		b.WriteString("... -> ")
	}
	for i := len(t.Frames) - 1; i >= 0; i-- {
		b.WriteString(t.Frames[i].String())
		if i > 0 {
			b.WriteString(" -> ")
		}
	}
	return b.String()
}

// text is Error without the backtrace.
func (t *Trap) text() string {
	switch t.Code {
	case TrapExit:
		return fmt.Sprintf("engine: guest exited with code %d", t.ExitCode)
	case TrapHostError, TrapHostPanic, TrapInterrupted:
		if t.Cause != nil {
			return fmt.Sprintf("engine: wasm trap: %s: %v", t.Code, t.Cause)
		}
	}
	if t.Message == "" || t.Message == t.Code.String() {
		return fmt.Sprintf("engine: wasm trap: %s (%s)", t.Code, t.Runtime)
	}
	return fmt.Sprintf("engine: wasm trap: %s (%s: %s)", t.Code, t.Runtime, t.Message)
}

// Unwrap returns Cause.
func (t *Trap) Unwrap() error { return t.Cause }

// ExitError is returned by a host function to end the guest with an exit
// code (WASI proc_exit). The call then fails with a *Trap of code TrapExit.
type ExitError struct{ Code uint32 }

func (e *ExitError) Error() string { return fmt.Sprintf("engine: exit with code %d", e.Code) }

// Exit returns an *ExitError for a host function to return.
func Exit(code uint32) error { return &ExitError{Code: code} }

// PanicError is the Cause of a TrapHostPanic trap.
type PanicError struct {
	// Function is "module.name" of the host function that panicked.
	Function string
	Value    any
	Stack    []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("host function %s panicked: %v", e.Function, e.Value)
}

// Unwrap returns the panic value if it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// HostTrap converts what a host function returned or panicked with into the
// *Trap the call must fail with. Backends call it; err must not be nil.
func HostTrap(runtimeName string, err error) *Trap {
	var t *Trap
	if errors.As(err, &t) && t.Code == TrapInterrupted {
		return t
	}
	var exit *ExitError
	if errors.As(err, &exit) {
		return &Trap{Code: TrapExit, Runtime: runtimeName, ExitCode: exit.Code, Cause: exit}
	}
	var p *PanicError
	if errors.As(err, &p) {
		return &Trap{Code: TrapHostPanic, Runtime: runtimeName, Cause: p}
	}
	return &Trap{Code: TrapHostError, Runtime: runtimeName, Cause: err}
}

// CallHost runs a host function and turns a panic into a *PanicError, so that
// no Go panic ever unwinds through a runtime's frames. Backends call every
// host function through it (or an equivalent recover).
func CallHost(f *HostFunction, ctx context.Context, caller Instance, stack []uint64) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Function: f.qualified, Value: r, Stack: debug.Stack()}
		}
	}()
	return f.Func(ctx, caller, stack)
}
