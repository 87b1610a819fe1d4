package fabric

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/evpnd/evpnd/evpn"
)

// readSysctl reads /proc/sys/<key> as seen from the named namespace.
func readSysctl(t testing.TB, nsName, key string) string {
	t.Helper()
	var v []byte
	if err := inNamed(t, nsName, func() (err error) { v, err = os.ReadFile("/proc/sys/" + key); return err }); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(v))
}

// addrsOf lists the addresses of dev with their IFA_PROTO, through a
// netlink socket of its own in the namespace.
func addrsOf(t testing.TB, nsName, dev string) map[netip.Prefix]uint8 {
	t.Helper()
	th := tenantHandle(t, nsName)
	link, err := th.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	var addrs []kernelAddr
	err = inNamed(t, nsName, func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		w := &batchWriter{fd: fd, recv: make([]byte, batchRecvBuf)}
		defer w.close()
		if err := w.setup(); err != nil {
			return err
		}
		addrs, err = w.dumpAddrs()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[netip.Prefix]uint8)
	for _, a := range addrs {
		if a.ifindex == link.Attrs().Index {
			out[a.prefix] = a.proto
		}
	}
	return out
}

// familyAddr prints ip as its family has it: net.IP prints an IPv4-mapped
// IPv6 address as IPv4.
func familyAddr(family int, ip net.IP) string {
	a, _ := netip.AddrFromSlice(ip)
	if family == unix.AF_INET {
		a = a.Unmap()
	} else {
		a = netip.AddrFrom16(a.As16())
	}
	return a.String()
}

// kernelRoute is a route as the test reads it back.
type kernelRoute struct {
	hops   []string // gateways as the kernel holds them
	dev    []string
	proto  int
	onlink bool
}

func routesOf(t testing.TB, th *netlink.Handle) map[string]kernelRoute {
	t.Helper()
	rs, err := th.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	links, err := th.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	out := map[string]kernelRoute{}
	for _, r := range rs {
		kr := kernelRoute{proto: int(r.Protocol)}
		if r.Gw != nil {
			kr.hops = append(kr.hops, familyAddr(r.Family, r.Gw))
			kr.dev = append(kr.dev, names[r.LinkIndex])
			kr.onlink = r.Flags&unix.RTNH_F_ONLINK != 0
		}
		for _, nh := range r.MultiPath {
			kr.hops = append(kr.hops, familyAddr(r.Family, nh.Gw))
			kr.dev = append(kr.dev, names[nh.LinkIndex])
			kr.onlink = nh.Flags&unix.RTNH_F_ONLINK != 0
		}
		slices.Sort(kr.hops)
		out[routeDst(r).String()] = kr
	}
	return out
}

var (
	gwMAC   = mustMAC("02:00:5e:00:01:01")
	rmacA   = mustMAC("02:00:00:00:50:0a")
	rmacB   = mustMAC("02:00:00:00:50:0b")
	rmacC   = mustMAC("02:00:00:00:50:0c")
	gw4     = netip.MustParsePrefix("172.31.1.254/24")
	gw4b    = netip.MustParsePrefix("172.31.9.254/24")
	gw6     = netip.MustParsePrefix("2001:db8:1::fe/64")
	static4 = StaticRoute{Prefix: netip.MustParsePrefix("10.99.0.0/16"), Via: netip.MustParseAddr("172.31.1.10")}
	static6 = StaticRoute{Prefix: netip.MustParsePrefix("2001:db8:99::/48"), Via: netip.MustParseAddr("2001:db8:1::10")}
)

func routedConfig(prefix string, vtep netip.Addr) Config {
	return Config{NetnsPrefix: prefix, VTEP: vtep, Tenants: []Tenant{{
		Name: "ta",
		L3:   &TenantL3{VNI: 5000, RouterMAC: rmacA, Routes: []StaticRoute{static4, static6}},
		Segments: []Segment{{
			Name: "web", VNI: 100, Ports: []string{"p1"},
			Gateways: []netip.Prefix{gw4, gw4b, gw6}, GatewayMAC: gwMAC,
		}},
	}}}
}

func TestPrivilegedSetRouted(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	x, l, prefix := singleHost(t)
	workload(t, x, "p1", "fl-p1-"+suffix(), "")
	cfg := routedConfig(prefix, x.vtep)
	if err := l.Set(ctx, cfg); err != nil {
		t.Fatalf("set: %v", err)
	}
	ns := prefix + "ta"
	th := tenantHandle(t, ns)
	for _, key := range []string{"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"} {
		if v := readSysctl(t, ns, key); v != "1" {
			t.Errorf("%s = %s in routed tenant", key, v)
		}
	}
	vx100, br100 := checkSegment(t, th, 100, x.vtep, 1450, "p1")
	vx5000, br5000 := checkSegment(t, th, 5000, x.vtep, 1450)
	if br, _ := th.LinkByIndex(br100); br.Attrs().HardwareAddr.String() != gwMAC.String() {
		t.Errorf("br100 mac %s, want gateway mac %s", br.Attrs().HardwareAddr, gwMAC)
	}
	if br, _ := th.LinkByIndex(br5000); br.Attrs().HardwareAddr.String() != rmacA.String() {
		t.Errorf("br5000 mac %s, want router mac %s", br.Attrs().HardwareAddr, rmacA)
	}
	addrs := addrsOf(t, ns, "br100")
	for _, g := range []netip.Prefix{gw4, gw4b, gw6} {
		if addrs[g] != addrProto {
			t.Errorf("br100 gateway %v: proto %#x (addresses %v)", g, addrs[g], addrs)
		}
	}
	if out := run(t, "ip", "-n", ns, "-6", "addr", "show", "dev", "br100"); !strings.Contains(out, "nodad") || strings.Contains(out, "tentative") {
		t.Errorf("ipv6 gateway not nodad:\n%s", out)
	}
	if a := addrsOf(t, ns, "br5000"); len(a) != 0 {
		t.Errorf("br5000 has addresses %v, want none (addrgenmode none)", a)
	}
	routes := routesOf(t, th)
	if r := routes["10.99.0.0/16"]; r.proto != staticProto || !slices.Equal(r.hops, []string{"172.31.1.10"}) || !slices.Equal(r.dev, []string{"br100"}) {
		t.Errorf("static ipv4 route: %+v", r)
	}
	if r := routes["2001:db8:99::/48"]; r.proto != staticProto || !slices.Equal(r.hops, []string{"2001:db8:1::10"}) {
		t.Errorf("static ipv6 route: %+v", r)
	}

	// Idempotent: nothing recreated, nothing written twice.
	run(t, "ip", "-n", ns, "addr", "add", "192.0.2.1/24", "dev", "br100")
	run(t, "ip", "-n", ns, "route", "add", "10.98.0.0/16", "via", "172.31.1.11", "proto", "static")
	before := l.Stats().Writes
	if err := l.Set(ctx, cfg); err != nil {
		t.Fatalf("second set: %v", err)
	}
	if w := l.Stats().Writes - before; w != 0 {
		t.Errorf("second set wrote %d objects", w)
	}
	a, b := checkSegment(t, th, 100, x.vtep, 1450, "p1")
	c, d := checkSegment(t, th, 5000, x.vtep, 1450)
	if a != vx100 || b != br100 || c != vx5000 || d != br5000 {
		t.Errorf("second set recreated devices")
	}

	// Dropping a gateway and a static route removes exactly those.
	cfg.Tenants[0].Segments[0].Gateways = []netip.Prefix{gw4, gw6}
	cfg.Tenants[0].L3.Routes = []StaticRoute{static6}
	if err := l.Set(ctx, cfg); err != nil {
		t.Fatalf("shrinking set: %v", err)
	}
	addrs = addrsOf(t, ns, "br100")
	if _, ok := addrs[gw4b]; ok || addrs[gw4] != addrProto || addrs[gw6] != addrProto {
		t.Errorf("after dropping %v: %v", gw4b, addrs)
	}
	if _, ok := addrs[netip.MustParsePrefix("192.0.2.1/24")]; !ok {
		t.Errorf("hand-made address removed: %v", addrs)
	}
	routes = routesOf(t, th)
	if _, ok := routes["10.99.0.0/16"]; ok {
		t.Errorf("dropped static route still present")
	}
	if _, ok := routes["10.98.0.0/16"]; !ok {
		t.Errorf("hand-made static route removed")
	}
	if _, ok := routes["2001:db8:99::/48"]; !ok {
		t.Errorf("kept static route removed")
	}

	// Unrouting the tenant removes the L3VNI and evpnd's addresses only.
	cfg.Tenants[0].L3 = nil
	cfg.Tenants[0].Segments[0].Gateways = nil
	if err := l.Set(ctx, cfg); err != nil {
		t.Fatalf("unrouting set: %v", err)
	}
	for _, name := range []string{"br5000", "vx5000"} {
		if _, err := th.LinkByName(name); err == nil {
			t.Errorf("%s still present after l3 removal", name)
		}
	}
	addrs = addrsOf(t, ns, "br100")
	for p, proto := range addrs {
		if proto == addrProto {
			t.Errorf("evpnd address %v left on br100", p)
		}
	}
	if _, ok := addrs[netip.MustParsePrefix("192.0.2.1/24")]; !ok {
		t.Errorf("hand-made address removed: %v", addrs)
	}
	if _, ok := routesOf(t, th)["2001:db8:99::/48"]; ok {
		t.Errorf("static route left after l3 removal")
	}
	if v := readSysctl(t, ns, "net/ipv4/ip_forward"); v != "0" {
		t.Errorf("ip_forward = %s after l3 removal", v)
	}
	checkSegment(t, th, 100, x.vtep, 1450, "p1")
}

func TestPrivilegedSetRoutedRejectsBadConfig(t *testing.T) {
	requireRoot(t)
	_, l, prefix := singleHost(t)
	err := l.Set(context.Background(), Config{NetnsPrefix: prefix, VTEP: netip.MustParseAddr("10.77.0.1"), Tenants: []Tenant{
		{Name: "a", L3: &TenantL3{VNI: 10, RouterMAC: mustMAC("01:00:00:00:00:01"), Routes: []StaticRoute{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Via: netip.MustParseAddr("fd00::1")}}},
			Segments: []Segment{{VNI: 10, Gateways: []netip.Prefix{gw4}}}},
		{Name: "b", Segments: []Segment{{VNI: 11, Gateways: []netip.Prefix{gw4}, GatewayMAC: gwMAC}}},
	}})
	for _, want := range []string{
		"tenants[0].l3.vni: 10 is also used by tenants[0].segments[0]",
		"tenants[0].l3.router_mac",
		"tenants[0].l3.routes[0].via: fd00::1 is not of the family",
		"tenants[0].segments[0].gateway_mac",
		"tenants[1].segments[0].gateways: a gateway needs a routed tenant",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
}

// l3Remote is the kernel's router MAC entries of one L3VNI.
type l3Remote struct {
	bridge map[string]bool   // extern_learn MACs on vx<L3VNI>
	vxlan  map[string]string // MAC -> dst
	neigh  map[string]string // IP -> MAC, extern_learn, NOARP on br<L3VNI>
}

func dumpL3Remote(t testing.TB, th *netlink.Handle, vni evpn.VNI) l3Remote {
	t.Helper()
	v := dumpRemote(t, th, vni)
	br, err := th.LinkByName(bridgeName(vni))
	if err != nil {
		t.Fatal(err)
	}
	out := l3Remote{bridge: v.bridge, vxlan: v.vxlan, neigh: map[string]string{}}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		ns, err := th.NeighList(br.Attrs().Index, fam)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ns {
			if n.Flags&unix.NTF_EXT_LEARNED != 0 && n.State&unix.NUD_NOARP != 0 {
				out.neigh[familyAddr(fam, n.IP)] = n.HardwareAddr.String()
			}
		}
	}
	return out
}

func TestPrivilegedL3UpdateSync(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	x, l, prefix := singleHost(t)
	workload(t, x, "p1", "fl-p1-"+suffix(), "")
	if err := l.Set(ctx, routedConfig(prefix, x.vtep)); err != nil {
		t.Fatal(err)
	}
	ns := prefix + "ta"
	th := tenantHandle(t, ns)
	vB, vC := netip.MustParseAddr("10.77.0.2"), netip.MustParseAddr("10.77.0.3")
	p4, p6 := netip.MustParsePrefix("10.10.0.0/16"), netip.MustParsePrefix("2001:db8:10::/48")
	e4, e6 := netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("2001:db8:20::/48")
	h4 := netip.MustParsePrefix("172.31.1.77/32") // a remote host in a local subnet
	add := evpn.Intents{
		RMACs: []evpn.RouterMAC{{VNI: 5000, VTEP: vB, MAC: rmacB}, {VNI: 5000, VTEP: vC, MAC: rmacC}, {VNI: 999, VTEP: vB, MAC: rmacB}},
		Routes: []evpn.L3Route{
			{VNI: 5000, Prefix: p4, NextHops: []netip.Addr{vB}},
			{VNI: 5000, Prefix: p6, NextHops: []netip.Addr{vB}},
			{VNI: 5000, Prefix: e4, NextHops: []netip.Addr{vC, vB}},
			{VNI: 5000, Prefix: e6, NextHops: []netip.Addr{vB, vC}},
			{VNI: 5000, Prefix: h4, NextHops: []netip.Addr{vC}},
			{VNI: 999, Prefix: p4, NextHops: []netip.Addr{vB}},
		},
	}
	if err := l.Update(ctx, evpn.Diff{Add: add}); err != nil {
		t.Fatalf("update: %v", err)
	}
	if err := l.Update(ctx, evpn.Diff{Add: add}); err != nil {
		t.Fatalf("repeated update: %v", err)
	}
	v := dumpL3Remote(t, th, 5000)
	if !v.bridge[rmacB.String()] || !v.bridge[rmacC.String()] || v.vxlan[rmacB.String()] != "10.77.0.2" || v.vxlan[rmacC.String()] != "10.77.0.3" {
		t.Errorf("router mac fdb: %+v", v)
	}
	want := map[string]string{"10.77.0.2": rmacB.String(), "::ffff:10.77.0.2": rmacB.String(), "10.77.0.3": rmacC.String(), "::ffff:10.77.0.3": rmacC.String()}
	for ip, mac := range want {
		if v.neigh[ip] != mac {
			t.Errorf("router mac neighbor %s: %q, want %s (all %v)", ip, v.neigh[ip], mac, v.neigh)
		}
	}
	routes := routesOf(t, th)
	check := func(p netip.Prefix, hops ...string) {
		t.Helper()
		r, ok := routes[p.String()]
		if !ok {
			t.Errorf("route %v missing", p)
			return
		}
		slices.Sort(hops)
		if r.proto != routeProto || !slices.Equal(r.hops, hops) || !r.onlink || slices.ContainsFunc(r.dev, func(d string) bool { return d != "br5000" }) {
			t.Errorf("route %v: %+v, want via %v dev br5000 onlink proto evpn", p, r, hops)
		}
	}
	check(p4, "10.77.0.2")
	check(p6, "::ffff:10.77.0.2")
	check(e4, "10.77.0.2", "10.77.0.3")
	check(e6, "::ffff:10.77.0.2", "::ffff:10.77.0.3")
	check(h4, "10.77.0.3")
	if r := routes["172.31.1.0/24"]; r.proto != unix.RTPROT_KERNEL {
		t.Errorf("connected route changed: %+v", r)
	}
	if s := l.Stats(); s.RemoteRoutes != 5 || s.RouterMACs != 2 {
		t.Errorf("stats %+v", s)
	}

	// ECMP shrinks to one next hop in place; a route and a router MAC go.
	if err := l.Update(ctx, evpn.Diff{
		Add: evpn.Intents{Routes: []evpn.L3Route{{VNI: 5000, Prefix: e4, NextHops: []netip.Addr{vC}}, {VNI: 5000, Prefix: e6, NextHops: []netip.Addr{vC}}}},
		Del: evpn.Intents{Routes: []evpn.L3Route{{VNI: 5000, Prefix: p4}, {VNI: 5000, Prefix: e4}}, RMACs: []evpn.RouterMAC{{VNI: 5000, VTEP: vB, MAC: rmacB}}},
	}); err != nil {
		t.Fatalf("replace/delete: %v", err)
	}
	routes = routesOf(t, th)
	if _, ok := routes[p4.String()]; ok {
		t.Errorf("deleted route %v still present", p4)
	}
	check(e4, "10.77.0.3")
	check(e6, "::ffff:10.77.0.3")
	v = dumpL3Remote(t, th, 5000)
	if v.bridge[rmacB.String()] || v.vxlan[rmacB.String()] != "" || v.neigh["10.77.0.2"] != "" || v.neigh["::ffff:10.77.0.2"] != "" || v.neigh["10.77.0.3"] != rmacC.String() {
		t.Errorf("after router mac delete: %+v", v)
	}

	// Routes evpnd did not make, and a stale evpnd route.
	run(t, "ip", "-n", ns, "route", "add", "10.30.0.0/16", "via", "172.31.1.5", "proto", "static")
	run(t, "ip", "-n", ns, "route", "add", "10.40.0.0/16", "via", "172.31.1.6", "proto", "bgp")
	stale := netip.MustParsePrefix("10.50.0.0/16")
	if err := l.Update(ctx, evpn.Diff{Add: evpn.Intents{Routes: []evpn.L3Route{{VNI: 5000, Prefix: stale, NextHops: []netip.Addr{vC}}}}}); err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "-n", ns, "neigh", "replace", "10.77.0.9", "lladdr", "02:00:00:00:50:09", "dev", "br5000", "nud", "noarp", "extern_learn")
	full := evpn.Intents{
		RMACs: []evpn.RouterMAC{{VNI: 5000, VTEP: vB, MAC: rmacB}, {VNI: 5000, VTEP: vC, MAC: rmacC}},
		Routes: []evpn.L3Route{
			{VNI: 5000, Prefix: p4, NextHops: []netip.Addr{vB, vC}},
			{VNI: 5000, Prefix: e6, NextHops: []netip.Addr{vC}},
			{VNI: 5000, Prefix: h4, NextHops: []netip.Addr{vC}},
		},
	}
	if err := l.Sync(ctx, full); err != nil {
		t.Fatalf("sync: %v", err)
	}
	routes = routesOf(t, th)
	for _, p := range []netip.Prefix{stale, p6, e4} {
		if _, ok := routes[p.String()]; ok {
			t.Errorf("stale evpnd route %v survived sync", p)
		}
	}
	check(p4, "10.77.0.2", "10.77.0.3")
	check(e6, "::ffff:10.77.0.3")
	check(h4, "10.77.0.3")
	for _, p := range []string{"10.30.0.0/16", "10.40.0.0/16", "172.31.1.0/24", "2001:db8:1::/64", "10.99.0.0/16"} {
		if _, ok := routes[p]; !ok {
			t.Errorf("route %s that evpnd does not own was removed by sync", p)
		}
	}
	v = dumpL3Remote(t, th, 5000)
	if v.vxlan[rmacB.String()] != "10.77.0.2" || v.neigh["::ffff:10.77.0.2"] != rmacB.String() || v.neigh["10.77.0.9"] != "" || len(v.neigh) != 4 {
		t.Errorf("router macs after sync: %+v", v)
	}
	before := l.Stats().Writes
	if err := l.Sync(ctx, full); err != nil {
		t.Fatal(err)
	}
	if w := l.Stats().Writes - before; w != 0 {
		t.Errorf("converged sync wrote %d entries", w)
	}
	if s := l.Stats(); s.RemoteRoutes != 3 || s.RouterMACs != 2 {
		t.Errorf("stats after sync %+v", s)
	}

	rows, err := l.Routes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Route{}
	for _, r := range rows {
		got[r.Prefix.String()] = r
	}
	for p, proto := range map[string]RouteProtocol{p4.String(): RouteEVPN, e6.String(): RouteEVPN, "10.99.0.0/16": RouteStatic, "172.31.1.0/24": RouteConnected, "2001:db8:1::/64": RouteConnected, "10.40.0.0/16": RouteOther} {
		if got[p].Protocol != proto || got[p].Tenant != "ta" {
			t.Errorf("Routes row %s: %+v, want protocol %s", p, got[p], proto)
		}
	}
	if r := got[p4.String()]; !slices.Equal(r.NextHops, []netip.Addr{vB, vC}) {
		t.Errorf("Routes next hops of %v: %v", p4, r.NextHops)
	}
	if r := got[e6.String()]; !slices.Equal(r.NextHops, []netip.Addr{vC}) || r.Device != "br5000" {
		t.Errorf("Routes row of %v: %+v", e6, r)
	}
}

// routedHost is one side of the routed traffic test.
type routedHost struct {
	x        *host
	l        *Linux
	prefix   string
	wl       string // workload namespace
	vni      evpn.VNI
	rmac     net.HardwareAddr
	net4     netip.Prefix
	net6     netip.Prefix
	gw4, gw6 netip.Prefix
	ip4, ip6 netip.Addr
}

func TestPrivilegedRoutedTraffic(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	sfx := suffix()
	a := &routedHost{x: newHost(t, "fra-"+sfx, netip.MustParseAddr("10.79.0.1")), prefix: "fra" + sfx + "-", wl: "frwa-" + sfx, vni: 100, rmac: rmacA,
		net4: netip.MustParsePrefix("172.31.1.0/24"), net6: netip.MustParsePrefix("2001:db8:1::/64"),
		gw4: netip.MustParsePrefix("172.31.1.254/24"), gw6: netip.MustParsePrefix("2001:db8:1::fe/64"),
		ip4: netip.MustParseAddr("172.31.1.1"), ip6: netip.MustParseAddr("2001:db8:1::1")}
	b := &routedHost{x: newHost(t, "frb-"+sfx, netip.MustParseAddr("10.79.0.2")), prefix: "frb" + sfx + "-", wl: "frwb-" + sfx, vni: 200, rmac: rmacB,
		net4: netip.MustParsePrefix("172.31.2.0/24"), net6: netip.MustParsePrefix("2001:db8:2::/64"),
		gw4: netip.MustParsePrefix("172.31.2.254/24"), gw6: netip.MustParsePrefix("2001:db8:2::fe/64"),
		ip4: netip.MustParseAddr("172.31.2.1"), ip6: netip.MustParseAddr("2001:db8:2::1")}
	wire(t, a.x, b.x)
	for _, s := range []*routedHost{a, b} {
		workload(t, s.x, "pw", s.wl, fmt.Sprintf("%s/24", s.ip4))
		run(t, "ip", "-n", s.wl, "-6", "addr", "add", s.ip6.String()+"/64", "dev", "eth0", "nodad")
		run(t, "ip", "-n", s.wl, "route", "add", "default", "via", s.gw4.Addr().String())
		run(t, "ip", "-n", s.wl, "-6", "route", "add", "default", "via", s.gw6.Addr().String())
		s.l = newFabric(t, s.x)
		cleanupPrefix(t, s.prefix)
		cfg := Config{NetnsPrefix: s.prefix, VTEP: s.x.vtep, Tenants: []Tenant{{
			Name: "t",
			L3:   &TenantL3{VNI: 5000, RouterMAC: s.rmac},
			Segments: []Segment{{Name: "seg", VNI: s.vni, Ports: []string{"pw"},
				Gateways: []netip.Prefix{s.gw4, s.gw6}, GatewayMAC: gwMAC}},
		}}}
		if err := s.l.Set(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	// What the RIB hands each host for the other: the router MAC, and
	// type-5 prefix routes over the L3VNI.
	for _, p := range [][2]*routedHost{{a, b}, {b, a}} {
		local, remote := p[0], p[1]
		if err := local.l.Update(ctx, evpn.Diff{Add: evpn.Intents{
			RMACs: []evpn.RouterMAC{{VNI: 5000, VTEP: remote.x.vtep, MAC: remote.rmac}},
			Routes: []evpn.L3Route{
				{VNI: 5000, Prefix: remote.net4, NextHops: []netip.Addr{remote.x.vtep}},
				{VNI: 5000, Prefix: remote.net6, NextHops: []netip.Addr{remote.x.vtep}},
			},
		}}); err != nil {
			t.Fatal(err)
		}
	}
	tx := func(s *routedHost, vni evpn.VNI) uint64 {
		th := tenantHandle(t, s.prefix+"t")
		link, err := th.LinkByName(vxlanName(vni))
		if err != nil {
			t.Fatal(err)
		}
		return link.Attrs().Statistics.TxPackets
	}
	l3Before, l2Before := tx(a, 5000), tx(a, a.vni)

	for _, dst := range []netip.Addr{b.ip4, b.ip6} {
		addr := netip.AddrPortFrom(dst, 7000).String()
		tcpEcho(t, b.wl, a.wl, addr, "routed over the l3vni to "+dst.String(), func() {
			for _, s := range []*routedHost{a, b} {
				t.Logf("%s routes:\n%s\nneighbors:\n%s", s.prefix, run(t, "ip", "-n", s.prefix+"t", "route", "show"), run(t, "ip", "-n", s.prefix+"t", "neigh", "show"))
			}
		})
	}
	if d := tx(a, 5000) - l3Before; d == 0 {
		t.Errorf("host a's vx5000 sent no packets: traffic was not routed over the l3vni")
	}
	if d := tx(a, a.vni) - l2Before; d != 0 {
		t.Errorf("host a's l2vni device vx%d sent %d packets", a.vni, d)
	}
	if rx := vxlanRxPackets(t, b.prefix+"t", 5000); rx == 0 {
		t.Errorf("host b's vx5000 received nothing")
	}
}

// fdbOn reports whether the bridge holds a dynamic entry for mac on port.
func fdbOn(t testing.TB, th *netlink.Handle, port string, mac net.HardwareAddr) bool {
	t.Helper()
	p, err := th.LinkByName(port)
	if err != nil {
		t.Fatal(err)
	}
	fdb, err := th.NeighList(0, unix.AF_BRIDGE)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range fdb {
		if n.LinkIndex == p.Attrs().Index && n.MasterIndex != 0 && n.HardwareAddr.String() == mac.String() {
			return true
		}
	}
	return false
}

func TestPrivilegedNeighborKeepalive(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	sfx := suffix()
	x := newHost(t, "fk-"+sfx, netip.MustParseAddr("10.80.0.1"))
	peer := newHost(t, "fkw-"+sfx, netip.MustParseAddr("10.80.0.2"))
	wire(t, x, peer)
	prefix := "fk" + sfx + "-"
	cleanupPrefix(t, prefix)
	l, err := New(Options{Logger: testLogger(t), Underlay: &x.ns, NeighborKeepalive: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	live, gone := "fkl-"+sfx, "fkg-"+sfx
	macLive := workload(t, x, "p1", live, "172.31.5.1/24")
	workload(t, x, "p2", gone, "172.31.5.2/24")
	run(t, "ip", "-n", live, "-6", "addr", "add", "2001:db8:5::1/64", "dev", "eth0", "nodad")
	cfg := Config{NetnsPrefix: prefix, VTEP: x.vtep, Tenants: []Tenant{{
		Name: "ta", L3: &TenantL3{VNI: 5000, RouterMAC: rmacA},
		Segments: []Segment{{VNI: 100, Ports: []string{"p1", "p2"}, GatewayMAC: gwMAC,
			Gateways: []netip.Prefix{netip.MustParsePrefix("172.31.5.254/24"), netip.MustParsePrefix("2001:db8:5::fe/64")}}},
	}}}
	if err := l.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	ns := prefix + "ta"
	th := tenantHandle(t, ns)
	// A short bridge ageing time (10 s) and neighbors that go stale after
	// 1-3 s, so the test needs seconds, not minutes; the 3 s keepalive
	// leaves stale windows between probes. The reachable time must stay
	// above delay_first_probe_time: below it the kernel keeps re-probing a
	// once-used neighbor by itself and the test would pass without any
	// keepalive.
	const ageing = 10 * time.Second
	run(t, "ip", "-n", ns, "link", "set", "br100", "type", "bridge", "ageing_time", "1000")
	for _, fam := range []string{"ipv4", "ipv6"} {
		run(t, "ip", "netns", "exec", ns, "sysctl", "-qw",
			"net."+fam+".neigh.br100.base_reachable_time_ms=2000",
			"net."+fam+".neigh.br100.delay_first_probe_time=1")
	}
	// One packet from each workload to its gateway, then silence.
	poke(t, live, "172.31.5.254")
	poke(t, live, "[2001:db8:5::fe]")
	poke(t, gone, "172.31.5.254")
	learned := map[netip.Addr]Learned{}
	for len(learned) < 3 {
		ev := nextLearned(t, l, func(ev Learned) bool { return ev.IP.IsValid() && !ev.Gone })
		learned[ev.IP] = ev
	}
	for ip, ev := range learned {
		if ev.VNI != 100 || ev.Tenant != "ta" || ip.IsLinkLocalUnicast() {
			t.Errorf("learned %v: %+v", ip, ev)
		}
	}
	if ev, ok := learned[netip.MustParseAddr("2001:db8:5::1")]; !ok || ev.MAC.String() != macLive.String() {
		t.Errorf("ipv6 neighbor not learned with its mac: %+v", learned)
	}

	// The gone workload's interface goes down. Its neighbor entry goes
	// STALE when its reachable time runs out and the kernel then leaves it
	// alone, since nothing sends to it: only a keepalive probe can find out
	// it is gone. (Waiting to see STALE first would race the keepalive,
	// which re-probes stale entries every 3 s here.)
	run(t, "ip", "-n", gone, "link", "set", "eth0", "down")
	var goneEv Learned
	deadline := time.After(30 * time.Second)
	for goneEv.IP != netip.MustParseAddr("172.31.5.2") {
		select {
		case ev := <-l.Learned():
			if ev.Gone && ev.IP.IsValid() {
				if ev.IP != netip.MustParseAddr("172.31.5.2") {
					t.Fatalf("live neighbor reported gone: %+v", ev)
				}
				goneEv = ev
			}
		case <-deadline:
			t.Fatal("the downed workload was never reported gone")
		}
	}

	// The silent live workload keeps its FDB entry for three ageing
	// periods: only the keepalive probes make it answer.
	end := time.Now().Add(3 * ageing)
	for time.Now().Before(end) {
		if !fdbOn(t, th, "p1", macLive) {
			t.Fatalf("fdb entry of the silent live workload aged out:\n%s", run(t, "ip", "-n", ns, "neigh", "show", "dev", "br100"))
		}
		select {
		case ev := <-l.Learned():
			if ev.Gone && (ev.MAC.String() == macLive.String()) {
				t.Fatalf("live workload reported gone: %+v", ev)
			}
		case <-time.After(200 * time.Millisecond):
		}
	}
}
