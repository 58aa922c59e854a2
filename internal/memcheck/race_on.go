//go:build race

package memcheck

// RaceEnabled: the race detector's shadow memory and its own bookkeeping
// grow with everything the program ever allocated, which makes heap and
// resident memory measurements meaningless.
const RaceEnabled = true
