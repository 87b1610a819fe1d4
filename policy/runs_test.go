package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// randomChain is a chain's worth of random rules over a small space of
// addresses, ports and types, so that they overlap often.
func randomChain(rng *rand.Rand, n int) Policy {
	p := Policy{Tenant: "blue", AddressGroups: []AddressGroup{
		{Name: "ga", Prefixes: []netip.Prefix{pfx("10.0.0.0/30"), pfx("fd00::/126")}},
		{Name: "gb", Prefixes: []netip.Prefix{pfx("10.0.0.4/31")}},
	}}
	protos := []Protocol{ProtoTCP, ProtoTCP, ProtoUDP, ProtoICMP, ProtoICMPv6, ProtoAny}
	actions := []Action{ActionAllow, ActionAllow, ActionDeny, ActionReject}
	for i := range n {
		r := Rule{Name: fmt.Sprintf("r%d", i), Priority: rng.IntN(n), Direction: Ingress, Target: Target{Port: "tap-a"},
			Protocol: protos[rng.IntN(len(protos))], Action: actions[rng.IntN(len(actions))], Log: rng.IntN(10) == 0}
		switch r.Protocol {
		case ProtoTCP, ProtoUDP:
			for range rng.IntN(3) {
				from := uint16(rng.IntN(12))
				r.Ports = append(r.Ports, PortRange{from, from + uint16(rng.IntN(3))})
			}
		case ProtoICMP, ProtoICMPv6:
			for range rng.IntN(3) {
				r.ICMPTypes = append(r.ICMPTypes, uint8(rng.IntN(6)))
			}
		}
		switch rng.IntN(4) {
		case 1:
			r.Remote.AddressGroup = []string{"ga", "gb"}[rng.IntN(2)]
		case 2:
			r.Remote.Prefixes = []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(rng.IntN(8))}), 30+rng.IntN(3))}
		case 3:
			r.Remote.Prefixes = []netip.Prefix{netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 15: byte(rng.IntN(8))}), 126+rng.IntN(3))}
		}
		p.Rules = append(p.Rules, r)
	}
	slices.SortStableFunc(p.Rules, func(a, b Rule) int { return a.Priority - b.Priority })
	return p
}

// packet is what a rule looks at.
type packet struct {
	remote netip.Addr
	proto  Protocol
	port   uint16 // destination port, or ICMP type
}

func (c *compiler) matches(r Rule, k packet) bool {
	if r.Protocol != ProtoAny && r.Protocol != k.proto {
		return false
	}
	if r.Protocol == ProtoICMP && !k.remote.Is4() || r.Protocol == ProtoICMPv6 && k.remote.Is4() {
		return false
	}
	if len(r.Ports) > 0 && !slices.ContainsFunc(r.Ports, func(p PortRange) bool { return p.From <= k.port && k.port <= p.To }) {
		return false
	}
	if len(r.ICMPTypes) > 0 && !slices.Contains(r.ICMPTypes, uint8(k.port)) {
		return false
	}
	if len(r.Remote.Prefixes) == 0 && r.Remote.AddressGroup == "" {
		return true
	}
	in := slices.ContainsFunc(r.Remote.Prefixes, func(p netip.Prefix) bool { return p.Contains(k.remote) })
	for _, g := range c.p.AddressGroups {
		if g.Name == r.Remote.AddressGroup && slices.ContainsFunc(g.Prefixes, func(p netip.Prefix) bool { return p.Contains(k.remote) }) {
			in = true
		}
	}
	return in
}

// TestRunsKeepFirstMatch checks what lets a chain be evaluated level by
// level with runs: for random chains and every packet of their small
// space, the rule that decides the packet in priority order is the one
// the compiled chain meets first (levels in order; in a level, the runs
// and then the kernel rules), and it is the only rule of its level that
// matches.
func TestRunsKeepFirstMatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	var addrs []netip.Addr
	for i := range 9 {
		addrs = append(addrs, netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), netip.AddrFrom16([16]byte{0xfd, 15: byte(i)}))
	}
	merges, leveled := 0, 0
	for round := range 300 {
		p := randomChain(rng, 2+rng.IntN(14))
		c := &compiler{p: p, rs: &Ruleset{runs: map[string][]string{}, spaces: map[string][]space{}, levels: map[string][]int{}}, inet: &nftTable{}, ruleSets: map[string]bool{}, merged: map[string]bool{}, marks: map[uint32]bool{}}
		c.chainRules("in_port_tap-a", Ingress, p.Rules)
		level := levels(c.rs.spaces["in_port_tap-a"])
		merges += len(c.merged)
		for i, r := range p.Rules {
			if c.merged[r.Name] && level[i] > 0 {
				leveled++
			}
		}
		for _, a := range addrs {
			for _, proto := range []Protocol{ProtoTCP, ProtoUDP, ProtoICMP, ProtoICMPv6, ProtoAny} {
				for port := range uint16(16) {
					k := packet{a, proto, port}
					want := slices.IndexFunc(p.Rules, func(r Rule) bool { return c.matches(r, k) })
					got := -1
					for l := 0; l <= len(p.Rules) && got < 0; l++ {
						for i, r := range p.Rules {
							if level[i] != l || !c.matches(r, k) {
								continue
							}
							if got >= 0 {
								t.Fatalf("round %d: %+v matches rules %s and %s of level %d", round, k, p.Rules[got].Name, r.Name, l)
							}
							got = i
						}
					}
					if got != want {
						t.Fatalf("round %d: %+v is decided by rule %d in priority order, by %d level by level\nrules: %+v\nlevels: %v", round, k, want, got, p.Rules, level)
					}
				}
			}
		}
	}
	if merges == 0 || leveled == 0 {
		t.Fatalf("%d rules merged, %d of them above level 0: the test proves too little", merges, leveled)
	}
}

// TestLevelsSweep compares the port sweep of levels with testing every
// pair.
func TestLevelsSweep(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	for range 300 {
		p := randomChain(rng, 2+rng.IntN(30))
		c := &compiler{p: p}
		sp := make([]space, len(p.Rules))
		for i, r := range p.Rules {
			sp[i] = c.space(r)
		}
		got := levels(sp)
		want := make([]int, len(sp))
		for j := range sp {
			for i := range j {
				if sp[i].overlaps(&sp[j]) {
					want[j] = max(want[j], want[i]+1)
				}
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("levels of %+v: %v, every pair says %v", p.Rules, got, want)
		}
	}
}

// TestEveryRuleCounts checks that every rule has a count to read: a
// named counter or elements, a rule that matches nothing included.
func TestEveryRuleCounts(t *testing.T) {
	p := runsPolicy()
	p.Rules = append(p.Rules,
		Rule{Name: "ping6-from-v4", Priority: 20, Direction: Ingress, Target: Target{Port: "tap-a"}, Protocol: ProtoICMPv6,
			ICMPTypes: []uint8{128}, Remote: Remote{Prefixes: []netip.Prefix{pfx("192.0.2.0/24")}}, Action: ActionAllow},
		Rule{Name: "ping6-from-v4-too", Priority: 21, Direction: Ingress, Target: Target{Port: "tap-a"}, Protocol: ProtoICMPv6,
			ICMPTypes: []uint8{129}, Remote: Remote{Prefixes: []netip.Prefix{pfx("192.0.2.0/24")}}, Action: ActionAllow})
	rs, err := Compile(p, testBinding(), nil)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, o := range rs.inet.counters {
		have[strings.TrimPrefix(o.Name, counterPre)] = true
	}
	for _, set := range rs.inet.runSets() {
		for _, e := range set.elems {
			have[e.Comment] = true
		}
	}
	for _, r := range p.Rules {
		if !have[r.Name] {
			t.Errorf("rule %s has neither a named counter nor run elements", r.Name)
		}
	}
}
