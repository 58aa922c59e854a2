package abitest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/anywasm/anywasm/abi"
)

// recorder collects what the plugin does through the host: logs, foreign
// function calls and HTTP callouts. Steps take what arrived since the
// previous step.
type recorder struct {
	ignore    []string
	upstreams map[string]Upstream
	foreign   map[string]Foreign

	mu       sync.Mutex
	logs     []LogRecord
	calls    []string // foreign function calls
	callouts []string
}

// take returns and forgets the logs and foreign calls recorded so far.
func (r *recorder) take() ([]LogRecord, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	logs, calls := r.logs, r.calls
	r.logs, r.calls = nil, nil
	return logs, calls
}

func (r *recorder) takeCallouts() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.callouts
	r.callouts = nil
	slices.Sort(c)
	return c
}

// levelName maps the slog level abi logs at back to the Proxy-Wasm level.
func levelName(l slog.Level) string {
	switch {
	case l < slog.LevelDebug:
		return "trace"
	case l < slog.LevelInfo:
		return "debug"
	case l < slog.LevelWarn:
		return "info"
	case l < slog.LevelError:
		return "warn"
	case l < slog.LevelError+4:
		return "error"
	}
	return "critical"
}

// The slog.Handler plugins log to; attributes (plugin, root_id, and the
// host's err with runtime-specific trap text) are left out.

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	for _, s := range r.ignore {
		if strings.Contains(rec.Message, s) {
			return nil
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, LogRecord{Level: levelName(rec.Level), Message: rec.Message})
	return nil
}

// foreignFuncs returns the script's foreign functions, recording calls.
func (r *recorder) foreignFuncs() map[string]abi.ForeignFunc {
	m := map[string]abi.ForeignFunc{}
	for name, f := range r.foreign {
		m[name] = func(_ context.Context, args []byte) ([]byte, error) {
			r.mu.Lock()
			r.calls = append(r.calls, fmt.Sprintf("%s(%q)", name, args))
			r.mu.Unlock()
			if f.Error != "" {
				return nil, errors.New(f.Error)
			}
			return []byte(f.Result), nil
		}
	}
	return m
}

// RoundTrip implements abi.Upstreams with the script's canned responses.
func (r *recorder) RoundTrip(ctx context.Context, cluster string, req *http.Request) (*http.Response, error) {
	body, _ := io.ReadAll(req.Body)
	var hs []string
	for k, vs := range req.Header {
		for _, v := range vs {
			hs = append(hs, strings.ToLower(k)+": "+v)
		}
	}
	slices.Sort(hs)
	r.mu.Lock()
	r.callouts = append(r.callouts, fmt.Sprintf("%s %s %s authority %s headers {%s} body %q",
		cluster, req.Method, req.URL.RequestURI(), req.Host, strings.Join(hs, "; "), body))
	r.mu.Unlock()
	up, ok := r.upstreams[cluster]
	switch {
	case !ok:
		return nil, fmt.Errorf("abitest: unknown cluster %q", cluster)
	case up.Error != "":
		return nil, errors.New(up.Error)
	}
	if up.DelayMS > 0 {
		t := time.NewTimer(time.Duration(up.DelayMS) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	resp := &http.Response{StatusCode: up.Status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(up.Body)),
		ContentLength: int64(len(up.Body)), Request: req}
	if resp.StatusCode == 0 {
		resp.StatusCode = http.StatusOK
	}
	for _, h := range up.Headers {
		resp.Header[h.Key] = append(resp.Header[h.Key], h.Value)
	}
	if len(up.Trailers) > 0 {
		resp.Trailer = http.Header{}
		for _, h := range up.Trailers {
			resp.Trailer[h.Key] = append(resp.Trailer[h.Key], h.Value)
		}
	}
	return resp, nil
}

// lockedRand is a deterministic random source: every runtime's plugin sees
// the same bytes from random_get (Go plugins seed their map hashing with it).
type lockedRand struct {
	mu sync.Mutex
	r  *rand.ChaCha8
}

func newRand() *lockedRand {
	return &lockedRand{r: rand.NewChaCha8([32]byte{'a', 'n', 'y', 'w', 'a', 's', 'm'})}
}

func (l *lockedRand) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Read(p)
}
