package main

import (
	"fmt"
	"time"
)

// progress tells how far a run of many runs is: runs done of the total,
// time elapsed and, from the mean time per run so far, time remaining.
type progress struct {
	total int
	start time.Time
	now   func() time.Time // time.Now; tests set it
}

func newProgress(total int) *progress {
	return &progress{total: total, start: time.Now(), now: time.Now}
}

// line describes the state before run done+1 starts, what names it.
func (p *progress) line(done int, what string) string {
	elapsed := p.now().Sub(p.start)
	s := fmt.Sprintf("run %d/%d: %s (%d done, %s elapsed", done+1, p.total, what, done, roundDur(elapsed))
	if done > 0 {
		left := time.Duration(float64(elapsed) / float64(done) * float64(p.total-done))
		s += ", about " + roundDur(left) + " left"
	}
	return s + ")"
}

// roundDur rounds to the second (to the 100 ms under a second).
func roundDur(d time.Duration) string {
	if d < time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
