// Package seal keeps the engine's handle interfaces closed to implementations
// outside this module: only types that embed Marker satisfy Sealed.
package seal

// Sealed is embedded in interfaces that only this module implements.
type Sealed interface{ anywasmOnly() }

// Marker is embedded in the backends' handle types.
type Marker struct{}

func (Marker) anywasmOnly() {}
