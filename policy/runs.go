package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Runs: rules that become set elements instead of kernel rules.
//
// The kernel pays for every rule it takes in: parsing its expressions,
// its named counter, and re-validating the whole table at each commit
// that adds one (see docs/optimizations.md, "Floors found"). 10,000
// rules as nft loads them cost about 270 ms of kernel time; the same
// matches as elements of one concatenated interval set with a counter
// per element about 40 ms. So a chain's TCP and UDP rules with ports and
// ICMP rules with types, without logging or marking, are held as
// elements of a few sets, the chain's runs, each matched by one kernel
// rule:
//
//	meta nfproto ipv4 ip saddr . meta l4proto . th dport @run_in_port_tap-a_v4_accept accept
//
// A chain is evaluated level by level (see levels): a rule's level is 0
// when no earlier rule of the chain can match a packet it matches, else
// one more than the highest level of the earlier rules that can. Each
// level has its runs, then the kernel rules of its other rules. Rules of
// one level never overlap, and the rules a packet matches have rising
// levels in priority order, so every packet meets first the rule that
// decides it in priority order, and no element of a run overlaps
// another: each packet is counted once, by the element of the rule that
// decides it, as the rule's own kernel rule would count it.
//
// Each element carries its rule's name as its comment and a counter of
// its own; a merged rule's count is the sum over its elements.

// RunPrefix starts the name of every run set, by which tools reading a
// ruleset back tell runs from other sets.
const RunPrefix = "run_"

// mergeable reports whether r may be held as run elements, whatever
// the other rules of its chain are.
func mergeable(r Rule) bool {
	if r.Log || r.DSCP != nil || r.Class != "" {
		return false
	}
	switch r.Protocol {
	case ProtoTCP, ProtoUDP:
		if len(r.Ports) == 0 {
			return false
		}
	case ProtoICMP, ProtoICMPv6:
		if len(r.ICMPTypes) == 0 {
			return false
		}
	default:
		return false
	}
	// A remote of both literal prefixes and a group would need two kinds
	// of run for one rule.
	return len(r.Remote.Prefixes) == 0 || r.Remote.AddressGroup == ""
}

// addrSpan is an inclusive address interval.
type addrSpan struct{ from, to netip.Addr }

// addrSpans merges the prefixes of family f into disjoint, ascending
// intervals.
func addrSpans(f family, prefixes []netip.Prefix) []addrSpan {
	var spans []addrSpan
	for _, p := range prefixes {
		if p.Addr().Is4() != (f == fam4) {
			continue
		}
		p = p.Masked()
		spans = append(spans, addrSpan{p.Addr(), lastAddr(p)})
	}
	return mergeSpans(spans)
}

func mergeSpans(spans []addrSpan) []addrSpan {
	sort.Slice(spans, func(i, j int) bool { return spans[i].from.Less(spans[j].from) })
	var merged []addrSpan
	for _, sp := range spans {
		if n := len(merged); n > 0 {
			last := &merged[n-1]
			if next := last.to.Next(); !next.IsValid() || sp.from.Compare(next) <= 0 {
				if sp.to.Compare(last.to) > 0 {
					last.to = sp.to
				}
				continue
			}
		}
		merged = append(merged, sp)
	}
	return merged
}

// space is what a rule can match, as far as telling whether two rules
// can match the same packet goes. nil lists match everything.
type space struct {
	rule   string
	proto  Protocol
	ports  []PortRange // merged, ascending
	icmp   []keySpan
	any    bool // any remote address
	v4, v6 []addrSpan
}

// space returns the packets r can match.
func (c *compiler) space(r Rule) space {
	s := space{rule: r.Name, proto: r.Protocol}
	if len(r.Ports) > 0 {
		s.ports = mergePorts(r.Ports)
	}
	if len(r.ICMPTypes) > 0 {
		s.icmp = icmpTypeSpans(r.ICMPTypes)
	}
	if len(r.Remote.Prefixes) == 0 && r.Remote.AddressGroup == "" {
		s.any = true
		return s
	}
	if g := r.Remote.AddressGroup; g != "" && len(r.Remote.Prefixes) == 0 {
		// Shared with the group's cache: spaces are only read.
		gs := c.groupSpans(g)
		s.v4, s.v6 = gs[0], gs[1]
		return s
	}
	s.v4, s.v6 = addrSpans(fam4, r.Remote.Prefixes), addrSpans(fam6, r.Remote.Prefixes)
	if g := r.Remote.AddressGroup; g != "" {
		gs := c.groupSpans(g)
		s.v4 = mergeSpans(append(s.v4, gs[0]...))
		s.v6 = mergeSpans(append(s.v6, gs[1]...))
	}
	return s
}

// groupSpans returns the v4 and v6 intervals of an address group.
func (c *compiler) groupSpans(name string) [2][]addrSpan {
	if gs, ok := c.groups[name]; ok {
		return gs
	}
	var gs [2][]addrSpan
	for _, g := range c.p.AddressGroups {
		if g.Name == name {
			gs = [2][]addrSpan{addrSpans(fam4, g.Prefixes), addrSpans(fam6, g.Prefixes)}
			break
		}
	}
	if c.groups == nil {
		c.groups = map[string][2][]addrSpan{}
	}
	c.groups[name] = gs
	return gs
}

// overlaps reports whether some packet can match both a and b.
func (a *space) overlaps(b *space) bool {
	if a.proto != ProtoAny && b.proto != ProtoAny && a.proto != b.proto {
		return false
	}
	if a.proto == b.proto {
		if a.ports != nil && b.ports != nil && !portsMeet(a.ports, b.ports) {
			return false
		}
		if a.icmp != nil && b.icmp != nil && !keySpansMeet(a.icmp, b.icmp) {
			return false
		}
	}
	if a.any || b.any {
		return true
	}
	return addrsMeet(a.v4, b.v4) || addrsMeet(a.v6, b.v6)
}

func portsMeet(a, b []PortRange) bool {
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch {
		case a[i].To < b[j].From:
			i++
		case b[j].To < a[i].From:
			j++
		default:
			return true
		}
	}
	return false
}

func addrsMeet(a, b []addrSpan) bool {
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch {
		case a[i].to.Less(b[j].from):
			i++
		case b[j].to.Less(a[i].from):
			j++
		default:
			return true
		}
	}
	return false
}

func keySpansMeet(a, b []keySpan) bool {
	for _, x := range a {
		for _, y := range b {
			if string(x.from) <= string(y.to) && string(y.from) <= string(x.to) {
				return true
			}
		}
	}
	return false
}

// mergePorts merges port ranges, adjacent ones included.
func mergePorts(ports []PortRange) []PortRange {
	sorted := append([]PortRange(nil), ports...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].From < sorted[j].From })
	var merged []PortRange
	for _, p := range sorted {
		if n := len(merged); n > 0 && uint32(p.From) <= uint32(merged[n-1].To)+1 {
			if p.To > merged[n-1].To {
				merged[n-1].To = p.To
			}
			continue
		}
		merged = append(merged, p)
	}
	return merged
}

// levels gives each space of a chain, in chain order, its level: 0 when
// no earlier space can match a packet it matches, else one more than the
// highest level of those that can. Two spaces of one level never overlap
// (the later would be a level higher), so a chain evaluated level by
// level decides every packet by the rule priority order would: the rules
// a packet matches have rising levels in priority order. TCP and UDP
// spaces with ports are swept by port, so that a chain of a thousand
// rules on distinct ports costs about as many tests, not half a million.
func levels(sp []space) []int {
	earlier := make([][]int, len(sp))
	test := func(i, j int) {
		if i > j {
			i, j = j, i
		}
		if i != j && sp[i].overlaps(&sp[j]) {
			earlier[j] = append(earlier[j], i)
		}
	}
	type entry struct {
		from, to uint16
		i        int
	}
	var tcp, udp []entry
	var wide []int
	isWide := make([]bool, len(sp))
	for i, s := range sp {
		switch {
		case s.proto == ProtoTCP && s.ports != nil:
			for _, p := range s.ports {
				tcp = append(tcp, entry{p.From, p.To, i})
			}
		case s.proto == ProtoUDP && s.ports != nil:
			for _, p := range s.ports {
				udp = append(udp, entry{p.From, p.To, i})
			}
		default:
			wide = append(wide, i)
			isWide[i] = true
		}
	}
	for _, i := range wide {
		for j := range sp {
			// A pair of wide spaces is tested once.
			if !isWide[j] || j > i {
				test(i, j)
			}
		}
	}
	for _, es := range [][]entry{tcp, udp} {
		sort.Slice(es, func(a, b int) bool { return es[a].from < es[b].from })
		for a := range es {
			for b := a + 1; b < len(es) && es[b].from <= es[a].to; b++ {
				test(es[a].i, es[b].i)
			}
		}
	}
	out := make([]int, len(sp))
	for j, is := range earlier {
		for _, i := range is {
			out[j] = max(out[j], out[i]+1)
		}
	}
	return out
}

// runKind is what makes rules share a run: the family they match (any
// for TCP and UDP without a remote), whether the key starts with the
// remote address or an address group is matched before the lookup, whether
// the last field is an ICMP type or a port, and what the run's rule does
// (a reject answers per protocol).
type runKind struct {
	f      family
	addr   bool
	group  string
	icmp   bool
	action Action
	reject Protocol // the protocol of a reject run
}

// name names the run of kind k in chain.
func (k runKind) name(chain string) string {
	var b strings.Builder
	b.WriteString(RunPrefix + chain + "_")
	switch {
	case k.addr:
		b.WriteString(famSuffix(k.f))
	case k.group != "":
		b.WriteString("g" + famSuffix(k.f)[1:] + "_" + k.group)
	case k.f == famAny:
		b.WriteString("any")
	default:
		b.WriteString("any" + famSuffix(k.f)[1:])
	}
	if k.icmp {
		b.WriteString("_icmp")
	}
	switch k.action {
	case ActionAllow:
		b.WriteString("_accept")
	case ActionDeny:
		b.WriteString("_drop")
	default:
		b.WriteString("_reject")
		if !k.icmp {
			b.WriteString("_" + k.reject.String())
		}
	}
	return b.String()
}

// runKinds returns the runs a mergeable rule's elements go to, with the
// address spans of each (none where the key has no address).
func (c *compiler) runKinds(r Rule) ([]runKind, [][]addrSpan) {
	base := runKind{action: r.Action}
	fams := []family{fam4, fam6}
	switch r.Protocol {
	case ProtoICMP:
		base.icmp, fams = true, []family{fam4}
	case ProtoICMPv6:
		base.icmp, fams = true, []family{fam6}
	}
	if r.Action == ActionReject {
		base.reject = r.Protocol
	}
	var ks []runKind
	var spans [][]addrSpan
	switch {
	case r.Remote.AddressGroup != "":
		gs := c.groupSpans(r.Remote.AddressGroup)
		for _, f := range fams {
			if len(gs[f-fam4]) > 0 {
				k := base
				k.f, k.group = f, r.Remote.AddressGroup
				ks, spans = append(ks, k), append(spans, nil)
			}
		}
	case len(r.Remote.Prefixes) == 0:
		k := base
		if base.icmp {
			k.f = fams[0]
		}
		ks, spans = append(ks, k), append(spans, nil)
	default:
		for _, f := range fams {
			if s := addrSpans(f, r.Remote.Prefixes); len(s) > 0 {
				k := base
				k.f, k.addr = f, true
				ks, spans = append(ks, k), append(spans, s)
			}
		}
	}
	return ks, spans
}

// runSet is an empty run of kind k.
func runSet(name string, k runKind) *nftSet {
	last := nftables.TypeInetService
	if k.icmp {
		last = nftables.TypeICMPType
		if k.f == fam6 {
			last = nftables.TypeICMP6Type
		}
	}
	types := []nftables.SetDatatype{nftables.TypeInetProto, last}
	if k.addr {
		types = append([]nftables.SetDatatype{keyType(k.f)}, types...)
	}
	return &nftSet{name: name, key: nftables.MustConcatSetType(types...), interval: true, concat: true, counter: true, run: &k}
}

// addRunElems adds r's elements to s: one per address span and port
// range or ICMP type span, each field padded to the kernel's 4-byte
// registers. Their text is made only when the set is printed (see
// runElemText).
func addRunElems(s *nftSet, r Rule, spans []addrSpan) {
	var last []keySpan
	if len(r.ICMPTypes) > 0 {
		last = icmpTypeSpans(r.ICMPTypes)
	} else {
		last = portSpans(r.Ports)
	}
	if spans == nil {
		spans = []addrSpan{{}}
	}
	for _, a := range spans {
		var from, to []byte
		if a.from.IsValid() {
			from, to = addrBytes(a.from), addrBytes(a.to)
		}
		for _, l := range last {
			n := len(from) + 8
			buf := make([]byte, 2*n)
			key, end := buf[:n:n], buf[n:]
			for _, x := range [2]struct{ dst, addr, val []byte }{{key, from, l.from}, {end, to, l.to}} {
				copy(x.dst, x.addr)
				x.dst[len(x.addr)] = protoNumber[r.Protocol]
				copy(x.dst[len(x.addr)+4:], x.val)
			}
			s.elems = append(s.elems, nftables.SetElement{Key: key, KeyEnd: end, Comment: r.Name})
		}
	}
}

// runElemText renders an element of a run of kind k.
func runElemText(k runKind, e nftables.SetElement) string {
	var b strings.Builder
	key, end := e.Key, e.KeyEnd
	if k.addr {
		n := 4
		if k.f == fam6 {
			n = 16
		}
		from, _ := netip.AddrFromSlice(key[:n])
		to, _ := netip.AddrFromSlice(end[:n])
		b.WriteString(spanText(from, to) + " . ")
		key, end = key[n:], end[n:]
	}
	proto := Protocol(0)
	for p, n := range protoNumber {
		if n == key[0] {
			proto = p
		}
	}
	b.WriteString(protoText[proto] + " . ")
	if k.icmp {
		b.WriteString(fmt.Sprint(key[4]))
		if end[4] != key[4] {
			fmt.Fprintf(&b, "-%d", end[4])
		}
	} else {
		from, to := uint16(key[4])<<8|uint16(key[5]), uint16(end[4])<<8|uint16(end[5])
		b.WriteString(fmt.Sprint(from))
		if to != from {
			fmt.Fprintf(&b, "-%d", to)
		}
	}
	fmt.Fprintf(&b, " comment %q", e.Comment)
	return b.String()
}

// runRule is the kernel rule that matches a run of kind k: the address
// group first for a group run, then the concatenated key looked up in
// the run, then the verdict.
func runRule(k runKind, set string, dir Direction) *nftRule {
	r := newRule().nfproto(k.f)
	source := dir == Ingress
	if k.group != "" {
		load, text := loadAddr(k.f, source)
		r.lookupNamed(text, load, groupSet(k.group, k.f))
	}
	reg := uint32(unix.NFT_REG32_00)
	var loads []expr.Any
	var texts []string
	if k.addr {
		off, n, text := addrOffset(k.f, source)
		loads = append(loads, &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n})
		texts = append(texts, text)
		reg += n / 4
	}
	loads = append(loads, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg})
	texts = append(texts, "meta l4proto")
	if k.icmp {
		loads = append(loads, &expr.Payload{DestRegister: reg + 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1})
		texts = append(texts, "icmp type")
		if k.f == fam6 {
			texts[len(texts)-1] = "icmpv6 type"
		}
	} else {
		loads = append(loads, &expr.Payload{DestRegister: reg + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
		texts = append(texts, "th dport")
	}
	loads = append(loads, &expr.Lookup{SourceRegister: unix.NFT_REG32_00, SetName: set})
	r.add(strings.Join(texts, " . ")+" @"+set, loads...)
	switch {
	case k.action == ActionAllow:
		return r.accept()
	case k.action == ActionDeny:
		return r.drop()
	case k.icmp:
		return r.rejectICMPX(unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED, "admin-prohibited")
	case k.reject == ProtoTCP:
		return r.rejectTCP()
	}
	return r.rejectICMPX(unix.NFT_REJECT_ICMPX_PORT_UNREACH, "port-unreachable")
}

// levelSuffix ends the names of the runs of a level above 0.
func levelSuffix(l int) string {
	if l == 0 {
		return ""
	}
	return fmt.Sprintf("_%d", l)
}

// minRun is the fewest rules a run holds. A set costs the kernel more
// than the kernel rule of one policy rule: a run of fewer is dissolved,
// its rules keep their kernel rules, at their level (see levels), which
// keeps every packet's fate.
const minRun = 2

// chainRules compiles the rules of one chain (all of direction dir, in
// priority order), level by level (see levels): the rules of the level's
// runs first, then the kernel rules of the level's rules that are not
// merged, in priority order. Within a level no two rules overlap, so
// their order there does not matter, and no element of a run overlaps
// another. The runs' sets are added to the table and recorded as the
// chain's.
func (c *compiler) chainRules(chain string, dir Direction, rules []Rule) []*nftRule {
	spaces := make([]space, len(rules))
	var prev []space
	if c.prev != nil {
		prev = c.prev.spaces[chain]
	}
	for i, r := range rules {
		if len(prev) == len(rules) && !c.changed[r.Name] {
			spaces[i] = prev[i]
		} else {
			spaces[i] = c.space(r)
		}
	}
	c.rs.spaces[chain] = spaces
	level := levels(spaces)
	c.rs.levels[chain] = level
	top := slices.Max(append(level, 0))
	// The runs each mergeable rule would go to; a rule whose runs are
	// not all kept is not merged, which may leave another run short.
	type member struct {
		i     int
		kinds []runKind
		names []string
		spans [][]addrSpan
	}
	var members []member
	size := map[string]int{}
	for i, r := range rules {
		if !mergeable(r) {
			continue
		}
		ks, spans := c.runKinds(r)
		if len(ks) == 0 {
			continue // matches nothing (ICMPv6 from IPv4 only): no elements to count in
		}
		m := member{i: i, kinds: ks, spans: spans, names: make([]string, len(ks))}
		for j, k := range ks {
			m.names[j] = k.name(chain) + levelSuffix(level[i])
			size[m.names[j]]++
		}
		members = append(members, m)
	}
	merged := make([]bool, len(rules))
	for _, m := range members {
		merged[m.i] = true
	}
	for short := true; short; {
		short = false
		for _, m := range members {
			if !merged[m.i] || !slices.ContainsFunc(m.names, func(n string) bool { return size[n] < minRun }) {
				continue
			}
			merged[m.i], short = false, true
			for _, n := range m.names {
				size[n]--
			}
		}
	}
	runs := map[string]*nftSet{}
	kinds := map[string]runKind{}
	byLevel := make([][]string, top+1)
	old := c.reusable(chain)
	for _, m := range members {
		if !merged[m.i] {
			continue
		}
		r := rules[m.i]
		c.merged[r.Name] = true
		for j, name := range m.names {
			s := runs[name]
			if s == nil {
				s = runSet(name, m.kinds[j])
				if prev := old.sets[name]; prev != nil {
					s.elems = make([]nftables.SetElement, 0, len(prev.elems)+4)
				}
				runs[name], kinds[name] = s, m.kinds[j]
				byLevel[level[m.i]] = append(byLevel[level[m.i]], name)
			}
			if e, ok := old.elems[name][r.Name]; ok && !c.changed[r.Name] {
				s.elems = append(s.elems, e...)
				continue
			}
			addRunElems(s, r, m.spans[j])
		}
	}
	out := make([]*nftRule, 0, len(runs)+len(rules))
	var names []string
	for l, lnames := range byLevel {
		sort.Strings(lnames)
		for _, name := range lnames {
			c.inet.sets = append(c.inet.sets, runs[name])
			out = append(out, runRule(kinds[name], name, dir))
		}
		names = append(names, lnames...)
		for i, r := range rules {
			if merged[i] || level[i] != l {
				continue
			}
			if x, ok := old.rules[r.Name]; ok && !c.changed[r.Name] && !old.ownSets[r.Name] {
				out = append(out, x...)
				continue
			}
			out = append(out, c.rule(r)...)
		}
	}
	if len(names) > 0 {
		c.rs.runs[chain] = names
	}
	return out
}

// reuse is what a patch takes over from the chain it compiles anew,
// for the rules it did not change: their run elements by run and rule,
// and the kernel rules of those that are not merged.
type reuse struct {
	sets  map[string]*nftSet
	elems map[string]map[string][]nftables.SetElement
	rules map[string][]*nftRule
	// ownSets are the rules with named sets of their own, which
	// compiling them makes again; their kernel rules are not reused.
	ownSets map[string]bool
}

// reusable indexes what chain held in c.prev; nothing for a compile.
func (c *compiler) reusable(chain string) reuse {
	var u reuse
	if c.prev == nil {
		return u
	}
	u.sets, u.elems, u.rules, u.ownSets = map[string]*nftSet{}, map[string]map[string][]nftables.SetElement{}, map[string][]*nftRule{}, map[string]bool{}
	for _, name := range c.prev.runs[chain] {
		for _, s := range c.prev.inet.sets {
			if s.name != name {
				continue
			}
			u.sets[name] = s
			byRule := map[string][]nftables.SetElement{}
			// A rule's elements are adjacent (addRunElems).
			for i := 0; i < len(s.elems); {
				j := i + 1
				for j < len(s.elems) && s.elems[j].Comment == s.elems[i].Comment {
					j++
				}
				byRule[s.elems[i].Comment] = s.elems[i:j:j]
				i = j
			}
			u.elems[name] = byRule
		}
	}
	for _, s := range c.prev.inet.sets {
		if rest, ok := strings.CutPrefix(s.name, counterPre); ok {
			for _, suffix := range []string{"_v4", "_v6", "_ports", "_icmp"} {
				if rule, ok := strings.CutSuffix(rest, suffix); ok {
					u.ownSets[rule] = true
				}
			}
		}
	}
	for _, ch := range c.prev.inet.chains {
		if ch.name != chain {
			continue
		}
		for i := 0; i < len(ch.rules); {
			j := i + 1
			if ch.rules[i].owner == "" {
				i = j
				continue
			}
			for j < len(ch.rules) && ch.rules[j].owner == ch.rules[i].owner {
				j++
			}
			u.rules[ch.rules[i].owner] = ch.rules[i:j:j]
			i = j
		}
	}
	return u
}
