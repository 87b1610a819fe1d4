package fabric

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/evpnd/evpnd/evpn"
)

// handFed is a tenant "ta" with segment vni and workload port p1, set up
// by a real Linux, and a learner of its own on the tenant namespace, fed
// by hand, reporting into sink; with the workload's MAC, and p1 and the
// segment bridge as the kernel has them.
type handFed struct {
	lr     *learner
	sink   *Linux
	ns     string
	mac    net.HardwareAddr
	p1, br netlink.Link
}

func handFedLearner(t *testing.T, vni evpn.VNI, wname string) handFed {
	t.Helper()
	x, l, prefix := singleHost(t)
	mac := workload(t, x, "p1", wname+"-"+suffix(), "")
	cfg := Config{NetnsPrefix: prefix, VTEP: x.vtep, Tenants: []Tenant{{Name: "ta", Segments: []Segment{{VNI: vni, Ports: []string{"p1"}}}}}}
	if err := l.Set(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	name := prefix + "ta"
	th := tenantHandle(t, name)
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	p1, err := th.LinkByName("p1")
	if err != nil {
		t.Fatal(err)
	}
	br, err := th.LinkByName(fmt.Sprintf("br%d", vni))
	if err != nil {
		t.Fatal(err)
	}
	if p1.Attrs().MasterIndex != br.Attrs().Index {
		t.Fatalf("p1 is not in %s: master %d", br.Attrs().Name, p1.Attrs().MasterIndex)
	}
	sink := &Linux{learned: make(chan Learned, 16), done: make(chan struct{})}
	lr := &learner{l: sink, t: &tenantNS{name: "ta", nsName: name, ns: ns, h: th, local: newLocalMACs()}, links: map[int]linkInfo{}, macs: map[macKey]learnedMAC{}, ips: map[ipKey]learnedIP{}}
	return handFed{lr: lr, sink: sink, ns: name, mac: mac, p1: p1, br: br}
}

// TestPrivilegedLearnerStaleLinkEvent feeds a learner the event order a
// port moved in and enslaved can produce: the neighbor event of a MAC
// learned on the port overtakes the link events, so the learner reads the
// port (enslaved) from the kernel, and then the older event of the port
// without a master arrives. The MAC stays learned: it is still on the
// bridge, and the kernel does not tell again of an entry it only
// refreshes. Once the port really leaves the bridge, the same event
// forgets it.
func TestPrivilegedLearnerStaleLinkEvent(t *testing.T) {
	requireRoot(t)
	h := handFedLearner(t, 300, "fls-p1")
	lr, sink, ns, mac, p1, br := h.lr, h.sink, h.ns, h.mac, h.p1, h.br
	lr.neigh(netlink.NeighUpdate{Type: unix.RTM_NEWNEIGH, Neigh: netlink.Neigh{
		Family: unix.AF_BRIDGE, LinkIndex: p1.Attrs().Index, MasterIndex: br.Attrs().Index,
		HardwareAddr: mac, State: unix.NUD_REACHABLE,
	}})
	if ev := nextFact(t, sink); ev.Gone || ev.MAC.String() != mac.String() || ev.Port != "p1" || ev.VNI != 300 {
		t.Fatalf("learned %+v", ev)
	}

	noMaster := netlink.LinkUpdate{Header: unix.NlMsghdr{Type: unix.RTM_NEWLINK}, Link: &netlink.Veth{LinkAttrs: netlink.LinkAttrs{
		Index: p1.Attrs().Index, Name: "p1",
	}}}
	lr.link(noMaster)
	select {
	case ev := <-sink.learned:
		t.Fatalf("a stale link event made the learner report %+v", ev)
	default:
	}
	if _, ok := lr.macs[macKey{vni: 300, mac: [6]byte(mac)}]; !ok || len(lr.macs) != 1 {
		t.Fatalf("learner forgot the MAC on a stale link event: %+v", lr.macs)
	}
	if got := lr.links[p1.Attrs().Index].master; got != br.Attrs().Index {
		t.Errorf("learner holds p1's master as %d, the kernel has %d", got, br.Attrs().Index)
	}

	// Now the port leaves the bridge for real.
	run(t, "ip", "-n", ns, "link", "set", "p1", "nomaster")
	lr.link(noMaster)
	if ev := nextFact(t, sink); !ev.Gone || ev.MAC.String() != mac.String() || ev.VNI != 300 {
		t.Fatalf("after p1 left br300: %+v", ev)
	}
	if len(lr.macs) != 0 {
		t.Errorf("learner still holds %+v", lr.macs)
	}
}

func nextFact(t *testing.T, sink *Linux) Learned {
	t.Helper()
	select {
	case ev := <-sink.learned:
		return ev
	default:
		t.Fatal("the learner reported nothing")
		return Learned{}
	}
}

// TestPrivilegedLearnerTakeover feeds a learner Linux.write's notices of
// remote entries written over a MAC it holds as local. Held since before
// the write, the MAC was taken over: if it is back on its port by the
// time the learner reads the notice (the workload sent again, and the
// learner already read that event and found nothing new in it), the
// learner reports it gone and learned again, as the kernel's events of a
// move away and back would have; if the remote entry is still there, it
// is only gone. Held only since the write began and on its port, it was
// learned after the write and stays.
func TestPrivilegedLearnerTakeover(t *testing.T) {
	requireRoot(t)
	h := handFedLearner(t, 320, "flt-p1")
	lr, sink, name, mac, p1, br := h.lr, h.sink, h.ns, h.mac, h.p1, h.br
	run(t, "bridge", "-n", name, "fdb", "add", mac.String(), "dev", "p1", "master", "dynamic")

	lr.neigh(netlink.NeighUpdate{Type: unix.RTM_NEWNEIGH, Neigh: netlink.Neigh{
		Family: unix.AF_BRIDGE, LinkIndex: p1.Attrs().Index, MasterIndex: br.Attrs().Index,
		HardwareAddr: mac, State: unix.NUD_REACHABLE,
	}})
	if ev := nextFact(t, sink); ev.Gone || ev.Port != "p1" {
		t.Fatalf("learned %+v", ev)
	}
	k := macKey{vni: 320, mac: [6]byte(mac)}
	ops := []op{{kind: opFDBAdd, vni: 320, mac: mac}}
	notice := func() {
		t.Helper()
		lr.t.local.written(ops, nil, lr.t.local.held(ops))
		select {
		case <-lr.t.local.wake:
		default:
			t.Fatal("writing over a local MAC did not wake the learner")
		}
		lr.takenOver(lr.t.local.taken())
	}

	// The learner came to hold the MAC while the write was under way (no
	// held set), and the MAC is on p1: the kernel learned it after the
	// write, which took nothing over.
	lr.t.local.written(ops, nil, nil)
	<-lr.t.local.wake
	lr.takenOver(lr.t.local.taken())
	select {
	case ev := <-sink.learned:
		t.Fatalf("a MAC learned after the write was reported: %+v", ev)
	default:
	}
	if _, ok := lr.macs[k]; !ok {
		t.Fatal("the learner forgot a MAC learned after the write")
	}

	// The learner held the MAC before the write, so the write took it
	// over; it is on p1 again, so the workload sent since.
	notice()
	if ev := nextFact(t, sink); !ev.Gone || ev.Port != "p1" {
		t.Fatalf("after the notice: %+v, want the MAC gone from p1", ev)
	}
	if ev := nextFact(t, sink); ev.Gone || ev.Port != "p1" || ev.MAC.String() != mac.String() {
		t.Fatalf("after the notice, with the MAC back on p1: %+v, want it learned on p1", ev)
	}
	if _, ok := lr.macs[k]; !ok {
		t.Fatal("the learner does not hold the MAC back on p1")
	}

	// Now a remote entry really holds it.
	run(t, "bridge", "-n", name, "fdb", "replace", mac.String(), "dev", "vx320", "master", "extern_learn")
	notice()
	if ev := nextFact(t, sink); !ev.Gone || ev.Port != "p1" {
		t.Fatalf("after the notice: %+v, want the MAC gone from p1", ev)
	}
	select {
	case ev := <-sink.learned:
		t.Fatalf("the MAC is remote, yet the learner reported %+v", ev)
	default:
	}
	if _, ok := lr.macs[k]; ok {
		t.Fatal("the learner still holds the MAC")
	}
	// Writing over a MAC no longer held wakes nobody.
	lr.t.local.written(ops, nil, lr.t.local.held(ops))
	select {
	case <-lr.t.local.wake:
		t.Fatal("writing over a MAC the learner does not hold woke it")
	default:
	}
}

// TestPrivilegedSubscriptionIgnoresOtherListers: a second subscriber in
// a tenant namespace listing the neighbor table (vishvananda/netlink
// sends its dump request to the group, so the learner hears it) is not
// reported as a subscription error; a real error still is.
func TestPrivilegedSubscriptionIgnoresOtherListers(t *testing.T) {
	requireRoot(t)
	var logged bytes.Buffer
	l := &Linux{log: slog.New(slog.NewTextHandler(&logged, nil)), done: make(chan struct{})}
	name := "fsl-" + suffix()
	ns := testNetns(t, name)
	run(t, "ip", "-n", name, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", name, "link", "set", "br0", "up")
	ch := subscribeForTest(t, l, ns)

	// The other subscriber's dump request reaches the learner's socket
	// before the neighbor added after it.
	other := make(chan netlink.NeighUpdate, 16)
	otherDone := make(chan struct{})
	defer close(otherDone)
	if err := netlink.NeighSubscribeWithOptions(other, otherDone, netlink.NeighSubscribeOptions{Namespace: &ns, ListExisting: true}); err != nil {
		t.Fatal(err)
	}
	go func() {
		for range other {
		}
	}()
	run(t, "ip", "-n", name, "neigh", "add", "192.0.2.7", "lladdr", "02:00:00:00:00:07", "dev", "br0")
	deadline := time.After(10 * time.Second)
	for seen := false; !seen; {
		select {
		case u, ok := <-ch:
			if !ok {
				t.Fatal("the learner's subscription ended")
			}
			seen = u.Neigh.IP.String() == "192.0.2.7"
		case <-deadline:
			t.Fatal("the learner's subscription did not report 192.0.2.7 in 10 s")
		}
	}
	l.subError(make(chan struct{}), "neighbor")(errors.New("recvmsg: no buffer space available"))
	out := logged.String()
	if strings.Contains(out, "Wrong sender portid") {
		t.Errorf("the learner reported another subscriber's request:\n%s", out)
	}
	if !strings.Contains(out, "no buffer space available") {
		t.Errorf("a real subscription error was not logged:\n%s", out)
	}
}

// TestPrivilegedSubscriptionDropsOwnEvents: the learner's
// subscription lists the bridge FDB entries of workload ports (not the
// VXLAN device's, where evpnd's entries are), then reports deletions of
// entries evpnd did not install and IP neighbors evpnd installs, while
// the kernel drops evpnd's own (extern_learn) bridge FDB entries, on the
// bridge and on the VXLAN device, and their deletions before they reach
// it.
func TestPrivilegedSubscriptionDropsOwnEvents(t *testing.T) {
	requireRoot(t)
	l := &Linux{log: slog.New(slog.NewTextHandler(io.Discard, nil)), done: make(chan struct{})}
	name := "fsd-" + suffix()
	ns := testNetns(t, name)
	run(t, "ip", "-n", name, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", name, "link", "add", "p0", "type", "veth", "peer", "name", "p1")
	run(t, "ip", "-n", name, "link", "set", "p0", "master", "br0")
	run(t, "ip", "-n", name, "link", "add", "vx0", "type", "vxlan", "id", "100", "local", "127.0.0.1", "dstport", "4789", "nolearning")
	run(t, "ip", "-n", name, "link", "set", "vx0", "master", "br0")
	run(t, "ip", "-n", name, "link", "set", "br0", "up")
	run(t, "bridge", "-n", name, "fdb", "add", "02:00:00:00:00:10", "dev", "p0", "master", "static")
	// An entry as evpnd writes one: on the bridge and on the VXLAN device.
	run(t, "bridge", "-n", name, "fdb", "add", "02:00:00:00:00:20", "dev", "vx0", "self", "master", "extern_learn", "dst", "10.1.1.1")
	ch := subscribeForTest(t, l, ns)
	type event struct {
		typ  uint16
		mac  string
		self bool
		ip   string // of an IP neighbor
	}
	// next returns the next event of one of the test's MACs.
	next := func() event {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case u, ok := <-ch:
				if !ok {
					t.Fatal("the subscription ended")
				}
				mac := u.Neigh.HardwareAddr.String()
				if u.Neigh.Family == unix.AF_BRIDGE && strings.HasPrefix(mac, "02:00:00:00:00:") {
					return event{u.Type, mac, u.Neigh.Flags&unix.NTF_SELF != 0, ""}
				}
				if u.Neigh.Family == unix.AF_INET && u.Neigh.IP.String() == "192.0.2.9" {
					return event{u.Type, mac, false, u.Neigh.IP.String()}
				}
			case <-deadline:
				t.Fatal("no event in 10 s")
			}
		}
	}
	// The listing holds the entries on workload ports, and none on the
	// VXLAN device: the bridge FDB is listed port by port, for the ports
	// that are not VXLAN devices (evpnd's entries there would come next
	// and fail the events below).
	listed := map[event]bool{}
	want := []event{
		{unix.RTM_NEWNEIGH, "02:00:00:00:00:10", false, ""},
	}
	for len(listed) < len(want) {
		ev := next()
		if !slices.Contains(want, ev) {
			t.Fatalf("listing the FDB: unexpected %+v", ev)
		}
		listed[ev] = true
	}

	run(t, "bridge", "-n", name, "fdb", "add", "02:00:00:00:00:01", "dev", "vx0", "self", "master", "extern_learn", "dst", "10.1.1.2")
	run(t, "bridge", "-n", name, "fdb", "del", "02:00:00:00:00:01", "dev", "vx0", "self", "master")
	run(t, "ip", "-n", name, "neigh", "add", "192.0.2.9", "lladdr", "02:00:00:00:00:09", "dev", "br0", "extern_learn")
	run(t, "bridge", "-n", name, "fdb", "del", "02:00:00:00:00:10", "dev", "p0", "master")
	for i, w := range []event{
		// Not evpnd's bridge entry (written over a local MAC, Linux.write
		// tells the learner), its VXLAN twin, nor the deletion of either;
		// evpnd's IP neighbor (it may have been a local address).
		{unix.RTM_NEWNEIGH, "02:00:00:00:00:09", false, "192.0.2.9"},
		// Not evpnd's: its deletion is reported.
		{unix.RTM_DELNEIGH, "02:00:00:00:00:10", false, ""},
	} {
		if ev := next(); ev != w {
			t.Fatalf("event %d: got %+v, want %+v", i, ev, w)
		}
	}
}

// subscribeForTest is l.subscribeNeigh(ns), ended when the test is.
func subscribeForTest(t *testing.T, l *Linux, ns netns.NsHandle) <-chan netlink.NeighUpdate {
	t.Helper()
	stop := make(chan struct{})
	ch, err := l.subscribeNeigh(ns, stop)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		close(stop)
		for range ch {
		}
	})
	return ch
}
