//go:build cgo

package floor

// static void floor_nop(void) {}
import "C"

// HaveCgo reports whether CgoCall crosses into C.
const HaveCgo = true

// CgoCall calls an empty C function.
func CgoCall() { C.floor_nop() }
