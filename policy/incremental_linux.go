package policy

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/nftables"
)

// An incremental apply changes only what differs between the ruleset in
// force and the new one, in one batch the kernel takes whole or not at
// all: rules that went away are deleted by handle, new ones inserted
// next to the rules they follow, set elements, chains, sets and counters
// added or deleted. Everything else stays as it is, so the kernel does
// not rebuild thousands of rules for a one-rule change and the counters
// of unchanged rules keep counting. Anything it cannot express as a
// change (a chain's hook or a set's type changed, rules in the kernel
// not as evpnd left them) makes the caller fall back to a full replace.

// errReplace says an incremental apply cannot reach the new ruleset.
var errReplace = errors.New("ruleset needs a full replace")

// chainRef names a chain across the two tables.
type chainRef struct {
	family nftables.TableFamily
	name   string
}

// handles are the kernel handles of the rules of the chains evpnd knows
// them for, in chain order. A chain changed by an incremental apply is
// forgotten: its new rules' handles are read back when next needed.
type handles map[chainRef][]uint64

// applyChanges queues the changes from old to next and commits them on
// t's batch socket. On error nothing changed in the kernel (one batch);
// errReplace wrapped says a full replace is needed.
func applyChanges(t *tenantState, old, next *Ruleset) error {
	gone, err := countsGone(t, old.inet.counters, next.inet.counters, runPairs(old.inet, next.inet))
	if err != nil {
		return err
	}
	var forget []chainRef
	msgs, err := captureBatch(func(c *nftables.Conn) error {
		for _, pair := range [][2]*nftTable{{old.inet, next.inet}, {old.bridge, next.bridge}} {
			f, err := queueTableChanges(c, t.readHandles, pair[0], pair[1], t.handles)
			if err != nil {
				return err
			}
			forget = append(forget, f...)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := t.send(msgs); err != nil {
		// Whether the kernel took the batch is unknown now.
		clear(t.handles)
		return fmt.Errorf("apply ruleset changes: %w", err)
	}
	for _, r := range forget {
		delete(t.handles, r)
	}
	t.keepBase(gone, next)
	return nil
}

// queueTableChanges queues the changes of one table and returns the
// chains whose rule handles change.
func queueTableChanges(c *nftables.Conn, read handleReader, old, next *nftTable, known handles) ([]chainRef, error) {
	if old.family != next.family || old.name != next.name {
		return nil, fmt.Errorf("table %s: %w", next.name, errReplace)
	}
	tbl := &nftables.Table{Family: next.family, Name: next.name}
	oldChains := map[string]*nftChain{}
	for _, ch := range old.chains {
		oldChains[ch.name] = ch
	}
	nextChains := map[string]*nftChain{}
	for _, ch := range next.chains {
		nextChains[ch.name] = ch
		if o, ok := oldChains[ch.name]; ok && !sameChainType(o, ch) {
			return nil, fmt.Errorf("chain %s changed type or hook: %w", ch.name, errReplace)
		}
	}
	oldSets := map[string]*nftSet{}
	for _, s := range old.sets {
		oldSets[s.name] = s
	}
	for _, s := range next.sets {
		if o, ok := oldSets[s.name]; ok && !sameSetType(o, s) {
			return nil, fmt.Errorf("set %s changed type: %w", s.name, errReplace)
		}
	}

	// Rule changes of the chains both rulesets have, worked out first:
	// a chain whose handles cannot be learned stops everything before a
	// message is queued.
	type ruleChange struct {
		chain          *nftChain
		handles        []uint64
		prefix, suffix int
	}
	var changes []ruleChange
	var forget []chainRef
	for _, ch := range next.chains {
		o, ok := oldChains[ch.name]
		if !ok || o == ch {
			continue // new, or the same object: unchanged
		}
		prefix, suffix := commonEnds(o.rules, ch.rules)
		if prefix == len(o.rules) && prefix == len(ch.rules) {
			continue
		}
		ref := chainRef{next.family, ch.name}
		hs, err := learnHandles(read, tbl, o, known)
		if err != nil {
			return nil, err
		}
		changes = append(changes, ruleChange{chain: ch, handles: hs, prefix: prefix, suffix: suffix})
		forget = append(forget, ref)
	}

	chains := map[string]*nftables.Chain{}
	chainOf := func(ch *nftChain) *nftables.Chain {
		if nc := chains[ch.name]; nc != nil {
			return nc
		}
		nc := &nftables.Chain{Name: ch.name, Table: tbl}
		chains[ch.name] = nc
		return nc
	}
	// New chains first: verdict map elements and rules may name them.
	for _, ch := range next.chains {
		if _, ok := oldChains[ch.name]; ok {
			continue
		}
		nc := chainOf(ch)
		if ch.hook != nil {
			nc.Hooknum, nc.Priority, nc.Type = ch.hook, ch.prio, ch.typ
			nc.Policy = ptr(nftables.ChainPolicyAccept)
		}
		c.AddChain(nc)
		forget = append(forget, chainRef{next.family, ch.name})
	}
	oldCounters := map[string]bool{}
	for _, o := range old.counters {
		oldCounters[o.Name] = true
	}
	nextCounters := map[string]bool{}
	for _, o := range next.counters {
		nextCounters[o.Name] = true
		if !oldCounters[o.Name] {
			c.AddObj(&nftables.CounterObj{Table: tbl, Name: o.Name, Packets: o.Packets, Bytes: o.Bytes})
		}
	}
	nextSets := map[string]bool{}
	for _, s := range next.sets {
		nextSets[s.name] = true
		o, ok := oldSets[s.name]
		if !ok {
			if err := c.AddSet(s.named(tbl), s.elems); err != nil {
				return nil, fmt.Errorf("set %s: %w: %w", s.name, err, errReplace)
			}
			continue
		}
		if o == s {
			continue // the same object: unchanged
		}
		if err := queueElementChanges(c, tbl, o, s); err != nil {
			return nil, err
		}
	}
	// Sets going away lose their elements now, so the chains their
	// verdicts name can go.
	for _, s := range old.sets {
		if !nextSets[s.name] && len(s.elems) > 0 {
			c.FlushSet(s.named(tbl))
		}
	}

	for _, rc := range changes {
		ch, hs := rc.chain, rc.handles
		nc := chainOf(ch)
		for _, h := range hs[rc.prefix : len(hs)-rc.suffix] {
			if err := c.DelRule(&nftables.Rule{Table: tbl, Chain: nc, Handle: h}); err != nil {
				return nil, fmt.Errorf("chain %s: %w: %w", ch.name, err, errReplace)
			}
		}
		added := ch.rules[rc.prefix : len(ch.rules)-rc.suffix]
		if rc.suffix == 0 {
			for _, r := range added {
				c.AddRule(&nftables.Rule{Table: tbl, Chain: nc, Exprs: r.exprs})
			}
			continue
		}
		// Each insert lands right before the first rule kept after the
		// change, so in order they end up in order.
		before := hs[len(hs)-rc.suffix]
		for _, r := range added {
			c.InsertRule(&nftables.Rule{Table: tbl, Chain: nc, Exprs: r.exprs, Position: before})
		}
	}
	for _, ch := range next.chains {
		if _, ok := oldChains[ch.name]; ok {
			continue
		}
		nc := chainOf(ch)
		for _, r := range ch.rules {
			c.AddRule(&nftables.Rule{Table: tbl, Chain: nc, Exprs: r.exprs})
		}
	}

	// Chains going away: flush all of them before deleting any, so no
	// rule of one still names another.
	var gone []*nftables.Chain
	for _, ch := range old.chains {
		if _, ok := nextChains[ch.name]; !ok {
			nc := chainOf(ch)
			c.FlushChain(nc)
			gone = append(gone, nc)
			delete(known, chainRef{old.family, ch.name})
		}
	}
	for _, nc := range gone {
		c.DelChain(nc)
	}
	for _, s := range old.sets {
		if !nextSets[s.name] {
			c.DelSet(s.named(tbl))
		}
	}
	for _, o := range old.counters {
		if !nextCounters[o.Name] {
			c.DeleteObject(&nftables.CounterObj{Table: tbl, Name: o.Name})
		}
	}
	return forget, nil
}

func sameChainType(a, b *nftChain) bool {
	if (a.hook == nil) != (b.hook == nil) {
		return false
	}
	if a.hook == nil {
		return true
	}
	return *a.hook == *b.hook && *a.prio == *b.prio && a.typ == b.typ
}

func sameSetType(a, b *nftSet) bool {
	if a.key != b.key || a.interval != b.interval || a.concat != b.concat || a.counter != b.counter || (a.data == nil) != (b.data == nil) {
		return false
	}
	return a.data == nil || *a.data == *b.data
}

// commonEnds returns how many rules old and next share at their start
// and, after that, at their end.
func commonEnds(old, next []*nftRule) (prefix, suffix int) {
	n := min(len(old), len(next))
	for prefix < n && sameText(old[prefix], next[prefix]) {
		prefix++
	}
	for suffix < n-prefix && sameText(old[len(old)-1-suffix], next[len(next)-1-suffix]) {
		suffix++
	}
	return prefix, suffix
}

// learnHandles returns the handles of ch's rules, reading them from the
// kernel when evpnd does not know them. A chain holding other than the
// number of rules evpnd installed has drifted: only a full replace
// restores it.
func learnHandles(read handleReader, tbl *nftables.Table, ch *nftChain, known handles) ([]uint64, error) {
	ref := chainRef{tbl.Family, ch.name}
	if hs, ok := known[ref]; ok {
		return hs, nil
	}
	hs, err := read(tbl, ch.name)
	if err != nil {
		return nil, fmt.Errorf("chain %s: read rules: %w: %w", ch.name, err, errReplace)
	}
	if len(hs) != len(ch.rules) {
		return nil, fmt.Errorf("chain %s holds %d rules, evpnd installed %d: %w", ch.name, len(hs), len(ch.rules), errReplace)
	}
	known[ref] = hs
	return hs, nil
}

// queueElementChanges brings the elements of set old to those of next.
// Interval sets of single keys are refilled whole: their elements come in
// start and end pairs that only make sense together. Runs change element
// by element, so the others keep counting.
func queueElementChanges(c *nftables.Conn, tbl *nftables.Table, old, next *nftSet) error {
	s := next.named(tbl)
	if next.interval && !next.concat {
		if slices.EqualFunc(old.elems, next.elems, sameElem) {
			return nil
		}
		c.FlushSet(s)
		if len(next.elems) == 0 {
			return nil
		}
		if err := c.SetAddElements(s, next.elems); err != nil {
			return fmt.Errorf("set %s: %w: %w", next.name, err, errReplace)
		}
		return nil
	}
	add, del := elemChanges(old, next)
	if len(del) > 0 {
		if err := c.SetDeleteElements(s, del); err != nil {
			return fmt.Errorf("set %s: %w: %w", next.name, err, errReplace)
		}
	}
	if len(add) > 0 {
		if err := c.SetAddElements(s, add); err != nil {
			return fmt.Errorf("set %s: %w: %w", next.name, err, errReplace)
		}
	}
	return nil
}

// elemChanges returns the elements to add to and delete from a set that
// is not an interval set of single keys, keyed by key (and key end).
func elemChanges(old, next *nftSet) (add, del []nftables.SetElement) {
	oldByKey := map[string]string{}
	for _, e := range old.elems {
		oldByKey[elemKey(e)] = elemID(e)
	}
	nextByKey := map[string]string{}
	for _, e := range next.elems {
		nextByKey[elemKey(e)] = elemID(e)
		if oldByKey[elemKey(e)] != elemID(e) {
			add = append(add, e)
		}
	}
	for _, e := range old.elems {
		if id, ok := nextByKey[elemKey(e)]; !ok || id != elemID(e) {
			del = append(del, nftables.SetElement{Key: e.Key, KeyEnd: e.KeyEnd, Comment: e.Comment})
		}
	}
	return add, del
}

// elemKey is what the kernel finds an element by: its key, and in a run
// its key end.
func elemKey(e nftables.SetElement) string { return string(e.Key) + "/" + string(e.KeyEnd) }

// elemID identifies an element with what it maps to and, in a run, the
// rule it counts for.
func elemID(e nftables.SetElement) string {
	id := hex.EncodeToString(e.Key) + "/" + hex.EncodeToString(e.KeyEnd) + "/" + hex.EncodeToString(e.Val) + "/" + e.Comment
	if e.IntervalEnd {
		id += "/end"
	}
	if v := e.VerdictData; v != nil {
		id += fmt.Sprintf("/%d:%s", v.Kind, v.Chain)
	}
	return id
}

// applyPatch commits a rulePatch of t's ruleset (see patchRules): the
// changed kernel rules are deleted by handle and their replacements
// inserted where they were, and the changed rules' named sets refilled,
// in one batch. It reads every handle it needs before it queues anything.
func applyPatch(t *tenantState, rp *rulePatch) error {
	old := t.rs
	tbl := &nftables.Table{Family: old.inet.family, Name: old.inet.name}
	hss := make([][]uint64, len(rp.chains))
	for i, cp := range rp.chains {
		hs, err := learnHandles(t.readHandles, tbl, cp.old, t.handles)
		if err != nil {
			return err
		}
		hss[i] = hs
	}
	if len(rp.sets) == 0 {
		return applyRawPatch(t, tbl, rp, hss)
	}
	var runs []runPair
	for _, sp := range rp.sets {
		if sp.old.run != nil {
			runs = append(runs, runPair(sp))
		}
	}
	gone, err := countsGone(t, nil, nil, runs)
	if err != nil {
		return err
	}
	msgs, err := captureBatch(func(c *nftables.Conn) error {
		for _, sp := range rp.sets {
			if err := queueElementChanges(c, tbl, sp.old, sp.next); err != nil {
				return err
			}
		}
		for i, cp := range rp.chains {
			hs := hss[i]
			nc := &nftables.Chain{Name: cp.next.name, Table: tbl}
			for _, h := range cp.hunks {
				for _, handle := range hs[h.from:h.to] {
					if err := c.DelRule(&nftables.Rule{Table: tbl, Chain: nc, Handle: handle}); err != nil {
						return fmt.Errorf("chain %s: %w: %w", nc.Name, err, errReplace)
					}
				}
				added := cp.next.rules[h.nfrom:h.nto]
				if h.to == len(hs) {
					for _, r := range added {
						c.AddRule(&nftables.Rule{Table: tbl, Chain: nc, Exprs: r.exprs})
					}
					continue
				}
				// Each insert lands right before the first rule kept
				// after the hunk, so in order they end up in order.
				for _, r := range added {
					c.InsertRule(&nftables.Rule{Table: tbl, Chain: nc, Exprs: r.exprs, Position: hs[h.to]})
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = t.send(msgs)
	for _, cp := range rp.chains {
		delete(t.handles, chainRef{tbl.Family, cp.next.name})
	}
	if err != nil {
		return fmt.Errorf("apply rule changes: %w", err)
	}
	t.keepBase(gone, nil)
	return nil
}

// applyRawPatch commits a patch of rules only on t's own socket, which
// learns the new rules' handles (see rawBatch), so the chains' handles
// stay known.
func applyRawPatch(t *tenantState, tbl *nftables.Table, rp *rulePatch, hss [][]uint64) error {
	b := &rawBatch{family: tbl.Family, table: tbl.Name}
	for i, cp := range rp.chains {
		hs := hss[i]
		for _, h := range cp.hunks {
			for _, handle := range hs[h.from:h.to] {
				b.delRule(cp.next.name, handle)
			}
			var before uint64
			if h.to < len(hs) {
				before = hs[h.to]
			}
			for _, r := range cp.next.rules[h.nfrom:h.nto] {
				b.newRule(cp.next.name, r.exprs, before)
			}
		}
	}
	began := time.Now()
	got, err := b.commit(t.nl)
	t.commit += time.Since(began)
	if err != nil {
		// Unread answers may be left on the socket: start a new one.
		if rerr := t.redial(); rerr != nil {
			err = errors.Join(err, rerr)
		}
		// Whether the kernel took the batch is unknown now.
		for _, cp := range rp.chains {
			delete(t.handles, chainRef{tbl.Family, cp.next.name})
		}
		return err
	}
	for i, cp := range rp.chains {
		hs := hss[i]
		next := make([]uint64, 0, len(cp.next.rules))
		at := 0
		for _, h := range cp.hunks {
			next = append(next, hs[at:h.from]...)
			next = append(next, got[:h.nto-h.nfrom]...)
			got = got[h.nto-h.nfrom:]
			at = h.to
		}
		next = append(next, hs[at:]...)
		t.handles[chainRef{tbl.Family, cp.next.name}] = next
	}
	return nil
}
