package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/evpnd/evpnd/evpn"
)

// Converged must not overtake the routes received before it: the daemon
// prunes kernel state when it closes, and a route still queued then would
// have its entry deleted and added back. The consumer here is slow, so
// routes pile up in the queue behind End-of-RIB.
func TestConvergedAfterQueuedRoutes(t *testing.T) {
	const n = 20000
	port := freePort(t)
	start := func(n, peer int) *Server {
		s := New(testLogger().With("speaker", n))
		// A consumer slower than the stream: the hand-over holds one
		// batch, the rest waits in the queue.
		s.events = make(chan []evpn.Route, 1)
		cfg := pairConfig(n, peer, port)
		cfg.GracefulRestart = GracefulRestart{Enabled: true, StateDir: t.TempDir()}
		err := s.Start(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Stop)
		return s
	}
	a := start(61, 62)
	routes := ingestRoutes(n)
	if err := a.Advertise(context.Background(), routes); err != nil {
		t.Fatal(err)
	}
	b := start(62, 61)

	got, batches := 0, 0
	timeout := time.After(60 * time.Second)
	for converged := false; !converged; {
		select {
		case batch := <-b.Events():
			got += len(batch)
			batches++
			// A consumer writing each route to the kernel.
			time.Sleep(time.Duration(len(batch)) * 100 * time.Microsecond)
		case <-b.Converged():
			converged = true
		case <-timeout:
			t.Fatalf("no convergence within 60s; %d of %d routes delivered", got, len(routes))
		}
	}
	got += drainEvents(b)
	t.Logf("%d batches before convergence, %d routes", batches, got)
	if got != len(routes) {
		t.Fatalf("Converged closed with %d of %d routes on Events; the rest were still queued", got, len(routes))
	}
}

// A peer without graceful restart that sends its first route later than
// convergeQuiet after the session came up (a large table takes seconds to
// start) must not be taken as converged before it does: a restarted
// evpnd would prune the kernel entries that peer is about to send again.
func TestConvergedWaitsForFirstRoute(t *testing.T) {
	port := freePort(t)
	start := func(n, peer int) *Server {
		s := New(testLogger().With("speaker", n))
		err := s.Start(context.Background(), pairConfig(n, peer, port))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Stop)
		return s
	}
	a := start(63, 64)
	b := start(64, 63)
	deadline := time.After(30 * time.Second)
	for up := false; !up; {
		select {
		case <-deadline:
			t.Fatal("no session within 30 s")
		case <-time.After(50 * time.Millisecond):
			peers, err := b.Peers(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			up = len(peers) == 1 && peers[0].State == "established"
		}
	}
	// Quiet for twice convergeQuiet, then the table.
	select {
	case <-b.Converged():
		t.Fatal("converged before the peer sent anything, convergeQuiet after the session came up")
	case <-time.After(2 * convergeQuiet):
	}
	routes := ingestRoutes(100)
	if err := a.Advertise(context.Background(), routes); err != nil {
		t.Fatal(err)
	}
	got := 0
	for converged := false; !converged; {
		select {
		case batch := <-b.Events():
			got += len(batch)
		case <-b.Converged():
			converged = true
		case <-deadline:
			t.Fatalf("no convergence within 30 s; %d of %d routes delivered", got, len(routes))
		}
	}
	got += drainEvents(b)
	if got != len(routes) {
		t.Fatalf("converged with %d of the peer's %d routes", got, len(routes))
	}
}

// pairConfig is the Config of test speaker n (127.0.0.n) peering with
// speaker peer, both on port.
func pairConfig(n, peer int, port int32) Config {
	addr := netip.MustParseAddr(fmt.Sprintf("127.0.0.%d", n))
	return Config{
		RouterID: addr, ASN: 65000, NextHop: netip.MustParseAddr(fmt.Sprintf("10.0.0.%d", n)),
		ListenAddresses: []netip.Addr{addr}, ListenPort: port,
		Peers: []PeerConfig{{Address: netip.MustParseAddr(fmt.Sprintf("127.0.0.%d", peer)), ASN: 65000, Port: uint16(port)}},
	}
}

// drainEvents counts the routes waiting on s's Events.
func drainEvents(s *Server) int {
	got := 0
	for {
		select {
		case batch := <-s.Events():
			got += len(batch)
		default:
			return got
		}
	}
}
