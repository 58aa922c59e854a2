package proxy

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/anywasm/anywasm/abi"
)

func ptr[T any](v T) *T { return &v }

func fmtTags(tags []tag) string {
	var s []string
	for _, t := range tags {
		s = append(s, t.name+"="+t.value)
	}
	return strings.Join(s, ",")
}

// TestTagExtraction: Envoy's TagProducerImpl::produceTags over a plugin
// metric's Envoy name (wasmcustom.<name>).
func TestTagExtraction(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfg       *Stats
		metric    string
		extracted string
		tags      string
	}{
		{"two groups: the second is the value, the first is removed",
			&Stats{StatsTags: []StatsTag{{TagName: "value", Regex: `(_value=([a-zA-Z]+))`}}},
			"wasmcustom.counts_value=foo_x", "wasmcustom.counts_x", "value=foo"},
		{"one group: it is both",
			&Stats{StatsTags: []StatsTag{{TagName: "k", Regex: `\.(v\d+)\.`}}},
			"wasmcustom.a.v12.b", "wasmcustom.a..b", "k=v12"},
		{"no match: no tag, the name as it is",
			&Stats{StatsTags: []StatsTag{{TagName: "value", Regex: `(_value=([a-z]+))`}}},
			"wasmcustom.counts_value=FOO", "wasmcustom.counts_value=FOO", ""},
		{"no group: never a tag",
			&Stats{StatsTags: []StatsTag{{TagName: "value", Regex: `_value=[a-z]+`}}},
			"wasmcustom.counts_value=foo", "wasmcustom.counts_value=foo", ""},
		{"fixed_value: on every name, nothing removed",
			&Stats{StatsTags: []StatsTag{{TagName: "zone", FixedValue: ptr("eu")}}},
			"wasmcustom.counts", "wasmcustom.counts", "zone=eu"},
		{"the SDK example: both extractors see the original name; tags in configuration order",
			&Stats{StatsTags: []StatsTag{
				{TagName: "value", Regex: `(_value=([a-zA-Z]+))`},
				{TagName: "reporter", Regex: `(_reporter=([a-zA-Z]+))`}}},
			"wasmcustom.custom_header_value_counts_value=foo_reporter=wasmgosdk", "wasmcustom.custom_header_value_counts", "value=foo,reporter=wasmgosdk"},
		{"overlapping removals are removed once",
			&Stats{StatsTags: []StatsTag{{TagName: "a", Regex: `(_a_b)`}, {TagName: "b", Regex: `(_b_c)`}}},
			"wasmcustom.x_a_b_c_d", "wasmcustom.x_d", "a=_a_b,b=_b_c"},
		{"a prefixed regex runs after those without a prefix",
			&Stats{StatsTags: []StatsTag{{TagName: "first", Regex: `^wasmcustom\.((\w+?)_)`}, {TagName: "second", Regex: `(_(\d+))$`}}},
			"wasmcustom.x_y_7", "wasmcustom.y", "second=7,first=x"},
		{"two extractors of one name: only the first that matches",
			&Stats{StatsTags: []StatsTag{{TagName: "t", Regex: `(_(a))`}, {TagName: "t", Regex: `(_(b))`}, {TagName: "t", Regex: `(_(c))`}}},
			"wasmcustom.x_b_c", "wasmcustom.x_c", "t=b"},
		{"default envoy.response_code",
			nil, "wasmcustom.upstream_rq_503", "wasmcustom.upstream_rq", "envoy.response_code=503"},
		{"default envoy.response_code_class: the digit only is removed",
			nil, "wasmcustom.upstream_rq_5xx", "wasmcustom.upstream_rq_xx", "envoy.response_code_class=5"},
		{"default envoy.local_http_ratelimit_prefix takes the namespace",
			nil, "wasmcustom.http_local_rate_limit.ok", "http_local_rate_limit.ok", "envoy.local_http_ratelimit_prefix=wasmcustom"},
		{"defaults keyed to other first tokens never match",
			nil, "wasmcustom.cluster.c1.upstream_cx", "wasmcustom.cluster.c1.upstream_cx", ""},
		{"use_all_default_tags false",
			&Stats{UseAllDefaultTags: ptr(false)}, "wasmcustom.upstream_rq_503", "wasmcustom.upstream_rq_503", ""},
		{"a tag_name without regex adds the default (again: one tag)",
			&Stats{UseAllDefaultTags: ptr(false), StatsTags: []StatsTag{{TagName: "envoy.response_code"}}},
			"wasmcustom.upstream_rq_200", "wasmcustom.upstream_rq", "envoy.response_code=200"},
		{"a user regex after a default of the same name: the default wins",
			&Stats{StatsTags: []StatsTag{{TagName: "envoy.response_code", Regex: `(_code_(\d+))`}}},
			"wasmcustom.x_code_7_rq_200", "wasmcustom.x_code_7_rq", "envoy.response_code=200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp, err := newTagProducer(tc.cfg, "stats")
			if err != nil {
				t.Fatal(err)
			}
			ex, tags := tp.produce(tc.metric)
			if ex != tc.extracted || fmtTags(tags) != tc.tags {
				t.Errorf("produce(%q) = %q, %q; want %q, %q", tc.metric, ex, fmtTags(tags), tc.extracted, tc.tags)
			}
		})
	}
}

func TestTagProducerRefused(t *testing.T) {
	for _, tc := range []struct {
		cfg  Stats
		want string
	}{
		{Stats{StatsTags: []StatsTag{{Regex: `(x)`}}}, "stats.stats_tags[0].tag_name: missing"},
		{Stats{StatsTags: []StatsTag{{TagName: "a", Regex: `(x`}}}, "stats.stats_tags[0].regex: \"(x\": error parsing regexp: missing closing )"},
		{Stats{StatsTags: []StatsTag{{TagName: "a", Regex: `(?=\.)(x)`}}}, "stats.stats_tags[0].regex: \"(?=\\\\.)(x)\": \"(?=\" at offset 0: only (?:...) groups"},
		{Stats{StatsTags: []StatsTag{{TagName: "a", Regex: `(?i)(x)`}}}, "stats.stats_tags[0].regex: \"(?i)(x)\": \"(?i\" at offset 0"},
		{Stats{StatsTags: []StatsTag{{TagName: "a", Regex: `(x)\1`}}}, "stats.stats_tags[0].regex: \"(x)\\\\1\": error parsing regexp: invalid escape sequence"},
		{Stats{StatsTags: []StatsTag{{TagName: "a"}, {TagName: "b", Regex: "x", FixedValue: ptr("y")}}},
			"stats.stats_tags[0]: no regex specified for tag specifier and no default regex for name: \"a\"\nstats.stats_tags[1]: regex and fixed_value: want one"},
	} {
		_, err := newTagProducer(&tc.cfg, "stats")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err %v, want %q", tc.cfg, err, tc.want)
		}
	}
	// Escaped and bracketed "(?" are literal.
	for _, re := range []string{`\(?(x)`, `[(?](x)`, `(?:a)(x)`} {
		if _, err := newTagProducer(&Stats{StatsTags: []StatsTag{{TagName: "a", Regex: re}}}, "stats"); err != nil {
			t.Errorf("%s: %v", re, err)
		}
	}
}

func TestRegexPrefix(t *testing.T) {
	for re, want := range map[string]string{
		`^cluster\.((.+?)\.)`: "cluster", `^http(?=\.)(x)`: "http", `^abc$`: "abc", `^(a)\.`: "", `cluster\.(x)`: "",
		`^a_b\.`: "a_b", `^ab`: "", `^ab(x)`: "",
	} {
		if got := regexPrefix(re); got != want {
			t.Errorf("regexPrefix(%q) = %q, want %q", re, got, want)
		}
	}
}

// TestWritePrometheus: Envoy's text format for each type; names sorted,
// one # TYPE per family, tags in extraction order, no _total, names
// sanitized, a name starting with a digit left out.
func TestWritePrometheus(t *testing.T) {
	tp, err := newTagProducer(&Stats{StatsTags: []StatsTag{
		{TagName: "value", Regex: `(_value=([a-zA-Z"\\]+))`}, {TagName: "reporter", Regex: `(_reporter=([a-z]+))`}}}, "stats")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{statNames: &statNames{tp: tp}}
	mk := func(typ abi.MetricType, name string, v, count uint64, buckets ...abi.Bucket) *envoyStat {
		s := &envoyStat{name: "wasmcustom." + name, typ: typ, value: v, count: count, buckets: buckets}
		r := p.statNames.produce(s.name)
		s.extracted, s.tags = r.extracted, r.tags
		return s
	}
	stats := []*envoyStat{
		mk(abi.MetricHistogram, "lat.ms_reporter=x", 10, 3, abi.Bucket{UpperBound: 1, Count: 1}, abi.Bucket{UpperBound: 7, Count: 3}),
		mk(abi.MetricCounter, "hits_value=foo_reporter=sdk", 3, 0),
		mk(abi.MetricGauge, "9lives", 1, 0),
		mk(abi.MetricCounter, "hits_value=bar_reporter=sdk", 5, 0),
		mk(abi.MetricGauge, "temp-c", 1<<63, 0),
		mk(abi.MetricCounter, `hits_value=a"b\c`, 1, 0),
		mk(abi.MetricCounter, "a.b", 2, 0),
	}
	var b bytes.Buffer
	writePrometheus(&b, stats)
	want := `# TYPE a_b counter
a_b{} 2
# TYPE hits counter
hits{value="a\"b\\c"} 1
hits{value="bar",reporter="sdk"} 5
hits{value="foo",reporter="sdk"} 3
# TYPE temp_c gauge
temp_c{} 9223372036854775808
# TYPE lat_ms histogram
lat_ms_bucket{reporter="x",le="1"} 1
lat_ms_bucket{reporter="x",le="7"} 3
lat_ms_bucket{reporter="x",le="+Inf"} 3
lat_ms_sum{reporter="x"} 10
lat_ms_count{reporter="x"} 3
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	writeStatsText(&b, stats)
	wantText := "wasmcustom.9lives: 1\nwasmcustom.a.b: 2\nwasmcustom.hits_value=a\"b\\c: 1\nwasmcustom.hits_value=bar_reporter=sdk: 5\nwasmcustom.hits_value=foo_reporter=sdk: 3\nwasmcustom.temp-c: 9223372036854775808\n"
	if b.String() != wantText {
		t.Errorf("/stats: got\n%s\nwant\n%s", b.String(), wantText)
	}
}

func TestMergeBuckets(t *testing.T) {
	a := []abi.Bucket{{UpperBound: 1, Count: 2}, {UpperBound: 7, Count: 3}}
	b := []abi.Bucket{{UpperBound: 3, Count: 1}}
	got := fmt.Sprint(mergeBuckets(a, b))
	if want := "[{1 2} {3 3} {7 4}]"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestStatNameLess(t *testing.T) {
	// Token by token: "a.b" before "a-b" (token "a" is a prefix of "a-b"),
	// though '-' < '.' bytewise.
	if statNameLess("a.b", "a-b") >= 0 || statNameLess("a", "a.b") >= 0 || statNameLess("a.c", "a.b") <= 0 || statNameLess("x.y", "x.y") != 0 {
		t.Error("statNameLess is not token by token")
	}
}

// TestStatsConfig: the proxy's own format takes Envoy's field names under
// stats; a bad entry is refused naming its field.
func TestStatsConfig(t *testing.T) {
	const base = "listeners: [{name: l, address: \"127.0.0.1:0\", http: {cluster: echo}}]\n"
	c, err := ParseConfig([]byte(base + "stats: {use_all_default_tags: false, stats_tags: [{tag_name: value, regex: '(_v=(\\w+))'}, {tag_name: zone, fixed_value: ''}]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Stats; s == nil || *s.UseAllDefaultTags || len(s.StatsTags) != 2 || s.StatsTags[1].FixedValue == nil || *s.StatsTags[1].FixedValue != "" {
		t.Fatalf("stats: %+v", c.Stats)
	}
	for cfg, want := range map[string]string{
		"stats: {stats_tags: [{tag_name: v, regex: '('}]}":                   "stats.stats_tags[0].regex: \"(\": error parsing regexp",
		"stats: {stats_tags: [{tag_nam: v}]}":                                "stats.stats_tags[0].tag_nam",
		"stats: {stats_tags: [{tag_name: v, regex: '(x)', fixed_value: z}]}": "stats.stats_tags[0]: regex and fixed_value",
	} {
		if _, err := ParseConfig([]byte(base + cfg + "\n")); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want %q", cfg, err, want)
		}
	}
}
