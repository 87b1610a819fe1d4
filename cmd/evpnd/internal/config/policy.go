package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/evpnd/evpnd/policy"
)

// PolicyDef is one entry of policies: the network services of one tenant,
// in the same model the API exposes (package policy).
type PolicyDef struct {
	Tenant        string            `mapstructure:"tenant"`
	AddressGroups []AddressGroupDef `mapstructure:"address-groups"`
	PortGroups    []PortGroupDef    `mapstructure:"port-groups"`
	Segments      []SegmentPolDef   `mapstructure:"segments"`
	Rules         []RuleDef         `mapstructure:"rules"`
	NAT           *NATDef           `mapstructure:"nat"`
	QoS           []QoSDef          `mapstructure:"qos"`
}

// AddressGroupDef is a named set of prefixes.
type AddressGroupDef struct {
	Name     string   `mapstructure:"name"`
	Prefixes []string `mapstructure:"prefixes"`
}

// PortGroupDef is a security group.
type PortGroupDef struct {
	Name  string   `mapstructure:"name"`
	Ports []string `mapstructure:"ports"`
}

// SegmentPolDef is a segment's default actions.
type SegmentPolDef struct {
	Segment string `mapstructure:"segment"`
	Ingress string `mapstructure:"ingress"`
	Egress  string `mapstructure:"egress"`
}

// RuleDef is one ACL rule.
type RuleDef struct {
	Name      string    `mapstructure:"name"`
	Priority  int       `mapstructure:"priority"`
	Direction string    `mapstructure:"direction"`
	Port      string    `mapstructure:"port"`
	PortGroup string    `mapstructure:"port-group"`
	Segment   string    `mapstructure:"segment"`
	Remote    RemoteDef `mapstructure:"remote"`
	Protocol  string    `mapstructure:"protocol"`
	Ports     []string  `mapstructure:"ports"`
	ICMPTypes []int     `mapstructure:"icmp-types"`
	Action    string    `mapstructure:"action"`
	Log       bool      `mapstructure:"log"`
	DSCP      *int      `mapstructure:"dscp"`
	Class     string    `mapstructure:"class"`
}

// RemoteDef is a rule's other side.
type RemoteDef struct {
	Prefixes     []string `mapstructure:"prefixes"`
	AddressGroup string   `mapstructure:"address-group"`
}

// NATDef is a tenant's external gateway.
type NATDef struct {
	Interface    string           `mapstructure:"interface"`
	Address      string           `mapstructure:"address"`
	Gateway      string           `mapstructure:"gateway"`
	SNAT         string           `mapstructure:"snat"`
	Masquerade   bool             `mapstructure:"masquerade"`
	FloatingIPs  []FloatingIPDef  `mapstructure:"floating-ips"`
	PortForwards []PortForwardDef `mapstructure:"port-forwards"`
}

// FloatingIPDef is a 1:1 NAT.
type FloatingIPDef struct {
	External string `mapstructure:"external"`
	Internal string `mapstructure:"internal"`
}

// PortForwardDef is a destination NAT of one port.
type PortForwardDef struct {
	External     string `mapstructure:"external"`
	Protocol     string `mapstructure:"protocol"`
	Port         int    `mapstructure:"port"`
	Internal     string `mapstructure:"internal"`
	InternalPort int    `mapstructure:"internal-port"`
}

// QoSDef is one port's QoS.
type QoSDef struct {
	Port    string     `mapstructure:"port"`
	Egress  RateDef    `mapstructure:"egress"`
	Ingress RateDef    `mapstructure:"ingress"`
	Classes []ClassDef `mapstructure:"classes"`
}

// RateDef is a rate and burst: "100mbit", "64kb".
type RateDef struct {
	Rate  string `mapstructure:"rate"`
	Burst string `mapstructure:"burst"`
}

// ClassDef is an HTB class.
type ClassDef struct {
	Name     string `mapstructure:"name"`
	Rate     string `mapstructure:"rate"`
	Ceil     string `mapstructure:"ceil"`
	Priority uint32 `mapstructure:"priority"`
}

// policies turns the policies section into policy values, checking the
// syntax of every field; the semantics (references, ranges) are checked by
// policy.Validate against the tenant's segments.
func policies(defs []PolicyDef, tenants []Tenant, problems *[]string, bad func(string, any, string, ...any)) []policy.Policy {
	known := map[string]Tenant{}
	for _, t := range tenants {
		known[t.Name] = t
	}
	seen := map[string]string{}
	var out []policy.Policy
	for i, d := range defs {
		path := fmt.Sprintf("policies[%d]", i)
		t, ok := known[d.Tenant]
		switch {
		case d.Tenant == "":
			bad(path+".tenant", d.Tenant, "is not set: a policy belongs to one tenant")
		case !ok:
			bad(path+".tenant", d.Tenant, "is not a configured tenant")
		case seen[d.Tenant] != "":
			bad(path+".tenant", d.Tenant, "already has a policy at %s", seen[d.Tenant])
		}
		seen[d.Tenant] = path
		p := policy.Policy{Tenant: d.Tenant}
		for j, g := range d.AddressGroups {
			ag := policy.AddressGroup{Name: g.Name}
			for k, s := range g.Prefixes {
				ag.Prefixes = append(ag.Prefixes, prefix(s, fmt.Sprintf("%s.address-groups[%d].prefixes[%d]", path, j, k), bad))
			}
			p.AddressGroups = append(p.AddressGroups, ag)
		}
		for _, g := range d.PortGroups {
			p.PortGroups = append(p.PortGroups, policy.PortGroup{Name: g.Name, Ports: g.Ports})
		}
		for j, s := range d.Segments {
			sp := fmt.Sprintf("%s.segments[%d]", path, j)
			p.Segments = append(p.Segments, policy.SegmentDefault{Segment: s.Segment,
				Ingress: action(s.Ingress, sp+".ingress", true, bad), Egress: action(s.Egress, sp+".egress", true, bad)})
		}
		for j, r := range d.Rules {
			p.Rules = append(p.Rules, rule(r, fmt.Sprintf("%s.rules[%d]", path, j), bad))
		}
		if d.NAT != nil {
			p.NAT = nat(*d.NAT, path+".nat", bad)
		}
		for j, q := range d.QoS {
			p.QoS = append(p.QoS, qos(q, fmt.Sprintf("%s.qos[%d]", path, j), bad))
		}
		if ok && t.L3 == nil && p.NAT != nil {
			bad(path+".nat", "(set)", "needs tenant %q to be routed (l3vni): NAT routes tenant traffic to its uplink", d.Tenant)
		}
		if ok {
			// The semantic rules (references, ranges, classes) are the
			// policy package's, the same the API will apply.
			k := policy.Known{Segments: map[string][]string{}}
			for _, s := range t.Segments {
				k.Segments[s.Name] = s.Ports
			}
			var verr *policy.ValidationError
			if err := p.Validate(k); errors.As(err, &verr) {
				for _, pr := range verr.Problems {
					probs := pr
					probs.Field = path + "." + pr.Field
					*problems = append(*problems, probs.String())
				}
			} else if err != nil {
				bad(path, d.Tenant, "is refused: %v", err)
			}
		}
		out = append(out, p)
	}
	return out
}

func rule(r RuleDef, path string, bad func(string, any, string, ...any)) policy.Rule {
	out := policy.Rule{
		Name:     r.Name,
		Priority: r.Priority,
		Target:   policy.Target{Port: r.Port, PortGroup: r.PortGroup, Segment: r.Segment},
		Remote:   policy.Remote{AddressGroup: r.Remote.AddressGroup},
		Protocol: protocol(r.Protocol, path+".protocol", bad),
		Action:   action(r.Action, path+".action", false, bad),
		Log:      r.Log,
		Class:    r.Class,
	}
	switch r.Direction {
	case "ingress":
		out.Direction = policy.Ingress
	case "egress":
		out.Direction = policy.Egress
	default:
		bad(path+".direction", r.Direction, "is not one of ingress (to the target), egress (from the target)")
	}
	for k, s := range r.Remote.Prefixes {
		out.Remote.Prefixes = append(out.Remote.Prefixes, prefix(s, fmt.Sprintf("%s.remote.prefixes[%d]", path, k), bad))
	}
	for k, s := range r.Ports {
		pp := fmt.Sprintf("%s.ports[%d]", path, k)
		from, to, isRange := strings.Cut(s, "-")
		lo, err1 := strconv.ParseUint(strings.TrimSpace(from), 10, 16)
		hi := lo
		var err2 error
		if isRange {
			hi, err2 = strconv.ParseUint(strings.TrimSpace(to), 10, 16)
		}
		if err1 != nil || err2 != nil {
			bad(pp, s, "is not a port (1..65535) or a range (8000-8080)")
			continue
		}
		out.Ports = append(out.Ports, policy.PortRange{From: uint16(lo), To: uint16(hi)})
	}
	for k, t := range r.ICMPTypes {
		if t < 0 || t > 255 {
			bad(fmt.Sprintf("%s.icmp-types[%d]", path, k), t, "is out of range 0..255")
			continue
		}
		out.ICMPTypes = append(out.ICMPTypes, uint8(t))
	}
	if r.DSCP != nil {
		if *r.DSCP < 0 || *r.DSCP > 63 {
			bad(path+".dscp", *r.DSCP, "is out of range 0..63")
		} else {
			d := uint8(*r.DSCP)
			out.DSCP = &d
		}
	}
	return out
}

func nat(d NATDef, path string, bad func(string, any, string, ...any)) *policy.NAT {
	n := &policy.NAT{Interface: d.Interface, Masquerade: d.Masquerade}
	if d.Address != "" {
		a, err := netip.ParsePrefix(d.Address)
		if err != nil {
			bad(path+".address", d.Address, "is not an address with its subnet length, e.g. 169.254.0.1/30")
		}
		n.Address = a
	}
	n.Gateway = addr(d.Gateway, path+".gateway", bad)
	n.SNAT = addr(d.SNAT, path+".snat", bad)
	for i, f := range d.FloatingIPs {
		fp := fmt.Sprintf("%s.floating-ips[%d]", path, i)
		n.FloatingIPs = append(n.FloatingIPs, policy.FloatingIP{
			External: addr(f.External, fp+".external", bad), Internal: addr(f.Internal, fp+".internal", bad)})
	}
	for i, f := range d.PortForwards {
		fp := fmt.Sprintf("%s.port-forwards[%d]", path, i)
		pf := policy.PortForward{External: addr(f.External, fp+".external", bad), Protocol: protocol(f.Protocol, fp+".protocol", bad),
			Internal: addr(f.Internal, fp+".internal", bad)}
		if f.Port < 1 || f.Port > 65535 {
			bad(fp+".port", f.Port, "is out of range 1..65535")
		}
		if f.InternalPort < 0 || f.InternalPort > 65535 {
			bad(fp+".internal-port", f.InternalPort, "is out of range 1..65535 (0: same as port)")
		}
		pf.Port, pf.InternalPort = uint16(f.Port), uint16(f.InternalPort)
		n.PortForwards = append(n.PortForwards, pf)
	}
	return n
}

func qos(q QoSDef, path string, bad func(string, any, string, ...any)) policy.PortQoS {
	out := policy.PortQoS{
		Port:         q.Port,
		EgressRate:   rate(q.Egress.Rate, path+".egress.rate", bad),
		EgressBurst:  size(q.Egress.Burst, path+".egress.burst", bad),
		IngressRate:  rate(q.Ingress.Rate, path+".ingress.rate", bad),
		IngressBurst: size(q.Ingress.Burst, path+".ingress.burst", bad),
	}
	for i, c := range q.Classes {
		cp := fmt.Sprintf("%s.classes[%d]", path, i)
		out.Classes = append(out.Classes, policy.Class{Name: c.Name, Rate: rate(c.Rate, cp+".rate", bad),
			Ceil: rate(c.Ceil, cp+".ceil", bad), Priority: c.Priority})
	}
	return out
}

func action(s, path string, optional bool, bad func(string, any, string, ...any)) policy.Action {
	switch s {
	case "allow":
		return policy.ActionAllow
	case "deny":
		return policy.ActionDeny
	case "reject":
		return policy.ActionReject
	case "":
		if optional {
			return policy.ActionAllow
		}
	}
	bad(path, s, "is not one of allow, deny, reject")
	return 0
}

func protocol(s, path string, bad func(string, any, string, ...any)) policy.Protocol {
	switch s {
	case "", "any":
		return policy.ProtoAny
	case "tcp":
		return policy.ProtoTCP
	case "udp":
		return policy.ProtoUDP
	case "icmp":
		return policy.ProtoICMP
	case "icmpv6":
		return policy.ProtoICMPv6
	}
	bad(path, s, "is not one of any, tcp, udp, icmp, icmpv6")
	return policy.ProtoAny
}

func prefix(s, path string, bad func(string, any, string, ...any)) netip.Prefix {
	if p, err := netip.ParsePrefix(s); err == nil {
		if p != p.Masked() {
			bad(path, s, "has host bits set; did you mean %s?", p.Masked())
		}
		return p.Masked()
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen())
	}
	bad(path, s, "is not a prefix or an address")
	return netip.Prefix{}
}

func addr(s, path string, bad func(string, any, string, ...any)) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		bad(path, s, "is not an IP address")
	}
	return a
}

// rate parses a rate in bits per second: a number, or a number with a unit
// bit, kbit, mbit, gbit (powers of 1000, as tc); "" is 0 (none).
func rate(s, path string, bad func(string, any, string, ...any)) uint64 {
	v, ok := scaled(s, map[string]uint64{"": 1, "bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9})
	if !ok {
		bad(path, s, "is not a rate: a number of bits per second, or with a unit kbit, mbit, gbit (100mbit)")
	}
	return v
}

// size parses a size in bytes: a number, or with a unit b, kb, mb (powers
// of 1024, as tc's burst); "" is 0 (the default).
func size(s, path string, bad func(string, any, string, ...any)) uint64 {
	v, ok := scaled(s, map[string]uint64{"": 1, "b": 1, "kb": 1 << 10, "mb": 1 << 20})
	if !ok {
		bad(path, s, "is not a size: a number of bytes, or with a unit kb, mb (64kb)")
	}
	return v
}

func scaled(s string, units map[string]uint64) (uint64, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return 0, true
	}
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], s[i:]
	}
	m, ok := units[unit]
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 {
		return 0, false
	}
	return uint64(f * float64(m)), true
}
