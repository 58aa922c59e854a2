package proxy_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/anywasm/anywasm/internal/proxy"
)

// FuzzConfig: ParseConfig never panics on arbitrary bytes, and a
// configuration it accepts has a name on every listener, is accepted by
// Validate again without changing (Validate fills in defaults: running it
// twice must be the same as once), and marshals (encoding/json) to a
// configuration ParseConfig accepts and that marshals to the same bytes.
// Seeds: testdata/fuzz/FuzzConfig (the configurations of this package's
// tests and examples/proxy/proxy.yaml).
func FuzzConfig(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := proxy.ParseConfig(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("ParseConfig(%q): an error without a message", data)
			}
			return
		}
		for i, l := range c.Listeners {
			if l.Name == "" {
				t.Fatalf("listener %d has no name:\n%s", i, data)
			}
		}
		before, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("json.Marshal of an accepted configuration: %v\n%s", err, data)
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Validate refuses what ParseConfig accepted: %v\n%s", err, data)
		}
		after, err := json.Marshal(c)
		if err != nil || !bytes.Equal(before, after) {
			t.Fatalf("Validate again changed the configuration (%v):\nbefore %s\nafter  %s", err, before, after)
		}
		c2, err := proxy.ParseConfig(before)
		if err != nil {
			t.Fatalf("the marshalled configuration is refused: %v\nconfig     %s\nmarshalled %s", err, data, before)
		}
		again, err := json.Marshal(c2)
		if err != nil || !bytes.Equal(before, again) {
			t.Fatalf("marshal, parse, marshal is not a fixed point (%v):\nfirst  %s\nsecond %s", err, before, again)
		}
	})
}
