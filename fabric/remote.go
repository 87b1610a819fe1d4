package fabric

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/evpnd/evpnd/evpn"
	"github.com/evpnd/evpnd/fabric/kernel"
)

// maxReportedErrors bounds how many failed writes one batch spells out; a
// burst of 100k failures must not become a 100k-line error.
const maxReportedErrors = 10

func mac6(m net.HardwareAddr) ([6]byte, bool) {
	var k [6]byte
	if len(m) != 6 {
		return k, false
	}
	copy(k[:], m)
	return k, true
}

// forget drops remote state of VNIs that are no longer configured.
func (r *remoteState) forget(byVNI map[evpn.VNI]*segState, byL3 map[evpn.VNI]*l3State) {
	for k := range r.rmac {
		if byL3[k.vni] == nil {
			delete(r.rmac, k)
		}
	}
	for k := range r.routes {
		if byL3[k.vni] == nil {
			delete(r.routes, k)
		}
	}
	for k := range r.fdb {
		if byVNI[k.vni] == nil {
			delete(r.fdb, k)
		}
	}
	for k := range r.flood {
		if byVNI[k.vni] == nil {
			delete(r.flood, k)
		}
	}
	for k := range r.neigh {
		if byVNI[k.vni] == nil {
			delete(r.neigh, k)
		}
	}
}

// apply records a write the kernel accepted.
func (r *remoteState) apply(o op) {
	k, _ := mac6(o.mac)
	if o.l3 {
		r.applyL3(o, k)
		return
	}
	switch o.kind {
	case opFDBAdd:
		r.fdb[macKey{o.vni, k}] = o.addr
	case opFDBDel, opFDBDelSelf:
		if r.fdb[macKey{o.vni, k}] == o.addr {
			delete(r.fdb, macKey{o.vni, k})
		}
	case opFloodAdd:
		r.flood[floodKey{o.vni, o.addr}] = struct{}{}
	case opFloodDel:
		delete(r.flood, floodKey{o.vni, o.addr})
	case opNeighAdd:
		r.neigh[ipKey{o.vni, o.addr}] = k
	case opNeighDel:
		delete(r.neigh, ipKey{o.vni, o.addr})
	}
}

// applyL3 records an L3 write: the router MAC by its FDB entry (its
// neighbors follow it), routes by their VTEPs.
func (r *remoteState) applyL3(o op, mac [6]byte) {
	switch o.kind {
	case opFDBAdd:
		r.rmac[rmacKey{o.vni, o.addr}] = mac
	case opFDBDel, opFDBDelSelf:
		if cur, ok := r.rmac[rmacKey{o.vni, o.addr}]; ok && cur == mac {
			delete(r.rmac, rmacKey{o.vni, o.addr})
		}
	case opRouteAdd:
		r.routes[routeKey{o.vni, o.prefix}] = unmapSorted(o.hops)
	case opRouteDel:
		delete(r.routes, routeKey{o.vni, o.prefix})
	}
}

// plan collects the ops of one change, per tenant namespace.
type plan struct {
	ops  map[*tenantNS][]op
	errs []error
}

func (p *plan) add(s *segState, o op) { p.addTo(s.tenant, o) }

func (p *plan) addTo(t *tenantNS, o op) {
	if p.ops == nil {
		p.ops = make(map[*tenantNS][]op)
	}
	p.ops[t] = append(p.ops[t], o)
}

// Update applies d to the remote entries: deletes first, then adds, one
// pipelined batch per tenant namespace.
func (l *Linux) Update(ctx context.Context, d evpn.Diff) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("update: datapath is closed")
	}
	var p plan
	addFDB := make(map[macKey]bool, len(d.Add.FDB))
	for _, f := range d.Add.FDB {
		if k, ok := mac6(f.MAC); ok {
			addFDB[macKey{f.VNI, k}] = true
		}
	}
	addNeigh := make(map[ipKey]bool, len(d.Add.Neigh))
	for _, n := range d.Add.Neigh {
		addNeigh[ipKey{n.VNI, n.IP.Unmap()}] = true
	}
	for _, f := range d.Del.FDB {
		s := l.byVNI[f.VNI]
		k, ok := mac6(f.MAC)
		if s == nil || !ok || addFDB[macKey{f.VNI, k}] {
			continue
		}
		// The MAC moved to another VTEP in an earlier change; deleting
		// now would remove the new location.
		if cur, ok := l.remote.fdb[macKey{f.VNI, k}]; ok && cur != f.VTEP.Unmap() {
			continue
		}
		p.add(s, op{kind: opFDBDel, ifindex: s.vxIndex, vni: f.VNI, mac: f.MAC, addr: f.VTEP.Unmap()})
	}
	for _, f := range d.Del.Flood {
		if s := l.byVNI[f.VNI]; s != nil && f.VTEP.IsValid() {
			p.add(s, op{kind: opFloodDel, ifindex: s.vxIndex, vni: f.VNI, addr: f.VTEP.Unmap()})
		}
	}
	for _, n := range d.Del.Neigh {
		s := l.byVNI[n.VNI]
		ip := n.IP.Unmap()
		if s == nil || !ip.IsValid() || addNeigh[ipKey{n.VNI, ip}] {
			continue
		}
		if k, ok := mac6(n.MAC); ok {
			if cur, known := l.remote.neigh[ipKey{n.VNI, ip}]; known && cur != k {
				continue
			}
		}
		p.add(s, op{kind: opNeighDel, ifindex: s.brIndex, vni: n.VNI, addr: ip})
	}
	l.planL3Del(&p, d)
	for _, f := range d.Add.FDB {
		s := l.byVNI[f.VNI]
		if s == nil {
			continue
		}
		if len(f.MAC) != 6 || !f.VTEP.IsValid() {
			p.errs = append(p.errs, fmt.Errorf("fdb vni %d mac %s vtep %s: invalid entry", f.VNI, f.MAC, f.VTEP))
			continue
		}
		p.add(s, op{kind: opFDBAdd, ifindex: s.vxIndex, vni: f.VNI, mac: f.MAC, addr: f.VTEP.Unmap()})
	}
	for _, f := range d.Add.Flood {
		s := l.byVNI[f.VNI]
		if s == nil {
			continue
		}
		if !f.VTEP.IsValid() {
			p.errs = append(p.errs, fmt.Errorf("flood vni %d: invalid vtep", f.VNI))
			continue
		}
		p.add(s, op{kind: opFloodAdd, ifindex: s.vxIndex, vni: f.VNI, addr: f.VTEP.Unmap()})
	}
	for _, n := range d.Add.Neigh {
		s := l.byVNI[n.VNI]
		if s == nil {
			continue
		}
		if len(n.MAC) != 6 || !n.IP.IsValid() {
			p.errs = append(p.errs, fmt.Errorf("neighbor vni %d ip %s mac %s: invalid entry", n.VNI, n.IP, n.MAC))
			continue
		}
		p.add(s, op{kind: opNeighAdd, ifindex: s.brIndex, vni: n.VNI, mac: n.MAC, addr: n.IP.Unmap()})
	}
	l.planL3Add(&p, d)
	return l.run(ctx, &p)
}

// run writes a plan, namespace by namespace, and records what the kernel
// accepted.
func (l *Linux) run(ctx context.Context, p *plan) error {
	start := time.Now()
	errs := p.errs
	for t, ops := range p.ops {
		failed, err := l.write(ctx, t, ops)
		bad := make(map[int]bool, len(failed))
		for i, f := range failed {
			bad[f.index] = true
			if i < maxReportedErrors {
				errs = append(errs, fmt.Errorf("tenant %q: %s: %w", t.name, f.op, f.errno))
			}
		}
		if len(failed) > maxReportedErrors {
			errs = append(errs, fmt.Errorf("tenant %q: %d more writes failed", t.name, len(failed)-maxReportedErrors))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("tenant %q: %w", t.name, err))
		}
		for i, o := range ops {
			if !bad[i] {
				l.remote.apply(o)
			}
		}
	}
	l.lastBatch.Store(int64(time.Since(start)))
	return errors.Join(errs...)
}

// write sends one namespace's ops. A combined FDB delete (bridge and
// vxlan entry in one message) is what keeps a 100k withdrawal at one
// message per MAC, but the kernel stops at the bridge when the bridge
// entry is already gone; those get a second, vxlan-only delete.
func (l *Linux) write(ctx context.Context, t *tenantNS, ops []op) ([]opError, error) {
	held := t.local.held(ops)
	failed, missing, err := t.bw.write(ctx, ops)
	l.batches.Add(1)
	l.writes.Add(uint64(len(ops)))
	var (
		again []op
		index []int
	)
	for _, i := range missing {
		if o := ops[i]; o.kind == opFDBDel {
			o.kind = opFDBDelSelf
			again = append(again, o)
			index = append(index, i)
		}
	}
	if len(again) > 0 && err == nil {
		var more []opError
		more, _, err = t.bw.write(ctx, again)
		l.batches.Add(1)
		l.writes.Add(uint64(len(again)))
		for _, f := range more {
			f.index = index[f.index]
			failed = append(failed, f)
		}
	}
	l.writeErrors.Add(uint64(len(failed)))
	t.local.written(ops, failed, held)
	return failed, err
}

// kernelView is what one tenant namespace holds of evpnd's remote entries.
type kernelView struct {
	bridge map[macKey]bool            // extern_learn entries on vxlan ports
	vxlan  map[macKey][]netip.Addr    // dst-bearing vxlan entries
	flood  map[floodKey]bool          // all-zero vxlan entries
	neigh  map[ipKey]net.HardwareAddr // extern_learn neighbors on bridges
	local  map[int][]netlink.Neigh    // other bridge entries, by bridge index
	brVNI  map[int]evpn.VNI           // bridge ifindex -> VNI
	vxVNI  map[int]evpn.VNI           // vxlan ifindex -> VNI
	fdb    []netlink.Neigh            // the whole bridge FDB dump
}

// view dumps the remote entries of t's configured segments.
func (l *Linux) view(t *tenantNS) (*kernelView, error) {
	br, vx := l.segIndexes(t)
	return dumpView(handleList(t.h), br, vx)
}

// segIndexes maps t's segments' bridge and vxlan ifindexes to their VNIs.
func (l *Linux) segIndexes(t *tenantNS) (brVNI, vxVNI map[int]evpn.VNI) {
	brVNI, vxVNI = make(map[int]evpn.VNI), make(map[int]evpn.VNI)
	for vni, s := range l.byVNI {
		if s.tenant == t {
			brVNI[s.brIndex] = vni
			vxVNI[s.vxIndex] = vni
		}
	}
	return brVNI, vxVNI
}

// dumpView dumps, through list, the remote entries of the segments whose
// bridge and vxlan ifindexes brVNI and vxVNI map to their VNIs.
func dumpView(list listNeigh, brVNI, vxVNI map[int]evpn.VNI) (*kernelView, error) {
	v := &kernelView{
		bridge: make(map[macKey]bool),
		vxlan:  make(map[macKey][]netip.Addr),
		flood:  make(map[floodKey]bool),
		neigh:  make(map[ipKey]net.HardwareAddr),
		local:  make(map[int][]netlink.Neigh),
		brVNI:  brVNI,
		vxVNI:  vxVNI,
	}
	fdb, err := kernel.Dump("bridge fdb", func() ([]netlink.Neigh, error) { return list(unix.AF_BRIDGE) })
	if err != nil {
		return nil, err
	}
	v.fdb = fdb
	for _, n := range fdb {
		k, ok := mac6(n.HardwareAddr)
		if !ok {
			continue
		}
		if vni, isVX := v.vxVNI[n.LinkIndex]; isVX {
			dst, hasDst := netip.AddrFromSlice(n.IP)
			switch {
			case n.MasterIndex != 0 && n.Flags&unix.NTF_EXT_LEARNED != 0:
				v.bridge[macKey{vni, k}] = true
			case n.MasterIndex == 0 && n.Flags&unix.NTF_SELF != 0 && hasDst:
				if k == [6]byte{} {
					v.flood[floodKey{vni, dst.Unmap()}] = true
				} else {
					v.vxlan[macKey{vni, k}] = append(v.vxlan[macKey{vni, k}], dst.Unmap())
				}
			}
			continue
		}
		if _, isBR := v.brVNI[n.MasterIndex]; isBR && n.Flags&unix.NTF_SELF == 0 {
			v.local[n.MasterIndex] = append(v.local[n.MasterIndex], n)
		}
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		ns, err := kernel.Dump("neighbors", func() ([]netlink.Neigh, error) { return list(fam) })
		if err != nil {
			return nil, err
		}
		for _, n := range ns {
			vni, ok := v.brVNI[n.LinkIndex]
			ip, ipOK := netip.AddrFromSlice(n.IP)
			if !ok || !ipOK || n.Flags&unix.NTF_EXT_LEARNED == 0 {
				continue
			}
			v.neigh[ipKey{vni, ip.Unmap()}] = n.HardwareAddr
		}
	}
	return v, nil
}

// Sync makes the remote entries equal to full. See Datapath.
func (l *Linux) Sync(ctx context.Context, full evpn.Intents) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("sync: datapath is closed")
	}
	return l.sync(ctx, full, l.view)
}

// Snapshot is the remote entries the kernel held in every tenant
// namespace, dumped without holding the datapath. See Datapath.
type Snapshot struct {
	gen   uint64
	views map[*tenantNS]*kernelView
	took  time.Duration
}

// Took is how long the dumps took.
func (s *Snapshot) Took() time.Duration { return s.took }

// Snapshot dumps every tenant's remote entries on sockets of its own, so
// Update and the other methods go on meanwhile: a full FDB dump costs the
// kernel time quadratic in the table (seconds at 100k entries). The end of
// ctx stops a dump midway (the error is then its cause). See Datapath.
func (l *Linux) Snapshot(ctx context.Context) (*Snapshot, error) {
	type job struct {
		t            *tenantNS
		ns           netns.NsHandle
		brVNI, vxVNI map[int]evpn.VNI
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errors.New("snapshot: datapath is closed")
	}
	snap := &Snapshot{gen: l.gen, views: make(map[*tenantNS]*kernelView, len(l.tenants))}
	jobs := make([]job, 0, len(l.tenants))
	var errs []error
	for _, t := range l.tenants {
		// A namespace handle of the snapshot's own: Set may close the
		// tenant's while the dump runs.
		fd, err := unix.Dup(int(t.ns))
		if err != nil {
			errs = append(errs, fmt.Errorf("tenant %q: namespace: %w", t.name, err))
			continue
		}
		br, vx := l.segIndexes(t)
		jobs = append(jobs, job{t: t, ns: netns.NsHandle(fd), brVNI: br, vxVNI: vx})
	}
	l.mu.Unlock()
	start := time.Now()
	for _, j := range jobs {
		err := func() error {
			defer j.ns.Close()
			list, done, err := listAt(ctx, j.ns)
			if err != nil {
				return err
			}
			defer done()
			v, err := dumpView(list, j.brVNI, j.vxVNI)
			if err != nil {
				return err
			}
			snap.views[j.t] = v
			return nil
		}()
		if err != nil {
			errs = append(errs, fmt.Errorf("tenant %q: %w", j.t.name, err))
		}
	}
	snap.took = time.Since(start)
	return snap, errors.Join(errs...)
}

// Adopted reports whether Set found a tenant namespace already there. See
// Datapath.
func (l *Linux) Adopted() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.adopted
}

// ErrStaleSnapshot says the tenants or segments changed after the
// snapshot was taken; take another.
var ErrStaleSnapshot = errors.New("snapshot taken before the last Set")

// SyncWith is Sync against snap instead of fresh dumps. See Datapath.
func (l *Linux) SyncWith(ctx context.Context, full evpn.Intents, snap *Snapshot) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("sync: datapath is closed")
	}
	if snap.gen != l.gen {
		return ErrStaleSnapshot
	}
	return l.sync(ctx, full, func(t *tenantNS) (*kernelView, error) {
		if v := snap.views[t]; v != nil {
			return v, nil
		}
		return l.view(t)
	})
}

// sync is Sync with the kernel's entries of each tenant from viewOf.
// Entries written by Update since a snapshot viewOf returns only cause
// redundant writes: every operation planned here moves an entry toward
// full, which is the intent at the time of the call.
func (l *Linux) sync(ctx context.Context, full evpn.Intents, viewOf func(*tenantNS) (*kernelView, error)) error {
	want := newRemoteState()
	var p plan
	for _, f := range full.FDB {
		k, ok := mac6(f.MAC)
		if l.byVNI[f.VNI] == nil {
			continue
		}
		if !ok || !f.VTEP.IsValid() {
			p.errs = append(p.errs, fmt.Errorf("fdb vni %d mac %s vtep %s: invalid entry", f.VNI, f.MAC, f.VTEP))
			continue
		}
		want.fdb[macKey{f.VNI, k}] = f.VTEP.Unmap()
	}
	for _, f := range full.Flood {
		if l.byVNI[f.VNI] != nil && f.VTEP.IsValid() {
			want.flood[floodKey{f.VNI, f.VTEP.Unmap()}] = struct{}{}
		}
	}
	for _, n := range full.Neigh {
		k, ok := mac6(n.MAC)
		if l.byVNI[n.VNI] != nil && ok && n.IP.IsValid() {
			want.neigh[ipKey{n.VNI, n.IP.Unmap()}] = k
		}
	}
	l.wantL3(&p, full, want)
	// L3 entries already right in the kernel; syncL3 fills it.
	heldL3 := newRemoteState()
	for _, t := range l.tenants {
		v, err := viewOf(t)
		if err != nil {
			p.errs = append(p.errs, fmt.Errorf("tenant %q: %w", t.name, err))
			continue
		}
		for _, st := range l.byL3 {
			if st.tenant != t {
				continue
			}
			lv, err := l.viewL3(st, v.fdb)
			if err != nil {
				p.errs = append(p.errs, fmt.Errorf("tenant %q: l3vni %d: %w", t.name, st.vni, err))
				continue
			}
			l.syncL3(&p, st, lv, want, heldL3)
		}
		seg := func(vni evpn.VNI) *segState { return l.byVNI[vni] }
		// Stale entries first, so a moved MAC is never briefly doubled.
		for k := range v.bridge {
			if _, ok := want.fdb[k]; !ok {
				s := seg(k.vni)
				p.add(s, op{kind: opFDBDelMaster, ifindex: s.vxIndex, vni: k.vni, mac: net.HardwareAddr(k.mac[:])})
			}
		}
		for k, dsts := range v.vxlan {
			if _, ok := want.fdb[k]; ok {
				continue // the add below replaces a wrong destination
			}
			s := seg(k.vni)
			for _, dst := range dsts {
				p.add(s, op{kind: opFDBDelSelf, ifindex: s.vxIndex, vni: k.vni, mac: net.HardwareAddr(k.mac[:]), addr: dst})
			}
		}
		for k := range v.flood {
			if _, ok := want.flood[k]; !ok {
				s := seg(k.vni)
				p.add(s, op{kind: opFloodDel, ifindex: s.vxIndex, vni: k.vni, addr: k.vtep})
			}
		}
		for k := range v.neigh {
			if _, ok := want.neigh[k]; !ok {
				s := seg(k.vni)
				p.add(s, op{kind: opNeighDel, ifindex: s.brIndex, vni: k.vni, addr: k.ip})
			}
		}
		for k, vtep := range want.fdb {
			s := seg(k.vni)
			if s.tenant != t {
				continue
			}
			if v.bridge[k] && slices.Equal(v.vxlan[k], []netip.Addr{vtep}) {
				continue
			}
			p.add(s, op{kind: opFDBAdd, ifindex: s.vxIndex, vni: k.vni, mac: net.HardwareAddr(k.mac[:]), addr: vtep})
		}
		for k := range want.flood {
			if s := seg(k.vni); s.tenant == t && !v.flood[k] {
				p.add(s, op{kind: opFloodAdd, ifindex: s.vxIndex, vni: k.vni, addr: k.vtep})
			}
		}
		for k, mac := range want.neigh {
			if s := seg(k.vni); s.tenant == t && string(v.neigh[k]) != string(mac[:]) {
				p.add(s, op{kind: opNeighAdd, ifindex: s.brIndex, vni: k.vni, mac: net.HardwareAddr(mac[:]), addr: k.ip})
			}
		}
	}
	// Entries already right in the kernel are held; run() adds the writes
	// the kernel accepts on top.
	held := newRemoteState()
	for k, v := range want.fdb {
		held.fdb[k] = v
	}
	for k := range want.flood {
		held.flood[k] = struct{}{}
	}
	for k, v := range want.neigh {
		held.neigh[k] = v
	}
	held.rmac, held.routes = heldL3.rmac, heldL3.routes
	for _, ops := range p.ops {
		for _, o := range ops {
			k, _ := mac6(o.mac)
			switch o.kind {
			case opFDBAdd:
				delete(held.fdb, macKey{o.vni, k})
			case opFloodAdd:
				delete(held.flood, floodKey{o.vni, o.addr})
			case opNeighAdd:
				delete(held.neigh, ipKey{o.vni, o.addr})
			}
		}
	}
	l.remote = held
	return l.run(ctx, &p)
}

// MACs lists the MAC tables of all segments.
func (l *Linux) MACs(ctx context.Context) ([]MAC, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errors.New("macs: datapath is closed")
	}
	var (
		out  []MAC
		errs []error
	)
	for _, t := range l.tenants {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		v, err := l.view(t)
		if err != nil {
			errs = append(errs, fmt.Errorf("tenant %q: %w", t.name, err))
			continue
		}
		names := make(map[int]string)
		if links, err := kernel.Dump("links", t.h.LinkList); err == nil {
			for _, link := range links {
				names[link.Attrs().Index] = link.Attrs().Name
			}
		}
		listed := make(map[macKey]bool)
		for vxIndex, vni := range v.vxVNI {
			for k, dsts := range v.vxlan {
				if k.vni != vni {
					continue
				}
				listed[k] = true
				out = append(out, MAC{Tenant: t.name, VNI: vni, MAC: net.HardwareAddr(slices.Clone(k.mac[:])), Port: names[vxIndex], VTEP: dsts[0], Remote: true})
			}
			for k := range v.bridge {
				if k.vni == vni && !listed[k] {
					listed[k] = true
					out = append(out, MAC{Tenant: t.name, VNI: vni, MAC: net.HardwareAddr(slices.Clone(k.mac[:])), Port: names[vxIndex], Remote: true})
				}
			}
		}
		for brIndex, entries := range v.local {
			vni := v.brVNI[brIndex]
			for _, n := range entries {
				if n.State&unix.NUD_PERMANENT != 0 || n.LinkIndex == brIndex {
					continue
				}
				out = append(out, MAC{Tenant: t.name, VNI: vni, MAC: n.HardwareAddr, Port: names[n.LinkIndex]})
			}
		}
	}
	slices.SortFunc(out, func(a, b MAC) int {
		if c := strings.Compare(a.Tenant, b.Tenant); c != 0 {
			return c
		}
		if a.VNI != b.VNI {
			return int(a.VNI) - int(b.VNI)
		}
		return strings.Compare(string(a.MAC), string(b.MAC))
	})
	return out, errors.Join(errs...)
}
