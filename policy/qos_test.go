package policy

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const (
	mbit = 1_000_000
	// qosTolerance is how far a measured rate may be from its limit.
	qosTolerance = 0.15
)

// ---- pure: desired tree and diff ----

func TestDesiredShaping(t *testing.T) {
	s, err := desiredShaping(7, PortQoS{
		Port: "p0", EgressRate: 20 * mbit, EgressBurst: 32000,
		Classes: []Class{
			{Name: "gold", Rate: 5 * mbit, Ceil: 5 * mbit, Priority: 1},
			{Name: "silver", Rate: 2 * mbit, Priority: 3},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.qdisc.Handle != 0xe50000 || s.qdisc.Parent != netlink.HANDLE_ROOT || s.qdisc.Defcls != 2 || s.qdisc.LinkIndex != 7 {
		t.Errorf("qdisc = handle %x parent %x defcls %d link %d", s.qdisc.Handle, s.qdisc.Parent, s.qdisc.Defcls, s.qdisc.LinkIndex)
	}
	type row struct {
		handle, parent uint32
		rate, ceil     uint64 // bytes/s
		prio           uint32
	}
	want := []row{
		{RootClass, 0xe50000, 20 * mbit / 8, 20 * mbit / 8, 0},
		{DefaultClass, RootClass, 13 * mbit / 8, 20 * mbit / 8, htbMaxPrio},
		{0xe50010, RootClass, 5 * mbit / 8, 5 * mbit / 8, 1},
		{0xe50011, RootClass, 2 * mbit / 8, 20 * mbit / 8, 3},
	}
	if len(s.classes) != len(want) {
		t.Fatalf("got %d classes, want %d", len(s.classes), len(want))
	}
	for i, w := range want {
		c := s.classes[i]
		got := row{c.Handle, c.Parent, c.Rate, c.Ceil, c.Prio}
		if got != w {
			t.Errorf("class %d = %+v, want %+v", i, got, w)
		}
	}
	// The root's buffer holds the burst: 32000 bytes at 2.5 MB/s.
	if b := netlink.Xmitsize(s.classes[0].Rate, s.classes[0].Buffer); b < 31900 || b > 32100 {
		t.Errorf("root buffer holds %d bytes, want about 32000", b)
	}
}

func TestDesiredShapingDefaultFloor(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rate    uint64
		classes []Class
		want    uint64 // default class rate, bit/s
	}{
		{"no classes", 10 * mbit, nil, 10 * mbit},
		{"classes leave half", 10 * mbit, []Class{{Name: "a", Rate: 5 * mbit}}, 5 * mbit},
		{"classes take all", 10 * mbit, []Class{{Name: "a", Rate: 10 * mbit}}, 100_000},
		{"oversubscribed", 10 * mbit, []Class{{Name: "a", Rate: 8 * mbit}, {Name: "b", Rate: 8 * mbit}}, 100_000},
		{"floor above 1%", 100_000, []Class{{Name: "a", Rate: 100_000}}, minDefaultRate},
		{"floor above port", 4000, []Class{{Name: "a", Rate: 4000}}, 4000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := desiredShaping(1, PortQoS{Port: "p", EgressRate: tc.rate, Classes: tc.classes})
			if err != nil {
				t.Fatal(err)
			}
			if got := s.classes[1].Rate * 8; got != tc.want {
				t.Errorf("default class rate %d bit/s, want %d", got, tc.want)
			}
		})
	}
}

func TestDesiredShapingRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		q    PortQoS
		want string
	}{
		{"ceil below rate", PortQoS{EgressRate: mbit, Classes: []Class{{Name: "a", Rate: 500_000, Ceil: 100_000}}},
			`class "a": ceil 100000 bit/s is below its rate 500000 bit/s`},
		{"priority", PortQoS{EgressRate: mbit, Classes: []Class{{Name: "a", Rate: 1000, Priority: 8}}},
			`class "a": priority 8 is out of range 0..7`},
		{"zero class rate", PortQoS{EgressRate: mbit, Classes: []Class{{Name: "a"}}},
			`class "a": rate 0 bit/s is below 8`},
		{"tiny port rate", PortQoS{EgressRate: 7}, `egress: rate 7 bit/s is below 8`},
		{"burst", PortQoS{EgressRate: 8000, EgressBurst: 1 << 30}, `egress: burst 1073741824 bytes lasts too long`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := desiredShaping(1, tc.q)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// asInstalled is what the kernel would report after want was applied.
func asInstalled(want *shaping) *portTC {
	p := &portTC{root: want.qdisc, classes: map[uint32]*netlink.HtbClass{}}
	for _, c := range want.classes {
		cc := *c
		p.classes[c.Handle] = &cc
	}
	return p
}

func mustShaping(t *testing.T, q PortQoS) *shaping {
	t.Helper()
	s, err := desiredShaping(3, q)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func opStrings(ops []tcOp) []string {
	var out []string
	for _, o := range ops {
		// Only kind and handle: rates are checked elsewhere.
		switch o.kind {
		case opQdiscDel:
			out = append(out, "del qdisc "+netlink.HandleStr(o.qdisc.Attrs().Handle))
		case opQdiscAdd:
			out = append(out, "add qdisc "+netlink.HandleStr(o.qdisc.Attrs().Handle))
		case opClassDel:
			out = append(out, "del class "+netlink.HandleStr(o.class.Handle))
		case opClassSet:
			out = append(out, "set class "+netlink.HandleStr(o.class.Handle))
		}
	}
	return out
}

func TestDiffPort(t *testing.T) {
	base := PortQoS{Port: "p0", EgressRate: 20 * mbit, Classes: []Class{
		{Name: "gold", Rate: 5 * mbit, Ceil: 5 * mbit},
		{Name: "silver", Rate: 2 * mbit},
	}}
	faster := base
	faster.Classes = []Class{{Name: "gold", Rate: 6 * mbit, Ceil: 6 * mbit}, base.Classes[1]}
	fewer := base
	fewer.Classes = base.Classes[:1]
	installed := asInstalled(mustShaping(t, base))
	otherDefault := asInstalled(mustShaping(t, base))
	otherDefault.root = &netlink.Htb{QdiscAttrs: netlink.QdiscAttrs{Handle: qdiscHandle, Parent: netlink.HANDLE_ROOT}, Defcls: 0x30}
	oursTbf := &portTC{root: &netlink.Tbf{QdiscAttrs: netlink.QdiscAttrs{Handle: qdiscHandle, Parent: netlink.HANDLE_ROOT}}}
	foreign := &portTC{root: &netlink.Tbf{QdiscAttrs: netlink.QdiscAttrs{Handle: 0x100000, Parent: netlink.HANDLE_ROOT}}}
	stray := asInstalled(mustShaping(t, base))
	stray.classes[0xe50030] = &netlink.HtbClass{ClassAttrs: netlink.ClassAttrs{Handle: 0xe50030, Parent: RootClass}}
	fullAdd := []string{"add qdisc e5:0", "set class e5:1", "set class e5:2", "set class e5:10", "set class e5:11"}

	for _, tc := range []struct {
		name    string
		want    *shaping
		have    *portTC
		ops     []string
		wantErr string
	}{
		{"fresh port", mustShaping(t, base), &portTC{}, fullAdd, ""},
		{"unchanged", mustShaping(t, base), installed, nil, ""},
		{"class rate", mustShaping(t, faster), installed, []string{"set class e5:2", "set class e5:10"}, ""},
		{"class removed", mustShaping(t, fewer), installed, []string{"del class e5:11", "set class e5:2"}, ""},
		{"stray class", mustShaping(t, base), stray, []string{"del class e5:30"}, ""},
		{"our qdisc, other default", mustShaping(t, base), otherDefault, append([]string{"del qdisc e5:0"}, fullAdd...), ""},
		{"our handle, other kind", mustShaping(t, base), oursTbf, append([]string{"del qdisc e5:0"}, fullAdd...), ""},
		{"shaping removed", nil, installed, []string{"del qdisc e5:0"}, ""},
		{"nothing to remove", nil, &portTC{}, nil, ""},
		{"foreign left alone", nil, foreign, nil, ""},
		{"foreign refused", mustShaping(t, base), foreign, nil, `port "p0": root qdisc tbf 10:0 is not evpnd's`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops, err := diffPort("p0", tc.want, tc.have)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := opStrings(ops); strings.Join(got, "; ") != strings.Join(tc.ops, "; ") {
				t.Errorf("ops\n got %q\nwant %q", got, tc.ops)
			}
		})
	}
}

// ---- privileged: real kernel, real traffic ----

func qosRequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root to create network namespaces and qdiscs")
	}
}

func qosRun(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// qosInNetns runs fn on a thread inside ns; sockets fn opens stay there.
// A thread that cannot be moved back stays locked, so the runtime retires
// it.
func qosInNetns(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	fnErr := fn()
	if err := netns.Set(orig); err != nil {
		return errors.Join(fnErr, err)
	}
	runtime.UnlockOSThread()
	return fnErr
}

// qosNS is a fresh named namespace with a netlink handle in it.
type qosNS struct {
	name string
	ns   netns.NsHandle
	h    *netlink.Handle
}

func newQosNS(t testing.TB, role string) *qosNS {
	t.Helper()
	b := make([]byte, 3)
	rand.Read(b)
	name := "evpnd-qos-" + role + "-" + hex.EncodeToString(b)
	qosRun(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	// No IPv6: its router solicitations and MLD reports would go through
	// the shaped port at times of their own and move the counters.
	qosRun(t, "ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	return &qosNS{name: name, ns: ns, h: h}
}

// qosPair is a sender namespace a with port p0 at 10.99.0.1 joined by a
// veth to a receiver namespace b with p1 at 10.99.0.2.
type qosPair struct {
	a, b *qosNS
}

func newQosPair(t testing.TB) *qosPair {
	t.Helper()
	p := &qosPair{a: newQosNS(t, "a"), b: newQosNS(t, "b")}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "p0"}, PeerName: "p1", PeerNamespace: netlink.NsFd(p.b.ns)}
	if err := p.a.h.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	for _, end := range []struct {
		x    *qosNS
		name string
		addr string
	}{{p.a, "p0", "10.99.0.1/24"}, {p.b, "p1", "10.99.0.2/24"}} {
		l, err := end.x.h.LinkByName(end.name)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := netlink.ParseAddr(end.addr)
		if err := end.x.h.AddrAdd(l, a); err != nil {
			t.Fatal(err)
		}
		if err := end.x.h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	// Static neighbours both ways: no ARP through the shaped port either.
	p0, err := p.a.h.LinkByName("p0")
	if err != nil {
		t.Fatal(err)
	}
	p1, err := p.b.h.LinkByName("p1")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []struct {
		x         *qosNS
		link, mac netlink.Link
		ip        net.IP
	}{{p.a, p0, p1, net.IPv4(10, 99, 0, 2)}, {p.b, p1, p0, net.IPv4(10, 99, 0, 1)}} {
		if err := n.x.h.NeighAdd(&netlink.Neigh{
			LinkIndex: n.link.Attrs().Index, IP: n.ip, HardwareAddr: n.mac.Attrs().HardwareAddr,
			State: netlink.NUD_PERMANENT, Family: netlink.FAMILY_V4,
		}); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// qosEventually polls cond until it holds or the deadline passes.
func qosEventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// addVeth adds a veth pair with both ends in x, for ports that carry no
// traffic.
func (x *qosNS) addVeth(t testing.TB, name, peer string) {
	t.Helper()
	if err := x.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer}); err != nil {
		t.Fatal(err)
	}
}

func (x *qosNS) port(t testing.TB, name string) *portTC {
	t.Helper()
	ports, err := readTC(x.h)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := ports[name]
	if !ok {
		t.Fatalf("port %s not in %s", name, x.name)
	}
	return p
}

func (x *qosNS) tc(t testing.TB, args ...string) string {
	t.Helper()
	return qosRun(t, append([]string{"ip", "netns", "exec", x.name, "tc"}, args...)...)
}

type classRow struct {
	parent     uint32
	rate, ceil uint64 // bit/s
	prio       uint32
}

// checkTree asserts p0's tc state is evpnd's HTB with exactly want.
func checkTree(t *testing.T, p *portTC, want map[uint32]classRow) {
	t.Helper()
	htb, ok := p.root.(*netlink.Htb)
	if !ok {
		t.Fatalf("root qdisc is %v, want htb e5:", p.root)
	}
	if htb.Handle != 0xe50000 || htb.Defcls != 2 {
		t.Errorf("qdisc handle %s defcls %d, want e5:0 defcls 2", netlink.HandleStr(htb.Handle), htb.Defcls)
	}
	got := map[uint32]classRow{}
	for h, c := range p.classes {
		got[h] = classRow{c.Parent, c.Rate * 8, c.Ceil * 8, c.Prio}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("classes\n got %v\nwant %v", got, want)
	}
}

// classCounters are each class's bytes and packets.
func classCounters(p *portTC) map[uint32][2]uint64 {
	out := map[uint32][2]uint64{}
	for h, c := range p.classes {
		if s := c.Statistics; s != nil && s.Basic != nil {
			out[h] = [2]uint64{s.Basic.Bytes, uint64(s.Basic.Packets)}
		}
	}
	return out
}

// sendUDP sends n datagrams from a to b with skb priority prio.
func (p *qosPair) sendUDP(t *testing.T, prio, n int) {
	t.Helper()
	err := qosInNetns(p.a.ns, func() error {
		// Unconnected, so the receiver's port unreachable errors do not
		// fail the next write.
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 99, 0, 1)})
		if err != nil {
			return err
		}
		defer c.Close()
		if err := setPriority(c, prio); err != nil {
			return err
		}
		to := &net.UDPAddr{IP: net.IPv4(10, 99, 0, 2), Port: 9}
		for range n {
			if _, err := c.WriteToUDP(make([]byte, 200), to); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func setPriority(c syscall.Conn, prio int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PRIORITY, prio)
	}); err != nil {
		return err
	}
	return serr
}

func TestPrivilegedQoSStates(t *testing.T) {
	qosRequireRoot(t)
	p := newQosPair(t)
	h := p.a.h

	gold := Class{Name: "gold", Rate: 5 * mbit, Ceil: 5 * mbit, Priority: 1}
	silver := Class{Name: "silver", Rate: 2 * mbit, Priority: 3}
	q := PortQoS{Port: "p0", EgressRate: 20 * mbit, EgressBurst: 32000, Classes: []Class{gold, silver}}

	// 1. Fresh port: the whole tree.
	if err := applyQoS(h, []PortQoS{q}); err != nil {
		t.Fatal(err)
	}
	checkTree(t, p.a.port(t, "p0"), map[uint32]classRow{
		RootClass:    {0xe50000, 20 * mbit, 20 * mbit, 0},
		DefaultClass: {RootClass, 13 * mbit, 20 * mbit, htbMaxPrio},
		0xe50010:     {RootClass, 5 * mbit, 5 * mbit, 1},
		0xe50011:     {RootClass, 2 * mbit, 20 * mbit, 3},
	})
	t.Logf("applied:\n%s%s", p.a.tc(t, "qdisc", "show", "dev", "p0"), p.a.tc(t, "class", "show", "dev", "p0"))
	state, err := qosState(h)
	if err != nil {
		t.Fatal(err)
	}
	got := state["p0"]
	if got.EgressRate != q.EgressRate || got.EgressBurst < 31900 || got.EgressBurst > 32100 || len(got.Classes) != 2 ||
		got.Classes[0] != (Class{Rate: 5 * mbit, Ceil: 5 * mbit, Priority: 1}) ||
		got.Classes[1] != (Class{Rate: 2 * mbit, Ceil: 20 * mbit, Priority: 3}) {
		t.Errorf("qosState p0 = %+v", got)
	}

	// Traffic into the gold class (by skb priority) and the default class.
	p.sendUDP(t, int(ClassHandle(0)), 50)
	p.sendUDP(t, 0, 30)
	// HTB counts a packet when it dequeues it, at the class's pace.
	var before *portTC
	qosEventually(t, "80 packets through the root class", func() bool {
		before = p.a.port(t, "p0")
		return classCounters(before)[RootClass][1] >= 80
	})
	counters := classCounters(before)
	for h, want := range map[uint32]uint64{RootClass: 80, DefaultClass: 30, ClassHandle(0): 50, ClassHandle(1): 0} {
		if got := counters[h][1]; got != want {
			t.Errorf("class %s counted %d packets, want %d", netlink.HandleStr(h), got, want)
		}
	}

	// 2. Same again: nothing to do, nothing changes.
	if ops, err := planQoS(h, []PortQoS{q}); err != nil || len(ops) != 0 {
		t.Fatalf("second plan: %v, %v; want no ops", ops, err)
	}
	if err := applyQoS(h, []PortQoS{q}); err != nil {
		t.Fatal(err)
	}
	after := p.a.port(t, "p0")
	if after.root.Attrs().Handle != before.root.Attrs().Handle {
		t.Errorf("qdisc handle %x became %x", before.root.Attrs().Handle, after.root.Attrs().Handle)
	}
	if a := classCounters(after); fmt.Sprint(a) != fmt.Sprint(counters) {
		t.Errorf("counters changed on a repeated apply:\n before %v\n after  %v", counters, a)
	}

	// 3. A class rate changes: replaced in place, its counters kept.
	q.Classes = []Class{{Name: "gold", Rate: 6 * mbit, Ceil: 6 * mbit, Priority: 1}, silver}
	ops, err := planQoS(h, []PortQoS{q})
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.Join(opStrings(ops), "; "); s != "set class e5:2; set class e5:10" {
		t.Errorf("plan for a rate change: %s", s)
	}
	if err := applyQoS(h, []PortQoS{q}); err != nil {
		t.Fatal(err)
	}
	p0 := p.a.port(t, "p0")
	checkTree(t, p0, map[uint32]classRow{
		RootClass:    {0xe50000, 20 * mbit, 20 * mbit, 0},
		DefaultClass: {RootClass, 12 * mbit, 20 * mbit, htbMaxPrio},
		0xe50010:     {RootClass, 6 * mbit, 6 * mbit, 1},
		0xe50011:     {RootClass, 2 * mbit, 20 * mbit, 3},
	})
	if c := classCounters(p0)[ClassHandle(0)]; c != counters[ClassHandle(0)] {
		t.Errorf("gold counters %v after a rate change, want %v kept", c, counters[ClassHandle(0)])
	}

	// 4. A class goes.
	q.Classes = q.Classes[:1]
	if err := applyQoS(h, []PortQoS{q}); err != nil {
		t.Fatal(err)
	}
	checkTree(t, p.a.port(t, "p0"), map[uint32]classRow{
		RootClass:    {0xe50000, 20 * mbit, 20 * mbit, 0},
		DefaultClass: {RootClass, 14 * mbit, 20 * mbit, htbMaxPrio},
		0xe50010:     {RootClass, 6 * mbit, 6 * mbit, 1},
	})

	// 5. Egress rate 0: the port keeps its entry (ingress policing is
	// nftables') but loses the HTB.
	if err := applyQoS(h, []PortQoS{{Port: "p0", IngressRate: mbit}}); err != nil {
		t.Fatal(err)
	}
	if r := p.a.port(t, "p0").root; r != nil {
		t.Errorf("root qdisc after removal: %s %s", r.Type(), netlink.HandleStr(r.Attrs().Handle))
	}

	// 6. Back, then gone with the port's entry.
	if err := applyQoS(h, []PortQoS{q}); err != nil {
		t.Fatal(err)
	}
	if !p.a.port(t, "p0").ours() {
		t.Fatal("htb not back on p0")
	}
	if err := applyQoS(h, nil); err != nil {
		t.Fatal(err)
	}
	if r := p.a.port(t, "p0").root; r != nil {
		t.Errorf("root qdisc after removal: %s %s", r.Type(), netlink.HandleStr(r.Attrs().Handle))
	}
	if out := p.a.tc(t, "qdisc", "show", "dev", "p0"); strings.Contains(out, "htb") {
		t.Errorf("tc still shows htb:\n%s", out)
	}
}

func TestPrivilegedQoSErrors(t *testing.T) {
	qosRequireRoot(t)
	p := newQosPair(t)
	h := p.a.h
	p.a.addVeth(t, "p2", "p2x")
	p.a.addVeth(t, "p3", "p3x")

	// A qdisc someone put there by hand.
	p.a.tc(t, "qdisc", "add", "dev", "p2", "root", "handle", "10:", "tbf", "rate", "1mbit", "burst", "32kbit", "latency", "400ms")
	want := PortQoS{Port: "p2", EgressRate: 10 * mbit}
	err := applyQoS(h, []PortQoS{want, {Port: "p3", EgressRate: 10 * mbit}, {Port: "nope", EgressRate: mbit}})
	if err == nil {
		t.Fatal("apply over a foreign qdisc and a missing port succeeded")
	}
	t.Logf("apply error: %v", err)
	for _, s := range []string{`port "p2": root qdisc tbf 10:0 is not evpnd's`, `port "nope": not found`} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	p2 := p.a.port(t, "p2")
	if tbf, ok := p2.root.(*netlink.Tbf); !ok || tbf.Handle != 0x100000 {
		t.Errorf("p2 root is %v, want the hand-made tbf 10:", p2.root)
	}
	// Failures are independent: p3 is shaped all the same.
	if !p.a.port(t, "p3").ours() {
		t.Error("p3 not shaped next to the failing ports")
	}

	// Removing evpnd's shaping leaves the foreign qdisc alone.
	if err := applyQoS(h, nil); err != nil {
		t.Fatal(err)
	}
	if tbf, ok := p.a.port(t, "p2").root.(*netlink.Tbf); !ok || tbf.Handle != 0x100000 {
		t.Errorf("p2 root after removing all shaping is %v, want the tbf", p.a.port(t, "p2").root)
	}
	if r := p.a.port(t, "p3").root; r != nil {
		t.Errorf("p3 root after removal: %v", r)
	}
	if out := p.a.tc(t, "qdisc", "show", "dev", "p2"); !strings.Contains(out, "qdisc tbf 10: root") {
		t.Errorf("tc does not show the tbf on p2:\n%s", out)
	}

	// Invalid input names the port and class.
	err = applyQoS(h, []PortQoS{{Port: "p0", EgressRate: mbit, Classes: []Class{{Name: "x", Rate: 2000, Priority: 9}}}})
	if err == nil || !strings.Contains(err.Error(), `port "p0": class "x": priority 9`) {
		t.Errorf("error %v, want one naming port p0 and class x", err)
	}
	err = applyQoS(h, []PortQoS{{Port: "p0", EgressRate: mbit}, {Port: "p0", EgressRate: mbit}})
	if err == nil || !strings.Contains(err.Error(), `port "p0": listed twice`) {
		t.Errorf("error %v, want one about p0 listed twice", err)
	}
}

// flowResult is one measured flow.
type flowResult struct {
	prio    int
	goodput float64 // bit/s of TCP payload received
}

// bulkTCP runs one TCP bulk flow per prio from p.a to p.b, waits warm for
// the queues to settle, then measures over window. It returns each flow's
// goodput and the wire rate (bit/s) each HTB class on p0 counted over the
// same window.
func bulkTCP(t *testing.T, p *qosPair, prios []int, warm, window time.Duration) ([]flowResult, map[uint32]float64) {
	t.Helper()
	var (
		wg       sync.WaitGroup
		received = make([]atomic.Uint64, len(prios))
		senders  []net.Conn
	)
	t.Cleanup(func() {
		for _, c := range senders {
			c.Close()
		}
		wg.Wait()
	})
	for i, prio := range prios {
		var ln net.Listener
		if err := qosInNetns(p.b.ns, func() (err error) {
			ln, err = net.Listen("tcp4", "10.99.0.2:0")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		var c net.Conn
		if err := qosInNetns(p.a.ns, func() (err error) {
			d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
				var serr error
				err := rc.Control(func(fd uintptr) {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PRIORITY, prio)
				})
				return errors.Join(err, serr)
			}}
			c, err = d.Dial("tcp4", ln.Addr().String())
			return err
		}); err != nil {
			ln.Close()
			t.Fatal(err)
		}
		senders = append(senders, c)
		rc, err := ln.Accept()
		ln.Close()
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			defer rc.Close()
			buf := make([]byte, 256<<10)
			for {
				n, err := rc.Read(buf)
				received[i].Add(uint64(n))
				if err != nil {
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			buf := make([]byte, 128<<10)
			for {
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
	}
	snapshot := func() (time.Time, []uint64, map[uint32][2]uint64) {
		n := make([]uint64, len(prios))
		for i := range received {
			n[i] = received[i].Load()
		}
		return time.Now(), n, classCounters(p.a.port(t, "p0"))
	}
	time.Sleep(warm)
	t0, n0, c0 := snapshot()
	time.Sleep(window)
	t1, n1, c1 := snapshot()
	for _, c := range senders {
		c.Close()
	}
	secs := t1.Sub(t0).Seconds()
	var res []flowResult
	for i, prio := range prios {
		res = append(res, flowResult{prio: prio, goodput: float64(n1[i]-n0[i]) * 8 / secs})
	}
	wire := map[uint32]float64{}
	for h, c := range c1 {
		wire[h] = float64(c[0]-c0[h][0]) * 8 / secs
	}
	return res, wire
}

func within(got, want float64) bool {
	return math.Abs(got-want) <= qosTolerance*want
}

func TestPrivilegedQoSRate(t *testing.T) {
	qosRequireRoot(t)
	p := newQosPair(t)
	const limit = 20 * mbit
	if err := applyQoS(p.a.h, []PortQoS{{Port: "p0", EgressRate: limit}}); err != nil {
		t.Fatal(err)
	}
	flows, wire := bulkTCP(t, p, []int{0}, time.Second, 3*time.Second)
	g, w := flows[0].goodput, wire[RootClass]
	t.Logf("limit %.1f Mbit/s: TCP goodput %.2f Mbit/s, HTB root class wire rate %.2f Mbit/s", limit/1e6, g/1e6, w/1e6)
	if !within(g, limit) {
		t.Errorf("goodput %.2f Mbit/s is not within %.0f%% of %.0f Mbit/s", g/1e6, qosTolerance*100, limit/1e6)
	}
	if !within(w, limit) {
		t.Errorf("wire rate %.2f Mbit/s is not within %.0f%% of %.0f Mbit/s", w/1e6, qosTolerance*100, limit/1e6)
	}
}

func TestPrivilegedQoSClassByPriority(t *testing.T) {
	qosRequireRoot(t)
	p := newQosPair(t)
	const (
		limit  = 20 * mbit
		capped = 5 * mbit
	)
	q := PortQoS{Port: "p0", EgressRate: limit, Classes: []Class{{Name: "capped", Rate: capped, Ceil: capped}}}
	if err := applyQoS(p.a.h, []PortQoS{q}); err != nil {
		t.Fatal(err)
	}
	// What nftables "meta priority set" does, done by the sockets.
	flows, wire := bulkTCP(t, p, []int{int(ClassHandle(0)), 0}, time.Second, 3*time.Second)
	gc, gd := flows[0].goodput, flows[1].goodput
	wc, wd := wire[ClassHandle(0)], wire[DefaultClass]
	t.Logf("capped class (5 Mbit/s): goodput %.2f Mbit/s, wire %.2f Mbit/s; default class: goodput %.2f Mbit/s, wire %.2f Mbit/s",
		gc/1e6, wc/1e6, gd/1e6, wd/1e6)
	if !within(gc, capped) || !within(wc, capped) {
		t.Errorf("capped flow at %.2f Mbit/s (wire %.2f), want %.0f Mbit/s within %.0f%%", gc/1e6, wc/1e6, capped/1e6, qosTolerance*100)
	}
	if rest := float64(limit - capped); !within(gd, rest) || !within(wd, rest) {
		t.Errorf("default flow at %.2f Mbit/s (wire %.2f), want the rest, %.0f Mbit/s, within %.0f%%", gd/1e6, wd/1e6, rest/1e6, qosTolerance*100)
	}
}
