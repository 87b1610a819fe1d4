package policy

import (
	"net/netip"
)

// Policy is one tenant's network services.
type Policy struct {
	Tenant        string
	AddressGroups []AddressGroup
	PortGroups    []PortGroup
	Segments      []SegmentDefault
	Rules         []Rule
	NAT           *NAT // nil: no uplink, no NAT
	QoS           []PortQoS
}

// AddressGroup is a named set of prefixes, usable as a rule's remote side.
type AddressGroup struct {
	Name     string
	Prefixes []netip.Prefix
}

// PortGroup is a security group: named workload ports. A rule targeting it
// applies to traffic to or from the members' addresses (learned on their
// ports); membership and address changes take effect without touching the
// rules.
type PortGroup struct {
	Name  string
	Ports []string
}

// Action is what a rule (or a segment default) does with a packet.
type Action uint8

// The actions. Reject answers with TCP RST or ICMP unreachable.
const (
	ActionAllow Action = iota + 1
	ActionDeny
	ActionReject
)

func (a Action) String() string {
	switch a {
	case ActionAllow:
		return "allow"
	case ActionDeny:
		return "deny"
	case ActionReject:
		return "reject"
	}
	return "unknown"
}

// Direction is seen from the rule's target: Ingress is traffic to the
// target's workloads, Egress traffic from them.
type Direction uint8

// The directions.
const (
	Ingress Direction = iota + 1
	Egress
)

func (d Direction) String() string {
	switch d {
	case Ingress:
		return "ingress"
	case Egress:
		return "egress"
	}
	return "unknown"
}

// Protocol is a rule's L4 protocol match.
type Protocol uint8

// The protocols; ProtoAny matches every packet.
const (
	ProtoAny Protocol = iota
	ProtoTCP
	ProtoUDP
	ProtoICMP
	ProtoICMPv6
)

func (p Protocol) String() string {
	switch p {
	case ProtoAny:
		return "any"
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoICMP:
		return "icmp"
	case ProtoICMPv6:
		return "icmpv6"
	}
	return "unknown"
}

// SegmentDefault is the action for traffic to or from a segment's
// workloads that no rule matched. A segment with no entry allows.
type SegmentDefault struct {
	Segment string // segment name in the tenant
	Ingress Action
	Egress  Action
}

// Target selects the workloads a rule applies to: exactly one of Port,
// PortGroup or Segment.
type Target struct {
	Port      string
	PortGroup string
	Segment   string
}

// Remote is the other side of a rule: source for Ingress, destination for
// Egress. Empty matches any address.
type Remote struct {
	Prefixes     []netip.Prefix
	AddressGroup string
}

// PortRange is an inclusive L4 port range; From == To for one port.
type PortRange struct {
	From, To uint16
}

// Rule is one ACL entry. Rules of a target are evaluated by Priority
// (lower first; equal priorities keep their order). Filtering is stateful:
// replies to an allowed flow pass, and established flows are not
// re-evaluated, so a rule change does not cut flows it does not concern.
type Rule struct {
	Name      string
	Priority  int
	Direction Direction
	Target    Target
	Remote    Remote
	Protocol  Protocol
	Ports     []PortRange // destination ports; TCP and UDP only
	ICMPTypes []uint8     // ICMP / ICMPv6 only
	Action    Action
	Log       bool
	// DSCP, when set, marks the packets the rule allows (0..63).
	DSCP *uint8
	// Class, when set, puts the packets the rule allows into the named QoS
	// class of the destination port (see PortQoS.Classes).
	Class string
}

// NAT is a tenant's external gateway.
type NAT struct {
	// Interface names an existing interface in evpnd's namespace that
	// becomes the tenant's uplink; empty means evpnd creates a veth pair
	// between the tenant namespace and its own.
	Interface string
	// Address is the tenant side of the uplink (with its subnet length);
	// zero means 169.254.0.1/30 with evpnd's side at 169.254.0.2.
	Address netip.Prefix
	// Gateway is the next hop on the uplink; zero means evpnd's side.
	Gateway netip.Addr
	// SNAT is the address tenant egress is translated to; zero with
	// Masquerade set means the uplink's own address.
	SNAT       netip.Addr
	Masquerade bool
	// FloatingIPs map an external address 1:1 to a workload address.
	FloatingIPs []FloatingIP
	// PortForwards map an external address and port to a workload's.
	PortForwards []PortForward
}

// FloatingIP is a 1:1 NAT: External is advertised to the BGP peers as a
// unicast route with this host as next hop.
type FloatingIP struct {
	External netip.Addr
	Internal netip.Addr
}

// PortForward is a destination NAT of one port.
type PortForward struct {
	External     netip.Addr
	Protocol     Protocol // TCP or UDP
	Port         uint16
	Internal     netip.Addr
	InternalPort uint16 // 0: same as Port
}

// PortQoS is the QoS of one workload port. Rates are bits per second,
// bursts bytes; 0 means none. Egress is what the port transmits (traffic
// to the workload, shaped by HTB); ingress is what it receives (traffic
// from the workload, policed by nftables limit).
type PortQoS struct {
	Port         string
	EgressRate   uint64
	EgressBurst  uint64
	IngressRate  uint64
	IngressBurst uint64
	// Classes are HTB classes under the port's egress rate; rules put
	// packets into them through skb priority (nftables meta priority), as
	// the kernel here has no tc classifiers. Unclassified traffic uses the
	// default class, which gets what the others leave.
	Classes []Class
}

// Class is an HTB class of a port: a guaranteed Rate, borrowing up to Ceil
// (0: the port's egress rate), Priority for borrowing order (0 highest).
type Class struct {
	Name     string
	Rate     uint64
	Ceil     uint64
	Priority uint32
}

// HTB handles evpnd uses on a workload port. The major number marks the
// qdisc as evpnd's; nftables puts a packet into class i of the port with
// "meta priority set" to ClassHandle(i).
const (
	QdiscMajor   = 0xe5
	RootClass    = QdiscMajor<<16 | 0x1 // the port's egress rate
	DefaultClass = QdiscMajor<<16 | 0x2 // unclassified traffic
)

// ClassHandle is the tc handle (major:minor) of a port's i-th class.
func ClassHandle(i int) uint32 { return QdiscMajor<<16 | uint32(0x10+i) }

// PublicAddresses are the addresses p's NAT makes reachable from outside,
// which the daemon advertises as unicast routes: floating IPs, port-forward
// addresses and the SNAT address.
func (p Policy) PublicAddresses() []netip.Addr {
	if p.NAT == nil {
		return nil
	}
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	add := func(a netip.Addr) {
		if a.IsValid() && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	add(p.NAT.SNAT)
	for _, f := range p.NAT.FloatingIPs {
		add(f.External)
	}
	for _, f := range p.NAT.PortForwards {
		add(f.External)
	}
	return out
}
