package policy

import (
	"context"
	"errors"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
)

func filterPolicy() Policy {
	return Policy{
		Tenant:     "blue",
		PortGroups: []PortGroup{{Name: "g", Ports: []string{"tap-a", "tap-b"}}},
		Segments:   []SegmentDefault{{Segment: "web", Ingress: ActionDeny}, {Segment: "db", Ingress: ActionReject}},
		Rules: []Rule{
			{Name: "web-8080", Direction: Ingress, Target: Target{Port: "tap-a"}, Protocol: ProtoTCP, Ports: []PortRange{{8080, 8080}}, Action: ActionAllow},
			{Name: "rej-9090", Direction: Ingress, Target: Target{Port: "tap-a"}, Protocol: ProtoTCP, Ports: []PortRange{{9090, 9090}}, Action: ActionReject},
			{Name: "g-6000", Direction: Ingress, Target: Target{PortGroup: "g"}, Protocol: ProtoTCP, Ports: []PortRange{{6000, 6000}}, Action: ActionAllow},
			{Name: "ping", Direction: Ingress, Target: Target{Segment: "web"}, Protocol: ProtoICMP, ICMPTypes: []uint8{8}, Action: ActionAllow},
			{Name: "no-egress-7777", Direction: Egress, Target: Target{Segment: "db"}, Protocol: ProtoTCP, Ports: []PortRange{{7777, 7777}}, Action: ActionDeny},
		},
	}
}

func TestPrivilegedFilter(t *testing.T) {
	l := newLab(t)
	e := newEngine(t)
	ctx := context.Background()
	b := l.binding()
	for port, a := range map[string]string{"tap-a": "10.0.1.11", "tap-c": "10.0.2.21"} {
		if err := e.SetPortAddresses(ctx, "blue", port, []netip.Addr{netip.MustParseAddr(a)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Apply(ctx, b, filterPolicy()); err != nil {
		t.Fatalf("apply: %v\n%s", err, l.nftList())
	}
	w1, w2, w3 := l.w["w1"], l.w["w2"], l.w["w3"]
	for _, p := range []int{8080, 9090, 7070, 6000} {
		l.listenTCP(w1, p)
		l.listenTCP(w2, p)
	}
	l.listenTCP(w3, 5432)
	l.listenTCP(w1, 7777)

	// Bridged and routed allowed flows, with replies (stateful).
	long, err := l.dialTCP(w2, "10.0.1.11:8080")
	if err != nil {
		t.Fatalf("bridged tcp to allowed port: %v", err)
	}
	if err := echo(long); err != nil {
		t.Fatalf("echo over allowed flow: %v", err)
	}
	if c, err := l.dialTCP(w3, "10.0.1.11:8080"); err != nil || echo(c) != nil {
		t.Fatalf("routed tcp to allowed port: %v", err)
	}
	if _, err := l.dialTCP(w2, "10.0.1.11:9090"); !isRefused(err) {
		t.Errorf("reject rule: want connection refused (tcp reset), got %v", err)
	}
	if _, err := l.dialTCP(w2, "10.0.1.11:7070"); !isTimeout(err) {
		t.Errorf("segment default deny: want timeout, got %v", err)
	}
	if _, err := l.dialTCP(w1, "10.0.2.21:5432"); !isRefused(err) {
		t.Errorf("segment default reject: want connection refused, got %v", err)
	}
	if !l.ping(w2, "10.0.1.11") {
		t.Errorf("icmp echo allowed by segment rule got no reply")
	}
	if l.ping(w1, "10.0.2.21") {
		t.Errorf("icmp echo to db segment (default reject) got a reply")
	}
	if _, err := l.dialTCP(w3, "10.0.1.11:7777"); !isTimeout(err) {
		t.Errorf("segment egress deny: want timeout, got %v", err)
	}
	// tap-b's address is not learned: its group rule does not apply yet,
	// the segment default (found through the bridge port mark) does.
	if _, err := l.dialTCP(w1, "10.0.1.12:6000"); !isTimeout(err) {
		t.Errorf("group rule before address learned: want timeout, got %v", err)
	}
	if err := e.SetPortAddresses(ctx, "blue", "tap-b", []netip.Addr{netip.MustParseAddr("10.0.1.12")}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.dialTCP(w1, "10.0.1.12:6000"); err != nil {
		t.Errorf("group rule after address learned: %v", err)
	}

	cs := counters(t, e)
	// The segment defaults count what no rule decided: web's deny (7070),
	// db's reject (5432, the ping) and db's egress, an allow where db has
	// rules (w3's connections out).
	for _, r := range []string{"web-8080", "rej-9090", "ping", "no-egress-7777", "g-6000",
		"default:web:ingress", "default:db:ingress", "default:db:egress"} {
		if cs[r].Packets == 0 {
			t.Errorf("counter of %s did not move: %+v", r, cs[r])
		}
	}
	if c, ok := cs["default:web:egress"]; ok {
		t.Errorf("web's egress default is counted (%+v), but web has no egress rules and allows", c)
	}
	before, denied := cs["web-8080"].Packets, cs["default:web:ingress"].Packets

	// A change of other rules keeps the established flow and the counters;
	// new connections follow the new rules.
	p2 := filterPolicy()
	p2.Rules[0].Ports = []PortRange{{7070, 7070}}
	p2.Rules[0].Name = "web-7070"
	p2.Rules = append(p2.Rules, Rule{Name: "web-8080", Priority: 1, Direction: Ingress, Target: Target{Port: "tap-a"}, Protocol: ProtoTCP, Ports: []PortRange{{8081, 8081}}, Action: ActionAllow})
	if _, err := e.Apply(ctx, b, p2); err != nil {
		t.Fatal(err)
	}
	if err := echo(long); err != nil {
		t.Errorf("established flow cut by an apply: %v", err)
	}
	if _, err := l.dialTCP(w2, "10.0.1.11:8080"); !isTimeout(err) {
		t.Errorf("new connection to a port no longer allowed: want timeout, got %v", err)
	}
	if _, err := l.dialTCP(w2, "10.0.1.11:7070"); err != nil {
		t.Errorf("new connection to a newly allowed port: %v", err)
	}
	cs = counters(t, e)
	if got := cs["web-8080"].Packets; got < before {
		t.Errorf("counter of rule web-8080 went back from %d to %d over an apply", before, got)
	}
	// The connection to 8080 the new rules deny went to web's default.
	if got := cs["default:web:ingress"].Packets; got <= denied {
		t.Errorf("web's ingress default counted %d before an apply and %d after a connection it denied", denied, got)
	}

	// A policy that fails validation names the fields and changes nothing.
	bad := p2
	bad.Rules = append(append([]Rule(nil), p2.Rules...), Rule{Name: "bad", Direction: Ingress, Target: Target{Port: "tap-x"}, Protocol: ProtoUDP, ICMPTypes: []uint8{8}, Action: ActionAllow})
	_, err = e.Apply(ctx, b, bad)
	var ve *ValidationError
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), `rules[6].target.port: "tap-x"`) || !strings.Contains(err.Error(), "rules[6].icmpTypes") {
		t.Fatalf("want validation error naming rules[6].target.port and rules[6].icmpTypes, got %v", err)
	}
	if _, err := l.dialTCP(w2, "10.0.1.11:7070"); err != nil {
		t.Errorf("previous ruleset not in force after a validation failure: %v", err)
	}

	// A batch the kernel refuses (a chain name longer than the kernel
	// allows, from a port name nothing checks) leaves the old ruleset.
	long255 := strings.Repeat("x", 260)
	rb := b
	rb.Segments = append([]SegmentBinding(nil), b.Segments...)
	rb.Segments[1] = SegmentBinding{Name: "db", Bridge: "br200", Ports: []string{"tap-c", long255}}
	refused := p2
	refused.Rules = append(append([]Rule(nil), p2.Rules...), Rule{Name: "long", Direction: Ingress, Target: Target{Port: long255}, Action: ActionAllow})
	refused.Rules[0].Ports = []PortRange{{9999, 9999}}
	if _, err := e.Apply(ctx, rb, refused); err == nil {
		t.Fatal("kernel accepted a chain name longer than NFT_CHAIN_MAXNAMELEN")
	} else {
		t.Logf("refused as expected: %v", err)
	}
	if _, err := l.dialTCP(w2, "10.0.1.11:7070"); err != nil {
		t.Errorf("previous ruleset not in force after a kernel refusal: %v", err)
	}
	if err := echo(long); err != nil {
		t.Errorf("established flow cut by a refused apply: %v", err)
	}

	if err := e.Remove(ctx, "blue"); err != nil {
		t.Fatal(err)
	}
	if out := l.nftList(); strings.Contains(out, "evpnd") {
		t.Errorf("tables left after remove:\n%s", out)
	}
	if _, err := l.dialTCP(w2, "10.0.1.11:7070"); err != nil {
		t.Errorf("after remove everything passes: %v", err)
	}
}

// TestPrivilegedRuleEditRetriesQoS: an edit of rules alone leaves QoS as
// the last apply made it, but one whose QoS failed is tried again.
func TestPrivilegedRuleEditRetriesQoS(t *testing.T) {
	l := newLab(t)
	e, log := newLoggedEngine(t)
	ctx := context.Background()
	// A root qdisc that is not evpnd's: QoS on tap-b fails until it goes.
	run(t, "ip", "netns", "exec", l.tenant, "tc", "qdisc", "add", "dev", "tap-b", "root", "handle", "10:", "tbf", "rate", "1mbit", "burst", "10kb", "latency", "50ms")
	p := filterPolicy()
	p.QoS = []PortQoS{{Port: "tap-b", EgressRate: 10e6}}
	if _, err := e.Apply(ctx, l.binding(), p); err == nil || !strings.Contains(err.Error(), "qos failed") {
		t.Fatalf("apply with a foreign qdisc on tap-b: want a qos error, got %v", err)
	}
	run(t, "ip", "netns", "exec", l.tenant, "tc", "qdisc", "del", "dev", "tap-b", "root")
	p.Rules = append([]Rule(nil), p.Rules...)
	p.Rules[0].Ports = []PortRange{{8088, 8088}}
	if _, err := e.Apply(ctx, l.binding(), p); err != nil {
		t.Fatalf("rule edit: %v", err)
	}
	if !log.last() {
		t.Fatal("rule edit was not applied incrementally")
	}
	out, err := exec.Command("ip", "netns", "exec", l.tenant, "tc", "qdisc", "show", "dev", "tap-b").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "htb") {
		t.Fatalf("tap-b after a rule edit that follows a failed qos: %v\n%s", err, out)
	}
}
