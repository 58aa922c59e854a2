// Package floor is what a call costs at the least, for comparison with a
// call into a guest: a Go function call and a cgo call to an empty C
// function.
package floor

// GoCall is an empty Go function that is never inlined.
//
//go:noinline
func GoCall() {}
