package bench_test

import (
	"strconv"
	"testing"
)

// guestMemSizes are the buffer sizes of BenchmarkGuestMemory.
var guestMemSizes = []int{1 << 10, 64 << 10}

func sizeName(n int) string {
	if n%(1<<10) == 0 {
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}

// BenchmarkGuestMemory copies a buffer into guest memory (dir=in:
// Memory.Write) and out of it (dir=out: a Memory.Read view copied into a
// host buffer, as a host that keeps the bytes must), beside wazero's raw
// api.Memory. SetBytes makes MB/s comparable across sizes.
func BenchmarkGuestMemory(b *testing.B) {
	for _, name := range benchRuntimes() {
		for _, n := range guestMemSizes {
			size := "/size=" + sizeName(n)
			b.Run("runtime="+name+"/impl=anywasm/dir=in"+size, func(b *testing.B) {
				mem := newAny(b, name).inst.Memory()
				buf := make([]byte, n)
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					if !mem.Write(64, buf) {
						b.Fatal("write out of bounds")
					}
				}
			})
			if name == "wazero" {
				b.Run("runtime="+name+"/impl=raw/dir=in"+size, func(b *testing.B) {
					mem := wazeroModule(b).Memory()
					buf := make([]byte, n)
					b.SetBytes(int64(n))
					b.ReportAllocs()
					for b.Loop() {
						if !mem.Write(64, buf) {
							b.Fatal("write out of bounds")
						}
					}
				})
			}
			b.Run("runtime="+name+"/impl=anywasm/dir=out"+size, func(b *testing.B) {
				mem := newAny(b, name).inst.Memory()
				buf := make([]byte, n)
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					v, ok := mem.Read(64, uint32(n))
					if !ok {
						b.Fatal("read out of bounds")
					}
					copy(buf, v)
				}
			})
			if name == "wazero" {
				b.Run("runtime="+name+"/impl=raw/dir=out"+size, func(b *testing.B) {
					mem := wazeroModule(b).Memory()
					buf := make([]byte, n)
					b.SetBytes(int64(n))
					b.ReportAllocs()
					for b.Loop() {
						v, ok := mem.Read(64, uint32(n))
						if !ok {
							b.Fatal("read out of bounds")
						}
						copy(buf, v)
					}
				})
			}
		}
	}
}
