package policy

import (
	"fmt"
	"strings"

	"github.com/google/nftables"
)

// A rule's count lives in one of two places: the named counter of a rule
// with kernel rules, or the counters of its elements in the chain's runs
// (see runs.go). Elements go away when their rule changes or moves
// between the two, and a replace makes every object anew; what they had
// counted is folded into the tenant's base first, so a rule's count
// survives whatever else changes, as a named counter's does.

// counts is what one counter holds.
type counts struct{ packets, bytes uint64 }

func (c counts) plus(d counts) counts { return counts{c.packets + d.packets, c.bytes + d.bytes} }

// fold adds src into dst.
func fold(dst, src map[string]counts) {
	for rule, c := range src {
		dst[rule] = dst[rule].plus(c)
	}
}

// readRunCounts sums the element counters of sets (runs of the inet
// table) by rule; keep, when set, picks the elements.
func readRunCounts(c *nftables.Conn, sets []*nftSet, keep func(nftables.SetElement) bool) (map[string]counts, error) {
	tbl := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	out := map[string]counts{}
	for _, s := range sets {
		elems, err := c.GetSetElements(s.named(tbl))
		if err != nil {
			return nil, fmt.Errorf("read counters of set %s: %w", s.name, err)
		}
		for _, e := range elems {
			if e.Counter == nil || (keep != nil && !keep(e)) {
				continue
			}
			out[e.Comment] = out[e.Comment].plus(counts{e.Counter.Packets, e.Counter.Bytes})
		}
	}
	return out, nil
}

// runSets returns the run sets of t.
func (t *nftTable) runSets() []*nftSet {
	var out []*nftSet
	for _, s := range t.sets {
		if s.run != nil {
			out = append(out, s)
		}
	}
	return out
}

// kernelRunSets returns the run sets the kernel's inet table holds, which
// after a restart the engine knows nothing of; none when there is no
// table.
func kernelRunSets(c *nftables.Conn) []*nftSet {
	sets, err := c.GetSets(&nftables.Table{Family: nftables.TableFamilyINet, Name: TableName})
	if err != nil {
		return nil
	}
	var out []*nftSet
	for _, s := range sets {
		if strings.HasPrefix(s.Name, runPre) {
			out = append(out, &nftSet{name: s.Name, key: s.KeyType, interval: s.Interval, concat: s.Concatenation, counter: true})
		}
	}
	return out
}

// namedCounts reads the named counters of the inet table by rule.
func namedCounts(c *nftables.Conn) (map[string]counts, error) {
	objs, err := readCounters(c)
	if err != nil {
		return nil, err
	}
	out := make(map[string]counts, len(objs))
	for name, o := range objs {
		out[strings.TrimPrefix(name, counterPre)] = counts{o.Packets, o.Bytes}
	}
	return out, nil
}

// runPair is a run set before and after a change; next is nil when the
// set goes away.
type runPair struct{ old, next *nftSet }

// runPairs pairs the run sets of old with those of next by name.
func runPairs(old, next *nftTable) []runPair {
	nextSets := map[string]*nftSet{}
	for _, s := range next.runSets() {
		nextSets[s.name] = s
	}
	var out []runPair
	for _, s := range old.runSets() {
		out = append(out, runPair{s, nextSets[s.name]})
	}
	return out
}

// countsGone reads what the counters of a change drop hold: the named
// counters of old that next has no more, and the run elements that a
// pair's next deletes or that go with their set. Nothing is read when
// nothing goes.
func countsGone(c *nftables.Conn, old, next []*nftables.CounterObj, runs []runPair) (map[string]counts, error) {
	gone := map[string]counts{}
	keep := map[string]bool{}
	for _, o := range next {
		keep[o.Name] = true
	}
	for _, o := range old {
		if keep[o.Name] {
			continue
		}
		objs, err := readCounters(c)
		if err != nil {
			return nil, err
		}
		for name, o := range objs {
			if !keep[name] {
				gone[strings.TrimPrefix(name, counterPre)] = counts{o.Packets, o.Bytes}
			}
		}
		break
	}
	elemKey := func(e nftables.SetElement) string { return string(e.Key) + "/" + string(e.KeyEnd) }
	for _, p := range runs {
		if p.old == p.next {
			continue // the same object: unchanged
		}
		var del map[string]bool
		if p.next != nil {
			_, dels := elemChanges(p.old, p.next)
			if len(dels) == 0 {
				continue
			}
			del = map[string]bool{}
			for _, e := range dels {
				del[elemKey(e)] = true
			}
		}
		got, err := readRunCounts(c, []*nftSet{p.old}, func(e nftables.SetElement) bool { return del == nil || del[elemKey(e)] })
		if err != nil {
			return nil, err
		}
		fold(gone, got)
	}
	return gone, nil
}

// rules returns the names of the rules rs counts for.
func (rs *Ruleset) rules() map[string]bool {
	out := make(map[string]bool, len(rs.inet.counters)+len(rs.merged))
	for _, o := range rs.inet.counters {
		out[strings.TrimPrefix(o.Name, counterPre)] = true
	}
	for rule := range rs.merged {
		out[rule] = true
	}
	return out
}

// counts reads every rule's count in t: its named counter or its run
// elements, plus what its earlier counters held (t.base).
func (t *tenantState) counts() (map[string]counts, error) {
	out, err := namedCounts(t.conn)
	if err != nil {
		return nil, err
	}
	if t.rs != nil {
		runs, err := readRunCounts(t.conn, t.rs.inet.runSets(), nil)
		if err != nil {
			return nil, err
		}
		fold(out, runs)
	}
	for rule, c := range t.base {
		if x, ok := out[rule]; ok {
			out[rule] = x.plus(c)
		}
	}
	return out, nil
}

// keepBase folds gone into t's base and drops the rules rs no longer
// has; rs is nil when the rules stay the same.
func (t *tenantState) keepBase(gone map[string]counts, rs *Ruleset) {
	if t.base == nil {
		t.base = map[string]counts{}
	}
	fold(t.base, gone)
	if rs == nil {
		return
	}
	rules := rs.rules()
	for rule := range t.base {
		if !rules[rule] {
			delete(t.base, rule)
		}
	}
}
