package fabric

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestUplinkSpec(t *testing.T) {
	for _, tc := range []struct {
		in       Uplink
		addr, gw string
		wants6   bool
	}{
		{Uplink{}, "169.254.0.1/30", "169.254.0.2", false},
		{Uplink{Public: []netip.Addr{netip.MustParseAddr("2001:db8::1")}}, "169.254.0.1/30", "169.254.0.2", true},
		{Uplink{Interface: "eth1", Public: []netip.Addr{netip.MustParseAddr("2001:db8::1")}}, "169.254.0.1/30", "169.254.0.2", false},
		{Uplink{Address: netip.MustParsePrefix("192.0.2.1/24")}, "192.0.2.1/24", "192.0.2.2", false},
		{Uplink{Address: netip.MustParsePrefix("192.0.2.9/24")}, "192.0.2.9/24", "192.0.2.1", false},
		{Uplink{Address: netip.MustParsePrefix("192.0.2.0/31")}, "192.0.2.0/31", "192.0.2.1", false},
		{Uplink{Address: netip.MustParsePrefix("192.0.2.1/31")}, "192.0.2.1/31", "192.0.2.0", false},
		{Uplink{Address: netip.MustParsePrefix("2001:db8:e::1/64")}, "2001:db8:e::1/64", "2001:db8:e::2", true},
		{Uplink{Address: netip.MustParsePrefix("192.0.2.1/24"), Gateway: netip.MustParseAddr("192.0.2.254")}, "192.0.2.1/24", "192.0.2.254", false},
	} {
		s := specOf(&tc.in)
		if s.addr.String() != tc.addr || s.gateway.String() != tc.gw || s.wants6() != tc.wants6 {
			t.Errorf("%+v: got %v gw %v wants6 %v, want %s gw %s wants6 %v", tc.in, s.addr, s.gateway, s.wants6(), tc.addr, tc.gw, tc.wants6)
		}
	}
	if n := uplinkPeerName("evpn-a-very-long-tenant-name"); len(n) > unix.IFNAMSIZ-1 || !isUplinkPeerName(n) || n != uplinkPeerName("evpn-a-very-long-tenant-name") {
		t.Errorf("peer name %q: not a stable evu name within IFNAMSIZ", n)
	}
	if uplinkPeerName("evpn-a") == uplinkPeerName("evpn-b") {
		t.Error("peer names of two tenants collide")
	}
}

func TestValidateUplink(t *testing.T) {
	pub := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, a := range s {
			out = append(out, netip.MustParseAddr(a))
		}
		return out
	}
	l3 := &TenantL3{VNI: 5000, RouterMAC: rmacA}
	for _, tc := range []struct {
		name    string
		tenants []Tenant
		want    string // substring of the error; empty: valid
	}{
		{"default", []Tenant{{Name: "a", L3: l3, Uplink: &Uplink{Public: pub("203.0.113.1")}}}, ""},
		{"l2 tenant", []Tenant{{Name: "a", Uplink: &Uplink{}}}, "tenants[0].uplink: an uplink needs a routed tenant"},
		{"gateway outside veth", []Tenant{{Name: "a", L3: l3, Uplink: &Uplink{Gateway: netip.MustParseAddr("10.0.0.1")}}}, "tenants[0].uplink.gateway: 10.0.0.1 is evpnd's side"},
		{"gateway family", []Tenant{{Name: "a", L3: l3, Uplink: &Uplink{Interface: "eth9", Gateway: netip.MustParseAddr("2001:db8::1")}}}, "tenants[0].uplink.gateway"},
		{"host prefix", []Tenant{{Name: "a", L3: l3, Uplink: &Uplink{Address: netip.MustParsePrefix("192.0.2.1/32")}}}, "leaves no room for a gateway"},
		{"bad public", []Tenant{{Name: "a", L3: l3, Uplink: &Uplink{Public: pub("224.0.0.1")}}}, "tenants[0].uplink.public[0]: 224.0.0.1 is not a usable public address"},
		{"shared public", []Tenant{
			{Name: "a", L3: l3, Uplink: &Uplink{Public: pub("203.0.113.1")}},
			{Name: "b", L3: &TenantL3{VNI: 5001, RouterMAC: rmacA}, Uplink: &Uplink{Public: pub("203.0.113.1")}},
		}, "tenants[1].uplink.public[0]: 203.0.113.1 is also tenants[0].uplink.public[0]"},
		{"interface is a port", []Tenant{{Name: "a", L3: l3, Segments: []Segment{{Name: "s", VNI: 10, Ports: []string{"eth1"}}}, Uplink: &Uplink{Interface: "eth1"}}}, `tenants[0].uplink.interface: "eth1" is also tenants[0].segments[0].ports[0]`},
		{"port named uplink", []Tenant{{Name: "a", Segments: []Segment{{Name: "s", VNI: 10, Ports: []string{"uplink"}}}}}, `tenants[0].segments[0].ports[0]: "uplink" is the name of a tenant's uplink`},
		{"interface is evpnd's", []Tenant{{Name: "a", L3: l3, Uplink: &Uplink{Interface: uplinkPeerName("x")}}}, "is not an interface evpnd may move"},
	} {
		err := validate(Config{NetnsPrefix: "evpn-", VTEP: netip.MustParseAddr("10.0.0.1"), Tenants: tc.tenants})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: got %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

// uplinkRoute is a route of the main table as the uplink tests read it.
type uplinkRoute struct {
	hop    string
	dev    string
	proto  int
	metric int
	onlink bool
}

// uplinkRoutesOf lists the routes of the main table of a namespace by
// destination, keeping only the ones with a gateway.
func uplinkRoutesOf(t testing.TB, h *netlink.Handle) map[string]uplinkRoute {
	t.Helper()
	rs, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	out := map[string]uplinkRoute{}
	for _, r := range rs {
		if r.Gw == nil {
			continue
		}
		out[routeDst(r).String()] = uplinkRoute{
			hop:    familyAddr(r.Family, r.Gw),
			dev:    names[r.LinkIndex],
			proto:  int(r.Protocol),
			metric: r.Priority,
			onlink: r.Flags&unix.RTNH_F_ONLINK != 0,
		}
	}
	return out
}

// serveTCP listens on addr inside a namespace and answers every
// connection with the address it came from.
func serveTCP(t testing.TB, nsName, addr string) {
	t.Helper()
	var ln net.Listener
	if err := inNamed(t, nsName, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen %s in %s: %v", addr, nsName, err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap())
			c.Close()
		}
	}()
}

// dialFrom connects from a namespace to addr and returns what the server
// saw as the client's address, or an error.
func dialFrom(t testing.TB, nsName, addr string) (string, error) {
	t.Helper()
	var got string
	err := inNamed(t, nsName, func() error {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		b, err := io.ReadAll(c)
		got = strings.TrimSpace(string(b))
		return err
	})
	return got, err
}

func TestPrivilegedUplink(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	sfx := suffix()
	x := newHost(t, "fh-"+sfx, netip.MustParseAddr("10.77.0.1"))
	out := newHost(t, "fw-"+sfx, netip.MustParseAddr("10.77.0.2"))
	wire(t, x, out)
	run(t, "ip", "-n", x.name, "addr", "add", "2001:db8:77::1/64", "dev", "ul0", "nodad")
	run(t, "ip", "-n", out.name, "addr", "add", "2001:db8:77::2/64", "dev", "ul0", "nodad")
	prefix := "ft" + sfx + "-"
	cleanupPrefix(t, prefix)
	l := newFabric(t, x)

	pub4, pub6 := netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("2001:db8:f::10")
	cfg := routedConfig(prefix, x.vtep)
	cfg.Tenants[0].Uplink = &Uplink{Public: []netip.Addr{pub4, pub6}}
	nsName := prefix + "ta"
	evu := uplinkPeerName(nsName)
	fwd4, fwd6 := "net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"
	if readSysctl(t, x.name, fwd4) != "0" || readSysctl(t, x.name, fwd6) != "0" {
		t.Fatal("a fresh namespace forwards already")
	}

	if err := l.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	th := tenantHandle(t, nsName)
	up, err := th.LinkByName(uplinkName)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := x.h.LinkByName(evu)
	if err != nil {
		t.Fatal(err)
	}
	if up.Type() != "veth" || peer.Type() != "veth" || up.Attrs().ParentIndex != peer.Attrs().Index {
		t.Fatalf("uplink %s (%s) and %s (%s) are not a veth pair", uplinkName, up.Type(), evu, peer.Type())
	}
	addrs := addrsOf(t, nsName, uplinkName)
	if addrs[defaultUplinkAddress] != addrProto || addrs[uplinkLinkLocal] != addrProto {
		t.Errorf("tenant uplink addresses %v, want %v and %v tagged %#x", addrs, defaultUplinkAddress, uplinkLinkLocal, addrProto)
	}
	peerAddrs := addrsOf(t, x.name, evu)
	for _, p := range []string{"169.254.0.2/30", "fe80::2/64"} {
		if _, ok := peerAddrs[netip.MustParsePrefix(p)]; !ok {
			t.Errorf("%s addresses %v, want %s", evu, peerAddrs, p)
		}
	}
	checkTenant := func(want6 bool) {
		t.Helper()
		rs := uplinkRoutesOf(t, th)
		if r := rs["0.0.0.0/0"]; r != (uplinkRoute{hop: "169.254.0.2", dev: uplinkName, proto: uplinkProto, metric: uplinkMetric}) {
			t.Errorf("tenant ipv4 default route %+v", r)
		}
		r6, ok := rs["::/0"]
		if want6 && r6 != (uplinkRoute{hop: "fe80::2", dev: uplinkName, proto: uplinkProto, metric: uplinkMetric}) {
			t.Errorf("tenant ipv6 default route %+v", r6)
		}
		if !want6 && ok {
			t.Errorf("tenant ipv6 default route %+v without ipv6 public addresses", r6)
		}
		// The tenant's static routes are untouched by the uplink.
		if r := rs["10.99.0.0/16"]; r.proto != staticProto {
			t.Errorf("tenant static route %+v", r)
		}
	}
	checkUnderlay := func(want6 bool) {
		t.Helper()
		rs := uplinkRoutesOf(t, x.h)
		if r := rs["203.0.113.10/32"]; r != (uplinkRoute{hop: "169.254.0.1", dev: evu, proto: publicProto, onlink: true}) {
			t.Errorf("underlay route to %v: %+v", pub4, r)
		}
		r6, ok := rs["2001:db8:f::10/128"]
		r6.metric = 0 // the kernel's IPv6 default, 1024
		if want6 && r6 != (uplinkRoute{hop: "fe80::1", dev: evu, proto: publicProto, onlink: true}) {
			t.Errorf("underlay route to %v: %+v", pub6, r6)
		}
		if !want6 && ok {
			t.Errorf("underlay route to removed %v: %+v", pub6, r6)
		}
	}
	checkTenant(true)
	checkUnderlay(true)
	if readSysctl(t, x.name, fwd4) != "1" || readSysctl(t, x.name, fwd6) != "1" {
		t.Error("forwarding is not on in evpnd's namespace")
	}

	// Real traffic from beyond evpnd's namespace: the public addresses sit
	// on the tenant's lo, the outside host routes them to evpnd's host.
	run(t, "ip", "-n", nsName, "addr", "add", pub4.String()+"/32", "dev", "lo")
	run(t, "ip", "-n", nsName, "addr", "add", pub6.String()+"/128", "dev", "lo")
	run(t, "ip", "-n", out.name, "route", "add", pub4.String()+"/32", "via", "10.77.0.1")
	run(t, "ip", "-n", out.name, "route", "add", pub6.String()+"/128", "via", "2001:db8:77::1")
	serveTCP(t, nsName, ":7000")
	for client, target := range map[string]string{
		"10.77.0.2":      "203.0.113.10:7000",
		"2001:db8:77::2": "[2001:db8:f::10]:7000",
	} {
		got, err := dialFrom(t, out.name, target)
		if err != nil || got != client {
			t.Errorf("outside host to %s: saw client %q, err %v; want %s", target, got, err, client)
		}
	}

	// Idempotent: nothing is recreated or rewritten.
	before := uplinkRoutesOf(t, x.h)
	if err := l.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	up2, err := th.LinkByName(uplinkName)
	if err != nil || up2.Attrs().Index != up.Attrs().Index {
		t.Fatalf("uplink recreated by an identical Set (%v)", err)
	}
	if after := uplinkRoutesOf(t, x.h); !mapsEqual(before, after) {
		t.Errorf("underlay routes changed by an identical Set:\n%v\n%v", before, after)
	}
	checkTenant(true)

	// A public address goes: its route goes, and the IPv6 forwarding evpnd
	// turned on goes back off; someone else's route stays.
	run(t, "ip", "-n", x.name, "route", "add", "198.51.100.1/32", "via", "169.254.0.1", "dev", evu, "onlink", "proto", "static")
	cfg.Tenants[0].Uplink.Public = []netip.Addr{pub4}
	if err := l.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	checkTenant(false)
	checkUnderlay(false)
	if _, ok := uplinkRoutesOf(t, x.h)["198.51.100.1/32"]; !ok {
		t.Error("Set removed a route it did not make")
	}
	if readSysctl(t, x.name, fwd4) != "1" || readSysctl(t, x.name, fwd6) != "0" {
		t.Errorf("forwarding ipv4 %s ipv6 %s, want 1 and 0", readSysctl(t, x.name, fwd4), readSysctl(t, x.name, fwd6))
	}
	if got, err := dialFrom(t, out.name, "203.0.113.10:7000"); err != nil || got != "10.77.0.2" {
		t.Errorf("after removing the ipv6 address: saw %q, err %v", got, err)
	}

	// After a restart evpnd adopts the uplink as it is.
	l.Close()
	l = newFabric(t, x)
	if err := l.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if up2, err := th.LinkByName(uplinkName); err != nil || up2.Attrs().Index != up.Attrs().Index {
		t.Fatalf("uplink recreated after a restart (%v)", err)
	}
	checkTenant(false)
	checkUnderlay(false)

	// The uplink goes: both ends, the default and public routes go.
	cfg.Tenants[0].Uplink = nil
	if err := l.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := th.LinkByName(uplinkName); !isNotFound(err) {
		t.Errorf("tenant uplink still there (%v)", err)
	}
	if _, err := x.h.LinkByName(evu); !isNotFound(err) {
		t.Errorf("%s still there (%v)", evu, err)
	}
	for dst, r := range uplinkRoutesOf(t, th) {
		if r.proto == uplinkProto {
			t.Errorf("tenant uplink route %s left: %+v", dst, r)
		}
	}
	if _, ok := uplinkRoutesOf(t, x.h)["203.0.113.10/32"]; ok {
		t.Error("public route left in evpnd's namespace")
	}
	// The restarted instance found forwarding on, so it leaves it on.
	if readSysctl(t, x.name, fwd4) != "1" {
		t.Error("forwarding evpnd did not turn on was turned off")
	}
	if _, err := dialFrom(t, out.name, "203.0.113.10:7000"); err == nil {
		t.Error("public address still reachable without an uplink")
	}
}

func mapsEqual[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestPrivilegedUplinkInterface(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	x, l, prefix := singleHost(t)
	// The upstream router, reached through ext0 of evpnd's namespace.
	router := "fr-" + suffix()
	testNetns(t, router)
	run(t, "ip", "-n", x.name, "link", "add", "ext0", "type", "veth", "peer", "name", "eth0", "netns", router)
	run(t, "ip", "-n", x.name, "link", "set", "ext0", "up")
	run(t, "ip", "-n", router, "addr", "add", "192.0.2.2/24", "dev", "eth0")
	run(t, "ip", "-n", router, "link", "set", "eth0", "up")
	run(t, "ip", "-n", router, "route", "add", "198.51.100.7/32", "via", "192.0.2.1")
	ext0, err := x.h.LinkByName("ext0")
	if err != nil {
		t.Fatal(err)
	}

	cfg := routedConfig(prefix, x.vtep)
	cfg.Tenants[0].Uplink = &Uplink{Interface: "ext0", Address: netip.MustParsePrefix("192.0.2.1/24"), Public: []netip.Addr{netip.MustParseAddr("198.51.100.7")}}
	nsName := prefix + "ta"
	if err := l.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		th := tenantHandle(t, nsName)
		up, err := th.LinkByName(uplinkName)
		if err != nil {
			t.Fatal(err)
		}
		if up.Attrs().HardwareAddr.String() != ext0.Attrs().HardwareAddr.String() || up.Attrs().Alias != uplinkAlias+"ext0" || up.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("tenant uplink %s alias %q up %v is not ext0 moved in", up.Attrs().HardwareAddr, up.Attrs().Alias, up.Attrs().Flags&net.FlagUp != 0)
		}
		if _, err := x.h.LinkByName("ext0"); !isNotFound(err) {
			t.Errorf("ext0 still in evpnd's namespace (%v)", err)
		}
		if a := addrsOf(t, nsName, uplinkName); a[netip.MustParsePrefix("192.0.2.1/24")] != addrProto || len(a) > 2 {
			t.Errorf("uplink addresses %v", a)
		}
		if r := uplinkRoutesOf(t, th)["0.0.0.0/0"]; r != (uplinkRoute{hop: "192.0.2.2", dev: uplinkName, proto: uplinkProto, metric: uplinkMetric}) {
			t.Errorf("tenant default route %+v", r)
		}
		for dst, r := range uplinkRoutesOf(t, x.h) {
			if r.proto == publicProto {
				t.Errorf("public route %s %+v in evpnd's namespace for an interface uplink", dst, r)
			}
		}
	}
	check()
	if err := l.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	check()

	run(t, "ip", "-n", nsName, "addr", "add", "198.51.100.7/32", "dev", "lo")
	serveTCP(t, nsName, "198.51.100.7:7001")
	if got, err := dialFrom(t, router, "198.51.100.7:7001"); err != nil || got != "192.0.2.2" {
		t.Errorf("upstream router to the tenant: saw %q, err %v", got, err)
	}

	returned := func(what string) {
		t.Helper()
		back, err := x.h.LinkByName("ext0")
		if err != nil {
			t.Fatalf("%s: ext0 not back in evpnd's namespace: %v", what, err)
		}
		if back.Attrs().Alias != "" || back.Attrs().Flags&net.FlagUp == 0 || back.Attrs().HardwareAddr.String() != ext0.Attrs().HardwareAddr.String() {
			t.Errorf("%s: ext0 back with alias %q up %v", what, back.Attrs().Alias, back.Attrs().Flags&net.FlagUp != 0)
		}
	}
	// Dropping the uplink moves the interface back under its name.
	cfg.Tenants[0].Uplink = nil
	if err := l.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	returned("uplink removed")
	if _, err := tenantHandle(t, nsName).LinkByName(uplinkName); !isNotFound(err) {
		t.Errorf("tenant uplink still there (%v)", err)
	}

	// So does removing the tenant, and switching to a veth uplink.
	cfg.Tenants[0].Uplink = &Uplink{Interface: "ext0", Address: netip.MustParsePrefix("192.0.2.1/24")}
	if err := l.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	check()
	cfg.Tenants[0].Uplink = &Uplink{}
	if err := l.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	returned("veth uplink instead")
	if up, err := tenantHandle(t, nsName).LinkByName(uplinkName); err != nil || up.Type() != "veth" {
		t.Errorf("tenant uplink is not a veth (%v)", err)
	}
	cfg.Tenants[0].Uplink = &Uplink{Interface: "ext0", Address: netip.MustParsePrefix("192.0.2.1/24")}
	if err := l.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	check()
	if _, err := x.h.LinkByName(uplinkPeerName(nsName)); !isNotFound(err) {
		t.Errorf("veth left after switching to an interface (%v)", err)
	}
	cfg.Tenants = nil
	if err := l.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	returned("tenant removed")
	if slices.Contains(must(listNetns(prefix)), nsName) {
		t.Error("tenant namespace left")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
