package policy

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// Known is what exists around a policy: the tenant's segments and their
// workload ports. Validate checks every reference against it.
type Known struct {
	Segments map[string][]string // segment name -> its ports
}

// KnownFrom builds Known from a binding.
func KnownFrom(b Binding) Known {
	k := Known{Segments: map[string][]string{}}
	for _, s := range b.Segments {
		k.Segments[s.Name] = append(k.Segments[s.Name], s.Ports...)
	}
	return k
}

// Problem is one broken rule of a policy: the field path, its value and
// the rule it breaks.
type Problem struct {
	Field string
	Value string
	Rule  string
}

func (p Problem) String() string {
	if p.Value == "" {
		return fmt.Sprintf("%s: %s", p.Field, p.Rule)
	}
	return fmt.Sprintf("%s: %s %s", p.Field, p.Value, p.Rule)
}

// ValidationError lists every problem Validate found, so a caller fixes a
// policy in one round.
type ValidationError struct {
	Tenant   string
	Problems []Problem
}

func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return fmt.Sprintf("policy of tenant %s is invalid: %s", e.Tenant, strings.Join(lines, "; "))
}

// nameRE is what rule, group, class and tenant names may be: they become
// parts of nftables object and chain names and of log prefixes.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// validName is nameRE.MatchString without the regexp machinery, which
// costs a large policy milliseconds on every Apply.
func validName(name string) bool {
	if len(name) == 0 || len(name) > 63 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return true
}

// maxLogPrefix is the kernel's NF_LOG_PREFIXLEN less its terminating NUL.
const maxLogPrefix = 127

// Limits of the QoS model: HTB knows priorities 0..7, the bridge limit
// expression a 32-bit burst, and nftables a rate of at least one byte per
// second.
const (
	maxHTBPriority = 7
	minRate        = 8
	maxClasses     = 0xff
)

// Validate checks p against the tenant's segments and ports and returns a
// *ValidationError listing every problem, or nil.
//
// Rules beyond the model's comments:
//   - names (rules, groups, classes, tenant) match [A-Za-z0-9][A-Za-z0-9_.-]{0,62};
//   - priorities are >= 0;
//   - DSCP and Class only on allow rules; Class only on ingress rules (the
//     class belongs to the HTB of the port the packet leaves through, which
//     for ingress is the target); for a port group or segment target every
//     member port must define the class at the same position, so one skb
//     priority selects it on all of them;
//   - a zero SegmentDefault action means allow;
//   - an ingress rate needs no burst (default: 100 ms at the rate, at least
//     two full frames); a burst without its rate is an error; classes need
//     an egress rate, each class rate is at most the egress rate, their sum
//     too, and a ceiling lies between the class rate and the egress rate;
//   - NAT: Masquerade and SNAT exclude each other; floating IP externals
//     are unique and not used by port forwards; internal and external
//     addresses of one mapping share a family.
func (p Policy) Validate(k Known) error {
	v := &validator{}
	if !nameRE.MatchString(p.Tenant) {
		v.add("tenant", q(p.Tenant), "is not a valid name ("+nameRE.String()+")")
	}
	portSegment := map[string]string{}
	for seg, ports := range k.Segments {
		for _, port := range ports {
			portSegment[port] = seg
		}
	}
	isPort := func(field, port string) bool {
		if _, ok := portSegment[port]; !ok {
			v.add(field, q(port), "is not a port of any segment of tenant "+p.Tenant)
			return false
		}
		return true
	}

	addrGroups := map[string]bool{}
	for i, g := range p.AddressGroups {
		f := fmt.Sprintf("addressGroups[%d]", i)
		v.name(f+".name", g.Name)
		if addrGroups[g.Name] {
			v.add(f+".name", q(g.Name), "is used by another address group")
		}
		addrGroups[g.Name] = true
		for j, pr := range g.Prefixes {
			if !pr.IsValid() {
				v.add(fmt.Sprintf("%s.prefixes[%d]", f, j), pr.String(), "is not a valid prefix")
			}
		}
	}

	portGroups := map[string][]string{}
	for i, g := range p.PortGroups {
		f := fmt.Sprintf("portGroups[%d]", i)
		v.name(f+".name", g.Name)
		if _, dup := portGroups[g.Name]; dup {
			v.add(f+".name", q(g.Name), "is used by another port group")
		}
		seen := map[string]bool{}
		for j, port := range g.Ports {
			pf := fmt.Sprintf("%s.ports[%d]", f, j)
			if seen[port] {
				v.add(pf, q(port), "is listed twice")
			}
			seen[port] = true
			isPort(pf, port)
		}
		portGroups[g.Name] = g.Ports
	}

	seenSeg := map[string]bool{}
	for i, s := range p.Segments {
		f := fmt.Sprintf("segments[%d]", i)
		if _, ok := k.Segments[s.Segment]; !ok {
			v.add(f+".segment", q(s.Segment), "is not a segment of tenant "+p.Tenant)
		}
		if seenSeg[s.Segment] {
			v.add(f+".segment", q(s.Segment), "has another default entry")
		}
		seenSeg[s.Segment] = true
		v.action(f+".ingress", s.Ingress, true)
		v.action(f+".egress", s.Egress, true)
	}

	qos := map[string]PortQoS{}
	for i, pq := range p.QoS {
		f := fmt.Sprintf("qos[%d]", i)
		if isPort(f+".port", pq.Port) {
			if _, dup := qos[pq.Port]; dup {
				v.add(f+".port", q(pq.Port), "has another qos entry")
			}
		}
		qos[pq.Port] = pq
		v.qos(f, pq)
	}

	rc := &ruleChecks{v: v, tenant: p.Tenant, k: k, portSegment: portSegment,
		addrGroups: addrGroups, portGroups: portGroups, qos: qos}
	ruleNames := map[string]bool{}
	for i, r := range p.Rules {
		rc.rule(i, r, ruleNames)
	}

	if p.NAT != nil {
		v.nat(p.NAT)
	}
	if len(v.problems) == 0 {
		return nil
	}
	return &ValidationError{Tenant: p.Tenant, Problems: v.problems}
}

// ruleChecks checks rules against the rest of a policy, as Validate and
// the engine's check of changed rules (validateRules) share it.
type ruleChecks struct {
	v           *validator
	tenant      string
	k           Known
	portSegment map[string]string
	addrGroups  map[string]bool
	portGroups  map[string][]string
	qos         map[string]PortQoS
}

func (c *ruleChecks) isPort(field, port string) bool {
	if _, ok := c.portSegment[port]; !ok {
		c.v.add(field, q(port), "is not a port of any segment of tenant "+c.tenant)
		return false
	}
	return true
}

// rule checks rule i of the policy. ruleNames holds the names of the
// rules before it; nil skips the check for duplicate names.
func (c *ruleChecks) rule(i int, r Rule, ruleNames map[string]bool) {
	v := c.v
	f := fmt.Sprintf("rules[%d]", i)
	v.name(f+".name", r.Name)
	if ruleNames != nil {
		if ruleNames[r.Name] {
			v.add(f+".name", q(r.Name), "is used by another rule")
		}
		ruleNames[r.Name] = true
	}
	if prefix := logPrefix(c.tenant, r.Name); r.Log && len(prefix) > maxLogPrefix {
		v.add(f+".log", q(prefix), fmt.Sprintf("log prefix is longer than %d bytes", maxLogPrefix))
	}
	if r.Priority < 0 {
		v.add(f+".priority", fmt.Sprint(r.Priority), "is negative")
	}
	if r.Direction != Ingress && r.Direction != Egress {
		v.add(f+".direction", fmt.Sprint(uint8(r.Direction)), "is neither ingress nor egress")
	}
	v.action(f+".action", r.Action, false)

	// The ports the rule's target covers, for class checks.
	var members []string
	set := 0
	if r.Target.Port != "" {
		set++
		if c.isPort(f+".target.port", r.Target.Port) {
			members = []string{r.Target.Port}
		}
	}
	if r.Target.PortGroup != "" {
		set++
		ports, ok := c.portGroups[r.Target.PortGroup]
		if !ok {
			v.add(f+".target.portGroup", q(r.Target.PortGroup), "is not a port group of the policy")
		}
		members = ports
	}
	if r.Target.Segment != "" {
		set++
		ports, ok := c.k.Segments[r.Target.Segment]
		if !ok {
			v.add(f+".target.segment", q(r.Target.Segment), "is not a segment of tenant "+c.tenant)
		}
		members = ports
	}
	if set != 1 {
		v.add(f+".target", fmt.Sprintf("%+v", r.Target), "must set exactly one of port, portGroup, segment")
	}

	v4, v6 := false, false
	for j, pr := range r.Remote.Prefixes {
		if !pr.IsValid() {
			v.add(fmt.Sprintf("%s.remote.prefixes[%d]", f, j), pr.String(), "is not a valid prefix")
			continue
		}
		if pr.Addr().Is4() {
			v4 = true
		} else {
			v6 = true
		}
	}
	if r.Remote.AddressGroup != "" {
		if !c.addrGroups[r.Remote.AddressGroup] {
			v.add(f+".remote.addressGroup", q(r.Remote.AddressGroup), "is not an address group of the policy")
		}
		v4, v6 = true, true
	}
	switch r.Protocol {
	case ProtoAny, ProtoTCP, ProtoUDP:
	case ProtoICMP:
		if len(r.Remote.Prefixes)+len(r.Remote.AddressGroup) > 0 && !v4 {
			v.add(f+".remote", "", "has no IPv4 prefix but the protocol is icmp")
		}
	case ProtoICMPv6:
		if len(r.Remote.Prefixes)+len(r.Remote.AddressGroup) > 0 && !v6 {
			v.add(f+".remote", "", "has no IPv6 prefix but the protocol is icmpv6")
		}
	default:
		v.add(f+".protocol", fmt.Sprint(uint8(r.Protocol)), "is not a known protocol")
	}
	if len(r.Ports) > 0 && r.Protocol != ProtoTCP && r.Protocol != ProtoUDP {
		v.add(f+".ports", fmt.Sprint(r.Ports), "need protocol tcp or udp, not "+r.Protocol.String())
	}
	for j, pr := range r.Ports {
		if pr.From == 0 || pr.From > pr.To {
			v.add(fmt.Sprintf("%s.ports[%d]", f, j), fmt.Sprintf("%d-%d", pr.From, pr.To), "must satisfy 0 < from <= to")
		}
	}
	if len(r.ICMPTypes) > 0 && r.Protocol != ProtoICMP && r.Protocol != ProtoICMPv6 {
		v.add(f+".icmpTypes", fmt.Sprint(r.ICMPTypes), "need protocol icmp or icmpv6, not "+r.Protocol.String())
	}
	if r.DSCP != nil {
		if *r.DSCP > 63 {
			v.add(f+".dscp", fmt.Sprint(*r.DSCP), "is out of range 0..63")
		}
		if r.Action != ActionAllow {
			v.add(f+".dscp", fmt.Sprint(*r.DSCP), "is only allowed on allow rules")
		}
	}
	if r.Class != "" {
		v.ruleClass(f+".class", r, members, c.qos)
	}
}

// validateRules reports whether the rules at idx of p are valid, p being
// a policy whose other rules and other parts, and the tenant's segments,
// are those of a policy that passed Validate, and whose rules at idx keep
// the names they had there. Under those conditions only these rules can
// be invalid, so Validate of p fails exactly when validateRules does.
func validateRules(p Policy, k Known, idx []int) bool {
	v := &validator{}
	c := &ruleChecks{v: v, tenant: p.Tenant, k: k, portSegment: map[string]string{},
		addrGroups: map[string]bool{}, portGroups: map[string][]string{}, qos: map[string]PortQoS{}}
	for seg, ports := range k.Segments {
		for _, port := range ports {
			c.portSegment[port] = seg
		}
	}
	for _, g := range p.AddressGroups {
		c.addrGroups[g.Name] = true
	}
	for _, g := range p.PortGroups {
		c.portGroups[g.Name] = g.Ports
	}
	for _, pq := range p.QoS {
		c.qos[pq.Port] = pq
	}
	for _, i := range idx {
		c.rule(i, p.Rules[i], nil)
	}
	return len(v.problems) == 0
}

type validator struct {
	problems []Problem
}

func (v *validator) add(field, value, rule string) {
	v.problems = append(v.problems, Problem{Field: field, Value: value, Rule: rule})
}

func q(s string) string { return fmt.Sprintf("%q", s) }

func (v *validator) name(field, name string) {
	if !validName(name) {
		v.add(field, q(name), "is not a valid name ("+nameRE.String()+")")
	}
}

func (v *validator) action(field string, a Action, zeroOK bool) {
	switch {
	case a == 0 && zeroOK:
	case a == ActionAllow, a == ActionDeny, a == ActionReject:
	default:
		v.add(field, fmt.Sprint(uint8(a)), "is not allow, deny or reject")
	}
}

func (v *validator) qos(f string, pq PortQoS) {
	if pq.IngressRate == 0 && pq.IngressBurst != 0 {
		v.add(f+".ingressBurst", fmt.Sprint(pq.IngressBurst), "is set without an ingress rate")
	}
	if pq.IngressRate != 0 && pq.IngressRate < minRate {
		v.add(f+".ingressRate", fmt.Sprint(pq.IngressRate), fmt.Sprintf("is below %d bits/s", minRate))
	}
	if pq.IngressBurst > 1<<32-1 {
		v.add(f+".ingressBurst", fmt.Sprint(pq.IngressBurst), "is above 4294967295 bytes")
	}
	if pq.EgressRate == 0 && pq.EgressBurst != 0 {
		v.add(f+".egressBurst", fmt.Sprint(pq.EgressBurst), "is set without an egress rate")
	}
	if pq.EgressRate != 0 && pq.EgressRate < minRate {
		v.add(f+".egressRate", fmt.Sprint(pq.EgressRate), fmt.Sprintf("is below %d bits/s", minRate))
	}
	if len(pq.Classes) > 0 && pq.EgressRate == 0 {
		v.add(f+".classes", "", "need an egress rate")
	}
	if len(pq.Classes) > maxClasses {
		v.add(f+".classes", fmt.Sprint(len(pq.Classes)), fmt.Sprintf("are more than %d", maxClasses))
	}
	names := map[string]bool{}
	var sum uint64
	for j, c := range pq.Classes {
		cf := fmt.Sprintf("%s.classes[%d]", f, j)
		v.name(cf+".name", c.Name)
		if names[c.Name] {
			v.add(cf+".name", q(c.Name), "is used by another class of the port")
		}
		names[c.Name] = true
		if c.Rate == 0 {
			v.add(cf+".rate", "0", "must be set")
		}
		if pq.EgressRate != 0 && c.Rate > pq.EgressRate {
			v.add(cf+".rate", fmt.Sprint(c.Rate), fmt.Sprintf("exceeds the port's egress rate %d", pq.EgressRate))
		}
		if c.Ceil != 0 && (c.Ceil < c.Rate || (pq.EgressRate != 0 && c.Ceil > pq.EgressRate)) {
			v.add(cf+".ceil", fmt.Sprint(c.Ceil), "must lie between the class rate and the port's egress rate")
		}
		if c.Priority > maxHTBPriority {
			v.add(cf+".priority", fmt.Sprint(c.Priority), fmt.Sprintf("is out of range 0..%d", maxHTBPriority))
		}
		sum += c.Rate
	}
	if pq.EgressRate != 0 && sum > pq.EgressRate {
		v.add(f+".classes", fmt.Sprint(sum), fmt.Sprintf("rates sum above the port's egress rate %d", pq.EgressRate))
	}
}

func (v *validator) ruleClass(f string, r Rule, members []string, qos map[string]PortQoS) {
	if r.Action != ActionAllow {
		v.add(f, q(r.Class), "is only allowed on allow rules")
	}
	if r.Direction != Ingress {
		v.add(f, q(r.Class), "is only allowed on ingress rules")
	}
	if len(members) == 0 {
		v.add(f, q(r.Class), "needs a target with ports")
		return
	}
	index := -1
	for _, port := range members {
		i := classIndex(qos[port], r.Class)
		switch {
		case i < 0:
			v.add(f, q(r.Class), "is not a class of port "+port)
		case index >= 0 && i != index:
			v.add(f, q(r.Class), fmt.Sprintf("is class %d of port %s but class %d of another member", i, port, index))
		default:
			index = i
		}
	}
}

func classIndex(pq PortQoS, name string) int {
	for i, c := range pq.Classes {
		if c.Name == name {
			return i
		}
	}
	return -1
}

func (v *validator) nat(n *NAT) {
	if n.Masquerade && n.SNAT.IsValid() {
		v.add("nat.snat", n.SNAT.String(), "is set together with masquerade")
	}
	if n.Address.IsValid() && n.Gateway.IsValid() && n.Address.Addr().Is4() != n.Gateway.Is4() {
		v.add("nat.gateway", n.Gateway.String(), "is not of the uplink address's family")
	}
	external := map[netip.Addr]bool{}
	for i, f := range n.FloatingIPs {
		fp := fmt.Sprintf("nat.floatingIPs[%d]", i)
		if !f.External.IsValid() {
			v.add(fp+".external", "", "must be set")
			continue
		}
		if external[f.External] {
			v.add(fp+".external", f.External.String(), "is used by another floating IP")
		}
		external[f.External] = true
		if !f.Internal.IsValid() {
			v.add(fp+".internal", "", "must be set")
		} else if f.Internal.Is4() != f.External.Is4() {
			v.add(fp+".internal", f.Internal.String(), "is not of the external address's family")
		}
	}
	type pfKey struct {
		a netip.Addr
		p Protocol
		n uint16
	}
	forwards := map[pfKey]bool{}
	for i, f := range n.PortForwards {
		fp := fmt.Sprintf("nat.portForwards[%d]", i)
		if !f.External.IsValid() {
			v.add(fp+".external", "", "must be set")
		} else if external[f.External] {
			v.add(fp+".external", f.External.String(), "is a floating IP")
		}
		if f.Protocol != ProtoTCP && f.Protocol != ProtoUDP {
			v.add(fp+".protocol", f.Protocol.String(), "must be tcp or udp")
		}
		if f.Port == 0 {
			v.add(fp+".port", "0", "must be set")
		}
		key := pfKey{f.External, f.Protocol, f.Port}
		if forwards[key] {
			v.add(fp, fmt.Sprintf("%s %s/%d", f.External, f.Protocol, f.Port), "is forwarded twice")
		}
		forwards[key] = true
		if !f.Internal.IsValid() {
			v.add(fp+".internal", "", "must be set")
		} else if f.External.IsValid() && f.Internal.Is4() != f.External.Is4() {
			v.add(fp+".internal", f.Internal.String(), "is not of the external address's family")
		}
	}
}

func logPrefix(tenant, rule string) string {
	return "evpnd " + tenant + " " + rule + ": "
}
