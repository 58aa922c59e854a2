package abi

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
)

// Metrics holds the metrics plugins define. Plugins of one host that define
// the same name and type share the metric (Envoy's behaviour); the embedder
// reads them with Snapshot.
type Metrics struct {
	mu     sync.RWMutex
	byName map[string]*metric
	byID   []*metric // id-1
}

type metric struct {
	name  string
	typ   MetricType
	value atomic.Int64 // counter, gauge; histogram: sum
	count atomic.Uint64
	// buckets[i] counts histogram values v with bits.Len64(v) == i: upper
	// bounds 0, 1, 3, 7, ... 2^i - 1.
	buckets [65]atomic.Uint64
}

func newMetrics() *Metrics { return &Metrics{byName: map[string]*metric{}} }

func (m *Metrics) define(t MetricType, name string) (uint32, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if x, ok := m.byName[name]; ok {
		if x.typ != t {
			return 0, fmt.Errorf("metric %q is a %s", name, x.typ)
		}
		return uint32(slices.Index(m.byID, x) + 1), nil
	}
	x := &metric{name: name, typ: t}
	m.byName[name] = x
	m.byID = append(m.byID, x)
	return uint32(len(m.byID)), nil
}

func (m *Metrics) lookup(id uint32) *metric {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if id == 0 || int(id) > len(m.byID) {
		return nil
	}
	return m.byID[id-1]
}

// record is Envoy's Context::recordMetric: a counter adds the value, a
// gauge takes it, a histogram records it.
func (m *Metrics) record(id uint32, v uint64) Status {
	x := m.lookup(id)
	if x == nil {
		return StatusNotFound
	}
	switch x.typ {
	case MetricCounter:
		x.value.Add(int64(v))
	case MetricGauge:
		x.value.Store(int64(v))
	case MetricHistogram:
		x.value.Add(int64(v))
		x.count.Add(1)
		x.buckets[bits.Len64(v)].Add(1)
	}
	return StatusOK
}

// increment is Envoy's Context::incrementMetric: a counter only goes up
// (an offset of 0 or less is BAD_ARGUMENT), a gauge goes either way, a
// histogram cannot be incremented.
func (m *Metrics) increment(id uint32, delta int64) Status {
	x := m.lookup(id)
	if x == nil {
		return StatusNotFound
	}
	switch {
	case x.typ == MetricHistogram, x.typ == MetricCounter && delta <= 0:
		return StatusBadArgument
	}
	x.value.Add(delta)
	return StatusOK
}

// get is Envoy's Context::getMetric: a histogram has no value to read.
func (m *Metrics) get(id uint32) (uint64, Status) {
	x := m.lookup(id)
	if x == nil {
		return 0, StatusNotFound
	}
	if x.typ == MetricHistogram {
		return 0, StatusBadArgument
	}
	return uint64(x.value.Load()), StatusOK
}

// MetricValue is one metric at the time of a Snapshot.
type MetricValue struct {
	Name string
	Type MetricType
	// Value is a counter's or gauge's value; a histogram's sum.
	Value int64
	// Count is the number of values a histogram recorded.
	Count uint64
	// Buckets are a histogram's cumulative counts by upper bound.
	Buckets []Bucket
}

// Bucket is a cumulative histogram bucket: Count values were <= UpperBound.
type Bucket struct {
	UpperBound float64
	Count      uint64
}

// Snapshot returns every metric, sorted by name.
func (m *Metrics) Snapshot() []MetricValue {
	m.mu.RLock()
	ms := slices.Clone(m.byID)
	m.mu.RUnlock()
	out := make([]MetricValue, 0, len(ms))
	for _, x := range ms {
		mv := MetricValue{Name: x.name, Type: x.typ, Value: x.value.Load(), Count: x.count.Load()}
		if x.typ == MetricHistogram {
			var cum uint64
			for i := range x.buckets {
				n := x.buckets[i].Load()
				cum += n
				if n > 0 || (cum > 0 && i < 64 && cum < mv.Count) {
					mv.Buckets = append(mv.Buckets, Bucket{UpperBound: math.Ldexp(1, i) - 1, Count: cum})
				}
			}
		}
		out = append(out, mv)
	}
	slices.SortFunc(out, func(a, b MetricValue) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// Get returns the snapshot of one metric by name.
func (m *Metrics) Get(name string) (MetricValue, bool) {
	for _, mv := range m.Snapshot() {
		if mv.Name == name {
			return mv, true
		}
	}
	return MetricValue{}, false
}
