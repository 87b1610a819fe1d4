package policy

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestPrivilegedRepair changes evpnd's tables by hand — a chain flushed,
// then the whole table deleted — and requires Repair to restore exactly
// the applied ruleset each time, leaving a table of someone else alone.
func TestPrivilegedRepair(t *testing.T) {
	l := newLab(t)
	e := newEngine(t)
	ctx := context.Background()
	if _, err := e.Apply(ctx, l.binding(), filterPolicy()); err != nil {
		t.Fatalf("apply: %v", err)
	}
	run(t, "ip", "netns", "exec", l.tenant, "nft", "add table inet other; add chain inet other c; add rule inet other c counter")
	// The ruleset without counter values (nft -s): a workload's stray
	// packet (IPv6 neighbor discovery) may reach a counted segment
	// default between two listings.
	evpndTables := func() string {
		var b strings.Builder
		for _, fam := range []string{"inet", "bridge"} {
			out, err := exec.Command("ip", "netns", "exec", l.tenant, "nft", "-s", "list", "table", fam, "evpnd").CombinedOutput()
			if err != nil {
				t.Fatalf("list %s evpnd: %v: %s", fam, err, out)
			}
			b.Write(out)
		}
		return b.String()
	}
	applied := evpndTables()

	if got, err := e.Repair(ctx); err != nil || len(got) != 0 {
		t.Fatalf("repair of intact tables: %v, %v; want nothing to do", got, err)
	}
	for _, tamper := range []string{
		"flush chain inet evpnd filter_ingress",
		"delete table bridge evpnd",
		"add rule inet evpnd filter_egress accept",
		"delete table inet evpnd",
	} {
		run(t, "ip", "netns", "exec", l.tenant, "nft", tamper)
		got, err := e.Repair(ctx)
		if err != nil || !slices.Equal(got, []string{"blue"}) {
			t.Fatalf("after %q: repair %v, %v; want [blue]", tamper, got, err)
		}
		if now := evpndTables(); now != applied {
			t.Fatalf("after %q and repair the ruleset differs:\n%s\nwant\n%s", tamper, now, applied)
		}
	}
	if !strings.Contains(l.nftList(), "table inet other") {
		t.Fatal("repair removed a table that is not evpnd's")
	}
}

// TestPrivilegedRepairQoS: qdiscs of evpnd's ports removed by hand come
// back with the next repair pass, as rule edits do not read tc back.
func TestPrivilegedRepairQoS(t *testing.T) {
	l := newLab(t)
	e := newEngine(t)
	ctx := context.Background()
	p := filterPolicy()
	p.QoS = []PortQoS{
		{Port: "tap-a", EgressRate: 10e6, EgressBurst: 20000, IngressRate: 5e6,
			Classes: []Class{{Name: "gold", Rate: 2e6, Ceil: 4e6, Priority: 1}, {Name: "bulk", Rate: 1e6, Priority: 3}}},
		{Port: "tap-b", IngressRate: 1e6},
	}
	if _, err := e.Apply(ctx, l.binding(), p); err != nil {
		t.Fatalf("apply: %v", err)
	}
	// Nothing to repair in what the apply made, pass after pass.
	for range 2 {
		if got, err := e.Repair(ctx); err != nil || len(got) != 0 {
			t.Fatalf("repair of intact qos: %v, %v; want nothing to do", got, err)
		}
	}
	run(t, "ip", "netns", "exec", l.tenant, "tc", "qdisc", "del", "dev", "tap-a", "root")
	got, err := e.Repair(ctx)
	if err != nil || !slices.Equal(got, []string{"blue"}) {
		t.Fatalf("repair after the root qdisc was deleted: %v, %v; want [blue]", got, err)
	}
	out, err := exec.Command("ip", "netns", "exec", l.tenant, "tc", "qdisc", "show", "dev", "tap-a").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "htb") {
		t.Fatalf("tap-a after repair: %v\n%s", err, out)
	}
}
