//go:build cgo && !race

package wasmer

const raceEnabled = false
