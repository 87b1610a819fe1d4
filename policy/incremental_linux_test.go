package policy

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/nftables"
	mnl "github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// applyLog records whether each Apply of an engine was incremental, from
// the engine's debug log.
type applyLog struct {
	mu          sync.Mutex
	incremental []bool
}

func (l *applyLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *applyLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *applyLog) WithGroup(string) slog.Handler            { return l }
func (l *applyLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "policy applied" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "incremental" {
			l.mu.Lock()
			l.incremental = append(l.incremental, a.Value.Bool())
			l.mu.Unlock()
		}
		return true
	})
	return nil
}

func (l *applyLog) last() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.incremental) > 0 && l.incremental[len(l.incremental)-1]
}

func newLoggedEngine(t *testing.T) (*Nftables, *applyLog) {
	l := &applyLog{}
	e, err := New(Options{Logger: slog.New(l)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e, l
}

// bareNamespace makes an empty namespace for rulesets that see no
// traffic and returns its name.
func bareNamespace(t *testing.T, role string) string {
	t.Helper()
	requireRoot(t)
	b := make([]byte, 3)
	rand.Read(b)
	ns := "pi" + role + "-" + hex.EncodeToString(b)
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	return ns
}

func bareBinding(ns string) Binding {
	return Binding{Tenant: "blue", Namespace: ns, Segments: []SegmentBinding{
		{Name: "web", Bridge: "br100", Ports: []string{"tap-a", "tap-b"}},
		{Name: "db", Bridge: "br200", Ports: []string{"tap-c"}},
	}}
}

// kernelRule is one rule as nft reads it back from the kernel.
type kernelRule struct {
	chain  string
	body   string // the rule without its handle
	handle uint64
}

// kernelTables reads evpnd's tables back with nft and returns them
// normalized — no handles, chains, sets and elements sorted by name,
// rules in chain order — so that two namespaces holding the same
// ruleset compare equal however each got it, together with the rules
// and their handles.
func kernelTables(t *testing.T, ns string) (string, []kernelRule) {
	t.Helper()
	var objs []string
	var rules []kernelRule
	for _, fam := range []string{"inet", "bridge"} {
		out, err := exec.Command("ip", "netns", "exec", ns, "nft", "-j", "list", "table", fam, TableName).CombinedOutput()
		if err != nil {
			t.Fatalf("nft list table %s %s in %s: %v: %s", fam, TableName, ns, err, out)
		}
		var doc struct {
			Nftables []map[string]map[string]any `json:"nftables"`
		}
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatalf("nft json: %v", err)
		}
		index := map[string]int{}
		for _, o := range doc.Nftables {
			for kind, v := range o {
				if kind == "metainfo" {
					continue
				}
				h, _ := v["handle"].(float64)
				delete(v, "handle")
				if e, ok := v["elem"].([]any); ok {
					slices.SortFunc(e, func(a, b any) int { return strings.Compare(jsonText(t, a), jsonText(t, b)) })
				}
				body := jsonText(t, v)
				key := fam + " " + kind + " "
				if kind == "rule" {
					chain := v["chain"].(string)
					key += fmt.Sprintf("%s %06d", chain, index[chain])
					index[chain]++
					rules = append(rules, kernelRule{chain: fam + " " + chain, body: body, handle: uint64(h)})
				} else {
					key += fmt.Sprint(v["name"])
				}
				objs = append(objs, key+" "+body)
			}
		}
	}
	slices.Sort(objs)
	return strings.Join(objs, "\n"), rules
}

func jsonText(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// learnAddrs tells e the addresses learned on tenant blue's ports.
func learnAddrs(t *testing.T, e *Nftables, addrs map[string][]netip.Addr) {
	t.Helper()
	for port, a := range addrs {
		if err := e.SetPortAddresses(context.Background(), "blue", port, a); err != nil {
			t.Fatal(err)
		}
	}
}

// freshApply applies p with a new engine into a new namespace and
// returns the normalized tables there: what a full apply makes.
func freshApply(t *testing.T, ns string, p Policy, addrs map[string][]netip.Addr) string {
	t.Helper()
	e, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	learnAddrs(t, e, addrs)
	if _, err := e.Apply(ctx, bareBinding(ns), p); err != nil {
		t.Fatalf("fresh apply: %v", err)
	}
	got, _ := kernelTables(t, ns)
	if err := e.Remove(ctx, "blue"); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestPrivilegedIncrementalOneRule changes one rule of an applied
// 500-rule policy: only that rule's kernel objects may change, and the
// result must equal a full apply of the changed policy. With rules that
// merge into runs, the change is one element of a run per family and no
// kernel rule changes; with rules that log (which never merge), it is
// the rule's own kernel rules.
func TestPrivilegedIncrementalOneRule(t *testing.T) {
	for _, logged := range []bool{false, true} {
		t.Run(fmt.Sprintf("log=%v", logged), func(t *testing.T) {
			nsA, nsB := bareNamespace(t, "a"), bareNamespace(t, "b")
			e, log := newLoggedEngine(t)
			ctx := context.Background()
			addrs := map[string][]netip.Addr{"tap-a": {netip.MustParseAddr("10.0.1.11")}, "tap-b": {netip.MustParseAddr("10.0.1.12")}}
			learnAddrs(t, e, addrs)
			p := scalePolicy(500)
			for i := range p.Rules {
				p.Rules[i].Log = logged
			}
			if _, err := e.Apply(ctx, bareBinding(nsA), p); err != nil {
				t.Fatal(err)
			}
			_, before := kernelTables(t, nsA)
			p.Rules[250].Ports = []PortRange{{65000, 65000}}
			if _, err := e.Apply(ctx, bareBinding(nsA), p); err != nil {
				t.Fatal(err)
			}
			if !log.last() {
				t.Fatal("one-rule change was not applied incrementally")
			}
			got, after := kernelTables(t, nsA)
			if want := freshApply(t, nsB, p, addrs); got != want {
				t.Fatalf("incremental apply differs from a full apply:\n%s", lineDiff(got, want))
			}
			if len(after) != len(before) {
				t.Fatalf("%d rules after a one-rule change, %d before", len(after), len(before))
			}
			kept := map[uint64]bool{}
			for _, r := range before {
				kept[r.handle] = true
			}
			var fresh []kernelRule
			for _, r := range after {
				if !kept[r.handle] {
					fresh = append(fresh, r)
				}
			}
			if !logged {
				// Rule 250 (port group g, address group nets) is an
				// element of the chain's group run of each family.
				if len(fresh) != 0 {
					t.Fatalf("%d rules with new handles after a one-rule change of a merged rule: %+v", len(fresh), fresh)
				}
				for _, f := range []string{"4", "6"} {
					set := "run_in_group_g_g" + f + "_nets_accept"
					out, err := exec.Command("ip", "netns", "exec", nsA, "nft", "list", "set", "inet", TableName, set).CombinedOutput()
					if err != nil {
						t.Fatalf("nft list set %s: %v: %s", set, err, out)
					}
					if !strings.Contains(string(out), `tcp . 65000 counter packets 0 bytes 0 comment "r250"`) || strings.Contains(string(out), "1250") {
						t.Errorf("set %s after the change of r250 to port 65000:\n%s", set, out)
					}
				}
				return
			}
			// Rule 250 is one kernel rule per family; only those are new.
			changed := 0
			for _, r := range after {
				if strings.Contains(r.body, `"rule_r250"`) {
					changed++
				}
			}
			if changed != 2 || len(fresh) != changed {
				t.Fatalf("%d rules with new handles after a one-rule change, want the %d of the changed rule: %+v", len(fresh), changed, fresh)
			}
			for _, r := range fresh {
				if !strings.Contains(r.body, `"rule_r250"`) || !strings.Contains(r.body, "65000") {
					t.Errorf("rule with a new handle is not the changed rule: %+v", r)
				}
			}
		})
	}
}

// TestPrivilegedIncrementalSequence applies a random sequence of policy
// edits incrementally and requires after each one the kernel tables a
// full apply of the same policy makes.
func TestPrivilegedIncrementalSequence(t *testing.T) {
	nsA, nsB := bareNamespace(t, "a"), bareNamespace(t, "b")
	e, log := newLoggedEngine(t)
	ctx := context.Background()
	addrs := map[string][]netip.Addr{
		"tap-a": {netip.MustParseAddr("10.0.1.11"), netip.MustParseAddr("fd00:1::11")},
		"tap-b": {netip.MustParseAddr("10.0.1.12")},
		"tap-c": {netip.MustParseAddr("10.0.2.21")},
	}
	learnAddrs(t, e, addrs)
	rng := mrand.New(mrand.NewPCG(1, 2))
	p := scalePolicy(40)
	p.AddressGroups = append(p.AddressGroups,
		AddressGroup{Name: "v4only", Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}},
		AddressGroup{Name: "more", Prefixes: []netip.Prefix{netip.MustParsePrefix("192.168.0.0/24")}})
	next := 40
	if _, err := e.Apply(ctx, bareBinding(nsA), p); err != nil {
		t.Fatal(err)
	}
	for step := range 80 {
		q := p
		q.Rules = slices.Clone(p.Rules)
		q.AddressGroups = slices.Clone(p.AddressGroups)
		q.Segments = slices.Clone(p.Segments)
		i := rng.IntN(len(q.Rules))
		var what string
		switch k := rng.IntN(13); {
		case k == 0 || len(q.Rules) < 5:
			r := q.Rules[i]
			r.Name, r.Priority = fmt.Sprintf("n%d", next), rng.IntN(60)
			next++
			q.Rules = slices.Insert(q.Rules, i, r)
			what = "add rule " + r.Name
		case k == 1:
			what = "remove rule " + q.Rules[i].Name
			q.Rules = slices.Delete(q.Rules, i, i+1)
		case k == 2:
			q.Rules[i].Ports = []PortRange{{uint16(2000 + rng.IntN(100)), uint16(2100 + rng.IntN(100))}, {9000, 9000}}
			q.Rules[i].Protocol, q.Rules[i].ICMPTypes = ProtoTCP, nil
			what = "change ports of " + q.Rules[i].Name
		case k == 3:
			q.Rules[i].Remote = Remote{Prefixes: []netip.Prefix{
				netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 9, byte(rng.IntN(256)), 0}), 24),
				netip.MustParsePrefix("fd00:9::/64")}}
			what = "change remote of " + q.Rules[i].Name
		case k == 4:
			q.Rules[i].Remote = Remote{AddressGroup: "more"}
			what = "rule " + q.Rules[i].Name + " to group more"
		case k == 5:
			g := AddressGroup{Name: "more"}
			for range 1 + rng.IntN(4) {
				g.Prefixes = append(g.Prefixes, netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(rng.IntN(8)), 0}), 24))
			}
			if rng.IntN(2) == 0 {
				g.Prefixes = append(g.Prefixes, netip.MustParsePrefix("fd00:77::/48"))
			}
			q.AddressGroups[len(q.AddressGroups)-1] = g
			what = fmt.Sprintf("group more = %v", g.Prefixes)
		case k == 6:
			actions := []Action{ActionAllow, ActionDeny, ActionReject}
			q.Rules[i].Action = actions[rng.IntN(3)]
			if q.Rules[i].Action != ActionAllow {
				q.Rules[i].DSCP = nil // marking is for allow rules only
			}
			q.Rules[i].Log = rng.IntN(2) == 0
			what = "action of " + q.Rules[i].Name
		case k == 7:
			if q.Rules[i].DSCP == nil {
				q.Rules[i].Action, q.Rules[i].DSCP = ActionAllow, ptr(uint8(rng.IntN(3)*8))
			} else {
				q.Rules[i].DSCP = nil
			}
			what = "marking of " + q.Rules[i].Name
		case k == 9:
			// More port ranges than maxSplit: the rule gets a named set,
			// which a later edit refills.
			q.Rules[i].Protocol, q.Rules[i].ICMPTypes = ProtoUDP, nil
			q.Rules[i].Ports = nil
			for j := range 5 + rng.IntN(3) {
				from := uint16(3000 + 10*j + rng.IntN(5))
				q.Rules[i].Ports = append(q.Rules[i].Ports, PortRange{from, from})
			}
			what = "many ports of " + q.Rules[i].Name
		case k == 10:
			j := rng.IntN(len(q.Rules))
			q.Rules[i].Ports = []PortRange{{uint16(4000 + rng.IntN(100)), uint16(4100 + rng.IntN(100))}}
			q.Rules[i].Protocol, q.Rules[i].ICMPTypes = ProtoTCP, nil
			q.Rules[j].Log = !q.Rules[j].Log
			what = "ports of " + q.Rules[i].Name + " and log of " + q.Rules[j].Name
		case k == 11:
			// An ICMPv6 rule with an IPv4-only group compiles to no
			// kernel rule.
			q.Rules[i].Protocol, q.Rules[i].Ports, q.Rules[i].ICMPTypes = ProtoICMPv6, nil, nil
			q.Rules[i].Remote = Remote{AddressGroup: "v4only"}
			what = "rule " + q.Rules[i].Name + " to icmpv6 from group v4only"
		case k == 12:
			// Edits of several rules at once, each of which could be
			// made alone by moving its elements (see editAllInPlace).
			what = "ports of"
			for range 2 + rng.IntN(2) {
				j := rng.IntN(len(q.Rules))
				q.Rules[j].Ports = []PortRange{{uint16(5000 + rng.IntN(500)), uint16(5000 + rng.IntN(500))}}
				q.Rules[j].Ports[0].To = max(q.Rules[j].Ports[0].From, q.Rules[j].Ports[0].To)
				q.Rules[j].Protocol, q.Rules[j].ICMPTypes = ProtoTCP, nil
				what += " " + q.Rules[j].Name
			}
		default:
			defaults := []Action{ActionAllow, ActionDeny, ActionReject}
			q.Segments = []SegmentDefault{{Segment: "web", Ingress: defaults[rng.IntN(3)], Egress: defaults[rng.IntN(3)]}}
			what = fmt.Sprintf("segment defaults %v", q.Segments)
		}
		if _, err := e.Apply(ctx, bareBinding(nsA), q); err != nil {
			t.Fatalf("step %d (%s): apply: %v", step, what, err)
		}
		if !log.last() {
			t.Fatalf("step %d (%s): not applied incrementally", step, what)
		}
		got, _ := kernelTables(t, nsA)
		if want := freshApply(t, nsB, q, addrs); got != want {
			t.Fatalf("step %d (%s): incremental apply differs from a full apply:\n%s", step, what, lineDiff(got, want))
		}
		p = q
	}
}

// TestEditAllInPlace edits the ports of three rules, two in one chain,
// none of them moving to another level: the patch only moves their
// elements, and its sets are what a compile of the edited policy makes.
func TestEditAllInPlace(t *testing.T) {
	addrs := map[string][]netip.Addr{
		"tap-a": {netip.MustParseAddr("10.0.1.11")},
		"tap-b": {netip.MustParseAddr("10.0.1.12")},
		"tap-c": {netip.MustParseAddr("10.0.2.21")},
	}
	b := bareBinding("x")
	p := scalePolicy(40)
	rs, err := Compile(p, b, addrs)
	if err != nil {
		t.Fatal(err)
	}
	q := p
	q.Rules = slices.Clone(p.Rules)
	idx := []int{1, 13, 22} // 1 and 13 share a chain and a run
	for n, i := range idx {
		q.Rules[i].Ports = []PortRange{{uint16(7000 + n), uint16(7000 + n)}}
	}
	rp, ok := rs.editAllInPlace(rs.patchCompiler(q, b, idx), rs.setIndex(), q, p, idx)
	if !ok {
		t.Fatal("the edits were not made in place")
	}
	if len(rp.sets) == 0 {
		t.Fatal("the patch changes no set")
	}
	want, err := Compile(q, b, addrs)
	if err != nil {
		t.Fatal(err)
	}
	wantSets := map[string]*nftSet{}
	for _, s := range want.inet.sets {
		wantSets[s.name] = s
	}
	same := func(a, b *nftSet) bool { return b != nil && slices.EqualFunc(a.elems, b.elems, sameElem) }
	for _, s := range rp.rs.inet.sets {
		if !same(s, wantSets[s.name]) {
			t.Errorf("set %s of the patched ruleset differs from a compile of the edited policy", s.name)
		}
	}
	// What goes to the kernel: each changed set once, from the applied
	// ruleset's set to the compiled one.
	patched := map[string]setPatch{}
	for _, sp := range rp.sets {
		if _, twice := patched[sp.next.name]; twice {
			t.Errorf("set %s patched twice", sp.next.name)
		}
		patched[sp.next.name] = sp
		if !slices.Contains(rs.inet.sets, sp.old) {
			t.Errorf("set %s: the patch does not start from the applied ruleset's set", sp.next.name)
		}
		if !same(sp.next, wantSets[sp.next.name]) {
			t.Errorf("set %s: the patch ends elsewhere than a compile of the edited policy", sp.next.name)
		}
	}
	for _, s := range rs.inet.sets {
		if _, ok := patched[s.name]; !ok && !same(s, wantSets[s.name]) {
			t.Errorf("set %s changed but is not patched", s.name)
		}
	}
}

// lineDiff lists the lines only one of got and want has.
func lineDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	var b strings.Builder
	for _, l := range g {
		if !slices.Contains(w, l) {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	for _, l := range w {
		if !slices.Contains(g, l) {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	return b.String()
}

// TestPrivilegedIncrementalTraffic changes rules of an applied policy
// incrementally and requires traffic to follow the new policy while the
// counter of an unchanged rule keeps its count.
func TestPrivilegedIncrementalTraffic(t *testing.T) {
	l := newLab(t)
	e, log := newLoggedEngine(t)
	ctx := context.Background()
	for port, a := range map[string]string{"tap-a": "10.0.1.11", "tap-c": "10.0.2.21"} {
		if err := e.SetPortAddresses(ctx, "blue", port, []netip.Addr{netip.MustParseAddr(a)}); err != nil {
			t.Fatal(err)
		}
	}
	p := filterPolicy()
	if _, err := e.Apply(ctx, l.binding(), p); err != nil {
		t.Fatalf("apply: %v", err)
	}
	w1, w2 := l.w["w1"], l.w["w2"]
	l.listenTCP(w1, 8080)
	l.listenTCP(w1, 9090)
	if c, err := l.dialTCP(w2, "10.0.1.11:8080"); err != nil || echo(c) != nil {
		t.Fatalf("allowed port before the change: %v", err)
	}
	if _, err := l.dialTCP(w2, "10.0.1.11:9090"); !isRefused(err) {
		t.Fatalf("rejected port before the change: want connection refused, got %v", err)
	}
	counted := counters(t, e)["web-8080"].Packets
	if counted == 0 {
		t.Fatal("web-8080 counted nothing for an allowed connection")
	}

	q := p
	q.Rules = slices.Clone(p.Rules)
	q.Rules[1].Action = ActionAllow // rej-9090
	if _, err := e.Apply(ctx, l.binding(), q); err != nil {
		t.Fatalf("apply change: %v", err)
	}
	if !log.last() {
		t.Fatal("change was not applied incrementally")
	}
	if got := counters(t, e)["web-8080"].Packets; got < counted {
		t.Fatalf("web-8080 counter went from %d to %d over a change of another rule", counted, got)
	}
	if c, err := l.dialTCP(w2, "10.0.1.11:9090"); err != nil || echo(c) != nil {
		t.Fatalf("port allowed by the changed rule: %v", err)
	}
	if c, err := l.dialTCP(w2, "10.0.1.11:8080"); err != nil || echo(c) != nil {
		t.Fatalf("allowed port after the change: %v", err)
	}
	if got := counters(t, e)["web-8080"].Packets; got <= counted {
		t.Fatalf("web-8080 counter %d after a second connection, %d before the change: it stopped counting", got, counted)
	}

	q.Rules = slices.Delete(slices.Clone(q.Rules), 0, 1) // web-8080 goes
	if _, err := e.Apply(ctx, l.binding(), q); err != nil {
		t.Fatalf("apply removal: %v", err)
	}
	if !log.last() {
		t.Fatal("removal was not applied incrementally")
	}
	if _, err := l.dialTCP(w2, "10.0.1.11:8080"); !isTimeout(err) {
		t.Fatalf("port of a removed rule (segment default deny): want timeout, got %v", err)
	}
	if _, ok := counters(t, e)["web-8080"]; ok {
		t.Fatal("counter of a removed rule is still there")
	}
}

// nftGeneration reads the namespace's nftables ruleset generation, which
// every committed batch advances.
func nftGeneration(t *testing.T, ns string) uint32 {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nl, err := mnl.Dial(unix.NETLINK_NETFILTER, &mnl.Config{NetNS: int(h)})
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	msgs, err := nl.Execute(mnl.Message{
		Header: mnl.Header{Type: mnl.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN), Flags: mnl.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil || len(msgs) != 1 || len(msgs[0].Data) < 4 {
		t.Fatalf("nftables generation: %v (%d answers)", err, len(msgs))
	}
	ad, err := mnl.NewAttributeDecoder(msgs[0].Data[4:])
	if err != nil {
		t.Fatal(err)
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() == unix.NFTA_GEN_ID {
			return ad.Uint32()
		}
	}
	t.Fatal("nftables generation: no id in the answer")
	return 0
}

// TestPrivilegedReapplyUnchanged re-applies an applied policy, as a copy
// and as the caller's own value edited in place, and requires no
// nftables commit for the copy and, for the edit, the tables a full apply
// of the edited policy makes: the engine keeps its own copy of what it
// applied, so an edit of the caller's slices is a change.
func TestPrivilegedReapplyUnchanged(t *testing.T) {
	nsA, nsB := bareNamespace(t, "a"), bareNamespace(t, "b")
	e, log := newLoggedEngine(t)
	ctx := context.Background()
	addrs := map[string][]netip.Addr{"tap-a": {netip.MustParseAddr("10.0.1.11")}, "tap-c": {netip.MustParseAddr("10.0.2.21")}}
	learnAddrs(t, e, addrs)
	p := scalePolicy(300)
	res, err := e.Apply(ctx, bareBinding(nsA), p)
	if err != nil {
		t.Fatal(err)
	}
	if res.Commit <= 0 || res.Commit > res.Duration {
		t.Errorf("first apply: kernel commit %v of %v, want a part of it", res.Commit, res.Duration)
	}
	want, before := kernelTables(t, nsA)
	gen := nftGeneration(t, nsA)
	res, err = e.Apply(ctx, bareBinding(nsA), clonePolicy(p))
	if err != nil {
		t.Fatal(err)
	}
	if res.Commit != 0 {
		t.Errorf("re-apply of the same policy reports a kernel commit of %v, want none", res.Commit)
	}
	if !log.last() {
		t.Fatal("re-apply of the same policy was not incremental")
	}
	if got := nftGeneration(t, nsA); got != gen {
		t.Fatalf("re-apply of the same policy committed %d nftables batches, want none", got-gen)
	}
	got, after := kernelTables(t, nsA)
	if got != want || !slices.Equal(before, after) {
		t.Fatalf("re-apply of the same policy changed the tables:\n%s", lineDiff(got, want))
	}

	p.Rules[7].Ports[0] = PortRange{61000, 61001}
	if res, err = e.Apply(ctx, bareBinding(nsA), p); err != nil {
		t.Fatal(err)
	}
	if res.Commit <= 0 || res.Commit > res.Duration {
		t.Errorf("one-rule edit: kernel commit %v of %v, want a part of it", res.Commit, res.Duration)
	}
	if got := nftGeneration(t, nsA); got == gen {
		t.Fatal("a rule edited in the caller's slice was not applied")
	}
	got, _ = kernelTables(t, nsA)
	if want := freshApply(t, nsB, p, addrs); got != want {
		t.Fatalf("in-place edit applied incrementally differs from a full apply:\n%s", lineDiff(got, want))
	}
}

// TestPrivilegedRuleEditInvalid requires an invalid edit of one rule to
// fail with exactly the error Validate gives and to leave the tables as
// they were.
func TestPrivilegedRuleEditInvalid(t *testing.T) {
	ns := bareNamespace(t, "a")
	e, _ := newLoggedEngine(t)
	ctx := context.Background()
	p := scalePolicy(100)
	if _, err := e.Apply(ctx, bareBinding(ns), p); err != nil {
		t.Fatal(err)
	}
	want, _ := kernelTables(t, ns)
	gen := nftGeneration(t, ns)
	for _, edit := range []func(r *Rule){
		func(r *Rule) { r.Ports = []PortRange{{0, 10}} },
		func(r *Rule) {
			r.Protocol = ProtoICMP
			r.Remote = Remote{Prefixes: []netip.Prefix{netip.MustParsePrefix("fd00::/64")}}
		},
		func(r *Rule) { r.Action = 0 },
		func(r *Rule) { r.DSCP = ptr(uint8(64)) },
		func(r *Rule) { r.Remote = Remote{AddressGroup: "missing"} },
	} {
		q := clonePolicy(p)
		edit(&q.Rules[42])
		edit(&q.Rules[43])
		_, err := e.Apply(ctx, bareBinding(ns), q)
		verr := q.Validate(KnownFrom(bareBinding(ns)))
		if err == nil || verr == nil || err.Error() != verr.Error() {
			t.Fatalf("invalid edit: Apply says %v, Validate says %v", err, verr)
		}
	}
	if got := nftGeneration(t, ns); got != gen {
		t.Fatal("invalid edits committed nftables batches")
	}
	if got, _ := kernelTables(t, ns); got != want {
		t.Fatalf("invalid edits changed the tables:\n%s", lineDiff(got, want))
	}
}

// batchSocketAt dials the engine's kind of netfilter socket in the named
// namespace; it is closed when the test ends.
func batchSocketAt(t *testing.T, name string) *mnl.Conn {
	t.Helper()
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	nl, err := dialBatchSocket(int(ns))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nl.Close() })
	return nl
}

// knownHandlesTrue checks that every chain handle list the engine holds
// for tenant blue is the kernel's, in order, and returns how many chains
// it knows.
func knownHandlesTrue(t *testing.T, e *Nftables, ns string) int {
	t.Helper()
	nl := batchSocketAt(t, ns)
	e.mu.Lock()
	defer e.mu.Unlock()
	ts := e.tenants["blue"]
	tbl := &nftables.Table{Family: ts.rs.inet.family, Name: ts.rs.inet.name}
	all, err := dumpHandles(nl, tbl, "")
	if err != nil {
		t.Fatal(err)
	}
	for ref, hs := range ts.handles {
		if !slices.Equal(hs, all[ref.name]) {
			t.Errorf("chain %s: the engine holds handles %v, the kernel %v", ref.name, hs, all[ref.name])
		}
	}
	return len(ts.handles)
}

// TestPrivilegedHandlesLearnedAfterReplace: after a full replace the
// engine learns every chain's rule handles in the background, and what
// it holds is always the kernel's, also when a change came first.
func TestPrivilegedHandlesLearnedAfterReplace(t *testing.T) {
	ns := bareNamespace(t, "h")
	e, log := newLoggedEngine(t)
	ctx := context.Background()
	p := scalePolicy(2000)
	if _, err := e.Apply(ctx, bareBinding(ns), p); err != nil {
		t.Fatal(err)
	}
	e.wg.Wait()
	e.mu.Lock()
	var withRules int
	for _, ch := range e.tenants["blue"].rs.inet.chains {
		if len(ch.rules) > 0 {
			withRules++
		}
	}
	e.mu.Unlock()
	if got := knownHandlesTrue(t, e, ns); got < withRules {
		t.Errorf("the engine knows the handles of %d chains, the inet table has %d with rules", got, withRules)
	}

	// A replace (a repair), then changes at once, racing the read.
	for i := range 5 {
		if _, err := e.apply(ctx, bareBinding(ns), p, true); err != nil {
			t.Fatal(err)
		}
		p.Rules[100*i+1].Ports = []PortRange{{uint16(61000 + i), uint16(61000 + i)}}
		if _, err := e.Apply(ctx, bareBinding(ns), p); err != nil {
			t.Fatal(err)
		}
		if !log.last() {
			t.Fatalf("change %d was not applied incrementally", i)
		}
		knownHandlesTrue(t, e, ns)
		e.wg.Wait()
		knownHandlesTrue(t, e, ns)
	}
}

// TestPrivilegedRunCountsSurvive follows the count of a rule held in a
// run (see runs.go) through what takes its elements away: an edit of the
// rule itself, its move out of the runs (a rule that logs keeps a kernel
// rule and a named counter) and back, and a full replace. The count may
// only grow, and keeps counting. Once the rule has two ports, two elements
// count it, and each sees traffic: taking them away must keep both counts,
// which the kernel reports in a message per element.
func TestPrivilegedRunCountsSurvive(t *testing.T) {
	l := newLab(t)
	e, log := newLoggedEngine(t)
	ctx := context.Background()
	if err := e.SetPortAddresses(ctx, "blue", "tap-a", []netip.Addr{netip.MustParseAddr("10.0.1.11")}); err != nil {
		t.Fatal(err)
	}
	w1, w2 := l.w["w1"], l.w["w2"]
	l.listenTCP(w1, 8080)
	l.listenTCP(w1, 8082)
	p := filterPolicy()
	// Two more rules in web-8080's run: a run holds at least minRun
	// rules, and this one must outlive web-8080's leaving it, so that
	// only web-8080's elements go.
	for _, port := range []uint16{8090, 8091} {
		p.Rules = append(p.Rules, Rule{Name: fmt.Sprintf("web-%d", port), Direction: Ingress, Target: Target{Port: "tap-a"}, Protocol: ProtoTCP,
			Ports: []PortRange{{port, port}}, Action: ActionAllow})
	}
	last := uint64(0)
	step := func(what string, q Policy, replace, merged bool) {
		t.Helper()
		first := last == 0
		if _, err := e.apply(ctx, l.binding(), q, replace); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !replace && !first && !log.last() {
			t.Fatalf("%s: not applied incrementally", what)
		}
		ruleset := l.nftList()
		if got := strings.Contains(ruleset, `comment "web-8080"`); got != merged {
			t.Fatalf("%s: web-8080 in a run: %v, want %v:\n%s", what, got, merged, ruleset)
		}
		if got := counters(t, e)["web-8080"].Packets; got < last {
			t.Fatalf("%s: web-8080 counted %d, %d before", what, got, last)
		}
		for _, pr := range q.Rules[0].Ports {
			addr := fmt.Sprintf("10.0.1.11:%d", pr.From)
			if c, err := l.dialTCP(w2, addr); err != nil || echo(c) != nil {
				t.Fatalf("%s: allowed port %s: %v", what, addr, err)
			}
		}
		got := counters(t, e)["web-8080"].Packets
		if got <= last {
			t.Fatalf("%s: web-8080 counted %d after a connection, %d before: it stopped counting", what, got, last)
		}
		last = got
	}
	step("first apply", p, false, true)
	p.Rules = slices.Clone(p.Rules)
	p.Rules[0].Ports = []PortRange{{8080, 8080}, {8082, 8082}}
	step("edit of the rule", p, false, true)
	p.Rules[0].Log = true
	step("out of the runs", p, false, false)
	p.Rules[0].Log = false
	step("back into the runs", p, false, true)
	step("full replace", p, true, true)
}
