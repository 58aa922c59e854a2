package abi

import (
	"context"
	"time"
)

// ticker drives proxy_on_tick for one root context at the period the
// plugin asked for.
type ticker struct {
	stopc chan struct{}
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
	t := &ticker{stopc: make(chan struct{})}
	v.ticks[root.id] = t
	go v.tickLoop(t, root, time.Duration(periodMs)*time.Millisecond)
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
