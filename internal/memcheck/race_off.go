//go:build !race

package memcheck

// RaceEnabled reports whether the binary was built with the race detector.
const RaceEnabled = false
