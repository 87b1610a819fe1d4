package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

const (
	defaultSocket = "/run/evpnd/evpnd.sock"
	socketEnv     = "EVPNCTL_SOCKET"
)

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// usageError is a mistake on the command line: it exits with status 2 and
// points at --help.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// globals are the flags every command shares.
type globals struct {
	socket  string
	output  string
	timeout time.Duration
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
	root.PersistentPreRun = func(*cobra.Command, []string) { started = true }
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "evpnctl: %v\n", err)
	var ue usageError
	if !started || errors.As(err, &ue) {
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
		Short: "Inspect a running evpnd",
		Long: `evpnctl inspects a running evpnd through its API socket: BGP peers, EVPN
routes, the MAC tables of the tenant segments and the tenants' routing
tables.

The API socket is root only; run evpnctl as root.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		// Without Args, cobra accepts stray words after a command with
		// subcommands and prints help with status 0.
		Args: noArgs,
		RunE: groupRunE,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	// Group commands run only to report a missing subcommand; their usage
	// must not advertise "evpnctl [flags]" as something to run.
	root.SetUsageTemplate(strings.Replace(root.UsageTemplate(),
		"{{if .Runnable}}", "{{if and .Runnable (not .HasAvailableSubCommands)}}", 1))
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })

	socket := defaultSocket
	if s := getenv(socketEnv); s != "" {
		socket = s
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.socket, "socket", socket, "path of evpnd's API socket (env "+socketEnv+")")
	pf.StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	pf.DurationVar(&g.timeout, "timeout", 10*time.Second, "how long to wait for evpnd to answer")

	root.AddCommand(newShowCmd(g), newVersionCmd())
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

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if cmd.HasSubCommands() {
		return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
	}
	return usagef("%s takes no arguments, got %q", cmd.CommandPath(), args)
}

// checkOutput validates -o before anything is asked of evpnd.
func (g *globals) checkOutput() error {
	switch g.output {
	case "table", "json":
		return nil
	}
	return usagef("invalid --output %q: want table or json", g.output)
}
