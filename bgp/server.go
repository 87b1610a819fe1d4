package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/evpnd/evpnd/evpn"
)

// connectRetry is how long GoBGP waits between connection attempts. FRR
// and GoBGP default to 120 s, which turns a peer that starts a moment late
// into two minutes without routes; hosts reconnect sooner.
const connectRetry = 5

// Convergence without End-of-RIB: GoBGP sends End-of-RIB only to peers
// that negotiated graceful restart, so a peer that did not negotiate it
// also counts as converged once it is established and the route stream has
// been quiet for convergeQuiet. Until such a peer has sent its first EVPN
// path, quiet means convergeFirstRoute since it came up: a speaker with a
// large table takes seconds to send its first UPDATE (a GoBGP injector
// with 250k paths took more than convergeQuiet), and converging before
// it would make a restarted evpnd prune the kernel entries that peer is
// about to send again. A peer that negotiated graceful restart is waited
// for: its End-of-RIB is promised. After convergeDeadline the daemon
// reconciles with whatever it has.
const (
	convergeQuiet      = 2 * time.Second
	convergeFirstRoute = 10 * time.Second
	convergeDeadline   = 90 * time.Second
)

// localOnlyPolicy keeps a host from being transit: only routes it
// originates are advertised, never ones it learned from a ToR or RR.
const localOnlyPolicy = "evpnd-advertise-local-only"

// noUnicastImport keeps peers' unicast routes out of the RIB.
const noUnicastImport = "evpnd-no-unicast-import"

// Server is the Speaker of the process: one embedded GoBGP server.
type Server struct {
	log    *slog.Logger
	bgp    *server.BgpServer
	cfg    Config
	events chan []evpn.Route
	q      *queue[evpn.Route]

	stopWatch context.CancelFunc
	done      chan struct{}

	mu    sync.Mutex
	peers map[netip.Addr]PeerConfig
	eor   map[netip.Addr]bool
	up    map[netip.Addr]time.Time // established since
	// routed holds the peers that sent an EVPN path in their current
	// session.
	routed map[netip.Addr]bool
	// promised holds, per established peer, whether its session
	// negotiated graceful restart for l2vpn-evpn, so its End-of-RIB will
	// come: such a peer is waited for, never judged by the quiet rule.
	promised map[netip.Addr]bool
	// restartTimes holds the restart time each peer advertised (RFC 4724),
	// learnt with promised.
	restartTimes map[netip.Addr]time.Duration
	lastRoute    time.Time
	started      time.Time
	converged    chan struct{}
	// convergedDue is set once convergence is decided; deliver closes
	// converged after handing on every route queued before that, so a
	// consumer that drains Events first has the whole table.
	convergedDue  atomic.Bool
	convergedSent bool // owned by deliver
	// restarting is set when Start found a marker of a previous run that
	// ended without withdrawing its routes; peers added by Start are then
	// told this speaker restarted.
	restarting bool

	received  atomic.Uint64 // EVPN paths delivered on Events
	malformed atomic.Uint64 // paths GoBGP accepted that evpn could not decode

	feed *peerFeed
	imp  importState
	hold *grHold
}

// peerFeed carries peer state changes from GoBGP's watch callback to
// PeerEvents. The callback runs on GoBGP's goroutine and must never wait
// for evpnd's reader, so the feed keeps only the newest undelivered state
// of each peer: a reader that falls behind skips intermediate states, never
// the latest one. It has its own lock so the callback never waits behind
// anything else either.
type peerFeed struct {
	mu      sync.Mutex
	pending map[netip.Addr]peerChange
	order   []netip.Addr // peers with a pending state, oldest change first
	// desc is each peer's configured description, which GoBGP's peer
	// events do not carry; it stays after a peer is deleted so the last
	// event of a deleted peer still names it.
	desc map[netip.Addr]string
	// reported holds the peers whose state GoBGP has reported since they
	// were added; a peer GoBGP reported before AddPeer returned needs no
	// separate "added" event.
	reported map[netip.Addr]bool
	notify   chan struct{}
	out      chan Peer
}

// peerChange is a pending state; Uptime is computed when it is handed on.
type peerChange struct {
	peer  Peer
	since time.Time // established since; zero when not established
}

func newPeerFeed() *peerFeed {
	return &peerFeed{
		pending:  map[netip.Addr]peerChange{},
		desc:     map[netip.Addr]string{},
		reported: map[netip.Addr]bool{},
		notify:   make(chan struct{}, 1),
		out:      make(chan Peer),
	}
}

// configure records p before it is added or updated, so states GoBGP
// reports while AddPeer runs already carry its description.
func (f *peerFeed) configure(p PeerConfig, adding bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.desc[p.Address] = p.Description
	if adding {
		delete(f.reported, p.Address)
	}
}

// added reports a new peer in its initial state unless GoBGP already
// reported a later one.
func (f *peerFeed) added(p PeerConfig) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reported[p.Address] {
		return
	}
	f.pushLocked(peerChange{peer: Peer{Address: p.Address, ASN: p.ASN, Description: p.Description, State: sessionState(api.PeerState_IDLE)}})
}

// state records a state GoBGP reported; it never blocks.
func (f *peerFeed) state(addr netip.Addr, asn uint32, st api.PeerState_SessionState, since time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reported[addr] = true
	c := peerChange{peer: Peer{Address: addr, ASN: asn, Description: f.desc[addr], State: sessionState(st)}}
	if st == api.PeerState_ESTABLISHED {
		c.since = since
	}
	f.pushLocked(c)
}

func (f *peerFeed) pushLocked(c peerChange) {
	if _, queued := f.pending[c.peer.Address]; !queued {
		f.order = append(f.order, c.peer.Address)
	}
	f.pending[c.peer.Address] = c
	select {
	case f.notify <- struct{}{}:
	default:
	}
}

// next takes the pending state of the peer that changed first.
func (f *peerFeed) next() (Peer, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.order) == 0 {
		return Peer{}, false
	}
	return f.takeLocked(f.order[0]), true
}

// take takes addr's pending state, if it has one.
func (f *peerFeed) take(addr netip.Addr) (Peer, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.pending[addr]; !ok {
		return Peer{}, false
	}
	return f.takeLocked(addr), true
}

func (f *peerFeed) takeLocked(addr netip.Addr) Peer {
	c := f.pending[addr]
	delete(f.pending, addr)
	f.order = slices.DeleteFunc(f.order, func(a netip.Addr) bool { return a == addr })
	if !c.since.IsZero() {
		c.peer.Uptime = time.Since(c.since).Truncate(time.Second)
	}
	return c.peer
}

// run hands pending states to the reader until done is closed, then
// closes the channel.
func (f *peerFeed) run(done <-chan struct{}) {
	defer close(f.out)
	for {
		p, ok := f.next()
		if !ok {
			select {
			case <-f.notify:
				continue
			case <-done:
				return
			}
		}
		for sent := false; !sent; {
			select {
			case f.out <- p:
				sent = true
			case <-f.notify:
				// While the reader is away, a newer state of the peer on
				// offer replaces it; other peers wait their turn.
				if newer, ok := f.take(p.Address); ok {
					p = newer
				}
			case <-done:
				return
			}
		}
	}
}

var _ Speaker = (*Server)(nil)

// New returns a server that does nothing until Start.
func New(log *slog.Logger) *Server {
	s := &Server{
		log:          log,
		events:       make(chan []evpn.Route, 64),
		q:            newQueue[evpn.Route](),
		done:         make(chan struct{}),
		peers:        map[netip.Addr]PeerConfig{},
		eor:          map[netip.Addr]bool{},
		up:           map[netip.Addr]time.Time{},
		routed:       map[netip.Addr]bool{},
		promised:     map[netip.Addr]bool{},
		restartTimes: map[netip.Addr]time.Duration{},
		converged:    make(chan struct{}),
		feed:         newPeerFeed(),
	}
	s.hold = newGRHold(s.q.push, log.Info)
	return s
}

// peerRestartTimeLocked is the restart time peer a advertised, or
// DefaultRestartTime when it is not known.
func (s *Server) peerRestartTimeLocked(a netip.Addr) time.Duration {
	if t, ok := s.restartTimes[a]; ok && t > 0 {
		return t
	}
	return DefaultRestartTime
}

// Start runs GoBGP with cfg's global settings and peers.
func (s *Server) Start(ctx context.Context, cfg Config) error {
	if !cfg.NextHop.IsValid() {
		return errors.New("bgp: next hop (vtep address) is not set")
	}
	s.cfg = cfg
	s.restarting = s.takeRestartMarker()
	s.bgp = server.NewBgpServer(server.LoggerOption(&slogAdapter{log: s.log.With("component", "gobgp")}))
	go s.bgp.Serve()

	listen := make([]string, 0, len(cfg.ListenAddresses))
	for _, a := range cfg.ListenAddresses {
		listen = append(listen, a.String())
	}
	port := cfg.ListenPort
	if port == 0 {
		port = 179
	}
	err := s.bgp.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn:             cfg.ASN,
		RouterId:        cfg.RouterID.String(),
		ListenPort:      port,
		ListenAddresses: listen,
	}})
	if err != nil {
		s.bgp.Stop()
		return fmt.Errorf("bgp: start: %w", err)
	}
	if err := s.installExportPolicy(ctx); err != nil {
		s.bgp.Stop()
		return err
	}
	// Before any peer is added, so that no path from a peer meets
	// GoBGP without the filter the daemon asked for.
	if err := s.startImport(ctx); err != nil {
		s.stopImport()
		s.bgp.Stop()
		return err
	}

	watchCtx, cancel := context.WithCancel(context.Background())
	s.stopWatch = cancel
	err = s.bgp.WatchEvent(watchCtx, &api.WatchEventRequest{
		Table: &api.WatchEventRequest_Table{Filters: []*api.WatchEventRequest_Table_Filter{
			{Type: api.WatchEventRequest_Table_Filter_BEST, Init: true},
			{Type: api.WatchEventRequest_Table_Filter_EOR, Init: true},
		}},
		Peer: &api.WatchEventRequest_Peer{},
	}, s.watcher())
	if err != nil {
		cancel()
		s.bgp.Stop()
		return fmt.Errorf("bgp: watch: %w", err)
	}
	s.mu.Lock()
	s.started = time.Now()
	s.mu.Unlock()
	go s.deliver()
	go s.watchConvergence()
	go s.feed.run(s.done)

	if err := s.SetPeers(ctx, cfg.Peers); err != nil {
		return err
	}
	return nil
}

func (s *Server) installExportPolicy(ctx context.Context) error {
	reject := func(name string, t api.Conditions_RouteType) *api.Statement {
		return &api.Statement{
			Name:       name,
			Conditions: &api.Conditions{RouteType: t},
			Actions:    &api.Actions{RouteAction: api.RouteAction_REJECT},
		}
	}
	err := s.bgp.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{
		Name: localOnlyPolicy,
		Statements: []*api.Statement{
			reject(localOnlyPolicy+"-ibgp", api.Conditions_ROUTE_TYPE_INTERNAL),
			reject(localOnlyPolicy+"-ebgp", api.Conditions_ROUTE_TYPE_EXTERNAL),
		},
	}})
	if err != nil {
		return fmt.Errorf("bgp: export policy: %w", err)
	}
	err = s.bgp.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name:          "global",
		Direction:     api.PolicyDirection_EXPORT,
		Policies:      []*api.Policy{{Name: localOnlyPolicy}},
		DefaultAction: api.RouteAction_ACCEPT,
	}})
	if err != nil {
		return fmt.Errorf("bgp: export policy assignment: %w", err)
	}
	// A host has no use for its peers' unicast routes (it advertises its
	// public addresses but routes nothing it learns), and a ToR may send a
	// full table: drop them at import so they cost no RIB memory. GoBGP
	// runs the global import policy on local paths too, so the statements
	// match only routes learned from peers.
	learned := func(name string, t api.Conditions_RouteType) *api.Statement {
		return &api.Statement{
			Name:       name,
			Conditions: &api.Conditions{AfiSafiIn: []*api.Family{ipv4Family, ipv6Family}, RouteType: t},
			Actions:    &api.Actions{RouteAction: api.RouteAction_REJECT},
		}
	}
	err = s.bgp.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{
		Name: noUnicastImport,
		Statements: []*api.Statement{
			learned(noUnicastImport+"-ibgp", api.Conditions_ROUTE_TYPE_INTERNAL),
			learned(noUnicastImport+"-ebgp", api.Conditions_ROUTE_TYPE_EXTERNAL),
		},
	}})
	if err != nil {
		return fmt.Errorf("bgp: import policy: %w", err)
	}
	err = s.bgp.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name:          "global",
		Direction:     api.PolicyDirection_IMPORT,
		Policies:      []*api.Policy{{Name: noUnicastImport}},
		DefaultAction: api.RouteAction_ACCEPT,
	}})
	if err != nil {
		return fmt.Errorf("bgp: import policy assignment: %w", err)
	}
	return nil
}

// watcher is the callback of GoBGP's watch, with the converter it owns:
// GoBGP calls it from one goroutine.
func (s *Server) watcher() func(*api.WatchEventResponse) {
	in := newIngest()
	return func(r *api.WatchEventResponse) { s.onEvent(in, r) }
}

// onEvent runs on GoBGP's watch goroutine, which buffers events without
// bound and never holds up GoBGP's own loop. It converts each path at once
// (ingest costs a fraction of the protobuf GoBGP has just built for it), so
// what waits in the queue for a slow consumer is compact routes, not
// protobuf paths several times their size.
func (s *Server) onEvent(in *ingest, r *api.WatchEventResponse) {
	if t := r.GetTable(); t != nil {
		paths := t.GetPaths()
		routes := in.buf[:0]
		evpnPaths := 0
		s.hold.lock()
		var from []netip.Addr // the batch's peers: nearly always one
		for _, p := range paths {
			if p.GetNlri() == nil {
				if peer, ok := s.onEOR(p); ok {
					routes = s.hold.endOfRIB(peer, routes)
				}
				continue
			}
			// Only EVPN feeds the RIB and the convergence timer; the
			// unicast routes evpnd advertises for NAT come back here as
			// best paths too.
			if !isEVPN(p.GetFamily()) {
				continue
			}
			evpnPaths++
			rt, ok, err := in.route(p)
			if err != nil {
				s.malformed.Add(1)
				s.log.Warn("bgp path not decodable, ignored", "peer", p.GetNeighborIp(), "err", err)
				continue
			}
			if !ok || !rt.Peer.IsValid() {
				continue // our own route
			}
			if !slices.Contains(from, rt.Peer) {
				from = append(from, rt.Peer)
			}
			if !s.hold.filter(rt) {
				continue // withdrawn while its peer restarts
			}
			routes = append(routes, rt)
		}
		if evpnPaths > 0 {
			s.mu.Lock()
			s.lastRoute = time.Now()
			for _, a := range from {
				s.routed[a] = true
			}
			s.mu.Unlock()
		}
		s.q.push(routes)
		s.hold.unlock()
		clear(routes) // the queue has copies; drop references for the GC
		in.buf = routes
		return
	}
	if p := r.GetPeer(); p != nil {
		st := p.GetPeer().GetState()
		addr, _ := netip.ParseAddr(st.GetNeighborAddress())
		switch p.GetType() {
		case api.WatchEventResponse_PeerEvent_STATE:
			s.log.Info("bgp peer state", "peer", addr, "state", sessionState(st.GetSessionState()))
			now := time.Now()
			s.mu.Lock()
			hold, wait := false, time.Duration(0)
			if st.GetSessionState() == api.PeerState_ESTABLISHED {
				s.up[addr] = now
				// The last session's withdrawals came before this event.
				delete(s.routed, addr)
			} else {
				_, wasUp := s.up[addr]
				_, configured := s.peers[addr]
				hold = wasUp && configured && s.cfg.GracefulRestart.Enabled
				wait = s.peerRestartTimeLocked(addr)
				delete(s.eor, addr)
				delete(s.up, addr)
				delete(s.promised, addr)
			}
			s.mu.Unlock()
			s.hold.lock()
			if hold {
				s.hold.begin(addr, wait)
			} else if st.GetSessionState() == api.PeerState_ESTABLISHED {
				s.hold.established(addr)
			}
			s.hold.unlock()
			if addr.IsValid() {
				s.feed.state(addr, st.GetPeerAsn(), st.GetSessionState(), now)
			}
		}
	}
}

func isEVPN(f *api.Family) bool {
	return f.GetAfi() == api.Family_AFI_L2VPN && f.GetSafi() == api.Family_SAFI_EVPN
}

// onEOR records an l2vpn-evpn End-of-RIB and reports the peer that sent
// it.
func (s *Server) onEOR(p *api.Path) (netip.Addr, bool) {
	if !isEVPN(p.GetFamily()) {
		return netip.Addr{}, false
	}
	addr, err := netip.ParseAddr(p.GetNeighborIp())
	if err != nil {
		return netip.Addr{}, false
	}
	addr = addr.Unmap()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.eor[addr] = true
	return addr, true
}

// watchConvergence closes converged once every peer has sent its table.
func (s *Server) watchConvergence() {
	t := time.NewTicker(convergeQuiet / 8)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			s.learnPromises()
			s.mu.Lock()
			done, why := s.convergedLocked(now)
			if done {
				// Peers added from now on (a reload) meet a speaker that
				// has its routes: no restart to announce.
				s.restarting = false
			}
			s.mu.Unlock()
			if done {
				s.log.Info("bgp converged", "reason", why)
				s.convergedDue.Store(true)
				s.q.poke()
				return
			}
		}
	}
}

func (s *Server) convergedLocked(now time.Time) (bool, string) {
	if now.Sub(s.started) >= convergeDeadline {
		return true, "deadline; some peers have not sent their routes"
	}
	quiet := now.Sub(s.lastRoute) >= convergeQuiet
	for a := range s.peers {
		if s.eor[a] {
			continue
		}
		since, up := s.up[a]
		if !up {
			return false, ""
		}
		if promised, known := s.promised[a]; !known || promised {
			return false, ""
		}
		if !quiet || now.Sub(since) < convergeQuiet {
			return false, ""
		}
		if !s.routed[a] && now.Sub(since) < convergeFirstRoute {
			return false, ""
		}
	}
	return true, "every peer sent its routes"
}

// learnPromises finds out, for each established peer not yet known,
// whether it negotiated graceful restart for l2vpn-evpn. GoBGP's peer
// events do not say; ListPeer does, once the OPENs are exchanged.
func (s *Server) learnPromises() {
	s.mu.Lock()
	var ask []netip.Addr
	for a := range s.up {
		if _, known := s.promised[a]; !known && !s.eor[a] {
			ask = append(ask, a)
		}
	}
	s.mu.Unlock()
	for _, a := range ask {
		promised, restart, ok := s.promisesEOR(a)
		if !ok {
			continue
		}
		s.mu.Lock()
		if _, up := s.up[a]; up {
			s.promised[a] = promised
			s.restartTimes[a] = restart
		}
		s.mu.Unlock()
	}
}

// promisesEOR reports whether peer a's session negotiated graceful
// restart for l2vpn-evpn, and the restart time a advertised; ok is false
// when GoBGP could not say.
func (s *Server) promisesEOR(a netip.Addr) (promised bool, restart time.Duration, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), convergeQuiet)
	defer cancel()
	err := s.bgp.ListPeer(ctx, &api.ListPeerRequest{Address: a.String()}, func(p *api.Peer) {
		if p.GetState().GetSessionState() != api.PeerState_ESTABLISHED {
			return
		}
		ok = true
		restart = time.Duration(p.GetGracefulRestart().GetPeerRestartTime()) * time.Second
		for _, af := range p.GetAfiSafis() {
			if isEVPN(af.GetConfig().GetFamily()) {
				promised = af.GetMpGracefulRestart().GetState().GetReceived()
			}
		}
	})
	return promised, restart, ok && err == nil
}

// deliver hands queued routes on, coalescing whatever arrived meanwhile
// into one batch.
func (s *Server) deliver() {
	defer close(s.events)
	for {
		select {
		case <-s.done:
			return
		case <-s.q.notify:
		}
		// Read before the drain: everything queued before convergence was
		// decided is then in this batch or an earlier one.
		due := s.convergedDue.Load()
		if batch := s.q.drain(); len(batch) > 0 {
			s.received.Add(uint64(len(batch)))
			select {
			case s.events <- batch:
			case <-s.done:
				return
			}
		}
		if due && !s.convergedSent {
			s.convergedSent = true
			close(s.converged)
		}
	}
}

// Events delivers received best paths and withdrawals in order.
func (s *Server) Events() <-chan []evpn.Route { return s.events }

// PeerEvents delivers a peer's state each time its session state changes,
// and once for each peer SetPeers adds. A reader that falls behind gets
// the latest state of every peer, not every state in between. Counters are
// not filled in: Peers has them. The channel is closed after Stop.
func (s *Server) PeerEvents() <-chan Peer { return s.feed.out }

// Converged is closed once every configured peer has sent End-of-RIB for
// l2vpn-evpn (at once when there are no peers), after the routes received
// before that are on Events.
func (s *Server) Converged() <-chan struct{} { return s.converged }

// SetPeers makes GoBGP's neighbours equal to peers.
func (s *Server) SetPeers(ctx context.Context, peers []PeerConfig) error {
	want := map[netip.Addr]PeerConfig{}
	for _, p := range peers {
		want[p.Address] = p
	}
	s.mu.Lock()
	have := maps.Clone(s.peers)
	s.mu.Unlock()

	var errs []error
	for a := range have {
		if _, ok := want[a]; ok {
			continue
		}
		// Out of peers first: a removed peer's session end starts no
		// graceful restart hold, and its routes go at once.
		s.mu.Lock()
		delete(s.peers, a)
		s.mu.Unlock()
		s.hold.forget(a)
		if err := s.bgp.DeletePeer(ctx, &api.DeletePeerRequest{Address: a.String()}); err != nil {
			errs = append(errs, fmt.Errorf("peer %s: delete: %w", a, err))
			s.mu.Lock()
			s.peers[a] = have[a]
			s.mu.Unlock()
			continue
		}
		s.mu.Lock()
		delete(s.eor, a)
		s.mu.Unlock()
	}
	for a, p := range want {
		old, ok := have[a]
		switch {
		case !ok:
			s.feed.configure(p, true)
			s.mu.Lock()
			restarting := s.restarting
			s.mu.Unlock()
			if err := s.bgp.AddPeer(ctx, &api.AddPeerRequest{Peer: s.apiPeerRestarting(p, restarting)}); err != nil {
				errs = append(errs, fmt.Errorf("peer %s: add: %w", a, err))
				continue
			}
			s.feed.added(p)
			s.log.Info("bgp peer added", "peer", a, "asn", p.ASN)
		case old != p:
			s.feed.configure(p, false)
			if _, err := s.bgp.UpdatePeer(ctx, &api.UpdatePeerRequest{Peer: s.apiPeer(p)}); err != nil {
				errs = append(errs, fmt.Errorf("peer %s: update: %w", a, err))
				continue
			}
		default:
			continue
		}
		s.mu.Lock()
		s.peers[a] = p
		s.mu.Unlock()
	}
	return errors.Join(errs...)
}

func (s *Server) apiPeer(p PeerConfig) *api.Peer { return s.apiPeerRestarting(p, false) }

// apiPeerRestarting is apiPeer for a peer added while this speaker
// restarts (RFC 4724 s4.1).
func (s *Server) apiPeerRestarting(p PeerConfig, restarting bool) *api.Peer {
	timers := &api.TimersConfig{ConnectRetry: connectRetry}
	if p.HoldTime > 0 {
		timers.HoldTime = uint64(p.HoldTime / time.Second)
	}
	if p.KeepaliveInterval > 0 {
		timers.KeepaliveInterval = uint64(p.KeepaliveInterval / time.Second)
	}
	tr := &api.Transport{PassiveMode: p.Passive}
	if p.Port != 0 {
		tr.RemotePort = uint32(p.Port)
	}
	// With explicit listen addresses the host has chosen its BGP identity
	// on the underlay; connect from it too, so the peer sees the address it
	// was configured with.
	for _, la := range s.cfg.ListenAddresses {
		if la.Is4() == p.Address.Is4() {
			tr.LocalAddress = la.String()
			break
		}
	}
	gr := s.cfg.GracefulRestart
	return &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.ASN,
			AuthPassword:    p.Password,
			Description:     p.Description,
		},
		Timers:          &api.Timers{Config: timers},
		Transport:       tr,
		TtlSecurity:     ttlSecurity(p.TTLSecurity),
		GracefulRestart: apiGracefulRestart(gr, restarting),
		// Unicast carries the public addresses of tenants' uplinks; a
		// peer that does not support a family just leaves it out of the
		// session.
		AfiSafis: []*api.AfiSafi{
			{Config: &api.AfiSafiConfig{Family: evpnFamily, Enabled: true}, MpGracefulRestart: mpGracefulRestart(gr),
				PrefixLimits: prefixLimit(evpnFamily, p.MaxPrefixes)},
			{Config: &api.AfiSafiConfig{Family: ipv4Family, Enabled: true}, MpGracefulRestart: mpGracefulRestart(gr),
				PrefixLimits: prefixLimit(ipv4Family, p.MaxPrefixes)},
			{Config: &api.AfiSafiConfig{Family: ipv6Family, Enabled: true}, MpGracefulRestart: mpGracefulRestart(gr),
				PrefixLimits: prefixLimit(ipv6Family, p.MaxPrefixes)},
		},
	}
}

// prefixLimit is GoBGP's cap on the routes of one family from a peer,
// warning at 90%; nil when there is no cap.
func prefixLimit(f *api.Family, max uint32) *api.PrefixLimit {
	if max == 0 {
		return nil
	}
	return &api.PrefixLimit{Family: f, MaxPrefixes: max, ShutdownThresholdPct: 90}
}

// ttlSecurity maps a GTSM radius to GoBGP's setting, nil when off.
func ttlSecurity(hops uint8) *api.TtlSecurity {
	if hops == 0 {
		return nil
	}
	// GoBGP sends with TTL 255 and sets IP_MINTTL (IPV6_MINHOPCOUNT) to
	// TtlMin on the session socket: a peer n hops away arrives with 256-n.
	return &api.TtlSecurity{Enabled: true, TtlMin: 256 - uint32(hops)}
}

// Advertise adds, replaces or withdraws local routes.
func (s *Server) Advertise(ctx context.Context, routes []evpn.Route) error {
	var errs []error
	for _, r := range routes {
		p, err := toAPIPath(r, s.cfg.NextHop)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if r.Withdraw {
			err = s.bgp.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: evpnFamily, Path: p})
		} else {
			_, err = s.bgp.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: p})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("route %s: %w", r.NLRI, err))
		}
	}
	return errors.Join(errs...)
}

// Peers reports every neighbour's state and EVPN counters.
func (s *Server) Peers(ctx context.Context) ([]Peer, error) {
	var out []Peer
	err := s.bgp.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		st := p.GetState()
		addr, _ := netip.ParseAddr(p.GetConf().GetNeighborAddress())
		peer := Peer{
			Address:     addr,
			ASN:         p.GetConf().GetPeerAsn(),
			Description: p.GetConf().GetDescription(),
			State:       sessionState(st.GetSessionState()),
		}
		if st.GetSessionState() == api.PeerState_ESTABLISHED {
			if up := p.GetTimers().GetState().GetUptime(); up != nil {
				peer.Uptime = time.Since(up.AsTime()).Truncate(time.Second)
			}
		}
		for _, af := range p.GetAfiSafis() {
			f := af.GetState().GetFamily()
			if f.GetAfi() == api.Family_AFI_L2VPN && f.GetSafi() == api.Family_SAFI_EVPN {
				peer.Received = af.GetState().GetReceived()
				peer.Accepted = af.GetState().GetAccepted()
				peer.Advertised = af.GetState().GetAdvertised()
			}
		}
		out = append(out, peer)
	})
	slices.SortFunc(out, func(a, b Peer) int { return a.Address.Compare(b.Address) })
	return out, err
}

// Routes lists the best EVPN paths of the global RIB, local and received.
func (s *Server) Routes(ctx context.Context) ([]evpn.Route, error) {
	var out []evpn.Route
	var errs []error
	in := newIngest()
	err := s.bgp.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: evpnFamily}, func(d *api.Destination) {
		for _, p := range d.GetPaths() {
			if !p.GetBest() {
				continue
			}
			r, ok, err := in.route(p)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if ok {
				out = append(out, r)
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("bgp: list paths: %w", err)
	}
	return out, errors.Join(errs...)
}

// Received counts EVPN paths delivered on Events since Start.
func (s *Server) Received() uint64 { return s.received.Load() }

// Stop ends the watch first (GoBGP's watch goroutine must not outlive the
// server), then the sessions, with a NOTIFICATION (Cease) to every peer so
// they withdraw this host's routes at once, and the server.
func (s *Server) Stop() {
	if s.bgp == nil {
		return
	}
	s.stopImport()
	s.endWatch()
	s.hold.stop()
	_ = s.bgp.StopBgp(context.Background(), &api.StopBgpRequest{})
	s.bgp.Stop()
	if g := s.cfg.GracefulRestart; g.Enabled && g.StateDir != "" {
		if err := removeRestartMarker(g.StateDir); err != nil {
			s.log.Warn("bgp: the next start will claim a graceful restart", "err", err)
		}
	}
}

func (s *Server) endWatch() {
	if s.stopWatch != nil {
		s.stopWatch()
	}
	select {
	case <-s.done:
	default:
		close(s.done)
	}
}

func sessionState(st api.PeerState_SessionState) string {
	switch st {
	case api.PeerState_IDLE:
		return "idle"
	case api.PeerState_CONNECT:
		return "connect"
	case api.PeerState_ACTIVE:
		return "active"
	case api.PeerState_OPENSENT:
		return "opensent"
	case api.PeerState_OPENCONFIRM:
		return "openconfirm"
	case api.PeerState_ESTABLISHED:
		return "established"
	}
	return "unknown"
}
