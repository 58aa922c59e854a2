package proxy

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// request is a request as the server gives it to the router: its
// header map holds canonical keys, Host is out of it.
func request(method, target string, hdr ...string) *http.Request {
	u, _ := url.ParseRequestURI(target)
	r := &http.Request{Method: method, URL: u, RequestURI: target, Host: "example.com", Header: http.Header{}}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	return r
}

func compileYAML(t *testing.T, match string) *routeMatcher {
	t.Helper()
	var m RouteMatch
	if err := yaml.UnmarshalStrict([]byte(match), &m); err != nil {
		t.Fatalf("%s: %v", match, err)
	}
	var errs []string
	rm := compileRouteMatch(func(f, format string, args ...any) { errs = append(errs, f+": "+fmt.Sprintf(format, args...)) }, "match", &m)
	if len(errs) > 0 {
		t.Fatalf("%s: %s", match, strings.Join(errs, "; "))
	}
	return rm
}

// TestHeaderMatch: each of Envoy's header matchers (HeaderUtility,
// HeaderDataBaseImpl::matchesHeaders), inverted, on a missing header
// (treated as empty or not), on a header given several times (joined with
// ","), on the pseudo-headers.
func TestHeaderMatch(t *testing.T) {
	for _, c := range []struct {
		name    string
		matcher string // one HeaderMatcher
		hdr     []string
		want    bool
	}{
		{"exact", `{name: x-a, exact_match: one}`, []string{"X-A", "one"}, true},
		{"exact other", `{name: x-a, exact_match: one}`, []string{"X-A", "two"}, false},
		{"exact case of the value", `{name: x-a, exact_match: one}`, []string{"X-A", "ONE"}, false},
		{"name case-insensitive", `{name: X-a, exact_match: one}`, []string{"x-a", "one"}, true},
		{"exact empty takes any value", `{name: x-a, exact_match: ""}`, []string{"X-A", "whatever"}, true},
		{"exact empty, missing", `{name: x-a, exact_match: ""}`, nil, false},
		{"prefix", `{name: x-a, prefix_match: ab}`, []string{"X-A", "abc"}, true},
		{"prefix no", `{name: x-a, prefix_match: ab}`, []string{"X-A", "cab"}, false},
		{"suffix", `{name: x-a, suffix_match: bc}`, []string{"X-A", "abc"}, true},
		{"suffix no", `{name: x-a, suffix_match: bc}`, []string{"X-A", "bca"}, false},
		{"contains", `{name: x-a, contains_match: b}`, []string{"X-A", "abc"}, true},
		{"contains no", `{name: x-a, contains_match: z}`, []string{"X-A", "abc"}, false},
		{"regex full match", `{name: x-a, safe_regex_match: {regex: "\\d{3}"}}`, []string{"X-A", "123"}, true},
		{"regex is not a search", `{name: x-a, safe_regex_match: {regex: "\\d{3}"}}`, []string{"X-A", "1234"}, false},
		{"regex inverted", `{name: x-a, safe_regex_match: {regex: "\\d{3}"}, invert_match: true}`, []string{"X-A", "1234"}, true},
		{"range in", `{name: x-a, range_match: {start: -10, end: 0}}`, []string{"X-A", "-1"}, true},
		{"range end is open", `{name: x-a, range_match: {start: -10, end: 0}}`, []string{"X-A", "0"}, false},
		{"range inverted", `{name: x-a, range_match: {start: -10, end: 0}, invert_match: true}`, []string{"X-A", "-1"}, false},
		{"range not a number", `{name: x-a, range_match: {start: 0, end: 10}}`, []string{"X-A", "5a"}, false},
		{"present", `{name: x-a, present_match: true}`, []string{"X-A", ""}, true},
		{"present, missing", `{name: x-a, present_match: true}`, nil, false},
		{"present false, missing", `{name: x-a, present_match: false}`, nil, true},
		{"present false, there", `{name: x-a, present_match: false}`, []string{"X-A", "1"}, false},
		{"present inverted, missing", `{name: x-a, present_match: true, invert_match: true}`, nil, true},
		{"present false inverted, missing", `{name: x-a, present_match: false, invert_match: true}`, nil, false},
		{"no specifier is present", `{name: x-a}`, []string{"X-A", "v"}, true},
		{"no specifier, missing", `{name: x-a}`, nil, false},
		{"missing does not match", `{name: x-a, exact_match: one}`, nil, false},
		{"missing inverted does not match", `{name: x-a, exact_match: one, invert_match: true}`, nil, false},
		{"missing as empty", `{name: x-a, string_match: {exact: ""}, treat_missing_header_as_empty: true}`, nil, true},
		{"missing as empty, inverted", `{name: x-a, string_match: {exact: one}, invert_match: true, treat_missing_header_as_empty: true}`, nil, true},
		{"missing as empty, range inverted", `{name: x-a, range_match: {start: 0, end: 10}, invert_match: true, treat_missing_header_as_empty: true}`, nil, true},
		{"inverted", `{name: x-a, exact_match: one, invert_match: true}`, []string{"X-A", "two"}, true},
		{"string exact", `{name: x-a, string_match: {exact: One}}`, []string{"X-A", "One"}, true},
		{"string exact ignore_case", `{name: x-a, string_match: {exact: One, ignore_case: true}}`, []string{"X-A", "oNE"}, true},
		{"string prefix ignore_case", `{name: x-a, string_match: {prefix: AB, ignore_case: true}}`, []string{"X-A", "abc"}, true},
		{"string prefix case", `{name: x-a, string_match: {prefix: AB}}`, []string{"X-A", "abc"}, false},
		{"string suffix ignore_case", `{name: x-a, string_match: {suffix: BC, ignore_case: true}}`, []string{"X-A", "abc"}, true},
		{"string contains ignore_case", `{name: x-a, string_match: {contains: B, ignore_case: true}}`, []string{"X-A", "abc"}, true},
		{"string contains ignore_case no", `{name: x-a, string_match: {contains: Z, ignore_case: true}}`, []string{"X-A", "abc"}, false},
		{"string regex", `{name: x-a, string_match: {safe_regex: {regex: "a.c"}}}`, []string{"X-A", "abc"}, true},
		{"ignore_case is ASCII only", `{name: x-a, string_match: {exact: "é", ignore_case: true}}`, []string{"X-A", "É"}, false},
		{"several values joined", `{name: x-a, exact_match: "one,two"}`, []string{"X-A", "one", "X-A", "two"}, true},
		{"several values, one of them", `{name: x-a, exact_match: one}`, []string{"X-A", "one", "X-A", "two"}, false},
		{"several values, regex over the join", `{name: x-a, safe_regex_match: {regex: "[a-z]+,[a-z]+"}}`, []string{"X-A", "one", "X-A", "two"}, true},
		{":method", `{name: ":method", exact_match: POST}`, nil, true},
		{":method no", `{name: ":method", exact_match: GET}`, nil, false},
		{":authority", `{name: ":authority", suffix_match: ".com"}`, nil, true},
		{":path has the query", `{name: ":path", exact_match: "/p/q?x=1"}`, nil, true},
		{":scheme", `{name: ":scheme", exact_match: http}`, nil, true},
		{"an unknown pseudo-header is missing", `{name: ":status", present_match: false}`, nil, true},
		{"host is :authority, not a header", `{name: host, present_match: true}`, nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			rm := compileYAML(t, `{prefix: /, headers: [`+c.matcher+`]}`)
			r := request("POST", "/p/q?x=1", c.hdr...)
			if got := rm.match(r, r.URL.Path); got != c.want {
				t.Errorf("%s on %q: %v, want %v", c.matcher, c.hdr, got, c.want)
			}
		})
	}
	t.Run(":scheme https", func(t *testing.T) {
		rm := compileYAML(t, `{prefix: /, headers: [{name: ":scheme", exact_match: https}]}`)
		r := request("GET", "/")
		r.TLS = &tls.ConnectionState{}
		if !rm.match(r, "/") {
			t.Error("no match")
		}
	})
	t.Run("every header must match", func(t *testing.T) {
		rm := compileYAML(t, `{prefix: /, headers: [{name: x-a, exact_match: "1"}, {name: x-b, exact_match: "2"}]}`)
		if r := request("GET", "/", "X-A", "1", "X-B", "2"); !rm.match(r, "/") {
			t.Error("both: no match")
		}
		if r := request("GET", "/", "X-A", "1", "X-B", "3"); rm.match(r, "/") {
			t.Error("one of two: a match")
		}
	})
}

// TestPathAndQueryMatch: prefix and path with case_sensitive, safe_regex
// over the path without its query, query parameters (Envoy's
// QueryParameterMatcher: the first value, decoded; present_match).
func TestPathAndQueryMatch(t *testing.T) {
	for _, c := range []struct {
		match, target string
		want          bool
	}{
		{`{prefix: /API}`, "/api/x", false},
		{`{prefix: /API, case_sensitive: false}`, "/api/x", true},
		{`{prefix: /API, case_sensitive: true}`, "/API/x", true},
		{`{path: /Exact, case_sensitive: false}`, "/exact", true},
		{`{path: /Exact}`, "/exact", false},
		{`{path: /exact}`, "/exact?q=1", true},
		{`{safe_regex: {regex: "/v[0-9]+/.*"}}`, "/v2/items", true},
		{`{safe_regex: {regex: "/v[0-9]+/.*"}}`, "/x/v2/items", false},
		{`{safe_regex: {regex: "/v[0-9]+"}}`, "/v2?a=b", true},
		{`{prefix: /, query_parameters: [{name: debug}]}`, "/?debug", true},
		{`{prefix: /, query_parameters: [{name: debug}]}`, "/?other=1", false},
		{`{prefix: /, query_parameters: [{name: debug, present_match: true}]}`, "/?debug=0", true},
		{`{prefix: /, query_parameters: [{name: debug, present_match: false}]}`, "/?other=1", true},
		{`{prefix: /, query_parameters: [{name: debug, present_match: false}]}`, "/?debug=1", false},
		{`{prefix: /, query_parameters: [{name: v, string_match: {exact: "a b"}}]}`, "/?v=a%20b", true},
		{`{prefix: /, query_parameters: [{name: v, string_match: {exact: "1"}}]}`, "/?v=1&v=2", true},
		{`{prefix: /, query_parameters: [{name: v, string_match: {exact: "2"}}]}`, "/?v=1&v=2", false},
		{`{prefix: /, query_parameters: [{name: v, string_match: {prefix: A, ignore_case: true}}]}`, "/?v=abc", true},
	} {
		rm := compileYAML(t, c.match)
		r := request("GET", c.target)
		if got := rm.match(r, r.URL.Path); got != c.want {
			t.Errorf("%s on %s: %v, want %v", c.match, c.target, got, c.want)
		}
	}
}

// TestMatchAllocates: matching headers (each of one value), the path and
// pseudo-headers allocates nothing.
func TestMatchAllocates(t *testing.T) {
	rm := compileYAML(t, `{prefix: /API, case_sensitive: false, headers: [
		{name: x-a, exact_match: one}, {name: x-b, string_match: {contains: B, ignore_case: true}},
		{name: x-c, safe_regex_match: {regex: "[0-9]+"}}, {name: ":method", exact_match: GET},
		{name: ":path", prefix_match: /api}, {name: x-missing, present_match: false},
		{name: x-d, range_match: {start: 0, end: 100}}]}`)
	r := request("GET", "/api/x", "X-A", "one", "X-B", "abc", "X-C", "123", "X-D", "42")
	if !rm.match(r, r.URL.Path) {
		t.Fatal("no match")
	}
	if n := testing.AllocsPerRun(100, func() { rm.match(r, r.URL.Path) }); n != 0 {
		t.Errorf("%v allocations per match", n)
	}
}
