package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/anywasm/anywasm/abi"
)

// envoyHandler writes logs as Envoy's default format does (-log-format
// envoy; "[%Y-%m-%d %T.%e][%l][%n] %v", without the thread and source
// location): a plugin's own logs under the "wasm" logger as Envoy's
// Context::log writes them, "wasm log NAME ROOT_ID VM_ID: message" with
// the empty ones left out (PluginBase::makeLogPrefix) and the message as
// the plugin wrote it, unquoted; the proxy's own records under "anywasm",
// their attributes after the message as key=value. The levels are
// spdlog's names: trace, debug, info, warning, error, critical.
type envoyHandler struct {
	mu    *sync.Mutex
	w     io.Writer
	level slog.Leveler
	attrs []slog.Attr // from WithAttrs (groups are flattened into key prefixes)
	group string
}

func newEnvoyHandler(w io.Writer, level slog.Leveler) *envoyHandler {
	return &envoyHandler{mu: new(sync.Mutex), w: w, level: level}
}

func (h *envoyHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *envoyHandler) WithAttrs(as []slog.Attr) slog.Handler {
	g := *h
	g.attrs = append(append([]slog.Attr(nil), h.attrs...), prefixed(h.group, as)...)
	return &g
}

func (h *envoyHandler) WithGroup(name string) slog.Handler {
	g := *h
	g.group = h.group + name + "."
	return &g
}

func prefixed(group string, as []slog.Attr) []slog.Attr {
	if group == "" {
		return as
	}
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = slog.Attr{Key: group + a.Key, Value: a.Value}
	}
	return out
}

// envoyLevel is spdlog's name of a level.
func envoyLevel(l slog.Level) string {
	switch {
	case l < slog.LevelDebug:
		return "trace"
	case l < slog.LevelInfo:
		return "debug"
	case l < slog.LevelWarn:
		return "info"
	case l < slog.LevelError:
		return "warning"
	case l < abi.LevelCritical:
		return "error"
	}
	return "critical"
}

func (h *envoyHandler) Handle(_ context.Context, r slog.Record) error {
	attrs := append([]slog.Attr(nil), h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		attrs = append(attrs, prefixed(h.group, []slog.Attr{a})...)
		return true
	})
	var plugin, rootID, vmID string
	fromPlugin := false
	for _, a := range attrs {
		switch a.Key {
		case "plugin":
			plugin = a.Value.String()
		case "root_id":
			rootID = a.Value.String()
		case "vm_id":
			vmID = a.Value.String()
		case abi.SourceKey:
			fromPlugin = a.Value.String() == abi.SourcePlugin
		}
	}
	var b bytes.Buffer
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	fmt.Fprintf(&b, "[%s][%s]", t.Format("2006-01-02 15:04:05.000"), envoyLevel(r.Level))
	if fromPlugin {
		b.WriteString("[wasm] wasm log")
		for _, s := range []string{plugin, rootID, vmID} {
			if s != "" {
				b.WriteString(" " + s)
			}
		}
		b.WriteString(": " + r.Message)
	} else {
		b.WriteString("[anywasm] " + r.Message)
		for _, a := range attrs {
			v := a.Value.Resolve().String()
			if v == "" || needsQuote(v) {
				v = strconv.Quote(v)
			}
			b.WriteString(" " + a.Key + "=" + v)
		}
	}
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.w.Write(b.Bytes())
	return err
}

func needsQuote(s string) bool {
	for _, c := range s {
		if c <= ' ' || c == '"' || c == '=' || c >= 0x7f {
			return true
		}
	}
	return false
}
