package ballast

import (
	"runtime"
	"testing"
)

func TestTrack(t *testing.T) {
	var b Ballast
	if b.Weight() != 0 {
		t.Fatalf("zero Ballast weighs %d", b.Weight())
	}
	b.Track(0)
	if b.Weight() != 0 || len(b.chunks) != 0 {
		t.Fatalf("Track(0): weight %d, %d chunks", b.Weight(), len(b.chunks))
	}
	b.Track(17*page - 100) // rounded up to 17 pages
	if b.Weight() != 17*page || len(b.chunks) != 1 {
		t.Fatalf("Track(17 pages - 100): weight %d, %d chunks, want 17 pages in 1", b.Weight(), len(b.chunks))
	}
	b.Track(page)      // smaller: nothing changes
	b.Track(17 * page) // equal: nothing changes
	if b.Weight() != 17*page || len(b.chunks) != 1 {
		t.Fatalf("after smaller sizes: weight %d, %d chunks", b.Weight(), len(b.chunks))
	}
	b.Track(20*page + 1) // only the difference is added
	if b.Weight() != 21*page || len(b.chunks) != 2 || len(b.chunks[1]) != 4*page {
		t.Fatalf("Track(20 pages + 1): weight %d, %d chunks, want 21 pages in 2 (the second 4 pages)", b.Weight(), len(b.chunks))
	}
	// Growing a page at a time: at maxChunks the chunks become one.
	for b.Weight() < 100*page {
		b.Track(b.Weight() + 1)
		if len(b.chunks) > maxChunks {
			t.Fatalf("%d chunks, more than %d", len(b.chunks), maxChunks)
		}
		var sum uint64
		for _, c := range b.chunks {
			sum += uint64(len(c))
		}
		if sum != b.Weight() {
			t.Fatalf("chunks hold %d bytes, Weight() = %d", sum, b.Weight())
		}
	}
	if b.Weight() != 100*page {
		t.Fatalf("weight %d after growing to 100 pages", b.Weight())
	}
	b.Drop()
	if b.Weight() != 0 || b.chunks != nil {
		t.Fatalf("after Drop: weight %d, chunks %v", b.Weight(), b.chunks)
	}
}

// TestOnHeap checks what the ballast is for: the Go heap counts it.
func TestOnHeap(t *testing.T) {
	heap := func() uint64 {
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
