package proxy

import (
	"runtime"

	"github.com/anywasm/anywasm/engine"
)

// WaitRetired waits until every replaced plugin is closed. A replaced
// plugin is closed in the background once its last exchange ends, which the
// server may record after the client has its response: the wait yields
// until then.
func WaitRetired(p *Proxy) {
	for draining(p) {
		runtime.Gosched()
	}
}

func draining(p *Proxy) bool {
	for _, s := range p.slots {
		s.mu.RLock()
		n := len(s.gens)
		s.mu.RUnlock()
		if n > 1 {
			return true
		}
	}
	return false
}

// RuntimeConfigs returns the configuration of every runtime the proxy
// opened, by name.
func RuntimeConfigs(p *Proxy) map[string]engine.Config {
	m := map[string]engine.Config{}
	for n, rt := range p.runtimes {
		m[n] = rt.Config()
	}
	return m
}
