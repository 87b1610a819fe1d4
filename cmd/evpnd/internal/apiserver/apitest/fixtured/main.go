// Command fixtured serves the apitest fixture through the real API server on
// a unix socket, for tests of programs that cannot import the daemon's
// internal packages (evpnctl). It serves until its standard input closes, so
// it never outlives the test that started it.
package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/evpnd/evpnd/cmd/evpnd/internal/apiserver"
	"github.com/evpnd/evpnd/cmd/evpnd/internal/apiserver/apitest"
)

func main() {
	socket := flag.String("socket", "", "path of the unix socket to serve on")
	flag.Parse()
	if *socket == "" {
		fmt.Fprintln(os.Stderr, "fixtured: -socket is required")
		os.Exit(2)
	}
	l, err := apiserver.Listen("unix://" + *socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fixtured:", err)
		os.Exit(1)
	}
	srv := apiserver.New(apitest.Fixture(), slog.New(slog.NewTextHandler(os.Stderr, nil)))
	go func() {
		io.Copy(io.Discard, os.Stdin)
		srv.Stop()
	}()
	if err := srv.Serve(l); err != nil {
		fmt.Fprintln(os.Stderr, "fixtured:", err)
		os.Exit(1)
	}
}
