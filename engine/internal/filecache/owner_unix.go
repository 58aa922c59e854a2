//go:build unix

package filecache

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// notOwned returns why fi is not owned by the effective uid, or "".
func notOwned(fi fs.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "has no owner this package can read"
	}
	if euid := os.Geteuid(); int64(st.Uid) != int64(euid) {
		return fmt.Sprintf("is owned by uid %d, not by this process's effective uid %d", st.Uid, euid)
	}
	return ""
}
