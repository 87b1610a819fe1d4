package fabric

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/evpnd/evpnd/evpn"
	"github.com/evpnd/evpnd/fabric/kernel"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root to create network namespaces")
	}
}

func suffix() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// testNetns creates a named namespace deleted when the test ends.
func testNetns(t testing.TB, name string) netns.NsHandle {
	t.Helper()
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return ns
}

// cleanupPrefix deletes every namespace fabric made under prefix.
func cleanupPrefix(t testing.TB, prefix string) {
	t.Cleanup(func() {
		names, _ := listNetns(prefix)
		for _, n := range names {
			exec.Command("ip", "netns", "del", n).Run()
		}
	})
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(logWriter{t}, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// host is a fake evpnd host: an underlay namespace whose veth "ul0"
// carries the VTEP address, its peer in a "wire" namespace or in another
// host.
type host struct {
	name string
	ns   netns.NsHandle
	h    *netlink.Handle
	vtep netip.Addr
}

func newHost(t testing.TB, name string, vtep netip.Addr) *host {
	t.Helper()
	ns := testNetns(t, name)
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return &host{name: name, ns: ns, h: h, vtep: vtep}
}

// wire connects two hosts' ul0 and brings them up with their VTEPs.
func wire(t testing.TB, a, b *host) {
	t.Helper()
	run(t, "ip", "-n", a.name, "link", "add", "ul0", "type", "veth", "peer", "name", "ul0", "netns", b.name)
	for _, x := range []*host{a, b} {
		run(t, "ip", "-n", x.name, "addr", "add", x.vtep.String()+"/24", "dev", "ul0")
		run(t, "ip", "-n", x.name, "link", "set", "ul0", "up")
	}
}

// workload makes a workload namespace whose eth0 is the peer of port in
// the host's namespace, and returns eth0's MAC.
func workload(t testing.TB, x *host, port, wname string, addr string) net.HardwareAddr {
	t.Helper()
	testNetns(t, wname)
	run(t, "ip", "-n", x.name, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", wname)
	if addr != "" {
		run(t, "ip", "-n", wname, "addr", "add", addr, "dev", "eth0")
	}
	run(t, "ip", "-n", wname, "link", "set", "eth0", "up")
	wns, err := netns.GetFromName(wname)
	if err != nil {
		t.Fatal(err)
	}
	defer wns.Close()
	wh, err := netlink.NewHandleAt(wns)
	if err != nil {
		t.Fatal(err)
	}
	defer wh.Close()
	eth0, err := wh.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	return eth0.Attrs().HardwareAddr
}

func newFabric(t testing.TB, x *host) *Linux {
	t.Helper()
	l, err := New(Options{Logger: testLogger(t), Underlay: &x.ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// tenantHandle opens a handle in a tenant namespace fabric made.
func tenantHandle(t testing.TB, nsName string) *netlink.Handle {
	t.Helper()
	ns, err := netns.GetFromName(nsName)
	if err != nil {
		t.Fatalf("tenant namespace %s: %v", nsName, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// singleHost is one host with its wire peer and a fabric running in it.
func singleHost(t testing.TB) (*host, *Linux, string) {
	t.Helper()
	sfx := suffix()
	x := newHost(t, "fh-"+sfx, netip.MustParseAddr("10.77.0.1"))
	peer := newHost(t, "fw-"+sfx, netip.MustParseAddr("10.77.0.2"))
	wire(t, x, peer)
	prefix := "ft" + sfx + "-"
	cleanupPrefix(t, prefix)
	return x, newFabric(t, x), prefix
}

func checkSegment(t *testing.T, th *netlink.Handle, vni evpn.VNI, vtep netip.Addr, mtu int, ports ...string) (vxIndex, brIndex int) {
	t.Helper()
	link, err := th.LinkByName(vxlanName(vni))
	if err != nil {
		t.Fatalf("vni %d: %v", vni, err)
	}
	vx, ok := link.(*netlink.Vxlan)
	if !ok {
		t.Fatalf("%s is a %s", vxlanName(vni), link.Type())
	}
	if vx.VxlanId != int(vni) || vx.Port != VXLANPort || vx.Learning || !net.IP(vtep.AsSlice()).Equal(vx.SrcAddr) || len(vx.Group) != 0 || vx.MTU != mtu {
		t.Errorf("%s: id %d port %d learning %v local %v group %v mtu %d", vx.Name, vx.VxlanId, vx.Port, vx.Learning, vx.SrcAddr, vx.Group, vx.MTU)
	}
	br, err := th.LinkByName(bridgeName(vni))
	if err != nil || br.Type() != "bridge" {
		t.Fatalf("bridge of vni %d: %v %v", vni, br, err)
	}
	if vx.MasterIndex != br.Attrs().Index {
		t.Errorf("%s master %d, want %s (%d)", vx.Name, vx.MasterIndex, br.Attrs().Name, br.Attrs().Index)
	}
	pi, err := th.LinkGetProtinfo(vx)
	if err != nil {
		t.Fatal(err)
	}
	if pi.Learning || !pi.NeighSuppress {
		t.Errorf("%s bridge port: learning %v neigh_suppress %v", vx.Name, pi.Learning, pi.NeighSuppress)
	}
	for _, l := range []netlink.Link{vx, br} {
		if l.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("%s is down", l.Attrs().Name)
		}
	}
	for _, p := range ports {
		pl, err := th.LinkByName(p)
		if err != nil {
			t.Errorf("port %s not in tenant namespace: %v", p, err)
			continue
		}
		if pl.Attrs().MasterIndex != br.Attrs().Index || pl.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("port %s: master %d up %v", p, pl.Attrs().MasterIndex, pl.Attrs().Flags&net.FlagUp != 0)
		}
	}
	return vx.Index, br.Attrs().Index
}

func TestPrivilegedSet(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	x, l, prefix := singleHost(t)
	sfx := suffix()
	for _, p := range []string{"p1", "p2", "p3"} {
		workload(t, x, p, "fl-"+p+"-"+sfx, "")
	}
	cfg := Config{NetnsPrefix: prefix, VTEP: x.vtep, Tenants: []Tenant{
		{Name: "ta", Segments: []Segment{
			{Name: "web", VNI: 100, Ports: []string{"p1"}},
			{Name: "db", VNI: 101, MTU: 1400, Ports: []string{"p2", "p9"}},
		}},
		{Name: "tb", Segments: []Segment{{Name: "x", VNI: 200, Ports: []string{"p3"}}}},
	}}
	if err := l.Set(ctx, cfg); err != nil {
		t.Fatalf("set: %v", err)
	}
	ta := tenantHandle(t, prefix+"ta")
	tb := tenantHandle(t, prefix+"tb")
	vx100, br100 := checkSegment(t, ta, 100, x.vtep, 1450, "p1")
	checkSegment(t, ta, 101, x.vtep, 1400, "p2")
	checkSegment(t, tb, 200, x.vtep, 1450, "p3")
	for _, p := range []string{"p1", "p2", "p3"} {
		if _, err := x.h.LinkByName(p); err == nil {
			t.Errorf("port %s still in the underlay namespace", p)
		}
	}
	// The VXLAN socket lives in the underlay namespace.
	if out := run(t, "ip", "netns", "exec", x.name, "ss", "-uan"); !strings.Contains(out, ":4789") {
		t.Errorf("no vxlan socket in the underlay namespace:\n%s", out)
	}

	if err := l.Set(ctx, cfg); err != nil {
		t.Fatalf("second set: %v", err)
	}
	if a, b := checkSegment(t, ta, 100, x.vtep, 1450, "p1"); a != vx100 || b != br100 {
		t.Errorf("second set recreated devices: vx %d->%d br %d->%d", vx100, a, br100, b)
	}

	// A port that appears later is attached.
	workload(t, x, "p9", "fl-p9-"+sfx, "")
	eventually(t, "p9 attached", func() bool {
		p, err := ta.LinkByName("p9")
		return err == nil && p.Attrs().MasterIndex != 0
	})
	checkSegment(t, ta, 101, x.vtep, 1400, "p2", "p9")

	// Dropping a segment and a tenant hands their ports back.
	cfg.Tenants = []Tenant{{Name: "ta", Segments: []Segment{{Name: "web", VNI: 100, Ports: []string{"p1"}}}}}
	if err := l.Set(ctx, cfg); err != nil {
		t.Fatalf("shrinking set: %v", err)
	}
	for _, name := range []string{"vx101", "br101", "p2", "p9"} {
		if _, err := ta.LinkByName(name); err == nil {
			t.Errorf("%s still in tenant namespace", name)
		}
	}
	for _, p := range []string{"p2", "p9", "p3"} {
		if _, err := x.h.LinkByName(p); err != nil {
			t.Errorf("port %s not back in the underlay: %v", p, err)
		}
	}
	if _, err := os.Stat("/run/netns/" + prefix + "tb"); err == nil {
		t.Errorf("namespace of removed tenant tb still exists")
	}
	checkSegment(t, ta, 100, x.vtep, 1450, "p1")
}

func TestPrivilegedSetRejectsBadConfig(t *testing.T) {
	requireRoot(t)
	_, l, prefix := singleHost(t)
	err := l.Set(context.Background(), Config{NetnsPrefix: prefix, VTEP: netip.MustParseAddr("10.77.0.1"), Tenants: []Tenant{
		{Name: "a", Segments: []Segment{{VNI: 1 << 24}, {VNI: 5, Ports: []string{"p"}}}},
		{Name: "b", Segments: []Segment{{VNI: 5, Ports: []string{"p"}}}},
	}})
	for _, want := range []string{"tenants[0].segments[0].vni: 16777216 is out of range", "tenants[1].segments[0].vni: 5 is also used", `tenants[1].segments[0].ports[0]: "p" is also`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
	if names, _ := listNetns(prefix); len(names) != 0 {
		t.Errorf("invalid config created namespaces %v", names)
	}
}

// remoteView is the kernel's remote entries of one segment, from dumps.
type remoteView struct {
	bridge map[string]bool   // extern_learn MACs on the vxlan port
	vxlan  map[string]string // MAC -> dst on the vxlan device
	flood  map[string]bool   // VTEPs of all-zero entries
	neigh  map[string]string // IP -> MAC, extern_learn on the bridge
	other  map[string]bool   // MACs on the bridge not extern_learn
}

func dumpRemote(t testing.TB, th *netlink.Handle, vni evpn.VNI) remoteView {
	t.Helper()
	vx, err := th.LinkByName(vxlanName(vni))
	if err != nil {
		t.Fatal(err)
	}
	br, err := th.LinkByName(bridgeName(vni))
	if err != nil {
		t.Fatal(err)
	}
	v := remoteView{bridge: map[string]bool{}, vxlan: map[string]string{}, flood: map[string]bool{}, neigh: map[string]string{}, other: map[string]bool{}}
	fdb, err := th.NeighList(0, unix.AF_BRIDGE)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range fdb {
		switch {
		case n.LinkIndex == vx.Attrs().Index && n.MasterIndex == br.Attrs().Index && n.Flags&unix.NTF_EXT_LEARNED != 0:
			v.bridge[n.HardwareAddr.String()] = true
		case n.LinkIndex == vx.Attrs().Index && n.IP != nil && n.HardwareAddr.String() == "00:00:00:00:00:00":
			v.flood[n.IP.String()] = true
		case n.LinkIndex == vx.Attrs().Index && n.IP != nil:
			v.vxlan[n.HardwareAddr.String()] = n.IP.String()
		case n.MasterIndex == br.Attrs().Index && n.State&unix.NUD_PERMANENT == 0:
			v.other[n.HardwareAddr.String()] = true
		}
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		ns, err := th.NeighList(br.Attrs().Index, fam)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ns {
			if n.Flags&unix.NTF_EXT_LEARNED != 0 {
				v.neigh[n.IP.String()] = n.HardwareAddr.String()
			}
		}
	}
	return v
}

func TestPrivilegedUpdateSync(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	x, l, prefix := singleHost(t)
	workload(t, x, "p1", "fl-p1-"+suffix(), "")
	cfg := Config{NetnsPrefix: prefix, VTEP: x.vtep, Tenants: []Tenant{{Name: "ta", Segments: []Segment{{VNI: 100, Ports: []string{"p1"}}}}}}
	if err := l.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	th := tenantHandle(t, prefix+"ta")
	vtepA, vtepB := netip.MustParseAddr("10.77.0.2"), netip.MustParseAddr("10.77.0.3")
	m1, m2, m3 := mustMAC("02:00:00:00:01:01"), mustMAC("02:00:00:00:01:02"), mustMAC("02:00:00:00:01:03")
	add := evpn.Intents{
		FDB:   []evpn.FDB{{VNI: 100, MAC: m1, VTEP: vtepA}, {VNI: 100, MAC: m2, VTEP: vtepB}, {VNI: 999, MAC: m3, VTEP: vtepA}},
		Flood: []evpn.Flood{{VNI: 100, VTEP: vtepA}, {VNI: 100, VTEP: vtepB}},
		Neigh: []evpn.Neigh{{VNI: 100, IP: netip.MustParseAddr("192.168.1.1"), MAC: m1}, {VNI: 100, IP: netip.MustParseAddr("fd00::2"), MAC: m2}},
	}
	if err := l.Update(ctx, evpn.Diff{Add: add}); err != nil {
		t.Fatalf("update: %v", err)
	}
	// The same change again must not fail.
	if err := l.Update(ctx, evpn.Diff{Add: add}); err != nil {
		t.Fatalf("repeated update: %v", err)
	}
	v := dumpRemote(t, th, 100)
	if !v.bridge[m1.String()] || !v.bridge[m2.String()] || v.vxlan[m1.String()] != "10.77.0.2" || v.vxlan[m2.String()] != "10.77.0.3" {
		t.Errorf("fdb after add: bridge %v vxlan %v", v.bridge, v.vxlan)
	}
	if !v.flood["10.77.0.2"] || !v.flood["10.77.0.3"] || len(v.flood) != 2 {
		t.Errorf("flood after add: %v", v.flood)
	}
	if v.neigh["192.168.1.1"] != m1.String() || v.neigh["fd00::2"] != m2.String() {
		t.Errorf("neighbors after add: %v", v.neigh)
	}
	if s := l.Stats(); s.RemoteFDB != 2 || s.RemoteFlood != 2 || s.RemoteNeigh != 2 {
		t.Errorf("stats %+v", s)
	}

	// m1 moves to B; the late withdrawal of its old location keeps it.
	if err := l.Update(ctx, evpn.Diff{Add: evpn.Intents{FDB: []evpn.FDB{{VNI: 100, MAC: m1, VTEP: vtepB}}}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Update(ctx, evpn.Diff{Del: evpn.Intents{FDB: []evpn.FDB{{VNI: 100, MAC: m1, VTEP: vtepA}}}}); err != nil {
		t.Fatal(err)
	}
	if v := dumpRemote(t, th, 100); !v.bridge[m1.String()] || v.vxlan[m1.String()] != "10.77.0.3" {
		t.Errorf("moved mac: bridge %v vxlan %v", v.bridge, v.vxlan)
	}

	del := evpn.Intents{
		FDB:   []evpn.FDB{{VNI: 100, MAC: m2, VTEP: vtepB}},
		Flood: []evpn.Flood{{VNI: 100, VTEP: vtepA}},
		Neigh: []evpn.Neigh{{VNI: 100, IP: netip.MustParseAddr("fd00::2"), MAC: m2}},
	}
	if err := l.Update(ctx, evpn.Diff{Del: del}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := l.Update(ctx, evpn.Diff{Del: del}); err != nil {
		t.Fatalf("repeated delete: %v", err)
	}
	v = dumpRemote(t, th, 100)
	if v.bridge[m2.String()] || v.vxlan[m2.String()] != "" || v.flood["10.77.0.2"] || !v.flood["10.77.0.3"] || v.neigh["fd00::2"] != "" {
		t.Errorf("after delete: %+v", v)
	}

	// A withdrawal whose bridge entry is already gone still clears the
	// vxlan entry.
	m4 := mustMAC("02:00:00:00:01:04")
	if err := l.Update(ctx, evpn.Diff{Add: evpn.Intents{FDB: []evpn.FDB{{VNI: 100, MAC: m4, VTEP: vtepA}}}}); err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "netns", "exec", prefix+"ta", "bridge", "fdb", "del", m4.String(), "dev", "vx100", "master")
	if err := l.Update(ctx, evpn.Diff{Del: evpn.Intents{FDB: []evpn.FDB{{VNI: 100, MAC: m4, VTEP: vtepA}}}}); err != nil {
		t.Fatal(err)
	}
	if v := dumpRemote(t, th, 100); v.bridge[m4.String()] || v.vxlan[m4.String()] != "" {
		t.Errorf("half-deleted mac left behind: %+v", v)
	}

	// Entries evpnd does not own, added by hand.
	ns := prefix + "ta"
	run(t, "ip", "netns", "exec", ns, "bridge", "fdb", "add", "02:00:00:00:09:09", "dev", "p1", "master", "static")
	run(t, "ip", "netns", "exec", ns, "ip", "neigh", "add", "192.168.1.99", "lladdr", "02:00:00:00:09:09", "dev", "br100", "nud", "permanent")
	// Stale evpnd entries left behind (as after a restart with lost routes).
	if err := l.Update(ctx, evpn.Diff{Add: evpn.Intents{FDB: []evpn.FDB{{VNI: 100, MAC: m3, VTEP: vtepA}}}}); err != nil {
		t.Fatal(err)
	}

	full := evpn.Intents{
		FDB:   []evpn.FDB{{VNI: 100, MAC: m1, VTEP: vtepB}, {VNI: 100, MAC: m2, VTEP: vtepA}},
		Flood: []evpn.Flood{{VNI: 100, VTEP: vtepA}},
		Neigh: []evpn.Neigh{{VNI: 100, IP: netip.MustParseAddr("192.168.1.2"), MAC: m2}},
	}
	if err := l.Sync(ctx, full); err != nil {
		t.Fatalf("sync: %v", err)
	}
	v = dumpRemote(t, th, 100)
	if v.bridge[m3.String()] || v.vxlan[m3.String()] != "" {
		t.Errorf("stale fdb entry survived sync: %+v", v)
	}
	if !v.bridge[m1.String()] || v.vxlan[m1.String()] != "10.77.0.3" || !v.bridge[m2.String()] || v.vxlan[m2.String()] != "10.77.0.2" {
		t.Errorf("fdb after sync: bridge %v vxlan %v", v.bridge, v.vxlan)
	}
	if len(v.flood) != 1 || !v.flood["10.77.0.2"] {
		t.Errorf("flood after sync: %v", v.flood)
	}
	if len(v.neigh) != 1 || v.neigh["192.168.1.2"] != m2.String() {
		t.Errorf("neighbors after sync: %v", v.neigh)
	}
	if !v.other["02:00:00:00:09:09"] {
		t.Errorf("hand-made static fdb entry did not survive sync")
	}
	if out := run(t, "ip", "-n", ns, "neigh", "show", "192.168.1.99"); !strings.Contains(out, "02:00:00:00:09:09") {
		t.Errorf("hand-made neighbor did not survive sync: %q", out)
	}

	// A second Sync with the same state writes nothing.
	before := l.Stats().Writes
	if err := l.Sync(ctx, full); err != nil {
		t.Fatal(err)
	}
	if w := l.Stats().Writes - before; w != 0 {
		t.Errorf("converged sync wrote %d entries", w)
	}

	macs, err := l.MACs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	remote := map[string]netip.Addr{}
	for _, m := range macs {
		if m.Remote {
			remote[m.MAC.String()] = m.VTEP
		}
	}
	if remote[m1.String()] != vtepB || remote[m2.String()] != vtepA || len(remote) != 2 {
		t.Errorf("MACs remote rows: %v (all %+v)", remote, macs)
	}
}

// nextLearned waits for a fact matching want.
func nextLearned(t *testing.T, l *Linux, want func(Learned) bool) Learned {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-l.Learned():
			if !ok {
				t.Fatal("learned channel closed")
			}
			if want(ev) {
				return ev
			}
		case <-timeout:
			t.Fatal("timed out waiting for a learned fact")
		}
	}
}

// learningTenant sets up tenant "ta" with segment vni, whose bridge has
// the address brAddr, and a workload on its port p1 with the address
// wlAddr; it returns the fabric, the tenant namespace, the workload's
// namespace and its MAC.
func learningTenant(t *testing.T, vni evpn.VNI, wlAddr, brAddr string) (l *Linux, ns, wname string, mac net.HardwareAddr) {
	t.Helper()
	x, l, prefix := singleHost(t)
	wname = "fl-p1-" + suffix()
	mac = workload(t, x, "p1", wname, wlAddr)
	cfg := Config{NetnsPrefix: prefix, VTEP: x.vtep, Tenants: []Tenant{{Name: "ta", Segments: []Segment{{VNI: vni, Ports: []string{"p1"}}}}}}
	if err := l.Set(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	ns = prefix + "ta"
	run(t, "ip", "-n", ns, "addr", "add", brAddr, "dev", fmt.Sprintf("br%d", vni))
	return l, ns, wname, mac
}

func TestPrivilegedLearned(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	l, ns, wname, mac := learningTenant(t, 300, "192.168.7.2/24", "192.168.7.1/24")
	// The workload sends a frame; the bridge learns its MAC on p1, and the
	// tenant namespace resolves its IP on br300.
	poke(t, ns, "192.168.7.2")
	got := nextLearned(t, l, func(ev Learned) bool { return ev.MAC.String() == mac.String() && !ev.IP.IsValid() })
	if got.Tenant != "ta" || got.VNI != 300 || got.Port != "p1" || got.Gone {
		t.Errorf("learned %+v", got)
	}
	got = nextLearned(t, l, func(ev Learned) bool { return ev.IP.IsValid() })
	if got.IP != netip.MustParseAddr("192.168.7.2") || got.MAC.String() != mac.String() || got.VNI != 300 || got.Gone {
		t.Errorf("learned ip %+v", got)
	}
	macs, err := l.MACs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range macs {
		found = found || (m.MAC.String() == mac.String() && m.Port == "p1" && !m.Remote)
	}
	if !found {
		t.Errorf("MACs does not list the local MAC: %+v", macs)
	}
	if s := l.Stats(); s.LocalLearned < 1 {
		t.Errorf("stats %+v", s)
	}

	// The port goes away with its workload.
	run(t, "ip", "-n", wname, "link", "del", "eth0")
	got = nextLearned(t, l, func(ev Learned) bool { return ev.MAC.String() == mac.String() && !ev.IP.IsValid() })
	if !got.Gone || got.Port != "p1" {
		t.Errorf("after port removal: %+v", got)
	}
}

// TestPrivilegedLearnedMovesAway installs a remote entry over a local
// MAC, as evpnd does when the MAC's route from another VTEP wins: the
// learner reports the local MAC gone. When the workload sends again, the
// bridge moves the entry back to its port, and the learner reports the
// MAC learned anew.
func TestPrivilegedLearnedMovesAway(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	l, ns, wname, mac := learningTenant(t, 310, "192.168.9.2/24", "192.168.9.1/24")
	isMAC := func(ev Learned) bool { return ev.MAC.String() == mac.String() && !ev.IP.IsValid() }
	poke(t, ns, "192.168.9.2")
	if got := nextLearned(t, l, isMAC); got.Gone {
		t.Fatalf("learned %+v", got)
	}
	if err := l.Update(ctx, evpn.Diff{Add: evpn.Intents{FDB: []evpn.FDB{{VNI: 310, MAC: mac, VTEP: netip.MustParseAddr("10.77.0.2")}}}}); err != nil {
		t.Fatal(err)
	}
	if got := nextLearned(t, l, isMAC); !got.Gone || got.Port != "p1" {
		t.Fatalf("after a remote entry took the MAC over: %+v, want it gone from p1", got)
	}
	poke(t, wname, "192.168.9.1")
	if got := nextLearned(t, l, isMAC); got.Gone || got.Port != "p1" {
		t.Fatalf("after the workload sent again: %+v, want it learned on p1", got)
	}
}

func TestPrivilegedRestartAdopts(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	x, l, prefix := singleHost(t)
	mac := workload(t, x, "p1", "fl-p1-"+suffix(), "192.168.8.2/24")
	cfg := Config{NetnsPrefix: prefix, VTEP: x.vtep, Tenants: []Tenant{{Name: "ta", Segments: []Segment{{VNI: 400, Ports: []string{"p1"}}}}}}
	if err := l.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	ns := prefix + "ta"
	run(t, "ip", "-n", ns, "addr", "add", "192.168.8.1/24", "dev", "br400")
	poke(t, ns, "192.168.8.2")
	nextLearned(t, l, func(ev Learned) bool { return ev.MAC.String() == mac.String() })
	full := evpn.Intents{
		FDB:   []evpn.FDB{{VNI: 400, MAC: mustMAC("02:00:00:00:04:01"), VTEP: netip.MustParseAddr("10.77.0.2")}},
		Flood: []evpn.Flood{{VNI: 400, VTEP: netip.MustParseAddr("10.77.0.2")}},
	}
	if err := l.Update(ctx, evpn.Diff{Add: full}); err != nil {
		t.Fatal(err)
	}
	th := tenantHandle(t, ns)
	vx, br := checkSegment(t, th, 400, x.vtep, 1450, "p1")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l2 := newFabric(t, x)
	if err := l2.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if vx2, br2 := checkSegment(t, th, 400, x.vtep, 1450, "p1"); vx2 != vx || br2 != br {
		t.Errorf("restart recreated devices: vx %d->%d br %d->%d", vx, vx2, br, br2)
	}
	v := dumpRemote(t, th, 400)
	if !v.bridge["02:00:00:00:04:01"] || v.vxlan["02:00:00:00:04:01"] != "10.77.0.2" || !v.flood["10.77.0.2"] {
		t.Errorf("remote entries lost across restart: %+v", v)
	}
	// The new instance reports the MAC learned before the restart once.
	got := nextLearned(t, l2, func(ev Learned) bool { return ev.MAC.String() == mac.String() && !ev.IP.IsValid() })
	if got.Gone || got.Port != "p1" {
		t.Errorf("learned after restart: %+v", got)
	}
	if err := l2.Sync(ctx, full); err != nil {
		t.Fatal(err)
	}
	if s := l2.Stats(); s.Writes != 0 || s.RemoteFDB != 1 || s.RemoteFlood != 1 {
		t.Errorf("sync after restart rewrote entries: %+v", s)
	}
}

func TestPrivilegedTraffic(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	sfx := suffix()
	a := newHost(t, "fha-"+sfx, netip.MustParseAddr("10.78.0.1"))
	b := newHost(t, "fhb-"+sfx, netip.MustParseAddr("10.78.0.2"))
	wire(t, a, b)
	macA := workload(t, a, "pa", "fwa-"+sfx, "192.168.60.1/24")
	macB := workload(t, b, "pb", "fwb-"+sfx, "192.168.60.2/24")
	la, lb := newFabric(t, a), newFabric(t, b)
	prefixA, prefixB := "fta"+sfx+"-", "ftb"+sfx+"-"
	cleanupPrefix(t, prefixA)
	cleanupPrefix(t, prefixB)
	for _, side := range []struct {
		l      *Linux
		x      *host
		prefix string
		port   string
	}{{la, a, prefixA, "pa"}, {lb, b, prefixB, "pb"}} {
		cfg := Config{NetnsPrefix: side.prefix, VTEP: side.x.vtep, Tenants: []Tenant{{Name: "t", Segments: []Segment{{VNI: 500, Ports: []string{side.port}}}}}}
		if err := side.l.Set(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	if err := la.Update(ctx, evpn.Diff{Add: evpn.Intents{
		FDB:   []evpn.FDB{{VNI: 500, MAC: macB, VTEP: b.vtep}},
		Flood: []evpn.Flood{{VNI: 500, VTEP: b.vtep}},
		Neigh: []evpn.Neigh{{VNI: 500, IP: netip.MustParseAddr("192.168.60.2"), MAC: macB}},
	}}); err != nil {
		t.Fatal(err)
	}
	if err := lb.Update(ctx, evpn.Diff{Add: evpn.Intents{
		FDB:   []evpn.FDB{{VNI: 500, MAC: macA, VTEP: a.vtep}},
		Flood: []evpn.Flood{{VNI: 500, VTEP: a.vtep}},
		Neigh: []evpn.Neigh{{VNI: 500, IP: netip.MustParseAddr("192.168.60.1"), MAC: macA}},
	}}); err != nil {
		t.Fatal(err)
	}
	// A TCP echo between the workloads, over the overlay.
	tcpEcho(t, "fwb-"+sfx, "fwa-"+sfx, "192.168.60.2:7000", "hello over vxlan", func() {
		for _, ns := range []string{prefixA + "t", prefixB + "t"} {
			t.Logf("%s fdb:\n%s", ns, run(t, "ip", "netns", "exec", ns, "bridge", "fdb", "show"))
		}
	})
	// The packets really crossed the underlay as VXLAN.
	if got := vxlanRxPackets(t, "ftb"+sfx+"-t", 500); got == 0 {
		t.Errorf("host b's vx500 received no packets")
	}
}

// inNamed runs fn on a thread inside the named namespace; sockets fn
// creates stay there.
// tcpEcho serves a TCP echo on addr in the namespace named server, dials
// it from the namespace named client until it connects (10 s at most) and
// checks that msg comes back. diag logs the kernel state worth seeing when
// no connection comes up.
func tcpEcho(t testing.TB, server, client, addr, msg string, diag func()) {
	t.Helper()
	var ln net.Listener
	if err := inNamed(t, server, func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.Copy(c, c)
			c.Close()
		}
	}()
	var conn net.Conn
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := inNamed(t, client, func() (err error) {
			conn, err = net.DialTimeout("tcp", addr, time.Second)
			return err
		})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			diag()
			t.Fatalf("no tcp connection to %s: %v", addr, err)
		}
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo to %s: %q %v", addr, buf, err)
	}
}

func inNamed(t testing.TB, name string, fn func() error) error {
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	return kernel.InNetns(ns, fn)
}

// poke makes the namespace resolve addr (ARP), so frames flow both ways.
func poke(t testing.TB, name, addr string) {
	inNamed(t, name, func() error {
		c, err := net.DialTimeout("tcp", addr+":9", time.Second)
		if err == nil {
			c.Close()
		}
		return nil
	})
}

func vxlanRxPackets(t *testing.T, nsName string, vni evpn.VNI) uint64 {
	th := tenantHandle(t, nsName)
	link, err := th.LinkByName(vxlanName(vni))
	if err != nil {
		t.Fatal(err)
	}
	return link.Attrs().Statistics.RxPackets
}

// bulkFDB makes n distinct remote MACs spread over 16 VTEPs.
func bulkFDB(vni evpn.VNI, n int) []evpn.FDB {
	out := make([]evpn.FDB, n)
	for i := range out {
		out[i] = evpn.FDB{
			VNI:  vni,
			MAC:  net.HardwareAddr{0x02, 0xbe, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)},
			VTEP: netip.AddrFrom4([4]byte{10, 77, 1, byte(i % 16)}),
		}
	}
	return out
}

// TestPrivilegedBatchLarge pushes many windows through one socket and
// checks every entry landed and went.
func TestPrivilegedBatchLarge(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	x, l, prefix := singleHost(t)
	cfg := Config{NetnsPrefix: prefix, VTEP: x.vtep, Tenants: []Tenant{{Name: "ta", Segments: []Segment{{VNI: 600}}}}}
	if err := l.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	const n = 20000
	fdb := bulkFDB(600, n)
	if err := l.Update(ctx, evpn.Diff{Add: evpn.Intents{FDB: fdb}}); err != nil {
		t.Fatal(err)
	}
	th := tenantHandle(t, prefix+"ta")
	v := dumpRemote(t, th, 600)
	if len(v.bridge) != n || len(v.vxlan) != n {
		t.Fatalf("after add: %d bridge and %d vxlan entries, want %d", len(v.bridge), len(v.vxlan), n)
	}
	if s := l.Stats(); s.RemoteFDB != n || s.WriteErrors != 0 {
		t.Errorf("stats %+v", s)
	}
	if err := l.Update(ctx, evpn.Diff{Del: evpn.Intents{FDB: fdb}}); err != nil {
		t.Fatal(err)
	}
	v = dumpRemote(t, th, 600)
	if len(v.bridge) != 0 || len(v.vxlan) != 0 {
		t.Fatalf("after delete: %d bridge and %d vxlan entries left", len(v.bridge), len(v.vxlan))
	}
}

// BenchmarkPrivilegedUpdate100k times installing 100k remote MACs through
// Update (one pipelined batch) and reports entries/s.
func BenchmarkPrivilegedUpdate100k(b *testing.B) {
	requireRoot(b)
	ctx := context.Background()
	x, l, prefix := singleHost(b)
	cfg := Config{NetnsPrefix: prefix, VTEP: x.vtep, Tenants: []Tenant{{Name: "ta", Segments: []Segment{{VNI: 700}}}}}
	if err := l.Set(ctx, cfg); err != nil {
		b.Fatal(err)
	}
	const n = 100000
	fdb := bulkFDB(700, n)
	var add, del time.Duration
	for b.Loop() {
		start := time.Now()
		if err := l.Update(ctx, evpn.Diff{Add: evpn.Intents{FDB: fdb}}); err != nil {
			b.Fatal(err)
		}
		add += time.Since(start)
		b.StopTimer()
		start = time.Now()
		if err := l.Update(ctx, evpn.Diff{Del: evpn.Intents{FDB: fdb}}); err != nil {
			b.Fatal(err)
		}
		del += time.Since(start)
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/add.Seconds(), "add-entries/s")
	b.ReportMetric(float64(n*b.N)/del.Seconds(), "del-entries/s")
	b.Logf("100k FDB: add %v, delete %v per batch", add/time.Duration(b.N), del/time.Duration(b.N))
}
