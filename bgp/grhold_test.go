package bgp

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/evpnd/evpnd/evpn"
)

func TestGRHold(t *testing.T) {
	peer, other := netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	seg := evpn.NewSegment(peer, 65000, evpn.PresetFRR, 100, "blue", "web", 100, nil, nil)
	route := func(n byte, from netip.Addr, withdraw bool) evpn.Route {
		r := seg.MACIPRoute(from, net.HardwareAddr{2, 0, 0, 0, 0, n}, netip.Addr{}, 0)
		r.Peer, r.Withdraw = from, withdraw
		return r
	}
	var released []evpn.Route
	g := newGRHold(func(rs []evpn.Route) { released = append(released, rs...) }, func(string, ...any) {})
	t.Cleanup(g.stop)
	g.lock()
	defer g.unlock()

	if !g.filter(route(1, peer, true)) {
		t.Fatal("a withdrawal from a peer whose session is up was held")
	}
	g.begin(peer, time.Hour)
	for _, tc := range []struct {
		r    evpn.Route
		pass bool
	}{
		{route(1, peer, true), false},  // held
		{route(2, peer, true), false},  // held
		{route(2, peer, false), true},  // sent again: no longer held
		{route(3, other, true), true},  // another peer's: passes
		{route(4, peer, false), true},  // new from the restarting peer
		{route(5, peer, true), false},  // held
		{route(5, peer, false), true},  // sent again
		{route(5, peer, true), false},  // and withdrawn again: held
		{route(1, other, false), true}, // same NLRI from another peer
	} {
		if pass := g.filter(tc.r); pass != tc.pass {
			t.Errorf("route %s from %s (withdraw %v): passed %v, want %v", tc.r.NLRI, tc.r.Peer, tc.r.Withdraw, pass, tc.pass)
		}
	}
	out := g.endOfRIB(peer, nil)
	got := map[string]bool{}
	for _, r := range out {
		if !r.Withdraw || r.Peer != peer {
			t.Errorf("released %+v, want only withdrawals from %s", r, peer)
		}
		got[r.NLRI.Key()] = true
	}
	want := map[string]bool{route(1, peer, true).NLRI.Key(): true, route(5, peer, true).NLRI.Key(): true}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("End-of-RIB released %v, want %v", got, want)
	}
	if !g.filter(route(6, peer, true)) {
		t.Error("a withdrawal after End-of-RIB was held")
	}
	if len(released) != 0 {
		t.Errorf("released by a timer: %v", released)
	}

	// Back before anything was withdrawn (or, without graceful restart,
	// after GoBGP withdrew everything at once): no hold from then on.
	g.begin(peer, time.Hour)
	g.established(peer)
	if !g.filter(route(7, peer, true)) {
		t.Error("a withdrawal after the peer came back with nothing held was held")
	}
	// Back after GoBGP dropped its routes: the hold lasts until
	// End-of-RIB.
	g.begin(peer, time.Hour)
	g.filter(route(8, peer, true))
	g.established(peer)
	if g.filter(route(9, peer, true)) {
		t.Error("a withdrawal between the peer's return and its End-of-RIB passed")
	}
	if out := g.endOfRIB(peer, nil); len(out) != 2 {
		t.Errorf("End-of-RIB released %d withdrawals, want 2", len(out))
	}
}

func TestGRHoldExpires(t *testing.T) {
	peer := netip.MustParseAddr("10.0.0.2")
	seg := evpn.NewSegment(peer, 65000, evpn.PresetFRR, 100, "blue", "web", 100, nil, nil)
	r := seg.MACIPRoute(peer, net.HardwareAddr{2, 0, 0, 0, 0, 1}, netip.Addr{}, 0)
	r.Peer, r.Withdraw = peer, true
	done := make(chan []evpn.Route, 1)
	g := newGRHold(func(rs []evpn.Route) { done <- rs }, func(string, ...any) {})
	t.Cleanup(g.stop)
	g.lock()
	g.begin(peer, 50*time.Millisecond)
	held := !g.filter(r)
	g.unlock()
	if !held {
		t.Fatal("withdrawal passed during the restart")
	}
	select {
	case rs := <-done:
		if len(rs) != 1 || rs[0].NLRI.Key() != r.NLRI.Key() {
			t.Errorf("released %v, want the held withdrawal", rs)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the restart time ran out and nothing was released")
	}
	g.lock()
	defer g.unlock()
	if !g.filter(r) {
		t.Error("a withdrawal after the restart time was held")
	}
}

// relay stands between a helper and a restarting speaker, so the test can
// end their session as a crash does (the TCP connection just closes, no
// NOTIFICATION) and refuse the helper's reconnects while the speaker is
// down (accepted, then closed: the helper fails in OpenSent).
type relay struct {
	l      net.Listener
	to     string   // the speaker's listen address
	from   net.Addr // where the relay dials from: the helper's address
	mu     sync.Mutex
	refuse bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newRelay(t *testing.T, listen, to string, from netip.Addr) *relay {
	t.Helper()
	l, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{l: l, to: to, from: &net.TCPAddr{IP: from.AsSlice()}}
	r.wg.Add(1)
	go r.serve()
	t.Cleanup(func() {
		l.Close()
		r.cut(true)
		r.wg.Wait()
	})
	return r
}

func (r *relay) serve() {
	defer r.wg.Done()
	for {
		c, err := r.l.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		refuse := r.refuse
		r.mu.Unlock()
		if refuse {
			c.Close()
			continue
		}
		d := net.Dialer{LocalAddr: r.from, Timeout: 5 * time.Second}
		up, err := d.Dial("tcp", r.to)
		if err != nil {
			c.Close()
			continue
		}
		r.mu.Lock()
		r.conns = append(r.conns, c, up)
		r.mu.Unlock()
		r.wg.Add(2)
		go r.pipe(c, up)
		go r.pipe(up, c)
	}
}

func (r *relay) pipe(dst, src net.Conn) {
	defer r.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
}

// cut closes every relayed connection; refuse says what happens to the
// next ones.
func (r *relay) cut(refuse bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refuse = refuse
	for _, c := range r.conns {
		c.Close()
	}
	r.conns = nil
}

// A helper keeps a restarting peer's routes through a failed reconnect
// (GoBGP v3.37.0 drops them then), and withdraws what the peer did not
// send again once it is back and has sent End-of-RIB.
func TestGracefulRestartHelperHoldsThroughFailedReconnect(t *testing.T) {
	aAddr, bAddr := netip.MustParseAddr("127.0.0.61"), netip.MustParseAddr("127.0.0.62")
	portA, portB, portRelay := freePort(t), freePort(t), freePort(t)
	rl := newRelay(t, fmt.Sprintf("%s:%d", bAddr, portRelay), fmt.Sprintf("%s:%d", bAddr, portB), aAddr)
	gr := GracefulRestart{Enabled: true, RestartTime: 60 * time.Second}

	// A, the helper, reaches B only through the relay.
	a := New(testLogger().With("speaker", "a"))
	err := a.Start(context.Background(), Config{
		RouterID: aAddr, ASN: 65000, NextHop: netip.MustParseAddr("10.0.0.61"),
		ListenAddresses: []netip.Addr{aAddr}, ListenPort: portA,
		Peers:           []PeerConfig{{Address: bAddr, ASN: 65000, Port: uint16(portRelay)}},
		GracefulRestart: gr,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Stop)

	dirB := t.TempDir()
	startB := func(routes ...evpn.Route) *Server {
		t.Helper()
		b := New(testLogger().With("speaker", "b"))
		g := gr
		g.StateDir = dirB
		err := b.Start(context.Background(), Config{
			RouterID: bAddr, ASN: 65000, NextHop: netip.MustParseAddr("10.0.0.62"),
			ListenAddresses: []netip.Addr{bAddr}, ListenPort: portB,
			Peers:           []PeerConfig{{Address: aAddr, ASN: 65000, Passive: true}},
			GracefulRestart: g,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Stop)
		if err := b.Advertise(context.Background(), routes); err != nil {
			t.Fatal(err)
		}
		return b
	}
	seg := evpn.NewSegment(bAddr, 65000, evpn.PresetFRR, 100, "blue", "web", 100, nil, nil)
	vtepB := netip.MustParseAddr("10.0.0.62")
	r1 := seg.MACIPRoute(vtepB, net.HardwareAddr{2, 0, 0, 0, 0, 1}, netip.Addr{}, 0)
	r2 := seg.MACIPRoute(vtepB, net.HardwareAddr{2, 0, 0, 0, 0, 2}, netip.Addr{}, 0)
	k1, k2 := r1.NLRI.Key(), r2.NLRI.Key()

	got := map[string]bool{}
	withdrawn := map[string]int{}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.After(60 * time.Second)
		for !cond() {
			select {
			case batch := <-a.Events():
				for _, r := range batch {
					got[r.NLRI.Key()] = !r.Withdraw
					if r.Withdraw {
						withdrawn[r.NLRI.Key()]++
					}
				}
			case <-time.After(50 * time.Millisecond):
			case <-deadline:
				t.Fatalf("timed out waiting for %s; A has %v", what, got)
			}
		}
	}

	b := startB(r1, r2)
	waitFor("B's two routes at A", func() bool { return got[k1] && got[k2] })

	// B crashes: its session ends without a NOTIFICATION, and A's
	// reconnects fail in OpenSent until B is back.
	rl.cut(true)
	b.StopForRestart()
	b.bgp.Stop()
	heldAtA := func() int {
		a.hold.lock()
		defer a.hold.unlock()
		if hp := a.hold.peers[bAddr]; hp != nil {
			return len(hp.withdrawn)
		}
		return 0
	}
	waitFor("GoBGP at A to drop B's stale routes on a failed reconnect, and A to hold the withdrawals", func() bool {
		return heldAtA() == 2
	})
	if !got[k1] || !got[k2] || withdrawn[k1]+withdrawn[k2] != 0 {
		t.Fatalf("B's routes while B restarts: have %v, withdrawn %v; want both kept", got, withdrawn)
	}

	// B is back, sends r1 only, then End-of-RIB: r2 goes, r1 stays.
	rl.cut(false)
	startB(r1)
	waitFor("r2 withdrawn at A after B's End-of-RIB", func() bool { return !got[k2] })
	if !got[k1] || withdrawn[k1] != 0 {
		t.Errorf("r1, sent again by B: present %v, withdrawn %d times; want present, never withdrawn", got[k1], withdrawn[k1])
	}
	if n := heldAtA(); n != 0 {
		t.Errorf("A still holds %d withdrawals after B's End-of-RIB", n)
	}
}
