package abitest_test

import (
	"github.com/anywasm/anywasm/abi/abitest"
	"github.com/anywasm/anywasm/internal/testrt"
)

// The kit's tests run many scripts over the same plugins: one compile
// cache for all of them (and every other test process).
func init() { abitest.CompileCacheDir = testrt.Dir() }
