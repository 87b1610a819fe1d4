package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// nextPeerEvent reads s's peer events until one for peer satisfies cond,
// and returns it with how many events for peer came before it.
func nextPeerEvent(t *testing.T, s *Server, peer netip.Addr, what string, cond func(Peer) bool) (Peer, int) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	skipped := 0
	for {
		select {
		case p, ok := <-s.PeerEvents():
			if !ok {
				t.Fatalf("peer events closed while waiting for %s", what)
			}
			if p.Address != peer {
				continue
			}
			if cond(p) {
				return p, skipped
			}
			skipped++
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// waitPeerState polls Peers until peer's state satisfies cond. Every call
// must answer: a peer event reader that does not read must not stall the
// server.
func waitPeerState(t *testing.T, s *Server, peer netip.Addr, what string, cond func(string) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ps, err := s.Peers(ctx)
		cancel()
		if err != nil {
			t.Fatalf("peers while waiting for %s: %v", what, err)
		}
		for _, p := range ps {
			if p.Address == peer && cond(p.State) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; peers %+v", what, ps)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func established(st string) bool { return st == "established" }

func TestPeerEventsSessionUpAndDown(t *testing.T) {
	port := freePort(t)
	addrA, addrB := netip.MustParseAddr("127.0.0.21"), netip.MustParseAddr("127.0.0.22")
	toB := peerAt(22, 65022, port)
	toB.Description = "host b"
	a := startSpeaker(t, 21, 65021, port, toB)
	b := startSpeaker(t, 22, 65022, port, peerAt(21, 65021, port))

	up, _ := nextPeerEvent(t, a.Server, addrB, "b established at a", func(p Peer) bool { return p.State == "established" })
	if up.ASN != 65022 || up.Description != "host b" {
		t.Errorf("established event %+v, want asn 65022 and description %q", up, "host b")
	}
	// b hears about a too; its peer has no description.
	if p, _ := nextPeerEvent(t, b.Server, addrA, "a established at b", func(p Peer) bool { return p.State == "established" }); p.ASN != 65021 || p.Description != "" {
		t.Errorf("b's event for a %+v", p)
	}

	b.Stop()
	down, _ := nextPeerEvent(t, a.Server, addrB, "b leaving established at a", func(p Peer) bool { return p.State != "established" })
	if down.Uptime != 0 || down.ASN != 65022 || down.Description != "host b" {
		t.Errorf("down event %+v, want no uptime, asn 65022, description %q", down, "host b")
	}
	switch down.State {
	case "idle", "connect", "active", "opensent", "openconfirm":
	default:
		t.Errorf("down event state %q", down.State)
	}
}

func TestPeerEventsOnAdd(t *testing.T) {
	port := freePort(t)
	s := startSpeaker(t, 23, 65023, port)
	// Nobody listens on 127.0.0.24: the session never comes up, so the
	// event is the one for the peer being added (or a state GoBGP reported
	// for it since).
	nobody := peerAt(24, 65024, port)
	nobody.Description = "nobody"
	if err := s.SetPeers(context.Background(), []PeerConfig{nobody}); err != nil {
		t.Fatal(err)
	}
	p, _ := nextPeerEvent(t, s.Server, nobody.Address, "an event for the added peer", func(Peer) bool { return true })
	if p.ASN != 65024 || p.Description != "nobody" || p.Uptime != 0 {
		t.Errorf("event %+v", p)
	}
	switch p.State {
	case "idle", "connect", "active":
	default:
		t.Errorf("state %q of a peer nobody answers", p.State)
	}
}

// TestPeerEventsSlowReader flaps a session several times while nobody
// reads the peer events: the server keeps working, and the reader that
// finally comes gets the latest state, not the backlog.
func TestPeerEventsSlowReader(t *testing.T) {
	port := freePort(t)
	addrB := netip.MustParseAddr("127.0.0.26")
	a := startSpeaker(t, 25, 65025, port, peerAt(26, 65026, port))
	b := startSpeaker(t, 26, 65026, port, peerAt(25, 65025, port))

	const flaps = 3
	waitPeerState(t, a.Server, addrB, "first session", established)
	for i := range flaps {
		// b goes away for good, so a's attempts are refused and a sits in
		// active; a b that only dropped a from its peers would accept and
		// close a's connections, and both sides' idle hold timers could
		// keep missing each other for a long time.
		b.Stop()
		waitPeerState(t, a.Server, addrB, fmt.Sprintf("flap %d: a retrying", i), func(st string) bool { return st == "active" })
		b = startSpeaker(t, 26, 65026, port, peerAt(25, 65025, port))
		waitPeerState(t, a.Server, addrB, fmt.Sprintf("flap %d: up again", i), established)
	}

	// Each flap went through at least three states (idle, active and back
	// up through opensent and openconfirm), on top of the first session's;
	// a backlog would hold all of them. The reader may still catch a state
	// or two of the last session coming up if GoBGP's watch is behind
	// Peers.
	p, before := nextPeerEvent(t, a.Server, addrB, "the latest state", func(p Peer) bool { return p.State == "established" })
	if before > 2 {
		t.Errorf("%d older events of the peer came before its latest state; they should have been coalesced", before)
	}
	if p.ASN != 65026 {
		t.Errorf("event %+v", p)
	}
}
