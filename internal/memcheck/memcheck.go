// Package memcheck measures what a process keeps, for tests that hold it
// flat over many load/close cycles: the live Go heap after a collection,
// and the resident set size (which also sees C memory, guest memories
// outside the Go heap and executable mappings of compiled code).
package memcheck

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Sample is what the process held at one moment.
type Sample struct {
	// Heap is the live Go heap (runtime.MemStats.HeapAlloc right after a
	// collection).
	Heap int64
	// RSS is the resident set size, after the Go runtime returned what it
	// could to the operating system; 0 where /proc is missing.
	RSS int64
	// Goroutines is runtime.NumGoroutine().
	Goroutines int
}

// Take collects garbage, runs the finalizers and cleanups it queued (wazero
// unmaps compiled code in finalizers), collects again what they released,
// returns free Go memory to the operating system and samples the process.
func Take() Sample {
	for range 3 {
		runtime.GC()
		drainFinalizers()
	}
	debug.FreeOSMemory() // another collection, then the scavenger
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return Sample{Heap: int64(ms.HeapAlloc), RSS: RSS(), Goroutines: runtime.NumGoroutine()}
}

// drainFinalizers waits until the finalizers queued by the last collection
// have run, as far as that can be known: a sentinel object's finalizer,
// queued with them, has run. The wait is bounded (a finalizer that blocks
// must not hang the test); the measurement then merely sees more memory.
func drainFinalizers() {
	done := make(chan struct{})
	sentinel := new([16]byte)
	runtime.SetFinalizer(sentinel, func(*[16]byte) { close(done) })
	sentinel = nil
	runtime.GC()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
}

// RSS returns the resident set size in bytes, or 0 where /proc is missing.
func RSS() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// Limits are how much a run may grow: each limit is for the whole run, and
// should lie well below what the smallest leak that matters would add up
// to over it.
type Limits struct {
	Heap, RSS  int64
	Goroutines int
}

// Check logs the growth from before to after over cycles and fails t if
// the heap, the resident set or the goroutines grew past the limits.
func Check(t testing.TB, what string, cycles int, before, after Sample, lim Limits) {
	t.Helper()
	t.Logf("%s: %d cycles: Go heap %s -> %s (%s, %s/cycle), RSS %s -> %s (%s, %s/cycle), goroutines %d -> %d",
		what, cycles, size(before.Heap), size(after.Heap), delta(after.Heap-before.Heap), delta((after.Heap-before.Heap)/int64(cycles)),
		size(before.RSS), size(after.RSS), delta(after.RSS-before.RSS), delta((after.RSS-before.RSS)/int64(cycles)),
		before.Goroutines, after.Goroutines)
	if g := after.Heap - before.Heap; g > lim.Heap {
		t.Errorf("%s: the Go heap grew by %s over %d cycles (limit %s)", what, size(g), cycles, size(lim.Heap))
	}
	if g := after.RSS - before.RSS; before.RSS > 0 && g > lim.RSS {
		t.Errorf("%s: RSS grew by %s over %d cycles (limit %s)", what, size(g), cycles, size(lim.RSS))
	}
	if g := after.Goroutines - before.Goroutines; g > lim.Goroutines {
		t.Errorf("%s: goroutines grew from %d to %d over %d cycles", what, before.Goroutines, after.Goroutines, cycles)
	}
}

func size(n int64) string {
	switch a := max(n, -n); {
	case a >= 10<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case a >= 10<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func delta(n int64) string {
	if n >= 0 {
		return "+" + size(n)
	}
	return size(n)
}
