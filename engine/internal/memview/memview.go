// Package memview implements the bounds-checked accessors of engine.Memory
// over a byte slice that a backend keeps pointing at guest memory.
package memview

import "encoding/binary"

// View is guest memory as a Go slice. The backend sets Buf and refreshes it
// whenever the memory may have moved or grown (after every transition into
// the guest and after Grow); the accessors never call into the runtime.
type View struct {
	Buf []byte
}

// Size returns the size in bytes.
func (v *View) Size() uint64 { return uint64(len(v.Buf)) }

// Read returns a view of n bytes at off.
func (v *View) Read(off, n uint32) ([]byte, bool) {
	end := uint64(off) + uint64(n)
	if end > uint64(len(v.Buf)) {
		return nil, false
	}
	return v.Buf[off:end:end], true
}

// Write copies b to off.
func (v *View) Write(off uint32, b []byte) bool {
	if uint64(off)+uint64(len(b)) > uint64(len(v.Buf)) {
		return false
	}
	copy(v.Buf[off:], b)
	return true
}

// ReadUint8 reads one byte.
func (v *View) ReadUint8(off uint32) (byte, bool) {
	if uint64(off) >= uint64(len(v.Buf)) {
		return 0, false
	}
	return v.Buf[off], true
}

// WriteUint8 writes one byte.
func (v *View) WriteUint8(off uint32, b byte) bool {
	if uint64(off) >= uint64(len(v.Buf)) {
		return false
	}
	v.Buf[off] = b
	return true
}

// ReadUint32Le reads a little-endian uint32.
func (v *View) ReadUint32Le(off uint32) (uint32, bool) {
	if uint64(off)+4 > uint64(len(v.Buf)) {
		return 0, false
	}
	return binary.LittleEndian.Uint32(v.Buf[off:]), true
}

// WriteUint32Le writes a little-endian uint32.
func (v *View) WriteUint32Le(off, x uint32) bool {
	if uint64(off)+4 > uint64(len(v.Buf)) {
		return false
	}
	binary.LittleEndian.PutUint32(v.Buf[off:], x)
	return true
}

// ReadUint64Le reads a little-endian uint64.
func (v *View) ReadUint64Le(off uint32) (uint64, bool) {
	if uint64(off)+8 > uint64(len(v.Buf)) {
		return 0, false
	}
	return binary.LittleEndian.Uint64(v.Buf[off:]), true
}

// WriteUint64Le writes a little-endian uint64.
func (v *View) WriteUint64Le(off uint32, x uint64) bool {
	if uint64(off)+8 > uint64(len(v.Buf)) {
		return false
	}
	binary.LittleEndian.PutUint64(v.Buf[off:], x)
	return true
}
