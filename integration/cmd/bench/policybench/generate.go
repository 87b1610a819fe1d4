package policybench

import (
	"fmt"
	"net/netip"

	"github.com/evpnd/evpnd/policy"
)

// The tenant layout every benchmark tenant has, as evpnd's fabric builds
// it: two segment bridges with gateway addresses and five workload ports.
// Only tap-a and tap-b have workload namespaces (for traffic); the other
// ports' peers stay idle in the tenant namespace.
var layout = []segment{
	{name: "web", bridge: "br100", gw: netip.MustParsePrefix("10.0.1.1/24"), ports: []port{
		{name: "tap-a", addr: netip.MustParsePrefix("10.0.1.11/24")},
		{name: "tap-b", addr: netip.MustParsePrefix("10.0.1.12/24")},
		{name: "tap-c", addr: netip.MustParsePrefix("10.0.1.13/24")},
	}},
	{name: "db", bridge: "br200", gw: netip.MustParsePrefix("10.0.2.1/24"), ports: []port{
		{name: "tap-d", addr: netip.MustParsePrefix("10.0.2.21/24")},
		{name: "tap-e", addr: netip.MustParsePrefix("10.0.2.22/24")},
	}},
}

type segment struct {
	name, bridge string
	gw           netip.Prefix
	ports        []port
}

type port struct {
	name string
	addr netip.Prefix // the workload's address, learned on the port
}

// The measured flow: from the workload on flowClient to the one on
// flowServer, TCP to flowPort. Generated rules use ports below flowPort,
// so only FlowRule allows it.
const (
	flowClient = "tap-a"
	flowServer = "tap-b"
	flowPort   = 5201
	// FlowRule is the name of the rule that allows the measured flow.
	FlowRule = "bench-flow"
)

// Binding is how the engine finds a benchmark tenant in namespace.
func Binding(tenant, namespace string) policy.Binding {
	b := policy.Binding{Tenant: tenant, Namespace: namespace}
	for _, s := range layout {
		sb := policy.SegmentBinding{Name: s.name, Bridge: s.bridge}
		for _, p := range s.ports {
			sb.Ports = append(sb.Ports, p.name)
		}
		b.Segments = append(b.Segments, sb)
	}
	return b
}

// Generate returns a policy of n rules (n >= 1) for tenant over the
// benchmark layout, a deterministic mix like a security-group policy:
// targets are single ports, port groups and segments; two thirds ingress;
// 60% TCP and 36% UDP on single ports and ranges, 4% ICMP and ICMPv6;
// remotes are address groups (nftables sets), literal prefixes (v4, some
// with v6) or any; a few deny and reject rules; both segments deny
// ingress by default. The last rule, FlowRule, is the only one allowing
// the measured flow and is evaluated after all others of its port.
func Generate(tenant string, n int) policy.Policy {
	p := policy.Policy{
		Tenant: tenant,
		PortGroups: []policy.PortGroup{
			{Name: "web-servers", Ports: []string{"tap-a", "tap-b"}},
			{Name: "front", Ports: []string{"tap-a", "tap-c"}},
			{Name: "db-servers", Ports: []string{"tap-d", "tap-e"}},
			{Name: "all", Ports: []string{"tap-a", "tap-b", "tap-c", "tap-d", "tap-e"}},
		},
		Segments: []policy.SegmentDefault{
			{Segment: "web", Ingress: policy.ActionDeny},
			{Segment: "db", Ingress: policy.ActionDeny},
		},
	}
	// One address group per 50 rules, 1..16, of 48 IPv4 and 16 IPv6
	// prefixes each.
	groups := min(max(n/50, 1), 16)
	for g := range groups {
		ag := policy.AddressGroup{Name: fmt.Sprintf("ag%02d", g)}
		for j := range 48 {
			if j%3 == 0 {
				ag.Prefixes = append(ag.Prefixes, netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(16 + g), byte(j), 0}), 24))
			} else {
				ag.Prefixes = append(ag.Prefixes, netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(16 + g), 200, byte(j)}), 32))
			}
		}
		for j := range 16 {
			a := netip.AddrFrom16([16]byte{0xfd, 0, 0, byte(g), 0, byte(j)})
			ag.Prefixes = append(ag.Prefixes, netip.PrefixFrom(a, 64))
		}
		p.AddressGroups = append(p.AddressGroups, ag)
	}
	targets := []policy.Target{
		{Port: "tap-a"}, {Port: "tap-b"}, {Port: "tap-c"}, {Port: "tap-d"}, {Port: "tap-e"},
		{PortGroup: "web-servers"}, {PortGroup: "front"}, {PortGroup: "db-servers"}, {PortGroup: "all"},
		{Segment: "web"}, {Segment: "db"},
	}
	for i := range n - 1 {
		r := policy.Rule{
			Name:      fmt.Sprintf("r%05d", i),
			Priority:  i,
			Direction: policy.Ingress,
			Target:    targets[i%len(targets)],
			Action:    policy.ActionAllow,
		}
		if i%3 == 2 {
			r.Direction = policy.Egress
		}
		switch {
		case i%23 == 0:
			r.Action = policy.ActionDeny
		case i%31 == 0:
			r.Action = policy.ActionReject
		}
		group := fmt.Sprintf("ag%02d", (i/6)%groups)
		switch i % 6 {
		case 0, 1:
			r.Remote.AddressGroup = group
		case 2:
			r.Remote.Prefixes = []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 100, byte(i >> 8), byte(i)}), 32)}
		case 3:
			r.Remote.Prefixes = []netip.Prefix{
				netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 101, byte(i >> 8), 0}), 24),
				netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 1, 0, 0, byte(i >> 8), byte(i)}), 64),
			}
		}
		// Ports stay within 1024..5032, below flowPort.
		base := uint16(1024 + (i*37)%4000)
		switch {
		case i%50 == 18:
			r.Protocol, r.ICMPTypes = policy.ProtoICMP, []uint8{8}
		case i%50 == 43:
			r.Protocol, r.ICMPTypes = policy.ProtoICMPv6, []uint8{128}
			if i%6 == 2 { // an IPv4-only remote cannot match ICMPv6
				r.Remote = policy.Remote{AddressGroup: group}
			}
		case i%5 < 3:
			r.Protocol = policy.ProtoTCP
		default:
			r.Protocol = policy.ProtoUDP
		}
		if r.Protocol == policy.ProtoTCP || r.Protocol == policy.ProtoUDP {
			switch {
			case i%7 == 0:
				r.Ports = []policy.PortRange{{From: base, To: base + 9}}
			case i%11 == 3:
				other := uint16(1024 + (i*53)%4000)
				r.Ports = []policy.PortRange{{From: base, To: base}, {From: other, To: other}}
			default:
				r.Ports = []policy.PortRange{{From: base, To: base}}
			}
		}
		p.Rules = append(p.Rules, r)
	}
	p.Rules = append(p.Rules, policy.Rule{
		Name: FlowRule, Priority: n, Direction: policy.Ingress, Target: policy.Target{Port: flowServer},
		Remote:   policy.Remote{Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.1.0/24")}},
		Protocol: policy.ProtoTCP, Ports: []policy.PortRange{{From: flowPort, To: flowPort}}, Action: policy.ActionAllow,
	})
	return p
}

// ChangeOne returns p with one rule's ports changed, as an operator
// editing one rule of a large policy would.
func ChangeOne(p policy.Policy, rule int, to uint16) policy.Policy {
	q := p
	q.Rules = append([]policy.Rule(nil), p.Rules...)
	r := q.Rules[rule]
	r.Protocol, r.ICMPTypes = policy.ProtoTCP, nil
	r.Ports = []policy.PortRange{{From: to, To: to}}
	if len(r.Remote.Prefixes) > 0 {
		// Keep an IPv4 remote so the rule stays valid and meaningful.
		r.Remote = policy.Remote{Prefixes: r.Remote.Prefixes[:1]}
	}
	q.Rules[rule] = r
	return q
}
