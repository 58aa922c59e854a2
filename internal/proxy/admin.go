package proxy

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/abi/promcollector"
)

// adminHandler serves / (200: the endpoints, one per line, as Envoy's
// admin home page lists its own), /healthz (200 "ok", 503 "draining" during
// shutdown, 503 "warming" while the listeners wait for discovered filters'
// first configuration, as Envoy's /ready answers 503 until its init
// manager is done), /metrics (Prometheus text format: the plugins' metrics with a
// runtime label under admin.plugin_metrics_prefix, the proxy's own, Go's
// and the process's), /plugins (JSON: the loaded plugins), Envoy's
// /listeners,
// /stats/prometheus and /stats for the plugins' metrics (statsrender.go)
// and, when admin.pprof is set, Go's profiles under /debug/pprof/.
func (p *Proxy) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if p.draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		if p.Warming() {
			http.Error(w, "warming", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	// A gathering error (a collision the plugin collector did not foresee,
	// say) leaves out what it concerns and never fails the scrape.
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.reg, promhttp.HandlerOpts{
		ErrorLog: &onceLog{log: p.log}, ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("GET /stats/prometheus", p.statsHandler(writePrometheus))
	mux.HandleFunc("GET /stats", p.statsHandler(writeStatsText))
	// Envoy's /listeners (text form): one "name::address" line per active
	// listener; none while the listeners warm, as Envoy lists its active
	// ones only.
	mux.HandleFunc("GET /listeners", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		if p.Warming() {
			return
		}
		for _, l := range p.cfg.Listeners {
			if a := p.Addr(l.Name); a != nil {
				fmt.Fprintf(w, "%s::%s\n", l.Name, a)
			}
		}
	})
	mux.HandleFunc("GET /plugins", func(w http.ResponseWriter, r *http.Request) {
		var out []map[string]any
		for _, s := range p.slots {
			out = append(out, s.status())
		}
		w.Header().Set("Content-Type", "application/json")
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		_ = e.Encode(out)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		index := "anywasm admin\n/healthz\n/listeners\n/metrics\n/plugins\n/stats\n/stats/prometheus\n"
		if p.cfg.Admin.Pprof {
			index += "/debug/pprof/\n"
		}
		_, _ = w.Write([]byte(index))
	})
	if p.cfg.Admin.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// onceLog is promhttp's error log: it logs each distinct cause once, not
// on every scrape. A cause is the metric family an error names (a
// registry's errors quote the metric, value included, and which of two
// colliding collectors it blames depends on which was collected first),
// else the error's text with its numbers left out. At most onceLogMax
// causes are remembered.
type onceLog struct {
	log  *slog.Logger
	mu   sync.Mutex
	seen map[string]bool
	full bool // seen has onceLogMax errors: log no more
}

const onceLogMax = 256

var (
	digits = regexp.MustCompile(`[0-9]+(\.[0-9]+)?(e[-+]?[0-9]+)?`)
	// family finds the family in client_golang's gathering errors:
	// "collected metric x ...", "collected metric "x" {...} was collected
	// before", "gathered metric family x has ...", "... Desc{fqName: "x", ...".
	family = regexp.MustCompile(`(?:collected metric|gathered metric family) "?([a-zA-Z_:][a-zA-Z0-9_:]*)|fqName: "([^"]*)"`)
)

// cause is what tells errors apart.
func cause(err error) string {
	if m := family.FindStringSubmatch(err.Error()); m != nil {
		return "family " + m[1] + m[2]
	}
	return digits.ReplaceAllString(err.Error(), "#")
}

// Println implements promhttp.Logger: promhttp calls it with what it was
// doing ("error gathering metrics:") and the error, a
// prometheus.MultiError when there are several.
func (l *onceLog) Println(v ...any) {
	var (
		doing []string
		errs  []error
	)
	for _, x := range v {
		switch x := x.(type) {
		case prometheus.MultiError:
			errs = append(errs, x...)
		case error:
			errs = append(errs, x)
		default:
			doing = append(doing, strings.TrimSuffix(fmt.Sprint(x), ":"))
		}
	}
	msg := "metrics: " + strings.Join(doing, " ")
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = map[string]bool{}
	}
	for _, err := range errs {
		key := msg + "\x00" + cause(err)
		switch {
		case l.seen[key] || l.full:
		case len(l.seen) == onceLogMax:
			l.full = true
			l.log.Warn(msg+" (logged once; further distinct errors are not logged)", "err", err)
		default:
			l.seen[key] = true
			l.log.Warn(msg+" (logged once)", "err", err)
		}
	}
}

// hostNamespaces are the name prefixes of the families /metrics exposes
// besides the plugins': a plugin metric that would be named so is left
// out (pluginCollector), and admin.plugin_metrics_prefix may not be in one.
// Whole namespaces rather than today's names, so that a family a new Go
// release adds is covered too.
var hostNamespaces = []struct{ prefix, of string }{
	{"go_", "Go's metrics"},
	{"process_", "the process's metrics"},
	{"anywasm_proxy_", "the proxy's own metrics"},
}

func reservedName(name string) bool {
	for _, ns := range hostNamespaces {
		if strings.HasPrefix(name, ns.prefix) {
			return true
		}
	}
	return false
}

// pluginCollector exposes the plugin metrics of every runtime's host, with
// a runtime label, under admin.plugin_metrics_prefix; what it leaves out
// (see promcollector) is logged once per metric.
func (p *Proxy) pluginCollector() prometheus.Collector {
	var sources []promcollector.Source
	for _, name := range p.runtimeNames() {
		sources = append(sources, promcollector.Source{Metrics: p.hosts[name].Metrics(), Labels: prometheus.Labels{"runtime": name}})
	}
	prefix := p.cfg.Admin.PluginMetricsPrefix
	if prefix == "" {
		prefix = promcollector.DefaultPrefix
	}
	var logged sync.Map // skipKey -> struct{}
	return promcollector.NewSources(sources, promcollector.WithPrefix(prefix), promcollector.WithReserved(reservedName),
		promcollector.WithOnSkip(func(s promcollector.Skip) {
			if _, dup := logged.LoadOrStore(skipKey{s.Name, s.Type, s.Labels["runtime"]}, struct{}{}); dup {
				return
			}
			p.log.Warn("plugin metric not exposed", "metric", s.Name, "type", s.Type.String(), "runtime", s.Labels["runtime"],
				"name", s.Exposed, "reason", s.Reason)
		}))
}

type skipKey struct {
	name    string
	typ     abi.MetricType
	runtime string
}

// proxyMetrics are the proxy's own metrics.
type proxyMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	tcpConns *prometheus.CounterVec
	reloads  *prometheus.CounterVec
}

func newProxyMetrics(reg *prometheus.Registry) *proxyMetrics {
	m := &proxyMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "anywasm_proxy_http_requests_total",
			Help: "HTTP requests answered, by listener and status code."}, []string{"listener", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "anywasm_proxy_http_request_duration_seconds",
			Help: "Time to answer an HTTP request, plugins and upstream included.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)},
			[]string{"listener"}),
		tcpConns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "anywasm_proxy_tcp_connections_total",
			Help: "TCP connections accepted, by listener."}, []string{"listener"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "anywasm_proxy_plugin_reloads_total",
			Help: "Plugin reloads (a changed file, or a discovered filter's update from its control plane), by plugin and result (ok, failed)."}, []string{"plugin", "result"}),
	}
	reg.MustRegister(m.requests, m.duration, m.tcpConns, m.reloads)
	return m
}

// instrument counts a listener's requests by status code.
func (m *proxyMetrics) instrument(listener string, h http.Handler) http.Handler {
	var codes sync.Map // int -> prometheus.Counter, so that a request looks up no label
	dur := m.duration.WithLabelValues(listener)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			dur.Observe(time.Since(start).Seconds())
			code := sw.code
			if code == 0 {
				code = http.StatusOK
			}
			c, ok := codes.Load(code)
			if !ok {
				c, _ = codes.LoadOrStore(code, m.requests.WithLabelValues(listener, strconv.Itoa(code)))
			}
			c.(prometheus.Counter).Inc()
		}()
		h.ServeHTTP(sw, r)
	})
}

// statusWriter records the status code.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
