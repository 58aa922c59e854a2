package main

import (
	"testing"
	"time"
)

func TestProgress(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	now := t0
	p := &progress{total: 6, start: t0, now: func() time.Time { return now }}
	if got, want := p.line(0, "wazero"), "run 1/6: wazero (0 done, 0s elapsed)"; got != want {
		t.Errorf("line(0) = %q, want %q", got, want)
	}
	now = t0.Add(90 * time.Second) // 2 runs took 90 s: 45 s each, 4 left
	if got, want := p.line(2, "round 2/3: wasmer"), "run 3/6: round 2/3: wasmer (2 done, 1m30s elapsed, about 3m0s left)"; got != want {
		t.Errorf("line(2) = %q, want %q", got, want)
	}
	now = t0.Add(500 * time.Second)
	if got, want := p.line(5, "x"), "run 6/6: x (5 done, 8m20s elapsed, about 1m40s left)"; got != want {
		t.Errorf("line(5) = %q, want %q", got, want)
	}
}
