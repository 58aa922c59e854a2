// Package ballast makes guest memory that a runtime keeps outside the Go
// heap count in the Go garbage collector's pacing.
//
// The collector starts a cycle when the heap has grown by GOGC percent of
// what the last cycle left live. wazero's guest memory is a Go []byte, so a
// plugin's 17 MiB of linear memory raises that goal by 17 MiB; Wasmtime's
// and Wasmer's guest memory is mapped by their C libraries, so a process
// running the same plugin on them collects as if it had only its own small
// heap: on cmd/anywasm-proxy under load, six times as many cycles per
// request (see RATIONALE.md, "The GC ballast of the cgo runtimes").
//
// A Ballast is pointer-free Go memory as large as the guest memory it
// stands for. The collector never scans it (it holds no pointers) and the
// process never writes it, so its pages stay unmapped by the kernel unless
// the Go runtime had to zero them (when its range was used before, which
// reusing the blocks of dropped ballasts avoids); what it costs in resident
// memory is the garbage the larger goal lets accumulate, as on wazero.
package ballast

import "sync"

// Ballast weighs, on the Go heap, as much as the largest size given to
// Track. The zero Ballast weighs nothing. It is not safe for concurrent use
// (its owner, an instance, is used by one goroutine at a time).
//
// A ballast is made of blocks of two sizes, 1 MiB and 64 KiB (fewer than 16
// of those), taken from process-wide pools and given back by Drop: the next
// instance reuses them. A fresh block costs Go a range to zero when the
// range was used before (made anew for every instance, the ballast of a
// 2.9 MiB memory made a Wasmtime instantiation of the Go-SDK plugin take
// 274 us instead of 26); a reused one is neither zeroed nor touched.
// Pooled blocks no instance holds are freed by the collector within two
// cycles (sync.Pool).
type Ballast struct {
	big    []*[bigBlock]byte
	small  [bigBlock/page - 1]*[page]byte
	nsmall int
	weight uint64
}

// page is the granularity of a ballast: a guest memory grows in 64 KiB
// pages.
const page = 64 << 10

// bigBlock is the size of the blocks that make up most of a ballast: a
// 17 MiB memory is 17 of them, so Track and Drop take and give back a few
// dozen blocks at most.
const bigBlock = 1 << 20

var (
	bigBlocks   = sync.Pool{New: func() any { return new([bigBlock]byte) }}
	smallBlocks = sync.Pool{New: func() any { return new([page]byte) }}
)

// Track makes b weigh at least size bytes (rounded up to 64 KiB). It
// allocates only when size passes the weight it has, so it may be called
// after every call into the guest. Weight once added stays until Drop, as
// a linear memory never shrinks.
func (b *Ballast) Track(size uint64) {
	if size <= b.weight {
		return
	}
	b.grow(size)
}

// grow is the rare path of Track, kept out of line so Track inlines: b
// then holds size/1 MiB big blocks and small ones for the pages of the
// rest, giving back the small blocks a new big one replaces. (b weighs less
// than size, so it never holds more big blocks than that.)
func (b *Ballast) grow(size uint64) {
	size = (size + page - 1) / page * page
	bigs, smalls := int(size/bigBlock), int(size%bigBlock/page)
	for len(b.big) < bigs {
		b.big = append(b.big, bigBlocks.Get().(*[bigBlock]byte))
	}
	for ; b.nsmall > smalls; b.nsmall-- {
		smallBlocks.Put(b.small[b.nsmall-1])
		b.small[b.nsmall-1] = nil
	}
	for ; b.nsmall < smalls; b.nsmall++ {
		b.small[b.nsmall] = smallBlocks.Get().(*[page]byte)
	}
	b.weight = size
}

// Weight returns the bytes b holds on the Go heap.
func (b *Ballast) Weight() uint64 { return b.weight }

// Drop releases the weight, when the guest memory is freed: its blocks go
// back to the pools for the next ballast.
func (b *Ballast) Drop() {
	for _, blk := range b.big {
		bigBlocks.Put(blk)
	}
	for _, blk := range b.small[:b.nsmall] {
		smallBlocks.Put(blk)
	}
	*b = Ballast{}
}
