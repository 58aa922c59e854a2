package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// RemoteCode is Envoy's RemoteDataSource (envoy.config.core.v3): a module
// fetched with an HTTP GET of http_uri.uri from http_uri.cluster, checked
// against sha256.
type RemoteCode struct {
	HTTPURI HTTPURI `json:"http_uri"`
	// Sha256 is the module's SHA-256 in hex (required, as in Envoy).
	Sha256      string       `json:"sha256"`
	RetryPolicy *RetryPolicy `json:"retry_policy,omitempty"`
}

// HTTPURI is Envoy's HttpUri: the URI (its path and host are sent), the
// proxy's http cluster the request goes to, and how long the answer may
// take.
type HTTPURI struct {
	URI     string    `json:"uri"`
	Cluster string    `json:"cluster"`
	Timeout *Duration `json:"timeout"`
}

// RetryPolicy is the part of Envoy's RetryPolicy that
// RemoteAsyncDataProvider reads: num_retries (default 1) and
// retry_back_off (default base 1s, max 10s).
type RetryPolicy struct {
	RetryBackOff *BackoffStrategy `json:"retry_back_off,omitempty"`
	NumRetries   *uint32          `json:"num_retries,omitempty"`
}

// BackoffStrategy is Envoy's BackoffStrategy: base_interval (required, at
// least 1ms) and max_interval (default 10 times base_interval).
type BackoffStrategy struct {
	BaseInterval *Duration `json:"base_interval"`
	MaxInterval  *Duration `json:"max_interval,omitempty"`
}

// Envoy's defaults (source/common/config/datasource.cc): RetryCount,
// RetryInitialDelayMilliseconds, RetryMaxDelayMilliseconds.
const (
	remoteRetries      = 1
	remoteBaseInterval = time.Second
	remoteMaxInterval  = 10 * time.Second
	// maxRemoteBytes bounds a fetched module (the proxy's own bound).
	maxRemoteBytes = 256 << 20
	// remoteCacheDir is the subdirectory of cache_dir for fetched modules.
	remoteCacheDir = "remote"
)

// retries returns the number of retries and the backoff's intervals, as
// Envoy's RemoteAsyncDataProvider and prepareJitteredExponentialBackOffStrategy
// take them.
func (r *RemoteCode) retries() (n int, base, maxWait time.Duration) {
	n, base, maxWait = remoteRetries, remoteBaseInterval, remoteMaxInterval
	rp := r.RetryPolicy
	if rp == nil {
		return n, base, maxWait
	}
	if rp.NumRetries != nil {
		n = int(*rp.NumRetries)
	}
	if b := rp.RetryBackOff; b != nil {
		base = b.BaseInterval.Get()
		maxWait = 10 * base
		if b.MaxInterval != nil {
			maxWait = b.MaxInterval.Get()
		}
	}
	return n, base, maxWait
}

// checkRemote checks a vm_config.code.remote block; f is its field.
func checkRemote(bad func(field, format string, args ...any), f string, r *RemoteCode, clusters map[string]*Cluster) {
	u, err := url.Parse(r.HTTPURI.URI)
	switch {
	case r.HTTPURI.URI == "":
		bad(f+".http_uri.uri", "missing")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		bad(f+".http_uri.uri", "%q: want an http(s) URL with a host (its path and host are sent to the cluster)", r.HTTPURI.URI)
	}
	switch cl := clusters[r.HTTPURI.Cluster]; {
	case r.HTTPURI.Cluster == "":
		bad(f+".http_uri.cluster", "missing")
	case cl == nil:
		bad(f+".http_uri.cluster", "unknown cluster %q (clusters: %s)", r.HTTPURI.Cluster, strings.Join(slices.Sorted(maps.Keys(clusters)), ", "))
	case cl.Type != "http":
		bad(f+".http_uri.cluster", "cluster %q is of type %s, a fetch needs http", cl.Name, cl.Type)
	}
	if err := r.HTTPURI.Timeout.check(); err != nil {
		bad(f+".http_uri.timeout", "%v", err)
	} else if r.HTTPURI.Timeout.Get() <= 0 {
		bad(f+".http_uri.timeout", "missing or 0s (Envoy requires it; want more than 0s)")
	}
	if b, err := hex.DecodeString(r.Sha256); err != nil || len(b) != sha256.Size {
		bad(f+".sha256", "%q: want the module's SHA-256, 64 hex digits (Envoy requires it)", r.Sha256)
	}
	if rp := r.RetryPolicy; rp != nil && rp.RetryBackOff != nil {
		b := rp.RetryBackOff
		bf := f + ".retry_policy.retry_back_off"
		if err := b.BaseInterval.check(); err != nil {
			bad(bf+".base_interval", "%v", err)
		} else if b.BaseInterval.Get() < time.Millisecond {
			bad(bf+".base_interval", "missing or under 1ms (Envoy requires at least 1ms)")
		}
		if err := b.MaxInterval.check(); err != nil {
			bad(bf+".max_interval", "%v", err)
		} else if b.MaxInterval != nil && b.MaxInterval.Get() < b.BaseInterval.Get() {
			bad(bf+".max_interval", "%s is under base_interval", string(*b.MaxInterval))
		}
	}
}

// fetchRemote returns the module of a remote code source: from the disk
// cache (cache_dir/remote/SHA256.wasm) when it holds it with the right
// SHA-256, otherwise fetched as Envoy's RemoteAsyncDataProvider fetches it
// (source/common/config/datasource.cc): one attempt and num_retries more,
// a jittered exponential backoff between them (Envoy's
// JitteredExponentialBackOffStrategy: a random wait below
// min(base_interval*2^n, max_interval)), each a RemoteDataFetcher::fetch
// (remote_data_fetcher.cc): a GET that must answer 200 with a body whose
// SHA-256 is sha256. A fetched module is written to the disk cache. The
// error is the last attempt's.
func (p *Proxy) fetchRemote(ctx context.Context, r *RemoteCode) ([]byte, error) {
	want := strings.ToLower(r.Sha256)
	if b := p.diskCached(want); b != nil {
		return b, nil
	}
	n, base, maxWait := r.retries()
	var err error
	for attempt := 0; ; attempt++ {
		var b []byte
		if b, err = p.fetchOnce(ctx, r, want); err == nil {
			p.writeCache(want, r, b)
			return b, nil
		}
		if attempt >= n {
			break
		}
		wait := maxWait
		if attempt < 30 && base<<attempt < maxWait {
			wait = base << attempt
		}
		wait = rand.N(wait) + 1
		p.log.Warn("fetching a remote plugin failed; retrying", "uri", r.HTTPURI.URI, "attempt", attempt+1, "retry_in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("fetching %s: %w (%s; the last: %w)", r.HTTPURI.URI, ctx.Err(), attempts(attempt+1), err)
		case <-t.C:
		}
	}
	return nil, fmt.Errorf("fetching %s from cluster %s: %w (%s)", r.HTTPURI.URI, r.HTTPURI.Cluster, err, attempts(n+1))
}

func attempts(n int) string {
	if n == 1 {
		return "1 attempt"
	}
	return fmt.Sprintf("%d attempts", n)
}

func sha256Of(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// fetchOnce is one GET of the module, to the cluster's address with the
// URI's path and query, and its host as Host.
func (p *Proxy) fetchOnce(ctx context.Context, r *RemoteCode, want string) ([]byte, error) {
	up := p.ups[r.HTTPURI.Cluster]
	if up == nil { // Validate refuses it; RemoteDataFetcher's "no cluster"
		return nil, fmt.Errorf("no cluster %q", r.HTTPURI.Cluster)
	}
	e := up.pick()
	if e == nil {
		return nil, fmt.Errorf("cluster %s: %w", r.HTTPURI.Cluster, errNoHealthyUpstream)
	}
	u, err := url.Parse(r.HTTPURI.URI)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.HTTPURI.Timeout.Get())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.scheme+"://"+e.addr+u.RequestURI(), nil)
	if err != nil {
		return nil, err
	}
	req.Host = u.Host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d, want 200", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxRemoteBytes+1))
	switch {
	case err != nil:
		return nil, err
	case len(b) > maxRemoteBytes:
		return nil, fmt.Errorf("the module is over %d MiB", maxRemoteBytes>>20)
	case len(b) == 0:
		return nil, errors.New("empty body")
	}
	if got := hex.EncodeToString(sha256Of(b)); got != want {
		return nil, fmt.Errorf("the module's sha256 is %s, the configuration's sha256 %s", got, want)
	}
	return b, nil
}

// writeAtomic writes b to path through a temporary file renamed into
// place (mode 0600, its directory 0700), so that a reader sees a whole
// file or none.
func writeAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		_ = os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// Envoy's code cache of remote modules (createWasm in
// source/extensions/common/wasm/wasm.cc): a failed fetch is remembered
// for CODE_CACHE_SECONDS_NEGATIVE_CACHING, and an entry unused for
// CODE_CACHE_SECONDS_CACHING_TTL is dropped.
const (
	codeNegativeCaching = 10 * time.Second
	codeCachingTTL      = 24 * time.Hour
)

// ErrRemoteCode is wrapped by the errors of remote code (remoteCode): a
// fetch that failed, a fetch in progress, a cache miss with
// nack_on_code_cache_miss. They pass: the same configuration may load
// later, when the fetch has filled the code cache.
var ErrRemoteCode = errors.New("remote code not loaded")

// remoteErr is an error of remote code: it is ErrRemoteCode, with its
// own message.
type remoteErr struct{ error }

func (e remoteErr) Is(target error) bool { return target == ErrRemoteCode }
func (e remoteErr) Unwrap() error        { return e.error }

func remoteErrorf(format string, args ...any) error {
	return remoteErr{fmt.Errorf(format, args...)}
}

// codeEntry is a module of the code cache, by sha256: its code (nil
// while a fetch is in progress, or after one failed).
type codeEntry struct {
	code               []byte
	inProgress         bool
	fetchTime, useTime time.Time
}

// remoteCode returns the module of a remote code source as Envoy's
// createWasm does, through the proxy's code cache (in memory, by
// sha256, then cache_dir's): a module cached is used; one whose fetch is
// in progress, or failed less than 10s ago, fails the load. Otherwise it
// is fetched: without nackOnMiss as fetchRemote fetches (retries,
// backoff), the load waiting for it; with nackOnMiss (Envoy's
// nack_on_code_cache_miss) the load fails at once while one fetch
// (RemoteDataFetcher: one attempt) fills the cache in the background, so
// that the same configuration, sent again, finds it. plugin names the
// plugin in the error, as Envoy's "Unable to create Wasm HTTP filter".
func (p *Proxy) remoteCode(ctx context.Context, r *RemoteCode, nackOnMiss bool, plugin string) ([]byte, error) {
	sum := strings.ToLower(r.Sha256)
	now := time.Now()
	p.codeMu.Lock()
	if p.codeCache == nil {
		p.codeCache = map[string]*codeEntry{}
	}
	for k, e := range p.codeCache {
		if k != sum && !e.inProgress && now.Sub(e.useTime) > codeCachingTTL {
			delete(p.codeCache, k)
		}
	}
	e := p.codeCache[sum]
	if e != nil {
		e.useTime = now
		switch {
		case e.code != nil:
			b := e.code
			p.codeMu.Unlock()
			return b, nil
		case e.inProgress:
			p.codeMu.Unlock()
			return nil, remoteErrorf("Unable to create Wasm filter %s: the fetch of %s (sha256 %s) is in progress", plugin, r.HTTPURI.URI, sum)
		case now.Sub(e.fetchTime) < codeNegativeCaching:
			p.codeMu.Unlock()
			return nil, remoteErrorf("Unable to create Wasm filter %s: fetching %s (sha256 %s) failed less than %s ago (a failure is cached that long)",
				plugin, r.HTTPURI.URI, sum, codeNegativeCaching)
		}
	}
	if b := p.diskCached(sum); b != nil {
		p.codeCache[sum] = &codeEntry{code: b, fetchTime: now, useTime: now}
		p.codeMu.Unlock()
		return b, nil
	}
	if e == nil {
		e = &codeEntry{}
		p.codeCache[sum] = e
	}
	e.inProgress, e.fetchTime, e.useTime = true, now, now
	p.codeMu.Unlock()
	if nackOnMiss {
		p.wg.Go(func() {
			b, err := p.fetchOnce(p.ctx, r, sum)
			if err != nil {
				p.log.Warn("fetching a remote plugin in the background (nack_on_code_cache_miss) failed", "uri", r.HTTPURI.URI, "err", err)
			} else {
				p.log.Info("remote plugin fetched into the cache (nack_on_code_cache_miss)", "uri", r.HTTPURI.URI, "sha256", sum)
				p.writeCache(sum, r, b)
			}
			p.cacheCode(sum, b)
		})
		return nil, remoteErrorf("Unable to create Wasm filter %s: %s (sha256 %s) is not in the code cache (nack_on_code_cache_miss): fetching it in the background",
			plugin, r.HTTPURI.URI, sum)
	}
	b, err := p.fetchRemote(ctx, r)
	p.cacheCode(sum, b)
	if err != nil {
		return nil, remoteErr{err}
	}
	return b, nil
}

// cacheCode ends a fetch: b is the module, nil when the fetch failed.
func (p *Proxy) cacheCode(sum string, b []byte) {
	p.codeMu.Lock()
	defer p.codeMu.Unlock()
	e := p.codeCache[sum]
	if e == nil {
		e = &codeEntry{useTime: time.Now()}
		p.codeCache[sum] = e
	}
	e.inProgress, e.code, e.fetchTime = false, b, time.Now()
}

// diskCached returns the module in cache_dir, if it holds it with the
// right sha256.
func (p *Proxy) diskCached(sum string) []byte {
	if p.cfg.CacheDir == "" {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(p.cfg.CacheDir, remoteCacheDir, sum+".wasm"))
	if err != nil || hex.EncodeToString(sha256Of(b)) != sum {
		return nil
	}
	return b
}

// writeCache writes a fetched module to cache_dir (when there is one).
func (p *Proxy) writeCache(sum string, r *RemoteCode, b []byte) {
	if p.cfg.CacheDir == "" {
		return
	}
	if err := writeAtomic(filepath.Join(p.cfg.CacheDir, remoteCacheDir, sum+".wasm"), b); err != nil {
		p.log.Warn("remote plugin fetched, but not cached", "uri", r.HTTPURI.URI, "err", err)
	}
}
