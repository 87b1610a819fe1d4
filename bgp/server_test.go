package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/evpnd/evpnd/evpn"
)

func TestMain(m *testing.M) {
	// GoBGP v3's BgpServer.Serve loop has no exit: after Stop it idles in
	// a select forever (upstream behaviour, one goroutine per server). Every
	// other goroutine, ours and GoBGP's peer, FSM and watch ones, must end.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/osrg/gobgp/v3/pkg/server.(*BgpServer).Serve"))
}

func freePort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

func testLogger() *slog.Logger {
	lvl := slog.LevelWarn
	if os.Getenv("EVPND_TEST_DEBUG") != "" {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

type speaker struct {
	*Server
	got map[string]evpn.Route // by NLRI key, withdrawals delete
}

// startSpeaker runs a Server on 127.0.0.<n> with the given peers.
func startSpeaker(t *testing.T, n int, asn uint32, port int32, peers ...PeerConfig) *speaker {
	t.Helper()
	addr := netip.MustParseAddr(fmt.Sprintf("127.0.0.%d", n))
	s := New(testLogger().With("speaker", n))
	err := s.Start(context.Background(), Config{
		RouterID:        addr,
		ASN:             asn,
		NextHop:         netip.MustParseAddr(fmt.Sprintf("10.0.0.%d", n)),
		ListenAddresses: []netip.Addr{addr},
		ListenPort:      port,
		Peers:           peers,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return &speaker{Server: s, got: map[string]evpn.Route{}}
}

// waitFor drains events until cond holds or the deadline passes.
func (s *speaker) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !cond() {
		select {
		case batch := <-s.Events():
			for _, r := range batch {
				if r.Withdraw {
					delete(s.got, r.NLRI.Key())
				} else {
					s.got[r.NLRI.Key()] = r
				}
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %s; have %d routes", what, len(s.got))
		}
	}
}

func peerAt(n int, asn uint32, port int32) PeerConfig {
	return PeerConfig{Address: netip.MustParseAddr(fmt.Sprintf("127.0.0.%d", n)), ASN: asn, Port: uint16(port),
		HoldTime: 9 * time.Second, KeepaliveInterval: 3 * time.Second}
}

// TestRoundTrip runs three real GoBGP speakers on loopback in a line,
// A (AS 65001) - B (AS 65002) - C (AS 65003), all eBGP. A's routes reach B
// with every attribute evpnd writes, and B, a host, never passes them on to
// C: a host is not transit.
func TestRoundTrip(t *testing.T) {
	port := freePort(t)
	a := startSpeaker(t, 1, 65001, port, peerAt(2, 65002, port))
	b := startSpeaker(t, 2, 65002, port, peerAt(1, 65001, port), peerAt(3, 65003, port))
	c := startSpeaker(t, 3, 65003, port, peerAt(2, 65002, port))

	vtepA := netip.MustParseAddr("10.0.0.1")
	seg := evpn.NewSegment(netip.MustParseAddr("127.0.0.1"), 65001, evpn.PresetFRR, 100, "blue", "web", 100, nil, nil)
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	ip := netip.MustParseAddr("172.31.1.1")
	routes := []evpn.Route{
		seg.IMETRoute(vtepA),
		seg.MACIPRoute(vtepA, mac, netip.Addr{}, 0),
		seg.MACIPRoute(vtepA, mac, ip, 3),
	}
	if err := a.Advertise(context.Background(), routes); err != nil {
		t.Fatal(err)
	}
	b.waitFor(t, "3 routes at B", func() bool { return len(b.got) == 3 })

	for _, want := range routes {
		got, ok := b.got[want.NLRI.Key()]
		if !ok {
			t.Fatalf("B lacks %s", want.NLRI)
		}
		if got.NextHop != vtepA {
			t.Errorf("%s: next hop %s, want the VTEP %s (eBGP must keep it)", want.NLRI, got.NextHop, vtepA)
		}
		if got.Peer != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("%s: peer %s", want.NLRI, got.Peer)
		}
		if got.Encap != evpn.EncapVXLAN {
			t.Errorf("%s: encap %d, want 8 (VXLAN)", want.NLRI, got.Encap)
		}
		if len(got.RTs) != 1 || got.RTs[0].String() != "65001:100" {
			t.Errorf("%s: route targets %v, want [65001:100]", want.NLRI, got.RTs)
		}
		if got.NLRI.String() != want.NLRI.String() {
			t.Errorf("nlri %s, want %s", got.NLRI, want.NLRI)
		}
	}
	imet := b.got[routes[0].NLRI.Key()]
	if p := imet.PMSI; p == nil || p.Type != evpn.PMSIIngressReplication || p.Label != 100 || p.Endpoint != vtepA {
		t.Errorf("type-3 pmsi %+v, want ingress replication, label 100, endpoint %s", imet.PMSI, vtepA)
	}
	withIP := b.got[routes[2].NLRI.Key()]
	if withIP.Mobility == nil || withIP.Mobility.Seq != 3 {
		t.Errorf("mobility %+v, want seq 3 as evpnd set it", withIP.Mobility)
	}
	if m := b.got[routes[1].NLRI.Key()].NLRI.(*evpn.MACIP); len(m.Labels) != 1 || m.Labels[0] != 100 {
		t.Errorf("labels %v, want [100]", m.Labels)
	}

	// B and C are established, yet C hears nothing from B.
	waitEstablished(t, c.Server, netip.MustParseAddr("127.0.0.2"))
	peers, err := b.Peers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		if p.Address == netip.MustParseAddr("127.0.0.3") && p.Advertised != 0 {
			t.Errorf("B advertised %d paths to C; a host must not be transit", p.Advertised)
		}
		if p.Address == netip.MustParseAddr("127.0.0.1") && p.Received != 3 {
			t.Errorf("B received %d paths from A, want 3", p.Received)
		}
	}
	if rs, _ := c.Routes(context.Background()); len(rs) != 0 {
		t.Errorf("C holds %d routes from B", len(rs))
	}

	// Withdraw one; B sees it go.
	wd := routes[2]
	wd.Withdraw = true
	if err := a.Advertise(context.Background(), []evpn.Route{wd}); err != nil {
		t.Fatal(err)
	}
	b.waitFor(t, "withdrawal at B", func() bool { _, ok := b.got[wd.NLRI.Key()]; return !ok })

	// A's own RIB lists its local routes with no peer.
	rs, err := a.Routes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 {
		t.Errorf("A lists %d routes, want 2", len(rs))
	}
	for _, r := range rs {
		if r.Peer.IsValid() {
			t.Errorf("A's own route %s has peer %s", r.NLRI, r.Peer)
		}
	}
	select {
	case <-b.Converged():
	case <-time.After(30 * time.Second):
		t.Error("B is established with both peers but never saw End-of-RIB from both")
	}
}

func waitEstablished(t *testing.T, s *Server, peer netip.Addr) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ps, err := s.Peers(context.Background())
		if err == nil {
			for _, p := range ps {
				if p.Address == peer && p.State == "established" {
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("peer %s not established", peer)
}

func TestStartRequiresNextHop(t *testing.T) {
	s := New(testLogger())
	if err := s.Start(context.Background(), Config{RouterID: netip.MustParseAddr("127.0.0.1"), ASN: 1}); err == nil {
		t.Fatal("started without a next hop")
	}
}

func TestSetPeersDiff(t *testing.T) {
	port := freePort(t)
	s := startSpeaker(t, 4, 65004, port, peerAt(5, 65005, port))
	ctx := context.Background()
	if err := s.SetPeers(ctx, []PeerConfig{peerAt(6, 65006, port), {Address: netip.MustParseAddr("127.0.0.5"), ASN: 65055, Port: uint16(port)}}); err != nil {
		t.Fatal(err)
	}
	ps, err := s.Peers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[netip.Addr]uint32{}
	for _, p := range ps {
		got[p.Address] = p.ASN
	}
	want := map[netip.Addr]uint32{netip.MustParseAddr("127.0.0.5"): 65055, netip.MustParseAddr("127.0.0.6"): 65006}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("peers %v, want %v", got, want)
	}
}
