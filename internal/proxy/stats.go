package proxy

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Envoy's tag extraction (source/common/stats/tag_producer_impl.cc,
// tag_extractor_impl.cc), for the names of the plugins' metrics.
//
// Envoy names a metric a plugin defines "wasmcustom.<name>"
// (Context::defineMetric joins the custom stat namespace and the name)
// and runs its tag producer over that whole name. The producer runs every
// extractor without a prefix token, in the order they were added (the
// defaults, then stats_tags), then those whose prefix token (the word a
// regex "^word\." starts with, the first token of a tokenized pattern) is
// the name's first dot-separated token. Each extractor sees the original
// name; what the matching ones remove is removed at the end. Of two or
// more extractors of one tag name, only the first that matches adds a tag.

// customNamespace is Envoy's CustomStatNamespace ("wasmcustom",
// source/extensions/common/wasm/stats_handler.h), the first token of
// every plugin metric's name.
const customNamespace = "wasmcustom"

// tag is one extracted tag, in extraction order.
type tag struct{ name, value string }

// extractor is one of Envoy's TagExtractor kinds.
type extractor struct {
	name   string
	prefix string // Envoy's prefixToken: "" runs on every name
	// one of:
	re       *regexp.Regexp // TagExtractorStdRegexImpl (stats_tags) or TagExtractorRe2Impl (defaults)
	re2      bool           // re is a default: Envoy's Re2 semantics
	negative string         // Re2: a value that does not count as a match
	substr   string         // a substring the name must contain for re to be tried
	tokens   []string       // TagExtractorTokensImpl
	fixed    *string        // TagExtractorFixedImpl
	dup      bool           // another extractor has the same name
}

// tagProducer is Envoy's TagProducerImpl.
type tagProducer struct {
	withoutPrefix []*extractor
	byPrefix      map[string][]*extractor
}

// defaultExtractor is one of Envoy's default tag extractors
// (source/common/config/well_known_names.cc, TagNameValues).
type defaultExtractor struct {
	name string
	// regex (Envoy's addRe2) or tokens (addTokenized); neither: inert.
	regex, substr string
	tokens        string
	// prefix is the extractor's prefix token, for the inert ones: it
	// only ever runs on names whose first token is prefix, which a
	// plugin metric's ("wasmcustom") never is.
	prefix string
}

// defaultExtractors are Envoy's defaults, in Envoy's order. Only three
// can match a plugin metric's name and are implemented as Envoy writes
// them: envoy.response_code (a name ending in "_rq_<3 digits>"),
// envoy.response_code_class ("_rq_<digit>xx") and
// envoy.local_http_ratelimit_prefix (the pattern "$.http_local_rate_limit.**":
// a metric named "http_local_rate_limit.<more>" gets the tag
// "wasmcustom" and loses its namespace, as in Envoy). Every other default
// is either keyed to a prefix token (listed with it) or anchored to a
// first token other than "wasmcustom" (^listener, ^cluster, ^server,
// ^listener_manager: envoy.worker_id and the SSL curve, signature
// algorithm and version extractors); they are listed by name, for
// stats_tags entries that name a default, and never match. The SSL
// curve, signature algorithm and version, ext_authz prefix,
// listener-local and DNS filter extractors of newer Envoys are not
// listed: their tag names could not be confirmed, so a stats_tags entry
// naming one without a regex is refused.
var defaultExtractors = []defaultExtractor{
	{name: "envoy.response_code", regex: `_rq(_(\d{3}))$`, substr: "_rq_"},
	{name: "envoy.response_code_class", regex: `_rq_((\d))xx$`, substr: "_rq_"},
	{name: "envoy.dynamo_partition_id", prefix: "http"},
	{name: "envoy.dynamo_operation", prefix: "http"},
	{name: "envoy.mongo_callsite", prefix: "mongo"},
	{name: "envoy.dynamo_table", prefix: "http"},
	{name: "envoy.mongo_collection", prefix: "mongo"},
	{name: "envoy.mongo_cmd", prefix: "mongo"},
	{name: "envoy.grpc_bridge_method", prefix: "cluster"},
	{name: "envoy.http_user_agent", prefix: "http"},
	{name: "envoy.virtual_cluster", prefix: "vhost"},
	{name: "envoy.fault_downstream_cluster", prefix: "http"},
	{name: "envoy.ssl_cipher", prefix: "listener"},
	{name: "cipher_suite", prefix: "cluster"},
	{name: "envoy.grpc_bridge_service", prefix: "cluster"},
	{name: "envoy.tcp_prefix", prefix: "tcp"},
	{name: "envoy.udp_prefix", prefix: "udp"},
	{name: "envoy.clientssl_prefix", prefix: "auth"},
	{name: "envoy.ratelimit_prefix", prefix: "ratelimit"},
	{name: "envoy.cluster_name", prefix: "cluster"},
	{name: "envoy.http_conn_manager_prefix", prefix: "listener"},
	{name: "envoy.http_conn_manager_prefix", prefix: "http"},
	{name: "envoy.worker_id"}, // ^(?:listener\..|server\.|listener_manager\.)worker_
	{name: "envoy.listener_address", prefix: "listener"},
	{name: "envoy.virtual_host", prefix: "vhost"},
	{name: "envoy.mongo_prefix", prefix: "mongo"},
	{name: "envoy.rds_route_config", prefix: "http"},
	{name: "envoy.route", prefix: "vhost"},
	{name: "envoy.thrift_prefix", prefix: "thrift"},
	{name: "envoy.redis_prefix", prefix: "redis"},
	{name: "envoy.local_http_ratelimit_prefix", tokens: "$.http_local_rate_limit.**"},
	{name: "envoy.local_network_ratelimit_prefix", prefix: "local_rate_limit"},
}

// newDefault builds a default extractor.
func newDefault(d defaultExtractor) *extractor {
	e := &extractor{name: d.name, prefix: d.prefix, substr: d.substr}
	switch {
	case d.regex != "":
		e.re, e.re2 = regexp.MustCompile(d.regex), true
		e.prefix = regexPrefix(d.regex)
	case d.tokens != "":
		e.tokens = strings.Split(d.tokens, ".")
		if t := e.tokens[0]; t != "$" && t != "*" && t != "**" {
			e.prefix = t
		}
	default:
		if e.prefix == "" {
			// Anchored to another first token: give it one that no
			// name has, so that it never runs.
			e.prefix = "\x00"
		}
	}
	return e
}

// Check checks the tag extraction configuration as the proxy would build
// it; its errors name the fields under field (the proxy's format:
// "stats"; an Envoy bootstrap: "stats_config").
func (c *Stats) Check(field string) error {
	_, err := newTagProducer(c, field)
	return err
}

// newTagProducer is Envoy's TagProducerImpl constructor; its errors name
// the field (<field>.stats_tags[i]...). A nil config gets the defaults.
func newTagProducer(c *Stats, field string) (*tagProducer, error) {
	tp := &tagProducer{byPrefix: map[string][]*extractor{}}
	byName := map[string]*extractor{}
	add := func(e *extractor) {
		if other, ok := byName[e.name]; ok {
			other.dup, e.dup = true, true
		} else {
			byName[e.name] = e
		}
		if e.prefix == "" {
			tp.withoutPrefix = append(tp.withoutPrefix, e)
		} else {
			tp.byPrefix[e.prefix] = append(tp.byPrefix[e.prefix], e)
		}
	}
	if c == nil || c.UseAllDefaultTags == nil || *c.UseAllDefaultTags {
		for _, d := range defaultExtractors {
			add(newDefault(d))
		}
	}
	if c == nil {
		return tp, nil
	}
	var errs []error
	for i, t := range c.StatsTags {
		f := fmt.Sprintf("%s.stats_tags[%d]", field, i)
		switch {
		case t.TagName == "":
			// Envoy's createTagExtractor: "tag_name cannot be empty".
			errs = append(errs, fmt.Errorf("%s.tag_name: missing", f))
		case t.FixedValue != nil && t.Regex != "":
			errs = append(errs, fmt.Errorf("%s: regex and fixed_value: want one (Envoy's tag_value is a oneof)", f))
		case t.FixedValue != nil:
			v := *t.FixedValue
			// TagExtractorFixedImpl's base takes the value as its regex,
			// so a value like "^word\.x" gets a prefix token, as in Envoy.
			add(&extractor{name: t.TagName, fixed: &v, prefix: regexPrefix(v)})
		case t.Regex == "":
			n := 0
			for _, d := range defaultExtractors {
				if d.name == t.TagName {
					add(newDefault(d))
					n++
				}
			}
			if n == 0 {
				errs = append(errs, fmt.Errorf("%s: no regex specified for tag specifier and no default regex for name: %q", f, t.TagName))
			}
		default:
			re, err := compileTagRegex(t.Regex)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.regex: %q: %v", f, t.Regex, err))
				continue
			}
			add(&extractor{name: t.TagName, re: re, prefix: regexPrefix(t.Regex)})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return tp, nil
}

// compileTagRegex compiles a stats_tags regex. Envoy compiles it as
// ECMAScript (std::regex); Go's RE2 refuses ECMAScript's lookaheads and
// backreferences itself, and RE2's own group syntax ((?i), (?P<name>...),
// (?<name>...)), which Envoy would refuse, is refused here: only (?:...)
// may follow "(?".
func compileTagRegex(s string) (*regexp.Regexp, error) {
	inClass := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			i++
		case inClass:
			inClass = c != ']'
		case c == '[':
			inClass = true
			if i+1 < len(s) && s[i+1] == ']' {
				i++
			}
		case c == '(' && i+1 < len(s) && s[i+1] == '?' && (i+2 >= len(s) || s[i+2] != ':'):
			return nil, fmt.Errorf("%q at offset %d: only (?:...) groups: flags, named groups, lookarounds are %s", s[i:min(len(s), i+3)], i, "not supported by anywasm")
		}
	}
	return regexp.Compile(s)
}

// regexPrefix is Envoy's TagExtractorImplBase::extractRegexPrefix: for a
// regex "^word\." (or "^word(?=\.)", or the whole regex "^word$"), word.
func regexPrefix(re string) string {
	if !strings.HasPrefix(re, "^") {
		return ""
	}
	for i := 1; i < len(re); i++ {
		c := re[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' {
			continue
		}
		if i > 1 {
			last := i == len(re)-1
			rest := re[i:]
			if !last && (strings.HasPrefix(rest, `\.`) || strings.HasPrefix(rest, `(?=\.)`)) || last && c == '$' {
				return re[1:i]
			}
		}
		return ""
	}
	return ""
}

// interval is a half-open range of a name's bytes to remove.
type interval struct{ start, end int }

// produce is Envoy's TagProducerImpl::produceTags: the tag-extracted name
// and the tags, in extraction order.
func (tp *tagProducer) produce(name string) (string, []tag) {
	var (
		tags    []tag
		remove  []interval
		dupSeen map[string]bool
		tokens  []string
	)
	run := func(e *extractor) {
		if e.dup && dupSeen[e.name] {
			return
		}
		ok := false
		switch {
		case e.fixed != nil:
			tags = append(tags, tag{e.name, *e.fixed})
			ok = true
		case e.re != nil:
			if e.substr != "" && !strings.Contains(name, e.substr) {
				return
			}
			ok = e.extractRegex(name, &tags, &remove)
		case e.tokens != nil:
			if tokens == nil {
				tokens = strings.Split(name, ".")
			}
			ok = e.extractTokens(tokens, &tags, &remove)
		}
		if ok && e.dup {
			if dupSeen == nil {
				dupSeen = map[string]bool{}
			}
			dupSeen[e.name] = true
		}
	}
	for _, e := range tp.withoutPrefix {
		run(e)
	}
	if dot := strings.IndexByte(name, '.'); dot >= 0 {
		for _, e := range tp.byPrefix[name[:dot]] {
			run(e)
		}
	}
	if len(remove) == 0 {
		return name, tags
	}
	// StringUtil::removeCharacters over the union of the intervals.
	slices.SortFunc(remove, func(a, b interval) int { return a.start - b.start })
	var b strings.Builder
	pos := 0
	for _, iv := range remove {
		if iv.start > pos {
			b.WriteString(name[pos:iv.start])
		}
		pos = max(pos, iv.end)
	}
	if pos < len(name) {
		b.WriteString(name[pos:])
	}
	return b.String(), tags
}

// extractRegex is TagExtractorStdRegexImpl::extractTag (stats_tags:
// std::regex_search, a match with at least one group: the first group is
// removed, the value is the second group if the regex has one, else the
// first) and TagExtractorRe2Impl::extractTag (defaults: RE2::PartialMatch
// with a non-empty first group; an empty second group takes the first's
// value; a value equal to the negative match does not count).
func (e *extractor) extractRegex(name string, tags *[]tag, remove *[]interval) bool {
	if e.re.NumSubexp() < 1 {
		return false
	}
	m := e.re.FindStringSubmatchIndex(name)
	if m == nil {
		return false
	}
	rs, re := m[2], m[3]
	vs, ve := rs, re
	if e.re.NumSubexp() > 1 {
		vs, ve = m[4], m[5]
	}
	group := func(s, e int) string {
		if s < 0 {
			return "" // a group that took no part in the match
		}
		return name[s:e]
	}
	value := group(vs, ve)
	if e.re2 {
		if group(rs, re) == "" {
			return false
		}
		if value == "" {
			value = group(rs, re)
		}
		if e.negative != "" && value == e.negative {
			return false
		}
	}
	*tags = append(*tags, tag{e.name, value})
	if rs >= 0 {
		*remove = append(*remove, interval{rs, re})
	}
	return true
}

// extractTokens is TagExtractorTokensImpl::extractTag: the pattern's
// tokens ("$" the value, "*" any one token, "**" any number) against the
// name's; the value's token is removed with the dot after it, or, for the
// last token, the dot before it.
func (e *extractor) extractTokens(input []string, tags *[]tag, remove *[]interval) bool {
	match := slices.Index(e.tokens, "$")
	start, at := 0, len(input)
	if match < 0 || !e.searchTokens(input, 0, 0, 0, match, &start, &at) {
		return false
	}
	value := input[at]
	end := start + len(value)
	if at < len(input)-1 {
		end++
	} else if start > 0 {
		start--
	}
	*tags = append(*tags, tag{e.name, value})
	*remove = append(*remove, interval{start, end})
	return true
}

// searchTokens is TagExtractorTokensImpl::searchTags.
func (e *extractor) searchTokens(input []string, in, pat, char, match int, start, at *int) bool {
	for ; in < len(input) && pat < len(e.tokens); in, pat = in+1, pat+1 {
		if pat == match {
			*start, *at = char, in
			continue
		}
		want := e.tokens[pat]
		if want == "**" {
			if pat == len(e.tokens)-1 {
				return true
			}
			pat++
			for ; in < len(input); in++ {
				if e.searchTokens(input, in, pat, char, match, start, at) {
					return true
				}
				char += len(input[in]) + 1
			}
			return false
		}
		if want != "*" && want != input[in] {
			return false
		}
		char += len(input[in]) + 1
	}
	return pat == len(e.tokens) && in == len(input)
}
