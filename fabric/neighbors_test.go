package fabric

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/evpnd/evpnd/evpn"
)

func TestNUDState(t *testing.T) {
	for _, tc := range []struct {
		state uint16
		want  string
	}{
		{0x02, "reachable"},
		{0x04, "stale"},
		{0x40, "noarp"},
		{0x80, "permanent"},
		{0x01, "incomplete"},
		{0x20, "failed"},
		{0x00, "none"},
		{0x42, "reachable,noarp"},
	} {
		if got := nudState(tc.state); got != tc.want {
			t.Errorf("nudState(%#x) = %q, want %q", tc.state, got, tc.want)
		}
	}
}

func TestPrivilegedNeighbors(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	x, l, prefix := singleHost(t)
	wl := "fnw-" + suffix()
	wlMAC := workload(t, x, "p1", wl, "172.31.7.1/24")
	run(t, "ip", "-n", wl, "-6", "addr", "add", "2001:db8:7::1/64", "dev", "eth0", "nodad")
	cfg := Config{NetnsPrefix: prefix, VTEP: x.vtep, Tenants: []Tenant{
		{
			Name: "ta", L3: &TenantL3{VNI: 5000, RouterMAC: rmacA},
			Segments: []Segment{{VNI: 100, Ports: []string{"p1"}, GatewayMAC: gwMAC,
				Gateways: []netip.Prefix{netip.MustParsePrefix("172.31.7.254/24"), netip.MustParsePrefix("2001:db8:7::fe/64")}}},
		},
		{Name: "tb", Segments: []Segment{{VNI: 200}}},
	}}
	if err := l.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}

	vtep := netip.MustParseAddr("10.77.0.2")
	remoteMAC, remoteMAC6, otherMAC := mustMAC("02:00:00:00:07:09"), mustMAC("02:00:00:00:07:0a"), mustMAC("02:00:00:00:08:05")
	if err := l.Update(ctx, evpn.Diff{Add: evpn.Intents{
		FDB: []evpn.FDB{{VNI: 100, MAC: remoteMAC, VTEP: vtep}, {VNI: 100, MAC: remoteMAC6, VTEP: vtep}, {VNI: 200, MAC: otherMAC, VTEP: vtep}},
		Neigh: []evpn.Neigh{
			{VNI: 100, IP: netip.MustParseAddr("172.31.7.9"), MAC: remoteMAC},
			{VNI: 100, IP: netip.MustParseAddr("2001:db8:7::9"), MAC: remoteMAC6},
			{VNI: 200, IP: netip.MustParseAddr("172.31.8.5"), MAC: otherMAC},
		},
		// The router MAC's neighbors sit on the L3VNI bridge, which is
		// no segment's.
		RMACs: []evpn.RouterMAC{{VNI: 5000, VTEP: vtep, MAC: rmacB}},
	}}); err != nil {
		t.Fatal(err)
	}
	// Someone else's entries on a segment bridge: an extern_learn one
	// without evpnd's protocol tag and a static one. Neither is remote.
	ns := prefix + "ta"
	foreignMAC, staticMAC := mustMAC("02:00:00:00:07:14"), mustMAC("02:00:00:00:07:15")
	run(t, "ip", "-n", ns, "neigh", "add", "172.31.7.20", "lladdr", foreignMAC.String(), "dev", "br100", "extern_learn")
	run(t, "ip", "-n", ns, "neigh", "add", "172.31.7.21", "lladdr", staticMAC.String(), "dev", "br100", "nud", "permanent")

	// The workload resolves its gateways; answering, the tenant namespace
	// learns the workload as a neighbor of br100.
	poke(t, wl, "172.31.7.254")
	poke(t, wl, "[2001:db8:7::fe]")

	type row struct {
		tenant string
		vni    evpn.VNI
		ip     string
	}
	var got []Neighbor
	byRow := map[row]Neighbor{}
	eventually(t, "the workload's neighbors", func() bool {
		var err error
		got, err = l.Neighbors(ctx)
		if err != nil {
			t.Fatal(err)
		}
		clear(byRow)
		for _, n := range got {
			byRow[row{n.Tenant, n.VNI, n.IP.String()}] = n
		}
		_, v4 := byRow[row{"ta", 100, "172.31.7.1"}]
		_, v6 := byRow[row{"ta", 100, "2001:db8:7::1"}]
		return v4 && v6
	})
	dump := func() string {
		var b strings.Builder
		for _, n := range got {
			b.WriteString(n.Tenant + " " + n.IP.String() + " " + n.MAC.String() + " " + n.State + "\n")
		}
		return b.String() + run(t, "ip", "-n", ns, "neigh", "show")
	}

	want := []struct {
		row
		mac    string
		remote bool
		states []string
	}{
		{row{"ta", 100, "172.31.7.1"}, wlMAC.String(), false, []string{"reachable", "stale", "delay", "probe"}},
		{row{"ta", 100, "2001:db8:7::1"}, wlMAC.String(), false, []string{"reachable", "stale", "delay", "probe"}},
		{row{"ta", 100, "172.31.7.9"}, remoteMAC.String(), true, []string{"noarp"}},
		{row{"ta", 100, "2001:db8:7::9"}, remoteMAC6.String(), true, []string{"noarp"}},
		{row{"ta", 100, "172.31.7.20"}, foreignMAC.String(), false, nil},
		{row{"ta", 100, "172.31.7.21"}, staticMAC.String(), false, []string{"permanent"}},
		{row{"tb", 200, "172.31.8.5"}, otherMAC.String(), true, []string{"noarp"}},
	}
	for _, w := range want {
		n, ok := byRow[w.row]
		if !ok {
			t.Errorf("%+v not listed:\n%s", w.row, dump())
			continue
		}
		if n.MAC.String() != w.mac || n.Remote != w.remote || (w.states != nil && !slices.Contains(w.states, n.State)) {
			t.Errorf("%+v: mac %s remote %v state %q, want mac %s remote %v state one of %v", w.row, n.MAC, n.Remote, n.State, w.mac, w.remote, w.states)
		}
	}
	remotes := 0
	for _, n := range got {
		if n.VNI != 100 && n.VNI != 200 {
			t.Errorf("entry of vni %d, not a segment: %+v", n.VNI, n)
		}
		if n.Remote {
			remotes++
		}
	}
	if remotes != 3 {
		t.Errorf("%d remote entries, want the 3 installed:\n%s", remotes, dump())
	}
	sorted := slices.IsSortedFunc(got, func(a, b Neighbor) int {
		if c := strings.Compare(a.Tenant, b.Tenant); c != 0 {
			return c
		}
		if a.VNI != b.VNI {
			return int(a.VNI) - int(b.VNI)
		}
		return a.IP.Compare(b.IP)
	})
	if !sorted {
		t.Errorf("not sorted by tenant, vni, ip:\n%s", dump())
	}

	// A withdrawn suppression entry leaves the table.
	if err := l.Update(ctx, evpn.Diff{Del: evpn.Intents{Neigh: []evpn.Neigh{{VNI: 100, IP: netip.MustParseAddr("172.31.7.9"), MAC: remoteMAC}}}}); err != nil {
		t.Fatal(err)
	}
	got, err := l.Neighbors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range got {
		if n.IP == netip.MustParseAddr("172.31.7.9") {
			t.Errorf("withdrawn entry still listed: %+v", n)
		}
	}
}
