//go:build !unix

package bench_test

// processCPU is not measured here: see cputime_unix_test.go.
func processCPU() (int64, bool) { return 0, false }

// minorFaults is not measured here: see cputime_unix_test.go.
func minorFaults() (int64, bool) { return 0, false }
