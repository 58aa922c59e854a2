package proxy

import (
	"net/http"
)

// serverHeader sets the Server header of every response of an HTTP
// listener as Envoy's connection manager does once the response has been
// through the filters (ActiveStream::encodeHeaders, so the listener's own
// plugins never see it, and local replies get it too): OVERWRITE sets it
// to the server name, APPEND_IF_ABSENT only when the response has none,
// PASS_THROUGH leaves it as it is.
type serverHeader struct {
	name, transformation string
	next                 http.Handler
}

func (h *serverHeader) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.next.ServeHTTP(&serverWriter{ResponseWriter: w, h: h}, r)
}

type serverWriter struct {
	http.ResponseWriter
	h    *serverHeader
	done bool
}

func (w *serverWriter) set() {
	if w.done {
		return
	}
	w.done = true
	hdr := w.ResponseWriter.Header()
	if w.h.transformation == "OVERWRITE" || w.h.transformation == "APPEND_IF_ABSENT" && len(hdr.Values("Server")) == 0 {
		hdr.Set("Server", w.h.name)
	}
}

func (w *serverWriter) WriteHeader(code int) {
	if code >= 200 {
		w.set()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *serverWriter) Write(b []byte) (int, error) {
	w.set()
	return w.ResponseWriter.Write(b)
}

func (w *serverWriter) Flush() {
	w.set()
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
		return
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *serverWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
