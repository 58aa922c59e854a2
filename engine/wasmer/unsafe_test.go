//go:build cgo

package wasmer

import "unsafe"

type unsafePointer = unsafe.Pointer
