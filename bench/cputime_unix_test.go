//go:build unix

package bench_test

import "syscall"

// processCPU returns the CPU time, user and system, this process has used,
// in nanoseconds: its goroutines', the garbage collector's and, on the cgo
// runtimes, their threads'. false where the system cannot tell.
func processCPU() (int64, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return ru.Utime.Nano() + ru.Stime.Nano(), true
}

// minorFaults returns the minor page faults this process has taken
// (getrusage's ru_minflt); false where the system cannot tell.
func minorFaults() (int64, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return ru.Minflt, true
}
