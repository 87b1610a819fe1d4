// Command evpnctl inspects a running evpnd through its gRPC API: BGP peers,
// the EVPN routes, the tenant MAC tables and the tenants' routing tables, as
// aligned tables for people or JSON for scripts. It talks only to evpnd's
// API socket, never to the kernel or to BGP.
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}
