package evpn

import (
	"net"
	"net/netip"
	"reflect"
	"slices"
	"testing"
)

var (
	rmacA = net.HardwareAddr{2, 0xaa, 0, 0, 0, 0x0a}
	rmacB = net.HardwareAddr{2, 0xaa, 0, 0, 0, 0x0b}
	rmacC = net.HardwareAddr{2, 0xaa, 0, 0, 0, 0x0c}
	rmacS = net.HardwareAddr{2, 0xee, 0, 0, 0, 1}
)

const l3vni VNI = 5000

func autoL3(local ...string) L3 {
	var ps []netip.Prefix
	for _, p := range local {
		ps = append(ps, netip.MustParsePrefix(p))
	}
	return NewL3(self, 65000, PresetFRR, 500, "t", l3vni, nil, nil, rmacS, ps)
}

// prefixRoute is a type-5 route of a remote VTEP as it arrives from BGP.
func prefixRoute(vtep netip.Addr, rdIndex uint16, p string, rmac net.HardwareAddr, rts ...RT) Route {
	return Route{
		NLRI:      &Prefix{RD: rdOf(vtep, rdIndex), Prefix: netip.MustParsePrefix(p), Label: l3vni},
		NextHop:   vtep,
		RTs:       rts,
		Encap:     EncapVXLAN,
		RouterMAC: rmac,
	}
}

// hostRoute is a remote symmetric-IRB type-2 MAC+IP route: L2 RT of VNI
// 100, L3 RT of l3vni and the router MAC.
func hostRoute(vtep netip.Addr, mac net.HardwareAddr, ip string, seq uint32, rmac net.HardwareAddr) Route {
	r := macRoute(vtep, mac, ip, seq, AutoRT(PresetFRR, 65001, 100), AutoRT(PresetFRR, 65001, l3vni))
	r.NLRI.(*MACIP).Labels = []VNI{100, l3vni}
	r.RouterMAC = rmac
	return r
}

func l3route(p string, nhs ...netip.Addr) L3Route {
	return L3Route{VNI: l3vni, Prefix: netip.MustParsePrefix(p), NextHops: nhs}
}

func rmacOf(vtep netip.Addr, mac net.HardwareAddr) RouterMAC {
	return RouterMAC{VNI: l3vni, VTEP: vtep, MAC: mac}
}

func TestNewL3(t *testing.T) {
	rid := netip.MustParseAddr("10.0.0.1")
	local := []netip.Prefix{netip.MustParsePrefix("10.1.1.1/24"), netip.MustParsePrefix("2001:db8::1/64")}
	tests := []struct {
		name       string
		asn        uint32
		preset     Preset
		imp, exp   []RT
		wantExport []RT
		wantAuto   bool
	}{
		{name: "auto frr 4-byte asn", asn: 4200000001, preset: PresetFRR, wantExport: []RT{NewRT0(59905, 5000)}, wantAuto: true},
		{name: "auto nxos 4-byte asn", asn: 4200000001, preset: PresetNXOS, wantExport: []RT{NewRT0(23456, 5000)}, wantAuto: true},
		{name: "auto rfc8365", asn: 65000, preset: PresetRFC8365, wantExport: []RT{AutoRT(PresetRFC8365, 65000, 5000)}, wantAuto: true},
		{
			name: "explicit", asn: 65000, preset: PresetFRR,
			imp: []RT{NewRT0(1, 1)}, exp: []RT{NewRT0(2, 2), NewRT0(3, 3)},
			wantExport: []RT{NewRT0(2, 2), NewRT0(3, 3)},
		},
		{name: "explicit export, auto import", asn: 65000, preset: PresetFRR, exp: []RT{NewRT0(2, 2)}, wantExport: []RT{NewRT0(2, 2)}, wantAuto: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mac := slices.Clone(rmacS)
			l := NewL3(rid, tt.asn, tt.preset, 7, "acme", 5000, tt.imp, tt.exp, mac, local)
			if l.RD != NewRD1(rid, 7) || l.RD.String() != "10.0.0.1:7" {
				t.Errorf("RD = %s, want 10.0.0.1:7", l.RD)
			}
			if l.Tenant != "acme" || l.VNI != 5000 {
				t.Errorf("Tenant %q VNI %d", l.Tenant, l.VNI)
			}
			if !reflect.DeepEqual(l.Export, tt.wantExport) {
				t.Errorf("Export = %v, want %v", l.Export, tt.wantExport)
			}
			if l.AutoImport != tt.wantAuto || !reflect.DeepEqual(l.Import, slices.Clone(tt.imp)) {
				t.Errorf("AutoImport = %v, Import = %v; want %v, %v", l.AutoImport, l.Import, tt.wantAuto, tt.imp)
			}
			wantLocal := []netip.Prefix{netip.MustParsePrefix("10.1.1.0/24"), netip.MustParsePrefix("2001:db8::/64")}
			if !reflect.DeepEqual(l.Local, wantLocal) {
				t.Errorf("Local = %v, want the masked %v", l.Local, wantLocal)
			}
			mac[0] = 0xff
			if !reflect.DeepEqual(l.RouterMAC, rmacS) {
				t.Error("NewL3 kept the caller's router MAC slice")
			}
			if tt.wantAuto {
				if !l.Imports([]RT{NewRT0(65099, 5000)}) || l.Imports([]RT{NewRT0(65099, 100)}) {
					t.Error("auto import must take any ASN with local admin 5000, and only that")
				}
			} else if l.Imports([]RT{NewRT0(65000, 5000)}) || !l.Imports([]RT{NewRT0(9, 9), NewRT0(1, 1)}) {
				t.Error("explicit import must match exactly the listed RTs")
			}
		})
	}
}

func TestSegmentMACIPRouteL3(t *testing.T) {
	vtep := netip.MustParseAddr("192.0.2.10")
	rid := netip.MustParseAddr("10.0.0.1")
	l3 := NewL3(rid, 65000, PresetFRR, 500, "acme", 5000, nil, nil, rmacS, nil)
	seg := NewSegment(rid, 65000, PresetFRR, 1, "acme", "web", 100, nil, []RT{NewRT0(1, 100), NewRT0(2, 100)})
	seg.L3 = &l3
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	ip4, ip6 := netip.MustParseAddr("10.1.1.1"), netip.MustParseAddr("2001:db8::1")

	tests := []struct {
		name   string
		seg    Segment
		ip     netip.Addr
		labels []VNI
		rts    []RT
		rmac   net.HardwareAddr
	}{
		{name: "mac+ipv4 routed", seg: seg, ip: ip4, labels: []VNI{100, 5000}, rts: []RT{NewRT0(1, 100), NewRT0(2, 100), NewRT0(65000, 5000)}, rmac: rmacS},
		{name: "mac+ipv6 routed", seg: seg, ip: ip6, labels: []VNI{100, 5000}, rts: []RT{NewRT0(1, 100), NewRT0(2, 100), NewRT0(65000, 5000)}, rmac: rmacS},
		{name: "mac only routed", seg: seg, labels: []VNI{100}, rts: []RT{NewRT0(1, 100), NewRT0(2, 100)}},
		{name: "mac+ip bridged only", seg: func() Segment { s := seg; s.L3 = nil; return s }(), ip: ip4, labels: []VNI{100}, rts: []RT{NewRT0(1, 100), NewRT0(2, 100)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.seg.MACIPRoute(vtep, mac, tt.ip, 2)
			want := Route{
				NLRI:      &MACIP{RD: seg.RD, MAC: mac, IP: tt.ip, Labels: tt.labels},
				NextHop:   vtep,
				RTs:       tt.rts,
				Encap:     EncapVXLAN,
				Mobility:  &Mobility{Seq: 2},
				RouterMAC: tt.rmac,
			}
			if !reflect.DeepEqual(r, want) {
				t.Fatalf("MACIPRoute:\n got %+v\nwant %+v", r, want)
			}
			b, err := MarshalNLRI(r.NLRI)
			if err != nil {
				t.Fatalf("does not encode: %v", err)
			}
			back, _, err := ParseNLRI(b)
			if err != nil || !reflect.DeepEqual(back, r.NLRI) {
				t.Fatalf("round trip: %+v, %v", back, err)
			}
			var got Route
			got.SetExtCommunities(r.ExtCommunities())
			if !reflect.DeepEqual(got.RTs, tt.rts) || !reflect.DeepEqual(got.RouterMAC, tt.rmac) {
				t.Fatalf("communities carry RTs %v, router MAC %v", got.RTs, got.RouterMAC)
			}
		})
	}
	// The route does not share the L3's slices.
	r := seg.MACIPRoute(vtep, mac, ip4, 0)
	r.RTs[2], r.RouterMAC[0] = NewRT0(9, 9), 0xff
	if l3.Export[0] != NewRT0(65000, 5000) || l3.RouterMAC[0] != rmacS[0] {
		t.Fatal("MACIPRoute shares the L3's slices")
	}
}

func TestL3PrefixRoute(t *testing.T) {
	vtep := netip.MustParseAddr("192.0.2.10")
	l3 := NewL3(netip.MustParseAddr("10.0.0.1"), 65000, PresetNXOS, 500, "acme", 5000, nil, []RT{NewRT0(65000, 5000), NewRT0(1, 1)}, rmacS, nil)
	for _, tt := range []struct{ in, want string }{
		{"10.1.1.77/24", "10.1.1.0/24"},
		{"0.0.0.0/0", "0.0.0.0/0"},
		{"10.1.1.1/32", "10.1.1.1/32"},
		{"2001:db8:1::5/48", "2001:db8:1::/48"},
		{"2001:db8::1/128", "2001:db8::1/128"},
	} {
		t.Run(tt.in, func(t *testing.T) {
			r := l3.PrefixRoute(vtep, netip.MustParsePrefix(tt.in))
			want := Route{
				NLRI:      &Prefix{RD: l3.RD, Prefix: netip.MustParsePrefix(tt.want), Label: 5000},
				NextHop:   vtep,
				RTs:       []RT{NewRT0(65000, 5000), NewRT0(1, 1)},
				Encap:     EncapVXLAN,
				RouterMAC: rmacS,
			}
			if !reflect.DeepEqual(r, want) {
				t.Fatalf("PrefixRoute:\n got %+v\nwant %+v", r, want)
			}
			b, err := MarshalNLRI(r.NLRI)
			if err != nil {
				t.Fatalf("does not encode: %v", err)
			}
			// Gateway IP 0 on the wire: the bytes before the label are zero.
			if gw := b[len(b)-3-addrLen(r.NLRI.(*Prefix).Prefix.Addr()) : len(b)-3]; slices.ContainsFunc(gw, func(x byte) bool { return x != 0 }) {
				t.Fatalf("gateway on the wire %x, want zero", gw)
			}
			n, used, err := ParseNLRI(b)
			if err != nil || used != len(b) || !reflect.DeepEqual(n, r.NLRI) {
				t.Fatalf("ParseNLRI = %+v, %d, %v; want %+v", n, used, err, r.NLRI)
			}
			ecs, err := ParseExtCommunities(MarshalExtCommunities(r.ExtCommunities()))
			if err != nil {
				t.Fatal(err)
			}
			back := Route{NLRI: n, NextHop: vtep}
			back.SetExtCommunities(ecs)
			if !reflect.DeepEqual(back, r) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", back, r)
			}
			if ecs[len(ecs)-1].String() != "Rmac:02:ee:00:00:00:01" {
				t.Fatalf("communities %v end without the router MAC", ecs)
			}
		})
	}
}

func TestRIBPrefixImport(t *testing.T) {
	explicit := NewL3(self, 65000, PresetFRR, 600, "u", 6000, []RT{NewRT0(1, 6000)}, nil, rmacS, nil)
	rib := NewRIB(self)
	checkDiff(t, "no routes yet", rib.SetL3([]L3{autoL3(), explicit}), Intents{}, Intents{})
	d := rib.Update([]Route{
		prefixRoute(vtepA, 1, "10.2.0.0/16", rmacA, AutoRT(PresetFRR, 65001, l3vni)),
		prefixRoute(vtepB, 1, "10.3.0.0/16", rmacB, AutoRT(PresetFRR, 4200000002, l3vni)),
		prefixRoute(vtepC, 1, "10.4.0.0/16", rmacC, AutoRT(PresetRFC8365, 65003, l3vni)),
		// Explicit: the auto RT of 6000 is not taken, the listed one is.
		prefixRoute(vtepA, 2, "10.5.0.0/16", rmacA, AutoRT(PresetFRR, 65001, 6000)),
		prefixRoute(vtepB, 2, "10.6.0.0/16", rmacB, NewRT0(9, 9), NewRT0(1, 6000)),
		// An L2 RT imports nothing into an L3.
		prefixRoute(vtepC, 2, "10.7.0.0/16", rmacC, AutoRT(PresetFRR, 65001, 100)),
	})
	r6 := l3route("10.6.0.0/16", vtepB)
	r6.VNI = 6000
	checkDiff(t, "import", d, Intents{
		Routes: []L3Route{l3route("10.2.0.0/16", vtepA), l3route("10.3.0.0/16", vtepB), l3route("10.4.0.0/16", vtepC), r6},
		RMACs:  []RouterMAC{rmacOf(vtepA, rmacA), rmacOf(vtepB, rmacB), rmacOf(vtepC, rmacC), {VNI: 6000, VTEP: vtepB, MAC: rmacB}},
	}, Intents{})
	if rib.Len() != 6 {
		t.Fatalf("Len %d: routes not imported must still be held", rib.Len())
	}
	in := rib.Intents()
	if len(in.Routes) != 4 || in.Routes[3].VNI != 6000 || len(in.RMACs) != 4 || in.RMACs[3].VNI != 6000 {
		t.Fatalf("Intents not sorted by VNI: %+v", in)
	}
	// Own routes are ignored.
	if d := rib.Update([]Route{prefixRoute(self, 1, "10.8.0.0/16", rmacS, AutoRT(PresetFRR, 65000, l3vni))}); !d.Empty() || rib.Len() != 6 {
		t.Fatalf("own type-5: diff %+v, Len %d", d, rib.Len())
	}
}

func TestRIBPrefixECMP(t *testing.T) {
	rib := NewRIB(self)
	rib.SetL3([]L3{autoL3()})
	rt := AutoRT(PresetFRR, 65001, l3vni)
	const p = "10.2.0.0/16"
	b := prefixRoute(vtepB, 1, p, rmacB, rt)
	a1 := prefixRoute(vtepA, 1, p, rmacA, rt)
	a2 := prefixRoute(vtepA, 2, p, rmacA, rt)
	c := prefixRoute(vtepC, 1, p, rmacC, rt)

	checkDiff(t, "first vtep", rib.Update([]Route{b}),
		Intents{Routes: []L3Route{l3route(p, vtepB)}, RMACs: []RouterMAC{rmacOf(vtepB, rmacB)}}, Intents{})
	checkDiff(t, "second vtep replaces the route with both, sorted", rib.Update([]Route{a1}),
		Intents{Routes: []L3Route{l3route(p, vtepA, vtepB)}, RMACs: []RouterMAC{rmacOf(vtepA, rmacA)}}, Intents{})
	checkDiff(t, "same vtep, another RD", rib.Update([]Route{a2}), Intents{}, Intents{})
	checkDiff(t, "third", rib.Update([]Route{c}),
		Intents{Routes: []L3Route{l3route(p, vtepA, vtepB, vtepC)}, RMACs: []RouterMAC{rmacOf(vtepC, rmacC)}}, Intents{})
	checkDiff(t, "B goes", rib.Update([]Route{withdraw(b)}),
		Intents{Routes: []L3Route{l3route(p, vtepA, vtepC)}}, Intents{RMACs: []RouterMAC{rmacOf(vtepB, rmacB)}})
	checkDiff(t, "one of A's RDs goes", rib.Update([]Route{withdraw(a1)}), Intents{}, Intents{})
	checkDiff(t, "C goes and A's last in one batch", rib.Update([]Route{withdraw(c), withdraw(a2)}), Intents{},
		Intents{Routes: []L3Route{l3route(p, vtepA, vtepC)}, RMACs: []RouterMAC{rmacOf(vtepA, rmacA), rmacOf(vtepC, rmacC)}})
	if rib.Intents().Len() != 0 || rib.Len() != 0 {
		t.Fatalf("left over: %+v, Len %d", rib.Intents(), rib.Len())
	}
}

func TestRIBRouterMACLatestWins(t *testing.T) {
	rib := NewRIB(self)
	rib.SetL3([]L3{autoL3()})
	rt := AutoRT(PresetFRR, 65001, l3vni)
	old := prefixRoute(vtepA, 1, "10.2.0.0/16", rmacA, rt)
	checkDiff(t, "first", rib.Update([]Route{old}),
		Intents{Routes: []L3Route{l3route("10.2.0.0/16", vtepA)}, RMACs: []RouterMAC{rmacOf(vtepA, rmacA)}}, Intents{})
	// VTEP A changed its router MAC; its routes are re-advertised one by one.
	renewed := prefixRoute(vtepA, 1, "10.3.0.0/16", rmacB, rt)
	checkDiff(t, "a route with a new router mac replaces it", rib.Update([]Route{renewed}),
		Intents{Routes: []L3Route{l3route("10.3.0.0/16", vtepA)}, RMACs: []RouterMAC{rmacOf(vtepA, rmacB)}}, Intents{})
	checkDiff(t, "the old route again is the latest", rib.Update([]Route{old}),
		Intents{RMACs: []RouterMAC{rmacOf(vtepA, rmacA)}}, Intents{})
	checkDiff(t, "the old route goes", rib.Update([]Route{withdraw(old)}),
		Intents{RMACs: []RouterMAC{rmacOf(vtepA, rmacB)}}, Intents{Routes: []L3Route{l3route("10.2.0.0/16", vtepA)}})
	checkDiff(t, "the last route goes", rib.Update([]Route{withdraw(renewed)}),
		Intents{}, Intents{Routes: []L3Route{l3route("10.3.0.0/16", vtepA)}, RMACs: []RouterMAC{rmacOf(vtepA, rmacB)}})
}

func TestRIBPrefixLocalSuppressed(t *testing.T) {
	rib := NewRIB(self)
	rib.SetL3([]L3{autoL3("10.1.0.0/24", "2001:db8:1::/48")})
	rt := AutoRT(PresetFRR, 65001, l3vni)
	d := rib.Update([]Route{
		prefixRoute(vtepA, 1, "10.1.0.0/24", rmacA, rt),       // ours: not installed
		prefixRoute(vtepA, 2, "10.1.0.128/25", rmacA, rt),     // more specific: installed
		prefixRoute(vtepB, 1, "10.2.0.0/24", rmacB, rt),       // different: installed
		prefixRoute(vtepC, 1, "2001:db8:1::/48", rmacC, rt),   // ours
		prefixRoute(vtepC, 2, "2001:db8:1:5::/64", rmacC, rt), // more specific
	})
	checkDiff(t, "local prefixes win", d, Intents{
		Routes: []L3Route{l3route("10.1.0.128/25", vtepA), l3route("10.2.0.0/24", vtepB), l3route("2001:db8:1:5::/64", vtepC)},
		RMACs:  []RouterMAC{rmacOf(vtepA, rmacA), rmacOf(vtepB, rmacB), rmacOf(vtepC, rmacC)},
	}, Intents{})
	checkDiff(t, "10.1.0.0/24 no longer local", rib.SetL3([]L3{autoL3("2001:db8:1::/48")}),
		Intents{Routes: []L3Route{l3route("10.1.0.0/24", vtepA)}}, Intents{})
	checkDiff(t, "10.2.0.0/24 now local", rib.SetL3([]L3{autoL3("2001:db8:1::/48", "10.2.0.0/24")}),
		Intents{}, Intents{Routes: []L3Route{l3route("10.2.0.0/24", vtepB)}, RMACs: []RouterMAC{rmacOf(vtepB, rmacB)}})
	if d := rib.SetL3([]L3{autoL3("2001:db8:1::/48", "10.2.0.0/24")}); !d.Empty() {
		t.Fatalf("same L3s again changed %+v", d)
	}
}

func TestRIBPrefixNoRouterMAC(t *testing.T) {
	rib := NewRIB(self)
	rib.SetL3([]L3{autoL3()})
	rt := AutoRT(PresetFRR, 65001, l3vni)
	d := rib.Update([]Route{
		prefixRoute(vtepA, 1, "10.2.0.0/16", nil, rt),
		prefixRoute(vtepB, 1, "10.2.0.0/16", net.HardwareAddr{0, 0, 0, 0, 0, 0}, rt),
		prefixRoute(vtepC, 1, "10.3.0.0/16", nil, AutoRT(PresetFRR, 65001, 100)), // not imported: not counted
	})
	checkDiff(t, "no router mac", d, Intents{}, Intents{})
	if rib.NoRouterMAC() != 2 || rib.Skipped() != 0 || rib.Len() != 3 {
		t.Fatalf("NoRouterMAC %d, Skipped %d, Len %d; want 2, 0, 3", rib.NoRouterMAC(), rib.Skipped(), rib.Len())
	}
	checkDiff(t, "A fixed", rib.Update([]Route{prefixRoute(vtepA, 1, "10.2.0.0/16", rmacA, rt)}),
		Intents{Routes: []L3Route{l3route("10.2.0.0/16", vtepA)}, RMACs: []RouterMAC{rmacOf(vtepA, rmacA)}}, Intents{})
	checkDiff(t, "A loses it again", rib.Update([]Route{prefixRoute(vtepA, 1, "10.2.0.0/16", nil, rt)}),
		Intents{}, Intents{Routes: []L3Route{l3route("10.2.0.0/16", vtepA)}, RMACs: []RouterMAC{rmacOf(vtepA, rmacA)}})
}

func TestRIBHostRoutes(t *testing.T) {
	rib := NewRIB(self)
	rib.SetSegments([]Segment{autoSeg(100)})
	rib.SetL3([]L3{autoL3()})
	ip4, ip6 := netip.MustParseAddr("10.1.1.1"), netip.MustParseAddr("2001:db8::1")
	d := rib.Update([]Route{
		hostRoute(vtepA, macX, "10.1.1.1", 0, rmacA),
		hostRoute(vtepA, macX, "2001:db8::1", 0, rmacA),
		macRoute(vtepA, macX, "", 0, AutoRT(PresetFRR, 65001, 100)),
	})
	checkDiff(t, "mac+ip with L3 RT and router mac", d, Intents{
		FDB:    []FDB{{VNI: 100, MAC: macX, VTEP: vtepA}},
		Neigh:  []Neigh{{VNI: 100, IP: ip4, MAC: macX}, {VNI: 100, IP: ip6, MAC: macX}},
		Routes: []L3Route{l3route("10.1.1.1/32", vtepA), l3route("2001:db8::1/128", vtepA)},
		RMACs:  []RouterMAC{rmacOf(vtepA, rmacA)},
	}, Intents{})

	// Without the router MAC, or without the L3 RT, it is only an L2 route.
	noRMAC := hostRoute(vtepB, macY, "10.1.1.2", 0, nil)
	noL3RT := macRoute(vtepB, macY, "10.1.1.3", 0, AutoRT(PresetFRR, 65001, 100))
	noL3RT.RouterMAC = rmacB
	d = rib.Update([]Route{noRMAC, noL3RT})
	checkDiff(t, "not routable", d, Intents{
		FDB:   []FDB{{VNI: 100, MAC: macY, VTEP: vtepB}},
		Neigh: []Neigh{{VNI: 100, IP: netip.MustParseAddr("10.1.1.2"), MAC: macY}, {VNI: 100, IP: netip.MustParseAddr("10.1.1.3"), MAC: macY}},
	}, Intents{})
	if rib.NoRouterMAC() != 1 {
		t.Fatalf("NoRouterMAC %d, want 1", rib.NoRouterMAC())
	}

	// A host whose subnet this host does not have: the host route alone.
	other := hostRoute(vtepC, net.HardwareAddr{2, 0, 0, 0, 0, 0xcc}, "10.7.7.7", 0, rmacC)
	other.RTs[0] = AutoRT(PresetFRR, 65001, 700)
	other.NLRI.(*MACIP).Labels[0] = 700
	checkDiff(t, "host route of a subnet not here", rib.Update([]Route{other}),
		Intents{Routes: []L3Route{l3route("10.7.7.7/32", vtepC)}, RMACs: []RouterMAC{rmacOf(vtepC, rmacC)}}, Intents{})
	checkDiff(t, "withdrawn", rib.Update([]Route{withdraw(other)}),
		Intents{}, Intents{Routes: []L3Route{l3route("10.7.7.7/32", vtepC)}, RMACs: []RouterMAC{rmacOf(vtepC, rmacC)}})
}

func TestRIBHostRouteFollowsMAC(t *testing.T) {
	rib := NewRIB(self)
	rib.SetSegments([]Segment{autoSeg(100)})
	rib.SetL3([]L3{autoL3()})
	ip := netip.MustParseAddr("10.1.1.1")
	atA := hostRoute(vtepA, macX, "10.1.1.1", 0, rmacA)
	rib.Update([]Route{atA})

	// The VM moves to B: B's routes carry seq 1.
	d := rib.Update([]Route{hostRoute(vtepB, macX, "10.1.1.1", 1, rmacB)})
	checkDiff(t, "moved to B", d, Intents{
		FDB:    []FDB{{VNI: 100, MAC: macX, VTEP: vtepB}},
		Routes: []L3Route{l3route("10.1.1.1/32", vtepB)},
		RMACs:  []RouterMAC{rmacOf(vtepB, rmacB)},
	}, Intents{
		FDB:   []FDB{{VNI: 100, MAC: macX, VTEP: vtepA}},
		RMACs: []RouterMAC{rmacOf(vtepA, rmacA)},
	})
	// The stale route from A arriving again does not take the host back.
	checkDiff(t, "stale A", rib.Update([]Route{atA}), Intents{}, Intents{})

	// The VM moves here: no remote host route any more.
	seq, d := rib.Local(100, macX, true)
	if seq != 2 {
		t.Fatalf("local seq %d, want 2", seq)
	}
	checkDiff(t, "local", d, Intents{}, Intents{
		FDB:    []FDB{{VNI: 100, MAC: macX, VTEP: vtepB}},
		Neigh:  []Neigh{{VNI: 100, IP: ip, MAC: macX}},
		Routes: []L3Route{l3route("10.1.1.1/32", vtepB)},
		RMACs:  []RouterMAC{rmacOf(vtepB, rmacB)},
	})
	// Gone from here, the best remote (B, seq 1) is back.
	_, d = rib.Local(100, macX, false)
	checkDiff(t, "gone from here", d, Intents{
		FDB:    []FDB{{VNI: 100, MAC: macX, VTEP: vtepB}},
		Neigh:  []Neigh{{VNI: 100, IP: ip, MAC: macX}},
		Routes: []L3Route{l3route("10.1.1.1/32", vtepB)},
		RMACs:  []RouterMAC{rmacOf(vtepB, rmacB)},
	}, Intents{})
}

func TestRIBHostRouteMobilityWithoutSegment(t *testing.T) {
	// The tenant is routed here but the subnet is not: mobility is still
	// decided per (L2VNI, MAC) among the MAC+IP routes.
	rib := NewRIB(self)
	rib.SetL3([]L3{autoL3()})
	atA := hostRoute(vtepA, macX, "2001:db8::5", 0, rmacA)
	atB := hostRoute(vtepB, macX, "2001:db8::5", 3, rmacB)
	checkDiff(t, "A", rib.Update([]Route{atA}),
		Intents{Routes: []L3Route{l3route("2001:db8::5/128", vtepA)}, RMACs: []RouterMAC{rmacOf(vtepA, rmacA)}}, Intents{})
	checkDiff(t, "moved to B", rib.Update([]Route{atB}),
		Intents{Routes: []L3Route{l3route("2001:db8::5/128", vtepB)}, RMACs: []RouterMAC{rmacOf(vtepB, rmacB)}},
		Intents{RMACs: []RouterMAC{rmacOf(vtepA, rmacA)}})
	// The segment appears: the same routes now decide through it, and
	// the kernel sees only the L2 entries added.
	checkDiff(t, "segment added", rib.SetSegments([]Segment{autoSeg(100)}), Intents{
		FDB:   []FDB{{VNI: 100, MAC: macX, VTEP: vtepB}},
		Neigh: []Neigh{{VNI: 100, IP: netip.MustParseAddr("2001:db8::5"), MAC: macX}},
	}, Intents{})
}

func TestRIBHostRouteOverPrefix(t *testing.T) {
	rib := NewRIB(self)
	rib.SetL3([]L3{autoL3()})
	t5 := prefixRoute(vtepC, 1, "10.1.1.1/32", rmacC, AutoRT(PresetFRR, 65001, l3vni))
	host := hostRoute(vtepA, macX, "10.1.1.1", 0, rmacA)
	rib.Update([]Route{t5})
	checkDiff(t, "the host route wins over a type-5 for the same prefix", rib.Update([]Route{host}),
		Intents{Routes: []L3Route{l3route("10.1.1.1/32", vtepA)}, RMACs: []RouterMAC{rmacOf(vtepA, rmacA)}},
		Intents{RMACs: []RouterMAC{rmacOf(vtepC, rmacC)}})
	checkDiff(t, "host route gone", rib.Update([]Route{withdraw(host)}),
		Intents{Routes: []L3Route{l3route("10.1.1.1/32", vtepC)}, RMACs: []RouterMAC{rmacOf(vtepC, rmacC)}},
		Intents{RMACs: []RouterMAC{rmacOf(vtepA, rmacA)}})
}

func TestRIBHostRouteTwoMACsOneIP(t *testing.T) {
	rib := NewRIB(self)
	rib.SetSegments([]Segment{autoSeg(100)})
	rib.SetL3([]L3{autoL3()})
	ip := netip.MustParseAddr("10.1.1.1")
	rib.Update([]Route{hostRoute(vtepA, macY, "10.1.1.1", 0, rmacA)})
	// The IP now belongs to a new MAC (a VM recreated elsewhere), seq 1:
	// as for the neighbor entry, the higher sequence number wins.
	d := rib.Update([]Route{hostRoute(vtepB, macX, "10.1.1.1", 1, rmacB)})
	checkDiff(t, "ip moved to a new mac", d, Intents{
		FDB:    []FDB{{VNI: 100, MAC: macX, VTEP: vtepB}},
		Neigh:  []Neigh{{VNI: 100, IP: ip, MAC: macX}},
		Routes: []L3Route{l3route("10.1.1.1/32", vtepB)},
		RMACs:  []RouterMAC{rmacOf(vtepB, rmacB)},
	}, Intents{
		Neigh: []Neigh{{VNI: 100, IP: ip, MAC: macY}},
		RMACs: []RouterMAC{rmacOf(vtepA, rmacA)},
	})
}

func TestRIBSetL3(t *testing.T) {
	rib := NewRIB(self)
	rib.SetSegments([]Segment{autoSeg(100)})
	rt := AutoRT(PresetFRR, 65001, l3vni)
	rib.Update([]Route{
		prefixRoute(vtepA, 1, "10.2.0.0/16", rmacA, rt),
		prefixRoute(vtepB, 1, "2001:db8:2::/48", rmacB, rt),
		hostRoute(vtepB, macX, "10.1.1.1", 0, rmacB),
	})
	if in := rib.Intents(); len(in.Routes) != 0 || len(in.RMACs) != 0 || len(in.FDB) != 1 {
		t.Fatalf("without L3s: %+v", in)
	}
	all := Intents{
		Routes: []L3Route{l3route("10.1.1.1/32", vtepB), l3route("10.2.0.0/16", vtepA), l3route("2001:db8:2::/48", vtepB)},
		RMACs:  []RouterMAC{rmacOf(vtepA, rmacA), rmacOf(vtepB, rmacB)},
	}
	checkDiff(t, "L3 added", rib.SetL3([]L3{autoL3()}), all, Intents{})
	if d := rib.SetL3([]L3{autoL3()}); !d.Empty() {
		t.Fatalf("same L3s again changed %+v", d)
	}
	if in := rib.Intents(); !reflect.DeepEqual(in.Routes, all.Routes) || !reflect.DeepEqual(in.RMACs, all.RMACs) {
		t.Fatalf("Intents %+v, want %+v", in, all)
	}
	explicit := NewL3(self, 65000, PresetFRR, 500, "t", l3vni, []RT{NewRT0(9, 9)}, nil, rmacS, nil)
	checkDiff(t, "import changed to an RT nobody sends", rib.SetL3([]L3{explicit}), Intents{}, all)
	checkDiff(t, "back", rib.SetL3([]L3{autoL3()}), all, Intents{})
	checkDiff(t, "L3 removed", rib.SetL3(nil), Intents{}, all)
	if len(rib.Intents().FDB) != 1 || rib.Len() != 3 {
		t.Fatalf("removing the L3 touched L2 state or routes: %+v, Len %d", rib.Intents(), rib.Len())
	}
	if got := rib.L3s(); got != nil {
		t.Fatalf("L3s %+v after SetL3(nil)", got)
	}
}

func TestRIBSegmentAndL3ImportIndependently(t *testing.T) {
	// One VNI as both segment and L3VNI is a configuration error the
	// daemon rejects; the RIB still imports into each on its own rule.
	rib := NewRIB(self)
	rib.SetSegments([]Segment{autoSeg(l3vni)})
	rib.SetL3([]L3{autoL3()})
	r := macRoute(vtepA, macX, "10.1.1.1", 0, AutoRT(PresetFRR, 65001, l3vni))
	r.RouterMAC = rmacA
	checkDiff(t, "both", rib.Update([]Route{r}), Intents{
		FDB:    []FDB{{VNI: l3vni, MAC: macX, VTEP: vtepA}},
		Neigh:  []Neigh{{VNI: l3vni, IP: netip.MustParseAddr("10.1.1.1"), MAC: macX}},
		Routes: []L3Route{l3route("10.1.1.1/32", vtepA)},
		RMACs:  []RouterMAC{rmacOf(vtepA, rmacA)},
	}, Intents{})
}

func benchPrefixRoutes(n int) []Route {
	routes := make([]Route, n)
	rts := []RT{AutoRT(PresetFRR, 65001, l3vni)}
	for i := range routes {
		// 1024 VTEPs, each with its own router MAC.
		vtep := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8 & 0x3), byte(i)})
		rmac := net.HardwareAddr{0x02, 0xaa, 0, 0, byte(i >> 8 & 0x3), byte(i)}
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
		routes[i] = Route{
			NLRI:      &Prefix{RD: NewRD1(vtep, 500), Prefix: p, Label: l3vni},
			NextHop:   vtep,
			RTs:       rts,
			Encap:     EncapVXLAN,
			RouterMAC: rmac,
		}
	}
	return routes
}

// BenchmarkRIBUpdatePrefix feeds 100k type-5 routes from 1024 VTEPs (one
// burst) into an empty RIB with one routed tenant.
func BenchmarkRIBUpdatePrefix(b *testing.B) {
	routes := benchPrefixRoutes(100_000)
	b.ReportAllocs()
	for b.Loop() {
		rib := NewRIB(self)
		rib.SetL3([]L3{autoL3()})
		d := rib.Update(routes)
		if len(d.Add.Routes) != len(routes) || len(d.Add.RMACs) != 1024 {
			b.Fatalf("diff %d routes, %d router macs", len(d.Add.Routes), len(d.Add.RMACs))
		}
	}
}
