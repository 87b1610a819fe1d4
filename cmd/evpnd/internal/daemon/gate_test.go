package daemon

import (
	"testing"
	"time"
)

// TestSnapshotGate: a repair's snapshot is taken at once on a quiet
// datapath, waits while remote changes are written, is taken once they
// stop for repairQuiet, and is taken anyway after one repair interval of
// changes that never stop.
func TestSnapshotGate(t *testing.T) {
	const interval = 30 * time.Second
	t0 := time.Unix(1_000_000, 0)
	var g snapshotGate
	if !g.due(t0, interval) {
		t.Fatal("nothing was ever written, and the snapshot waits")
	}

	g.wrote(t0)
	if g.due(t0.Add(time.Second), interval) {
		t.Fatal("a change written a second ago, and the snapshot is due")
	}
	if !g.due(t0.Add(repairQuiet), interval) {
		t.Fatalf("no change for %v, and the snapshot still waits", repairQuiet)
	}

	// Changes every second from t1 on: the snapshot waits one interval
	// from the first time it was wanted, then goes ahead.
	t1 := t0.Add(time.Minute)
	g.wrote(t1)
	if g.due(t1.Add(time.Second/2), interval) {
		t.Fatal("due while changes are written")
	}
	for s := time.Duration(1); s < 30; s++ {
		g.wrote(t1.Add(s * time.Second))
		if g.due(t1.Add(s*time.Second+time.Second/2), interval) {
			t.Fatalf("due %v after the first try, before the interval, while changes are written", s*time.Second)
		}
	}
	if !g.due(t1.Add(interval+time.Second/2), interval) {
		t.Fatal("changes never stopped, and the snapshot waits beyond one interval")
	}
	// The wait starts again for the next repair.
	if g.due(t1.Add(interval+time.Second), interval) {
		t.Fatal("the next repair's snapshot is due at once while changes are written")
	}
}
