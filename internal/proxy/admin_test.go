package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/anywasm/anywasm/internal/testlog"
)

// clashing is a collector that sends go_goroutines with another help text
// and a value that changes on every Collect, and an invalid metric: what
// the registry refuses to gather.
type clashing struct{ n float64 }

func (c *clashing) Describe(chan<- *prometheus.Desc) {}

func (c *clashing) Collect(ch chan<- prometheus.Metric) {
	c.n++
	ch <- prometheus.MustNewConstMetric(prometheus.NewDesc("go_goroutines", "Not Go's.", nil, nil), prometheus.GaugeValue, c.n)
	d := prometheus.NewDesc("bad_metric", "Refused.", nil, nil)
	ch <- prometheus.NewInvalidMetric(d, errorString("bad_metric: refused"))
}

// TestMetricsContinueOnError: a family /metrics cannot gather is left out
// and the rest is served (200); each distinct error is logged once, not on
// every scrape, even though the value it quotes changes.
func TestMetricsContinueOnError(t *testing.T) {
	log, sink := testlog.Logger()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), &clashing{})
	p := &Proxy{cfg: &Config{}, log: log, reg: reg}
	srv := httptest.NewServer(p.adminHandler())
	defer srv.Close()
	for range 5 {
		resp, err := http.Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "\ngo_gc_duration_seconds_count ") {
			t.Fatalf("%d:\n%s", resp.StatusCode, body)
		}
	}
	if n := sink.Count("error gathering metrics (logged once)"); n != 2 || sink.Count("go_goroutines") != 1 || sink.Count("bad_metric") != 1 {
		t.Errorf("%d errors logged, want 2 (one per cause):\n%s", n, sink)
	}
}

// TestOnceLogBound: onceLog remembers at most onceLogMax errors, then says
// it logs no more.
func TestOnceLogBound(t *testing.T) {
	log, sink := testlog.Logger()
	l := &onceLog{log: log}
	for i := range onceLogMax + 10 {
		l.Println("error gathering metrics:", prometheus.MultiError{errorString(strings.Repeat("x", i)), errorString("same 1")})
		l.Println("error gathering metrics:", errorString("same 2"))
	}
	if n, full := sink.Count("(logged once)"), sink.Count("further distinct errors are not logged"); n != onceLogMax || full != 1 || len(l.seen) != onceLogMax {
		t.Errorf("%d logged, %d 'no more', %d remembered", n, full, len(l.seen))
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

func TestCause(t *testing.T) {
	for _, c := range []struct{ err, want string }{
		{`collected metric go_goroutines gauge:{value:17} has help "A." but should have "B."`, "family go_goroutines"},
		{`collected metric "x_total" { label:{name:"runtime" value:"wazero"} counter:{value:3}} was collected before with the same name and label values`, "family x_total"},
		{`gathered metric family a:b has type counter but should have gauge`, "family a:b"},
		{`error collecting metric Desc{fqName: "bad_metric", help: "Refused."}: refused`, "family bad_metric"},
		{`write tcp 127.0.0.1:9901->127.0.0.1:40312: broken pipe`, "write tcp #.#:#->#.#:#: broken pipe"},
	} {
		if got := cause(errorString(c.err)); got != c.want {
			t.Errorf("cause(%q) = %q, want %q", c.err, got, c.want)
		}
	}
}
