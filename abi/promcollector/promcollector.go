// Package promcollector exposes the metrics Proxy-Wasm plugins define (an
// *abi.Metrics, from Host.Metrics) as a Prometheus collector.
//
// Plugins define their metrics at run time, so the collector is unchecked:
// Describe sends nothing, and each Collect builds constant metrics from a
// snapshot. Counters and gauges keep their type; a histogram keeps its
// cumulative buckets (upper bounds 0, 1, 3, 7, ... 2^i-1), count and sum.
//
// # Names
//
// Proxy-Wasm metric names are free-form (Envoy's look like "envoy.wasm.x")
// and chosen by the plugin, so they are kept apart from the embedder's
// families: each gets a prefix, DefaultPrefix unless WithPrefix says
// otherwise (Envoy likewise exposes custom Wasm metrics under
// "wasmcustom."), and the whole is sanitized by SanitizeName. A counter's
// name gets "_total" unless the sanitized name already ends in it, as
// Prometheus names counters. Gauge "x" of a plugin is anywasm_plugin_x,
// counter "envoy.wasm.requests" anywasm_plugin_envoy_wasm_requests_total.
//
// # Collisions
//
// A collision must never make the exposition invalid: a registry that
// gathers an invalid exposition fails the whole scrape, the embedder's own
// metrics included. Collect therefore decides, deterministically, which
// plugin metrics to leave out:
//
//   - a metric whose name, or one of its series' names (a histogram's
//     _bucket, _sum and _count), is reserved (WithReserved: the names of the
//     registry's other families) is left out;
//   - when two metrics would share a name, or one's name is another's
//     histogram series, the first is exposed and the others are left out.
//     First means in source order (NewSources), then in the order of the
//     plugins' names. The same name in several sources is one family when
//     the types agree (its metrics told apart by the sources' labels);
//   - a metric whose name and labels repeat those of one already exposed
//     is left out.
//
// WithOnSkip hears of every metric left out, and why.
//
// Several hosts (one per runtime, say) go into one collector with
// NewSources, each with its own constant labels (runtime="wazero"), so
// that the rules above hold across them.
package promcollector

import (
	"fmt"
	"slices"
	"strings"

	"github.com/anywasm/anywasm/abi"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultPrefix goes in front of every plugin metric's name unless
// WithPrefix sets another.
const DefaultPrefix = "anywasm_plugin_"

// Option configures a collector.
type Option func(*collector)

// WithPrefix puts prefix in front of every metric name, before sanitizing,
// instead of DefaultPrefix ("proxywasm_" makes counter "envoy.wasm.x"
// proxywasm_envoy_wasm_x_total). An empty prefix exposes the plugins'
// names as they are: then only WithReserved keeps them from the
// embedder's families.
func WithPrefix(prefix string) Option {
	return func(c *collector) { c.prefix = prefix }
}

// WithReserved makes Collect leave out every plugin metric that would
// expose a name (a family's name or a histogram's series name) for which
// reserved reports true: give it the names, or name prefixes, of the other
// families of the registry. reserved must be safe for concurrent use.
func WithReserved(reserved func(name string) bool) Option {
	return func(c *collector) { c.reserved = reserved }
}

// WithOnSkip calls f for every plugin metric a Collect leaves out: on every
// Collect, so deduplicate before logging. f must be safe for concurrent
// use and must not call the collector.
func WithOnSkip(f func(Skip)) Option {
	return func(c *collector) { c.onSkip = f }
}

// Skip is a plugin metric that Collect left out.
type Skip struct {
	// Name is the metric's name as the plugin defined it.
	Name string
	// Type is the metric's type.
	Type abi.MetricType
	// Exposed is the Prometheus name it would have had.
	Exposed string
	// Labels are the constant labels of its source.
	Labels prometheus.Labels
	// Reason says why, naming what it collides with.
	Reason string
}

// Source is one host's metrics and the constant labels that tell its
// metrics apart from other sources'.
type Source struct {
	Metrics *abi.Metrics
	Labels  prometheus.Labels
}

// New returns an unchecked collector exposing m, every metric with the
// constant labels constLabels (nil for none). An invalid constant label is
// reported by Collect as an invalid metric, i.e. by the registry's Gather.
func New(m *abi.Metrics, constLabels prometheus.Labels, opts ...Option) prometheus.Collector {
	return NewSources([]Source{{Metrics: m, Labels: constLabels}}, opts...)
}

// NewSources returns an unchecked collector exposing the metrics of every
// source, each with its source's constant labels. Where two sources'
// metrics collide, the earlier source's is exposed. Sources with nil
// Metrics are ignored.
func NewSources(sources []Source, opts ...Option) prometheus.Collector {
	c := &collector{prefix: DefaultPrefix}
	for _, s := range sources {
		if s.Metrics != nil {
			c.sources = append(c.sources, s)
		}
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

type collector struct {
	sources  []Source
	prefix   string
	reserved func(string) bool
	onSkip   func(Skip)
}

// Describe sends nothing: the collector is unchecked.
func (c *collector) Describe(chan<- *prometheus.Desc) {}

// exposed is a family Collect has sent metrics of.
type exposed struct {
	plugin string // the plugin's name of its first metric
	typ    abi.MetricType
}

// Collect sends one constant metric per plugin metric it does not leave
// out (see the package documentation).
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	// families: the families sent so far by name; series: every series
	// name sent, histograms' included, and the family it belongs to;
	// seen: family name and labels of every metric sent.
	families := map[string]exposed{}
	series := map[string]string{}
	seen := map[string]bool{}
	for _, src := range c.sources {
		labelKey := labelsKey(src.Labels)
		for _, mv := range src.Metrics.Snapshot() {
			name := Name(c.prefix, mv.Name, mv.Type)
			names := []string{name}
			if mv.Type == abi.MetricHistogram {
				names = append(names, name+"_bucket", name+"_sum", name+"_count")
			}
			skip := func(reason string, args ...any) {
				if c.onSkip != nil {
					c.onSkip(Skip{Name: mv.Name, Type: mv.Type, Exposed: name, Labels: src.Labels, Reason: fmt.Sprintf(reason, args...)})
				}
			}
			if why := c.clash(families, series, name, mv.Type, names); why != "" {
				skip("%s", why)
				continue
			}
			key := name + "\xff" + labelKey
			if seen[key] {
				skip("another source with the same labels already exposed %s", name)
				continue
			}
			var (
				m   prometheus.Metric
				err error
			)
			desc := prometheus.NewDesc(name, help(mv.Type), nil, src.Labels)
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
				// sanitized): report it once for the source, not once
				// per metric.
				ch <- prometheus.NewInvalidMetric(desc, err)
				break
			}
			if _, ok := families[name]; !ok {
				families[name] = exposed{plugin: mv.Name, typ: mv.Type}
			}
			for _, n := range names {
				series[n] = name
			}
			seen[key] = true
			ch <- m
		}
	}
}

// clash says why a metric of type t exposed as family name, with series
// names, cannot be sent, or "" if it can.
func (c *collector) clash(families map[string]exposed, series map[string]string, name string, t abi.MetricType, names []string) string {
	for _, n := range names {
		if c.reserved != nil && c.reserved(n) {
			return fmt.Sprintf("%s is reserved for another collector's metrics", n)
		}
	}
	if f, ok := families[name]; ok && f.typ != t {
		return fmt.Sprintf("%s is already plugin metric %q, a %s", name, f.plugin, f.typ)
	}
	for _, n := range names {
		if owner, ok := series[n]; ok && owner != name {
			return fmt.Sprintf("series %s is already plugin metric %q's (exposed as %s)", n, families[owner].plugin, owner)
		}
	}
	return ""
}

// labelsKey is a canonical form of a label set.
func labelsKey(l prometheus.Labels) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "\xfe" + l[k] + "\xff")
	}
	return b.String()
}

func help(t abi.MetricType) string {
	// The same for every metric of a type: one family gathers the same
	// name from several sources, and Prometheus wants one help text per
	// metric family.
	return fmt.Sprintf("Proxy-Wasm plugin %s.", t)
}

// Name is the Prometheus name of a plugin metric: SanitizeName of prefix
// and the plugin's name, with "_total" appended to a counter's unless it
// already ends so.
func Name(prefix, name string, t abi.MetricType) string {
	n := SanitizeName(prefix + name)
	if t == abi.MetricCounter && !strings.HasSuffix(n, "_total") {
		n += "_total"
	}
	return n
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
