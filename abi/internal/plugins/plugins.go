// Package plugins forwards to github.com/anywasm/anywasm/internal/plugins,
// where the test-plugin builder moved so that bench/ can use it too.
//
// Deprecated: import github.com/anywasm/anywasm/internal/plugins.
package plugins

import (
	"testing"

	"github.com/anywasm/anywasm/internal/plugins"
)

// Build forwards to plugins.Build.
func Build(tb testing.TB, name string) []byte { return plugins.Build(tb, name) }

// Path forwards to plugins.Path.
func Path(tb testing.TB, name string) string { return plugins.Path(tb, name) }

// Names forwards to plugins.Names.
func Names() []string { return plugins.Names() }

// Dir forwards to plugins.Dir.
func Dir() (string, error) { return plugins.Dir() }
