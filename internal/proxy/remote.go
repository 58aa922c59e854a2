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
	cached := ""
	if p.cfg.CacheDir != "" {
		cached = filepath.Join(p.cfg.CacheDir, remoteCacheDir, want+".wasm")
		if b, err := os.ReadFile(cached); err == nil && hex.EncodeToString(sha256Of(b)) == want {
			return b, nil
		}
	}
	n, base, maxWait := r.retries()
	var err error
	for attempt := 0; ; attempt++ {
		var b []byte
		if b, err = p.fetchOnce(ctx, r, want); err == nil {
			if cached != "" {
				if err := writeAtomic(cached, b); err != nil {
					p.log.Warn("remote plugin fetched, but not cached", "uri", r.HTTPURI.URI, "err", err)
				}
			}
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
