package bgp

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/evpnd/evpnd/evpn"
)

// TestMaxPrefixes: B caps A at 3 routes. Three arrive and the session
// stays up; a fourth ends it (Cease, maximum number of prefixes reached)
// and B keeps none of A's routes, while its session with C, which sends
// within its cap, is untouched.
func TestMaxPrefixes(t *testing.T) {
	port := freePort(t)
	capped := peerAt(41, 65041, port)
	capped.MaxPrefixes = 3
	c := peerAt(43, 65043, port)
	c.MaxPrefixes = 3
	a := startSpeaker(t, 41, 65041, port, peerAt(42, 65042, port))
	b := startSpeaker(t, 42, 65042, port, capped, c)
	cs := startSpeaker(t, 43, 65043, port, peerAt(42, 65042, port))
	waitEstablished(t, b.Server, capped.Address)
	waitEstablished(t, b.Server, c.Address)

	seg := evpn.NewSegment(netip.MustParseAddr("127.0.0.41"), 65041, evpn.PresetFRR, 100, "blue", "web", 100, nil, nil)
	vtep := netip.MustParseAddr("10.0.0.41")
	route := func(i byte) evpn.Route {
		return seg.MACIPRoute(vtep, net.HardwareAddr{0x02, 0, 0, 0, 0x41, i}, netip.Addr{}, 0)
	}
	if err := a.Advertise(context.Background(), []evpn.Route{route(1), route(2), route(3)}); err != nil {
		t.Fatal(err)
	}
	cseg := evpn.NewSegment(netip.MustParseAddr("127.0.0.43"), 65043, evpn.PresetFRR, 100, "blue", "web", 100, nil, nil)
	if err := cs.Advertise(context.Background(), []evpn.Route{cseg.IMETRoute(netip.MustParseAddr("10.0.0.43"))}); err != nil {
		t.Fatal(err)
	}
	b.waitFor(t, "3 routes from A and 1 from C at B", func() bool { return len(b.got) == 4 })

	if err := a.Advertise(context.Background(), []evpn.Route{route(4)}); err != nil {
		t.Fatal(err)
	}
	waitPeerState(t, b.Server, capped.Address, "A's session ended by the cap", func(st string) bool { return st != "established" })
	b.waitFor(t, "A's routes gone from B, C's kept", func() bool { return len(b.got) == 1 })
	peers, err := b.Peers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		if p.Address == c.Address && p.State != "established" {
			t.Fatalf("C's session went %s when A exceeded its cap", p.State)
		}
	}
}
