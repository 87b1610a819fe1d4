package policy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
	mnl "github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
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
		if strings.HasPrefix(s.Name, RunPrefix) {
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
		rule, _ := counterRule(name)
		out[rule] = counts{o.Packets, o.Bytes}
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
// pair's next deletes (asked for by key, on t's batch socket) or that go
// with their set. Nothing is read when nothing goes.
func countsGone(t *tenantState, old, next []*nftables.CounterObj, runs []runPair) (map[string]counts, error) {
	c := t.conn
	gone := map[string]counts{}
	keep := map[string]bool{}
	for _, o := range next {
		keep[o.Name] = true
	}
	if slices.ContainsFunc(old, func(o *nftables.CounterObj) bool { return !keep[o.Name] }) {
		objs, err := readCounters(c)
		if err != nil {
			return nil, err
		}
		for name, o := range objs {
			if !keep[name] {
				rule, _ := counterRule(name)
				gone[rule] = counts{o.Packets, o.Bytes}
			}
		}
	}
	for _, p := range runs {
		if p.old == p.next {
			continue // the same object: unchanged
		}
		var got map[string]counts
		var err error
		if p.next == nil {
			got, err = readRunCounts(c, []*nftSet{p.old}, nil)
		} else if _, dels := elemChanges(p.old, p.next); len(dels) > 0 {
			if got, err = elemCounts(t.nl, p.old.name, dels); err != nil {
				// Unread answers may be left on the socket.
				if rerr := t.redial(); rerr != nil {
					err = errors.Join(err, rerr)
				}
			}
		}
		if err != nil {
			return nil, err
		}
		fold(gone, got)
	}
	return gone, nil
}

// elemCounts reads the counters of some elements of the run set of the
// inet table on nl by key, and sums them by the elements' rules
// (their Comment): the kernel answers with those elements, not the whole
// set. nl must have no answers pending. It is not a socket of its own:
// closing a netfilter socket waits for the kernel to finish destroying
// what the last commit removed (nf_tables_trans_destroy_flush_work, an
// RCU grace period), which cost a one-rule change 7 ms.
func elemCounts(nl *mnl.Conn, set string, elems []nftables.SetElement) (map[string]counts, error) {
	rule := map[string]string{}
	ae := mnl.NewAttributeEncoder()
	for i, e := range elems {
		rule[string(e.Key)] = e.Comment
		ae.Nested(uint16(i+1)|unix.NLA_F_NESTED, func(ae *mnl.AttributeEncoder) error {
			ae.Nested(unix.NFTA_SET_ELEM_KEY|unix.NLA_F_NESTED, func(ae *mnl.AttributeEncoder) error {
				ae.Bytes(unix.NFTA_DATA_VALUE, e.Key)
				return nil
			})
			ae.Nested(nftables.NFTA_SET_ELEM_KEY_END|unix.NLA_F_NESTED, func(ae *mnl.AttributeEncoder) error {
				ae.Bytes(unix.NFTA_DATA_VALUE, e.KeyEnd)
				return nil
			})
			return nil
		})
	}
	list, err := ae.Encode()
	if err != nil {
		return nil, fmt.Errorf("set %s: encode element request: %w", set, err)
	}
	data, err := mnl.MarshalAttributes([]mnl.Attribute{
		{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: []byte(TableName + "\x00")},
		{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: []byte(set + "\x00")},
		{Type: unix.NFTA_SET_ELEM_LIST_ELEMENTS | unix.NLA_F_NESTED, Data: list},
	})
	if err != nil {
		return nil, fmt.Errorf("set %s: encode element request: %w", set, err)
	}
	// The kernel answers each element with a message of its own, then
	// acknowledges the request: read up to the acknowledgement, not just
	// the first answer, or the rest would be lost (and left unread).
	req, err := nl.Send(mnl.Message{
		Header: mnl.Header{Type: mnl.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM), Flags: mnl.Request | mnl.Acknowledge},
		Data:   append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, data...),
	})
	if err != nil {
		return nil, fmt.Errorf("set %s: read element counters: %w", set, err)
	}
	out := map[string]counts{}
	for {
		msgs, err := nl.Receive()
		if err != nil {
			return nil, fmt.Errorf("set %s: read element counters: %w", set, err)
		}
		for _, m := range msgs {
			if m.Header.Sequence != req.Header.Sequence {
				return nil, fmt.Errorf("set %s: read element counters: answer to request %d, want %d", set, m.Header.Sequence, req.Header.Sequence)
			}
			if m.Header.Type == mnl.Error {
				return out, nil // the acknowledgement; errors come back from Receive
			}
			if len(m.Data) < 4 {
				continue
			}
			if err := decodeElemCounts(m.Data[4:], rule, out); err != nil {
				return nil, fmt.Errorf("set %s: %w", set, err)
			}
		}
	}
}

// decodeElemCounts adds the counters of the elements of a NEWSETELEM
// message to out, by the rule of each element's key.
func decodeElemCounts(b []byte, rule map[string]string, out map[string]counts) error {
	nested := func(b []byte, f func(ad *mnl.AttributeDecoder)) error {
		ad, err := mnl.NewAttributeDecoder(b)
		if err != nil {
			return err
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			f(ad)
		}
		return ad.Err()
	}
	return nested(b, func(ad *mnl.AttributeDecoder) {
		if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			return
		}
		ad.Nested(func(list *mnl.AttributeDecoder) error {
			for list.Next() {
				var key []byte
				var c counts
				list.Nested(func(el *mnl.AttributeDecoder) error {
					for el.Next() {
						switch el.Type() {
						case unix.NFTA_SET_ELEM_KEY:
							el.Nested(func(d *mnl.AttributeDecoder) error {
								for d.Next() {
									if d.Type() == unix.NFTA_DATA_VALUE {
										key = d.Bytes()
									}
								}
								return nil
							})
						case unix.NFTA_SET_ELEM_EXPR:
							el.Nested(func(x *mnl.AttributeDecoder) error {
								for x.Next() {
									if x.Type() == unix.NFTA_EXPR_DATA {
										x.Nested(func(d *mnl.AttributeDecoder) error {
											for d.Next() {
												switch d.Type() {
												case unix.NFTA_COUNTER_PACKETS:
													c.packets = d.Uint64()
												case unix.NFTA_COUNTER_BYTES:
													c.bytes = d.Uint64()
												}
											}
											return nil
										})
									}
								}
								return nil
							})
						}
					}
					return nil
				})
				if r, ok := rule[string(key)]; ok {
					out[r] = out[r].plus(c)
				}
			}
			return nil
		})
	})
}

// rules returns the names of the rules rs counts for.
func (rs *Ruleset) rules() map[string]bool {
	out := make(map[string]bool, len(rs.inet.counters)+len(rs.merged))
	for _, o := range rs.inet.counters {
		if rule, ok := counterRule(o.Name); ok {
			out[rule] = true
		}
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
