// Package testlog is a slog.Handler that keeps log lines for tests to
// inspect.
package testlog

import (
	"context"
	"log/slog"
	"strings"
	"sync"

	"github.com/anywasm/anywasm/abi"
)

// Sink records each log record as one line: "LEVEL message k=v ...", with
// the record's own attributes (those of Logger.With are dropped). It is
// safe for concurrent use.
type Sink struct {
	mu    sync.Mutex
	lines []string
	added chan struct{} // closed and replaced when a line is added
}

// Logger returns a logger writing into a new Sink.
func Logger() (*slog.Logger, *Sink) {
	s := &Sink{}
	return slog.New(s), s
}

// Enabled implements slog.Handler: every level is kept.
func (s *Sink) Enabled(context.Context, slog.Level) bool { return true }

// Handle implements slog.Handler.
func (s *Sink) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(abi.LevelName(r.Level) + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, b.String())
	if s.added != nil {
		close(s.added)
		s.added = nil
	}
	return nil
}

// Wait blocks until a line containing sub has been logged, or ctx is done:
// tests wait for the event, not for a time.
func (s *Sink) Wait(ctx context.Context, sub string) error {
	for {
		s.mu.Lock()
		for _, l := range s.lines {
			if strings.Contains(l, sub) {
				s.mu.Unlock()
				return nil
			}
		}
		if s.added == nil {
			s.added = make(chan struct{})
		}
		added := s.added
		s.mu.Unlock()
		select {
		case <-added:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WithAttrs implements slog.Handler.
func (s *Sink) WithAttrs([]slog.Attr) slog.Handler { return s }

// WithGroup implements slog.Handler.
func (s *Sink) WithGroup(string) slog.Handler { return s }

// Count returns the number of lines containing sub.
func (s *Sink) Count(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.lines {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// Has reports whether a line contains sub.
func (s *Sink) Has(sub string) bool { return s.Count(sub) > 0 }

// String returns the lines, one per line, for test failures.
func (s *Sink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

// Tail returns the last n lines, one per line, for the failures of tests
// that log a lot.
func (s *Sink) Tail(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines[max(0, len(s.lines)-n):], "\n")
}
