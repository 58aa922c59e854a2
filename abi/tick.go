package abi

import (
	"context"
	"time"
)

// ticker drives proxy_on_tick for one root context at the period the
// plugin asked for (with Options.ManualTicks, only Plugin.Tick does).
type ticker struct {
	stopc  chan struct{}
	period time.Duration
}

func (t *ticker) stop() {
	select {
	case <-t.stopc:
	default:
		close(t.stopc)
	}
}

// setTick starts, changes or (period 0) stops the ticks of root. v.mu is held.
func (v *vm) setTick(root *contextState, periodMs uint32) {
	if v.ticks == nil {
		v.ticks = map[uint32]*ticker{}
	}
	if t := v.ticks[root.id]; t != nil {
		t.stop()
		delete(v.ticks, root.id)
	}
	if periodMs == 0 {
		return
	}
	t := &ticker{stopc: make(chan struct{}), period: time.Duration(periodMs) * time.Millisecond}
	v.ticks[root.id] = t
	if !v.group.host.opts.ManualTicks {
		go v.tickLoop(t, root, t.period)
	}
}

// TickPeriod returns the tick period the plugin set
// (proxy_set_tick_period_milliseconds) on its first live VM, 0 for none.
func (p *Plugin) TickPeriod() time.Duration {
	for _, v := range p.group.liveVMs() {
		v.mu.Lock()
		var d time.Duration
		if root := v.roots[p]; root != nil && v.ticks[root.id] != nil {
			d = v.ticks[root.id].period
		}
		v.mu.Unlock()
		return d
	}
	return 0
}

// Tick runs proxy_on_tick once, now, for the plugin's root context on each
// of its live VMs that has a tick period: ticks without a clock, for tests
// and hosts that drive time themselves (Options.ManualTicks). It returns
// the number of ticks run.
func (p *Plugin) Tick(ctx context.Context) int {
	n := 0
	for _, v := range p.group.liveVMs() {
		v.mu.Lock()
		if root := v.roots[p]; root != nil && v.ticks[root.id] != nil && !v.closed && !v.failed.Load() {
			_, _ = v.call(context.WithoutCancel(ctx), root, v.cb.tick, "proxy_on_tick", uint64(root.id))
			n++
		}
		v.mu.Unlock()
	}
	return n
}

func (v *vm) tickLoop(t *ticker, root *contextState, period time.Duration) {
	tk := time.NewTicker(period)
	defer tk.Stop()
	for {
		select {
		case <-t.stopc:
			return
		case <-tk.C:
		}
		v.mu.Lock()
		select {
		case <-t.stopc:
			v.mu.Unlock()
			return
		default:
		}
		if v.closed || v.failed.Load() {
			v.mu.Unlock()
			return
		}
		_, _ = v.call(context.Background(), root, v.cb.tick, "proxy_on_tick", uint64(root.id))
		v.mu.Unlock()
	}
}
