package abitest

import (
	"strings"
	"testing"

	"github.com/anywasm/anywasm/internal/plugins"
)

// TestSnapshotDifferential runs each script of a plugin with an initializer
// twice per runtime, once as usual and once from a snapshot (abi's
// PluginConfig.Snapshot), and compares the two transcripts of each
// runtime: a snapshot must change nothing a plugin does. Each Go-SDK
// plugin is compiled anew per runtime with Snapshot (its snapshot holds the
// monotonic clock its initializer read, so the compile cache never knows
// it): -short runs a few.
func TestSnapshotDifferential(t *testing.T) {
	type c struct {
		script, plugin, guest string
		short                 bool // run under -short too
	}
	cases := []c{
		{"headers", "headers", "", true},
		{"body", "body", "", false},
		{"local_response", "local_response", "", false},
		{"callout", "callout", "", false},
		{"tcp", "tcp", "", false},
		{"trap", "trap", "", false},
		{"metrics", "metrics", "", false},
		{"props", "props", "", false},
		{"foreign", "foreign", "", false},
		{"shared", "shared", "", false},
		{"config", "config", "", false},
		{"config_refused", "config", "", false},
		{"tick", "tick", "", true},
		{"queue", "shared", "", true},
		{"envoy-cc-example", "", "envoy-wasm-cc-example.wasm", true},
		{"tinygo-add-header-abi010", "", "tinygo-add-req-header-abi010.wasm", true},
	}
	for _, c := range cases {
		t.Run(c.script, func(t *testing.T) {
			if testing.Short() && !c.short {
				t.Skip("-short: the differential runs on headers, tick, queue and the third-party guests")
			}
			var wasm []byte
			if c.guest != "" {
				wasm = guest(t, c.guest)
			} else {
				wasm = plugins.Build(t, c.plugin)
			}
			plain := check(t, wasm, script(t, c.script))
			s := script(t, c.script)
			s.Snapshot = true
			snap := check(t, wasm, s)
			if len(plain.Runtimes) != len(snap.Runtimes) {
				t.Fatalf("%d runtimes, %d with snapshots", len(plain.Runtimes), len(snap.Runtimes))
			}
			for i, a := range plain.Runtimes {
				b := snap.Runtimes[i]
				for _, f := range a.Failures {
					t.Errorf("without snapshot: %s", f)
				}
				for _, f := range b.Failures {
					t.Errorf("with snapshot: %s", f)
				}
				if a.Transcript == nil || b.Transcript == nil {
					continue
				}
				if d := diffTranscripts(a.Runtime, a.Transcript, a.Runtime+"+snapshot", b.Transcript); d != nil {
					t.Errorf("the snapshot changed the transcript:\n%s", strings.Join(d, "\n"))
				}
			}
		})
	}
}
