package fabric

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

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
	x, l, prefix := singleHost(t)
	mac := workload(t, x, "p1", "fls-p1-"+suffix(), "")
	cfg := Config{NetnsPrefix: prefix, VTEP: x.vtep, Tenants: []Tenant{{Name: "ta", Segments: []Segment{{VNI: 300, Ports: []string{"p1"}}}}}}
	if err := l.Set(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	ns := prefix + "ta"
	th := tenantHandle(t, ns)
	p1, err := th.LinkByName("p1")
	if err != nil {
		t.Fatal(err)
	}
	br, err := th.LinkByName("br300")
	if err != nil {
		t.Fatal(err)
	}
	if p1.Attrs().MasterIndex != br.Attrs().Index {
		t.Fatalf("p1 is not in br300: master %d", p1.Attrs().MasterIndex)
	}

	// A learner of its own on the tenant namespace, fed by hand.
	sink := &Linux{learned: make(chan Learned, 16), done: make(chan struct{})}
	lr := &learner{l: sink, t: &tenantNS{name: "ta", nsName: ns, h: th}, links: map[int]linkInfo{}, macs: map[macKey]learnedMAC{}, ips: map[ipKey]learnedIP{}}
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
// VXLAN device's, where evpnd's entries are), then reports new entries on the bridge and deletions of entries evpnd did not
// install, while the kernel drops the deletions of extern_learn entries
// and the VXLAN device's own extern_learn entries before they reach it.
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
				if mac := u.Neigh.HardwareAddr.String(); u.Neigh.Family == unix.AF_BRIDGE && strings.HasPrefix(mac, "02:00:00:00:00:") {
					return event{u.Type, mac, u.Neigh.Flags&unix.NTF_SELF != 0}
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
		{unix.RTM_NEWNEIGH, "02:00:00:00:00:10", false},
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
	run(t, "bridge", "-n", name, "fdb", "del", "02:00:00:00:00:10", "dev", "p0", "master")
	for i, w := range []event{
		// evpnd's entry arriving on the bridge (a local MAC may have moved
		// away); not its VXLAN twin, nor the deletion of either.
		{unix.RTM_NEWNEIGH, "02:00:00:00:00:01", false},
		// Not evpnd's: its deletion is reported.
		{unix.RTM_DELNEIGH, "02:00:00:00:00:10", false},
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
