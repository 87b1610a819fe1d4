package bgp

import (
	"net/netip"
	"sync"
	"time"

	"github.com/evpnd/evpnd/evpn"
)

// grHold is the helper side of graceful restart (RFC 4724 s4.2) where
// GoBGP falls short. When a peer that negotiated graceful restart loses
// its session without a NOTIFICATION, GoBGP keeps the peer's paths as
// stale; but GoBGP v3.37.0 drops every stale path as soon as that peer's
// session fails once more before it is back (any transition to Idle while
// the peer restarts: a reconnect refused in OpenSent, a connection
// collision), not only when the restart time runs out. The kernel would
// then lose the peer's MACs mid-restart and its traffic with them.
//
// So from the moment a peer's session goes down, grHold holds the
// withdrawals GoBGP reports for that peer instead of passing them on,
// until the peer has sent End-of-RIB again (what it sent by then is
// current; what it did not send is withdrawn then) or until its restart
// time runs out. A path the peer sends again meanwhile cancels the held
// withdrawal of its NLRI. A peer that is back before GoBGP dropped
// anything needs no hold: GoBGP's own graceful restart carries on from
// there. GoBGP reports a session's end after the withdrawals it makes for
// it, so a peer that ends its session with a NOTIFICATION (a clean stop),
// or that never negotiated graceful restart, has its routes withdrawn at
// once, before any hold begins.
type grHold struct {
	mu    sync.Mutex
	peers map[netip.Addr]*heldPeer
	// release receives held withdrawals when a restart times out; it is
	// called with mu held, so its order against filter's output is the
	// order of the decisions.
	release func([]evpn.Route)
	log     func(msg string, args ...any)
	stopped bool
}

type heldPeer struct {
	withdrawn map[string]evpn.Route // by NLRI key
	timer     *time.Timer
}

func newGRHold(release func([]evpn.Route), log func(string, ...any)) *grHold {
	return &grHold{peers: map[netip.Addr]*heldPeer{}, release: release, log: log}
}

// lock and unlock bracket a run of filter and endOfRIB calls for one
// watch event, so a timeout's release never falls between a decision and
// the push of its result.
func (g *grHold) lock()   { g.mu.Lock() }
func (g *grHold) unlock() { g.mu.Unlock() }

// begin starts holding peer's withdrawals, for at most wait: its session
// went down. Called with the lock held.
func (g *grHold) begin(peer netip.Addr, wait time.Duration) {
	if g.stopped || g.peers[peer] != nil {
		return
	}
	hp := &heldPeer{withdrawn: map[string]evpn.Route{}}
	hp.timer = time.AfterFunc(wait, func() { g.expire(peer, hp) })
	g.peers[peer] = hp
}

// established ends peer's hold if nothing was withdrawn while it was
// away: its session is back and GoBGP still has its paths (or, without
// graceful restart, withdrew them before the hold began). Called with
// the lock held.
func (g *grHold) established(peer netip.Addr) {
	if hp := g.peers[peer]; hp != nil && len(hp.withdrawn) == 0 {
		hp.timer.Stop()
		delete(g.peers, peer)
	}
}

// filter reports whether r, received from r.Peer, is passed on now.
// Called with the lock held.
func (g *grHold) filter(r evpn.Route) bool {
	hp := g.peers[r.Peer]
	if hp == nil {
		return true
	}
	key := r.NLRI.Key()
	if r.Withdraw {
		if len(hp.withdrawn) == 0 {
			g.log("bgp peer restarting: its routes stay until it sends End-of-RIB", "peer", r.Peer)
		}
		hp.withdrawn[key] = r
		return false
	}
	delete(hp.withdrawn, key)
	return true
}

// endOfRIB ends peer's restart, if it was restarting, and appends to out
// the withdrawals held for it. Called with the lock held.
func (g *grHold) endOfRIB(peer netip.Addr, out []evpn.Route) []evpn.Route {
	return g.end(peer, out, "End-of-RIB")
}

func (g *grHold) end(peer netip.Addr, out []evpn.Route, why string) []evpn.Route {
	hp := g.peers[peer]
	if hp == nil {
		return out
	}
	hp.timer.Stop()
	delete(g.peers, peer)
	for _, r := range hp.withdrawn {
		out = append(out, r)
	}
	if len(hp.withdrawn) > 0 {
		g.log("bgp peer restart over", "peer", peer, "reason", why, "withdrawn", len(hp.withdrawn))
	}
	return out
}

// forget ends any hold of peer at once and releases what it held: the
// peer is being removed.
func (g *grHold) forget(peer netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if out := g.end(peer, nil, "peer removed"); len(out) > 0 {
		g.release(out)
	}
}

// expire ends a restart that ran out of time.
func (g *grHold) expire(peer netip.Addr, hp *heldPeer) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.peers[peer] != hp {
		return // ended by End-of-RIB meanwhile
	}
	if out := g.end(peer, nil, "restart time ran out"); len(out) > 0 {
		g.release(out)
	}
}

// stop cancels every timer; nothing is held from then on.
func (g *grHold) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopped = true
	for a, hp := range g.peers {
		hp.timer.Stop()
		delete(g.peers, a)
	}
}
