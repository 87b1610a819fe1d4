package evpn

import (
	"testing"
	"time"
)

// fakeClock is a settable clock for duplicate detection.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// flap moves macX between vtepA and vtepB n times, one move per step of
// the clock, returning the last sequence number used.
func flap(t *testing.T, rib *RIB, c *fakeClock, seq uint32, n int, step time.Duration) uint32 {
	t.Helper()
	rt := AutoRT(PresetFRR, 65001, 100)
	for i := 0; i < n; i++ {
		seq++
		at := vtepA
		if seq%2 == 0 {
			at = vtepB
		}
		c.t = c.t.Add(step)
		rib.Update([]Route{macRoute(at, macX, "", seq, rt)})
	}
	return seq
}

func TestDupDetectionOffByDefault(t *testing.T) {
	rib := NewRIB(self)
	rib.SetSegments([]Segment{autoSeg(100)})
	c := &fakeClock{t: time.Unix(1e9, 0)}
	flap(t, rib, c, 0, 20, time.Second)
	if d := rib.Duplicates(); len(d) != 0 {
		t.Fatalf("duplicates with detection off: %v", d)
	}
}

func TestDupDetectionFreezesAndClears(t *testing.T) {
	rib := NewRIB(self)
	rib.SetSegments([]Segment{autoSeg(100)})
	c := &fakeClock{t: time.Unix(1e9, 0)}
	rib.SetDupDetection(DupDetection{MaxMoves: DefaultDupMaxMoves, Window: DefaultDupWindow, Now: c.now})
	rt := AutoRT(PresetFRR, 65001, 100)

	// Moves a minute apart: 4 within any 180 s window, never 5.
	seq := flap(t, rib, c, 0, 10, 61*time.Second)
	if d := rib.NewDuplicates(); len(d) != 0 {
		t.Fatalf("slow moves detected as duplicate: %v", d)
	}
	// Five moves within the window: frozen where the fifth left it.
	seq = flap(t, rib, c, seq, 5, time.Second)
	got := rib.NewDuplicates()
	if len(got) != 1 || got[0].VNI != 100 || got[0].MAC.String() != macX.String() || got[0].Moves != 5 {
		t.Fatalf("new duplicates %+v, want macX in 100 after 5 moves", got)
	}
	at := got[0].At
	if dups := rib.Duplicates(); len(dups) != 1 || dups[0].At != at {
		t.Fatalf("duplicates %+v", dups)
	}
	other := vtepA
	if at == vtepA {
		other = vtepB
	}
	// A higher sequence number elsewhere does not move a frozen MAC.
	checkDiff(t, "frozen", rib.Update([]Route{macRoute(other, macX, "", seq+10, rt)}), Intents{}, Intents{})
	if !rib.LocalAllowed(100, macY) || rib.LocalAllowed(100, macX) {
		t.Fatal("LocalAllowed: want false only for the MAC frozen at a remote VTEP")
	}
	// Cleared, it follows its routes again.
	ok, d := rib.ClearDuplicate(100, macX)
	if !ok {
		t.Fatal("clear: not frozen")
	}
	checkDiff(t, "cleared", d, fdbs(FDB{VNI: 100, MAC: macX, VTEP: other}), fdbs(FDB{VNI: 100, MAC: macX, VTEP: at}))
	if ok, _ := rib.ClearDuplicate(100, macX); ok {
		t.Fatal("clearing twice reports a frozen MAC")
	}
}

func TestDupDetectionLocalFrozenStaysLocal(t *testing.T) {
	rib := NewRIB(self)
	rib.SetSegments([]Segment{autoSeg(100)})
	c := &fakeClock{t: time.Unix(1e9, 0)}
	rib.SetDupDetection(DupDetection{MaxMoves: 3, Window: time.Minute, Now: c.now})
	rt := AutoRT(PresetFRR, 65001, 100)
	var seq uint32
	// local -> A -> local -> A ... : each remote win supersedes the local
	// MAC, each local learn takes it back.
	for i := 0; i < 4 && len(rib.Duplicates()) == 0; i++ {
		c.t = c.t.Add(time.Second)
		seq, _ = rib.Local(100, macX, true)
		c.t = c.t.Add(time.Second)
		rib.Update([]Route{macRoute(vtepA, macX, "", seq+1, rt)})
		rib.Superseded()
	}
	dups := rib.Duplicates()
	if len(dups) != 1 {
		t.Fatalf("duplicates %+v, want macX", dups)
	}
	if dups[0].At == self {
		// Frozen local: a higher remote sequence number does not take it.
		rib.Update([]Route{macRoute(vtepA, macX, "", seq+100, rt)})
		if s := rib.Superseded(); len(s) != 0 {
			t.Fatalf("frozen local MAC superseded: %+v", s)
		}
	} else if rib.LocalAllowed(100, macX) {
		t.Fatal("MAC frozen at a remote VTEP may be taken local")
	}
}
