package proxy

import (
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// badFunc reports a configuration error at a field.
type badFunc = func(field, format string, args ...any)

// routeMatcher is a route's match, compiled when the configuration loads:
// Envoy's RouteEntryImplBase::matchRoute for the subset (the path, then
// every header, then every query parameter).
type routeMatcher struct {
	path    pathMatcher
	headers []headerMatcher
	query   []queryMatcher
}

type pathKind uint8

const (
	pathPrefix pathKind = iota
	pathExact
	pathRegex
)

type pathMatcher struct {
	kind       pathKind
	value      string
	ignoreCase bool // !case_sensitive
	re         *regexp.Regexp
}

// stringKind is the kind of a header's or query parameter's matcher.
type stringKind uint8

const (
	matchExact stringKind = iota
	matchPrefix
	matchSuffix
	matchContains
	matchRegex
	matchRange
	matchPresent
	matchAny // the deprecated exact_match "": any value
)

// stringMatcher is Envoy's StringMatcherImpl (and the deprecated header
// forms, which are the same comparisons).
type stringMatcher struct {
	kind       stringKind
	value      string
	ignoreCase bool
	re         *regexp.Regexp
	start, end int64 // matchRange: [start, end)
	present    bool  // matchPresent
}

// pseudo-headers a header matcher can name: the request's.
const (
	pseudoNone uint8 = iota
	pseudoAuthority
	pseudoMethod
	pseudoPath
	pseudoScheme
	pseudoOther // any other ":name": never present on a request
)

// headerMatcher is Envoy's HeaderUtility::HeaderData (HeaderDataBaseImpl
// and its subclasses).
type headerMatcher struct {
	key            string // canonical (http.Header's key)
	pseudo         uint8
	m              stringMatcher
	invert         bool
	missingAsEmpty bool
}

type queryMatcher struct {
	name    string
	m       *stringMatcher // nil: present match
	present *bool
}

// compileRegex compiles an RE2 expression that must match a whole value
// (Envoy's CompiledGoogleReMatcher::match is RE2::FullMatch).
func compileRegex(bad badFunc, f string, r *RegexMatcher) *regexp.Regexp {
	re, err := regexp.Compile(`^(?:` + r.Regex + `)$`)
	if err != nil {
		bad(f+".regex", "%q: %v", r.Regex, err)
		return nil
	}
	return re
}

// compileRouteMatch compiles a route's match; what is wrong with it is
// reported to bad, field by field (f is the match's field).
func compileRouteMatch(bad badFunc, f string, m *RouteMatch) *routeMatcher {
	rm := &routeMatcher{}
	n := 0
	if m.Prefix != "" {
		n++
		rm.path = pathMatcher{kind: pathPrefix, value: m.Prefix}
	}
	if m.Path != "" {
		n++
		rm.path = pathMatcher{kind: pathExact, value: m.Path}
	}
	if m.SafeRegex != nil {
		n++
		rm.path = pathMatcher{kind: pathRegex, re: compileRegex(bad, f+".safe_regex", m.SafeRegex)}
	}
	switch {
	case n > 1:
		bad(f, "more than one of prefix, path and safe_regex: give one")
	case n == 0:
		bad(f, "none of prefix, path and safe_regex (prefix \"/\" takes every path)")
	case rm.path.kind != pathRegex && !strings.HasPrefix(rm.path.value, "/"):
		bad(f, "%q: a path starts with /", rm.path.value)
	}
	if m.CaseSensitive != nil && !*m.CaseSensitive {
		rm.path.ignoreCase = true
	}
	for i := range m.Headers {
		rm.headers = append(rm.headers, compileHeader(bad, fmt.Sprintf("%s.headers[%d]", f, i), &m.Headers[i]))
	}
	for i := range m.QueryParameters {
		q := &m.QueryParameters[i]
		qf := fmt.Sprintf("%s.query_parameters[%d]", f, i)
		if q.Name == "" {
			bad(qf+".name", "missing")
		}
		qm := queryMatcher{name: q.Name, present: q.PresentMatch}
		switch {
		case q.StringMatch != nil && q.PresentMatch != nil:
			bad(qf, "both string_match and present_match: give one")
		case q.StringMatch != nil:
			s := compileString(bad, qf+".string_match", q.StringMatch)
			qm.m = &s
		}
		rm.query = append(rm.query, qm)
	}
	return rm
}

func compileString(bad badFunc, f string, s *StringMatcher) stringMatcher {
	var out stringMatcher
	n := 0
	set := func(k stringKind, v *string, name string) {
		if v == nil {
			return
		}
		n++
		out.kind, out.value = k, *v
		// Envoy's validation: prefix, suffix and contains are not empty.
		if *v == "" && k != matchExact {
			bad(f+"."+name, "empty")
		}
	}
	set(matchExact, s.Exact, "exact")
	set(matchPrefix, s.Prefix, "prefix")
	set(matchSuffix, s.Suffix, "suffix")
	set(matchContains, s.Contains, "contains")
	if s.SafeRegex != nil {
		n++
		out.kind, out.re = matchRegex, compileRegex(bad, f+".safe_regex", s.SafeRegex)
	}
	if n != 1 {
		bad(f, "want one of exact, prefix, suffix, contains and safe_regex")
	}
	out.ignoreCase = s.IgnoreCase && out.kind != matchRegex
	return out
}

func compileHeader(bad badFunc, f string, h *HeaderMatcher) headerMatcher {
	hm := headerMatcher{invert: h.InvertMatch, missingAsEmpty: h.TreatMissingHeaderAsEmpty}
	name := strings.ToLower(h.Name)
	switch {
	case name == "":
		bad(f+".name", "missing")
	case name == ":authority":
		hm.pseudo = pseudoAuthority
	case name == ":method":
		hm.pseudo = pseudoMethod
	case name == ":path":
		hm.pseudo = pseudoPath
	case name == ":scheme":
		hm.pseudo = pseudoScheme
	case name[0] == ':':
		hm.pseudo = pseudoOther
	default:
		hm.key = textproto.CanonicalMIMEHeaderKey(name)
	}
	n := 0
	str := func(k stringKind, v *string) {
		if v != nil {
			n++
			hm.m = stringMatcher{kind: k, value: *v}
		}
	}
	str(matchExact, h.ExactMatch)
	if h.ExactMatch != nil && *h.ExactMatch == "" {
		hm.m.kind = matchAny // HeaderDataExactMatch: an empty value takes any
	}
	str(matchPrefix, h.PrefixMatch)
	str(matchSuffix, h.SuffixMatch)
	str(matchContains, h.ContainsMatch)
	if h.SafeRegexMatch != nil {
		n++
		hm.m = stringMatcher{kind: matchRegex, re: compileRegex(bad, f+".safe_regex_match", h.SafeRegexMatch)}
	}
	if r := h.RangeMatch; r != nil {
		n++
		hm.m = stringMatcher{kind: matchRange, start: r.Start, end: r.End}
		if r.Start >= r.End {
			bad(f+".range_match", "[%d, %d) is empty", r.Start, r.End)
		}
	}
	if h.PresentMatch != nil {
		n++
		hm.m = stringMatcher{kind: matchPresent, present: *h.PresentMatch}
	}
	if h.StringMatch != nil {
		n++
		hm.m = compileString(bad, f+".string_match", h.StringMatch)
	}
	switch {
	case n > 1:
		bad(f, "more than one of exact_match, prefix_match, suffix_match, contains_match, safe_regex_match, range_match, present_match and string_match: give one")
	case n == 0:
		// Envoy's HeaderData: no specifier is a present match.
		hm.m = stringMatcher{kind: matchPresent, present: true}
	}
	return hm
}

// match reports whether a request takes the route; path is the request's
// path without its query.
func (rm *routeMatcher) match(r *http.Request, path string) bool {
	if !rm.path.match(path) {
		return false
	}
	for i := range rm.headers {
		if !rm.headers[i].match(r) {
			return false
		}
	}
	if len(rm.query) > 0 {
		// Envoy's QueryParamsMulti::parseAndDecodeQueryString; only for a
		// route that has query parameter matchers.
		q, _ := url.ParseQuery(r.URL.RawQuery)
		for i := range rm.query {
			if !rm.query[i].match(q) {
				return false
			}
		}
	}
	return true
}

// match is Envoy's PrefixRouteEntryImpl, PathRouteEntryImpl and
// RegexRouteEntryImpl matching (case_sensitive for the first two).
func (p *pathMatcher) match(path string) bool {
	switch p.kind {
	case pathPrefix:
		if p.ignoreCase {
			return len(path) >= len(p.value) && equalFoldASCII(path[:len(p.value)], p.value)
		}
		return strings.HasPrefix(path, p.value)
	case pathExact:
		if p.ignoreCase {
			return equalFoldASCII(path, p.value)
		}
		return path == p.value
	case pathRegex:
		return p.re != nil && p.re.MatchString(path)
	}
	return false
}

// value is the header the matcher names, as Envoy's
// HeaderUtility::getAllOfHeaderAsString gives it: its values joined with
// "," (the only case that allocates), false when it is not there.
func (h *headerMatcher) value(r *http.Request) (string, bool) {
	switch h.pseudo {
	case pseudoAuthority:
		return r.Host, true
	case pseudoMethod:
		return r.Method, true
	case pseudoPath:
		// As abi/nethttp gives plugins :path.
		if r.RequestURI != "" && r.URL.Scheme == "" {
			return r.RequestURI, true
		}
		return r.URL.RequestURI(), true
	case pseudoScheme:
		if r.TLS != nil {
			return "https", true
		}
		return "http", true
	case pseudoOther:
		return "", false
	}
	vs := r.Header[h.key]
	switch len(vs) {
	case 0:
		return "", false
	case 1:
		return vs[0], true
	}
	return strings.Join(vs, ","), true
}

// match is Envoy's HeaderDataBaseImpl::matchesHeaders: a missing header
// does not match (inverted or not) unless treat_missing_header_as_empty;
// a present match compares presence (HeaderDataPresentMatch), inverted by
// invert_match.
func (h *headerMatcher) match(r *http.Request) bool {
	v, ok := h.value(r)
	if h.m.kind == matchPresent {
		return (ok == h.m.present) != h.invert
	}
	if !ok && !h.missingAsEmpty {
		return false
	}
	return h.m.match(v) != h.invert
}

// match is Envoy's QueryParameterMatcher::matches: the first value of the
// parameter; present_match compares presence.
func (q *queryMatcher) match(params url.Values) bool {
	vs, ok := params[q.name]
	if q.present != nil {
		return ok == *q.present
	}
	if !ok {
		return false
	}
	return q.m == nil || q.m.match(vs[0])
}

// match is Envoy's StringMatcherImpl::match, and the header forms (a
// range parses as Envoy's absl::SimpleAtoi, which allows surrounding white
// space).
func (s *stringMatcher) match(v string) bool {
	switch s.kind {
	case matchExact:
		if s.ignoreCase {
			return equalFoldASCII(v, s.value)
		}
		return v == s.value
	case matchPrefix:
		if s.ignoreCase {
			return len(v) >= len(s.value) && equalFoldASCII(v[:len(s.value)], s.value)
		}
		return strings.HasPrefix(v, s.value)
	case matchSuffix:
		if s.ignoreCase {
			return len(v) >= len(s.value) && equalFoldASCII(v[len(v)-len(s.value):], s.value)
		}
		return strings.HasSuffix(v, s.value)
	case matchContains:
		if s.ignoreCase {
			for i := 0; i+len(s.value) <= len(v); i++ {
				if equalFoldASCII(v[i:i+len(s.value)], s.value) {
					return true
				}
			}
			return false
		}
		return strings.Contains(v, s.value)
	case matchRegex:
		return s.re != nil && s.re.MatchString(v)
	case matchRange:
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		return err == nil && n >= s.start && n < s.end
	case matchPresent:
		return s.present
	case matchAny:
		return true
	}
	return false
}

// equalFoldASCII is absl::EqualsIgnoreCase: ASCII letters only.
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
