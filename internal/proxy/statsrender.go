package proxy

import (
	"bytes"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/anywasm/anywasm/abi"
)

// The admin's Envoy-format endpoints for the plugins' metrics:
// /stats/prometheus (Envoy's PrometheusStatsFormatter, text format) and
// /stats (Envoy's plain "name: value" text). Only the plugins' metrics are
// there: anywasm has none of Envoy's own stats.

// envoyStat is one plugin metric under Envoy's name for it, merged over
// the runtimes' hosts.
type envoyStat struct {
	name  string // wasmcustom.<the plugin's name>
	typ   abi.MetricType
	value uint64 // counter, gauge; histogram: sum
	count uint64 // histogram
	// buckets: a histogram's cumulative counts by upper bound (abi's
	// bounds 0, 1, 3, 7, ... 2^i-1, those the snapshot has).
	buckets []abi.Bucket
	// extracted and tags: what the tag producer made of name.
	extracted string
	tags      []tag
}

// statNames caches the tag producer's result per metric name (metrics are
// never removed, and a name's result never changes).
type statNames struct {
	tp    *tagProducer
	mu    sync.Mutex
	cache map[string]producedName
}

type producedName struct {
	extracted string
	tags      []tag
}

func (n *statNames) produce(name string) producedName {
	n.mu.Lock()
	defer n.mu.Unlock()
	if r, ok := n.cache[name]; ok {
		return r
	}
	ex, tags := n.tp.produce(name)
	r := producedName{ex, tags}
	if n.cache == nil {
		n.cache = map[string]producedName{}
	}
	n.cache[name] = r
	return r
}

// envoyStats returns every plugin metric of every runtime's host. Envoy
// has one stats store: plugins of different VMs that define one name
// share one stat. The runtimes' hosts each have their own, so a metric of
// the same name and type in several hosts is merged: counters and
// histograms add up (as a shared counter or histogram would), gauges add
// up too (a shared gauge would hold the last value set: the hosts' sets
// cannot be ordered). A name defined with different types in different
// hosts is two stats, as in Envoy (its stores are per type).
func (p *Proxy) envoyStats() []*envoyStat {
	type key struct {
		typ  abi.MetricType
		name string
	}
	byKey := map[key]*envoyStat{}
	var out []*envoyStat
	for _, rt := range p.runtimeNames() {
		h := p.hosts[rt]
		if h == nil {
			continue
		}
		for _, mv := range h.Metrics().Snapshot() {
			k := key{mv.Type, mv.Name}
			s := byKey[k]
			if s == nil {
				s = &envoyStat{name: customNamespace + "." + mv.Name, typ: mv.Type}
				byKey[k] = s
				out = append(out, s)
			}
			s.value += uint64(mv.Value)
			s.count += mv.Count
			if mv.Type == abi.MetricHistogram {
				s.buckets = mergeBuckets(s.buckets, mv.Buckets)
			}
		}
	}
	for _, s := range out {
		r := p.statNames.produce(s.name)
		s.extracted, s.tags = r.extracted, r.tags
	}
	return out
}

// mergeBuckets adds two sets of cumulative buckets over the union of
// their bounds: a set's count at a bound it lacks is that of its largest
// bound below (a snapshot leaves out only bounds where nothing changed).
func mergeBuckets(a, b []abi.Bucket) []abi.Bucket {
	if len(a) == 0 {
		return slices.Clone(b)
	}
	var bounds []float64
	for _, x := range a {
		bounds = append(bounds, x.UpperBound)
	}
	for _, x := range b {
		bounds = append(bounds, x.UpperBound)
	}
	slices.Sort(bounds)
	bounds = slices.Compact(bounds)
	at := func(bs []abi.Bucket, bound float64) uint64 {
		var n uint64
		for _, x := range bs {
			if x.UpperBound > bound {
				break
			}
			n = x.Count
		}
		return n
	}
	out := make([]abi.Bucket, len(bounds))
	for i, bound := range bounds {
		out[i] = abi.Bucket{UpperBound: bound, Count: at(a, bound) + at(b, bound)}
	}
	return out
}

// statNameLess is Envoy's StatNameLessThan: names compared token by token
// (their dot-separated elements), a name before the longer names it is a
// prefix of.
func statNameLess(a, b string) int {
	for {
		ta, ra, moreA := strings.Cut(a, ".")
		tb, rb, moreB := strings.Cut(b, ".")
		if c := strings.Compare(ta, tb); c != 0 {
			return c
		}
		switch {
		case !moreA && !moreB:
			return 0
		case !moreA:
			return -1
		case !moreB:
			return 1
		}
		a, b = ra, rb
	}
}

// promMetricName is Envoy's PrometheusStatsFormatter::metricName: a name
// in the custom namespace "wasmcustom" loses it and is only sanitized (no
// "envoy_" prefix); one that starts with a digit, or is empty, once
// sanitized, is left out. Any other name (a tag extractor took the
// namespace away) is "envoy_" + the sanitized name.
func promMetricName(extracted string) (string, bool) {
	if ns, rest, ok := strings.Cut(extracted, "."); ok && ns == customNamespace {
		n := promSanitize(rest)
		if n == "" || n[0] >= '0' && n[0] <= '9' {
			return "", false
		}
		return n, true
	}
	return "envoy_" + promSanitizeBytes(extracted), true
}

// promSanitize is Envoy's sanitizeName, for a custom namespace's name:
// RE2's [^a-zA-Z0-9_] replaced by "_", one per character.
func promSanitize(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if r < 0x80 && promByte(byte(r)) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// promSanitizeBytes is Envoy's sanitizeNameInPlace, for other names and
// for tag names: one "_" per byte.
func promSanitizeBytes(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !promByte(c) {
			b[i] = '_'
		}
	}
	return string(b)
}

func promByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// promValue is Envoy's sanitizeValue: \ " and newline escaped.
func promValue(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`).Replace(s)
}

// promTags is Envoy's PrometheusStatsFormatter::formattedTags, in the
// tags' order (extraction order).
func promTags(b *bytes.Buffer, tags []tag) {
	for i, t := range tags {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(promSanitizeBytes(t.name))
		b.WriteString(`="`)
		b.WriteString(promValue(t.value))
		b.WriteByte('"')
	}
}

// promFloat is fmt's "{:.32g}".
func promFloat(b *bytes.Buffer, v float64) {
	b.Write(strconv.AppendFloat(b.AvailableBuffer(), v, 'g', 32, 64))
}

// writePrometheus writes the plugins' metrics as Envoy's /stats/prometheus
// does (PrometheusStatsFormatter::statsAsPrometheusText, visitStatType):
// counters, then gauges, then histograms; within each, families by their
// tag-extracted name (StatNameLessThan), each with one "# TYPE" line, its
// stats by their full names. Counters get no "_total". A histogram has a
// _bucket line per bound (le formatted as {:.32g}), le="+Inf" (the
// count), _sum and _count.
func writePrometheus(b *bytes.Buffer, stats []*envoyStat) {
	for _, typ := range []abi.MetricType{abi.MetricCounter, abi.MetricGauge, abi.MetricHistogram} {
		groups := map[string][]*envoyStat{}
		var names []string
		for _, s := range stats {
			if s.typ != typ {
				continue
			}
			if groups[s.extracted] == nil {
				names = append(names, s.extracted)
			}
			groups[s.extracted] = append(groups[s.extracted], s)
		}
		slices.SortFunc(names, statNameLess)
		for _, g := range names {
			name, ok := promMetricName(g)
			if !ok {
				continue
			}
			members := groups[g]
			slices.SortFunc(members, func(x, y *envoyStat) int { return statNameLess(x.name, y.name) })
			b.WriteString("# TYPE ")
			b.WriteString(name)
			switch typ {
			case abi.MetricCounter:
				b.WriteString(" counter\n")
			case abi.MetricGauge:
				b.WriteString(" gauge\n")
			default:
				b.WriteString(" histogram\n")
			}
			for _, s := range members {
				if typ != abi.MetricHistogram {
					b.WriteString(name)
					b.WriteByte('{')
					promTags(b, s.tags)
					b.WriteString("} ")
					b.Write(strconv.AppendUint(b.AvailableBuffer(), s.value, 10))
					b.WriteByte('\n')
					continue
				}
				writeHistogram(b, name, s)
			}
		}
	}
}

// writeHistogram is Envoy's TextFormat::generateHistogram.
func writeHistogram(b *bytes.Buffer, name string, s *envoyStat) {
	series := func(suffix string, le string, bound float64) {
		b.WriteString(name)
		b.WriteString(suffix)
		b.WriteByte('{')
		promTags(b, s.tags)
		if le != "" || !math.IsNaN(bound) {
			if len(s.tags) > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`le="`)
			if le != "" {
				b.WriteString(le)
			} else {
				promFloat(b, bound)
			}
			b.WriteByte('"')
		}
		b.WriteString("} ")
	}
	for _, bk := range s.buckets {
		series("_bucket", "", bk.UpperBound)
		b.Write(strconv.AppendUint(b.AvailableBuffer(), bk.Count, 10))
		b.WriteByte('\n')
	}
	series("_bucket", "+Inf", math.NaN())
	b.Write(strconv.AppendUint(b.AvailableBuffer(), s.count, 10))
	b.WriteByte('\n')
	series("_sum", "", math.NaN())
	promFloat(b, float64(s.value))
	b.WriteByte('\n')
	series("_count", "", math.NaN())
	b.Write(strconv.AppendUint(b.AvailableBuffer(), s.count, 10))
	b.WriteByte('\n')
}

// writeStatsText writes the plugins' counters and gauges as Envoy's /stats
// does (StatsTextRender): "name: value", by full name, counters and gauges
// together in name order. Histograms are left out (Envoy prints their
// quantiles, which abi's power-of-two buckets cannot give).
func writeStatsText(b *bytes.Buffer, stats []*envoyStat) {
	var list []*envoyStat
	for _, s := range stats {
		if s.typ != abi.MetricHistogram {
			list = append(list, s)
		}
	}
	slices.SortFunc(list, func(x, y *envoyStat) int { return strings.Compare(x.name, y.name) })
	for _, s := range list {
		b.WriteString(s.name)
		b.WriteString(": ")
		b.Write(strconv.AppendUint(b.AvailableBuffer(), s.value, 10))
		b.WriteByte('\n')
	}
}

// statsHandler serves /stats/prometheus or /stats.
func (p *Proxy) statsHandler(write func(*bytes.Buffer, []*envoyStat)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		write(&b, p.envoyStats())
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		_, _ = w.Write(b.Bytes())
	}
}
