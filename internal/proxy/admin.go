package proxy

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// adminHandler serves /healthz (200 "ok", 503 "draining" during
// shutdown), /metrics (Prometheus text format: the plugins' metrics with a
// runtime label, the proxy's own, Go's and the process's), /plugins
// (JSON: the loaded plugins) and, when admin.pprof is set, Go's profiles
// under /debug/pprof/.
func (p *Proxy) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if p.draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.reg, promhttp.HandlerOpts{ErrorLog: slogPrinter{p}}))
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
	if p.cfg.Admin.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

type slogPrinter struct{ p *Proxy }

func (s slogPrinter) Println(v ...any) { s.p.log.Warn("metrics", "err", v) }

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
			Help: "Plugin file reloads, by plugin and result (ok, failed)."}, []string{"plugin", "result"}),
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
