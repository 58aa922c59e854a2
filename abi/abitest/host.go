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

// The host's own log messages the recorder reads facts from: a plugin
// failure (whatever callback failed, on whatever goroutine) and an import
// linked to an UNIMPLEMENTED stub. abitest's tests check both.
const (
	failedMsg        = "plugin failed; its VM will be replaced"
	unimplementedMsg = "plugin imports a hostcall anywasm does not implement"
)

// recorder collects what plugins do through the host: logs, failures,
// foreign function calls and HTTP callouts. Steps take what arrived since
// the previous step.
type recorder struct {
	ignore, async []string
	upstreams     map[string]Upstream
	foreign       map[string]Foreign

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced when anything is recorded
	cur      pending
	asyncLog []LogRecord // every async log so far

	// callouts: dispatches that passed the cluster check, requests that
	// arrived, and answers not yet handled by the plugin (held ones not
	// counted until released)
	attempts, arrived, inflight int
	held                        []*heldCall
}

// pending is what a step takes.
type pending struct {
	logs          []LogRecord
	failures      []error // *abi.PluginError
	foreign       []string
	callouts      []CalloutRecord
	unimplemented []string
}

type heldCall struct {
	cluster, path string
	release       chan struct{}
}

func newRecorder(s *Script) *recorder {
	return &recorder{ignore: s.IgnoreLogs, async: s.AsyncLogs, upstreams: s.Upstreams, foreign: s.ForeignFunctions,
		changed: make(chan struct{})}
}

// take returns and forgets what was recorded since the last take.
func (r *recorder) take() pending {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.cur
	r.cur = pending{}
	slices.SortFunc(p.callouts, func(a, b CalloutRecord) int { return strings.Compare(a.String(), b.String()) })
	return p
}

// note runs f under the lock and wakes those waiting for a change.
func (r *recorder) note(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f()
	close(r.changed)
	r.changed = make(chan struct{})
}

// waitFor blocks until cond, checked under the lock, holds or ctx is done.
func (r *recorder) waitFor(ctx context.Context, cond func() bool) bool {
	for {
		r.mu.Lock()
		ok, ch := cond(), r.changed
		r.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// settle waits until every callout dispatched so far has reached the
// upstream and every answer not held has been handled by the plugin (its
// proxy_on_http_call_response returned): the host ends a callout's context
// once it has delivered the answer, and that is what is waited for. It
// reports false if that did not happen within the wait.
func (r *recorder) settle(ctx context.Context) bool {
	return r.waitFor(ctx, func() bool { return r.arrived >= r.attempts && r.inflight == 0 })
}

// release lets held answers go; it returns how many.
func (r *recorder) release(cluster, path string) int {
	n := 0
	r.note(func() {
		keep := r.held[:0]
		for _, h := range r.held {
			if (cluster == "" || cluster == h.cluster) && (path == "" || path == h.path) {
				r.inflight++
				close(h.release)
				n++
				continue
			}
			keep = append(keep, h)
		}
		r.held = keep
	})
	return n
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

// logHandler is the slog.Handler plugins log to, knowing the plugin from
// the logger's attributes. Attributes are left out of the records (the
// host's err carries runtime-specific trap text); a plugin failure and an
// unimplemented import are read from them.
type logHandler struct {
	r      *recorder
	plugin string
}

func (h logHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h logHandler) WithGroup(string) slog.Handler            { return h }
func (h logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	for _, a := range as {
		if a.Key == "plugin" {
			h.plugin = a.Value.String()
		}
	}
	return h
}

func (h logHandler) Handle(_ context.Context, rec slog.Record) error {
	plugin, callback, imp, sig := h.plugin, "", "", ""
	var cause error
	rec.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "plugin":
			plugin = a.Value.String()
		case "callback":
			callback = a.Value.String()
		case "err":
			if e, ok := a.Value.Any().(error); ok {
				cause = e
			} else {
				cause = errors.New(a.Value.String())
			}
		case "import":
			imp = a.Value.String()
		case "signature":
			sig = a.Value.String()
		}
		return true
	})
	r := h.r
	r.note(func() {
		switch {
		case rec.Message == failedMsg && callback != "":
			r.cur.failures = append(r.cur.failures, &abi.PluginError{Plugin: plugin, Callback: callback, Err: cause})
		case strings.HasPrefix(rec.Message, unimplementedMsg) && imp != "":
			r.cur.unimplemented = append(r.cur.unimplemented, imp+" "+sig)
		}
		for _, s := range r.ignore {
			if strings.Contains(rec.Message, s) {
				return
			}
		}
		l := LogRecord{Level: levelName(rec.Level), Message: rec.Message, Plugin: plugin}
		for _, s := range r.async {
			if strings.Contains(rec.Message, s) {
				r.asyncLog = append(r.asyncLog, l)
				return
			}
		}
		r.cur.logs = append(r.cur.logs, l)
	})
	return nil
}

// foreignFuncs returns the script's foreign functions, recording calls.
func (r *recorder) foreignFuncs() map[string]abi.ForeignFunc {
	m := map[string]abi.ForeignFunc{}
	for name, f := range r.foreign {
		m[name] = func(_ context.Context, args []byte) ([]byte, error) {
			r.note(func() { r.cur.foreign = append(r.cur.foreign, fmt.Sprintf("%s(%q)", name, args)) })
			if f.Error != "" {
				return nil, errors.New(f.Error)
			}
			return []byte(f.Result), nil
		}
	}
	return m
}

// HasCluster implements abi.ClusterChecker: the script's clusters. It is
// asked when a callout is dispatched, before the host checks the request:
// a callout is counted from here, so that a step waits for its request.
func (r *recorder) HasCluster(name string) bool {
	_, ok := r.upstreams[name]
	if ok {
		r.note(func() { r.attempts++ })
	}
	return ok
}

// RoundTrip implements abi.Upstreams with the script's canned answers.
func (r *recorder) RoundTrip(ctx context.Context, cluster string, req *http.Request) (*http.Response, error) {
	body, _ := io.ReadAll(req.Body)
	rec := CalloutRecord{Cluster: cluster, Method: req.Method, Path: req.URL.RequestURI(), Authority: req.Host,
		Body: string(body), Timeout: -1}
	rec.Headers = sortedHeaders(req.Header)
	rec.Trailers = sortedHeaders(req.Trailer)
	if d, ok := ctx.Deadline(); ok {
		rec.Timeout = time.Until(d)
	}
	up := r.upstreams[cluster]
	a, which := up.answer(req.URL.Path)
	rec.Answer = which
	var h *heldCall
	r.note(func() {
		r.arrived++
		if a.Hold {
			h = &heldCall{cluster: cluster, path: req.URL.Path, release: make(chan struct{})}
			r.held = append(r.held, h)
			rec.Answer += " (held)"
		} else {
			r.inflight++
		}
		r.cur.callouts = append(r.cur.callouts, rec)
	})
	resp, err := r.answer(ctx, req, a, h)
	// The host ends ctx once the plugin has handled the answer; without a
	// deadline there is nothing to watch: the answer counts as handled
	// once its body is closed.
	handled := func() { r.note(func() { r.inflight-- }) }
	switch {
	case ctx.Done() != nil:
		go func() {
			<-ctx.Done()
			handled()
		}()
	case err != nil:
		handled()
	default:
		resp.Body = &onClose{ReadCloser: resp.Body, f: handled}
	}
	return resp, err
}

func (r *recorder) answer(ctx context.Context, req *http.Request, a Answer, h *heldCall) (*http.Response, error) {
	if h != nil {
		select {
		case <-h.release:
		case <-ctx.Done(): // held past the callout's timeout
			r.note(func() {
				if i := slices.Index(r.held, h); i >= 0 {
					r.held = slices.Delete(r.held, i, i+1)
					r.inflight++
				}
			})
			return nil, ctx.Err()
		}
	}
	if a.Error != "" {
		return nil, errors.New(a.Error)
	}
	if a.DelayMS > 0 {
		t := time.NewTimer(time.Duration(a.DelayMS) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	resp := &http.Response{StatusCode: a.Status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(a.Body)),
		ContentLength: int64(len(a.Body)), Request: req}
	if resp.StatusCode == 0 {
		resp.StatusCode = http.StatusOK
	}
	for _, h := range a.Headers {
		resp.Header[h.Key] = append(resp.Header[h.Key], h.Value)
	}
	if len(a.Trailers) > 0 {
		resp.Trailer = http.Header{}
		for _, h := range a.Trailers {
			resp.Trailer[h.Key] = append(resp.Trailer[h.Key], h.Value)
		}
	}
	return resp, nil
}

type onClose struct {
	io.ReadCloser
	once sync.Once
	f    func()
}

func (c *onClose) Close() error {
	err := c.ReadCloser.Close()
	c.once.Do(c.f)
	return err
}

func sortedHeaders(h http.Header) abi.Headers {
	var out abi.Headers
	for k, vs := range h {
		for _, v := range vs {
			out = append(out, abi.Header{Key: strings.ToLower(k), Value: v})
		}
	}
	slices.SortStableFunc(out, func(a, b abi.Header) int {
		if c := strings.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		return strings.Compare(a.Value, b.Value)
	})
	return out
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
