//go:build !cgo

package floor

// HaveCgo reports whether CgoCall crosses into C.
const HaveCgo = false

// CgoCall does nothing without cgo.
func CgoCall() {}
