package abi

import (
	"bytes"
	"context"
	"io"
	"slices"
	"time"

	"github.com/anywasm/anywasm/engine"
)

// WASI as a proxy host gives it: a minimal, explicit subset. No files, no
// sockets, no arguments; the environment is what the plugin configuration
// lists; fd 1 and 2 go to the log (info and error); poll_oneoff reports no
// events (the Go runtime aborts otherwise); proc_exit ends the VM with an
// error naming the code. Other WASI imports are linked to stubs that return
// ENOSYS. The same functions serve wasi_snapshot_preview1 and wasi_unstable.

const (
	errnoSuccess = 0
	errnoBadf    = 8
	errnoFault   = 21
	errnoInval   = 28
	errnoNosys   = 52
)

// maxRandom bounds one random_get.
const maxRandom = 64 << 10

var wasiCalls = map[string][]hostcallDef{
	"args_get":            {{i32s(2), func(*vm, context.Context, []uint64) Status { return errnoSuccess }}},
	"args_sizes_get":      {{i32s(2), (*vm).wArgsSizes}},
	"environ_get":         {{i32s(2), (*vm).wEnvironGet}},
	"environ_sizes_get":   {{i32s(2), (*vm).wEnvironSizes}},
	"clock_res_get":       {{i32s(2), (*vm).wClockRes}},
	"clock_time_get":      {{sig(i32, i64, i32), (*vm).wClockTime}},
	"fd_write":            {{i32s(4), (*vm).wFdWrite}},
	"fd_read":             {{i32s(4), (*vm).wFdRead}},
	"fd_close":            {{i32s(1), func(*vm, context.Context, []uint64) Status { return errnoBadf }}},
	"fd_fdstat_get":       {{i32s(2), (*vm).wFdstatGet}},
	"fd_fdstat_set_flags": {{i32s(2), (*vm).wFdstatSetFlags}},
	"fd_prestat_get":      {{i32s(2), func(*vm, context.Context, []uint64) Status { return errnoBadf }}},
	"fd_prestat_dir_name": {{i32s(3), func(*vm, context.Context, []uint64) Status { return errnoBadf }}},
	"poll_oneoff":         {{i32s(4), (*vm).wPollOneoff}},
	"random_get":          {{i32s(2), (*vm).wRandomGet}},
	"sched_yield":         {{i32s(0), func(*vm, context.Context, []uint64) Status { return errnoSuccess }}},
	"proc_exit":           {{engine.FuncType{Params: []engine.ValueType{i32}}, nil}},
}

func wasiFunction(module, name string, d hostcallDef) engine.HostFunction {
	if name == "proc_exit" {
		return restrict(module, engine.HostFunction{Name: name, Type: d.typ, Func: func(_ context.Context, _ engine.Caller, s []uint64) error {
			return engine.Exit(uint32(s[0]))
		}})
	}
	return newHostFunction(module, name, d)
}

var start = time.Now()

func (v *vm) wArgsSizes(_ context.Context, s []uint64) Status {
	if !v.writable(s[0], s[1]) {
		return errnoFault
	}
	v.putU32(s[0], 0)
	v.putU32(s[1], 0)
	return errnoSuccess
}

func (v *vm) environ() []string {
	env := make([]string, 0, len(v.group.env))
	for k, val := range v.group.env {
		env = append(env, k+"="+val)
	}
	slices.Sort(env)
	return env
}

func (v *vm) wEnvironSizes(_ context.Context, s []uint64) Status {
	env := v.environ()
	size := 0
	for _, e := range env {
		size += len(e) + 1
	}
	if !v.writable(s[0], s[1]) {
		return errnoFault
	}
	v.putU32(s[0], uint32(len(env)))
	v.putU32(s[1], uint32(size))
	return errnoSuccess
}

func (v *vm) wEnvironGet(_ context.Context, s []uint64) Status {
	ptrs, buf := uint32(s[0]), uint32(s[1])
	for i, e := range v.environ() {
		if !v.putU32(uint64(ptrs)+uint64(4*i), buf) || !v.mem.Write(buf, append([]byte(e), 0)) {
			return errnoFault
		}
		buf += uint32(len(e) + 1)
	}
	return errnoSuccess
}

func (v *vm) wClockRes(_ context.Context, s []uint64) Status {
	if uint32(s[0]) > 3 {
		return errnoInval
	}
	if !v.mem.WriteUint64Le(uint32(s[1]), 1) {
		return errnoFault
	}
	return errnoSuccess
}

func (v *vm) wClockTime(_ context.Context, s []uint64) Status {
	var t uint64
	switch uint32(s[0]) {
	case 0: // realtime
		t = uint64(v.group.host.opts.Now().UnixNano())
	case 1, 2, 3: // monotonic, process and thread CPU time
		t = uint64(time.Since(start))
	default:
		return errnoInval
	}
	if !v.mem.WriteUint64Le(uint32(s[2]), t) {
		return errnoFault
	}
	return errnoSuccess
}

// maxLine bounds a buffered stdout or stderr line.
const maxLine = 16 << 10

func (v *vm) wFdWrite(ctx context.Context, s []uint64) Status {
	fd, iovs, n := uint32(s[0]), uint32(s[1]), uint32(s[2])
	if fd != 1 && fd != 2 {
		return errnoBadf
	}
	total := uint32(0)
	for i := uint32(0); i < n; i++ {
		ptr, ok1 := v.mem.ReadUint32Le(iovs + 8*i)
		size, ok2 := v.mem.ReadUint32Le(iovs + 8*i + 4)
		data, ok3 := v.mem.Read(ptr, size)
		if !ok1 || !ok2 || !ok3 {
			return errnoFault
		}
		v.out[fd-1] = append(v.out[fd-1], data...)
		total += size
	}
	if !v.putU32(s[3], total) {
		return errnoFault
	}
	v.flushOutput(ctx, false)
	return errnoSuccess
}

// flushOutput logs the complete lines written to stdout (info) and stderr
// (error): guests write a line in many pieces. all flushes partial lines
// too, when the VM fails or closes.
func (v *vm) flushOutput(ctx context.Context, all bool) {
	for i := range v.out {
		level := LogInfo
		if i == 1 {
			level = LogError
		}
		b := v.out[i]
		for {
			nl := bytes.IndexByte(b, '\n')
			if nl < 0 {
				if (all && len(b) > 0) || len(b) > maxLine {
					v.emit(ctx, level, string(b))
					b = b[:0]
				}
				break
			}
			if nl > 0 { // blank lines carry nothing
				v.emit(ctx, level, string(b[:nl]))
			}
			b = b[nl+1:]
		}
		v.out[i] = append(v.out[i][:0], b...)
	}
}

func (v *vm) wFdRead(_ context.Context, s []uint64) Status {
	if uint32(s[0]) != 0 {
		return errnoBadf
	}
	if !v.putU32(s[3], 0) { // stdin is empty
		return errnoFault
	}
	return errnoSuccess
}

func (v *vm) wFdstatGet(_ context.Context, s []uint64) Status {
	if uint32(s[0]) > 2 {
		return errnoBadf
	}
	// fdstat: u8 filetype (2 = character device), u16 flags, u64 rights
	// base, u64 rights inheriting; 24 bytes.
	var st [24]byte
	st[0] = 2
	if uint32(s[0]) == 0 {
		le.PutUint64(st[8:], 1<<1) // fd_read
	} else {
		le.PutUint64(st[8:], 1<<6) // fd_write
	}
	if !v.mem.Write(uint32(s[1]), st[:]) {
		return errnoFault
	}
	return errnoSuccess
}

func (v *vm) wFdstatSetFlags(_ context.Context, s []uint64) Status {
	if uint32(s[0]) > 2 {
		return errnoBadf
	}
	return errnoSuccess
}

func (v *vm) wPollOneoff(_ context.Context, s []uint64) Status {
	if !v.putU32(s[3], 0) {
		return errnoFault
	}
	return errnoSuccess
}

func (v *vm) wRandomGet(_ context.Context, s []uint64) Status {
	if uint32(s[1]) > maxRandom {
		return errnoInval
	}
	buf, ok := v.mem.Read(uint32(s[0]), uint32(s[1]))
	if !ok {
		return errnoFault
	}
	if _, err := io.ReadFull(v.group.host.opts.Random, buf); err != nil {
		return errnoInval
	}
	return errnoSuccess
}
