// Command evpnctl drives a running evpnd through its gRPC API: it creates,
// changes and deletes tenants, segments, ports and policies, applies files
// in the config file's form, and shows and watches BGP peers, EVPN routes,
// MAC and neighbor tables and the tenants' routing tables, as aligned
// tables for people or JSON and YAML for scripts. It talks only to evpnd's
// API, never to the kernel or to BGP.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// Ctrl-C cancels the command's context, so a watch ends cleanly.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
