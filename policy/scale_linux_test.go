package policy

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func scalePolicy(n int) Policy {
	p := Policy{Tenant: "blue",
		AddressGroups: []AddressGroup{{Name: "nets", Prefixes: []netip.Prefix{netip.MustParsePrefix("10.200.0.0/16"), netip.MustParsePrefix("fd00:200::/48")}}},
		PortGroups:    []PortGroup{{Name: "g", Ports: []string{"tap-a", "tap-b"}}},
		Segments:      []SegmentDefault{{Segment: "web", Ingress: ActionDeny}},
	}
	ports := []Target{{Port: "tap-a"}, {Port: "tap-b"}, {PortGroup: "g"}, {Segment: "db"}}
	for i := 0; i < n; i++ {
		r := Rule{Name: fmt.Sprintf("r%d", i), Priority: i, Direction: Direction(i%2 + 1), Target: ports[i%len(ports)],
			Protocol: ProtoTCP, Ports: []PortRange{{uint16(1000 + i%60000), uint16(1000 + i%60000)}}, Action: ActionAllow}
		if i%3 == 0 {
			r.Remote.Prefixes = []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 100, byte(i >> 8), byte(i)}), 32)}
		}
		if i%5 == 0 {
			r.Remote = Remote{AddressGroup: "nets"}
		}
		p.Rules = append(p.Rules, r)
	}
	return p
}

// TestPrivilegedScale logs how long compile and apply take for large
// policies and for a one-rule change; it asserts only correctness.
func TestPrivilegedScale(t *testing.T) {
	if testing.Short() {
		t.Skip("scale figures skipped in -short")
	}
	l := newLab(t)
	e := newEngine(t)
	ctx := context.Background()
	for _, a := range [][2]string{{"tap-a", "10.0.1.11"}, {"tap-b", "10.0.1.12"}, {"tap-c", "10.0.2.21"}} {
		if err := e.SetPortAddresses(ctx, "blue", a[0], []netip.Addr{netip.MustParseAddr(a[1])}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []int{1000, 10000} {
		p := scalePolicy(n)
		start := time.Now()
		rs, err := Compile(p, l.binding(), nil)
		if err != nil {
			t.Fatal(err)
		}
		compile := time.Since(start)
		nrules := 0
		for _, c := range rs.inet.chains {
			nrules += len(c.rules)
		}
		start = time.Now()
		if _, err := e.Apply(ctx, l.binding(), p); err != nil {
			t.Fatal(err)
		}
		first := time.Since(start)
		p.Rules[n/2].Ports = []PortRange{{65000, 65000}}
		start = time.Now()
		if _, err := e.Apply(ctx, l.binding(), p); err != nil {
			t.Fatal(err)
		}
		change := time.Since(start)
		start = time.Now()
		if err := e.SetPortAddresses(ctx, "blue", "tap-b", []netip.Addr{netip.MustParseAddr("10.0.1.12"), netip.MustParseAddr("10.0.1.13")}); err != nil {
			t.Fatal(err)
		}
		addr := time.Since(start)
		start = time.Now()
		cs, err := e.Counters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		read := time.Since(start)
		// One per rule, and two defaults: web's ingress (deny) and db's
		// egress (allow, where db has rules).
		defaults := 0
		for _, c := range cs {
			if c.Rule == "default:web:ingress" || c.Rule == "default:db:egress" {
				defaults++
			}
		}
		if len(cs) != n+2 || defaults != 2 {
			t.Errorf("%d counters, %d of them the two defaults; want %d, 2", len(cs), defaults, n+2)
		}
		t.Logf("%5d rules (%d nftables rules): compile %v, first apply %v, one-rule change %v, address update %v, counters %v",
			n, nrules, compile.Round(time.Millisecond), first.Round(time.Millisecond), change.Round(time.Millisecond),
			addr.Round(time.Microsecond), read.Round(time.Millisecond))
	}
	// The ruleset still filters after the large replace: rule r2 (group g,
	// ingress, no remote) allows port 1002 to tap-b; nothing allows 1003.
	l.listenTCP(l.w["w2"], 1002)
	l.listenTCP(l.w["w2"], 1003)
	if _, err := l.dialTCP(l.w["w1"], "10.0.1.12:1002"); err != nil {
		t.Errorf("allowed port after 10k rule apply: %v", err)
	}
	if _, err := l.dialTCP(l.w["w1"], "10.0.1.12:1003"); !isTimeout(err) {
		t.Errorf("port not allowed to tap-b after 10k rule apply: want timeout, got %v", err)
	}
}
