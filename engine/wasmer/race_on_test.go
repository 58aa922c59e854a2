//go:build cgo && race

package wasmer

// raceEnabled: the race detector's shadow memory makes resident memory
// measurements meaningless.
const raceEnabled = true
