package fabric

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/evpnd/evpnd/evpn"
	"github.com/evpnd/evpnd/fabric/kernel"
)

// Route metrics. EVPN routes carry their own metric, so NLM_F_REPLACE can
// only ever replace a route of the same metric (connected IPv4 routes have
// 0, connected IPv6 routes 256): a remote prefix that equals a local
// subnet is added beside the connected route and loses to it. Static
// routes win over EVPN routes of the same prefix.
const (
	evpnMetric   = 20
	staticMetric = 10
)

// The IPv6 address generation mode that gives a device no link-local
// address (IN6_ADDR_GEN_MODE_NONE).
const addrGenModeNone = 1

// setSysctls writes /proc/sys/<key> = value for each pair whose current
// value differs, from a thread inside ns: /proc/sys/net resolves against
// the calling thread's namespace.
func setSysctls(ns netns.NsHandle, kv ...[2]string) error {
	return kernel.InNetns(ns, func() error {
		var errs []error
		for _, e := range kv {
			path := "/proc/sys/" + e[0]
			cur, err := os.ReadFile(path)
			if err != nil {
				errs = append(errs, fmt.Errorf("sysctl %s: %w", e[0], err))
				continue
			}
			if strings.TrimSpace(string(cur)) == e[1] {
				continue
			}
			if err := os.WriteFile(path, []byte(e[1]), 0o644); err != nil {
				errs = append(errs, fmt.Errorf("sysctl %s = %s: %w", e[0], e[1], err))
			}
		}
		return errors.Join(errs...)
	})
}

// forwarding is the namespace-wide IP forwarding a tenant wants: on when it
// is routed, off when it is L2 only.
func forwarding(on bool) [][2]string {
	v := "0"
	if on {
		v = "1"
	}
	return [][2]string{{"net/ipv4/ip_forward", v}, {"net/ipv6/conf/all/forwarding", v}}
}

// prepareGatewayBridge gives a segment bridge with anycast gateways the
// gateway MAC. Its IPv6 link-local address, derived from that MAC, is then
// the same on every host, like the gateway addresses, so DAD is off on the
// bridge; arp_accept lets gratuitous ARP from workloads create neighbors.
// A bridge whose segment drops its gateways keeps the MAC: nothing else
// owns the bridge's address, and changing it would only churn neighbors.
func prepareGatewayBridge(t *tenantNS, br netlink.Link, sc Segment) error {
	if len(sc.Gateways) == 0 {
		return nil
	}
	name := br.Attrs().Name
	if !bytes.Equal(br.Attrs().HardwareAddr, sc.GatewayMAC) {
		if err := t.h.LinkSetHardwareAddr(br, sc.GatewayMAC); err != nil {
			return fmt.Errorf("set %s gateway mac %s: %w", name, sc.GatewayMAC, err)
		}
	}
	return setSysctls(t.ns,
		[2]string{"net/ipv6/conf/" + name + "/accept_dad", "0"},
		[2]string{"net/ipv4/conf/" + name + "/arp_accept", "1"},
	)
}

// ensureGateways makes the addresses evpnd put on the segment bridge equal
// gws. Addresses someone else added are left alone, including one equal
// to a gateway.
func (l *Linux) ensureGateways(ctx context.Context, t *tenantNS, s *segState, gws []netip.Prefix) error {
	addrs, err := kernel.Dump("addresses", t.bw.dumpAddrs)
	if err != nil {
		return err
	}
	have := make(map[netip.Prefix]uint8)
	for _, a := range addrs {
		if a.ifindex == s.brIndex {
			have[a.prefix] = a.proto
		}
	}
	want := make(map[netip.Prefix]bool, len(gws))
	for _, g := range gws {
		want[g] = true
	}
	var ops []op
	for p, proto := range have {
		if proto == addrProto && !want[p] {
			ops = append(ops, op{kind: opAddrDel, ifindex: s.brIndex, vni: s.vni, prefix: p})
		}
	}
	for _, g := range gws {
		if _, ok := have[g]; !ok {
			ops = append(ops, op{kind: opAddrAdd, ifindex: s.brIndex, vni: s.vni, prefix: g})
		}
	}
	return l.writeNow(ctx, t, ops)
}

// writeNow writes ops of Set (not remote entries) and reports every
// refusal.
func (l *Linux) writeNow(ctx context.Context, t *tenantNS, ops []op) error {
	if len(ops) == 0 {
		return nil
	}
	failed, err := l.write(ctx, t, ops)
	errs := []error{err}
	for _, f := range failed {
		errs = append(errs, fmt.Errorf("%s: %w", f.op, f.errno))
	}
	return errors.Join(errs...)
}

// ensureL3 makes a tenant routed as tc.L3 says, or unrouted when it is
// nil: forwarding, the L3VNI bridge and VXLAN device (which pruneTenant
// removes when not kept), and the static routes.
func (l *Linux) ensureL3(ctx context.Context, t *tenantNS, tc Tenant, vtep netip.Addr, mtu int) (*l3State, error) {
	if tc.L3 == nil {
		t.l3vni.Store(0)
		return nil, errors.Join(
			setSysctls(t.ns, forwarding(false)...),
			l.ensureStaticRoutes(ctx, t, nil),
		)
	}
	vni := tc.L3.VNI
	t.l3vni.Store(uint32(vni))
	if err := setSysctls(t.ns, forwarding(true)...); err != nil {
		return nil, fmt.Errorf("l3vni %d: %w", vni, err)
	}
	vx, br, err := l.ensureDevices(t, vni, vtep, mtu, func(br netlink.Link) error {
		// The L3VNI bridge carries routed frames only: the router MAC, no
		// addresses (the routes' next hops are on-link), so no link-local
		// either.
		if br.Attrs().Flags&net.FlagUp == 0 {
			if err := t.h.LinkSetIP6AddrGenMode(br, addrGenModeNone); err != nil {
				return fmt.Errorf("set %s addrgenmode none: %w", br.Attrs().Name, err)
			}
		}
		if !bytes.Equal(br.Attrs().HardwareAddr, tc.L3.RouterMAC) {
			if err := t.h.LinkSetHardwareAddr(br, tc.L3.RouterMAC); err != nil {
				return fmt.Errorf("set %s router mac %s: %w", br.Attrs().Name, tc.L3.RouterMAC, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("l3vni %d: %w", vni, err)
	}
	st := &l3State{tenant: t, vni: vni, vxIndex: vx.Attrs().Index, brIndex: br.Attrs().Index}
	if err := l.ensureStaticRoutes(ctx, t, tc.L3.Routes); err != nil {
		return st, fmt.Errorf("l3vni %d: %w", vni, err)
	}
	return st, nil
}

// ensureStaticRoutes makes the routes tagged staticProto in the tenant's
// main table equal want.
func (l *Linux) ensureStaticRoutes(ctx context.Context, t *tenantNS, want []StaticRoute) error {
	routes, err := kernel.Dump("static routes", func() ([]netlink.Route, error) {
		return t.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN, Protocol: staticProto}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	})
	if err != nil {
		return err
	}
	wanted := make(map[netip.Prefix]netip.Addr, len(want))
	for _, r := range want {
		wanted[r.Prefix.Masked()] = r.Via.Unmap()
	}
	held := make(map[netip.Prefix]bool)
	var ops []op
	for _, r := range routes {
		p := routeDst(r)
		hops := routeHops(r)
		if via, ok := wanted[p]; ok && r.Priority == staticMetric && slices.Equal(hops, []netip.Addr{via}) {
			held[p] = true
			continue
		}
		if _, ok := wanted[p]; ok && r.Priority == staticMetric {
			continue // replaced below
		}
		ops = append(ops, op{kind: opRouteDel, prefix: p, proto: staticProto, metric: uint32(r.Priority)})
	}
	for p, via := range wanted {
		if !held[p] {
			ops = append(ops, op{kind: opRouteAdd, prefix: p, hops: []netip.Addr{via}, proto: staticProto, metric: staticMetric})
		}
	}
	return l.writeNow(ctx, t, ops)
}

// routeDst is a kernel route's destination; the library leaves it nil for
// a default route.
func routeDst(r netlink.Route) netip.Prefix {
	if r.Dst == nil {
		if r.Family == unix.AF_INET6 {
			return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	a, _ := netip.AddrFromSlice(r.Dst.IP)
	bits, _ := r.Dst.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits).Masked()
}

// routeHops are a kernel route's gateways, unmapped (an IPv4-mapped IPv6
// next hop is the IPv4 VTEP) and sorted.
func routeHops(r netlink.Route) []netip.Addr {
	var hops []netip.Addr
	add := func(ip net.IP) {
		if a, ok := netip.AddrFromSlice(ip); ok {
			hops = append(hops, a.Unmap())
		}
	}
	if r.Gw != nil {
		add(r.Gw)
	}
	for _, nh := range r.MultiPath {
		if nh.Gw != nil {
			add(nh.Gw)
		}
	}
	slices.SortFunc(hops, netip.Addr.Compare)
	return hops
}

// routeDevs are the devices of a route's next hops.
func routeDevs(r netlink.Route) []int {
	if len(r.MultiPath) == 0 {
		return []int{r.LinkIndex}
	}
	devs := make([]int, len(r.MultiPath))
	for i, nh := range r.MultiPath {
		devs[i] = nh.LinkIndex
	}
	return devs
}

// l3Gateway is the next hop a route to prefix over vtep is written with.
// An IPv6 prefix over an IPv4 underlay goes via the IPv4-mapped address
// ::ffff:<VTEP>, whose neighbor entry on the L3VNI bridge holds the router
// MAC (RFC 5549 style, as FRR's zebra programs symmetric IRB on Linux).
func l3Gateway(prefix netip.Prefix, vtep netip.Addr) (netip.Addr, error) {
	vtep = vtep.Unmap()
	switch {
	case !vtep.IsValid() || vtep.IsUnspecified():
		return netip.Addr{}, fmt.Errorf("next hop %v is not a vtep address", vtep)
	case prefix.Addr().Is4() && vtep.Is4(), prefix.Addr().Is6() && vtep.Is6():
		return vtep, nil
	case prefix.Addr().Is6():
		return netip.AddrFrom16(vtep.As16()), nil
	}
	return netip.Addr{}, fmt.Errorf("ipv4 prefix %v over ipv6 vtep %v is not supported", prefix, vtep)
}

// rmacNeighbors are the neighbor entries a remote router MAC needs on the
// L3VNI bridge: the VTEP itself, and for an IPv4 VTEP its IPv4-mapped IPv6
// address (the next hop of IPv6 routes).
func rmacNeighbors(vtep netip.Addr) []netip.Addr {
	if vtep.Is4() {
		return []netip.Addr{vtep, netip.AddrFrom16(vtep.As16())}
	}
	return []netip.Addr{vtep}
}

// routeOp is the op installing an EVPN route; hops are VTEPs.
func routeOp(st *l3State, prefix netip.Prefix, vteps []netip.Addr) (op, error) {
	if !prefix.IsValid() {
		return op{}, fmt.Errorf("route l3vni %d: invalid prefix", st.vni)
	}
	prefix = prefix.Masked()
	if len(vteps) == 0 {
		return op{}, fmt.Errorf("route l3vni %d %v: no next hop", st.vni, prefix)
	}
	hops := make([]netip.Addr, 0, len(vteps))
	for _, v := range vteps {
		gw, err := l3Gateway(prefix, v)
		if err != nil {
			return op{}, fmt.Errorf("route l3vni %d %v: %w", st.vni, prefix, err)
		}
		hops = append(hops, gw)
	}
	slices.SortFunc(hops, netip.Addr.Compare)
	hops = slices.Compact(hops)
	return op{kind: opRouteAdd, l3: true, ifindex: st.brIndex, vni: st.vni, prefix: prefix, hops: hops, proto: routeProto, metric: evpnMetric, onlink: true}, nil
}

// unmapSorted is vteps unmapped, sorted and without duplicates: the form
// remoteState keeps.
func unmapSorted(vteps []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, len(vteps))
	for i, v := range vteps {
		out[i] = v.Unmap()
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// planL3Del adds the L3 deletes of d to p: routes before router MACs.
func (l *Linux) planL3Del(p *plan, d evpn.Diff) {
	addRoute := make(map[routeKey]bool, len(d.Add.Routes))
	for _, r := range d.Add.Routes {
		addRoute[routeKey{r.VNI, r.Prefix.Masked()}] = true
	}
	addRMAC := make(map[rmacKey]bool, len(d.Add.RMACs))
	for _, r := range d.Add.RMACs {
		addRMAC[rmacKey{r.VNI, r.VTEP.Unmap()}] = true
	}
	for _, r := range d.Del.Routes {
		st := l.byL3[r.VNI]
		k := routeKey{r.VNI, r.Prefix.Masked()}
		if st == nil || !r.Prefix.IsValid() || addRoute[k] {
			continue
		}
		p.addTo(st.tenant, op{kind: opRouteDel, l3: true, vni: r.VNI, prefix: k.prefix, proto: routeProto, metric: evpnMetric})
	}
	for _, r := range d.Del.RMACs {
		st := l.byL3[r.VNI]
		vtep := r.VTEP.Unmap()
		k := rmacKey{r.VNI, vtep}
		if st == nil || !vtep.IsValid() || addRMAC[k] {
			continue
		}
		mac, ok := mac6(r.MAC)
		cur, known := l.remote.rmac[k]
		switch {
		case !ok && !known:
			continue
		case !ok:
			mac = cur
		}
		p.addTo(st.tenant, op{kind: opFDBDel, l3: true, ifindex: st.vxIndex, vni: r.VNI, mac: slices.Clone(mac[:]), addr: vtep})
		if known && cur != mac {
			// The VTEP's router MAC changed in an earlier change: its
			// neighbors already hold the new one.
			continue
		}
		for _, ip := range rmacNeighbors(vtep) {
			p.addTo(st.tenant, op{kind: opNeighDel, l3: true, ifindex: st.brIndex, vni: r.VNI, addr: ip})
		}
	}
}

// planL3Add adds the L3 adds of d to p: router MACs before routes.
func (l *Linux) planL3Add(p *plan, d evpn.Diff) {
	for _, r := range d.Add.RMACs {
		st := l.byL3[r.VNI]
		if st == nil {
			continue
		}
		mac, ok := mac6(r.MAC)
		vtep := r.VTEP.Unmap()
		if !ok || !vtep.IsValid() || vtep.IsUnspecified() {
			p.errs = append(p.errs, fmt.Errorf("router mac l3vni %d vtep %s mac %s: invalid entry", r.VNI, r.VTEP, r.MAC))
			continue
		}
		if cur, known := l.remote.rmac[rmacKey{r.VNI, vtep}]; known && cur != mac {
			p.addTo(st.tenant, op{kind: opFDBDel, l3: true, ifindex: st.vxIndex, vni: r.VNI, mac: slices.Clone(cur[:]), addr: vtep})
		}
		p.addTo(st.tenant, op{kind: opFDBAdd, l3: true, ifindex: st.vxIndex, vni: r.VNI, mac: slices.Clone(mac[:]), addr: vtep})
		for _, ip := range rmacNeighbors(vtep) {
			p.addTo(st.tenant, op{kind: opNeighAdd, l3: true, ifindex: st.brIndex, vni: r.VNI, mac: slices.Clone(mac[:]), addr: ip})
		}
	}
	for _, r := range d.Add.Routes {
		st := l.byL3[r.VNI]
		if st == nil {
			continue
		}
		o, err := routeOp(st, r.Prefix, r.NextHops)
		if err != nil {
			p.errs = append(p.errs, err)
			continue
		}
		p.addTo(st.tenant, o)
	}
}

// l3View is what one routed tenant namespace holds of evpnd's L3 entries.
type l3View struct {
	bridge map[[6]byte]bool                 // extern_learn entries on the L3VNI vxlan port
	vxlan  map[[6]byte][]netip.Addr         // dst-bearing entries on the L3VNI vxlan device
	neigh  map[netip.Addr][6]byte           // extern_learn neighbors on the L3VNI bridge
	routes map[netip.Prefix][]netlink.Route // routes tagged routeProto
}

// viewL3 dumps the L3 entries of a routed tenant. fdb is the tenant's
// bridge FDB dump, shared with the segment view.
func (l *Linux) viewL3(st *l3State, fdb []netlink.Neigh) (*l3View, error) {
	t := st.tenant
	v := &l3View{
		bridge: make(map[[6]byte]bool),
		vxlan:  make(map[[6]byte][]netip.Addr),
		neigh:  make(map[netip.Addr][6]byte),
		routes: make(map[netip.Prefix][]netlink.Route),
	}
	for _, n := range fdb {
		k, ok := mac6(n.HardwareAddr)
		if !ok || n.LinkIndex != st.vxIndex || k == [6]byte{} {
			continue
		}
		dst, hasDst := netip.AddrFromSlice(n.IP)
		switch {
		case n.MasterIndex != 0 && n.Flags&unix.NTF_EXT_LEARNED != 0:
			v.bridge[k] = true
		case n.MasterIndex == 0 && n.Flags&unix.NTF_SELF != 0 && hasDst:
			v.vxlan[k] = append(v.vxlan[k], dst.Unmap())
		}
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		ns, err := kernel.Dump("neighbors", func() ([]netlink.Neigh, error) { return t.h.NeighList(st.brIndex, fam) })
		if err != nil {
			return nil, err
		}
		for _, n := range ns {
			ip, ok := netip.AddrFromSlice(n.IP)
			mac, macOK := mac6(n.HardwareAddr)
			if n.LinkIndex != st.brIndex || !ok || !macOK || n.Flags&unix.NTF_EXT_LEARNED == 0 {
				continue
			}
			if n.Family == unix.AF_INET {
				ip = ip.Unmap()
			}
			v.neigh[ip] = mac
		}
	}
	routes, err := kernel.Dump("routes", func() ([]netlink.Route, error) {
		return t.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN, Protocol: routeProto}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	})
	if err != nil {
		return nil, err
	}
	for _, r := range routes {
		p := routeDst(r)
		v.routes[p] = append(v.routes[p], r)
	}
	return v, nil
}

// syncL3 plans what makes a routed tenant's L3 entries equal want, and
// records in held the entries already right.
func (l *Linux) syncL3(p *plan, st *l3State, v *l3View, want, held remoteState) {
	t := st.tenant
	wantFDB := make(map[[6]byte]netip.Addr)
	wantNeigh := make(map[netip.Addr][6]byte)
	for k, mac := range want.rmac {
		if k.vni != st.vni {
			continue
		}
		wantFDB[mac] = k.vtep
		for _, ip := range rmacNeighbors(k.vtep) {
			wantNeigh[ip] = mac
		}
	}
	// Stale entries first.
	for p2, rs := range v.routes {
		_, wanted := want.routes[routeKey{st.vni, p2}]
		for _, r := range rs {
			if wanted && r.Priority == evpnMetric {
				continue // replaced below unless already right
			}
			p.addTo(t, op{kind: opRouteDel, l3: true, vni: st.vni, prefix: p2, proto: routeProto, metric: uint32(r.Priority)})
		}
	}
	for mac := range v.bridge {
		if _, ok := wantFDB[mac]; !ok {
			p.addTo(t, op{kind: opFDBDelMaster, l3: true, ifindex: st.vxIndex, vni: st.vni, mac: slices.Clone(mac[:])})
		}
	}
	for mac, dsts := range v.vxlan {
		if _, ok := wantFDB[mac]; ok {
			continue
		}
		for _, dst := range dsts {
			p.addTo(t, op{kind: opFDBDelSelf, l3: true, ifindex: st.vxIndex, vni: st.vni, mac: slices.Clone(mac[:]), addr: dst})
		}
	}
	for ip := range v.neigh {
		if _, ok := wantNeigh[ip]; !ok {
			p.addTo(t, op{kind: opNeighDel, l3: true, ifindex: st.brIndex, vni: st.vni, addr: ip})
		}
	}
	for k, mac := range want.rmac {
		if k.vni != st.vni {
			continue
		}
		right := v.bridge[mac] && slices.Equal(v.vxlan[mac], []netip.Addr{k.vtep})
		if !right {
			p.addTo(t, op{kind: opFDBAdd, l3: true, ifindex: st.vxIndex, vni: st.vni, mac: slices.Clone(mac[:]), addr: k.vtep})
		}
		for _, ip := range rmacNeighbors(k.vtep) {
			if cur, ok := v.neigh[ip]; !ok || cur != mac {
				right = false
				p.addTo(t, op{kind: opNeighAdd, l3: true, ifindex: st.brIndex, vni: st.vni, mac: slices.Clone(mac[:]), addr: ip})
			}
		}
		if right {
			held.rmac[k] = mac
		}
	}
	for k, vteps := range want.routes {
		if k.vni != st.vni {
			continue
		}
		right := false
		for _, r := range v.routes[k.prefix] {
			devOK := !slices.ContainsFunc(routeDevs(r), func(i int) bool { return i != st.brIndex })
			if r.Priority == evpnMetric && devOK && slices.Equal(routeHops(r), vteps) {
				right = true
			}
		}
		if right {
			held.routes[k] = vteps
			continue
		}
		o, err := routeOp(st, k.prefix, vteps)
		if err != nil {
			p.errs = append(p.errs, err)
			continue
		}
		p.addTo(t, o)
	}
}

// wantL3 fills want with the L3 intents of full for configured L3VNIs.
func (l *Linux) wantL3(p *plan, full evpn.Intents, want remoteState) {
	for _, r := range full.RMACs {
		mac, ok := mac6(r.MAC)
		vtep := r.VTEP.Unmap()
		if l.byL3[r.VNI] == nil {
			continue
		}
		if !ok || !vtep.IsValid() || vtep.IsUnspecified() {
			p.errs = append(p.errs, fmt.Errorf("router mac l3vni %d vtep %s mac %s: invalid entry", r.VNI, r.VTEP, r.MAC))
			continue
		}
		want.rmac[rmacKey{r.VNI, vtep}] = mac
	}
	for _, r := range full.Routes {
		st := l.byL3[r.VNI]
		if st == nil {
			continue
		}
		if _, err := routeOp(st, r.Prefix, r.NextHops); err != nil {
			p.errs = append(p.errs, err)
			continue
		}
		want.routes[routeKey{r.VNI, r.Prefix.Masked()}] = unmapSorted(r.NextHops)
	}
}

// Routes lists the main routing table of every tenant namespace.
func (l *Linux) Routes(ctx context.Context) ([]Route, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errors.New("routes: datapath is closed")
	}
	var (
		out  []Route
		errs []error
	)
	for _, t := range l.tenants {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		routes, err := kernel.Dump("routes", func() ([]netlink.Route, error) {
			return t.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		})
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
		for _, r := range routes {
			p := routeDst(r)
			if p.Addr().IsLinkLocalUnicast() || p.Addr().IsMulticast() || r.Type != unix.RTN_UNICAST {
				continue
			}
			row := Route{Tenant: t.name, Prefix: p, NextHops: routeHops(r), Protocol: RouteOther}
			if len(r.MultiPath) == 0 {
				row.Device = names[r.LinkIndex]
			}
			switch {
			case r.Protocol == routeProto:
				row.Protocol = RouteEVPN
			case r.Protocol == staticProto, r.Protocol == uplinkProto:
				row.Protocol = RouteStatic
			case r.Protocol == unix.RTPROT_KERNEL && len(row.NextHops) == 0:
				row.Protocol = RouteConnected
			}
			out = append(out, row)
		}
	}
	slices.SortFunc(out, func(a, b Route) int {
		if c := strings.Compare(a.Tenant, b.Tenant); c != 0 {
			return c
		}
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return a.Prefix.Bits() - b.Prefix.Bits()
	})
	return out, errors.Join(errs...)
}
