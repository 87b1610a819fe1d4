package policy

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func waitPeer(t *testing.T, peers <-chan netip.AddrPort, what string) netip.Addr {
	t.Helper()
	select {
	case p := <-peers:
		return p.Addr()
	case <-time.After(2 * time.Second):
		t.Fatalf("%s: no connection arrived", what)
	}
	return netip.Addr{}
}

func TestPrivilegedNAT(t *testing.T) {
	l := newLab(t)
	e := newEngine(t)
	ctx := context.Background()
	w1, w3 := l.w["w1"], l.w["w3"]
	outPeers := l.listenTCP(l.out, 80)
	w1Peers := l.listenTCP(w1, 8080)
	w3Peers := l.listenTCP(w3, 22)

	// Masquerade: tenant egress leaves with the uplink's address.
	p := Policy{Tenant: "blue", NAT: &NAT{Masquerade: true}}
	if _, err := e.Apply(ctx, l.binding(), p); err != nil {
		t.Fatalf("apply: %v\n%s", err, l.nftList())
	}
	if _, err := l.dialTCP(l.w["w2"], "192.0.2.2:80"); err != nil {
		t.Fatalf("masquerade: %v", err)
	}
	if got := waitPeer(t, outPeers, "masquerade"); got != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("masquerade: outside saw %s, want 192.0.2.1", got)
	}

	// SNAT, a floating IP both ways and a port forward.
	p.NAT = &NAT{
		SNAT:         netip.MustParseAddr("198.51.100.1"),
		FloatingIPs:  []FloatingIP{{External: netip.MustParseAddr("198.51.100.10"), Internal: netip.MustParseAddr("10.0.1.11")}},
		PortForwards: []PortForward{{External: netip.MustParseAddr("198.51.100.1"), Protocol: ProtoTCP, Port: 2222, Internal: netip.MustParseAddr("10.0.2.21"), InternalPort: 22}},
	}
	if _, err := e.Apply(ctx, l.binding(), p); err != nil {
		t.Fatalf("apply: %v\n%s", err, l.nftList())
	}
	for _, c := range []struct {
		from, want string
	}{{l.w["w2"], "198.51.100.1"}, {w1, "198.51.100.10"}} {
		if _, err := l.dialTCP(c.from, "192.0.2.2:80"); err != nil {
			t.Fatalf("snat from %s: %v", c.from, err)
		}
		if got := waitPeer(t, outPeers, "snat"); got.String() != c.want {
			t.Errorf("snat from %s: outside saw %s, want %s", c.from, got, c.want)
		}
	}
	c, err := l.dialTCP(l.out, "198.51.100.10:8080")
	if err != nil {
		t.Fatalf("floating ip dnat: %v\n%s", err, l.nftList())
	}
	if err := echo(c); err != nil {
		t.Errorf("floating ip flow: %v", err)
	}
	if got := waitPeer(t, w1Peers, "floating ip"); got != netip.MustParseAddr("192.0.2.2") {
		t.Errorf("floating ip: workload saw %s, want 192.0.2.2", got)
	}
	if _, err := l.dialTCP(l.out, "198.51.100.1:2222"); err != nil {
		t.Fatalf("port forward: %v", err)
	}
	if got := waitPeer(t, w3Peers, "port forward"); got != netip.MustParseAddr("192.0.2.2") {
		t.Errorf("port forward: workload saw %s", got)
	}
	// Ingress rules apply to translated traffic: deny the floating IP's
	// workload from outside.
	if err := e.SetPortAddresses(ctx, "blue", "tap-a", []netip.Addr{netip.MustParseAddr("10.0.1.11")}); err != nil {
		t.Fatal(err)
	}
	p.Rules = []Rule{{Name: "no-outside", Direction: Ingress, Target: Target{Port: "tap-a"},
		Remote: Remote{Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}, Action: ActionDeny}}
	if _, err := e.Apply(ctx, l.binding(), p); err != nil {
		t.Fatal(err)
	}
	if _, err := l.dialTCP(l.out, fmt.Sprintf("%s:8080", "198.51.100.10")); !isTimeout(err) {
		t.Errorf("ingress deny behind a floating ip: want timeout, got %v", err)
	}
}
