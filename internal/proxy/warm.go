package proxy

import (
	"errors"
	"net"
	"sync"
)

// lazyListener is a listener held back while discovered filters warm
// (Envoy's listener warming: a static listener is served once the
// server's init manager is done, every ECDS subscription that warms
// having its first configuration, a rejected one or its
// initial_fetch_timeout). Its socket is bound at start, so that its
// address is taken and known, but does not listen (a connection is
// refused, as to Envoy's socket before its workers start) until
// activate; Accept waits until then.
type lazyListener struct {
	addr  net.Addr
	ready chan struct{} // closed by activate or Close
	mu    sync.Mutex
	bound *boundSocket // until activate
	ln    net.Listener // after activate
	err   error        // activate's
	done  bool         // closed
}

func newLazyListener(address string) (*lazyListener, error) {
	b, err := bindSocket(address)
	if err != nil {
		return nil, err
	}
	return &lazyListener{addr: b.addr, ready: make(chan struct{}), bound: b}, nil
}

// activate starts listening; Accept returns connections from then on.
func (l *lazyListener) activate() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done || l.bound == nil {
		return l.err
	}
	l.ln, l.err = l.bound.listen()
	l.bound = nil
	close(l.ready)
	return l.err
}

func (l *lazyListener) Accept() (net.Conn, error) {
	<-l.ready
	l.mu.Lock()
	ln, err, done := l.ln, l.err, l.done
	l.mu.Unlock()
	switch {
	case done && ln == nil:
		return nil, net.ErrClosed
	case err != nil:
		return nil, err
	}
	return ln.Accept()
}

func (l *lazyListener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return nil
	}
	l.done = true
	var err error
	switch {
	case l.ln != nil:
		err = l.ln.Close()
	case l.bound != nil:
		err = l.bound.close()
		l.bound = nil
		close(l.ready)
	}
	return err
}

func (l *lazyListener) Addr() net.Addr { return l.addr }

// markWarm ends the warming of slot s (its first configuration, a
// rejected one, or its initial_fetch_timeout); when no slot warms any
// more, the listeners start listening, before markWarm returns.
func (p *Proxy) markWarm(s *slot) {
	p.warmMu.Lock()
	defer p.warmMu.Unlock()
	if !s.warming {
		return
	}
	s.warming = false
	p.warming--
	if p.warming > 0 {
		return
	}
	var errs []error
	for _, l := range p.lazy {
		errs = append(errs, l.activate())
	}
	p.lazy = nil
	if err := errors.Join(errs...); err != nil {
		p.log.Error("listeners: listening after warming failed", "err", err)
		return
	}
	p.log.Info("listeners warmed: serving")
}

// FilterWarmed ends the warming of the filters discovered as name
// without a configuration: the subscription's initial_fetch_timeout
// ended, or the management server's response was rejected (Envoy's
// FilterConfigSubscription::onConfigUpdateFailed, which marks its init
// target ready "to make progress in case the control plane is
// temporarily failing"). The filters then serve their default_config,
// or answer as a filter without configuration.
func (p *Proxy) FilterWarmed(name string) {
	for _, s := range p.slots {
		if s.discovery != nil && s.discovery.Name == name {
			p.markWarm(s)
		}
	}
}

// Warming reports whether listeners are held back for discovered
// filters' first configuration.
func (p *Proxy) Warming() bool {
	p.warmMu.Lock()
	defer p.warmMu.Unlock()
	return p.warming > 0
}

// FilterWaiting reports whether a filter discovered as name still holds
// the listeners back.
func (p *Proxy) FilterWaiting(name string) bool {
	p.warmMu.Lock()
	defer p.warmMu.Unlock()
	for _, s := range p.slots {
		if s.discovery != nil && s.discovery.Name == name && s.warming {
			return true
		}
	}
	return false
}
