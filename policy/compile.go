package policy

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TableName is the name of every table evpnd owns: one inet and one
// bridge table in each tenant namespace. Nothing else is ever touched.
const TableName = "evpnd"

// Packet mark bits the bridge table sets so the inet chains know what
// br_netfilter hides from them (there the interfaces are the bridge, not
// its ports): the packet came in from a local workload port, or is
// bridged out to one. A packet from or to a remote workload (through the
// VXLAN device) carries neither, so this host applies segment rules only
// to its own workloads, as the remote host does to its own.
const (
	markFromPort uint32 = 0x00e50001
	markToPort   uint32 = 0x00e50002
)

// ctMarkMask is evpnd's part of the conntrack mark: the marking (DSCP,
// QoS class) that the allowing rule chose for the flow, so every packet
// of the flow is marked, not only the first one that the rules see.
// Layout: bit 14 DSCP present, bits 8..13 DSCP, bits 0..7 class index + 1.
// The code is the marking itself, not a rule number, so it keeps its
// meaning across ruleset replacements.
const ctMarkMask = 0x7fff

func markCode(dscp *uint8, class int) uint32 {
	var c uint32
	if dscp != nil {
		c |= 1<<14 | uint32(*dscp)<<8
	}
	if class >= 0 {
		c |= uint32(class + 1)
	}
	return c
}

// Chain priorities. Egress rules (traffic from a target) are evaluated in
// a base chain before the ingress rules (traffic to a target) in a
// second one: an accept ends only its own base chain, so a packet between
// two local workloads passes the sender's egress rules and then the
// receiver's ingress rules. Marking runs after both.
const (
	prioEgress  = 0
	prioIngress = 10
	prioMark    = 20
	prioBridge  = -200
)

// Ruleset is a compiled tenant policy: the two tables evpnd owns in the
// tenant namespace, and what SetPortAddresses needs to update the address
// maps in place.
type Ruleset struct {
	Tenant string
	// Rules is the number of policy rules compiled.
	Rules  int
	inet   *nftTable
	bridge *nftTable
	// dispatch names each port's chains, by direction; empty when the
	// port has nothing to evaluate in that direction.
	dispatch map[string]portDispatch
	// runs names each chain's run sets (see runs.go), in chain order;
	// merged are the rules held in them, which have no named counter.
	runs   map[string][]string
	merged map[string]bool
	// spaces are what each chain's rules match, in chain order, and
	// groups the address groups' intervals: kept for patches (see
	// chainRules).
	spaces map[string][]space
	levels map[string][]int
	groups map[string][2][]addrSpan
}

type portDispatch struct {
	egress, ingress string
}

// String renders the ruleset in nft syntax, as golden files hold it.
func (rs *Ruleset) String() string { return rs.inet.String() + "\n" + rs.bridge.String() }

// Names of the dispatch maps.
const (
	mapEgress4  = "egress_v4"
	mapEgress6  = "egress_v6"
	mapIngress4 = "ingress_v4"
	mapIngress6 = "ingress_v6"
	mapEgressS  = "egress_segments"
	mapIngressS = "ingress_segments"
	mapMarks    = "marks"
	setPorts    = "ports"
	counterPre  = "rule_"
)

func counterName(rule string) string { return counterPre + rule }

// defaultPre begins the names of the segment defaults' counters.
const defaultPre = "default_"

// defaultCounter names the counter of seg's default in direction dir.
func defaultCounter(seg string, dir Direction) string {
	return defaultPre + dir.String() + "_" + seg
}

// counterRule is the name a counter object's count is reported under: a
// rule's name, or default:<segment>:<direction> for a segment default
// (neither can be the other: rule names have no colon). ok is false for
// an object that is neither.
func counterRule(object string) (name string, ok bool) {
	if rule, ok := strings.CutPrefix(object, counterPre); ok {
		return rule, true
	}
	if rest, ok := strings.CutPrefix(object, defaultPre); ok {
		if dir, seg, ok := strings.Cut(rest, "_"); ok && (dir == Egress.String() || dir == Ingress.String()) {
			return DefaultPrefix + seg + ":" + dir, true
		}
	}
	return "", false
}

// Compile turns a valid policy for the tenant bound by b, with the
// addresses learned on its ports, into the tenant's ruleset. It is pure:
// the same input gives the same ruleset.
//
// Layout of the inet table:
//   - filter_egress (forward) and filter_input (input): conntrack first
//     (established and related accept, IPv6 neighbor discovery accept,
//     invalid drop), then dispatch of traffic FROM local workloads:
//     source address -> the port's egress chain (egress_v4/v6 maps), or,
//     for a packet from a local port whose address is not learned yet,
//     its segment bridge -> the segment's egress chain. Traffic to the
//     gateway itself (input) is egress traffic of the sender: egress rules
//     and defaults apply to it; there are no ingress rules for the gateway.
//   - filter_ingress (forward): the same for traffic TO local workloads by
//     destination address, or, bridged to a local port, by bridge.
//   - A port's chain holds the port's rules, jumps to the chains of its
//     port groups (in policy order) and goes to its segment's chain, which
//     holds the segment's rules and ends with the segment default. Within a
//     chain rules run by priority; the first allow, deny or reject decides.
//   - mark (forward, after filtering): per flow DSCP and skb priority, from
//     the conntrack mark the allowing rule set.
//   - nat_prerouting / nat_postrouting when the policy has NAT.
//
// The bridge table polices ingress rates per port and marks packets from
// and to local ports (markFromPort, markToPort).
func Compile(p Policy, b Binding, addrs map[string][]netip.Addr) (*Ruleset, error) {
	c := &compiler{
		p:        p,
		b:        b,
		addrs:    addrs,
		portSeg:  map[string]string{},
		rs:       &Ruleset{Tenant: p.Tenant, Rules: len(p.Rules), dispatch: map[string]portDispatch{}, runs: map[string][]string{}, spaces: map[string][]space{}, levels: map[string][]int{}},
		inet:     &nftTable{family: nftables.TableFamilyINet, name: TableName},
		bridge:   &nftTable{family: nftables.TableFamilyBridge, name: TableName},
		segments: map[string]SegmentBinding{},
	}
	if p.NAT != nil && b.Uplink == "" {
		return nil, fmt.Errorf("tenant %s: policy has nat but the binding names no uplink", p.Tenant)
	}
	for _, s := range b.Segments {
		if s.Bridge == "" {
			return nil, fmt.Errorf("tenant %s: segment %s: no bridge in binding", p.Tenant, s.Name)
		}
		c.segments[s.Name] = s
		for _, port := range s.Ports {
			c.portSeg[port] = s.Name
		}
	}
	c.compile()
	c.rs.inet, c.rs.bridge, c.rs.merged, c.rs.groups = c.inet, c.bridge, c.merged, c.groups
	return c.rs, nil
}

type compiler struct {
	p        Policy
	b        Binding
	addrs    map[string][]netip.Addr
	segments map[string]SegmentBinding
	portSeg  map[string]string
	rs       *Ruleset
	inet     *nftTable
	bridge   *nftTable
	marks    map[uint32]bool
	qos      map[string]PortQoS
	// ruleSets are the named sets of rules' elements made so far.
	ruleSets map[string]bool
	// merged are the rules held as run elements (see runs.go).
	merged map[string]bool
	// groups caches the intervals of address groups.
	groups map[string][2][]addrSpan
	// prev is the ruleset a patch starts from, whose spaces of the rules
	// not in changed are still true.
	prev    *Ruleset
	changed map[string]bool
}

type targetKey struct {
	dir  Direction
	kind string // "port", "group", "seg"
	name string
}

func (c *compiler) compile() {
	c.marks = map[uint32]bool{}
	c.ruleSets = map[string]bool{}
	c.merged = map[string]bool{}
	c.qos = map[string]PortQoS{}
	for _, q := range c.p.QoS {
		c.qos[q.Port] = q
	}

	// Rules per target, in priority order (stable: equal priorities keep
	// their policy order).
	rules := map[targetKey][]Rule{}
	for _, r := range c.p.Rules {
		k := targetKey{dir: r.Direction}
		switch {
		case r.Target.Port != "":
			k.kind, k.name = "port", r.Target.Port
		case r.Target.PortGroup != "":
			k.kind, k.name = "group", r.Target.PortGroup
		default:
			k.kind, k.name = "seg", r.Target.Segment
		}
		rules[k] = append(rules[k], r)
	}
	for _, rs := range rules {
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].Priority < rs[j].Priority })
	}
	defaults := map[string]SegmentDefault{}
	for _, d := range c.p.Segments {
		defaults[d.Segment] = d
	}

	// Address group sets, per family.
	for _, g := range c.p.AddressGroups {
		c.inet.sets = append(c.inet.sets,
			spanSet(groupSet(g.Name, fam4), keyType(fam4), prefixSpans(fam4, g.Prefixes)),
			spanSet(groupSet(g.Name, fam6), keyType(fam6), prefixSpans(fam6, g.Prefixes)))
	}
	maps := map[string]*nftSet{
		mapEgress4:  verdictMap(mapEgress4, nftables.TypeIPAddr),
		mapEgress6:  verdictMap(mapEgress6, nftables.TypeIP6Addr),
		mapIngress4: verdictMap(mapIngress4, nftables.TypeIPAddr),
		mapIngress6: verdictMap(mapIngress6, nftables.TypeIP6Addr),
		mapEgressS:  verdictMap(mapEgressS, nftables.TypeIFName),
		mapIngressS: verdictMap(mapIngressS, nftables.TypeIFName),
	}
	var chains []*nftChain
	var defaultCounters []*nftables.CounterObj

	for _, dir := range []Direction{Egress, Ingress} {
		pre := "eg"
		ms := mapEgressS
		if dir == Ingress {
			pre = "in"
			ms = mapIngressS
		}
		// Segments: their rules, then the default.
		segWork := map[string]bool{}
		for _, s := range c.b.Segments {
			d := defaults[s.Name].Egress
			if dir == Ingress {
				d = defaults[s.Name].Ingress
			}
			srules := rules[targetKey{dir, "seg", s.Name}]
			if len(srules) == 0 && (d == 0 || d == ActionAllow) {
				continue
			}
			segWork[s.Name] = true
			ch := &nftChain{name: fmt.Sprintf("%s_seg_%s", pre, s.Name)}
			ch.rules = c.chainRules(ch.name, dir, srules)
			// The default counts what no rule decided.
			cn := defaultCounter(s.Name, dir)
			defaultCounters = append(defaultCounters, &nftables.CounterObj{Name: cn})
			switch d {
			case ActionDeny:
				ch.rules = append(ch.rules, newRule().counter(cn).drop())
			case ActionReject:
				ch.rules = append(ch.rules, newRule().l4proto(ProtoTCP).counter(cn).rejectTCP(),
					newRule().counter(cn).rejectICMPX(unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED, "admin-prohibited"))
			default:
				ch.rules = append(ch.rules, newRule().counter(cn))
			}
			chains = append(chains, ch)
			maps[ms].addVerdict(ifname(s.Bridge), fmt.Sprintf("%q", s.Bridge), verdict(expr.VerdictGoto, ch.name))
		}
		// Port groups with rules in this direction.
		groupWork := map[string]bool{}
		for _, g := range c.p.PortGroups {
			grules := rules[targetKey{dir, "group", g.Name}]
			if len(grules) == 0 {
				continue
			}
			groupWork[g.Name] = true
			ch := &nftChain{name: fmt.Sprintf("%s_group_%s", pre, g.Name)}
			ch.rules = c.chainRules(ch.name, dir, grules)
			chains = append(chains, ch)
		}
		// Ports, in binding order.
		for _, s := range c.b.Segments {
			for _, port := range s.Ports {
				ch := &nftChain{name: fmt.Sprintf("%s_port_%s", pre, port)}
				ch.rules = c.chainRules(ch.name, dir, rules[targetKey{dir, "port", port}])
				for _, g := range c.p.PortGroups {
					if groupWork[g.Name] && contains(g.Ports, port) {
						ch.rules = append(ch.rules, newRule().jump(fmt.Sprintf("%s_group_%s", pre, g.Name)))
					}
				}
				if segWork[s.Name] {
					ch.rules = append(ch.rules, newRule().gotoChain(fmt.Sprintf("%s_seg_%s", pre, s.Name)))
				}
				if len(ch.rules) == 0 {
					continue
				}
				chains = append(chains, ch)
				d := c.rs.dispatch[port]
				if dir == Egress {
					d.egress = ch.name
				} else {
					d.ingress = ch.name
				}
				c.rs.dispatch[port] = d
			}
		}
	}
	// Named counters for the rules that kept kernel rules; merged rules
	// count in their elements.
	for _, r := range c.p.Rules {
		if !c.merged[r.Name] {
			c.inet.counters = append(c.inet.counters, &nftables.CounterObj{Name: counterName(r.Name)})
		}
	}
	c.inet.counters = append(c.inet.counters, defaultCounters...)
	fillAddressMaps(maps, c.b, c.rs.dispatch, c.addrs)
	for _, name := range []string{mapEgress4, mapEgress6, mapEgressS, mapIngress4, mapIngress6, mapIngressS} {
		c.inet.sets = append(c.inet.sets, maps[name])
	}

	// Base chains.
	eg := c.baseChain("filter_egress", nftables.ChainHookForward, prioEgress, "filter")
	c.dispatchRules(eg, false)
	in := c.baseChain("filter_ingress", nftables.ChainHookForward, prioIngress, "filter + 10")
	c.dispatchRules(in, true)
	input := c.baseChain("filter_input", nftables.ChainHookInput, prioEgress, "filter")
	c.dispatchRules(input, false)
	c.inet.chains = append(c.inet.chains, eg, in, input)

	if len(c.marks) > 0 {
		mm := verdictMap(mapMarks, nftables.TypeMark)
		c.inet.sets = append(c.inet.sets, mm)
		mark := c.baseChain("mark", nftables.ChainHookForward, prioMark, "filter + 20")
		mark.rules = append(mark.rules, newRule().ctOriginal().ctMarkVmap(mapMarks))
		c.inet.chains = append(c.inet.chains, mark)
		codes := make([]uint32, 0, len(c.marks))
		for code := range c.marks {
			codes = append(codes, code)
		}
		sort.Slice(codes, func(i, j int) bool { return codes[i] < codes[j] })
		for _, code := range codes {
			ch := &nftChain{name: fmt.Sprintf("mark_%04x", code)}
			if code&(1<<14) != 0 {
				d := uint8(code >> 8 & 0x3f)
				ch.rules = append(ch.rules, newRule().nfproto(fam4).dscpSet(fam4, d), newRule().nfproto(fam6).dscpSet(fam6, d))
			}
			if cls := int(code & 0xff); cls > 0 {
				ch.rules = append(ch.rules, newRule().prioritySet(ClassHandle(cls-1)))
			}
			c.inet.chains = append(c.inet.chains, ch)
			mm.addVerdict(markKey(code), fmt.Sprintf("0x%08x", code), verdict(expr.VerdictJump, ch.name))
		}
	}
	if c.p.NAT != nil {
		c.nat()
	}
	c.inet.chains = append(c.inet.chains, chains...)
	c.bridgeTable()
}

// fillAddressMaps fills the address dispatch maps: each learned address
// of a port goes to the port's chain of the direction. An address learned
// on two ports belongs to the first in binding order.
func fillAddressMaps(maps map[string]*nftSet, b Binding, dispatch map[string]portDispatch, addrs map[string][]netip.Addr) {
	for _, dir := range []Direction{Egress, Ingress} {
		m4, m6 := maps[mapEgress4], maps[mapEgress6]
		if dir == Ingress {
			m4, m6 = maps[mapIngress4], maps[mapIngress6]
		}
		owner := map[netip.Addr]bool{}
		for _, s := range b.Segments {
			for _, port := range s.Ports {
				chain := dispatch[port].egress
				if dir == Ingress {
					chain = dispatch[port].ingress
				}
				if chain == "" {
					continue
				}
				for _, a := range addrs[port] {
					if owner[a] {
						continue
					}
					owner[a] = true
					m := m4
					if a.Is6() {
						m = m6
					}
					m.addVerdict(addrBytes(a), a.String(), verdict(expr.VerdictGoto, chain))
				}
			}
		}
	}
}

// refreshAddressMaps refills the address dispatch maps of rs after the
// addresses learned on its ports changed in place.
func (rs *Ruleset) refreshAddressMaps(b Binding, addrs map[string][]netip.Addr) {
	maps := map[string]*nftSet{}
	for _, s := range rs.inet.sets {
		switch s.name {
		case mapEgress4, mapEgress6, mapIngress4, mapIngress6:
			s.elems, s.text = nil, nil
			maps[s.name] = s
		}
	}
	fillAddressMaps(maps, b, rs.dispatch, addrs)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func groupSet(name string, f family) string {
	if f == fam4 {
		return "ag_" + name + "_v4"
	}
	return "ag_" + name + "_v6"
}

func (c *compiler) baseChain(name string, hook *nftables.ChainHook, prio int32, prioText string) *nftChain {
	return &nftChain{name: name, hook: hook, prio: nftables.ChainPriorityRef(nftables.ChainPriority(prio)),
		typ: nftables.ChainTypeFilter, prioTx: prioText}
}

// ndTypes are the IPv6 neighbor discovery messages, which must pass
// whatever the rules say or IPv6 stops working on the segment. They are
// consecutive: one range matches them all.
var ndTypes = []uint8{133, 134, 135, 136}

func icmpTypeLoad() *expr.Payload {
	return &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1}
}

func (c *compiler) dispatchRules(ch *nftChain, ingress bool) {
	ch.rules = append(ch.rules,
		newRule().ctState("established,related", ctEstablished|ctRelated).accept(),
		newRule().nfproto(fam6).l4proto(ProtoICMPv6).matchSpan("icmpv6 type", icmpTypeLoad(), icmpTypeSpans(ndTypes)[0]).accept(),
		newRule().ctState("invalid", ctInvalid).drop(),
	)
	m4, m6, ms, mark := mapEgress4, mapEgress6, mapEgressS, markFromPort
	ifKey := expr.MetaKeyIIFNAME
	ifText := "iifname"
	if ingress {
		m4, m6, ms, mark = mapIngress4, mapIngress6, mapIngressS, markToPort
		ifKey, ifText = expr.MetaKeyOIFNAME, "oifname"
	}
	l4, t4 := loadAddr(fam4, !ingress)
	l6, t6 := loadAddr(fam6, !ingress)
	ch.rules = append(ch.rules,
		newRule().nfproto(fam4).vmap(t4, l4, m4),
		newRule().nfproto(fam6).vmap(t6, l6, m6),
		newRule().markHas(mark).vmap(ifText, metaLoad(ifKey), ms),
	)
}

// remoteMatch is one way a rule's remote side can match, in one family.
type remoteMatch struct {
	f     family
	group string // named set
	pfx   []netip.Prefix
	any   bool
}

// rule compiles one policy rule into its nftables rules: one per family
// and remote kind, two for a reject of any protocol (TCP reset and ICMP).
func (c *compiler) rule(r Rule) []*nftRule {
	var remotes []remoteMatch
	if len(r.Remote.Prefixes) == 0 && r.Remote.AddressGroup == "" {
		remotes = []remoteMatch{{f: famAny, any: true}}
	} else {
		var v4, v6 []netip.Prefix
		for _, p := range r.Remote.Prefixes {
			if p.Addr().Is4() {
				v4 = append(v4, p)
			} else {
				v6 = append(v6, p)
			}
		}
		if len(v4) > 0 {
			remotes = append(remotes, remoteMatch{f: fam4, pfx: v4})
		}
		if len(v6) > 0 {
			remotes = append(remotes, remoteMatch{f: fam6, pfx: v6})
		}
		if g := r.Remote.AddressGroup; g != "" {
			var has4, has6 bool
			for _, ag := range c.p.AddressGroups {
				if ag.Name != g {
					continue
				}
				for _, p := range ag.Prefixes {
					if p.Addr().Is4() {
						has4 = true
					} else {
						has6 = true
					}
				}
			}
			if has4 {
				remotes = append(remotes, remoteMatch{f: fam4, group: groupSet(g, fam4)})
			}
			if has6 {
				remotes = append(remotes, remoteMatch{f: fam6, group: groupSet(g, fam6)})
			}
		}
	}
	var out []*nftRule
	for _, rm := range remotes {
		f := rm.f
		switch r.Protocol {
		case ProtoICMP:
			if f == fam6 {
				continue
			}
			f = fam4
		case ProtoICMPv6:
			if f == fam4 {
				continue
			}
			f = fam6
		}
		var addr, ports, icmp *elemMatch
		if !rm.any {
			load, text := loadAddr(f, r.Direction == Ingress)
			if rm.group == "" {
				addr = &elemMatch{suffix: famSuffix(f), text: text, load: load, key: keyType(f), spans: prefixSpans(f, rm.pfx)}
			} else {
				addr = &elemMatch{text: text, load: load, group: rm.group}
			}
		}
		if len(r.Ports) > 0 {
			ports = &elemMatch{suffix: "ports", text: "th dport", key: nftables.TypeInetService, spans: portSpans(r.Ports),
				load: &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}}
		}
		if len(r.ICMPTypes) > 0 {
			icmp = &elemMatch{suffix: "icmp", text: "icmp type", key: nftables.TypeICMPType, load: icmpTypeLoad(), spans: icmpTypeSpans(r.ICMPTypes)}
			if r.Protocol == ProtoICMPv6 {
				icmp.text, icmp.key = "icmpv6 type", nftables.TypeICMP6Type
			}
		}
		planSplit(addr, ports, icmp)
		ms := c.expand([]*nftRule{newRule().nfproto(f)}, r, addr)
		for _, m := range ms {
			m.l4proto(r.Protocol)
		}
		ms = c.expand(ms, r, ports)
		ms = c.expand(ms, r, icmp)
		for _, m := range ms {
			for _, x := range c.action(m, r) {
				x.owner = r.Name
				out = append(out, x)
			}
		}
	}
	return out
}

// maxSplit is how many kernel rules one policy rule may become, per
// family, by splitting its element lists (remote prefixes, ports, ICMP
// types) into one rule per combination of elements; a list that would
// pass it is matched through a named set of the rule's own instead.
//
// Sets of any kind are what a large policy pays for in this kernel:
// binding an anonymous set walks the whole pending batch
// (__nft_set_trans_bind), and creating, filling and looking up a named
// set each walk the table's list of sets by name (nft_set_lookup_global),
// so either is quadratic in the number of sets, while rules cost the same
// each. Split rules keep the rule's meaning: they are adjacent, share the
// rule's named counter and end in the same verdict, so a packet is counted
// once, by the first of them that matches, as the one rule would count it.
const maxSplit = 4

// elemMatch is one element list of a rule as the kernel matches it: a
// named address group, or spans that are either split across kernel
// rules or held in a named set of the rule.
type elemMatch struct {
	suffix, text string
	load         expr.Any
	key          nftables.SetDatatype
	spans        []keySpan
	group        string
	set          bool
}

// planSplit chooses, in match order, which lists of several spans are
// split and which go into sets, keeping the product of the split lists'
// sizes within maxSplit.
func planSplit(lists ...*elemMatch) {
	n := 1
	for _, l := range lists {
		if l == nil || len(l.spans) < 2 {
			continue
		}
		if n*len(l.spans) <= maxSplit {
			n *= len(l.spans)
		} else {
			l.set = true
		}
	}
}

// expand adds the match of l to every rule of ms, cloning each rule once
// per span when l is split.
func (c *compiler) expand(ms []*nftRule, r Rule, l *elemMatch) []*nftRule {
	switch {
	case l == nil:
		return ms
	case l.group != "":
		for _, m := range ms {
			m.lookupNamed(l.text, l.load, l.group)
		}
		return ms
	case l.set:
		name := ruleSetName(r.Name, l.suffix)
		if !c.ruleSets[name] {
			c.ruleSets[name] = true
			c.inet.sets = append(c.inet.sets, spanSet(name, l.key, l.spans))
		}
		for _, m := range ms {
			m.lookupNamed(l.text, l.load, name)
		}
		return ms
	case len(l.spans) == 1:
		for _, m := range ms {
			m.matchSpan(l.text, l.load, l.spans[0])
		}
		return ms
	}
	out := make([]*nftRule, 0, len(ms)*len(l.spans))
	for _, m := range ms {
		for _, sp := range l.spans {
			out = append(out, m.clone().matchSpan(l.text, l.load, sp))
		}
	}
	return out
}

// ruleSetName names a set of one rule's elements. Rule names are unique
// and the suffixes (v4, v6, ports, icmp) end differently, so no two sets
// share a name; address group sets start with ag_.
func ruleSetName(rule, suffix string) string { return counterPre + rule + "_" + suffix }

// action appends counter, log and verdict to the match m.
func (c *compiler) action(m *nftRule, r Rule) []*nftRule {
	tail := func(x *nftRule) *nftRule {
		x.counter(counterName(r.Name))
		if r.Log {
			x.log(logPrefix(c.p.Tenant, r.Name))
		}
		return x
	}
	switch r.Action {
	case ActionAllow:
		x := tail(m)
		if code := c.markFor(r); code != 0 {
			x.ctMarkSet(code)
		}
		return []*nftRule{x.accept()}
	case ActionReject:
		switch r.Protocol {
		case ProtoTCP:
			return []*nftRule{tail(m).rejectTCP()}
		case ProtoUDP:
			return []*nftRule{tail(m).rejectICMPX(unix.NFT_REJECT_ICMPX_PORT_UNREACH, "port-unreachable")}
		case ProtoAny:
			tcp := m.clone().l4proto(ProtoTCP)
			return []*nftRule{tail(tcp).rejectTCP(), tail(m).rejectICMPX(unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED, "admin-prohibited")}
		}
		return []*nftRule{tail(m).rejectICMPX(unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED, "admin-prohibited")}
	}
	return []*nftRule{tail(m).drop()}
}

// markFor is the conntrack mark code of an allow rule's marking, 0 for
// none.
func (c *compiler) markFor(r Rule) uint32 {
	class := -1
	if r.Class != "" {
		for _, port := range c.targetPorts(r.Target) {
			if i := classIndex(c.qos[port], r.Class); i >= 0 {
				class = i
				break
			}
		}
	}
	if r.DSCP == nil && class < 0 {
		return 0
	}
	code := markCode(r.DSCP, class)
	c.marks[code] = true
	return code
}

func (c *compiler) targetPorts(t Target) []string {
	switch {
	case t.Port != "":
		return []string{t.Port}
	case t.PortGroup != "":
		for _, g := range c.p.PortGroups {
			if g.Name == t.PortGroup {
				return g.Ports
			}
		}
	case t.Segment != "":
		return c.segments[t.Segment].Ports
	}
	return nil
}

func (c *compiler) nat() {
	n, up := c.p.NAT, c.b.Uplink
	pre := &nftChain{name: "nat_prerouting", hook: nftables.ChainHookPrerouting, typ: nftables.ChainTypeNAT,
		prio: nftables.ChainPriorityRef(-100), prioTx: "dstnat"}
	post := &nftChain{name: "nat_postrouting", hook: nftables.ChainHookPostrouting, typ: nftables.ChainTypeNAT,
		prio: nftables.ChainPriorityRef(100), prioTx: "srcnat"}

	for _, pf := range n.PortForwards {
		f := fam4
		if pf.External.Is6() {
			f = fam6
		}
		load, text := loadAddr(f, false)
		to := pf.InternalPort
		if to == 0 {
			to = pf.Port
		}
		r := newRule().iifname(up).nfproto(f).
			add(fmt.Sprintf("%s %s", text, pf.External), load, cmpEq(addrBytes(pf.External))).
			l4proto(pf.Protocol).
			add(fmt.Sprintf("th dport %d", pf.Port),
				&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				cmpEq([]byte{byte(pf.Port >> 8), byte(pf.Port)}))
		dest := netip.AddrPortFrom(pf.Internal, to).String()
		r.add(fmt.Sprintf("dnat %s to %s", f, dest),
			&expr.Immediate{Register: reg1, Data: addrBytes(pf.Internal)},
			&expr.Immediate{Register: reg2, Data: []byte{byte(to >> 8), byte(to)}},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: natFamily(f), RegAddrMin: reg1, RegProtoMin: reg2, Specified: true})
		pre.rules = append(pre.rules, r)
	}
	for _, f := range []family{fam4, fam6} {
		dn := &nftSet{name: "fip_dnat_" + famSuffix(f), key: keyType(f), data: ptr(keyType(f))}
		sn := &nftSet{name: "fip_snat_" + famSuffix(f), key: keyType(f), data: ptr(keyType(f))}
		for _, fip := range n.FloatingIPs {
			if fip.External.Is4() != (f == fam4) {
				continue
			}
			dn.elems = append(dn.elems, nftables.SetElement{Key: addrBytes(fip.External), Val: addrBytes(fip.Internal)})
			dn.text = append(dn.text, fip.External.String()+" : "+fip.Internal.String())
			sn.elems = append(sn.elems, nftables.SetElement{Key: addrBytes(fip.Internal), Val: addrBytes(fip.External)})
			sn.text = append(sn.text, fip.Internal.String()+" : "+fip.External.String())
		}
		if len(dn.elems) == 0 {
			continue
		}
		c.inet.sets = append(c.inet.sets, dn, sn)
		dl, dt := loadAddr(f, false)
		pre.rules = append(pre.rules, newRule().iifname(up).nfproto(f).add(
			fmt.Sprintf("dnat %s to %s map @%s", f, dt, dn.name), dl,
			&expr.Lookup{SourceRegister: reg1, DestRegister: reg1, IsDestRegSet: true, SetName: dn.name},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: natFamily(f), RegAddrMin: reg1}))
		sl, st := loadAddr(f, true)
		post.rules = append(post.rules, newRule().oifname(up).nfproto(f).add(
			fmt.Sprintf("snat %s to %s map @%s", f, st, sn.name), sl,
			&expr.Lookup{SourceRegister: reg1, DestRegister: reg1, IsDestRegSet: true, SetName: sn.name},
			&expr.NAT{Type: expr.NATTypeSourceNAT, Family: natFamily(f), RegAddrMin: reg1}))
	}
	switch {
	case n.SNAT.IsValid():
		f := fam4
		if n.SNAT.Is6() {
			f = fam6
		}
		post.rules = append(post.rules, newRule().oifname(up).nfproto(f).add(
			fmt.Sprintf("snat %s to %s", f, n.SNAT),
			&expr.Immediate{Register: reg1, Data: addrBytes(n.SNAT)},
			&expr.NAT{Type: expr.NATTypeSourceNAT, Family: natFamily(f), RegAddrMin: reg1}))
	case n.Masquerade:
		post.rules = append(post.rules, newRule().oifname(up).add("masquerade", &expr.Masq{}))
	}
	c.inet.chains = append(c.inet.chains, pre, post)
}

func natFamily(f family) uint32 {
	if f == fam6 {
		return unix.NFPROTO_IPV6
	}
	return unix.NFPROTO_IPV4
}

func famSuffix(f family) string {
	if f == fam6 {
		return "v6"
	}
	return "v4"
}

func keyType(f family) nftables.SetDatatype {
	if f == fam6 {
		return nftables.TypeIP6Addr
	}
	return nftables.TypeIPAddr
}

func ptr[T any](v T) *T { return &v }

// ingressBurst is the policing burst of a port: as configured, or 100 ms
// at the rate but at least two full frames.
func ingressBurst(q PortQoS) uint64 {
	if q.IngressBurst != 0 {
		return q.IngressBurst
	}
	return max(q.IngressRate/8/10, 2*1514)
}

func (c *compiler) bridgeTable() {
	ports := &nftSet{name: setPorts, key: nftables.TypeIFName}
	var names []string
	for _, s := range c.b.Segments {
		names = append(names, s.Ports...)
	}
	for _, n := range names {
		ports.elems = append(ports.elems, nftables.SetElement{Key: ifname(n)})
		ports.text = append(ports.text, fmt.Sprintf("%q", n))
	}
	c.bridge.sets = append(c.bridge.sets, ports)
	pre := &nftChain{name: "prerouting", hook: nftables.ChainHookPrerouting, typ: nftables.ChainTypeFilter,
		prio: nftables.ChainPriorityRef(prioBridge), prioTx: "filter"}
	for _, q := range c.p.QoS {
		if q.IngressRate == 0 {
			continue
		}
		pre.rules = append(pre.rules, newRule().iifname(q.Port).limitOver(q.IngressRate/8, ingressBurst(q)).drop())
	}
	fwd := &nftChain{name: "forward", hook: nftables.ChainHookForward, typ: nftables.ChainTypeFilter,
		prio: nftables.ChainPriorityRef(prioBridge), prioTx: "filter"}
	if len(names) > 0 {
		pre.rules = append(pre.rules, newRule().lookupNamed("iifname", metaLoad(expr.MetaKeyIIFNAME), setPorts).markOr(markFromPort))
		fwd.rules = append(fwd.rules, newRule().lookupNamed("oifname", metaLoad(expr.MetaKeyOIFNAME), setPorts).markOr(markToPort))
	}
	c.bridge.chains = append(c.bridge.chains, pre, fwd)
}
