package integration

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
	"github.com/evpnd/evpnd/integration/lab"
)

// peerState waits until node's evpnd reports peer in state (or, with
// not, in any other state).
func peerState(t *testing.T, c evpndv1.EvpndServiceClient, peer string, want evpndv1.PeerState, not bool) {
	t.Helper()
	ctx := apiCtx(t)
	lab.Eventually(t, 2*converge, pollEvery, func() error {
		resp, err := c.ListPeers(ctx, &evpndv1.ListPeersRequest{})
		if err != nil {
			return err
		}
		for _, p := range resp.GetPeers() {
			if p.GetAddress() == peer && (p.GetState() == want) != not {
				return nil
			}
		}
		return fmt.Errorf("peer %s: want state %v (not=%v): %v", peer, want, not, resp.GetPeers())
	})
}

// reflecting waits until every host's evpnd has accepted as many EVPN
// paths from route reflector rr as from each other reflector, and some:
// rr then reflects everything, and the fabric survives losing any other
// one. An established session alone is not enough: a reflector back from
// a restart reflects one host's routes to the other only once both
// sessions are up and its update timers ran.
func reflecting(t *testing.T, clients []evpndv1.EvpndServiceClient, rr string) {
	t.Helper()
	ctx := apiCtx(t)
	lab.Eventually(t, 2*converge, pollEvery, func() error {
		for _, c := range clients {
			resp, err := c.ListPeers(ctx, &evpndv1.ListPeersRequest{})
			if err != nil {
				return err
			}
			accepted := map[string]uint64{}
			for _, p := range resp.GetPeers() {
				if p.GetState() == evpndv1.PeerState_PEER_STATE_ESTABLISHED {
					accepted[p.GetAddress()] = p.GetAccepted()
				}
			}
			for peer, n := range accepted {
				if accepted[rr] == 0 || n > accepted[rr] {
					return fmt.Errorf("%s reflects %d paths, %s %d (established: %v)", rr, accepted[rr], peer, n, accepted)
				}
			}
		}
		return nil
	})
}

// TestPrivilegedFaultsTwoReflectors runs a flow from vm1 to vm2 while the
// fabric around it fails: one route reflector stopped cleanly, then the
// other killed outright, each brought back; the hosts lose no packet,
// since every route is also held through the other reflector. Then
// host1's underlay link goes down and up: the flow resumes and host2
// never drops vm1's MAC.
func TestPrivilegedFaultsTwoReflectors(t *testing.T) {
	requireLab(t)
	if _, err := os.Stat(filepath.Join("..", "bin", "evpnd")); err != nil {
		t.Skip("bin/evpnd is missing: run make build")
	}
	l := lab.Up(t, "topologies/faults.clab.yml", lab.Options{})
	c1 := dialAPI(t, l, "host1")
	hosts := []evpndv1.EvpndServiceClient{c1, dialAPI(t, l, "host2")}
	vm2 := netip.MustParseAddr("172.31.1.2")
	for _, rr := range []string{"10.0.0.253", "10.0.0.254"} {
		peerState(t, c1, rr, evpndv1.PeerState_PEER_STATE_ESTABLISHED, false)
	}
	lab.Eventually(t, converge, pollEvery, func() error {
		return lab.TCPExchange(t, l.NS("vm1"), l.NS("vm2"), vm2, 7401)
	})
	mac1 := strings.TrimSpace(string(must(l.Exec("vm1", "cat", "/sys/class/net/eth1/address"))))
	host2 := l.TenantNS("host2", "blue")
	lab.Eventually(t, converge, pollEvery, func() error { return remoteFDB(host2, mac1) })
	for _, rr := range []string{"10.0.0.253", "10.0.0.254"} {
		reflecting(t, hosts, rr)
	}

	// A flow across everything, besides the ones per failure below.
	whole := startFlow(t, l.NS("vm1"), l.NS("vm2"), vm2, 7409, 2*time.Millisecond)
	for i, step := range []struct {
		rr, addr string
		stop     func(string) error
	}{
		{"rr1", "10.0.0.253", l.StopDaemons}, // clean: NOTIFICATION, routes withdrawn at once
		{"rr2", "10.0.0.254", l.KillDaemons}, // crash: found by the hold timer
	} {
		// One flow across the failure, one across the recovery.
		f := startFlow(t, l.NS("vm1"), l.NS("vm2"), vm2, uint16(7410+2*i), 2*time.Millisecond)
		f.waitFor(t, 200)
		if err := step.stop(step.rr); err != nil {
			t.Fatal(err)
		}
		peerState(t, c1, step.addr, evpndv1.PeerState_PEER_STATE_ESTABLISHED, true)
		f.waitFor(t, 200)
		if err := remoteFDB(host2, mac1); err != nil {
			t.Fatalf("with %s down: %v", step.rr, err)
		}
		if lost := f.Lost(t); lost != 0 {
			t.Errorf("%s failing: the flow lost %d of %d datagrams", step.rr, lost, f.sent.Load())
		}
		f = startFlow(t, l.NS("vm1"), l.NS("vm2"), vm2, uint16(7411+2*i), 2*time.Millisecond)
		f.waitFor(t, 200)
		if err := l.StartDaemons(step.rr); err != nil {
			t.Fatal(err)
		}
		peerState(t, c1, step.addr, evpndv1.PeerState_PEER_STATE_ESTABLISHED, false)
		// Before the other reflector fails, this one must carry every
		// route again: otherwise the test fails both at once.
		reflecting(t, hosts, step.addr)
		f.waitFor(t, 200)
		if lost := f.Lost(t); lost != 0 {
			t.Errorf("%s coming back: the flow lost %d of %d datagrams", step.rr, lost, f.sent.Load())
		}
	}

	if lost := whole.Lost(t); lost != 0 {
		t.Errorf("across both failures and recoveries the flow lost %d of %d datagrams", lost, whole.sent.Load())
	}

	// The underlay link of host1 goes down for a moment (shorter than the
	// hold time): packets sent meanwhile are lost, nothing else is.
	must(l.Exec("host1", "ip", "link", "set", "eth1", "down"))
	if err := remoteFDB(host2, mac1); err != nil {
		t.Fatalf("with host1's underlay down: %v", err)
	}
	must(l.Exec("host1", "ip", "link", "set", "eth1", "up"))
	lab.Eventually(t, converge, pollEvery, func() error {
		return lab.TCPExchange(t, l.NS("vm1"), l.NS("vm2"), vm2, 7403)
	})
	if err := remoteFDB(host2, mac1); err != nil {
		t.Fatalf("after host1's underlay came back: %v", err)
	}
	after := startFlow(t, l.NS("vm1"), l.NS("vm2"), vm2, 7404, 2*time.Millisecond)
	after.waitFor(t, 200)
	if lost := after.Lost(t); lost != 0 {
		t.Fatalf("after the underlay came back the flow lost %d of %d datagrams", lost, after.sent.Load())
	}
}

// TestPrivilegedFaultsToRRestart restarts the FRR ToR the evpnd leaves
// peer with over eBGP (FRR 8.4 does no graceful restart for EVPN, so the
// leaves lose the routes while it is down): once it is back, the sessions
// come up again, the leaves learn each other's MACs again, and a flow
// between their workloads runs without loss.
func TestPrivilegedFaultsToRRestart(t *testing.T) {
	requireLab(t)
	if _, err := os.Stat(filepath.Join("..", "bin", "evpnd")); err != nil {
		t.Skip("bin/evpnd is missing: run make build")
	}
	l := lab.Up(t, "topologies/l2-ebgp.clab.yml", lab.Options{})
	c1 := dialAPI(t, l, "host1")
	vm2 := netip.MustParseAddr("172.31.1.2")
	lab.Eventually(t, converge, pollEvery, func() error {
		return lab.TCPExchange(t, l.NS("vm1"), l.NS("vm2"), vm2, 7501)
	})
	resp, err := c1.ListPeers(apiCtx(t), &evpndv1.ListPeersRequest{})
	if err != nil || len(resp.GetPeers()) != 1 {
		t.Fatalf("host1 peers: %v, %v; want the ToR alone", resp.GetPeers(), err)
	}
	tor := resp.GetPeers()[0].GetAddress()

	if err := l.StopDaemons("tor"); err != nil {
		t.Fatal(err)
	}
	peerState(t, c1, tor, evpndv1.PeerState_PEER_STATE_ESTABLISHED, true)
	if err := l.StartDaemons("tor"); err != nil {
		t.Fatal(err)
	}
	peerState(t, c1, tor, evpndv1.PeerState_PEER_STATE_ESTABLISHED, false)
	lab.Eventually(t, converge, pollEvery, func() error {
		return lab.TCPExchange(t, l.NS("vm1"), l.NS("vm2"), vm2, 7502)
	})
	f := startFlow(t, l.NS("vm1"), l.NS("vm2"), vm2, 7503, 2*time.Millisecond)
	f.waitFor(t, 500)
	if lost := f.Lost(t); lost != 0 {
		t.Fatalf("after the ToR came back the flow lost %d of %d datagrams", lost, f.sent.Load())
	}
}
