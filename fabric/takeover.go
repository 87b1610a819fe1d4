package fabric

import (
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// localMACs is what a tenant's learner holds as local MACs, shared with
// Linux.write. When evpnd installs a remote entry over a local MAC (its
// route from another VTEP won), the kernel moves the bridge entry to the
// VXLAN port and tells the learner only through an event that the
// learner's socket filter drops with the rest of evpnd's own entries
// (learnerFilter): the learner would otherwise read one event for every
// remote MAC written, 100k in a full table's ingest. So write tells it
// here, for the few MACs it holds.
type localMACs struct {
	mu      sync.Mutex
	set     map[macKey]struct{}
	pending []takeover
	// wake has room for one signal: pending is not empty.
	wake chan struct{}
}

// takeover is a remote entry written over a MAC the learner holds. When
// the learner held it before the write began, the write took the entry
// over (certain); when the learner came to hold it while the write was
// under way, the kernel may have learned the MAC after the write, on the
// entry the write made.
type takeover struct {
	k       macKey
	certain bool
}

func newLocalMACs() *localMACs {
	return &localMACs{set: map[macKey]struct{}{}, wake: make(chan struct{}, 1)}
}

func (m *localMACs) add(k macKey) {
	m.mu.Lock()
	m.set[k] = struct{}{}
	m.mu.Unlock()
}

func (m *localMACs) remove(k macKey) {
	m.mu.Lock()
	delete(m.set, k)
	m.mu.Unlock()
}

// held returns the indexes of the ops, about to be written, that add
// remote bridge entries for MACs held as local now.
func (m *localMACs) held(ops []op) map[int]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.set) == 0 {
		return nil
	}
	var out map[int]bool
	for i, o := range ops {
		if k, ok := addKey(o); ok {
			if _, local := m.set[k]; local {
				if out == nil {
					out = map[int]bool{}
				}
				out[i] = true
			}
		}
	}
	return out
}

// written records the remote bridge entries of ops that the kernel took
// (failed lists the indexes it refused) for MACs held as local before
// the write (held) or now, and wakes the learner.
func (m *localMACs) written(ops []op, failed []opError, held map[int]bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.set) == 0 && len(held) == 0 {
		return
	}
	var refused map[int]bool
	if len(failed) > 0 {
		refused = make(map[int]bool, len(failed))
		for _, f := range failed {
			refused[f.index] = true
		}
	}
	queued := false
	for i, o := range ops {
		k, ok := addKey(o)
		if !ok || refused[i] {
			continue
		}
		if _, local := m.set[k]; local || held[i] {
			m.pending = append(m.pending, takeover{k: k, certain: held[i]})
			queued = true
		}
	}
	if queued {
		select {
		case m.wake <- struct{}{}:
		default: // a signal is already waiting
		}
	}
}

// addKey is the MAC of an op that adds a remote bridge entry.
func addKey(o op) (macKey, bool) {
	if o.kind != opFDBAdd || o.l3 {
		return macKey{}, false
	}
	mac, ok := mac6(o.mac)
	return macKey{vni: o.vni, mac: mac}, ok
}

// taken returns the takeovers written since the last call.
func (m *localMACs) taken() []takeover {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.pending
	m.pending = nil
	return out
}

// takenOver handles remote entries evpnd wrote over MACs the learner
// holds, by what the MACs' ports hold now. A MAC gone from its port moved
// away: it is reported gone. A MAC still there was either learned after an
// uncertain write (nothing to do) or came back after a certain one: the
// workload sent again, the bridge moved the entry back, and the learner
// may have read that event already and found nothing new in it. Then it
// is reported gone and learned again, as the kernel's events of a move
// away and back would have. An entry moved back later is an event the
// learner reads after this.
func (lr *learner) takenOver(ts []takeover) {
	onPort := map[int]map[macKey]netlink.Neigh{}
	for _, t := range ts {
		m, ok := lr.macs[t.k]
		if !ok {
			continue
		}
		entries, listed := onPort[m.port]
		if !listed {
			list, err := listPortFDB(lr.t.ns, m.port)
			if err != nil {
				lr.l.log.Warn("learning: list a port's MACs after a remote entry was written over one", "tenant", lr.t.name, "port", m.name, "err", err)
				list = nil // taken as moved away: the write took the entry
			}
			entries = map[macKey]netlink.Neigh{}
			for _, n := range list {
				if k, ok := lr.macFact(n); ok {
					entries[k] = n
				}
			}
			onPort[m.port] = entries
		}
		n, here := entries[t.k]
		switch {
		case !here:
			lr.forgetMAC(t.k, m)
		case t.certain:
			lr.forgetMAC(t.k, m)
			lr.neigh(netlink.NeighUpdate{Type: unix.RTM_NEWNEIGH, Neigh: n})
		}
	}
}
