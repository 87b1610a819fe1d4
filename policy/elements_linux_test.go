package policy

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
)

// TestPrivilegedElementMatches sends traffic through every encoding of
// elementPolicy, so the kernel's reading of the direct compares, ranges,
// split rules and rule sets is checked, not only their text. w1 sits on
// tap-a (10.0.1.11), w2 on tap-b (10.0.1.12, bridged), w3 on tap-c
// (10.0.2.21, routed); the web segment denies ingress by default.
func TestPrivilegedElementMatches(t *testing.T) {
	l := newLab(t)
	e := newEngine(t)
	ctx := context.Background()
	for port, a := range map[string]string{"tap-a": "10.0.1.11", "tap-b": "10.0.1.12", "tap-c": "10.0.2.21"} {
		if err := e.SetPortAddresses(ctx, "blue", port, []netip.Addr{netip.MustParseAddr(a)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Apply(ctx, l.binding(), elementPolicy()); err != nil {
		t.Fatalf("apply: %v\n%s", err, l.nftList())
	}
	w1, w2, w3 := l.w["w1"], l.w["w2"], l.w["w3"]
	for _, p := range []int{8120, 8160, 8200, 8208, 9002, 9003, 9005, 9107, 9108} {
		l.listenTCP(w1, p)
	}
	tests := []struct {
		from  string
		port  int
		allow bool
		why   string
	}{
		{w2, 8120, true, "prefix and port range match"},
		{w3, 8120, false, "remote outside the prefix"},
		{w2, 8160, false, "port past the range"},
		{w2, 8200, true, "address range and prefix-shaped port range match"},
		{w3, 8200, false, "remote outside the address range"},
		{w2, 8208, false, "port past the prefix-shaped range"},
		{w3, 9003, true, "second of a split port list"},
		{w3, 9005, true, "last of a split port list"},
		{w3, 9002, false, "port between split elements"},
		{w3, 9107, true, "remote and port in the rule's sets"},
		{w2, 9107, false, "remote not in the rule's address set"},
		{w3, 9108, false, "port not in the rule's port set"},
	}
	for _, tt := range tests {
		addr := fmt.Sprintf("10.0.1.11:%d", tt.port)
		c, err := l.dialTCP(tt.from, addr)
		switch {
		case tt.allow && err != nil:
			t.Errorf("%s -> %s (%s): want connected, got %v", tt.from, addr, tt.why, err)
		case !tt.allow && !isTimeout(err):
			t.Errorf("%s -> %s (%s): want timeout, got %v", tt.from, addr, tt.why, err)
		}
		if c != nil {
			c.Close()
		}
	}
	if !l.ping(w2, "10.0.1.11") || !l.ping(w3, "10.0.1.11") {
		t.Errorf("icmp echo allowed by a split remote and type list got no reply")
	}

	// Only the first packet of a flow reaches the rules (conntrack accepts
	// the rest), so a rule split in three counts the two connections it
	// allowed once each, as one rule would.
	cs := counters(t, e)
	if got := cs["split"].Packets; got != 2 {
		t.Errorf("counter of the split rule: %d packets, want 2 (one per allowed connection)", got)
	}
	for _, r := range []string{"near", "span", "set", "pings"} {
		if cs[r].Packets == 0 {
			t.Errorf("counter of rule %s did not move", r)
		}
	}
}
