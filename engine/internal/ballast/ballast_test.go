package ballast

import (
	"runtime"
	"testing"
)

// blocks returns the bytes b's blocks hold and checks the small ones.
func blocks(t *testing.T, b *Ballast) uint64 {
	t.Helper()
	for i, blk := range b.small {
		if (i < b.nsmall) != (blk != nil) {
			t.Fatalf("small block %d is %p with %d small blocks", i, blk, b.nsmall)
		}
	}
	return uint64(len(b.big)*bigBlock + b.nsmall*page)
}

func TestTrack(t *testing.T) {
	var b Ballast
	if b.Weight() != 0 {
		t.Fatalf("zero Ballast weighs %d", b.Weight())
	}
	b.Track(0)
	if b.Weight() != 0 || blocks(t, &b) != 0 {
		t.Fatalf("Track(0): weight %d, %d bytes of blocks", b.Weight(), blocks(t, &b))
	}
	b.Track(17*page - 100) // rounded up to 17 pages: one big block and one small
	if b.Weight() != 17*page || len(b.big) != 1 || b.nsmall != 1 {
		t.Fatalf("Track(17 pages - 100): weight %d, %d big and %d small blocks, want 17 pages in 1 and 1", b.Weight(), len(b.big), b.nsmall)
	}
	first := b.big[0]
	b.Track(page)      // smaller: nothing changes
	b.Track(17 * page) // equal: nothing changes
	if b.Weight() != 17*page || len(b.big) != 1 || b.nsmall != 1 {
		t.Fatalf("after smaller sizes: weight %d, %d big and %d small blocks", b.Weight(), len(b.big), b.nsmall)
	}
	b.Track(20*page + 1) // only the difference is added
	if b.Weight() != 21*page || len(b.big) != 1 || b.big[0] != first || b.nsmall != 5 {
		t.Fatalf("Track(20 pages + 1): weight %d, %d big and %d small blocks, want 21 pages in the same big one and 5", b.Weight(), len(b.big), b.nsmall)
	}
	// Growing a page at a time: 16 small blocks become a big one.
	for b.Weight() < 100*page {
		b.Track(b.Weight() + 1)
		if got := blocks(t, &b); got != b.Weight() {
			t.Fatalf("blocks hold %d bytes, Weight() = %d", got, b.Weight())
		}
	}
	if b.Weight() != 100*page || len(b.big) != 6 || b.nsmall != 4 {
		t.Fatalf("grown to 100 pages: weight %d, %d big and %d small blocks, want 6 and 4", b.Weight(), len(b.big), b.nsmall)
	}
	b.Drop()
	if b.Weight() != 0 || b.big != nil || blocks(t, &b) != 0 {
		t.Fatalf("after Drop: weight %d, %d big and %d small blocks", b.Weight(), len(b.big), b.nsmall)
	}
}

// TestReuse: a ballast made after another was dropped takes its blocks
// instead of allocating (and zeroing) new ones.
func TestReuse(t *testing.T) {
	const size = 3<<20 + 5*page
	var warm Ballast
	warm.Track(size)
	warm.Drop()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	const cycles = 100
	for range cycles {
		var b Ballast
		b.Track(size)
		b.Drop()
	}
	runtime.ReadMemStats(&m1)
	// Under the race detector sync.Pool drops a quarter of what is put.
	if per := (m1.TotalAlloc - m0.TotalAlloc) / cycles; per > size/2 {
		t.Fatalf("%d bytes allocated per %d-byte ballast made and dropped: its blocks are not reused", per, size)
	}
}

// TestOnHeap checks what the ballast is for: the Go heap counts it.
func TestOnHeap(t *testing.T) {
	heap := func() uint64 {
		runtime.GC() // twice: pooled blocks are freed in the second cycle
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	var b Ballast
	b.Track(64 << 20)
	with := heap()
	runtime.KeepAlive(&b)
	if with < before+63<<20 { // other garbage may have gone meanwhile
		t.Fatalf("heap %d bytes with a 64 MiB ballast, %d without: the ballast is not counted", with, before)
	}
	b.Drop()
	if after := heap(); after > with-60<<20 {
		t.Fatalf("heap %d bytes after Drop, %d with the ballast: it was not released", after, with)
	}
}

func TestTrackAllocatesOnlyOnGrowth(t *testing.T) {
	var b Ballast
	b.Track(3 << 20)
	if n := testing.AllocsPerRun(100, func() { b.Track(3 << 20) }); n != 0 {
		t.Fatalf("Track at the same size allocates %v times", n)
	}
}
