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
// A Ballast is a pointer-free Go allocation as large as the guest memory it
// stands for. The collector never scans it (it holds no pointers) and the
// process never writes it, so its pages stay unmapped by the kernel unless
// the Go runtime had to zero them (when its range was used before); what it
// costs in resident memory is the garbage the larger goal lets accumulate,
// as on wazero.
package ballast

// Ballast weighs, on the Go heap, as much as the largest size given to
// Track. The zero Ballast weighs nothing. It is not safe for concurrent use
// (its owner, an instance, is used by one goroutine at a time).
type Ballast struct {
	chunks [][]byte
	weight uint64
}

// page is the granularity of a ballast: a guest memory grows in 64 KiB
// pages.
const page = 64 << 10

// maxChunks bounds the allocations a ballast holds: a memory that grows a
// little at a time adds a chunk per growth, and at maxChunks they are
// replaced by one.
const maxChunks = 16

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

// grow is the rare path of Track, kept out of line so Track inlines.
func (b *Ballast) grow(size uint64) {
	size = (size + page - 1) / page * page
	if len(b.chunks) == maxChunks {
		// One allocation for all: the old chunks become garbage once.
		b.chunks = append(b.chunks[:0], make([]byte, size))
		clear(b.chunks[1:maxChunks])
		b.weight = size
		return
	}
	b.chunks = append(b.chunks, make([]byte, size-b.weight))
	b.weight = size
}

// Weight returns the bytes b holds on the Go heap.
func (b *Ballast) Weight() uint64 { return b.weight }

// Drop releases the weight, when the guest memory is freed.
func (b *Ballast) Drop() { b.chunks, b.weight = nil, 0 }
