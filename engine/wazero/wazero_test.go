package wazero_test

import (
	"os"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/engine/enginetest"
	"github.com/anywasm/anywasm/engine/wazero"
)

func TestConformance(t *testing.T) { enginetest.RunTiers(t, wazero.Name) }

// TestVersion checks the Version constant against go.mod: a test binary
// cannot read module versions from its build information.
func TestVersion(t *testing.T) {
	b, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if want := "github.com/tetratelabs/wazero " + wazero.Version; !strings.Contains(string(b), want) {
		t.Errorf("go.mod does not require %q", want)
	}
}
