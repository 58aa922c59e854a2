//go:build cgo

package wasmer_test

import (
	"testing"

	"github.com/anywasm/anywasm/engine/enginetest"
	_ "github.com/anywasm/anywasm/engine/wasmer"
)

func TestConformance(t *testing.T) { enginetest.RunTiers(t, "wasmer") }
