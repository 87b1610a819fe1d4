package report

import (
	"strings"
	"testing"
	"time"

	"github.com/evpnd/evpnd/integration/cmd/bench/convergence"
)

// TestMarkdownFloor checks that a run with GoBGP alone reports it beside
// the targets and in its own table, with ratios to FRR and evpnd, and that
// a run from before the floor was measured renders as it did.
func TestMarkdownFloor(t *testing.T) {
	ev := convergence.Result{DUT: convergence.Evpnd, Routes: 100000, Converge: 8 * time.Second, PeakRSS: 600 << 20, Withdraw: 4 * time.Second}
	fr := convergence.Result{DUT: convergence.FRR, Routes: 100000, Converge: 4 * time.Second, PeakRSS: 300 << 20, Withdraw: 2 * time.Second}
	fl := convergence.Result{DUT: convergence.GoBGP, Routes: 100000, Converge: 3 * time.Second, PeakRSS: 450 << 20, Withdraw: time.Second}

	old := string(Markdown(Data{Rows: []Row{NewRow(100000, ev, fr)}}, "x.png", false))
	if strings.Contains(old, "GoBGP alone") {
		t.Errorf("a run without the floor mentions it:\n%s", old)
	}

	row := NewRow(100000, ev, fr)
	row.SetFloor(fl)
	if row.FloorTimeRatio != 0.75 || row.FloorRSSRatio != 1.5 {
		t.Errorf("floor ratios %v, %v: want 0.75, 1.5", row.FloorTimeRatio, row.FloorRSSRatio)
	}
	md := string(Markdown(Data{Rows: []Row{row}}, "x.png", false))
	for _, want := range []string{
		"| B1 at 100k: at most 0.5x FRR's time | 2.00x (GoBGP alone: 0.75x) | not met |",
		"| B1 at 100k: no more memory than FRR | 2.00x (GoBGP alone: 1.50x) | not met |",
		"### The floor: GoBGP alone",
		"| 100000 | 3.00 | 0.75 | 0.38 | 450 | 1.50 | 0.75 | 1.00 | 0.50 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}
