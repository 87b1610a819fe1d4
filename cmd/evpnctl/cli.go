package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

const (
	defaultSocket = "/run/evpnd/evpnd.sock"
	socketEnv     = "EVPNCTL_SOCKET"
	addrEnv       = "EVPNCTL_ADDR"
	tlsCertEnv    = "EVPNCTL_TLS_CERT"
	tlsKeyEnv     = "EVPNCTL_TLS_KEY"
	tlsCAEnv      = "EVPNCTL_TLS_CA"
)

// Exit statuses.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitInterrupted = 130
)

// stdin is what "-f -" reads; a variable so tests can feed it.
var stdin io.Reader = os.Stdin

// usageError is a mistake on the command line: it exits with status 2 and
// points at --help.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// inputError is a refused input file or object: it exits with status 2
// like a usage error, but --help would not help, so it is not suggested.
type inputError struct{ err error }

func (e inputError) Error() string { return e.err.Error() }
func (e inputError) Unwrap() error { return e.err }

// globals are the flags every command shares.
type globals struct {
	socket  string
	addr    string
	tls     tlsFiles
	output  string
	timeout time.Duration
	// socketSet is --socket given on the command line, which wins over
	// EVPNCTL_ADDR.
	socketSet bool
	addrSet   bool
}

// tlsFiles are the client's mutual TLS material for --addr.
type tlsFiles struct {
	cert, key, ca, serverName string
}

// run executes one evpnctl invocation and returns its exit status; main is
// only this call, so tests run the whole CLI in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	g := &globals{}
	root := newRoot(g, getenv, stdout, stderr)
	root.SetArgs(args)
	// Set once flags and arguments have been accepted: any error before that
	// (an unknown command or flag, stray arguments) is a usage error.
	var started bool
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		started = true
		g.socketSet = cmd.Flags().Changed("socket")
		g.addrSet = cmd.Flags().Changed("addr")
		return nil
	}
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	if ctx.Err() != nil && started {
		fmt.Fprintln(stderr, "evpnctl: interrupted")
		return exitInterrupted
	}
	fmt.Fprintf(stderr, "evpnctl: %v\n", err)
	var ue usageError
	var ie inputError
	switch {
	case errors.As(err, &ie):
		return exitUsage
	case !started || errors.As(err, &ue):
		path := root.CommandPath()
		if cmd != nil {
			path = cmd.CommandPath()
		}
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", path)
		return exitUsage
	}
	return exitError
}

func newRoot(g *globals, getenv func(string) string, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "evpnctl",
		Short: "Configure and inspect a running evpnd",
		Long: `evpnctl configures and inspects a running evpnd through its API: tenants,
segments, ports and policies (created, changed and deleted one by one, or
applied from a file in the config file's form), BGP peers, EVPN routes, the
MAC and neighbor tables of the tenant segments and the tenants' routing
tables, listed once or watched as they change.

Objects declared in evpnd's config file are read-only here: change the file
and send evpnd SIGHUP. Objects created here are kept by evpnd across
restarts.

evpnctl talks to the unix socket (--socket, root only: run evpnctl as root)
or, with --addr, to evpnd over TCP with mutual TLS (--tls-cert, --tls-key,
--tls-ca).`,
		SilenceErrors: true,
		SilenceUsage:  true,
		// Without Args, cobra accepts stray words after a command with
		// subcommands and prints help with status 0.
		Args: noArgs,
		RunE: groupRunE,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetIn(stdin)
	// Group commands run only to report a missing subcommand; their usage
	// must not advertise "evpnctl [flags]" as something to run.
	root.SetUsageTemplate(strings.Replace(root.UsageTemplate(),
		"{{if .Runnable}}", "{{if and .Runnable (not .HasAvailableSubCommands)}}", 1))
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })

	env := func(name, def string) string {
		if s := getenv(name); s != "" {
			return s
		}
		return def
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.socket, "socket", env(socketEnv, defaultSocket), "path of evpnd's API socket (env "+socketEnv+")")
	pf.StringVar(&g.addr, "addr", getenv(addrEnv), "host:port of evpnd's API over TCP, mutual TLS only: needs --tls-cert, --tls-key and --tls-ca (env "+addrEnv+")")
	pf.StringVar(&g.tls.cert, "tls-cert", getenv(tlsCertEnv), "client certificate (PEM) for --addr (env "+tlsCertEnv+")")
	pf.StringVar(&g.tls.key, "tls-key", getenv(tlsKeyEnv), "client private key (PEM) for --addr (env "+tlsKeyEnv+")")
	pf.StringVar(&g.tls.ca, "tls-ca", getenv(tlsCAEnv), "CA certificate (PEM) that evpnd's server certificate chains to, for --addr (env "+tlsCAEnv+")")
	pf.StringVar(&g.tls.serverName, "tls-server-name", "", "name to verify evpnd's certificate against; default: the host of --addr")
	pf.StringVarP(&g.output, "output", "o", "table", "output format: table, json or yaml (watch: table or json lines)")
	pf.DurationVar(&g.timeout, "timeout", 10*time.Second, "how long to wait for evpnd to answer")

	root.AddCommand(newShowCmd(g), newWatchCmd(g), newTenantCmd(g), newSegmentCmd(g), newPortCmd(g),
		newPolicyCmd(g), newApplyCmd(g), newClearCmd(g), newVersionCmd())
	return root
}

// groupRunE makes a command that only groups subcommands fail as a usage
// error when called without one, instead of exiting 0.
func groupRunE(cmd *cobra.Command, args []string) error {
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	return usagef("%s needs a subcommand: %s", cmd.CommandPath(), strings.Join(names, ", "))
}

// newGroup is a command that only holds subcommands.
func newGroup(use, short, long string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{Use: use, Short: short, Long: long, Args: noArgs, RunE: groupRunE}
	c.AddCommand(subs...)
	return c
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if cmd.HasSubCommands() {
		return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
	}
	return usagef("%s takes no arguments, got %q", cmd.CommandPath(), args)
}

// exactArgs wants the named arguments, and says which are missing.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < len(names):
			return usagef("%s needs %s", cmd.CommandPath(), strings.Join(names[len(args):], " and "))
		case len(args) > len(names):
			return usagef("%s takes %s, got %q", cmd.CommandPath(), strings.Join(names, " "), args)
		}
		return nil
	}
}

// checkOutput validates -o before anything is asked of evpnd.
func (g *globals) checkOutput() error {
	switch g.output {
	case "table", "json", "yaml":
		return nil
	}
	return usagef("invalid --output %q: want table, json or yaml", g.output)
}
