// Command evpnd puts a Linux host on an EVPN/VXLAN fabric: tenant overlays
// in network namespaces, BGP EVPN with the fabric's ToRs and route
// reflectors, and the kernel datapath that follows.
//
// It owns flags, configuration loading, wiring, signals and exit codes:
// 0 clean stop, 1 runtime failure, 2 bad configuration or usage.
//
// SIGTERM and SIGINT stop evpnd cleanly: its BGP sessions end with a
// NOTIFICATION and peers withdraw its routes. SIGUSR1 stops it for a
// restart: the sessions end without one, so peers that negotiated
// graceful restart keep its routes until it is back (systemctl kill
// -s SIGUSR1 evpnd, then start it again). Kernel state stays either way.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/evpnd/evpnd/bgp"
	"github.com/evpnd/evpnd/cmd/evpnd/internal/config"
	"github.com/evpnd/evpnd/cmd/evpnd/internal/daemon"
	"github.com/evpnd/evpnd/cmd/evpnd/internal/store"
	"github.com/evpnd/evpnd/fabric"
	"github.com/evpnd/evpnd/policy"
)

// version is set by the build (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	// Caught from the start: SIGUSR1's default action would kill evpnd
	// with its sessions, which is a restart too, but not a tidy one.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1)
	go func() { cancel(stopCause(<-sigs)) }()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// stopCause is why a signal stops evpnd, as the daemon reads it from the
// context.
func stopCause(sig os.Signal) error {
	if sig == syscall.SIGUSR1 {
		return daemon.ErrRestart
	}
	return context.Canceled
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("evpnd", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.StringP("config", "c", "", "configuration file (YAML)")
	check := fs.Bool("check", false, "validate the configuration and exit (status 0 valid, 2 invalid)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	config.Flags(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: evpnd --config FILE [--check] [flags]\n\n"+
			"evpnd makes this host a member of an EVPN/VXLAN fabric. Every config key can also\n"+
			"be set as EVPND_<KEY> (upper case, '-' and '.' as '_'), e.g. EVPND_NETNS_PREFIX.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "evpnd: %v\nrun 'evpnd --help' for usage\n", err)
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "evpnd", version)
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "evpnd: unexpected argument %q (did you mean --config %s?)\n", fs.Arg(0), fs.Arg(0))
		return 2
	}
	file, err := config.Read(*path, fs)
	if err != nil {
		fmt.Fprintln(stderr, "evpnd:", err)
		return 2
	}
	cfg, err := file.Check(config.SourceName(*path))
	if err != nil {
		fmt.Fprintln(stderr, "evpnd:", err)
		return 2
	}
	if *check {
		fmt.Fprintf(stdout, "%s: configuration is valid (%d peers, %d tenants)\n", orEnv(*path), len(cfg.BGP.Peers), len(cfg.Tenants))
		return 0
	}

	log := newLogger(cfg, stderr)
	st, err := store.Open(cfg.StateDir)
	if err == nil {
		err = st.Lock()
	}
	if err != nil {
		// Starting without the objects the API created would delete them
		// from the kernel: refuse, and say which file to look at.
		log.Error("state not loaded; not starting", "err", err)
		return 1
	}
	dp, err := fabric.New(fabric.Options{Logger: log.With("component", "fabric")})
	if err != nil {
		log.Error("datapath", "err", err)
		return 1
	}
	defer dp.Close()
	pol, err := policy.New(policy.Options{Logger: log.With("component", "policy")})
	if err != nil {
		log.Error("policy engine", "err", err)
		return 1
	}
	defer pol.Close()
	d, err := daemon.New(daemon.Options{
		Log:            log,
		Source:         config.SourceName(*path),
		File:           file,
		Reload:         func() (config.File, error) { return config.Read(*path, fs) },
		RepairInterval: cfg.RepairInterval,
		Store:          st,
		Version:        version,
		Speaker:        bgp.New(log.With("component", "bgp")),
		Datapath:       dp,
		Policy:         pol,
	})
	if err != nil {
		fmt.Fprintln(stderr, "evpnd:", err)
		return 2
	}
	if err := d.Run(ctx); err != nil {
		log.Error("evpnd failed", "err", err)
		return 1
	}
	return 0
}

func orEnv(path string) string {
	if path == "" {
		return "(environment)"
	}
	return path
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
