// Package promcollector exposes the metrics Proxy-Wasm plugins define (an
// *abi.Metrics, from Host.Metrics) as a Prometheus collector.
//
// Plugins define their metrics at run time, so the collector is unchecked:
// Describe sends nothing, and each Collect builds constant metrics from a
// snapshot. Counters and gauges keep their type; a histogram keeps its
// cumulative buckets (upper bounds 0, 1, 3, 7, ... 2^i-1), count and sum.
//
// Proxy-Wasm metric names are free-form (Envoy's look like
// "envoy.wasm.x"): SanitizeName maps them to Prometheus names. When two
// names of one snapshot map to the same Prometheus name, or to names a
// histogram's _bucket, _sum and _count series would clash with, the first in
// name order is exposed and the others are skipped, so the exposition stays
// valid.
//
// Several hosts (one per runtime, say) each get their own collector; give
// them different constant labels (runtime="wazero") so that one registry
// can hold them all. A name used by two hosts must then have the same type
// in both, as Prometheus requires of one metric family.
package promcollector

import (
	"fmt"
	"strings"

	"github.com/anywasm/anywasm/abi"
	"github.com/prometheus/client_golang/prometheus"
)

// Option configures a collector.
type Option func(*collector)

// WithPrefix puts prefix in front of every metric name, before sanitizing
// ("proxywasm_" makes "envoy.wasm.x" proxywasm_envoy_wasm_x).
func WithPrefix(prefix string) Option {
	return func(c *collector) { c.prefix = prefix }
}

// New returns an unchecked collector exposing m, every metric with the
// constant labels constLabels (nil for none). An invalid constant label is
// reported by Collect as an invalid metric, i.e. by the registry's Gather.
func New(m *abi.Metrics, constLabels prometheus.Labels, opts ...Option) prometheus.Collector {
	c := &collector{metrics: m, labels: constLabels}
	for _, o := range opts {
		o(c)
	}
	return c
}

type collector struct {
	metrics *abi.Metrics
	labels  prometheus.Labels
	prefix  string
}

// Describe sends nothing: the collector is unchecked.
func (c *collector) Describe(chan<- *prometheus.Desc) {}

// Collect sends one constant metric per plugin metric.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	if c.metrics == nil {
		return
	}
	// used holds every name the exposition already has, histograms'
	// series names included.
	used := map[string]bool{}
	for _, mv := range c.metrics.Snapshot() {
		name := SanitizeName(c.prefix + mv.Name)
		names := []string{name}
		if mv.Type == abi.MetricHistogram {
			names = append(names, name+"_bucket", name+"_sum", name+"_count")
		}
		if clash(used, names) {
			continue
		}
		var (
			m   prometheus.Metric
			err error
		)
		desc := prometheus.NewDesc(name, help(mv.Type), nil, c.labels)
		switch mv.Type {
		case abi.MetricCounter:
			m, err = prometheus.NewConstMetric(desc, prometheus.CounterValue, float64(mv.Value))
		case abi.MetricGauge:
			m, err = prometheus.NewConstMetric(desc, prometheus.GaugeValue, float64(mv.Value))
		case abi.MetricHistogram:
			buckets := make(map[float64]uint64, len(mv.Buckets))
			for _, b := range mv.Buckets {
				buckets[b.UpperBound] = b.Count
			}
			m, err = prometheus.NewConstHistogram(desc, mv.Count, float64(mv.Value), buckets)
		default:
			continue
		}
		if err != nil {
			// Only the constant labels can be wrong (the name is
			// sanitized): report it once, not once per metric.
			ch <- prometheus.NewInvalidMetric(desc, err)
			return
		}
		for _, n := range names {
			used[n] = true
		}
		ch <- m
	}
}

// clash reports whether any of names is already exposed. A histogram's
// names include its _bucket, _sum and _count series, so a histogram "x" and
// a counter "x_count" clash whichever comes first.
func clash(used map[string]bool, names []string) bool {
	for _, n := range names {
		if used[n] {
			return true
		}
	}
	return false
}

func help(t abi.MetricType) string {
	// The same for every metric of a type: one registry may gather the
	// same name from several hosts, and Prometheus wants one help text
	// per metric family.
	return fmt.Sprintf("Proxy-Wasm plugin %s.", t)
}

// SanitizeName maps a Proxy-Wasm metric name to a valid Prometheus metric
// name: every character outside [a-zA-Z0-9_:] becomes '_', a leading digit
// gets a '_' in front, and the empty name becomes "_".
func SanitizeName(name string) string {
	var b strings.Builder
	b.Grow(len(name) + 1)
	for i, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '_', r == ':':
			b.WriteRune(r)
		case r >= '0' && r <= '9':
			if i == 0 {
				b.WriteByte('_')
			}
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}
