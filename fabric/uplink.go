package fabric

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/evpnd/evpnd/fabric/kernel"
)

// The uplink's device names: "uplink" in the tenant namespace, and for a
// veth pair "evu" + 8 hex digits of a hash of the namespace name in
// evpnd's own (11 characters, inside IFNAMSIZ). The hash is of the
// namespace name, not the tenant name, so two evpnd instances with
// different prefixes on one host do not collide.
const (
	uplinkName       = "uplink"
	uplinkPeerPrefix = "evu"
)

// uplinkAlias marks an interface evpnd moved into a tenant and records its
// original name (IFLA_IFALIAS survives the move and the rename, and a
// restart of evpnd), so removal can move it back under that name.
const uplinkAlias = "evpnd uplink, was "

// Uplink routes. The tenant's default route carries its own tag, 0xe7:
// Sync prunes every 0xe5 route of a tenant that EVPN does not hold, and
// Set every 0xe6 route the config does not name, so neither may own it.
//
// Its metric is 15, between the static (10) and EVPN (20) metrics. A
// default route the tenant configures as a static route wins over the
// uplink; the uplink wins over a default route learned over EVPN (a
// border leaf's type-5 0/0), because the tenant's NAT happens on this
// uplink: egress leaving over EVPN would skip the tenant's SNAT and the
// return path of its floating IPs. Every more specific route, whatever
// its metric, still wins by prefix length.
//
// The host routes of public addresses in evpnd's namespace carry the EVPN
// tag 0xe5 (nothing else of evpnd routes there); Set prunes only 0xe5
// host routes over an evu device.
const (
	uplinkProto  = 0xe7
	uplinkMetric = 15
	publicProto  = routeProto
)

// The default uplink link: the tenant at .1, evpnd's side at .2. Every
// tenant's veth carries the same addresses: the routes name the device.
var defaultUplinkAddress = netip.MustParsePrefix("169.254.0.1/30")

// IPv6 over an IPv4 uplink: the kernel has no IPv4 gateway for IPv6
// routes (RTA_VIA is IPv4-only), so a veth uplink also carries fixed
// link-local addresses, and IPv6 public addresses and the tenant's IPv6
// default route go via them.
var (
	uplinkLinkLocal = netip.MustParsePrefix("fe80::1/64") // tenant side
	peerLinkLocal   = netip.MustParsePrefix("fe80::2/64") // evpnd's side
)

// uplinkPeerName is evpnd's end of a tenant's veth uplink.
func uplinkPeerName(nsName string) string {
	h := fnv.New32a()
	h.Write([]byte(nsName))
	return fmt.Sprintf("%s%08x", uplinkPeerPrefix, h.Sum32())
}

// isUplinkPeerName reports whether name is one uplinkPeerName makes.
func isUplinkPeerName(name string) bool {
	s, ok := strings.CutPrefix(name, uplinkPeerPrefix)
	if !ok || len(s) != 8 {
		return false
	}
	return strings.Trim(s, "0123456789abcdef") == ""
}

// uplinkSpec is an Uplink with its defaults filled in.
type uplinkSpec struct {
	iface   string
	addr    netip.Prefix // the tenant side
	gateway netip.Addr
	public  []netip.Addr
}

func specOf(u *Uplink) uplinkSpec {
	s := uplinkSpec{iface: u.Interface, addr: u.Address, gateway: u.Gateway.Unmap()}
	if !s.addr.IsValid() {
		s.addr = defaultUplinkAddress
	}
	s.addr = netip.PrefixFrom(s.addr.Addr().Unmap(), s.addr.Bits())
	if !s.gateway.IsValid() {
		s.gateway = otherHost(s.addr)
	}
	for _, p := range u.Public {
		s.public = append(s.public, p.Unmap())
	}
	slices.SortFunc(s.public, netip.Addr.Compare)
	s.public = slices.Compact(s.public)
	return s
}

// veth reports whether the uplink is a veth pair evpnd makes.
func (s uplinkSpec) veth() bool { return s.iface == "" }

// wants6 reports whether the tenant needs an IPv6 default route: on an
// IPv6 link, or on a veth whose public addresses include IPv6 ones.
func (s uplinkSpec) wants6() bool {
	return s.addr.Addr().Is6() || (s.veth() && slices.ContainsFunc(s.public, netip.Addr.Is6))
}

// otherHost is the first host address of p's subnet that is not p's own:
// the network address counts as a host only in a /31 or /127.
func otherHost(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr()
	if p.Bits() < a.BitLen()-1 {
		a = a.Next()
	}
	if a == p.Addr() {
		a = a.Next()
	}
	return a
}

// validateUplink checks a tenant's uplink; public collects the public
// addresses of every tenant, which must not overlap (each is one host
// route in evpnd's namespace).
func validateUplink(field string, tc Tenant, ports map[string]string, public map[netip.Addr]string) []error {
	var errs []error
	// The name is what marks a tenant's uplink, with or without one.
	for j, sc := range tc.Segments {
		for k, p := range sc.Ports {
			if p == uplinkName {
				errs = append(errs, fmt.Errorf("%s.segments[%d].ports[%d]: %q is the name of a tenant's uplink", strings.TrimSuffix(field, ".uplink"), j, k, p))
			}
		}
	}
	u := tc.Uplink
	if u == nil {
		return errs
	}
	if tc.L3 == nil {
		errs = append(errs, fmt.Errorf("%s: an uplink needs a routed tenant (l3): workloads reach it through their anycast gateway", field))
	}
	if u.Interface != "" {
		switch {
		case len(u.Interface) > unix.IFNAMSIZ-1 || strings.ContainsAny(u.Interface, "/ "):
			errs = append(errs, fmt.Errorf("%s.interface: %q is not a valid interface name", field, u.Interface))
		case u.Interface == "lo" || isUplinkPeerName(u.Interface):
			errs = append(errs, fmt.Errorf("%s.interface: %q is not an interface evpnd may move", field, u.Interface))
		}
		if other, dup := ports[u.Interface]; dup {
			errs = append(errs, fmt.Errorf("%s.interface: %q is also %s", field, u.Interface, other))
		}
		ports[u.Interface] = field + ".interface"
	}
	s := specOf(u)
	a := s.addr.Addr()
	switch {
	case u.Address.IsValid() && (a.IsUnspecified() || a.IsMulticast() || a.IsLoopback()):
		errs = append(errs, fmt.Errorf("%s.address: %v is not a usable address", field, u.Address))
	case s.addr.Bits() >= a.BitLen():
		errs = append(errs, fmt.Errorf("%s.address: %v leaves no room for a gateway", field, u.Address))
	case s.gateway.Is4() != a.Is4() || s.gateway == a:
		errs = append(errs, fmt.Errorf("%s.gateway: %v is not a next hop of the family of %v", field, u.Gateway, s.addr))
	case s.veth() && !s.addr.Contains(s.gateway):
		errs = append(errs, fmt.Errorf("%s.gateway: %v is evpnd's side of the veth and must be in %v", field, s.gateway, s.addr))
	}
	for k, p := range u.Public {
		pf := fmt.Sprintf("%s.public[%d]", field, k)
		p = p.Unmap()
		if !p.IsValid() || p.IsUnspecified() || p.IsMulticast() || p.IsLoopback() || p.IsLinkLocalUnicast() {
			errs = append(errs, fmt.Errorf("%s: %v is not a usable public address", pf, p))
			continue
		}
		if other, dup := public[p]; dup {
			errs = append(errs, fmt.Errorf("%s: %v is also %s", pf, p, other))
		}
		public[p] = pf
	}
	return errs
}

// uplinkRoutes is what the uplinks of all tenants want in evpnd's
// namespace.
type uplinkRoutes struct {
	public map[netip.Prefix]publicRoute
	veth   bool // some tenant has a veth uplink: IPv4 forwarding on
	veth6  bool // some veth uplink has IPv6 public addresses
}

// publicRoute is the host route of one public address.
type publicRoute struct {
	ifindex int        // the evu device
	via     netip.Addr // the tenant side
}

func newUplinkRoutes() *uplinkRoutes {
	return &uplinkRoutes{public: make(map[netip.Prefix]publicRoute)}
}

// findUplink is the tenant's uplink device: "uplink", or an interface
// evpnd moved in and had not renamed yet when it stopped.
func findUplink(t *tenantNS) (netlink.Link, error) {
	links, err := kernel.Dump("links", t.h.LinkList)
	if err != nil {
		return nil, err
	}
	var moved netlink.Link
	for _, link := range links {
		if link.Attrs().Name == uplinkName {
			return link, nil
		}
		if _, ok := movedFrom(link); ok {
			moved = link
		}
	}
	return moved, nil
}

// movedFrom is the original name of an interface evpnd moved in.
func movedFrom(link netlink.Link) (string, bool) {
	name, ok := strings.CutPrefix(link.Attrs().Alias, uplinkAlias)
	return name, ok && name != ""
}

// isUplink reports whether a device of a tenant namespace is its uplink.
func isUplink(link netlink.Link) bool {
	_, moved := movedFrom(link)
	return moved || link.Attrs().Name == uplinkName
}

// ensureUplink makes the tenant's uplink match u (nil: none) and records
// in want the routes it needs in evpnd's namespace.
func (l *Linux) ensureUplink(ctx context.Context, t *tenantNS, u *Uplink, want *uplinkRoutes) error {
	cur, err := findUplink(t)
	if err != nil {
		return fmt.Errorf("uplink: %w", err)
	}
	if u == nil {
		if cur == nil {
			return nil
		}
		return l.removeUplink(t, cur)
	}
	s := specOf(u)
	var peer netlink.Link
	if cur != nil {
		orig, moved := movedFrom(cur)
		keep := !s.veth() && moved && orig == s.iface
		if s.veth() && !moved && cur.Type() == "veth" {
			if peer, err = l.vethPeer(t, cur); err != nil {
				return fmt.Errorf("uplink: %w", err)
			}
			keep = peer != nil
		}
		if !keep {
			l.log.Info("replacing tenant uplink that does not match config", "tenant", t.name, "device", cur.Attrs().Name)
			if err := l.removeUplink(t, cur); err != nil {
				return err
			}
			cur = nil
		}
	}
	if cur == nil {
		if s.veth() {
			cur, peer, err = l.createVeth(t)
		} else {
			cur, err = l.moveInterface(t, s.iface)
		}
		if err != nil {
			return fmt.Errorf("uplink: %w", err)
		}
	}
	if cur.Attrs().Name != uplinkName {
		// A moved interface evpnd stopped before renaming; it is in the
		// tenant namespace, so it is down.
		if err := t.h.LinkSetName(cur, uplinkName); err != nil {
			return fmt.Errorf("uplink: rename %s to %s: %w", cur.Attrs().Name, uplinkName, err)
		}
	}
	if cur.Attrs().Flags&net.FlagUp == 0 {
		if err := t.h.LinkSetUp(cur); err != nil {
			return fmt.Errorf("uplink: set up: %w", err)
		}
	}
	idx := cur.Attrs().Index
	wantAddrs := []netip.Prefix{s.addr}
	if s.veth() {
		wantAddrs = append(wantAddrs, uplinkLinkLocal)
	}
	var errs []error
	if err := l.ensureUplinkAddrs(ctx, t, idx, wantAddrs); err != nil {
		errs = append(errs, fmt.Errorf("uplink: %w", err))
	}
	if s.veth() {
		if err := l.ensurePeer(peer, s); err != nil {
			errs = append(errs, fmt.Errorf("uplink: %w", err))
		}
	}
	if err := l.ensureUplinkDefault(t, idx, s); err != nil {
		errs = append(errs, fmt.Errorf("uplink: %w", err))
	}
	if s.veth() {
		want.veth = true
		for _, p := range s.public {
			r := publicRoute{ifindex: peer.Attrs().Index, via: s.addr.Addr()}
			if p.Is6() != r.via.Is6() {
				r.via = uplinkLinkLocal.Addr()
			}
			want.public[netip.PrefixFrom(p, p.BitLen())] = r
			want.veth6 = want.veth6 || p.Is6()
		}
	}
	return errors.Join(errs...)
}

// vethPeer is evpnd's end of the tenant's veth uplink, or nil when the
// device named for it is not cur's peer.
func (l *Linux) vethPeer(t *tenantNS, cur netlink.Link) (netlink.Link, error) {
	name := uplinkPeerName(t.nsName)
	peer, err := l.uh.LinkByName(name)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", name, err)
	}
	// A veth's IFLA_LINK is its peer's index.
	if peer.Type() != "veth" || peer.Attrs().ParentIndex != cur.Attrs().Index || cur.Attrs().ParentIndex != peer.Attrs().Index {
		return nil, nil
	}
	return peer, nil
}

// createVeth makes the veth pair: evpnd's end in its namespace, the
// tenant's end created straight in the tenant namespace.
func (l *Linux) createVeth(t *tenantNS) (cur, peer netlink.Link, err error) {
	name := uplinkPeerName(t.nsName)
	if old, err := l.uh.LinkByName(name); err == nil {
		// The name is evpnd's: an end whose pair is not this tenant's
		// uplink is stale.
		if err := l.uh.LinkDel(old); err != nil {
			return nil, nil, fmt.Errorf("delete stale %s: %w", name, err)
		}
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: name},
		PeerName:      uplinkName,
		PeerNamespace: netlink.NsFd(int(t.ns)),
	}
	if err := l.uh.LinkAdd(veth); err != nil {
		return nil, nil, fmt.Errorf("create veth %s/%s: %w", name, uplinkName, err)
	}
	if peer, err = l.uh.LinkByName(name); err != nil {
		return nil, nil, fmt.Errorf("look up created %s: %w", name, err)
	}
	if cur, err = t.h.LinkByName(uplinkName); err != nil {
		return nil, nil, fmt.Errorf("look up created %s: %w", uplinkName, err)
	}
	l.log.Info("tenant uplink created", "tenant", t.name, "device", name)
	return cur, peer, nil
}

// moveInterface moves an interface of evpnd's namespace into the tenant,
// marked with its original name, and renames it "uplink".
func (l *Linux) moveInterface(t *tenantNS, name string) (netlink.Link, error) {
	link, err := l.uh.LinkByName(name)
	if isNotFound(err) {
		return nil, fmt.Errorf("interface %q is not present in evpnd's namespace", name)
	}
	if err != nil {
		return nil, fmt.Errorf("look up %q: %w", name, err)
	}
	if err := l.uh.LinkSetAlias(link, uplinkAlias+name); err != nil {
		return nil, fmt.Errorf("mark %q: %w", name, err)
	}
	if err := l.uh.LinkSetNsFd(link, int(t.ns)); err != nil {
		return nil, fmt.Errorf("move %q into %q: %w", name, t.nsName, err)
	}
	// Moving takes the device down, as a rename needs.
	moved, err := t.h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("look up moved %q: %w", name, err)
	}
	if err := t.h.LinkSetName(moved, uplinkName); err != nil {
		return nil, fmt.Errorf("rename %q to %s: %w", name, uplinkName, err)
	}
	if moved, err = t.h.LinkByName(uplinkName); err != nil {
		return nil, fmt.Errorf("look up renamed %q: %w", name, err)
	}
	l.log.Info("interface moved in as tenant uplink", "tenant", t.name, "device", name)
	return moved, nil
}

// removeUplink deletes a veth uplink (evpnd's end and its host routes go
// with it) or moves an interface evpnd moved in back to evpnd's namespace
// under its original name, unmarked and up. The kernel drops a device's
// addresses when it changes namespace, so it comes back without any.
func (l *Linux) removeUplink(t *tenantNS, link netlink.Link) error {
	orig, moved := movedFrom(link)
	if !moved {
		if err := t.h.LinkDel(link); err != nil && !isNotFound(err) {
			return fmt.Errorf("uplink: delete %s: %w", link.Attrs().Name, err)
		}
		l.log.Info("tenant uplink removed", "tenant", t.name)
		return nil
	}
	if link.Attrs().Flags&net.FlagUp != 0 {
		if err := t.h.LinkSetDown(link); err != nil {
			return fmt.Errorf("uplink: set %s down: %w", link.Attrs().Name, err)
		}
	}
	if link.Attrs().Name != orig {
		if err := t.h.LinkSetName(link, orig); err != nil {
			return fmt.Errorf("uplink: rename %s back to %q: %w", link.Attrs().Name, orig, err)
		}
	}
	if err := t.h.LinkSetNsFd(link, int(l.underlay)); err != nil {
		return fmt.Errorf("uplink: move %q back to evpnd's namespace: %w", orig, err)
	}
	back, err := l.uh.LinkByName(orig)
	if err != nil {
		return fmt.Errorf("uplink: look up returned %q: %w", orig, err)
	}
	if err := l.uh.LinkSetAlias(back, ""); err != nil {
		return fmt.Errorf("uplink: unmark %q: %w", orig, err)
	}
	if err := l.uh.LinkSetUp(back); err != nil {
		return fmt.Errorf("uplink: set %q up: %w", orig, err)
	}
	l.log.Info("tenant uplink interface returned", "tenant", t.name, "device", orig)
	return nil
}

// ensureUplinkAddrs makes the addresses evpnd tagged on the tenant's
// uplink equal want; untagged ones (the kernel's link-local) stay.
func (l *Linux) ensureUplinkAddrs(ctx context.Context, t *tenantNS, ifindex int, want []netip.Prefix) error {
	addrs, err := kernel.Dump("addresses", t.bw.dumpAddrs)
	if err != nil {
		return err
	}
	have := make(map[netip.Prefix]uint8)
	for _, a := range addrs {
		if a.ifindex == ifindex {
			have[a.prefix] = a.proto
		}
	}
	var ops []op
	for p, proto := range have {
		if proto == addrProto && !slices.Contains(want, p) {
			ops = append(ops, op{kind: opAddrDel, ifindex: ifindex, prefix: p})
		}
	}
	for _, p := range want {
		if _, ok := have[p]; !ok {
			ops = append(ops, op{kind: opAddrAdd, ifindex: ifindex, prefix: p})
		}
	}
	return l.writeNow(ctx, t, ops)
}

// ensurePeer gives evpnd's end of a veth uplink the gateway address and
// its link-local, removes any other, and sets it up. The device is
// evpnd's, so every address on it is.
func (l *Linux) ensurePeer(peer netlink.Link, s uplinkSpec) error {
	want := []netip.Prefix{netip.PrefixFrom(s.gateway, s.addr.Bits()), peerLinkLocal}
	addrs, err := kernel.Dump("addresses", func() ([]netlink.Addr, error) { return l.uh.AddrList(peer, netlink.FAMILY_ALL) })
	if err != nil {
		return err
	}
	name := peer.Attrs().Name
	var errs []error
	have := make(map[netip.Prefix]bool)
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		bits, _ := a.Mask.Size()
		p := netip.PrefixFrom(ip.Unmap(), bits)
		if slices.Contains(want, p) {
			have[p] = true
			continue
		}
		if ip.IsLinkLocalUnicast() && ip.Is6() {
			continue // the kernel's own
		}
		if err := l.uh.AddrDel(peer, &a); err != nil {
			errs = append(errs, fmt.Errorf("%s: delete address %v: %w", name, p, err))
		}
	}
	for _, p := range want {
		if have[p] {
			continue
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := l.uh.AddrAdd(peer, a); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("%s: add address %v: %w", name, p, err))
		}
	}
	if peer.Attrs().Flags&net.FlagUp == 0 {
		if err := l.uh.LinkSetUp(peer); err != nil {
			errs = append(errs, fmt.Errorf("set %s up: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// ensureUplinkDefault makes the tenant's uplink-tagged routes equal its
// default routes over the uplink: of the link's family via the gateway,
// and on a veth carrying IPv6 public addresses over IPv4 an IPv6 one via
// evpnd's link-local.
func (l *Linux) ensureUplinkDefault(t *tenantNS, ifindex int, s uplinkSpec) error {
	want := map[bool]netip.Addr{s.gateway.Is6(): s.gateway} // by is-IPv6
	if s.wants6() && !s.gateway.Is6() {
		want[true] = peerLinkLocal.Addr()
	}
	routes, err := kernel.Dump("uplink routes", func() ([]netlink.Route, error) {
		return t.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN, Protocol: uplinkProto}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	})
	if err != nil {
		return err
	}
	var errs []error
	held := make(map[bool]bool)
	for _, r := range routes {
		v6 := r.Family == unix.AF_INET6
		gw, wanted := want[v6]
		hops := routeHops(r)
		if wanted && routeDst(r).Bits() == 0 && r.Priority == uplinkMetric && r.LinkIndex == ifindex && slices.Equal(hops, []netip.Addr{gw}) && !held[v6] {
			held[v6] = true
			continue
		}
		if err := t.h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete stale route %v: %w", routeDst(r), err))
		}
	}
	for v6, gw := range want {
		if held[v6] {
			continue
		}
		dst := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if v6 {
			dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		r := &netlink.Route{
			Dst:       &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(0, dst.Addr().BitLen())},
			Gw:        gw.AsSlice(),
			LinkIndex: ifindex,
			Table:     unix.RT_TABLE_MAIN,
			Protocol:  uplinkProto,
			Priority:  uplinkMetric,
		}
		if err := t.h.RouteReplace(r); err != nil {
			errs = append(errs, fmt.Errorf("default route via %v: %w", gw, err))
		}
	}
	return errors.Join(errs...)
}

// syncUplinkUnderlay makes the public host routes in evpnd's namespace
// equal want (pruning only 0xe5 host routes over evu devices) and keeps
// forwarding on while any tenant has a veth uplink.
//
// evpnd turns forwarding on in its own namespace for NAT: packets to a
// public address arrive on the underlay and are forwarded to the tenant's
// veth, tenant egress the other way. It turns forwarding back off when
// the last veth uplink goes, but only if it was evpnd that turned it on
// in this process's life; forwarding found on is left on. IPv6
// forwarding is turned on only for IPv6 public addresses: with it on, the
// kernel ignores router advertisements unless accept_ra is 2.
func (l *Linux) syncUplinkUnderlay(want *uplinkRoutes) error {
	var errs []error
	links, err := kernel.Dump("links", l.uh.LinkList)
	if err != nil {
		return err
	}
	evu := make(map[int]bool)
	for _, link := range links {
		if isUplinkPeerName(link.Attrs().Name) && link.Type() == "veth" {
			evu[link.Attrs().Index] = true
		}
	}
	routes, err := kernel.Dump("public routes", func() ([]netlink.Route, error) {
		return l.uh.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN, Protocol: publicProto}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	})
	if err != nil {
		return err
	}
	held := make(map[netip.Prefix]bool)
	for _, r := range routes {
		dst := routeDst(r)
		if !evu[r.LinkIndex] || dst.Bits() != dst.Addr().BitLen() {
			continue
		}
		w, ok := want.public[dst]
		if ok && !held[dst] && r.LinkIndex == w.ifindex && slices.Equal(routeHops(r), []netip.Addr{w.via}) {
			held[dst] = true
			continue
		}
		if err := l.uh.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete public route %v: %w", dst, err))
			continue
		}
		l.log.Info("public route removed", "prefix", dst)
	}
	for dst, w := range want.public {
		if held[dst] {
			continue
		}
		r := &netlink.Route{
			Dst:       &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), dst.Addr().BitLen())},
			Gw:        w.via.AsSlice(),
			LinkIndex: w.ifindex,
			Flags:     int(netlink.FLAG_ONLINK),
			Table:     unix.RT_TABLE_MAIN,
			Protocol:  publicProto,
		}
		if err := l.uh.RouteReplace(r); err != nil {
			errs = append(errs, fmt.Errorf("public route %v via %v: %w", dst, w.via, err))
			continue
		}
	}
	if err := l.uplinkForwarding(want.veth, want.veth6); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// uplinkForwarding turns forwarding on in evpnd's namespace when on, and
// back off what it turned on itself when not.
func (l *Linux) uplinkForwarding(on4, on6 bool) error {
	var errs []error
	for key, on := range map[string]bool{"net/ipv4/ip_forward": on4, "net/ipv6/conf/all/forwarding": on6} {
		switch {
		case on && !l.uplinkFwd[key]:
			var was []byte
			err := kernel.InNetns(l.underlay, func() (err error) {
				was, err = os.ReadFile("/proc/sys/" + key)
				return err
			})
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if strings.TrimSpace(string(was)) == "1" {
				continue
			}
			if err := setSysctls(l.underlay, [2]string{key, "1"}); err != nil {
				errs = append(errs, err)
				continue
			}
			l.uplinkFwd[key] = true
			l.log.Info("forwarding turned on for tenant uplinks", "sysctl", key)
		case !on && l.uplinkFwd[key]:
			if err := setSysctls(l.underlay, [2]string{key, "0"}); err != nil {
				errs = append(errs, err)
				continue
			}
			delete(l.uplinkFwd, key)
			l.log.Info("forwarding turned off: no tenant uplink left", "sysctl", key)
		}
	}
	return errors.Join(errs...)
}
