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
// target import into segments, MAC mobility across RDs (RFC 7432 s15) and
// reference counting of flood entries, and it reports every change as a
// minimal Diff.
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

	routes map[routeKey]*entry
	macs   map[macKey]*macState
	neighs map[ipKey]*neighState
	floods map[floodKey]*floodState

	// States touched since the last settle; each is settled once, so a
	// batch that removes and re-adds an entry yields no change.
	dirtyMACs   []*macState
	dirtyNeighs []*neighState
	dirtyFloods []*floodState

	superseded []LocalMAC
	skipped    uint64
	scratch    []netip.Addr
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
	vnis  []VNI      // segments the route is imported into
	seq   uint32     // MAC mobility sequence number, 0 when absent
	vtep  netip.Addr // where the FDB or flood entry points
}

type macKey struct {
	vni VNI
	mac [6]byte
}

type macState struct {
	key   macKey
	hw    net.HardwareAddr // handed out in intents; never modified
	cands []*entry         // imported type-2 routes for this MAC

	local    bool
	localSeq uint32

	fdb    netip.Addr   // installed remote VTEP, zero when none
	winSeq uint32       // sequence number of the installed route
	neighs []netip.Addr // IPs this MAC currently offers to neighStates
	dirty  bool
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
	for _, e := range r.routes {
		if e.key.typ != TypeMACIP && e.key.typ != TypeIMET {
			continue
		}
		vnis := r.importVNIs(e.route.RTs, nil)
		if slices.Equal(vnis, e.vnis) {
			continue
		}
		r.unapply(e)
		e.vnis = vnis
		r.apply(e)
	}
	return r.settle()
}

// Segments is the segment set last given to SetSegments.
func (r *RIB) Segments() []Segment { return slices.Clone(r.segs) }

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
		if rt.Withdraw || (rt.NextHop == r.self && r.self.IsValid()) {
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
		if k.typ == TypeMACIP || k.typ == TypeIMET {
			e.vnis = r.importVNIs(rt.RTs, e.vnis)
		}
		r.apply(e)
	}
	return r.settle()
}

// Skipped counts the routes Update ignored as malformed.
func (r *RIB) Skipped() uint64 { return r.skipped }

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
		if st.fdb.IsValid() {
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

// importVNIs lists, without repeats, the VNIs of the segments that import
// a route carrying rts, reusing buf's storage when it has room.
func (r *RIB) importVNIs(rts []RT, buf []VNI) []VNI {
	vnis := buf[:0]
	for _, rt := range rts {
		if v := rt.ImportVNI(); !slices.Contains(vnis, v) {
			if _, ok := r.autoVNI[v]; ok {
				vnis = append(vnis, v)
			}
		}
		for _, v := range r.byRT[rt] {
			if !slices.Contains(vnis, v) {
				vnis = append(vnis, v)
			}
		}
	}
	if len(vnis) == 0 {
		return nil
	}
	return vnis
}

// apply adds e's contributions to the states of its VNIs.
func (r *RIB) apply(e *entry) {
	for _, vni := range e.vnis {
		switch e.key.typ {
		case TypeMACIP:
			k := macKey{vni: vni, mac: e.key.mac}
			st := r.macs[k]
			if st == nil {
				st = r.newMAC(k)
			}
			st.cands = append(st.cands, e)
			r.dirtyMAC(st)
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

// unapply takes back what apply added for e.
func (r *RIB) unapply(e *entry) {
	for _, vni := range e.vnis {
		switch e.key.typ {
		case TypeMACIP:
			st := r.macs[macKey{vni: vni, mac: e.key.mac}]
			if st == nil {
				continue
			}
			if i := slices.Index(st.cands, e); i >= 0 {
				st.cands = slices.Delete(st.cands, i, i+1)
			}
			r.dirtyMAC(st)
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

// settle brings every touched state to what its contributions ask for and
// returns the change. MACs go first: they decide which neighbors are
// offered.
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
	var want netip.Addr
	var wantSeq uint32
	if best != nil {
		want, wantSeq = best.vtep, best.seq
		if st.local {
			if st.localSeq >= best.seq {
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
		if st.fdb.IsValid() {
			d.Del.FDB = append(d.Del.FDB, FDB{VNI: st.key.vni, MAC: st.hw, VTEP: st.fdb})
		}
		if want.IsValid() {
			d.Add.FDB = append(d.Add.FDB, FDB{VNI: st.key.vni, MAC: st.hw, VTEP: want})
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
	}

	// Only routes from the installed VTEP offer neighbors: a stale route
	// from where the MAC was before must not point its IP there.
	want4 := r.scratch[:0]
	if st.fdb.IsValid() {
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

	if len(st.cands) == 0 && !st.local && !st.fdb.IsValid() && len(st.neighs) == 0 {
		delete(r.macs, st.key)
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
