//go:build !unix

package plugins

// lockFile does nothing where there is no flock: processes then may build a
// plugin twice, and the atomic rename keeps the cache whole.
func lockFile(string) (func(), error) { return func() {}, nil }
