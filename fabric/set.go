package fabric

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/evpnd/evpnd/evpn"
	"github.com/evpnd/evpnd/fabric/kernel"
)

// Device names inside a tenant namespace; the namespace is evpnd's, so the
// name is what marks a device as a segment's.
func vxlanName(vni evpn.VNI) string  { return "vx" + strconv.FormatUint(uint64(vni), 10) }
func bridgeName(vni evpn.VNI) string { return "br" + strconv.FormatUint(uint64(vni), 10) }

// segmentVNI parses a device name made by vxlanName or bridgeName.
func segmentVNI(name, prefix string) (evpn.VNI, bool) {
	s, ok := strings.CutPrefix(name, prefix)
	if !ok || s == "" || s[0] == '0' {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || !evpn.VNI(n).Valid() {
		return 0, false
	}
	return evpn.VNI(n), true
}

// Set makes namespaces, devices and ports match cfg. See Datapath.
func (l *Linux) Set(ctx context.Context, cfg Config) error {
	if err := validate(cfg); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("set: datapath is closed")
	}
	l.gen++

	ports := make(map[string]portWant)
	for _, tc := range cfg.Tenants {
		for _, sc := range tc.Segments {
			for _, p := range sc.Ports {
				ports[p] = portWant{tenant: cfg.NetnsPrefix + tc.Name, vni: sc.VNI}
			}
		}
	}
	// Publish the configured ports first: a port that Set moves out of a
	// tenant below must not be taken for one that should come back.
	l.pendMu.Lock()
	l.pending = make(map[string]portWant)
	l.configured = ports
	l.pendMu.Unlock()

	var underMTU int
	if needsUnderlayMTU(cfg) {
		mtu, err := l.vtepMTU(cfg.VTEP)
		if err != nil {
			return err
		}
		underMTU = mtu
	}

	// The MTU of segments that leave it zero and of L3VNI devices.
	defaultMTU := underMTU - vxlanOverhead4
	if cfg.VTEP.Is6() && !cfg.VTEP.Is4In6() {
		defaultMTU = underMTU - vxlanOverhead6
	}

	var errs []error
	uplinks := newUplinkRoutes()
	byVNI := make(map[evpn.VNI]*segState)
	byL3 := make(map[evpn.VNI]*l3State)
	keep := make(map[string]bool)
	for _, tc := range cfg.Tenants {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		nsName := cfg.NetnsPrefix + tc.Name
		keep[nsName] = true
		t, err := l.ensureTenant(tc.Name, nsName)
		if err != nil {
			errs = append(errs, fmt.Errorf("tenant %q: %w", tc.Name, err))
			continue
		}
		kept := make(map[evpn.VNI]bool)
		for _, sc := range tc.Segments {
			mtu := sc.MTU
			if mtu == 0 {
				mtu = defaultMTU
			}
			s, err := l.ensureSegment(ctx, t, sc, cfg.VTEP, mtu)
			if s != nil {
				byVNI[sc.VNI] = s
				kept[sc.VNI] = true
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("tenant %q: segment %q: vni %d: %w", tc.Name, sc.Name, sc.VNI, err))
			}
		}
		st, err := l.ensureL3(ctx, t, tc, cfg.VTEP, defaultMTU)
		if st != nil {
			byL3[st.vni] = st
			kept[st.vni] = true
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("tenant %q: %w", tc.Name, err))
		}
		if err := l.pruneTenant(t, tc, kept); err != nil {
			errs = append(errs, fmt.Errorf("tenant %q: %w", tc.Name, err))
		}
		if err := l.ensureUplink(ctx, t, tc.Uplink, uplinks); err != nil {
			errs = append(errs, fmt.Errorf("tenant %q: %w", tc.Name, err))
		}
	}

	// Tenants evpnd holds or finds under its prefix that cfg no longer names.
	found, err := listNetns(cfg.NetnsPrefix)
	if err != nil {
		errs = append(errs, err)
	}
	stale := make(map[string]bool)
	for _, name := range found {
		if !keep[name] {
			stale[name] = true
		}
	}
	for name := range l.tenants {
		if !keep[name] {
			stale[name] = true
		}
	}
	for name := range stale {
		if err := l.removeTenant(name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := l.syncUplinkUnderlay(uplinks); err != nil {
		errs = append(errs, err)
	}

	l.cfg = cfg
	l.byVNI = byVNI
	l.byL3 = byL3
	l.remote.forget(byVNI, byL3)
	l.attachPendingLocked()
	return errors.Join(errs...)
}

func needsUnderlayMTU(cfg Config) bool {
	for _, tc := range cfg.Tenants {
		if tc.L3 != nil {
			return true
		}
		for _, sc := range tc.Segments {
			if sc.MTU == 0 {
				return true
			}
		}
	}
	return false
}

// validate checks cfg before anything is touched, naming the field, the
// value and the rule broken.
func validate(cfg Config) error {
	var errs []error
	if cfg.NetnsPrefix == "" {
		errs = append(errs, errors.New("netns_prefix: must not be empty (evpnd owns every namespace with this prefix)"))
	}
	if strings.Contains(cfg.NetnsPrefix, "/") {
		errs = append(errs, fmt.Errorf("netns_prefix: %q must not contain '/'", cfg.NetnsPrefix))
	}
	if !cfg.VTEP.IsValid() || cfg.VTEP.IsUnspecified() {
		errs = append(errs, fmt.Errorf("vtep: %v is not a usable address", cfg.VTEP))
	}
	tenants := make(map[string]int)
	vnis := make(map[evpn.VNI]string)
	ports := make(map[string]string)
	public := make(map[netip.Addr]string)
	for i, tc := range cfg.Tenants {
		switch {
		case tc.Name == "":
			errs = append(errs, fmt.Errorf("tenants[%d].name: must not be empty", i))
		case strings.Contains(tc.Name, "/") || len(cfg.NetnsPrefix+tc.Name) > 255:
			errs = append(errs, fmt.Errorf("tenants[%d].name: %q does not make a valid namespace name", i, tc.Name))
		}
		if j, dup := tenants[tc.Name]; dup {
			errs = append(errs, fmt.Errorf("tenants[%d].name: %q is also tenants[%d]", i, tc.Name, j))
		}
		tenants[tc.Name] = i
		for j, sc := range tc.Segments {
			field := fmt.Sprintf("tenants[%d].segments[%d]", i, j)
			if !sc.VNI.Valid() {
				errs = append(errs, fmt.Errorf("%s.vni: %d is out of range 1..%d", field, sc.VNI, evpn.MaxVNI))
			} else if other, dup := vnis[sc.VNI]; dup {
				errs = append(errs, fmt.Errorf("%s.vni: %d is also used by %s", field, sc.VNI, other))
			}
			vnis[sc.VNI] = field
			if sc.MTU != 0 && (sc.MTU < 68 || sc.MTU > 65535) {
				errs = append(errs, fmt.Errorf("%s.mtu: %d is out of range 68..65535", field, sc.MTU))
			}
			errs = append(errs, validateGateways(field, sc, tc.L3 != nil)...)
			for k, p := range sc.Ports {
				pf := fmt.Sprintf("%s.ports[%d]", field, k)
				if p == "" || len(p) > unix.IFNAMSIZ-1 || strings.ContainsAny(p, "/ ") {
					errs = append(errs, fmt.Errorf("%s: %q is not a valid interface name", pf, p))
				}
				if other, dup := ports[p]; dup {
					errs = append(errs, fmt.Errorf("%s: %q is also %s", pf, p, other))
				}
				ports[p] = pf
			}
		}
		errs = append(errs, validateUplink(fmt.Sprintf("tenants[%d].uplink", i), tc, ports, public)...)
		if tc.L3 != nil {
			field := fmt.Sprintf("tenants[%d].l3", i)
			if !tc.L3.VNI.Valid() {
				errs = append(errs, fmt.Errorf("%s.vni: %d is out of range 1..%d", field, tc.L3.VNI, evpn.MaxVNI))
			} else if other, dup := vnis[tc.L3.VNI]; dup {
				errs = append(errs, fmt.Errorf("%s.vni: %d is also used by %s", field, tc.L3.VNI, other))
			}
			vnis[tc.L3.VNI] = field
			if len(tc.L3.RouterMAC) != 6 || tc.L3.RouterMAC[0]&1 != 0 || bytes.Equal(tc.L3.RouterMAC, zeroMAC) {
				errs = append(errs, fmt.Errorf("%s.router_mac: %q is not a unicast Ethernet address", field, tc.L3.RouterMAC))
			}
			for k, r := range tc.L3.Routes {
				rf := fmt.Sprintf("%s.routes[%d]", field, k)
				switch {
				case !r.Prefix.IsValid():
					errs = append(errs, fmt.Errorf("%s.prefix: not a valid prefix", rf))
				case !r.Via.IsValid() || r.Via.IsUnspecified() || r.Via.IsMulticast():
					errs = append(errs, fmt.Errorf("%s.via: %v is not a usable next hop", rf, r.Via))
				case r.Prefix.Addr().Is4() != r.Via.Unmap().Is4():
					errs = append(errs, fmt.Errorf("%s.via: %v is not of the family of %v", rf, r.Via, r.Prefix))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// validateGateways checks a segment's anycast gateways.
func validateGateways(field string, sc Segment, routed bool) []error {
	if len(sc.Gateways) == 0 {
		return nil
	}
	var errs []error
	if !routed {
		errs = append(errs, fmt.Errorf("%s.gateways: a gateway needs a routed tenant (l3)", field))
	}
	if len(sc.GatewayMAC) != 6 || sc.GatewayMAC[0]&1 != 0 || bytes.Equal(sc.GatewayMAC, zeroMAC) {
		errs = append(errs, fmt.Errorf("%s.gateway_mac: %q is not a unicast Ethernet address", field, sc.GatewayMAC))
	}
	for k, g := range sc.Gateways {
		a := g.Addr()
		if !g.IsValid() || a.Is4In6() || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() || a.IsLinkLocalUnicast() {
			errs = append(errs, fmt.Errorf("%s.gateways[%d]: %v is not a usable gateway address", field, k, g))
		}
	}
	return errs
}

// vtepMTU is the MTU of the underlay device holding vtep.
func (l *Linux) vtepMTU(vtep netip.Addr) (int, error) {
	family := unix.AF_INET
	if vtep.Is6() && !vtep.Is4In6() {
		family = unix.AF_INET6
	}
	addrs, err := kernel.Dump("underlay addresses", func() ([]netlink.Addr, error) { return l.uh.AddrList(nil, family) })
	if err != nil {
		return 0, err
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.Unmap() != vtep.Unmap() {
			continue
		}
		link, err := l.uh.LinkByIndex(a.LinkIndex)
		if err != nil {
			return 0, fmt.Errorf("vtep %s: underlay device %d: %w", vtep, a.LinkIndex, err)
		}
		return link.Attrs().MTU, nil
	}
	return 0, fmt.Errorf("vtep %s is not configured on any device in the underlay namespace", vtep)
}

// ensureTenant opens (or creates) the tenant namespace and what fabric
// holds in it, and starts learning there.
func (l *Linux) ensureTenant(tenant, nsName string) (*tenantNS, error) {
	if t, ok := l.tenants[nsName]; ok {
		return t, nil
	}
	ns, created, err := openOrCreateNetns(nsName)
	if err != nil {
		return nil, err
	}
	t := &tenantNS{name: tenant, nsName: nsName, ns: ns, local: newLocalMACs()}
	if t.h, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE); err != nil {
		t.shutdown()
		return nil, fmt.Errorf("netlink handle in namespace %q: %w", nsName, err)
	}
	if t.bw, err = newBatchWriter(ns); err != nil {
		t.shutdown()
		return nil, fmt.Errorf("batch socket in namespace %q: %w", nsName, err)
	}
	if lo, err := t.h.LinkByName("lo"); err == nil && lo.Attrs().Flags&net.FlagUp == 0 {
		if err := t.h.LinkSetUp(lo); err != nil {
			t.shutdown()
			return nil, fmt.Errorf("set lo up in %q: %w", nsName, err)
		}
	}
	if err := l.startLearner(t); err != nil {
		t.shutdown()
		return nil, err
	}
	l.tenants[nsName] = t
	if created {
		l.log.Info("tenant namespace created", "tenant", tenant, "netns", nsName)
	} else {
		l.adopted = true
		l.log.Info("tenant namespace adopted", "tenant", tenant, "netns", nsName)
	}
	return t, nil
}

// ensureSegment makes the VXLAN device, bridge, anycast gateway and ports
// of one segment. It returns the segment when its devices exist, even if a
// port or gateway address failed.
func (l *Linux) ensureSegment(ctx context.Context, t *tenantNS, sc Segment, vtep netip.Addr, mtu int) (*segState, error) {
	vx, br, err := l.ensureDevices(t, sc.VNI, vtep, mtu, func(br netlink.Link) error { return prepareGatewayBridge(t, br, sc) })
	if err != nil {
		return nil, err
	}
	s := &segState{tenant: t, vni: sc.VNI, vxIndex: vx.Attrs().Index, brIndex: br.Attrs().Index}
	var errs []error
	if err := l.ensureGateways(ctx, t, s, sc.Gateways); err != nil {
		errs = append(errs, err)
	}
	for _, p := range sc.Ports {
		err := l.attachPort(s, p)
		if errors.Is(err, errPortMissing) {
			l.pendMu.Lock()
			l.pending[p] = portWant{tenant: t.nsName, vni: sc.VNI}
			l.pendMu.Unlock()
			l.log.Warn("workload port not present, attaching when it appears", "tenant", t.name, "vni", sc.VNI, "port", p)
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("port %q: %w", p, err))
		}
	}
	return s, errors.Join(errs...)
}

// ensureDevices makes the VXLAN device and bridge of vni: the VXLAN device
// enslaved with learning off and neigh_suppress on, both up. prepare runs
// on the bridge before it is first set up, because its MAC and IPv6
// settings decide what the kernel generates when it comes up.
func (l *Linux) ensureDevices(t *tenantNS, vni evpn.VNI, vtep netip.Addr, mtu int, prepare func(br netlink.Link) error) (vx, br netlink.Link, err error) {
	vx, err = l.ensureVXLAN(t, vni, vtep, mtu)
	if err != nil {
		return nil, nil, err
	}
	br, err = ensureBridge(t, vni, mtu)
	if err != nil {
		return nil, nil, err
	}
	if err := prepare(br); err != nil {
		return nil, nil, err
	}
	if vx.Attrs().MasterIndex != br.Attrs().Index {
		if err := t.h.LinkSetMaster(vx, br); err != nil {
			return nil, nil, fmt.Errorf("enslave %s to %s: %w", vx.Attrs().Name, br.Attrs().Name, err)
		}
	}
	// Remote MACs come from EVPN, never from data-plane learning, and the
	// bridge answers ARP/ND for remote hosts from its neighbor table.
	if err := t.h.LinkSetLearning(vx, false); err != nil {
		return nil, nil, fmt.Errorf("bridge port %s learning off: %w", vx.Attrs().Name, err)
	}
	if err := t.h.LinkSetBrNeighSuppress(vx, true); err != nil {
		return nil, nil, fmt.Errorf("bridge port %s neigh_suppress on: %w", vx.Attrs().Name, err)
	}
	for _, link := range []netlink.Link{br, vx} {
		if link.Attrs().Flags&net.FlagUp == 0 {
			if err := t.h.LinkSetUp(link); err != nil {
				return nil, nil, fmt.Errorf("set %s up: %w", link.Attrs().Name, err)
			}
		}
	}
	return vx, br, nil
}

func (l *Linux) ensureVXLAN(t *tenantNS, vni evpn.VNI, vtep netip.Addr, mtu int) (netlink.Link, error) {
	name := vxlanName(vni)
	link, err := t.h.LinkByName(name)
	switch {
	case err == nil:
		vx, ok := link.(*netlink.Vxlan)
		srcOK := false
		if ok {
			src, _ := netip.AddrFromSlice(vx.SrcAddr)
			srcOK = src.Unmap() == vtep.Unmap()
		}
		if ok && vx.VxlanId == int(vni) && srcOK && vx.Port == VXLANPort && !vx.Learning && len(vx.Group) == 0 {
			if vx.MTU != mtu {
				if err := t.h.LinkSetMTU(vx, mtu); err != nil {
					return nil, fmt.Errorf("set %s mtu %d: %w", name, mtu, err)
				}
			}
			return vx, nil
		}
		l.log.Warn("replacing vxlan device that does not match config", "tenant", t.name, "vni", vni, "vtep", vtep)
		if err := t.h.LinkDel(link); err != nil {
			return nil, fmt.Errorf("delete mismatched %s: %w", name, err)
		}
	case !isNotFound(err):
		return nil, fmt.Errorf("look up %s: %w", name, err)
	}
	// Created from the underlay handle but placed straight into the tenant
	// namespace (IFLA_NET_NS_FD): the device's UDP socket and link-netns
	// stay in the underlay, the device itself never appears there, so no
	// temporary name can collide and a crash cannot leave one behind.
	vx := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu, Namespace: netlink.NsFd(int(t.ns))},
		VxlanId:   int(vni),
		SrcAddr:   vtep.AsSlice(),
		Port:      VXLANPort,
		Learning:  false,
	}
	if err := l.uh.LinkAdd(vx); err != nil {
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	link, err = t.h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("look up created %s: %w", name, err)
	}
	l.log.Info("vxlan device created", "tenant", t.name, "vni", vni, "vtep", vtep)
	return link, nil
}

func ensureBridge(t *tenantNS, vni evpn.VNI, mtu int) (netlink.Link, error) {
	name := bridgeName(vni)
	link, err := t.h.LinkByName(name)
	switch {
	case err == nil:
		if link.Type() == "bridge" {
			if link.Attrs().MTU != mtu {
				if err := t.h.LinkSetMTU(link, mtu); err != nil {
					return nil, fmt.Errorf("set %s mtu %d: %w", name, mtu, err)
				}
			}
			return link, nil
		}
		if err := t.h.LinkDel(link); err != nil {
			return nil, fmt.Errorf("delete %s (a %s, not a bridge): %w", name, link.Type(), err)
		}
	case !isNotFound(err):
		return nil, fmt.Errorf("look up %s: %w", name, err)
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}}
	if err := t.h.LinkAdd(br); err != nil {
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	link, err = t.h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("look up created %s: %w", name, err)
	}
	return link, nil
}

var errPortMissing = errors.New("port not present")

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

// attachPort moves a workload port into the segment's tenant namespace
// (keeping its name), enslaves it to the bridge and sets it up.
func (l *Linux) attachPort(s *segState, name string) error {
	t := s.tenant
	link, err := t.h.LinkByName(name)
	if isNotFound(err) {
		ul, uerr := l.uh.LinkByName(name)
		if isNotFound(uerr) {
			return errPortMissing
		}
		if uerr != nil {
			return fmt.Errorf("look up in underlay: %w", uerr)
		}
		if err := l.uh.LinkSetNsFd(ul, int(t.ns)); err != nil {
			return fmt.Errorf("move into %q: %w", t.nsName, err)
		}
		link, err = t.h.LinkByName(name)
	}
	if err != nil {
		return fmt.Errorf("look up in %q: %w", t.nsName, err)
	}
	if link.Attrs().MasterIndex != s.brIndex {
		if err := t.h.LinkSetMasterByIndex(link, s.brIndex); err != nil {
			return fmt.Errorf("enslave to %s: %w", bridgeName(s.vni), err)
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := t.h.LinkSetUp(link); err != nil {
			return fmt.Errorf("set up: %w", err)
		}
	}
	return nil
}

// pruneTenant removes the segment and L3VNI devices of t whose VNI is not
// kept and hands back to the underlay the ports that no segment claims any
// more.
func (l *Linux) pruneTenant(t *tenantNS, tc Tenant, kept map[evpn.VNI]bool) error {
	links, err := kernel.Dump("links", t.h.LinkList)
	if err != nil {
		return err
	}
	wanted := make(map[string]bool)
	for _, sc := range tc.Segments {
		for _, p := range sc.Ports {
			wanted[p] = true
		}
	}
	bridges := make(map[int]bool) // every segment bridge, kept or not
	var drop []netlink.Link
	for _, link := range links {
		name := link.Attrs().Name
		if vni, ok := segmentVNI(name, "br"); ok && link.Type() == "bridge" {
			bridges[link.Attrs().Index] = true
			if !kept[vni] {
				drop = append(drop, link)
			}
		}
		if vni, ok := segmentVNI(name, "vx"); ok && link.Type() == "vxlan" && !kept[vni] {
			drop = append(drop, link)
		}
	}
	var errs []error
	for _, link := range links {
		a := link.Attrs()
		if !bridges[a.MasterIndex] || link.Type() == "vxlan" || wanted[a.Name] {
			continue
		}
		if err := l.releasePort(t, link); err != nil {
			errs = append(errs, err)
		}
	}
	// VXLAN devices first, so no bridge is deleted under a live port.
	for _, pass := range []string{"vxlan", "bridge"} {
		for _, link := range drop {
			if link.Type() != pass {
				continue
			}
			if err := t.h.LinkDel(link); err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("delete %s: %w", link.Attrs().Name, err))
				continue
			}
			l.log.Info("segment device removed", "tenant", t.name, "device", link.Attrs().Name)
		}
	}
	return errors.Join(errs...)
}

// releasePort moves a workload port back to the underlay namespace.
func (l *Linux) releasePort(t *tenantNS, link netlink.Link) error {
	name := link.Attrs().Name
	if link.Attrs().MasterIndex != 0 {
		if err := t.h.LinkSetNoMaster(link); err != nil {
			return fmt.Errorf("port %q: release from bridge: %w", name, err)
		}
	}
	if err := t.h.LinkSetNsFd(link, int(l.underlay)); err != nil {
		return fmt.Errorf("port %q: move back to underlay: %w", name, err)
	}
	l.log.Info("workload port returned to underlay", "tenant", t.name, "port", name)
	return nil
}

// removeTenant returns every workload port of a stale tenant namespace to
// the underlay, then deletes the namespace (and with it evpnd's devices).
func (l *Linux) removeTenant(nsName string) error {
	t, ok := l.tenants[nsName]
	if !ok {
		ns, created, err := openOrCreateNetns(nsName)
		if err != nil {
			return err
		}
		if created { // raced with someone deleting it
			ns.Close()
			return deleteNetns(nsName)
		}
		t = &tenantNS{name: nsName, nsName: nsName, ns: ns}
		if t.h, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE); err != nil {
			t.shutdown()
			return fmt.Errorf("namespace %q: netlink handle: %w", nsName, err)
		}
	}
	links, err := kernel.Dump("links", t.h.LinkList)
	if err != nil {
		return fmt.Errorf("namespace %q: %w", nsName, err)
	}
	var errs []error
	for _, link := range links {
		a := link.Attrs()
		if a.Name == "lo" {
			continue
		}
		if isUplink(link) {
			if err := l.removeUplink(t, link); err != nil {
				errs = append(errs, fmt.Errorf("namespace %q: %w", nsName, err))
			}
			continue
		}
		if _, ok := segmentVNI(a.Name, "vx"); ok && link.Type() == "vxlan" {
			continue
		}
		if _, ok := segmentVNI(a.Name, "br"); ok && link.Type() == "bridge" {
			continue
		}
		if err := l.releasePort(t, link); err != nil {
			errs = append(errs, fmt.Errorf("namespace %q: %w", nsName, err))
		}
	}
	if len(errs) > 0 {
		// Deleting now would destroy the workload's interface with it.
		if ok {
			return errors.Join(errs...)
		}
		t.shutdown()
		return errors.Join(errs...)
	}
	t.dropFacts = true
	t.shutdown()
	delete(l.tenants, nsName)
	if err := deleteNetns(nsName); err != nil {
		return err
	}
	l.log.Info("tenant namespace removed", "tenant", t.name, "netns", nsName)
	return nil
}

// attachPendingLocked attaches pending ports that exist in the underlay.
func (l *Linux) attachPendingLocked() {
	l.pendMu.Lock()
	names := make([]string, 0, len(l.pending))
	for name := range l.pending {
		names = append(names, name)
	}
	l.pendMu.Unlock()
	for _, name := range names {
		l.attachPendingPortLocked(name)
	}
}

// attachPendingPortLocked attaches a pending port if it is in the
// underlay now. l.mu is held.
func (l *Linux) attachPendingPortLocked(name string) {
	l.pendMu.Lock()
	want, ok := l.pending[name]
	l.pendMu.Unlock()
	if !ok {
		return
	}
	s := l.byVNI[want.vni]
	if s == nil || s.tenant.nsName != want.tenant {
		return
	}
	err := l.attachPort(s, name)
	if errors.Is(err, errPortMissing) {
		return
	}
	if err != nil {
		l.log.Warn("attach workload port", "tenant", s.tenant.name, "vni", want.vni, "port", name, "err", err)
		return
	}
	l.pendMu.Lock()
	delete(l.pending, name)
	l.pendMu.Unlock()
	l.log.Info("workload port attached", "tenant", s.tenant.name, "vni", want.vni, "port", name)
}
