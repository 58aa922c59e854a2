package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/pprof/profile"
)

// The functions of the proxy's CPU profile that cpuShares attributes by.
const (
	// middlewareFn runs the plugin chain of a request.
	middlewareFn = "github.com/anywasm/anywasm/abi/nethttp.(*middleware).ServeHTTP"
	// upstreamFn is the handler the middleware hands the request on to:
	// the round trip to the upstream, which the plugins do not cost.
	upstreamFn = "github.com/anywasm/anywasm/internal/proxy.(*router).ServeHTTP"
	// externalFn is what Go's profiler names a sample it took in code it
	// cannot walk: wazero's compiled guest code, and C code without a Go
	// caller on the stack (libc under Wasmtime and Wasmer). A proxy with no
	// plugin has none.
	externalFn = "runtime._ExternalCode"
	// gcWorkerFn is the garbage collector's background mark worker.
	gcWorkerFn = "runtime.gcBgMarkWorker"
)

// cpuShares is where the CPU of a proxy's profile went: total, the
// plugins' part (the middleware's samples that are not the upstream round
// trip beneath it, plus external), external code alone, and the
// garbage collector's mark workers. dur is how long the profile ran. The
// proxy routes a request through the middleware even with no plugin (an
// empty chain), so the plugins' part includes the middleware's own work,
// under 1 µs per request then.
type cpuShares struct {
	total, plugin, external, gc time.Duration
	dur                         time.Duration
}

// readShares attributes the CPU profile in file (see cpuShares).
func readShares(file string) (cpuShares, error) {
	f, err := os.Open(file)
	if err != nil {
		return cpuShares{}, err
	}
	defer f.Close()
	return parseShares(f)
}

// parseShares attributes a CPU profile in pprof's format (see cpuShares).
func parseShares(r io.Reader) (cpuShares, error) {
	p, err := profile.Parse(r)
	if err != nil {
		return cpuShares{}, err
	}
	vi := -1
	for i, st := range p.SampleType {
		if st.Type == "cpu" && st.Unit == "nanoseconds" {
			vi = i
		}
	}
	if vi < 0 {
		return cpuShares{}, fmt.Errorf("not a CPU profile: no cpu/nanoseconds sample type")
	}
	s := cpuShares{dur: time.Duration(p.DurationNanos)}
	for _, smp := range p.Sample {
		v := time.Duration(smp.Value[vi])
		s.total += v
		// Locations run from the leaf to the root; a location's lines
		// from the innermost inlined function out.
		mw, up := -1, -1 // depth of the innermost middleware and upstream frames
		ext, gc := false, false
		depth := 0
		for _, loc := range smp.Location {
			for _, ln := range loc.Line {
				if ln.Function == nil {
					depth++
					continue
				}
				switch ln.Function.Name {
				case middlewareFn:
					if mw < 0 {
						mw = depth
					}
				case upstreamFn:
					if up < 0 {
						up = depth
					}
				case externalFn:
					ext = true
				case gcWorkerFn:
					gc = true
				}
				depth++
			}
		}
		switch {
		case ext:
			s.external += v
			s.plugin += v
		case mw >= 0 && (up < 0 || up > mw):
			// In the middleware and not in the upstream handler it
			// calls (an upstream frame nearer the leaf than the
			// middleware's).
			s.plugin += v
		}
		if gc {
			s.gc += v
		}
	}
	return s, nil
}

// perRequest is d spread over the requests a run of rps requests per
// second answered while the profile ran; -1 where unknown.
func (s cpuShares) perRequest(d time.Duration, rps float64) time.Duration {
	n := rps * s.dur.Seconds()
	if n <= 0 {
		return -1
	}
	return time.Duration(float64(d) / n)
}
