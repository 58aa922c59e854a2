// Command compute is an HTTP filter that does real work on request bodies,
// so that a benchmark of it measures the code a runtime generates rather
// than the cost of its hostcalls. Its plugin configuration picks the work:
//
//   - json: validates the whole body as JSON and decodes it with
//     encoding/json into a list of items (what an API gateway's validation
//     filter does), answering 400 when it cannot;
//   - rules: matches a rule set of 50 rules (case-insensitive substrings,
//     prefixes, byte classes: rules.go) over the whole body and adds up
//     the scores of the rules that match, answering 403 from score 5 on
//     (a web application firewall in anomaly-scoring mode);
//   - none: reads the body and does nothing with it, the baseline that
//     the other two add their work to.
//
// The outcome of the work is in the answer: the response header x-compute
// (or the local response's headers), so a host can check that the work was
// done.
package main

import (
	"encoding/json"
	"errors"
	"math"
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetVMContext(&vmContext{})
}

type vmContext struct{ types.DefaultVMContext }

func (*vmContext) NewPluginContext(uint32) types.PluginContext { return &pluginContext{} }

type pluginContext struct {
	types.DefaultPluginContext
	work string // "json", "rules" or "none"
	// lower is the rules' lower-cased copy of the body, reused across
	// requests (a VM runs one callback at a time).
	lower []byte
}

// OnPluginStart takes the work from the plugin configuration: exactly
// "json", "rules" or "none".
func (p *pluginContext) OnPluginStart(size int) types.OnPluginStartStatus {
	var cfg []byte
	if size > 0 {
		var err error
		if cfg, err = proxywasm.GetPluginConfiguration(); err != nil {
			proxywasm.LogError("compute: read configuration: " + err.Error())
			return types.OnPluginStartStatusFailed
		}
	}
	switch string(cfg) {
	case "json", "rules", "none":
		p.work = string(cfg)
		return types.OnPluginStartStatusOK
	}
	proxywasm.LogError("compute: configuration must be json, rules or none, not " + strconv.Quote(string(cfg)))
	return types.OnPluginStartStatusFailed
}

func (p *pluginContext) NewHttpContext(uint32) types.HttpContext { return &httpContext{p: p} }

type httpContext struct {
	types.DefaultHttpContext
	p *pluginContext
	// summary is the outcome of the work on a body that was let through,
	// added to the response as x-compute.
	summary string
}

// OnHttpRequestBody holds the body until its end, then works on it.
func (h *httpContext) OnHttpRequestBody(bodySize int, endOfStream bool) types.Action {
	if !endOfStream {
		return types.ActionPause
	}
	return h.decide(bodySize)
}

// OnHttpRequestTrailers works on the body it holds: trailers end a body
// whose last chunk had no end_of_stream.
func (h *httpContext) OnHttpRequestTrailers(int) types.Action {
	return h.decide(1 << 30)
}

// OnHttpResponseHeaders reports the outcome of the work.
func (h *httpContext) OnHttpResponseHeaders(int, bool) types.Action {
	if h.summary != "" {
		if err := proxywasm.AddHttpResponseHeader("x-compute", h.summary); err != nil {
			proxywasm.LogError("compute: add x-compute: " + err.Error())
		}
	}
	return types.ActionContinue
}

// decide reads up to size bytes of the body and does the plugin's work on
// them.
func (h *httpContext) decide(size int) types.Action {
	var body []byte
	if size > 0 {
		var err error
		body, err = proxywasm.GetHttpRequestBody(0, size)
		if err != nil && !errors.Is(err, types.ErrorStatusNotFound) {
			proxywasm.LogError("compute: get request body: " + err.Error())
			return types.ActionPause
		}
	}
	switch h.p.work {
	case "json":
		return h.validate(body)
	case "rules":
		return h.match(body)
	}
	h.summary = "bytes=" + strconv.Itoa(len(body))
	return types.ActionContinue
}

// item is one element of the document's items; other fields are ignored.
type item struct {
	ID     int64    `json:"id"`
	Name   string   `json:"name"`
	Price  float64  `json:"price"`
	Tags   []string `json:"tags"`
	Active bool     `json:"active"`
}

type document struct {
	Items []item `json:"items"`
}

// validate decodes body as a document: an error answers 400 with the
// decoder's message in x-compute-error; otherwise the summary counts the
// items and adds up their fields.
func (h *httpContext) validate(body []byte) types.Action {
	var doc document
	if err := json.Unmarshal(body, &doc); err != nil {
		send(400, "invalid json\n", [][2]string{{"x-compute-error", err.Error()}})
		return types.ActionPause
	}
	var ids, cents, names, tags, active int64
	for _, it := range doc.Items {
		ids += it.ID
		cents += int64(math.Round(it.Price * 100))
		names += int64(len(it.Name))
		tags += int64(len(it.Tags))
		if it.Active {
			active++
		}
	}
	h.summary = "items=" + strconv.Itoa(len(doc.Items)) + " ids=" + strconv.FormatInt(ids, 10) +
		" cents=" + strconv.FormatInt(cents, 10) + " names=" + strconv.FormatInt(names, 10) +
		" tags=" + strconv.FormatInt(tags, 10) + " active=" + strconv.FormatInt(active, 10)
	return types.ActionContinue
}

// blockScore is the anomaly score from which a body is refused (the
// OWASP Core Rule Set's default inbound threshold).
const blockScore = 5

// match runs every rule over body: from blockScore on it answers 403, else
// the summary is the score and the rules that matched.
func (h *httpContext) match(body []byte) types.Action {
	h.p.lower = lowerASCII(h.p.lower, body)
	score, ids := 0, ""
	for i := range rules {
		r := &rules[i]
		if r.matches(body, h.p.lower) {
			score += r.score
			if ids != "" {
				ids += ","
			}
			ids += strconv.Itoa(r.id)
		}
	}
	if ids == "" {
		ids = "none"
	}
	result := "score=" + strconv.Itoa(score) + " rules=" + ids
	if score >= blockScore {
		send(403, "blocked by compute\n", [][2]string{{"x-compute", result}})
		return types.ActionPause
	}
	h.summary = result
	return types.ActionContinue
}

func send(status uint32, body string, headers [][2]string) {
	if err := proxywasm.SendHttpResponse(status, headers, []byte(body), -1); err != nil {
		proxywasm.LogError("compute: send response: " + err.Error())
	}
}
