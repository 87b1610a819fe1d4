package daemon

import (
	"testing"
	"time"
)

// TestSnapshotGate: a repair's snapshot is taken at once on a quiet
// datapath, waits while remote changes are written, is taken once they
// stop for repairQuiet and then yields to the next write, and is taken
// anyway, no longer yielding, two repair intervals after it was first
// wanted with no quiet moment, or one interval after it first yielded.
func TestSnapshotGate(t *testing.T) {
	const interval = 30 * time.Second
	t0 := time.Unix(1_000_000, 0)
	var g snapshotGate
	due := func(at time.Time, wantTake, wantYields bool, why string) {
		t.Helper()
		take, yields := g.due(at, interval)
		if take != wantTake || (take && yields != wantYields) {
			t.Fatalf("%s: due gives take %v, yields %v; want %v, %v", why, take, yields, wantTake, wantYields)
		}
	}
	due(t0, true, true, "nothing was ever written")
	g.taken()

	// Bursts with pauses: taken in each pause, it yields to the next
	// burst, until an interval after it first yielded.
	g.wrote(t0)
	due(t0.Add(time.Second), false, false, "a change written a second ago")
	at := t0.Add(repairQuiet)
	due(at, true, true, "no change for the quiet time")
	first := at.Add(time.Second)
	g.wrote(first)
	g.yield(first)
	due(first.Add(time.Second), false, false, "a write just stopped the last one")
	for at = first.Add(repairQuiet); at.Sub(first) < interval; at = at.Add(repairQuiet + time.Second) {
		due(at, true, true, "quiet again, within an interval of the first yield")
		g.wrote(at.Add(time.Second))
		g.yield(at.Add(time.Second))
	}
	due(at, true, false, "quiet again, an interval after the first yield")
	g.taken()

	// Changes every second from t1 on: the snapshot waits two intervals
	// from the first time it was wanted, then goes ahead without
	// yielding.
	t1 := t0.Add(5 * time.Minute)
	g.wrote(t1)
	due(t1.Add(time.Second/2), false, false, "changes are written")
	for s := time.Duration(1); s < 2*interval/time.Second; s++ {
		g.wrote(t1.Add(s * time.Second))
		due(t1.Add(s*time.Second+time.Second/2), false, false, "before two intervals, while changes are written")
	}
	due(t1.Add(2*interval+time.Second/2), true, false, "changes never stopped for two intervals")
	g.taken()

	// Wanted all through a burst longer than an interval (asked again
	// every repairQuiet), it still yields when it finds the quiet moment
	// after it.
	t2 := t1.Add(5 * time.Minute)
	end := t2.Add(interval + 10*time.Second)
	for at := t2; !at.After(end); at = at.Add(time.Second) {
		g.wrote(at)
		if at.Sub(t2)%repairQuiet == 0 {
			due(at.Add(time.Second/2), false, false, "during a burst")
		}
	}
	due(end.Add(repairQuiet), true, true, "the first pause after a long burst")
	g.taken()

	// The wait starts again for the next repair.
	g.wrote(t2.Add(2 * interval))
	due(t2.Add(2*interval+time.Second), false, false, "the next repair, while changes are written")
}
