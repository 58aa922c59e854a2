package abi

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// The slog levels of Proxy-Wasm's trace and critical levels, which slog
// lacks: below Debug and above Error. ReplaceLevelNames prints them as
// TRACE and CRITICAL.
const (
	LevelTrace    = slog.LevelDebug - 4
	LevelCritical = slog.LevelError + 4
)

// SlogLevel returns the slog level of a Proxy-Wasm log level.
func SlogLevel(l LogLevel) slog.Level {
	switch l {
	case LogTrace:
		return LevelTrace
	case LogDebug:
		return slog.LevelDebug
	case LogInfo:
		return slog.LevelInfo
	case LogWarn:
		return slog.LevelWarn
	case LogError:
		return slog.LevelError
	}
	return LevelCritical
}

// ReplaceLevelNames is a slog.HandlerOptions.ReplaceAttr that names the
// levels LevelTrace and LevelCritical TRACE and CRITICAL (slog would print
// DEBUG-4 and ERROR+4).
func ReplaceLevelNames(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.LevelKey {
		if l, ok := a.Value.Any().(slog.Level); ok {
			a.Value = slog.StringValue(LevelName(l))
		}
	}
	return a
}

// LevelName is slog's name of l, but TRACE and CRITICAL for LevelTrace and
// LevelCritical.
func LevelName(l slog.Level) string {
	switch l {
	case LevelTrace:
		return "TRACE"
	case LevelCritical:
		return "CRITICAL"
	}
	return l.String()
}

// ParseLogLevel reads a Proxy-Wasm log level by name: trace, debug, info,
// warn (or warning), error, critical; any case.
func ParseLogLevel(s string) (LogLevel, error) {
	switch strings.ToLower(s) {
	case "trace":
		return LogTrace, nil
	case "debug":
		return LogDebug, nil
	case "info":
		return LogInfo, nil
	case "warn", "warning":
		return LogWarn, nil
	case "error":
		return LogError, nil
	case "critical":
		return LogCritical, nil
	}
	return 0, fmt.Errorf("log level %q: want trace, debug, info, warn, error or critical", s)
}

// levelOf returns the lowest Proxy-Wasm level h is enabled for.
func levelOf(h slog.Handler) LogLevel {
	for l := LogTrace; l < LogCritical; l++ {
		if h.Enabled(context.Background(), SlogLevel(l)) {
			return l
		}
	}
	return LogCritical
}

// levelHandler gives a plugin's logs a level of their own
// (PluginConfig.LogLevel), whatever the level of the handler it writes to.
type levelHandler struct {
	slog.Handler
	min slog.Level
}

func (h levelHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.min }

func (h levelHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return levelHandler{h.Handler.WithAttrs(a), h.min}
}

func (h levelHandler) WithGroup(n string) slog.Handler {
	return levelHandler{h.Handler.WithGroup(n), h.min}
}
