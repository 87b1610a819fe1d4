package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/google/nftables"
)

// The engine's fast path for the common edit of a large policy: some
// rules change what they match or do, and nothing else changes. Instead of
// validating and compiling the whole policy, it checks the changed rules,
// compiles only their chains and patches those chains' kernel rules and
// sets into a copy of the ruleset in force. The patched ruleset is what
// Compile would make of the new policy; whatever the fast path cannot
// prove that for, it declines, and the engine takes the full path.

// snapshot is the engine's own deep copy of the policy and binding in
// force, so that callers reusing the slices they passed cannot change
// what the next Apply is compared against.
type snapshot struct {
	b Binding
	p Policy
}

func newSnapshot(b Binding, p Policy) *snapshot {
	return &snapshot{b: cloneBinding(b), p: clonePolicy(p)}
}

func cloneBinding(b Binding) Binding {
	b.Segments = slices.Clone(b.Segments)
	for i := range b.Segments {
		b.Segments[i].Ports = slices.Clone(b.Segments[i].Ports)
	}
	return b
}

func clonePolicy(p Policy) Policy {
	p.AddressGroups = slices.Clone(p.AddressGroups)
	for i := range p.AddressGroups {
		p.AddressGroups[i].Prefixes = slices.Clone(p.AddressGroups[i].Prefixes)
	}
	p.PortGroups = slices.Clone(p.PortGroups)
	for i := range p.PortGroups {
		p.PortGroups[i].Ports = slices.Clone(p.PortGroups[i].Ports)
	}
	p.Segments = slices.Clone(p.Segments)
	p.Rules = slices.Clone(p.Rules)
	for i := range p.Rules {
		p.Rules[i] = cloneRule(p.Rules[i])
	}
	if p.NAT != nil {
		n := *p.NAT
		n.FloatingIPs = slices.Clone(n.FloatingIPs)
		n.PortForwards = slices.Clone(n.PortForwards)
		p.NAT = &n
	}
	p.QoS = slices.Clone(p.QoS)
	for i := range p.QoS {
		p.QoS[i].Classes = slices.Clone(p.QoS[i].Classes)
	}
	return p
}

func cloneRule(r Rule) Rule {
	r.Remote.Prefixes = slices.Clone(r.Remote.Prefixes)
	r.Ports = slices.Clone(r.Ports)
	r.ICMPTypes = slices.Clone(r.ICMPTypes)
	if r.DSCP != nil {
		r.DSCP = ptr(*r.DSCP)
	}
	return r
}

// sameRule reports whether a and b are the same rule, field by field;
// nil and empty lists are the same.
func sameRule(a, b *Rule) bool {
	return a.Name == b.Name && a.Priority == b.Priority && a.Direction == b.Direction && a.Target == b.Target &&
		a.Remote.AddressGroup == b.Remote.AddressGroup && slices.Equal(a.Remote.Prefixes, b.Remote.Prefixes) &&
		a.Protocol == b.Protocol && slices.Equal(a.Ports, b.Ports) && slices.Equal(a.ICMPTypes, b.ICMPTypes) &&
		a.Action == b.Action && a.Log == b.Log && (a.DSCP == nil) == (b.DSCP == nil) &&
		(a.DSCP == nil || *a.DSCP == *b.DSCP) && a.Class == b.Class
}

// sameContext reports whether p and b equal the snapshot in everything but
// the rules.
func (s *snapshot) sameContext(b Binding, p Policy) bool {
	if b.Tenant != s.b.Tenant || b.Namespace != s.b.Namespace || b.Uplink != s.b.Uplink ||
		!slices.EqualFunc(b.Segments, s.b.Segments, func(x, y SegmentBinding) bool {
			return x.Name == y.Name && x.Bridge == y.Bridge && slices.Equal(x.Ports, y.Ports)
		}) {
		return false
	}
	o := &s.p
	if p.Tenant != o.Tenant || !slices.Equal(p.Segments, o.Segments) ||
		!slices.EqualFunc(p.AddressGroups, o.AddressGroups, func(x, y AddressGroup) bool {
			return x.Name == y.Name && slices.Equal(x.Prefixes, y.Prefixes)
		}) ||
		!slices.EqualFunc(p.PortGroups, o.PortGroups, func(x, y PortGroup) bool {
			return x.Name == y.Name && slices.Equal(x.Ports, y.Ports)
		}) ||
		!slices.EqualFunc(p.QoS, o.QoS, func(x, y PortQoS) bool {
			return x.Port == y.Port && x.EgressRate == y.EgressRate && x.EgressBurst == y.EgressBurst &&
				x.IngressRate == y.IngressRate && x.IngressBurst == y.IngressBurst && slices.Equal(x.Classes, y.Classes)
		}) {
		return false
	}
	if (p.NAT == nil) != (o.NAT == nil) {
		return false
	}
	if p.NAT != nil {
		x, y := p.NAT, o.NAT
		if x.Interface != y.Interface || x.Address != y.Address || x.Gateway != y.Gateway || x.SNAT != y.SNAT ||
			x.Masquerade != y.Masquerade || !slices.Equal(x.FloatingIPs, y.FloatingIPs) || !slices.Equal(x.PortForwards, y.PortForwards) {
			return false
		}
	}
	return true
}

// changedRules returns the indices of the rules of p that differ from the
// snapshot's, when p and b differ from the snapshot in nothing else and
// every changed rule keeps its name, direction, target and priority (so
// its place in the ruleset); false otherwise.
func (s *snapshot) changedRules(b Binding, p Policy) ([]int, bool) {
	if len(p.Rules) != len(s.p.Rules) || !s.sameContext(b, p) {
		return nil, false
	}
	var changed []int
	for i := range p.Rules {
		n, o := &p.Rules[i], &s.p.Rules[i]
		if sameRule(n, o) {
			continue
		}
		if n.Name != o.Name || n.Direction != o.Direction || n.Target != o.Target || n.Priority != o.Priority {
			return nil, false
		}
		changed = append(changed, i)
	}
	return changed, true
}

// hunk is one contiguous range of a chain's rules replaced by a patch:
// old rules [from, to) become the new chain's rules [nfrom, nto).
type hunk struct {
	from, to   int
	nfrom, nto int
}

// chainPatch is the change of one chain of the inet table.
type chainPatch struct {
	old, next *nftChain
	hunks     []hunk
}

// setPatch is the change of one named set of a rule.
type setPatch struct {
	old, next *nftSet
}

// rulePatch is what patchRules made: the new ruleset and how it differs
// from the one it was made from. A structural patch moves rules into or
// out of runs, or makes or drops sets: it is applied as a change from the
// old ruleset to rs (applyChanges), not through chains and sets.
type rulePatch struct {
	rs         *Ruleset
	chains     []chainPatch
	sets       []setPatch
	structural bool
}

// patchRules returns rs with the chains of the rules of p at idx
// compiled anew, p differing from the policy rs was compiled from only in
// those rules and not in their names, directions, targets and priorities
// (see changedRules). rs is not changed. It returns an error when the
// patch cannot reach what Compile would make of p: a changed rule marks
// packets (marks are shared by the whole table), or a set changes type.
func (rs *Ruleset) patchRules(old, p Policy, b Binding, idx []int) (*rulePatch, error) {
	c := rs.patchCompiler(p, b, idx)
	chainAt := map[string]int{}
	for i, ch := range rs.inet.chains {
		chainAt[ch.name] = i
	}
	setAt := rs.setIndex()

	if rp, ok := rs.editAllInPlace(c, setAt, p, old, idx); ok {
		return rp, nil
	}

	// The chains to compile anew, each named by one of its changed rules.
	byChain := map[int]Rule{}
	for _, i := range idx {
		r, o := p.Rules[i], old.Rules[i]
		if r.DSCP != nil || r.Class != "" || o.DSCP != nil || o.Class != "" {
			return nil, fmt.Errorf("rule %s: marking changes are table-wide", r.Name)
		}
		name := ruleChain(r)
		ci, ok := chainAt[name]
		if !ok {
			return nil, fmt.Errorf("rule %s: chain %s not in the ruleset", r.Name, name)
		}
		byChain[ci] = r
	}

	inet := *rs.inet
	inet.chains = slices.Clone(rs.inet.chains)
	out := &rulePatch{}
	var chains []string
	rulesOf := map[string][]Rule{}
	cis := make([]int, 0, len(byChain))
	for ci := range byChain {
		cis = append(cis, ci)
	}
	slices.Sort(cis)
	for _, ci := range cis {
		r := byChain[ci]
		o := rs.inet.chains[ci]
		var rules []Rule
		for _, x := range p.Rules {
			if x.Direction == r.Direction && x.Target == r.Target {
				rules = append(rules, x)
			}
		}
		slices.SortStableFunc(rules, func(a, b Rule) int { return a.Priority - b.Priority })
		for _, x := range rules {
			delete(c.merged, x.Name)
		}
		made := len(c.inet.sets)
		compiled := c.chainRules(o.name, r.Direction, rules)
		chains = append(chains, o.name)
		rulesOf[o.name] = rules
		if !slices.Equal(c.rs.runs[o.name], rs.runs[o.name]) {
			out.structural = true
		}
		for _, x := range rules {
			if c.merged[x.Name] != rs.merged[x.Name] {
				out.structural = true
			}
		}
		owned := len(rs.runs[o.name])
		for _, x := range o.rules {
			if x.owner != "" {
				owned++
			}
		}
		for _, s := range c.inet.sets[made:] {
			j, ok := setAt[s.name]
			if !ok {
				out.structural = true
				continue
			}
			if !sameSetType(rs.inet.sets[j], s) {
				return nil, fmt.Errorf("set %s changed type", s.name)
			}
			if !slices.EqualFunc(rs.inet.sets[j].elems, s.elems, sameElem) {
				out.sets = append(out.sets, setPatch{old: rs.inet.sets[j], next: s})
			}
		}
		nc := *o
		nc.rules = append(compiled, o.rules[owned:]...)
		prefix, suffix := commonEnds(o.rules, nc.rules)
		h := hunk{from: prefix, to: len(o.rules) - suffix, nfrom: prefix, nto: len(nc.rules) - suffix}
		// Kernel rules the edit left as they were stay, the old objects
		// with them.
		copy(nc.rules[:h.nfrom], o.rules[:h.from])
		copy(nc.rules[h.nto:], o.rules[h.to:])
		inet.chains[ci] = &nc
		if h.from < h.to || h.nfrom < h.nto {
			out.chains = append(out.chains, chainPatch{old: o, next: &nc, hunks: []hunk{h}})
		}
	}
	// Sets a changed rule had of its own must still be made, and no
	// other.
	for _, i := range idx {
		for _, suffix := range []string{"v4", "v6", "ports", "icmp"} {
			name := ruleSetName(old.Rules[i].Name, suffix)
			if _, had := setAt[name]; had != c.ruleSets[name] {
				out.structural = true
			}
		}
	}
	if out.structural {
		return rs.restructure(out, &inet, c, p, chains, rulesOf), nil
	}
	if len(out.sets) > 0 {
		inet.sets = slices.Clone(rs.inet.sets)
		for _, sp := range out.sets {
			inet.sets[setAt[sp.next.name]] = sp.next
		}
	}
	next := *rs
	next.inet = &inet
	next.spaces, next.levels = rs.patchedSpaces(c, chains)
	out.rs = &next
	return out, nil
}

// patchedSpaces are rs's spaces and levels with those of the chains c
// compiled anew.
func (rs *Ruleset) patchedSpaces(c *compiler, chains []string) (map[string][]space, map[string][]int) {
	spaces, levels := maps.Clone(rs.spaces), maps.Clone(rs.levels)
	for _, ch := range chains {
		spaces[ch], levels[ch] = c.rs.spaces[ch], c.rs.levels[ch]
	}
	return spaces, levels
}

// patchCompiler returns a compiler of the chains of p's rules at idx,
// which takes what it does not compile anew from rs.
func (rs *Ruleset) patchCompiler(p Policy, b Binding, idx []int) *compiler {
	c := &compiler{
		p:        p,
		b:        b,
		portSeg:  map[string]string{},
		segments: map[string]SegmentBinding{},
		rs:       &Ruleset{runs: map[string][]string{}, spaces: map[string][]space{}, levels: map[string][]int{}},
		inet:     &nftTable{family: rs.inet.family, name: rs.inet.name},
		marks:    map[uint32]bool{},
		qos:      map[string]PortQoS{},
		ruleSets: map[string]bool{},
		merged:   map[string]bool{},
		groups:   maps.Clone(rs.groups),
		prev:     rs,
		changed:  map[string]bool{},
	}
	for _, i := range idx {
		c.changed[p.Rules[i].Name] = true
	}
	for _, s := range b.Segments {
		c.segments[s.Name] = s
	}
	return c
}

// setIndex maps the names of rs's inet sets to their places.
func (rs *Ruleset) setIndex() map[string]int {
	at := make(map[string]int, len(rs.inet.sets))
	for i, s := range rs.inet.sets {
		at[s.name] = i
	}
	return at
}

// editAllInPlace makes the edits of the rules of p at idx one after
// another with editInPlace, when each of them can be made so, as one
// patch: each set patched goes from its state in rs to its state after the
// last edit.
func (rs *Ruleset) editAllInPlace(c *compiler, setAt map[string]int, p, old Policy, idx []int) (*rulePatch, bool) {
	cur := rs
	var sets []setPatch
	at := map[string]int{} // set name -> index in sets
	for _, i := range idx {
		rp, ok := cur.editInPlace(c, setAt, p.Rules[i], old.Rules[i])
		if !ok {
			return nil, false
		}
		for _, sp := range rp.sets {
			if j, seen := at[sp.next.name]; seen {
				sets[j].next = sp.next
				continue
			}
			at[sp.next.name] = len(sets)
			sets = append(sets, sp)
		}
		cur = rp.rs
	}
	slices.SortFunc(sets, func(a, b setPatch) int { return strings.Compare(a.next.name, b.next.name) })
	return &rulePatch{rs: cur, sets: sets}, true
}

// editInPlace is patchRules' shortcut for the edit of one merged rule r
// (o before) that leaves every rule of its chain at its level and r in
// runs that exist, none of them left short: then no rule moves into or
// out of a run and no run comes or goes, and the edit is r's elements,
// taken out of its old runs and put into its new ones in chain order.
func (rs *Ruleset) editInPlace(c *compiler, setAt map[string]int, r, o Rule) (*rulePatch, bool) {
	if !rs.merged[o.Name] || !mergeable(r) {
		return nil, false
	}
	chain := ruleChain(r)
	sp, lv := rs.spaces[chain], rs.levels[chain]
	at := slices.IndexFunc(sp, func(s space) bool { return s.rule == o.Name })
	if at < 0 || len(lv) != len(sp) {
		return nil, false
	}
	spaces := slices.Clone(sp)
	spaces[at] = c.space(r)
	if !slices.Equal(levels(spaces), lv) {
		return nil, false
	}
	suffix := levelSuffix(lv[at])
	was, _ := c.runKinds(o)
	kinds, spans := c.runKinds(r)
	fresh := map[string][]nftables.SetElement{}
	for j, k := range kinds {
		name := k.name(chain) + suffix
		if _, ok := setAt[name]; !ok {
			return nil, false
		}
		s := runSet(name, k)
		addRunElems(s, r, spans[j])
		fresh[name] = s.elems
	}
	for _, k := range was {
		name := k.name(chain) + suffix
		i, ok := setAt[name]
		if !ok {
			return nil, false
		}
		if _, stays := fresh[name]; !stays {
			if runRules(rs.inet.sets[i])-1 < minRun {
				return nil, false
			}
			fresh[name] = nil
		}
	}
	// Where r's elements go in a run: after those of the rules before it
	// in the chain.
	index := make(map[string]int, len(sp))
	for i, x := range sp {
		index[x.rule] = i
	}
	inet := *rs.inet
	inet.sets = slices.Clone(rs.inet.sets)
	out := &rulePatch{}
	names := slices.Sorted(maps.Keys(fresh))
	for _, name := range names {
		i := setAt[name]
		s := rs.inet.sets[i]
		ns := *s
		ns.elems = make([]nftables.SetElement, 0, len(s.elems)+len(fresh[name]))
		placed := false
		for _, e := range s.elems {
			if e.Comment == o.Name {
				continue
			}
			if !placed && index[e.Comment] > at {
				ns.elems, placed = append(ns.elems, fresh[name]...), true
			}
			ns.elems = append(ns.elems, e)
		}
		if !placed {
			ns.elems = append(ns.elems, fresh[name]...)
		}
		inet.sets[i] = &ns
		out.sets = append(out.sets, setPatch{old: s, next: &ns})
	}
	all := maps.Clone(rs.spaces)
	all[chain] = spaces
	nrs := *rs
	nrs.inet, nrs.spaces = &inet, all
	out.rs = &nrs
	return out, true
}

// restructure completes a structural patch: the sets of the chains
// compiled anew replace theirs, and the named counters and the record of
// merged rules and runs follow the rules that moved.
func (rs *Ruleset) restructure(out *rulePatch, inet *nftTable, c *compiler, p Policy, chains []string, rules map[string][]Rule) *rulePatch {
	drop := map[string]bool{}
	merged := maps.Clone(rs.merged)
	runs := maps.Clone(rs.runs)
	for _, ch := range chains {
		for _, name := range rs.runs[ch] {
			drop[name] = true
		}
		for _, x := range rules[ch] {
			for _, suffix := range []string{"v4", "v6", "ports", "icmp"} {
				drop[ruleSetName(x.Name, suffix)] = true
			}
			if c.merged[x.Name] {
				merged[x.Name] = true
			} else {
				delete(merged, x.Name)
			}
		}
		if names := c.rs.runs[ch]; len(names) > 0 {
			runs[ch] = names
		} else {
			delete(runs, ch)
		}
	}
	inet.sets = nil
	for _, s := range rs.inet.sets {
		if !drop[s.name] {
			inet.sets = append(inet.sets, s)
		}
	}
	inet.sets = append(inet.sets, c.inet.sets...)
	counters := map[string]*nftables.CounterObj{}
	for _, o := range rs.inet.counters {
		counters[o.Name] = o
	}
	inet.counters = nil
	for _, r := range p.Rules {
		if merged[r.Name] {
			continue
		}
		o := counters[counterName(r.Name)]
		if o == nil {
			o = &nftables.CounterObj{Name: counterName(r.Name)}
		}
		inet.counters = append(inet.counters, o)
	}
	// The segment defaults' counters stay as they were.
	for _, o := range rs.inet.counters {
		if strings.HasPrefix(o.Name, defaultPre) {
			inet.counters = append(inet.counters, o)
		}
	}
	next := *rs
	next.inet, next.merged, next.runs = inet, merged, runs
	next.spaces, next.levels = rs.patchedSpaces(c, chains)
	return &rulePatch{rs: &next, structural: true}
}

// runRules counts the rules a run holds: their elements are adjacent.
func runRules(s *nftSet) int {
	n := 0
	for i, e := range s.elems {
		if i == 0 || e.Comment != s.elems[i-1].Comment {
			n++
		}
	}
	return n
}

// sameText reports whether two kernel rules are the same; the text says
// all the expressions say (see nft.go).
func sameText(a, b *nftRule) bool { return a == b || slices.Equal(a.text, b.text) }

// ruleChain names the chain a rule's kernel rules are in (see compile).
func ruleChain(r Rule) string {
	pre := "eg"
	if r.Direction == Ingress {
		pre = "in"
	}
	switch {
	case r.Target.Port != "":
		return pre + "_port_" + r.Target.Port
	case r.Target.PortGroup != "":
		return pre + "_group_" + r.Target.PortGroup
	}
	return pre + "_seg_" + r.Target.Segment
}

// String describes the patch for logs.
func (rp *rulePatch) String() string {
	var parts []string
	for _, cp := range rp.chains {
		parts = append(parts, fmt.Sprintf("%s: %d hunks", cp.next.name, len(cp.hunks)))
	}
	return strings.Join(parts, ", ")
}
