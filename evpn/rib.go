package evpn

import (
	"bytes"
	"math"
	"net"
	"net/netip"
	"slices"
)

// RIB turns the EVPN best paths BGP delivers into kernel intents. GoBGP's
// best path is per (RD, NLRI); the RIB does what a PE does on top: route
// target import into segments and into tenants' routing tables, MAC
// mobility across RDs (RFC 7432 s15), ECMP across the VTEPs advertising a
// prefix, and reference counting of flood entries and router MACs, and it
// reports every change as a minimal Diff.
//
// Routed tenants (symmetric IRB, RFC 9135): a type-5 route imported by an
// L3 becomes an L3Route whose next hops are all the VTEPs advertising the
// prefix; a type-2 MAC+IP route imported by an L3 becomes a host route
// (/32, /128) to the VTEP that wins its MAC, and then takes precedence
// over type-5 routes for the same prefix, since MAC mobility says where
// the host is. A prefix in the L3's Local list is never installed. Every
// installed route holds the RouterMAC of its VTEP on the L3VNI.
//
// A RIB is not safe for concurrent use: the daemon owns it from one
// goroutine, as GoBGP owns its RIB from its event loop. It keeps the routes
// it is given (their slices included), and the MACs in the intents it
// returns are shared with it: neither side may modify them.
type RIB struct {
	self netip.Addr

	segs    []Segment
	autoVNI map[VNI]struct{} // VNIs of segments that import by VNI
	byRT    map[RT][]VNI     // explicit import RTs to their VNIs

	l3s      []L3
	l3Auto   map[VNI]struct{} // L3VNIs of L3s that import by VNI
	l3ByRT   map[RT][]VNI     // explicit import RTs to their L3VNIs
	localPfx map[pfxKey]struct{}

	routes map[routeKey]*entry
	macs   map[macKey]*macState
	neighs map[ipKey]*neighState
	floods map[floodKey]*floodState
	pfxs   map[pfxKey]*pfxState
	rmacs  map[rmacKey]*rmacState

	// States touched since the last settle; each is settled once, so a
	// batch that removes and re-adds an entry yields no change.
	dirtyMACs   []*macState
	dirtyNeighs []*neighState
	dirtyFloods []*floodState
	dirtyPfxs   []*pfxState
	dirtyRMACs  []*rmacState

	superseded []LocalMAC
	dupCfg     DupDetection
	newDups    []Duplicate
	skipped    uint64
	noRMAC     uint64
	// clock orders route arrivals: when the routes of one VTEP carry
	// different router MACs, the one that arrived last is used.
	clock uint64

	scratch      []netip.Addr
	offerScratch []hostOffer
	usesScratch  []rmacUse
	vniScratch   []VNI
}

// LocalMAC is a MAC this host advertised that a remote route with a higher
// mobility sequence number took over: the daemon withdraws its own route.
type LocalMAC struct {
	VNI VNI
	MAC net.HardwareAddr
	// Seq is the sequence number this host advertised.
	Seq uint32
	// RemoteSeq and VTEP are those of the route that won.
	RemoteSeq uint32
	VTEP      netip.Addr
}

// routeKey is the identity of a route as NLRI.Key defines it, in a form
// that hashes without formatting.
type routeKey struct {
	rd     RD
	ethTag uint32
	addr   netip.Addr // type-2 IP, type-3 originator, type-5 prefix address
	mac    [6]byte
	bits   uint8 // type-5 prefix length
	typ    RouteType
}

type entry struct {
	key   routeKey
	route Route
	// vnis holds the VNIs of the segments the route is imported into and
	// then, from nseg on, the L3VNIs (only when the route can be routed:
	// an IP and a router MAC). One slice keeps an entry at 256 bytes, a
	// Go size class; bursts are 100k entries.
	vnis []VNI
	seq  uint32 // MAC mobility sequence number, 0 when absent
	nseg uint16 // segments do not number 65536 on a host
	// hostOnly is set for a type-2 route that L3s import but no segment
	// does (the host has the tenant but not the subnet): its MAC mobility
	// is still decided, among such routes, per (L2VNI label, MAC).
	hostOnly bool
	vtep     netip.Addr // where the FDB, flood entry or L3 route points
	stamp    uint64     // arrival order, see RIB.clock
}

func (e *entry) segVNIs() []VNI { return e.vnis[:e.nseg] }
func (e *entry) l3VNIs() []VNI  { return e.vnis[e.nseg:] }

// hostVNI groups a hostOnly route's MAC: its L2VNI label.
func (e *entry) hostVNI() VNI {
	if m, ok := e.route.NLRI.(*MACIP); ok && len(m.Labels) > 0 {
		return m.Labels[0]
	}
	return 0
}

type macKey struct {
	vni VNI
	mac [6]byte
	// hostOnly groups the routes of entry.hostOnly: they decide host
	// routes but give no FDB or neighbor entries, since the host has no
	// such segment.
	hostOnly bool
}

type macState struct {
	key   macKey
	hw    net.HardwareAddr // handed out in intents; never modified
	cands []*entry         // imported type-2 routes for this MAC

	local    bool
	localSeq uint32

	fdb    netip.Addr   // winning remote VTEP, zero when none
	winSeq uint32       // sequence number of the winning route
	neighs []netip.Addr // IPs this MAC currently offers to neighStates
	hosts  []hostOffer  // host routes this MAC currently offers to pfxStates
	dirty  bool

	// lastAt is where the MAC was at the last settle (see location), for
	// counting moves; dup is nil until it first moves with detection on.
	lastAt netip.Addr
	dup    *dupState
}

// hostOffer is a type-2 route of a MAC's winning VTEP offered as a host
// route into an L3. stamp is part of its identity: a route that arrives
// again is offered again, so that its router MAC is taken afresh.
type hostOffer struct {
	key   pfxKey
	st    *macState
	e     *entry
	stamp uint64
}

type pfxKey struct {
	vni VNI // the L3VNI
	pfx netip.Prefix
}

type pfxState struct {
	key   pfxKey
	t5    []*entry    // imported type-5 routes
	hosts []hostOffer // host routes offered by MAC winners
	nhs   []netip.Addr
	uses  []rmacUse // the routes the installed next hops come from
	dirty bool
}

type rmacKey struct {
	vni  VNI
	vtep netip.Addr
}

// rmacUse is one installed route's claim on the router MAC of its VTEP.
type rmacUse struct {
	vtep  netip.Addr
	mac   net.HardwareAddr
	stamp uint64 // unique per route arrival, so it identifies the use
}

type rmacState struct {
	key       rmacKey
	uses      []rmacUse
	installed net.HardwareAddr
	dirty     bool
}

type ipKey struct {
	vni VNI
	ip  netip.Addr
}

type neighState struct {
	key       ipKey
	macs      []*macState // MACs whose installed route carries this IP
	installed *macState
	dirty     bool
}

type floodKey struct {
	vni  VNI
	vtep netip.Addr
}

type floodState struct {
	key       floodKey
	refs      int
	installed bool
	dirty     bool
}

// NewRIB returns an empty RIB for a host whose VTEP address is self;
// routes with next hop self are this host's own and are ignored.
func NewRIB(self netip.Addr) *RIB {
	return &RIB{
		self:    self,
		autoVNI: map[VNI]struct{}{},
		byRT:    map[RT][]VNI{},
		routes:  map[routeKey]*entry{},
		macs:    map[macKey]*macState{},
		neighs:  map[ipKey]*neighState{},
		floods:  map[floodKey]*floodState{},
		l3Auto:  map[VNI]struct{}{},
		l3ByRT:  map[RT][]VNI{},
		pfxs:    map[pfxKey]*pfxState{},
		rmacs:   map[rmacKey]*rmacState{},
	}
}

// SetSegments makes segs the segments routes are imported into. Routes
// already known are imported again, so a new segment gets its intents at
// once and a removed one loses them.
func (r *RIB) SetSegments(segs []Segment) Diff {
	r.segs = slices.Clone(segs)
	clear(r.autoVNI)
	clear(r.byRT)
	for _, s := range r.segs {
		if s.AutoImport {
			r.autoVNI[s.VNI] = struct{}{}
			continue
		}
		for _, rt := range s.Import {
			if !slices.Contains(r.byRT[rt], s.VNI) {
				r.byRT[rt] = append(r.byRT[rt], s.VNI)
			}
		}
	}
	r.reimport()
	return r.settle()
}

// Segments is the segment set last given to SetSegments.
func (r *RIB) Segments() []Segment { return slices.Clone(r.segs) }

// SetL3 makes l3s the routed sides of the tenants, into which type-5 and
// type-2 MAC+IP routes are imported. Routes already known are imported
// again, and a change of an L3's Local prefixes installs or removes the
// remote routes for them at once.
func (r *RIB) SetL3(l3s []L3) Diff {
	r.l3s = slices.Clone(l3s)
	clear(r.l3Auto)
	clear(r.l3ByRT)
	local := map[pfxKey]struct{}{}
	for _, l := range r.l3s {
		if l.AutoImport {
			r.l3Auto[l.VNI] = struct{}{}
		} else {
			for _, rt := range l.Import {
				if !slices.Contains(r.l3ByRT[rt], l.VNI) {
					r.l3ByRT[rt] = append(r.l3ByRT[rt], l.VNI)
				}
			}
		}
		for _, p := range l.Local {
			if p.IsValid() {
				local[pfxKey{vni: l.VNI, pfx: p.Masked()}] = struct{}{}
			}
		}
	}
	for k := range r.localPfx {
		if _, ok := local[k]; !ok {
			r.dirtyPfxKey(k)
		}
	}
	for k := range local {
		if _, ok := r.localPfx[k]; !ok {
			r.dirtyPfxKey(k)
		}
	}
	r.localPfx = local
	r.reimport()
	return r.settle()
}

// L3s is the set last given to SetL3.
func (r *RIB) L3s() []L3 { return slices.Clone(r.l3s) }

// reimport imports every known route again after a change of segments or
// L3s, touching only the routes whose import changed.
func (r *RIB) reimport() {
	for _, e := range r.routes {
		vnis, nseg := r.imports(&e.route, e.key, r.vniScratch, false)
		r.vniScratch = vnis[:0]
		if slices.Equal(vnis, e.vnis) && nseg == e.nseg {
			continue
		}
		r.unapply(e)
		e.vnis, e.nseg = cloneVNIs(e.vnis, vnis), nseg
		e.hostOnly = e.key.typ == TypeMACIP && nseg == 0 && len(vnis) > 0
		r.apply(e)
	}
}

// imports lists, in buf's storage, where a route with key k is imported:
// the segments (type 2 and 3), then from nseg on the L3s (type 5, and
// type 2 with an IP). count counts a route an L3 would import but that
// has no router MAC.
func (r *RIB) imports(rt *Route, k routeKey, buf []VNI, count bool) (vnis []VNI, nseg uint16) {
	vnis = buf[:0]
	if k.typ == TypeMACIP || k.typ == TypeIMET {
		vnis = importInto(rt.RTs, r.autoVNI, r.byRT, vnis, 0)
	}
	nseg = uint16(len(vnis))
	if len(r.l3s) == 0 || k.typ == TypeIMET || k.typ == TypeMACIP && !k.addr.IsValid() {
		return vnis, nseg
	}
	vnis = importInto(rt.RTs, r.l3Auto, r.l3ByRT, vnis, len(vnis))
	if len(vnis) > int(nseg) && usableRMAC(rt.RouterMAC) == nil {
		// Symmetric IRB cannot build the inner Ethernet header without
		// the remote router MAC: a route that cannot be forwarded is
		// not installed.
		if count {
			r.noRMAC++
		}
		vnis = vnis[:nseg]
	}
	return vnis, nseg
}

// usableRMAC is mac when it can be a router MAC: 6 bytes, not all zero.
func usableRMAC(mac net.HardwareAddr) net.HardwareAddr {
	if len(mac) != 6 || [6]byte(mac) == [6]byte{} {
		return nil
	}
	return mac
}

// cloneVNIs copies src into dst's storage, nil when src is empty.
func cloneVNIs(dst, src []VNI) []VNI {
	if len(src) == 0 {
		return nil
	}
	return append(dst[:0], src...)
}

// Update applies best paths and withdrawals from BGP and returns the
// change to the kernel. A route replaces the one with the same NLRI key; a
// withdrawal needs only the NLRI. A route whose next hop is this host
// removes the one it replaces, since the best path is then this host's
// own. Routes that cannot be keyed (nil NLRI, a MAC that is not 6 bytes)
// or that have no next hop are counted in Skipped and otherwise ignored.
// Local MACs that a route took over are reported by Superseded.
func (r *RIB) Update(routes []Route) Diff {
	for i := range routes {
		rt := &routes[i]
		k, ok := keyOf(rt.NLRI)
		if !ok {
			r.skipped++
			continue
		}
		e := r.routes[k]
		// A type-3 route whose PMSI tunnel is not ingress replication
		// asks for a multicast tree this host cannot join: it adds no
		// flood entry, and replaces (withdraws) one it had.
		unusable := k.typ == TypeIMET && rt.PMSI != nil && rt.PMSI.Type != PMSIIngressReplication
		if unusable && !rt.Withdraw {
			r.skipped++
		}
		if rt.Withdraw || unusable || (rt.NextHop == r.self && r.self.IsValid()) {
			if e != nil {
				r.unapply(e)
				delete(r.routes, k)
			}
			continue
		}
		if !rt.NextHop.IsValid() {
			r.skipped++
			continue
		}
		if e == nil {
			e = &entry{key: k}
			r.routes[k] = e
		} else {
			r.unapply(e)
		}
		e.route = *rt
		e.seq, e.vtep = 0, rt.NextHop
		if rt.Mobility != nil {
			e.seq = rt.Mobility.Seq
		}
		if k.typ == TypeIMET && rt.PMSI != nil && rt.PMSI.Endpoint.IsValid() {
			e.vtep = rt.PMSI.Endpoint
		}
		r.clock++
		e.stamp = r.clock
		e.vnis, e.nseg = r.imports(rt, k, e.vnis, true)
		e.hostOnly = k.typ == TypeMACIP && e.nseg == 0 && len(e.vnis) > 0
		r.apply(e)
	}
	return r.settle()
}

// Skipped counts the routes Update ignored as malformed.
func (r *RIB) Skipped() uint64 { return r.skipped }

// NoRouterMAC counts the routes Update received that an L3 imports but
// that carry no usable Router MAC extended community, so that symmetric
// IRB cannot forward over them (an asymmetric-IRB or misconfigured peer).
// They are kept, and still imported into segments, but give no L3 route.
func (r *RIB) NoRouterMAC() uint64 { return r.noRMAC }

// Superseded returns the local MACs that remote routes with a higher
// sequence number took over since the last call, and forgets them. Update
// and SetSegments (which can import such a route) both add to it, so the
// daemon calls it after either. The RIB
// no longer treats them as local: the daemon withdraws its route, and calls
// Local again if the MAC is still (or again) here, which gives it a
// sequence number that wins back.
func (r *RIB) Superseded() []LocalMAC {
	s := r.superseded
	r.superseded = nil
	return s
}

// Local tells the RIB that mac is (present) or no longer is local in vni,
// and returns the MAC mobility sequence number this host must advertise
// for it (RFC 7432 s15.1): 0 when no remote route for the MAC is known,
// otherwise one more than the highest remote one. A MAC already local keeps
// its number. While a MAC is local no remote FDB entry is installed for it
// unless a remote route has a higher number; d is the change that makes.
// A mac that is not 6 bytes is ignored.
func (r *RIB) Local(vni VNI, mac net.HardwareAddr, present bool) (seq uint32, d Diff) {
	if len(mac) != 6 {
		return 0, Diff{}
	}
	k := macKey{vni: vni, mac: [6]byte(mac)}
	st := r.macs[k]
	if !present {
		if st == nil || !st.local {
			return 0, Diff{}
		}
		st.local, st.localSeq = false, 0
		r.dirtyMAC(st)
		return 0, r.settle()
	}
	if st == nil {
		st = r.newMAC(k)
	}
	if !st.local {
		st.local, st.localSeq = true, 0
		if len(st.cands) > 0 {
			var max uint32
			for _, e := range st.cands {
				max = maxU32(max, e.seq)
			}
			// Saturate rather than wrap to 0, which would lose to every
			// remote route.
			st.localSeq = max
			if max < math.MaxUint32 {
				st.localSeq = max + 1
			}
		}
	}
	r.dirtyMAC(st)
	return st.localSeq, r.settle()
}

// Intents is the full desired kernel state, sorted, for Datapath.Sync.
func (r *RIB) Intents() Intents {
	var in Intents
	for _, st := range r.macs {
		if st.fdb.IsValid() && !st.key.hostOnly {
			in.FDB = append(in.FDB, FDB{VNI: st.key.vni, MAC: st.hw, VTEP: st.fdb})
		}
	}
	for _, fs := range r.floods {
		if fs.installed {
			in.Flood = append(in.Flood, Flood{VNI: fs.key.vni, VTEP: fs.key.vtep})
		}
	}
	for _, ns := range r.neighs {
		if ns.installed != nil {
			in.Neigh = append(in.Neigh, Neigh{VNI: ns.key.vni, IP: ns.key.ip, MAC: ns.installed.hw})
		}
	}
	for _, ps := range r.pfxs {
		if ps.nhs != nil {
			in.Routes = append(in.Routes, L3Route{VNI: ps.key.vni, Prefix: ps.key.pfx, NextHops: ps.nhs})
		}
	}
	for _, rs := range r.rmacs {
		if rs.installed != nil {
			in.RMACs = append(in.RMACs, RouterMAC{VNI: rs.key.vni, VTEP: rs.key.vtep, MAC: rs.installed})
		}
	}
	slices.SortFunc(in.Routes, func(a, b L3Route) int {
		if a.VNI != b.VNI {
			return cmpU32(uint32(a.VNI), uint32(b.VNI))
		}
		return comparePrefix(a.Prefix, b.Prefix)
	})
	slices.SortFunc(in.RMACs, func(a, b RouterMAC) int {
		if a.VNI != b.VNI {
			return cmpU32(uint32(a.VNI), uint32(b.VNI))
		}
		return a.VTEP.Compare(b.VTEP)
	})
	slices.SortFunc(in.FDB, func(a, b FDB) int {
		if a.VNI != b.VNI {
			return cmpU32(uint32(a.VNI), uint32(b.VNI))
		}
		if c := bytes.Compare(a.MAC, b.MAC); c != 0 {
			return c
		}
		return a.VTEP.Compare(b.VTEP)
	})
	slices.SortFunc(in.Flood, func(a, b Flood) int {
		if a.VNI != b.VNI {
			return cmpU32(uint32(a.VNI), uint32(b.VNI))
		}
		return a.VTEP.Compare(b.VTEP)
	})
	slices.SortFunc(in.Neigh, func(a, b Neigh) int {
		if a.VNI != b.VNI {
			return cmpU32(uint32(a.VNI), uint32(b.VNI))
		}
		if c := a.IP.Compare(b.IP); c != 0 {
			return c
		}
		return bytes.Compare(a.MAC, b.MAC)
	})
	return in
}

// Routes lists every route the RIB holds, imported or not, ordered by
// route type, RD and key.
func (r *RIB) Routes() []Route {
	es := make([]*entry, 0, len(r.routes))
	for _, e := range r.routes {
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b *entry) int { return compareKeys(a.key, b.key) })
	routes := make([]Route, len(es))
	for i, e := range es {
		routes[i] = e.route
	}
	return routes
}

// Len is the number of routes the RIB holds.
func (r *RIB) Len() int { return len(r.routes) }

func keyOf(n NLRI) (routeKey, bool) {
	switch n := n.(type) {
	case *MACIP:
		if n == nil || len(n.MAC) != 6 {
			return routeKey{}, false
		}
		return routeKey{typ: TypeMACIP, rd: n.RD, ethTag: n.EthTag, mac: [6]byte(n.MAC), addr: n.IP.WithZone("")}, true
	case *IMET:
		if n == nil {
			return routeKey{}, false
		}
		return routeKey{typ: TypeIMET, rd: n.RD, ethTag: n.EthTag, addr: n.Originator.WithZone("")}, true
	case *Prefix:
		if n == nil || !n.Prefix.IsValid() {
			return routeKey{}, false
		}
		p := n.Prefix.Masked()
		return routeKey{typ: TypePrefix, rd: n.RD, ethTag: n.EthTag, addr: p.Addr(), bits: uint8(p.Bits())}, true
	}
	return routeKey{}, false
}

func compareKeys(a, b routeKey) int {
	if a.typ != b.typ {
		return int(a.typ) - int(b.typ)
	}
	if c := bytes.Compare(a.rd[:], b.rd[:]); c != 0 {
		return c
	}
	if a.ethTag != b.ethTag {
		return cmpU32(a.ethTag, b.ethTag)
	}
	if c := bytes.Compare(a.mac[:], b.mac[:]); c != 0 {
		return c
	}
	if c := a.addr.Compare(b.addr); c != 0 {
		return c
	}
	return int(a.bits) - int(b.bits)
}

// importInto appends to vnis the VNIs that import a route carrying rts,
// by VNI (auto) or by exact RT (byRT), without repeating one of vnis[from:].
func importInto(rts []RT, auto map[VNI]struct{}, byRT map[RT][]VNI, vnis []VNI, from int) []VNI {
	for _, rt := range rts {
		if v := rt.ImportVNI(); !slices.Contains(vnis[from:], v) {
			if _, ok := auto[v]; ok {
				vnis = append(vnis, v)
			}
		}
		for _, v := range byRT[rt] {
			if !slices.Contains(vnis[from:], v) {
				vnis = append(vnis, v)
			}
		}
	}
	return vnis
}

// apply adds e's contributions to the states of its VNIs.
func (r *RIB) apply(e *entry) {
	switch e.key.typ {
	case TypeMACIP:
		if e.hostOnly {
			r.addCand(macKey{vni: e.hostVNI(), mac: e.key.mac, hostOnly: true}, e)
		}
	case TypePrefix:
		pfx := netip.PrefixFrom(e.key.addr, int(e.key.bits))
		for _, vni := range e.l3VNIs() {
			k := pfxKey{vni: vni, pfx: pfx}
			ps := r.pfxs[k]
			if ps == nil {
				ps = &pfxState{key: k}
				r.pfxs[k] = ps
			}
			ps.t5 = append(ps.t5, e)
			r.dirtyPfx(ps)
		}
	}
	for _, vni := range e.segVNIs() {
		switch e.key.typ {
		case TypeMACIP:
			r.addCand(macKey{vni: vni, mac: e.key.mac}, e)
		case TypeIMET:
			k := floodKey{vni: vni, vtep: e.vtep}
			fs := r.floods[k]
			if fs == nil {
				fs = &floodState{key: k}
				r.floods[k] = fs
			}
			fs.refs++
			r.dirtyFlood(fs)
		}
	}
}

func (r *RIB) addCand(k macKey, e *entry) {
	st := r.macs[k]
	if st == nil {
		st = r.newMAC(k)
	}
	st.cands = append(st.cands, e)
	r.dirtyMAC(st)
}

func (r *RIB) delCand(k macKey, e *entry) {
	st := r.macs[k]
	if st == nil {
		return
	}
	if i := slices.Index(st.cands, e); i >= 0 {
		st.cands = slices.Delete(st.cands, i, i+1)
	}
	r.dirtyMAC(st)
}

// unapply takes back what apply added for e.
func (r *RIB) unapply(e *entry) {
	switch e.key.typ {
	case TypeMACIP:
		if e.hostOnly {
			r.delCand(macKey{vni: e.hostVNI(), mac: e.key.mac, hostOnly: true}, e)
		}
	case TypePrefix:
		pfx := netip.PrefixFrom(e.key.addr, int(e.key.bits))
		for _, vni := range e.l3VNIs() {
			ps := r.pfxs[pfxKey{vni: vni, pfx: pfx}]
			if ps == nil {
				continue
			}
			if i := slices.Index(ps.t5, e); i >= 0 {
				ps.t5 = slices.Delete(ps.t5, i, i+1)
			}
			r.dirtyPfx(ps)
		}
	}
	for _, vni := range e.segVNIs() {
		switch e.key.typ {
		case TypeMACIP:
			r.delCand(macKey{vni: vni, mac: e.key.mac}, e)
		case TypeIMET:
			fs := r.floods[floodKey{vni: vni, vtep: e.vtep}]
			if fs == nil {
				continue
			}
			fs.refs--
			r.dirtyFlood(fs)
		}
	}
}

func (r *RIB) newMAC(k macKey) *macState {
	st := &macState{key: k}
	st.hw = net.HardwareAddr(st.key.mac[:])
	r.macs[k] = st
	return st
}

func (r *RIB) dirtyMAC(st *macState) {
	if !st.dirty {
		st.dirty = true
		r.dirtyMACs = append(r.dirtyMACs, st)
	}
}

func (r *RIB) dirtyNeigh(ns *neighState) {
	if !ns.dirty {
		ns.dirty = true
		r.dirtyNeighs = append(r.dirtyNeighs, ns)
	}
}

func (r *RIB) dirtyFlood(fs *floodState) {
	if !fs.dirty {
		fs.dirty = true
		r.dirtyFloods = append(r.dirtyFloods, fs)
	}
}

func (r *RIB) dirtyPfx(ps *pfxState) {
	if !ps.dirty {
		ps.dirty = true
		r.dirtyPfxs = append(r.dirtyPfxs, ps)
	}
}

func (r *RIB) dirtyPfxKey(k pfxKey) {
	if ps := r.pfxs[k]; ps != nil {
		r.dirtyPfx(ps)
	}
}

func (r *RIB) dirtyRMAC(rs *rmacState) {
	if !rs.dirty {
		rs.dirty = true
		r.dirtyRMACs = append(r.dirtyRMACs, rs)
	}
}

// settle brings every touched state to what its contributions ask for and
// returns the change. MACs go first: they decide which neighbors and host
// routes are offered; prefixes then decide which router MACs are used.
func (r *RIB) settle() Diff {
	var d Diff
	for _, st := range r.dirtyMACs {
		r.settleMAC(st, &d)
	}
	clear(r.dirtyMACs)
	r.dirtyMACs = r.dirtyMACs[:0]
	for _, ns := range r.dirtyNeighs {
		r.settleNeigh(ns, &d)
	}
	clear(r.dirtyNeighs)
	r.dirtyNeighs = r.dirtyNeighs[:0]
	for _, fs := range r.dirtyFloods {
		fs.dirty = false
		want := fs.refs > 0
		if want != fs.installed {
			f := Flood{VNI: fs.key.vni, VTEP: fs.key.vtep}
			if want {
				d.Add.Flood = append(d.Add.Flood, f)
			} else {
				d.Del.Flood = append(d.Del.Flood, f)
			}
			fs.installed = want
		}
		if fs.refs == 0 {
			delete(r.floods, fs.key)
		}
	}
	clear(r.dirtyFloods)
	r.dirtyFloods = r.dirtyFloods[:0]
	for _, ps := range r.dirtyPfxs {
		r.settlePfx(ps, &d)
	}
	clear(r.dirtyPfxs)
	r.dirtyPfxs = r.dirtyPfxs[:0]
	for _, rs := range r.dirtyRMACs {
		r.settleRMAC(rs, &d)
	}
	clear(r.dirtyRMACs)
	r.dirtyRMACs = r.dirtyRMACs[:0]
	return d
}

// better reports whether a wins over b for one MAC: the higher sequence
// number (RFC 7432 s15.1), then the lower VTEP address, which every PE
// computes alike.
func better(a, b *entry) bool {
	if a.seq != b.seq {
		return a.seq > b.seq
	}
	return a.vtep.Less(b.vtep)
}

func (r *RIB) settleMAC(st *macState, d *Diff) {
	st.dirty = false
	var best *entry
	for _, e := range st.cands {
		if best == nil || better(e, best) {
			best = e
		}
	}
	if frozen(st) {
		// A duplicate stays where it was frozen while a route from there
		// exists, whatever sequence numbers say.
		for _, e := range st.cands {
			if e.vtep == st.dup.at {
				best = e
			}
		}
	}
	var want netip.Addr
	var wantSeq uint32
	if best != nil {
		want, wantSeq = best.vtep, best.seq
		if st.local {
			if st.localSeq >= best.seq || frozen(st) {
				want, wantSeq = netip.Addr{}, 0
			} else {
				r.superseded = append(r.superseded, LocalMAC{
					VNI: st.key.vni, MAC: st.hw, Seq: st.localSeq,
					RemoteSeq: best.seq, VTEP: best.vtep,
				})
				st.local, st.localSeq = false, 0
			}
		}
	}
	if want != st.fdb {
		if !st.key.hostOnly {
			if st.fdb.IsValid() {
				d.Del.FDB = append(d.Del.FDB, FDB{VNI: st.key.vni, MAC: st.hw, VTEP: st.fdb})
			}
			if want.IsValid() {
				d.Add.FDB = append(d.Add.FDB, FDB{VNI: st.key.vni, MAC: st.hw, VTEP: want})
			}
		}
		st.fdb = want
	}
	if st.winSeq != wantSeq {
		st.winSeq = wantSeq
		// The sequence number ranks this MAC against others claiming the
		// same IPs.
		for _, ip := range st.neighs {
			if ns := r.neighs[ipKey{vni: st.key.vni, ip: ip}]; ns != nil {
				r.dirtyNeigh(ns)
			}
		}
		for _, o := range st.hosts {
			r.dirtyPfxKey(o.key)
		}
	}
	r.settleHostOffers(st)

	// Only routes from the installed VTEP offer neighbors: a stale route
	// from where the MAC was before must not point its IP there.
	want4 := r.scratch[:0]
	if st.fdb.IsValid() && !st.key.hostOnly {
		for _, e := range st.cands {
			if ip := e.key.addr; ip.IsValid() && e.vtep == st.fdb && !slices.Contains(want4, ip) {
				want4 = append(want4, ip)
			}
		}
	}
	r.scratch = want4[:0]
	if !sameSet(want4, st.neighs) {
		for _, ip := range st.neighs {
			if !slices.Contains(want4, ip) {
				r.neighWithdraw(ipKey{vni: st.key.vni, ip: ip}, st)
			}
		}
		for _, ip := range want4 {
			if !slices.Contains(st.neighs, ip) {
				r.neighOffer(ipKey{vni: st.key.vni, ip: ip}, st)
			}
		}
		st.neighs = append(st.neighs[:0:0], want4...)
		if len(st.neighs) == 0 {
			st.neighs = nil
		}
	}

	if at := r.location(st); at.IsValid() {
		if st.lastAt.IsValid() && at != st.lastAt {
			r.noteMove(st, at)
		}
		st.lastAt = at
	}
	if len(st.cands) == 0 && !st.local && !st.fdb.IsValid() && len(st.neighs) == 0 && len(st.hosts) == 0 && !frozen(st) {
		delete(r.macs, st.key)
	}
}

// settleHostOffers offers the host routes of st's winning VTEP to the
// L3s, as the neighbors are offered to the segment: a MAC that is local,
// or that moved away from a VTEP, gives no host route through the loser.
func (r *RIB) settleHostOffers(st *macState) {
	want := r.offerScratch[:0]
	if st.fdb.IsValid() {
		for _, e := range st.cands {
			if e.vtep != st.fdb || int(e.nseg) == len(e.vnis) {
				continue
			}
			pfx := netip.PrefixFrom(e.key.addr, e.key.addr.BitLen())
			for _, vni := range e.l3VNIs() {
				want = append(want, hostOffer{key: pfxKey{vni: vni, pfx: pfx}, st: st, e: e, stamp: e.stamp})
			}
		}
	}
	r.offerScratch = want[:0]
	if len(want) == 0 && len(st.hosts) == 0 {
		return
	}
	if len(want) == len(st.hosts) {
		same := true
		for _, o := range want {
			if !slices.Contains(st.hosts, o) {
				same = false
				break
			}
		}
		if same {
			return
		}
	}
	for _, o := range st.hosts {
		if slices.Contains(want, o) {
			continue
		}
		if ps := r.pfxs[o.key]; ps != nil {
			if i := slices.Index(ps.hosts, o); i >= 0 {
				ps.hosts = slices.Delete(ps.hosts, i, i+1)
			}
			r.dirtyPfx(ps)
		}
	}
	for _, o := range want {
		if slices.Contains(st.hosts, o) {
			continue
		}
		ps := r.pfxs[o.key]
		if ps == nil {
			ps = &pfxState{key: o.key}
			r.pfxs[o.key] = ps
		}
		ps.hosts = append(ps.hosts, o)
		r.dirtyPfx(ps)
	}
	st.hosts = append(st.hosts[:0:0], want...)
	if len(st.hosts) == 0 {
		st.hosts = nil
	}
}

// betterHost ranks the host routes offered for one IP as settleNeigh
// ranks MACs: the highest sequence number (the IP moved there last), then
// the lowest MAC; then, for one MAC seen in several L2VNIs or RDs, the
// lowest L2VNI and the route that arrived last.
func betterHost(a, b hostOffer) bool {
	if a.st.winSeq != b.st.winSeq {
		return a.st.winSeq > b.st.winSeq
	}
	if c := bytes.Compare(a.st.key.mac[:], b.st.key.mac[:]); c != 0 {
		return c < 0
	}
	if a.st.key.vni != b.st.key.vni {
		return a.st.key.vni < b.st.key.vni
	}
	return a.stamp > b.stamp
}

// settlePfx installs the route for one prefix of an L3: the host route of
// the winning MAC when there is one (MAC mobility knows where the host
// is), otherwise every VTEP advertising the prefix by type-5 (ECMP); none
// when the prefix is routed locally.
func (r *RIB) settlePfx(ps *pfxState, d *Diff) {
	ps.dirty = false
	nhs, uses := r.scratch[:0], r.usesScratch[:0]
	if _, local := r.localPfx[ps.key]; !local {
		if len(ps.hosts) > 0 {
			best := ps.hosts[0]
			for _, o := range ps.hosts[1:] {
				if betterHost(o, best) {
					best = o
				}
			}
			nhs = append(nhs, best.e.vtep)
			uses = append(uses, rmacUse{vtep: best.e.vtep, mac: best.e.route.RouterMAC, stamp: best.stamp})
		} else {
			for _, e := range ps.t5 {
				if !slices.Contains(nhs, e.vtep) {
					nhs = append(nhs, e.vtep)
				}
				uses = append(uses, rmacUse{vtep: e.vtep, mac: e.route.RouterMAC, stamp: e.stamp})
			}
			slices.SortFunc(nhs, netip.Addr.Compare)
		}
	}
	r.scratch, r.usesScratch = nhs[:0], uses[:0]
	if !slices.Equal(nhs, ps.nhs) {
		if len(nhs) > 0 {
			ps.nhs = slices.Clone(nhs)
			d.Add.Routes = append(d.Add.Routes, L3Route{VNI: ps.key.vni, Prefix: ps.key.pfx, NextHops: ps.nhs})
		} else {
			d.Del.Routes = append(d.Del.Routes, L3Route{VNI: ps.key.vni, Prefix: ps.key.pfx, NextHops: ps.nhs})
			ps.nhs = nil
		}
	}
	for _, u := range ps.uses {
		if !slices.ContainsFunc(uses, func(v rmacUse) bool { return v.stamp == u.stamp && v.vtep == u.vtep }) {
			r.unuseRMAC(ps.key.vni, u)
		}
	}
	for _, u := range uses {
		if !slices.ContainsFunc(ps.uses, func(v rmacUse) bool { return v.stamp == u.stamp && v.vtep == u.vtep }) {
			r.useRMAC(ps.key.vni, u)
		}
	}
	ps.uses = append(ps.uses[:0], uses...)
	if len(ps.uses) == 0 {
		ps.uses = nil
	}
	if len(ps.t5) == 0 && len(ps.hosts) == 0 && ps.nhs == nil {
		delete(r.pfxs, ps.key)
	}
}

func (r *RIB) useRMAC(vni VNI, u rmacUse) {
	k := rmacKey{vni: vni, vtep: u.vtep}
	rs := r.rmacs[k]
	if rs == nil {
		rs = &rmacState{key: k}
		r.rmacs[k] = rs
	}
	rs.uses = append(rs.uses, u)
	r.dirtyRMAC(rs)
}

func (r *RIB) unuseRMAC(vni VNI, u rmacUse) {
	rs := r.rmacs[rmacKey{vni: vni, vtep: u.vtep}]
	if rs == nil {
		return
	}
	if i := slices.IndexFunc(rs.uses, func(v rmacUse) bool { return v.stamp == u.stamp }); i >= 0 {
		rs.uses = slices.Delete(rs.uses, i, i+1)
	}
	r.dirtyRMAC(rs)
}

// settleRMAC keeps a VTEP's router MAC on an L3VNI while any installed
// route goes through it; when its routes disagree, the MAC of the route
// that arrived last wins (the VTEP changed it and not every route has
// been re-advertised yet).
func (r *RIB) settleRMAC(rs *rmacState, d *Diff) {
	rs.dirty = false
	var want net.HardwareAddr
	var stamp uint64
	for _, u := range rs.uses {
		if want == nil || u.stamp > stamp {
			want, stamp = u.mac, u.stamp
		}
	}
	switch {
	case want == nil && rs.installed != nil:
		d.Del.RMACs = append(d.Del.RMACs, RouterMAC{VNI: rs.key.vni, VTEP: rs.key.vtep, MAC: rs.installed})
	case want != nil && !bytes.Equal(want, rs.installed):
		d.Add.RMACs = append(d.Add.RMACs, RouterMAC{VNI: rs.key.vni, VTEP: rs.key.vtep, MAC: want})
	}
	rs.installed = want
	if len(rs.uses) == 0 {
		delete(r.rmacs, rs.key)
	}
}

func (r *RIB) neighOffer(k ipKey, st *macState) {
	ns := r.neighs[k]
	if ns == nil {
		ns = &neighState{key: k}
		r.neighs[k] = ns
	}
	ns.macs = append(ns.macs, st)
	r.dirtyNeigh(ns)
}

func (r *RIB) neighWithdraw(k ipKey, st *macState) {
	ns := r.neighs[k]
	if ns == nil {
		return
	}
	if i := slices.Index(ns.macs, st); i >= 0 {
		ns.macs = slices.Delete(ns.macs, i, i+1)
	}
	r.dirtyNeigh(ns)
}

// settleNeigh picks, among the MACs claiming an IP, the one with the
// highest sequence number (the IP moved to it last), then the lowest MAC.
func (r *RIB) settleNeigh(ns *neighState, d *Diff) {
	ns.dirty = false
	var best *macState
	for _, st := range ns.macs {
		if best == nil || st.winSeq > best.winSeq ||
			(st.winSeq == best.winSeq && bytes.Compare(st.key.mac[:], best.key.mac[:]) < 0) {
			best = st
		}
	}
	old := ns.installed
	switch {
	case old == nil && best == nil:
	case old != nil && best != nil && old.key.mac == best.key.mac:
	default:
		if old != nil {
			d.Del.Neigh = append(d.Del.Neigh, Neigh{VNI: ns.key.vni, IP: ns.key.ip, MAC: old.hw})
		}
		if best != nil {
			d.Add.Neigh = append(d.Add.Neigh, Neigh{VNI: ns.key.vni, IP: ns.key.ip, MAC: best.hw})
		}
	}
	ns.installed = best
	if best == nil {
		delete(r.neighs, ns.key)
	}
}

// comparePrefix orders prefixes by address, then length.
func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

func sameSet(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func maxU32(a, b uint32) uint32 {
	if a > b {
		return a
	}
	return b
}

func cmpU32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
