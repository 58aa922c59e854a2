// Command anywasm-proxy is a reverse proxy that runs Proxy-Wasm plugins on
// the runtime a configuration file or the -runtime flag chooses.
//
//	anywasm-proxy -config proxy.yaml [-config-format auto|anywasm|envoy] [-runtime wasmtime] [-log-level info] [-log-format text|json|envoy] [-check]
//	anywasm-proxy precompile [-runtime wasmtime] [-interrupt] -o out.wasm in.wasm
//
// The configuration (YAML or JSON) has HTTP and TCP listeners, named
// clusters (upstreams of listeners and of plugin callouts) and, per
// listener, a chain of plugins configured as Envoy's Wasm filters are, and
// Wasm services (wasm_services: plugins on no listener, Envoy's
// WasmService); see internal/proxy.Config and examples/proxy/proxy.yaml.
// It also reads Envoy's own configuration, a bootstrap (a subset of it,
// internal/envoyconfig), told apart by its top-level keys or named with
// -config-format envoy. The admin endpoint
// serves /healthz, /metrics (Prometheus) and /plugins. A changed plugin
// file is reloaded without dropping requests in flight (checked every
// reload_interval and on SIGHUP); SIGINT or SIGTERM shut down gracefully.
//
// The precompile command writes a module carrying a runtime's precompiled
// code, for plugins with vm_config.allow_precompiled (see precompile.go).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
	_ "github.com/anywasm/anywasm/engine/all"
	"github.com/anywasm/anywasm/internal/envoyconfig"
	"github.com/anywasm/anywasm/internal/proxy"
	"github.com/anywasm/anywasm/internal/version"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, nil))
}

// run runs the proxy until a signal, or until ctx is done. ready, when
// non-nil, receives the proxy once it serves.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready chan<- *proxy.Proxy) int {
	if len(args) > 0 && args[0] == "precompile" {
		return precompile(ctx, args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("anywasm-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "", "configuration file (YAML or JSON)")
	configFormat := fs.String("config-format", "auto", "configuration format: anywasm, envoy (an Envoy bootstrap) or auto (envoy if the file has a top-level key of Envoy's bootstrap such as static_resources)")
	runtime := fs.String("runtime", "", "runtime of every plugin, overriding the configuration (compiled in: "+strings.Join(engine.Runtimes(), ", ")+"; a tier after a colon, e.g. wazero:interpreter)")
	level := fs.String("log-level", "info", "log level: trace, debug, info, warn, error, critical")
	format := fs.String("log-format", "text", "log format: text, json, or envoy (Envoy's: a plugin's logs as \"[time][level][wasm] wasm log NAME: message\")")
	check := fs.Bool("check", false, "validate the configuration, load every plugin (compile, start, configure) and exit")
	showVersion := fs.Bool("version", false, "print the build's module version and Go version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		version.Print(stdout, "anywasm-proxy")
		return 0
	}
	if *config == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: anywasm-proxy -config FILE [-config-format auto|anywasm|envoy] [-runtime NAME] [-log-level LEVEL] [-log-format text|json|envoy] [-check]")
		fmt.Fprintln(stderr, "       anywasm-proxy precompile [-runtime NAME] [-interrupt] -o OUT.wasm IN.wasm")
		return 2
	}
	var lv slog.Level
	if pl, err := abi.ParseLogLevel(*level); err == nil {
		lv = abi.SlogLevel(pl) // trace and critical too
	} else if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "-log-level: %v\n", err)
		return 2
	}
	hopts := &slog.HandlerOptions{Level: lv, ReplaceAttr: abi.ReplaceLevelNames}
	var h slog.Handler
	switch *format {
	case "text":
		h = slog.NewTextHandler(stderr, hopts)
	case "json":
		h = slog.NewJSONHandler(stderr, hopts)
	case "envoy":
		h = newEnvoyHandler(stderr, lv)
	default:
		fmt.Fprintf(stderr, "-log-format: %q: want text, json or envoy\n", *format)
		return 2
	}
	log := slog.New(h)
	cfg, err := loadConfig(*config, *configFormat, log)
	if err != nil {
		fmt.Fprintln(stderr, err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	if *check {
		if err := proxy.Check(ctx, cfg, proxy.Options{Runtime: *runtime, Logger: log}); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: ok\n", *config)
		return 0
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	p, err := proxy.Start(ctx, cfg, proxy.Options{Runtime: *runtime, Logger: log})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	for _, l := range cfg.Listeners {
		if p.Warming() { // discovered filters wait for their first configuration
			log.Info("bound, warming", "listener", l.Name, "address", p.Addr(l.Name).String())
			continue
		}
		log.Info("listening", "listener", l.Name, "address", p.Addr(l.Name).String())
	}
	if a := p.AdminAddr(); a != nil {
		log.Info("admin", "address", a.String())
	}
	// Filters written with config_discovery take their plugin from a
	// management server (Envoy's ECDS); the subscription ends before the
	// proxy shuts down.
	dctx, stopDiscovery := context.WithCancel(context.WithoutCancel(ctx))
	discovered := make(chan struct{})
	go func() {
		defer close(discovered)
		envoyconfig.Discover(dctx, p, cfg, log)
	}()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if ready != nil {
		ready <- p
	}
	for {
		select {
		case <-hup:
			log.Info("SIGHUP: checking plugin files", "reloaded", p.Reload(ctx))
			continue
		case <-ctx.Done():
		}
		break
	}
	stop()
	stopDiscovery()
	<-discovered
	timeout := 10 * time.Second
	if cfg.ShutdownTimeout != nil {
		timeout = cfg.ShutdownTimeout.Get()
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	log.Info("shutting down", "timeout", timeout)
	if err := p.Shutdown(sctx); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	return 0
}

var errUsage = errors.New("usage")

// loadConfig reads the configuration in its format; the notes of an Envoy
// translation (a runtime anywasm does not have) are logged at info.
func loadConfig(path, format string, log *slog.Logger) (*proxy.Config, error) {
	switch format {
	case "anywasm", "envoy":
	case "auto":
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		format = "anywasm"
		if ok, err := envoyconfig.IsBootstrap(b); err == nil && ok {
			format = "envoy"
		}
	default:
		return nil, fmt.Errorf("-config-format: %q: want auto, anywasm or envoy (%w)", format, errUsage)
	}
	if format == "anywasm" {
		return proxy.LoadConfig(path)
	}
	cfg, notes, err := envoyconfig.Load(path)
	if err != nil {
		return nil, err
	}
	log.Info("configuration read as an Envoy bootstrap", "file", path, "listeners", len(cfg.Listeners), "clusters", len(cfg.Clusters), "wasm_services", len(cfg.WasmServices))
	for _, n := range notes {
		log.Info(n.Message, "plugin", n.Plugin, "field", n.Field)
	}
	return cfg, nil
}
