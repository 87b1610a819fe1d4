package fabric

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/evpnd/evpnd/evpn"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// A repair's snapshot is dumped while the datapath keeps working: a sync
// against it puts back what was deleted by hand before it, keeps what
// Update did after it (at most rewriting it), and is refused once a Set
// came in between.
func TestPrivilegedSyncWithSnapshot(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	x, l, prefix := singleHost(t)
	workload(t, x, "p1", "fl-p1-"+suffix(), "")
	cfg := Config{NetnsPrefix: prefix, VTEP: x.vtep, Tenants: []Tenant{{Name: "ta", Segments: []Segment{{VNI: 100, Ports: []string{"p1"}}}}}}
	if err := l.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	ns := prefix + "ta"
	th := tenantHandle(t, ns)
	vtepA, vtepB := netip.MustParseAddr("10.77.0.2"), netip.MustParseAddr("10.77.0.3")
	m1, m2, m3 := mustMAC("02:00:00:00:02:01"), mustMAC("02:00:00:00:02:02"), mustMAC("02:00:00:00:02:03")
	full := evpn.Intents{FDB: []evpn.FDB{{VNI: 100, MAC: m1, VTEP: vtepA}, {VNI: 100, MAC: m2, VTEP: vtepA}}}
	if err := l.Update(ctx, evpn.Diff{Add: full}); err != nil {
		t.Fatal(err)
	}
	// Drift before the snapshot: m1 deleted by hand.
	run(t, "ip", "netns", "exec", ns, "bridge", "fdb", "del", m1.String(), "dev", "vx100", "master")
	run(t, "ip", "netns", "exec", ns, "bridge", "fdb", "del", m1.String(), "dev", "vx100", "dst", vtepA.String(), "self")
	snap, err := l.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// After the snapshot: m3 arrives, m2 moves to B; the snapshot has
	// neither.
	after := evpn.Diff{
		Add: evpn.Intents{FDB: []evpn.FDB{{VNI: 100, MAC: m3, VTEP: vtepA}, {VNI: 100, MAC: m2, VTEP: vtepB}}},
		Del: evpn.Intents{FDB: []evpn.FDB{{VNI: 100, MAC: m2, VTEP: vtepA}}},
	}
	if err := l.Update(ctx, after); err != nil {
		t.Fatal(err)
	}
	now := evpn.Intents{FDB: []evpn.FDB{{VNI: 100, MAC: m1, VTEP: vtepA}, {VNI: 100, MAC: m2, VTEP: vtepB}, {VNI: 100, MAC: m3, VTEP: vtepA}}}
	if err := l.SyncWith(ctx, now, snap); err != nil {
		t.Fatalf("sync with snapshot: %v", err)
	}
	v := dumpRemote(t, th, 100)
	want := map[string]string{m1.String(): "10.77.0.2", m2.String(): "10.77.0.3", m3.String(): "10.77.0.2"}
	for mac, vtep := range want {
		if !v.bridge[mac] || v.vxlan[mac] != vtep {
			t.Errorf("%s after sync with snapshot: bridge %v vxlan %q, want %s", mac, v.bridge[mac], v.vxlan[mac], vtep)
		}
	}

	stale, err := l.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := l.SyncWith(ctx, now, stale); !errors.Is(err, ErrStaleSnapshot) {
		t.Errorf("sync with a snapshot older than Set: %v, want ErrStaleSnapshot", err)
	}
}

// A snapshot stops when its context ends, with the context's cause, and
// never hands back part of a table without an error: left to finish it
// holds every entry; stopped before it starts it fails with the cause;
// and its FDB dump, stopped while the kernel fills it, ends there.
func TestPrivilegedSnapshotStops(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	x, l, prefix := singleHost(t)
	cfg := Config{NetnsPrefix: prefix, VTEP: x.vtep, Tenants: []Tenant{{Name: "ta", Segments: []Segment{{VNI: 100}}}}}
	if err := l.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	const n = 20000
	if err := l.Update(ctx, evpn.Diff{Add: evpn.Intents{FDB: bulkFDB(100, n)}}); err != nil {
		t.Fatal(err)
	}
	held := func(s *Snapshot) int {
		total := 0
		for _, v := range s.views {
			total += len(v.bridge)
		}
		return total
	}
	full, err := l.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a whole snapshot of %d entries took %s", n, full.Took())
	if got := held(full); got != n {
		t.Fatalf("a snapshot left to finish holds %d entries, want %d", got, n)
	}

	cause := errors.New("stopped by the test")
	before, stop := context.WithCancelCause(ctx)
	stop(cause)
	if _, err := l.Snapshot(before); !errors.Is(err, cause) {
		t.Errorf("a snapshot stopped before it starts: %v, want %v", err, cause)
	}

	// Stopped 1 ms into the FDB dump, which takes the kernel far longer
	// whole. (On a machine that dumps the table within 100 ms it may
	// finish first, and then it must be whole.)
	ns, err := netns.GetFromName(prefix + "ta")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	midway, stop := context.WithCancelCause(ctx)
	list, done, err := listAt(midway, ns)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	timer := time.AfterFunc(time.Millisecond, func() { stop(cause) })
	defer timer.Stop()
	fdb, err := list(unix.AF_BRIDGE)
	switch {
	case err == nil && len(fdb) < 2*n:
		t.Errorf("a dump that reports no error holds %d entries, want %d (bridge and vxlan)", len(fdb), 2*n)
	case err == nil && full.Took() >= 100*time.Millisecond:
		t.Errorf("a dump stopped 1 ms in ran to the end (a whole snapshot took %s)", full.Took())
	case err == nil:
		t.Logf("the dump finished before it was stopped")
	case !errors.Is(err, cause):
		t.Errorf("a dump stopped midway: %v, want %v", err, cause)
	default:
		t.Logf("stopped midway: %v", err)
	}
}
