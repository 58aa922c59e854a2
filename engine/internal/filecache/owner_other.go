//go:build !unix

package filecache

import (
	"io/fs"
	"runtime"
)

// notOwned refuses every file: this package cannot check owners here, and
// a cache it cannot check is refused rather than trusted.
func notOwned(fs.FileInfo) string {
	return "cannot be checked: file owners are not known on " + runtime.GOOS
}
