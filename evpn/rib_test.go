package evpn

import (
	"bytes"
	"cmp"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"testing"
)

var (
	self  = netip.MustParseAddr("192.0.2.1")
	vtepA = netip.MustParseAddr("192.0.2.10")
	vtepB = netip.MustParseAddr("192.0.2.20")
	vtepC = netip.MustParseAddr("192.0.2.30")
	macX  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macY  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
)

func autoSeg(vni VNI) Segment {
	return NewSegment(self, 65000, PresetFRR, uint16(vni), "t", fmt.Sprint("s", vni), vni, nil, nil)
}

func rdOf(vtep netip.Addr, i uint16) RD { return NewRD1(vtep, i) }

func macRoute(vtep netip.Addr, mac net.HardwareAddr, ip string, seq uint32, rts ...RT) Route {
	r := Route{
		NLRI:    &MACIP{RD: rdOf(vtep, 1), MAC: mac, Labels: []VNI{100}},
		NextHop: vtep,
		RTs:     rts,
		Encap:   EncapVXLAN,
	}
	if ip != "" {
		r.NLRI.(*MACIP).IP = netip.MustParseAddr(ip)
	}
	if seq > 0 {
		r.Mobility = &Mobility{Seq: seq}
	}
	return r
}

func imetRoute(rd RD, vtep netip.Addr, rts ...RT) Route {
	return Route{NLRI: &IMET{RD: rd, Originator: vtep}, NextHop: vtep, RTs: rts, Encap: EncapVXLAN}
}

func withdraw(r Route) Route { return Route{NLRI: r.NLRI, Withdraw: true} }

func fdbs(in ...FDB) Intents     { return Intents{FDB: in} }
func floods(in ...Flood) Intents { return Intents{Flood: in} }

func checkDiff(t *testing.T, what string, got Diff, add, del Intents) {
	t.Helper()
	norm := func(in Intents) Intents {
		in.FDB = slices.Clone(in.FDB)
		in.Flood = slices.Clone(in.Flood)
		in.Neigh = slices.Clone(in.Neigh)
		in.Routes = slices.Clone(in.Routes)
		in.RMACs = slices.Clone(in.RMACs)
		if len(in.FDB) == 0 {
			in.FDB = nil
		}
		if len(in.Flood) == 0 {
			in.Flood = nil
		}
		if len(in.Neigh) == 0 {
			in.Neigh = nil
		}
		if len(in.Routes) == 0 {
			in.Routes = nil
		}
		if len(in.RMACs) == 0 {
			in.RMACs = nil
		}
		// A Diff's order is not part of its meaning; re-imports walk a map.
		return sortIntents(in)
	}
	if !reflect.DeepEqual(norm(got.Add), norm(add)) || !reflect.DeepEqual(norm(got.Del), norm(del)) {
		t.Fatalf("%s:\n got add %+v\n     del %+v\nwant add %+v\n     del %+v", what, got.Add, got.Del, add, del)
	}
}

func TestRIBImportByVNIAcrossASNs(t *testing.T) {
	rib := NewRIB(self)
	rib.SetSegments([]Segment{autoSeg(100)})
	d := rib.Update([]Route{
		macRoute(vtepA, macX, "", 0, AutoRT(PresetFRR, 65001, 100)),
		macRoute(vtepB, macY, "", 0, AutoRT(PresetFRR, 4200000002, 100)),
		macRoute(vtepC, net.HardwareAddr{2, 0, 0, 0, 0, 0xcc}, "", 0, AutoRT(PresetRFC8365, 65003, 100)),
		macRoute(vtepC, net.HardwareAddr{2, 0, 0, 0, 0, 0xdd}, "", 0, NewRT0(65001, 200)),
	})
	checkDiff(t, "import", d, fdbs(
		FDB{VNI: 100, MAC: macX, VTEP: vtepA},
		FDB{VNI: 100, MAC: macY, VTEP: vtepB},
		FDB{VNI: 100, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 0xcc}, VTEP: vtepC},
	), Intents{})
	if rib.Len() != 4 || len(rib.Routes()) != 4 {
		t.Fatalf("Len %d, Routes %d: a route not imported must still be held", rib.Len(), len(rib.Routes()))
	}
}

func TestRIBExplicitRT(t *testing.T) {
	rib := NewRIB(self)
	seg := NewSegment(self, 65000, PresetFRR, 1, "t", "s", 100, []RT{NewRT0(65000, 999)}, nil)
	rib.SetSegments([]Segment{seg})
	d := rib.Update([]Route{macRoute(vtepA, macX, "", 0, NewRT0(65000, 100))})
	checkDiff(t, "auto RT on an explicit segment", d, Intents{}, Intents{})
	d = rib.Update([]Route{macRoute(vtepB, macY, "", 0, NewRT0(1, 1), NewRT0(65000, 999))})
	checkDiff(t, "explicit RT", d, fdbs(FDB{VNI: 100, MAC: macY, VTEP: vtepB}), Intents{})
}

func TestRIBWithdraw(t *testing.T) {
	rib := NewRIB(self)
	rib.SetSegments([]Segment{autoSeg(100)})
	rt := AutoRT(PresetFRR, 65001, 100)
	r := macRoute(vtepA, macX, "10.1.1.1", 0, rt)
	d := rib.Update([]Route{r})
	ip := netip.MustParseAddr("10.1.1.1")
	checkDiff(t, "add", d,
		Intents{FDB: []FDB{{VNI: 100, MAC: macX, VTEP: vtepA}}, Neigh: []Neigh{{VNI: 100, IP: ip, MAC: macX}}},
		Intents{})
	if d := rib.Update([]Route{r}); !d.Empty() {
		t.Fatalf("the same route again changed %+v", d)
	}
	// A withdrawal carries only the NLRI, and a fresh copy of it.
	w := Route{NLRI: &MACIP{RD: rdOf(vtepA, 1), MAC: slices.Clone(macX), IP: ip}, Withdraw: true}
	d = rib.Update([]Route{w})
	checkDiff(t, "withdraw", d, Intents{},
		Intents{FDB: []FDB{{VNI: 100, MAC: macX, VTEP: vtepA}}, Neigh: []Neigh{{VNI: 100, IP: ip, MAC: macX}}})
	if rib.Len() != 0 || rib.Intents().Len() != 0 {
		t.Fatalf("after withdraw: Len %d, intents %+v", rib.Len(), rib.Intents())
	}
	if d := rib.Update([]Route{w}); !d.Empty() {
		t.Fatalf("withdrawing an unknown route changed %+v", d)
	}
	// Added and withdrawn in one batch: nothing reaches the kernel.
	if d := rib.Update([]Route{r, w}); !d.Empty() {
		t.Fatalf("add+withdraw in one batch changed %+v", d)
	}
}

func TestRIBMobilityWinner(t *testing.T) {
	rib := NewRIB(self)
	rib.SetSegments([]Segment{autoSeg(100)})
	rt := AutoRT(PresetFRR, 65001, 100)
	atA := macRoute(vtepA, macX, "", 0, rt)
	atB := macRoute(vtepB, macX, "", 1, rt)
	checkDiff(t, "first", rib.Update([]Route{atA}), fdbs(FDB{VNI: 100, MAC: macX, VTEP: vtepA}), Intents{})
	checkDiff(t, "moved to B with seq 1", rib.Update([]Route{atB}),
		fdbs(FDB{VNI: 100, MAC: macX, VTEP: vtepB}), fdbs(FDB{VNI: 100, MAC: macX, VTEP: vtepA}))
	// A's stale route is still there; a lower seq never wins.
	checkDiff(t, "stale A again", rib.Update([]Route{atA}), Intents{}, Intents{})
	// Moves back to A with seq 2.
	atA2 := macRoute(vtepA, macX, "", 2, rt)
	checkDiff(t, "back to A", rib.Update([]Route{atA2}),
		fdbs(FDB{VNI: 100, MAC: macX, VTEP: vtepA}), fdbs(FDB{VNI: 100, MAC: macX, VTEP: vtepB}))
	checkDiff(t, "B withdraws", rib.Update([]Route{withdraw(atB)}), Intents{}, Intents{})
	checkDiff(t, "A withdraws", rib.Update([]Route{withdraw(atA2)}), Intents{}, fdbs(FDB{VNI: 100, MAC: macX, VTEP: vtepA}))
}

func TestRIBMobilityTieBreak(t *testing.T) {
	rt := AutoRT(PresetFRR, 65001, 100)
	for _, order := range [][]netip.Addr{{vtepA, vtepB}, {vtepB, vtepA}} {
		rib := NewRIB(self)
		rib.SetSegments([]Segment{autoSeg(100)})
		for _, v := range order {
			rib.Update([]Route{macRoute(v, macX, "", 5, rt)})
		}
		want := []FDB{{VNI: 100, MAC: macX, VTEP: vtepA}}
		if got := rib.Intents().FDB; !reflect.DeepEqual(got, want) {
			t.Fatalf("order %v: FDB %+v, want the lower VTEP %+v", order, got, want)
		}
	}
	rib := NewRIB(self)
	rib.SetSegments([]Segment{autoSeg(100)})
	rib.Update([]Route{macRoute(vtepB, macX, "", 5, rt)})
	checkDiff(t, "lower VTEP with the same seq", rib.Update([]Route{macRoute(vtepA, macX, "", 5, rt)}),
		fdbs(FDB{VNI: 100, MAC: macX, VTEP: vtepA}), fdbs(FDB{VNI: 100, MAC: macX, VTEP: vtepB}))
}

func TestRIBFloodRefcount(t *testing.T) {
	rib := NewRIB(self)
	rib.SetSegments([]Segment{autoSeg(100), autoSeg(200)})
	rt := AutoRT(PresetFRR, 65001, 100)
	a1 := imetRoute(rdOf(vtepA, 1), vtepA, rt)
	a2 := imetRoute(rdOf(vtepA, 2), vtepA, rt)
	b := imetRoute(rdOf(vtepB, 1), vtepB, rt)
	checkDiff(t, "A twice and B", rib.Update([]Route{a1, a2, b}),
		floods(Flood{VNI: 100, VTEP: vtepA}, Flood{VNI: 100, VTEP: vtepB}), Intents{})
	checkDiff(t, "one of A's", rib.Update([]Route{withdraw(a1)}), Intents{}, Intents{})
	checkDiff(t, "A's last", rib.Update([]Route{withdraw(a2)}), Intents{}, floods(Flood{VNI: 100, VTEP: vtepA}))

	// The PMSI endpoint, when set, is where BUM traffic goes.
	c := imetRoute(rdOf(vtepC, 1), vtepC, AutoRT(PresetFRR, 65003, 200))
	c.PMSI = &PMSI{Type: PMSIIngressReplication, Label: 200, Endpoint: netip.MustParseAddr("198.51.100.3")}
	checkDiff(t, "pmsi endpoint", rib.Update([]Route{c}),
		floods(Flood{VNI: 200, VTEP: netip.MustParseAddr("198.51.100.3")}), Intents{})
}

func TestRIBSelfRouteIgnored(t *testing.T) {
	rib := NewRIB(self)
	rib.SetSegments([]Segment{autoSeg(100)})
	rt := AutoRT(PresetFRR, 65000, 100)
	own := []Route{macRoute(self, macX, "10.1.1.1", 0, rt), imetRoute(rdOf(self, 1), self, rt)}
	if d := rib.Update(own); !d.Empty() || rib.Len() != 0 {
		t.Fatalf("own routes: diff %+v, Len %d", d, rib.Len())
	}
	// Routes with no next hop cannot be installed; they are skipped.
	bad := []Route{{NLRI: &MACIP{RD: testRD, MAC: macX, Labels: []VNI{1}}, RTs: []RT{rt}}, {NLRI: nil}, {NLRI: &MACIP{MAC: macX[:3]}}}
	if d := rib.Update(bad); !d.Empty() || rib.Len() != 0 || rib.Skipped() != 3 {
		t.Fatalf("malformed routes: diff %+v, Len %d, Skipped %d", d, rib.Len(), rib.Skipped())
	}
}

func TestRIBSetSegments(t *testing.T) {
	rib := NewRIB(self)
	rt100 := AutoRT(PresetFRR, 65001, 100)
	rib.Update([]Route{macRoute(vtepA, macX, "", 0, rt100), imetRoute(rdOf(vtepA, 1), vtepA, rt100)})
	if rib.Intents().Len() != 0 {
		t.Fatal("intents without segments")
	}
	checkDiff(t, "segment added", rib.SetSegments([]Segment{autoSeg(100)}),
		Intents{FDB: []FDB{{VNI: 100, MAC: macX, VTEP: vtepA}}, Flood: []Flood{{VNI: 100, VTEP: vtepA}}}, Intents{})
	if d := rib.SetSegments([]Segment{autoSeg(100)}); !d.Empty() {
		t.Fatalf("same segments again changed %+v", d)
	}
	explicit := NewSegment(self, 65000, PresetFRR, 1, "t", "s", 300, []RT{rt100}, nil)
	checkDiff(t, "explicit import of the same RT into another VNI", rib.SetSegments([]Segment{autoSeg(100), explicit}),
		Intents{FDB: []FDB{{VNI: 300, MAC: macX, VTEP: vtepA}}, Flood: []Flood{{VNI: 300, VTEP: vtepA}}}, Intents{})
	checkDiff(t, "segments removed", rib.SetSegments(nil), Intents{},
		Intents{
			FDB:   []FDB{{VNI: 100, MAC: macX, VTEP: vtepA}, {VNI: 300, MAC: macX, VTEP: vtepA}},
			Flood: []Flood{{VNI: 100, VTEP: vtepA}, {VNI: 300, VTEP: vtepA}},
		})
	if rib.Len() != 2 {
		t.Fatalf("routes dropped with their segments: Len %d", rib.Len())
	}
}

func TestRIBNeighMoves(t *testing.T) {
	rib := NewRIB(self)
	rib.SetSegments([]Segment{autoSeg(100)})
	rt := AutoRT(PresetFRR, 65001, 100)
	ip := netip.MustParseAddr("10.1.1.1")
	rib.Update([]Route{macRoute(vtepA, macX, "10.1.1.1", 0, rt), macRoute(vtepA, macX, "", 0, rt)})
	// The IP moves to a new MAC (a VM recreated elsewhere) with seq 1.
	d := rib.Update([]Route{macRoute(vtepB, macY, "10.1.1.1", 1, rt)})
	checkDiff(t, "ip moved to a new mac", d,
		Intents{FDB: []FDB{{VNI: 100, MAC: macY, VTEP: vtepB}}, Neigh: []Neigh{{VNI: 100, IP: ip, MAC: macY}}},
		Intents{Neigh: []Neigh{{VNI: 100, IP: ip, MAC: macX}}})
	// The MAC+IP route of a MAC that moved away does not point the IP back.
	rib2 := NewRIB(self)
	rib2.SetSegments([]Segment{autoSeg(100)})
	rib2.Update([]Route{macRoute(vtepA, macX, "10.1.1.1", 0, rt)})
	d = rib2.Update([]Route{macRoute(vtepB, macX, "", 1, rt)})
	checkDiff(t, "mac moved without its ip route", d,
		fdbs(FDB{VNI: 100, MAC: macX, VTEP: vtepB}),
		Intents{FDB: []FDB{{VNI: 100, MAC: macX, VTEP: vtepA}}, Neigh: []Neigh{{VNI: 100, IP: ip, MAC: macX}}})
}

func TestRIBLocal(t *testing.T) {
	rib := NewRIB(self)
	rib.SetSegments([]Segment{autoSeg(100)})
	rt := AutoRT(PresetFRR, 65001, 100)

	if seq, d := rib.Local(100, macY, true); seq != 0 || !d.Empty() {
		t.Fatalf("new local mac: seq %d, diff %+v; want 0 and no change", seq, d)
	}
	if seq, _ := rib.Local(100, macY, true); seq != 0 {
		t.Fatalf("same local mac again: seq %d, want 0", seq)
	}

	rib.Update([]Route{macRoute(vtepA, macX, "10.1.1.1", 3, rt)})
	seq, d := rib.Local(100, macX, true)
	if seq != 4 {
		t.Fatalf("mac moved here from a seq-3 remote: seq %d, want 4", seq)
	}
	checkDiff(t, "local takes over", d, Intents{},
		Intents{FDB: []FDB{{VNI: 100, MAC: macX, VTEP: vtepA}}, Neigh: []Neigh{{VNI: 100, IP: netip.MustParseAddr("10.1.1.1"), MAC: macX}}})

	checkDiff(t, "remote at the local seq", rib.Update([]Route{macRoute(vtepB, macX, "", 4, rt)}), Intents{}, Intents{})
	checkDiff(t, "stale remote", rib.Update([]Route{macRoute(vtepA, macX, "10.1.1.1", 3, rt)}), Intents{}, Intents{})
	if s := rib.Superseded(); len(s) != 0 {
		t.Fatalf("superseded %+v while the local seq is highest", s)
	}

	d = rib.Update([]Route{macRoute(vtepC, macX, "", 5, rt)})
	checkDiff(t, "remote with a higher seq", d, fdbs(FDB{VNI: 100, MAC: macX, VTEP: vtepC}), Intents{})
	want := []LocalMAC{{VNI: 100, MAC: macX, Seq: 4, RemoteSeq: 5, VTEP: vtepC}}
	if got := rib.Superseded(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Superseded = %+v, want %+v", got, want)
	}
	if got := rib.Superseded(); got != nil {
		t.Fatalf("Superseded not cleared: %+v", got)
	}

	// The MAC comes back: it must beat seq 5.
	seq, d = rib.Local(100, macX, true)
	if seq != 6 {
		t.Fatalf("mac back: seq %d, want 6", seq)
	}
	checkDiff(t, "mac back", d, Intents{}, fdbs(FDB{VNI: 100, MAC: macX, VTEP: vtepC}))

	seq, d = rib.Local(100, macX, false)
	if seq != 0 {
		t.Fatalf("mac gone: seq %d", seq)
	}
	checkDiff(t, "mac gone", d, fdbs(FDB{VNI: 100, MAC: macX, VTEP: vtepC}), Intents{})
	if _, d := rib.Local(100, macX, false); !d.Empty() {
		t.Fatalf("gone twice changed %+v", d)
	}
	if seq, d := rib.Local(100, macX[:4], true); seq != 0 || !d.Empty() {
		t.Fatal("a short mac was taken")
	}
}

// kernel applies diffs as the datapath would and fails on any add of an
// entry already there or delete of one that is not. Routes and router MACs
// are replaced by an Add, which must then change something.
type kernel struct {
	fdb    map[macKey]netip.Addr
	flood  map[floodKey]bool
	neigh  map[ipKey][6]byte
	routes map[pfxKey][]netip.Addr
	rmacs  map[rmacKey][6]byte
}

func newKernel() *kernel {
	return &kernel{
		fdb: map[macKey]netip.Addr{}, flood: map[floodKey]bool{}, neigh: map[ipKey][6]byte{},
		routes: map[pfxKey][]netip.Addr{}, rmacs: map[rmacKey][6]byte{},
	}
}

func (k *kernel) apply(t *testing.T, d Diff) {
	t.Helper()
	for _, r := range d.Del.Routes {
		pk := pfxKey{r.VNI, r.Prefix}
		if _, ok := k.routes[pk]; !ok {
			t.Fatalf("del of route %+v not installed", r)
		}
		delete(k.routes, pk)
	}
	for _, m := range d.Del.RMACs {
		rk := rmacKey{m.VNI, m.VTEP}
		if v, ok := k.rmacs[rk]; !ok || v != [6]byte(m.MAC) {
			t.Fatalf("del of router mac %+v not installed (have %v)", m, v)
		}
		delete(k.rmacs, rk)
	}
	for _, r := range d.Add.Routes {
		pk := pfxKey{r.VNI, r.Prefix}
		if len(r.NextHops) == 0 || !slices.IsSortedFunc(r.NextHops, netip.Addr.Compare) || r.Prefix != r.Prefix.Masked() {
			t.Fatalf("add of route %+v: want masked prefix, sorted next hops", r)
		}
		if slices.ContainsFunc(d.Del.Routes, func(x L3Route) bool { return x.VNI == r.VNI && x.Prefix == r.Prefix }) {
			t.Fatalf("route %+v deleted and added in one diff", r)
		}
		if v, ok := k.routes[pk]; ok && slices.Equal(v, r.NextHops) {
			t.Fatalf("add of route %+v already installed", r)
		}
		k.routes[pk] = slices.Clone(r.NextHops)
	}
	for _, m := range d.Add.RMACs {
		rk := rmacKey{m.VNI, m.VTEP}
		if slices.ContainsFunc(d.Del.RMACs, func(x RouterMAC) bool { return x.VNI == m.VNI && x.VTEP == m.VTEP }) {
			t.Fatalf("router mac %+v deleted and added in one diff", m)
		}
		if v, ok := k.rmacs[rk]; ok && v == [6]byte(m.MAC) {
			t.Fatalf("add of router mac %+v already installed", m)
		}
		k.rmacs[rk] = [6]byte(m.MAC)
	}
	for _, f := range d.Del.FDB {
		mk := macKey{vni: f.VNI, mac: [6]byte(f.MAC)}
		if v, ok := k.fdb[mk]; !ok || v != f.VTEP {
			t.Fatalf("del of fdb %+v not installed (have %v)", f, v)
		}
		delete(k.fdb, mk)
	}
	for _, f := range d.Del.Flood {
		if !k.flood[floodKey{f.VNI, f.VTEP}] {
			t.Fatalf("del of flood %+v not installed", f)
		}
		delete(k.flood, floodKey{f.VNI, f.VTEP})
	}
	for _, n := range d.Del.Neigh {
		if v, ok := k.neigh[ipKey{n.VNI, n.IP}]; !ok || v != [6]byte(n.MAC) {
			t.Fatalf("del of neigh %+v not installed", n)
		}
		delete(k.neigh, ipKey{n.VNI, n.IP})
	}
	for _, f := range d.Add.FDB {
		mk := macKey{vni: f.VNI, mac: [6]byte(f.MAC)}
		if _, ok := k.fdb[mk]; ok {
			t.Fatalf("add of fdb %+v already installed", f)
		}
		k.fdb[mk] = f.VTEP
	}
	for _, f := range d.Add.Flood {
		if k.flood[floodKey{f.VNI, f.VTEP}] {
			t.Fatalf("add of flood %+v already installed", f)
		}
		k.flood[floodKey{f.VNI, f.VTEP}] = true
	}
	for _, n := range d.Add.Neigh {
		if _, ok := k.neigh[ipKey{n.VNI, n.IP}]; ok {
			t.Fatalf("add of neigh %+v already installed", n)
		}
		k.neigh[ipKey{n.VNI, n.IP}] = [6]byte(n.MAC)
	}
	// A diff never deletes and re-adds the same entry.
	for _, a := range d.Add.FDB {
		for _, b := range d.Del.FDB {
			if a.VNI == b.VNI && bytes.Equal(a.MAC, b.MAC) && a.VTEP == b.VTEP {
				t.Fatalf("fdb %+v deleted and added in one diff", a)
			}
		}
	}
}

func (k *kernel) intents() Intents {
	var in Intents
	for mk, v := range k.fdb {
		in.FDB = append(in.FDB, FDB{VNI: mk.vni, MAC: net.HardwareAddr(mk.mac[:]), VTEP: v})
	}
	for fk := range k.flood {
		in.Flood = append(in.Flood, Flood{VNI: fk.vni, VTEP: fk.vtep})
	}
	for ik, m := range k.neigh {
		in.Neigh = append(in.Neigh, Neigh{VNI: ik.vni, IP: ik.ip, MAC: net.HardwareAddr(m[:])})
	}
	for pk, nhs := range k.routes {
		in.Routes = append(in.Routes, L3Route{VNI: pk.vni, Prefix: pk.pfx, NextHops: nhs})
	}
	for rk, m := range k.rmacs {
		in.RMACs = append(in.RMACs, RouterMAC{VNI: rk.vni, VTEP: rk.vtep, MAC: net.HardwareAddr(m[:])})
	}
	return sortIntents(in)
}

func sortIntents(in Intents) Intents {
	slices.SortFunc(in.FDB, func(a, b FDB) int {
		return cmpAll(int(a.VNI)-int(b.VNI), bytes.Compare(a.MAC, b.MAC), a.VTEP.Compare(b.VTEP))
	})
	slices.SortFunc(in.Flood, func(a, b Flood) int { return cmpAll(int(a.VNI)-int(b.VNI), a.VTEP.Compare(b.VTEP)) })
	slices.SortFunc(in.Neigh, func(a, b Neigh) int {
		return cmpAll(int(a.VNI)-int(b.VNI), a.IP.Compare(b.IP), bytes.Compare(a.MAC, b.MAC))
	})
	slices.SortFunc(in.Routes, func(a, b L3Route) int {
		return cmpAll(int(a.VNI)-int(b.VNI), a.Prefix.Addr().Compare(b.Prefix.Addr()), a.Prefix.Bits()-b.Prefix.Bits())
	})
	slices.SortFunc(in.RMACs, func(a, b RouterMAC) int { return cmpAll(int(a.VNI)-int(b.VNI), a.VTEP.Compare(b.VTEP)) })
	return in
}

func cmpAll(cs ...int) int {
	for _, c := range cs {
		if c != 0 {
			return c
		}
	}
	return 0
}

// model computes the intents from scratch, as the rules say, from the
// routes the RIB holds, the segments, the L3s, the local MACs and the
// order in which the routes arrived (stamps, by NLRI key).
func model(routes []Route, segs []Segment, l3s []L3, local map[macKey]uint32, stamps map[string]uint64) Intents {
	type cand struct {
		seq   uint32
		vtep  netip.Addr
		ip    netip.Addr
		l3    []VNI
		rmac  net.HardwareAddr
		stamp uint64
	}
	cands := map[macKey][]cand{}
	t5 := map[pfxKey][]cand{}
	flood := map[floodKey]bool{}
	locals := map[pfxKey]bool{}
	for _, l := range l3s {
		for _, p := range l.Local {
			locals[pfxKey{l.VNI, p.Masked()}] = true
		}
	}
	for _, r := range routes {
		var vnis, l3v []VNI
		for _, s := range segs {
			if s.Imports(r.RTs) && !slices.Contains(vnis, s.VNI) {
				vnis = append(vnis, s.VNI)
			}
		}
		if len(r.RouterMAC) == 6 && !bytes.Equal(r.RouterMAC, make([]byte, 6)) {
			for _, l := range l3s {
				if l.Imports(r.RTs) && !slices.Contains(l3v, l.VNI) {
					l3v = append(l3v, l.VNI)
				}
			}
		}
		stamp := stamps[r.NLRI.Key()]
		switch n := r.NLRI.(type) {
		case *MACIP:
			if !n.IP.IsValid() {
				l3v = nil
			}
			c := cand{vtep: r.NextHop, ip: n.IP, l3: l3v, rmac: r.RouterMAC, stamp: stamp}
			if r.Mobility != nil {
				c.seq = r.Mobility.Seq
			}
			for _, v := range vnis {
				k := macKey{vni: v, mac: [6]byte(n.MAC)}
				cands[k] = append(cands[k], c)
			}
			if len(vnis) == 0 && len(l3v) > 0 {
				k := macKey{vni: n.Labels[0], mac: [6]byte(n.MAC), hostOnly: true}
				cands[k] = append(cands[k], c)
			}
		case *IMET:
			for _, v := range vnis {
				vt := r.NextHop
				if r.PMSI != nil && r.PMSI.Endpoint.IsValid() {
					vt = r.PMSI.Endpoint
				}
				flood[floodKey{v, vt}] = true
			}
		case *Prefix:
			for _, v := range l3v {
				k := pfxKey{v, n.Prefix.Masked()}
				t5[k] = append(t5[k], cand{vtep: r.NextHop, rmac: r.RouterMAC, stamp: stamp})
			}
		}
	}
	var in Intents
	type claim struct {
		seq   uint32
		mac   [6]byte
		vni   VNI
		stamp uint64
		vtep  netip.Addr
		rmac  net.HardwareAddr
	}
	claims := map[ipKey][]claim{}
	hosts := map[pfxKey][]claim{}
	for k, cs := range cands {
		best := cs[0]
		for _, c := range cs[1:] {
			if c.seq > best.seq || (c.seq == best.seq && c.vtep.Less(best.vtep)) {
				best = c
			}
		}
		if ls, ok := local[k]; ok && ls >= best.seq {
			continue
		}
		if !k.hostOnly {
			in.FDB = append(in.FDB, FDB{VNI: k.vni, MAC: net.HardwareAddr(k.mac[:]), VTEP: best.vtep})
		}
		for _, c := range cs {
			if !c.ip.IsValid() || c.vtep != best.vtep {
				continue
			}
			if ik := (ipKey{k.vni, c.ip}); !k.hostOnly && !slices.ContainsFunc(claims[ik], func(x claim) bool { return x.mac == k.mac }) {
				claims[ik] = append(claims[ik], claim{seq: best.seq, mac: k.mac})
			}
			for _, v := range c.l3 {
				pk := pfxKey{v, netip.PrefixFrom(c.ip, c.ip.BitLen())}
				hosts[pk] = append(hosts[pk], claim{seq: best.seq, mac: k.mac, vni: k.vni, stamp: c.stamp, vtep: c.vtep, rmac: c.rmac})
			}
		}
	}
	for ik, cl := range claims {
		best := cl[0]
		for _, c := range cl[1:] {
			if c.seq > best.seq || (c.seq == best.seq && bytes.Compare(c.mac[:], best.mac[:]) < 0) {
				best = c
			}
		}
		in.Neigh = append(in.Neigh, Neigh{VNI: ik.vni, IP: ik.ip, MAC: net.HardwareAddr(best.mac[:])})
	}
	for fk := range flood {
		in.Flood = append(in.Flood, Flood{VNI: fk.vni, VTEP: fk.vtep})
	}
	type use struct {
		stamp uint64
		rmac  net.HardwareAddr
	}
	rmacs := map[rmacKey]use{}
	addUse := func(k rmacKey, stamp uint64, mac net.HardwareAddr) {
		if u, ok := rmacs[k]; !ok || stamp > u.stamp {
			rmacs[k] = use{stamp, mac}
		}
	}
	pfxs := map[pfxKey]bool{}
	for pk := range hosts {
		pfxs[pk] = true
	}
	for pk := range t5 {
		pfxs[pk] = true
	}
	for pk := range pfxs {
		if locals[pk] {
			continue
		}
		if cl := hosts[pk]; len(cl) > 0 {
			best := cl[0]
			for _, c := range cl[1:] {
				if cmpAll(cmp.Compare(best.seq, c.seq), bytes.Compare(c.mac[:], best.mac[:]), cmp.Compare(c.vni, best.vni), cmp.Compare(best.stamp, c.stamp)) < 0 {
					best = c
				}
			}
			in.Routes = append(in.Routes, L3Route{VNI: pk.vni, Prefix: pk.pfx, NextHops: []netip.Addr{best.vtep}})
			addUse(rmacKey{pk.vni, best.vtep}, best.stamp, best.rmac)
			continue
		}
		var nhs []netip.Addr
		for _, c := range t5[pk] {
			if !slices.Contains(nhs, c.vtep) {
				nhs = append(nhs, c.vtep)
			}
			addUse(rmacKey{pk.vni, c.vtep}, c.stamp, c.rmac)
		}
		slices.SortFunc(nhs, netip.Addr.Compare)
		in.Routes = append(in.Routes, L3Route{VNI: pk.vni, Prefix: pk.pfx, NextHops: nhs})
	}
	for k, u := range rmacs {
		in.RMACs = append(in.RMACs, RouterMAC{VNI: k.vni, VTEP: k.vtep, MAC: u.rmac})
	}
	return sortIntents(in)
}

// TestRIBRandomAgainstModel drives the RIB with random batches and checks
// after each step that the diffs applied to a kernel are consistent (no
// duplicate adds, no deletes of missing entries), that the result equals
// Intents, and that Intents equals a from-scratch model of the rules.
func TestRIBRandomAgainstModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	vteps := []netip.Addr{vtepA, vtepB, vtepC, self}
	macs := []net.HardwareAddr{macX, macY, {2, 0, 0, 0, 0, 3}, {2, 0, 0, 0, 0, 4}}
	ips := []string{"", "10.1.1.1", "10.1.1.2", "2001:db8::1"}
	rts := []RT{AutoRT(PresetFRR, 65001, 100), AutoRT(PresetFRR, 65002, 200), NewRT0(1, 1), AutoRT(PresetRFC8365, 65003, 300)}
	// The L3 RTs: auto for 5000 and 6000, and one that both the explicit
	// L3 and the auto import of 5000 take.
	l3rts := []RT{AutoRT(PresetFRR, 65001, 5000), NewRT0(1, 5000), AutoRT(PresetFRR, 65002, 6000)}
	rmacs := []net.HardwareAddr{nil, {2, 0xaa, 0, 0, 0, 1}, {2, 0xaa, 0, 0, 0, 2}}
	prefixes := []netip.Prefix{
		netip.MustParsePrefix("10.9.0.0/16"),
		netip.MustParsePrefix("10.1.1.1/32"), // also a host IP
		netip.MustParsePrefix("10.1.1.2/32"), // also a host IP, local in some L3 sets
		netip.MustParsePrefix("2001:db8::/64"),
		netip.MustParsePrefix("2001:db8::1/128"),
	}
	segSets := [][]Segment{
		{autoSeg(100), autoSeg(200)},
		{autoSeg(100), NewSegment(self, 1, PresetFRR, 9, "t", "x", 300, []RT{NewRT0(1, 1)}, nil)},
		{autoSeg(300)},
		nil,
	}
	rm := net.HardwareAddr{2, 0xee, 0, 0, 0, 1}
	l3Sets := [][]L3{
		{NewL3(self, 65000, PresetFRR, 50, "t", 5000, nil, nil, rm, []netip.Prefix{netip.MustParsePrefix("10.1.1.2/32"), netip.MustParsePrefix("10.9.0.0/16")})},
		{NewL3(self, 65000, PresetFRR, 50, "t", 5000, nil, nil, rm, nil), NewL3(self, 65000, PresetFRR, 60, "u", 6000, nil, nil, rm, []netip.Prefix{netip.MustParsePrefix("2001:db8::/64")})},
		{NewL3(self, 65000, PresetFRR, 50, "t", 5000, []RT{NewRT0(1, 5000)}, nil, rm, nil)},
		nil,
	}
	vnis := []VNI{100, 200, 300}

	rib := NewRIB(self)
	k := newKernel()
	segs, l3s := segSets[0], l3Sets[0]
	k.apply(t, rib.SetSegments(segs))
	k.apply(t, rib.SetL3(l3s))
	local := map[macKey]uint32{}
	stamps := map[string]uint64{}
	var clock uint64
	seen := map[string]int{"ecmp route": 0, "ipv6 host route": 0, "several router macs": 0, "routes without a segment": 0}
	for step := 0; step < 5000; step++ {
		switch op := rng.IntN(20); {
		case op == 0:
			segs = segSets[rng.IntN(len(segSets))]
			k.apply(t, rib.SetSegments(segs))
		case op == 1:
			l3s = l3Sets[rng.IntN(len(l3Sets))]
			k.apply(t, rib.SetL3(l3s))
		case op <= 3:
			vni, mac := vnis[rng.IntN(len(vnis))], macs[rng.IntN(len(macs))]
			present := rng.IntN(2) == 0
			seq, d := rib.Local(vni, mac, present)
			k.apply(t, d)
			mk := macKey{vni: vni, mac: [6]byte(mac)}
			if present {
				if prev, ok := local[mk]; ok && prev != seq {
					t.Fatalf("step %d: local seq of a local mac changed %d -> %d", step, prev, seq)
				}
				local[mk] = seq
			} else {
				delete(local, mk)
			}
		default:
			var batch []Route
			for n := rng.IntN(6) + 1; n > 0; n-- {
				vt := vteps[rng.IntN(len(vteps))]
				rd := rdOf(vt, uint16(rng.IntN(2)))
				var r Route
				switch rng.IntN(5) {
				case 0:
					r = imetRoute(rd, vt, rts[rng.IntN(len(rts))])
				case 1:
					r = Route{
						NLRI:      &Prefix{RD: rd, Prefix: prefixes[rng.IntN(len(prefixes))], Label: 5000},
						NextHop:   vt,
						RTs:       []RT{l3rts[rng.IntN(len(l3rts))]},
						Encap:     EncapVXLAN,
						RouterMAC: rmacs[rng.IntN(len(rmacs))],
					}
				default:
					r = macRoute(vt, macs[rng.IntN(len(macs))], ips[rng.IntN(len(ips))], uint32(rng.IntN(4)), rts[rng.IntN(len(rts))])
					r.NLRI.(*MACIP).RD = rd
					if rng.IntN(2) == 0 {
						r.RTs = append(r.RTs, l3rts[rng.IntN(len(l3rts))])
						r.RouterMAC = rmacs[rng.IntN(len(rmacs))]
					}
				}
				if rng.IntN(3) == 0 {
					r = withdraw(r)
				} else if vt != self {
					clock++
					stamps[r.NLRI.Key()] = clock
				}
				batch = append(batch, r)
			}
			k.apply(t, rib.Update(batch))
		}
		// SetSegments can supersede too: a new segment imports routes
		// with higher sequence numbers than a local MAC's.
		for _, s := range rib.Superseded() {
			mk := macKey{vni: s.VNI, mac: [6]byte(s.MAC)}
			if seq, ok := local[mk]; !ok || seq != s.Seq || s.RemoteSeq <= s.Seq {
				t.Fatalf("step %d: superseded %+v, local seq %d (%v)", step, s, seq, ok)
			}
			delete(local, mk)
		}
		got := rib.Intents()
		for _, r := range got.Routes {
			if len(r.NextHops) > 1 {
				seen["ecmp route"]++
			}
			if r.Prefix.Bits() == 128 {
				seen["ipv6 host route"]++
			}
		}
		if len(got.RMACs) > 1 {
			seen["several router macs"]++
		}
		if len(got.Routes) > 0 && len(got.FDB) == 0 {
			seen["routes without a segment"]++
		}
		if !reflect.DeepEqual(k.intents(), got) {
			t.Fatalf("step %d: kernel after diffs\n %+v\nIntents\n %+v", step, k.intents(), got)
		}
		if want := model(rib.Routes(), segs, l3s, local, stamps); !reflect.DeepEqual(want, got) {
			t.Fatalf("step %d: Intents\n %+v\nmodel\n %+v", step, got, want)
		}
	}
	// The run must have reached the interesting states, or it tests
	// nothing about them.
	for what, n := range seen {
		if n == 0 {
			t.Errorf("the random run never reached: %s", what)
		}
	}
}

func TestRIBRoutesSorted(t *testing.T) {
	rib := NewRIB(self)
	rt := AutoRT(PresetFRR, 65001, 100)
	p := Route{NLRI: &Prefix{RD: testRD, Prefix: netip.MustParsePrefix("10.0.0.0/8"), Label: 1}, NextHop: vtepA, RTs: []RT{rt}}
	rib.Update([]Route{p, imetRoute(rdOf(vtepB, 1), vtepB, rt), macRoute(vtepA, macX, "", 0, rt)})
	var types []RouteType
	for _, r := range rib.Routes() {
		types = append(types, r.NLRI.Type())
	}
	if !reflect.DeepEqual(types, []RouteType{TypeMACIP, TypeIMET, TypePrefix}) {
		t.Fatalf("Routes types %v", types)
	}
	if d := rib.SetSegments([]Segment{autoSeg(100)}); len(d.Add.FDB) != 1 || len(d.Add.Flood) != 1 || d.Add.Len() != 2 {
		t.Fatalf("type-5 must not produce intents: %+v", d)
	}
}

func benchRoutes(n int) []Route {
	routes := make([]Route, n)
	rts := []RT{AutoRT(PresetFRR, 65001, 100)}
	for i := range routes {
		vtep := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8 & 0x3f), byte(i)})
		mac := net.HardwareAddr{0x02, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)}
		ip := netip.AddrFrom4([4]byte{172, byte(i >> 16), byte(i >> 8), byte(i)})
		routes[i] = Route{
			NLRI:    &MACIP{RD: NewRD1(vtep, 100), MAC: mac, IP: ip, Labels: []VNI{100}},
			NextHop: vtep,
			RTs:     rts,
			Encap:   EncapVXLAN,
		}
	}
	return routes
}

// BenchmarkRIBUpdate feeds 100k type-2 MAC+IP routes (one burst, as GoBGP
// delivers a peer's table) into an empty RIB.
func BenchmarkRIBUpdate(b *testing.B) {
	routes := benchRoutes(100_000)
	b.ReportAllocs()
	for b.Loop() {
		rib := NewRIB(self)
		rib.SetSegments([]Segment{autoSeg(100)})
		d := rib.Update(routes)
		if len(d.Add.FDB) != len(routes) || len(d.Add.Neigh) != len(routes) {
			b.Fatalf("diff %d fdb, %d neigh", len(d.Add.FDB), len(d.Add.Neigh))
		}
	}
}

// BenchmarkRIBWithdrawAll withdraws 100k type-2 routes in one burst.
func BenchmarkRIBWithdrawAll(b *testing.B) {
	routes := benchRoutes(100_000)
	ws := make([]Route, len(routes))
	for i, r := range routes {
		ws[i] = Route{NLRI: r.NLRI, Withdraw: true}
	}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		rib := NewRIB(self)
		rib.SetSegments([]Segment{autoSeg(100)})
		rib.Update(routes)
		b.StartTimer()
		if d := rib.Update(ws); len(d.Del.FDB) != len(routes) {
			b.Fatalf("diff %d fdb", len(d.Del.FDB))
		}
	}
}

// TestRIBIMETNeedsIngressReplication: a type-3 route with a PMSI tunnel
// other than ingress replication gives no flood entry, and replaces one
// the same route gave before.
func TestRIBIMETNeedsIngressReplication(t *testing.T) {
	rib := NewRIB(self)
	rib.SetSegments([]Segment{autoSeg(100)})
	rt := AutoRT(PresetFRR, 65001, 100)
	ir := imetRoute(rdOf(vtepA, 1), vtepA, rt)
	ir.PMSI = &PMSI{Type: PMSIIngressReplication, Label: 100, Endpoint: vtepA}
	checkDiff(t, "ingress replication", rib.Update([]Route{ir}), floods(Flood{VNI: 100, VTEP: vtepA}), Intents{})
	bogus := ir
	bogus.PMSI = &PMSI{Type: 0xee, Label: 100}
	checkDiff(t, "bogus tunnel type", rib.Update([]Route{bogus}), Intents{}, floods(Flood{VNI: 100, VTEP: vtepA}))
	if rib.Skipped() != 1 {
		t.Fatalf("skipped %d, want 1", rib.Skipped())
	}
}
