package policy

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata")

func u8(v uint8) *uint8 { return &v }

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ip(s string) netip.Addr    { return netip.MustParseAddr(s) }

func testBinding() Binding {
	return Binding{
		Tenant:    "blue",
		Namespace: "evpn-blue",
		Segments: []SegmentBinding{
			{Name: "web", Bridge: "br100", Ports: []string{"tap-a", "tap-b"}},
			{Name: "db", Bridge: "br200", Ports: []string{"tap-c"}},
		},
		Uplink: "up0",
	}
}

func TestCompileGolden(t *testing.T) {
	addrs := map[string][]netip.Addr{
		"tap-a": {ip("10.0.1.11"), ip("fd00:1::11")},
		"tap-b": {ip("10.0.1.12")},
		"tap-c": {ip("10.0.2.21")},
	}
	tests := []struct {
		name string
		p    Policy
	}{
		{"minimal", Policy{
			Tenant: "blue",
			Rules: []Rule{{Name: "ssh", Direction: Ingress, Target: Target{Port: "tap-a"},
				Protocol: ProtoTCP, Ports: []PortRange{{22, 22}}, Action: ActionAllow}},
			Segments: []SegmentDefault{{Segment: "web", Ingress: ActionDeny}},
		}},
		{"full", Policy{
			Tenant:        "blue",
			AddressGroups: []AddressGroup{{Name: "office", Prefixes: []netip.Prefix{pfx("192.0.2.0/25"), pfx("192.0.2.128/25"), pfx("2001:db8::/32")}}},
			PortGroups:    []PortGroup{{Name: "web", Ports: []string{"tap-a", "tap-b"}}},
			Segments:      []SegmentDefault{{Segment: "web", Ingress: ActionDeny, Egress: ActionAllow}, {Segment: "db", Ingress: ActionReject}},
			Rules: []Rule{
				{Name: "http", Priority: 10, Direction: Ingress, Target: Target{PortGroup: "web"}, Protocol: ProtoTCP,
					Ports: []PortRange{{80, 80}, {443, 443}, {8000, 8099}}, Action: ActionAllow, DSCP: u8(46), Class: "gold"},
				{Name: "office-ssh", Priority: 5, Direction: Ingress, Target: Target{Port: "tap-a"}, Remote: Remote{AddressGroup: "office"},
					Protocol: ProtoTCP, Ports: []PortRange{{22, 22}}, Action: ActionAllow, Log: true},
				{Name: "ping", Priority: 20, Direction: Ingress, Target: Target{Segment: "web"}, Protocol: ProtoICMP,
					ICMPTypes: []uint8{8}, Action: ActionAllow},
				{Name: "no-smtp", Priority: 1, Direction: Egress, Target: Target{Segment: "web"},
					Remote: Remote{Prefixes: []netip.Prefix{pfx("0.0.0.0/0"), pfx("::/0")}}, Protocol: ProtoTCP, Ports: []PortRange{{25, 25}}, Action: ActionReject},
				{Name: "db-from-web", Direction: Ingress, Target: Target{Port: "tap-c"}, Remote: Remote{Prefixes: []netip.Prefix{pfx("10.0.1.0/24")}},
					Protocol: ProtoTCP, Ports: []PortRange{{5432, 5432}}, Action: ActionAllow},
				{Name: "block-bad", Direction: Egress, Target: Target{Port: "tap-b"}, Remote: Remote{Prefixes: []netip.Prefix{pfx("198.51.100.7/32")}}, Action: ActionReject},
			},
			QoS: []PortQoS{
				{Port: "tap-a", EgressRate: 100e6, Classes: []Class{{Name: "gold", Rate: 50e6}}, IngressRate: 80e6},
				{Port: "tap-b", EgressRate: 100e6, Classes: []Class{{Name: "gold", Rate: 20e6}}},
			},
			NAT: &NAT{SNAT: ip("203.0.113.1"),
				FloatingIPs:  []FloatingIP{{External: ip("203.0.113.10"), Internal: ip("10.0.1.11")}},
				PortForwards: []PortForward{{External: ip("203.0.113.1"), Protocol: ProtoTCP, Port: 2222, Internal: ip("10.0.2.21"), InternalPort: 22}}},
		}},
		{"lists", elementPolicy()},
		{"runs", runsPolicy()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := testBinding()
			if err := tt.p.Validate(KnownFrom(b)); err != nil {
				t.Fatalf("validate: %v", err)
			}
			rs, err := Compile(tt.p, b, addrs)
			if err != nil {
				t.Fatal(err)
			}
			got := rs.String()
			path := filepath.Join("testdata", tt.name+".nft")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if got != string(want) {
				t.Errorf("compiled ruleset differs from %s (run with -update to accept):\n%s", path, got)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	k := KnownFrom(testBinding())
	tests := []struct {
		name string
		p    Policy
		want []string // substrings, one per expected problem
	}{
		{"valid", Policy{Tenant: "blue", Rules: []Rule{{Name: "a", Direction: Ingress, Target: Target{Port: "tap-a"}, Action: ActionAllow}}}, nil},
		{"unknown port", Policy{Tenant: "blue", Rules: []Rule{{Name: "a", Direction: Ingress, Target: Target{Port: "tap-x"}, Action: ActionAllow}}},
			[]string{`rules[0].target.port: "tap-x" is not a port of any segment of tenant blue`}},
		{"many problems", Policy{Tenant: "blue",
			PortGroups: []PortGroup{{Name: "g", Ports: []string{"tap-a", "tap-a"}}},
			Rules: []Rule{
				{Name: "a", Direction: Ingress, Target: Target{Port: "tap-a", Segment: "web"}, Action: ActionAllow},
				{Name: "a", Direction: 9, Target: Target{PortGroup: "nope"}, Protocol: ProtoICMP, Ports: []PortRange{{10, 5}}, Action: ActionAllow},
				{Name: "b c", Direction: Egress, Target: Target{Segment: "web"}, Protocol: ProtoTCP, ICMPTypes: []uint8{8}, DSCP: u8(64), Action: ActionDeny},
				{Name: "d", Priority: -1, Direction: Egress, Target: Target{Port: "tap-a"}, Class: "gold", Action: ActionAllow},
			},
			QoS: []PortQoS{{Port: "tap-a", EgressRate: 10, Classes: []Class{{Name: "x", Rate: 20}, {Name: "x", Rate: 1}}}, {Port: "tap-z"}},
			NAT: &NAT{Masquerade: true, SNAT: ip("192.0.2.1"),
				FloatingIPs:  []FloatingIP{{External: ip("192.0.2.5"), Internal: ip("10.0.1.11")}, {External: ip("192.0.2.5"), Internal: ip("fd00::1")}},
				PortForwards: []PortForward{{External: ip("192.0.2.6"), Protocol: ProtoICMP, Port: 22, Internal: ip("10.0.1.11")}}},
		}, []string{
			`portGroups[0].ports[1]: "tap-a" is listed twice`,
			`rules[0].target`,
			`rules[1].name: "a" is used by another rule`,
			`rules[1].direction: 9`,
			`rules[1].target.portGroup: "nope"`,
			`rules[1].ports: [{10 5}] need protocol tcp or udp, not icmp`,
			`rules[1].ports[0]: 10-5 must satisfy 0 < from <= to`,
			`rules[2].name: "b c" is not a valid name`,
			`rules[2].icmpTypes`,
			`rules[2].dscp: 64 is out of range 0..63`,
			`rules[2].dscp: 64 is only allowed on allow rules`,
			`rules[3].priority: -1 is negative`,
			`rules[3].class: "gold" is only allowed on ingress rules`,
			`rules[3].class: "gold" is not a class of port tap-a`,
			`qos[0].classes[0].rate: 20 exceeds the port's egress rate 10`,
			`qos[0].classes[1].name: "x" is used by another class of the port`,
			`qos[0].classes: 21 rates sum above`,
			`qos[1].port: "tap-z" is not a port`,
			`nat.snat: 192.0.2.1 is set together with masquerade`,
			`nat.floatingIPs[1].external: 192.0.2.5 is used by another floating IP`,
			`nat.floatingIPs[1].internal: fd00::1 is not of the external address's family`,
			`nat.portForwards[0].protocol: icmp must be tcp or udp`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate(k)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("want *ValidationError, got %v", err)
			}
			var got []string
			for _, p := range ve.Problems {
				got = append(got, p.String())
			}
			for _, w := range tt.want {
				found := false
				for _, g := range got {
					if strings.Contains(g, w) {
						found = true
					}
				}
				if !found {
					t.Errorf("missing problem %q in:\n%s", w, strings.Join(got, "\n"))
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("got %d problems, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
		})
	}
}

// elementPolicy has one rule per way the compiler matches an element
// list without anonymous sets: one prefix (mask), an address range that
// is no prefix, a port range (range), a prefix-shaped port range (mask),
// lists split across kernel rules, and lists too long to split, held in
// named sets of their rule.
func elementPolicy() Policy {
	return Policy{
		Tenant:   "blue",
		Segments: []SegmentDefault{{Segment: "web", Ingress: ActionDeny}},
		Rules: []Rule{
			{Name: "near", Direction: Ingress, Target: Target{Port: "tap-a"}, Remote: Remote{Prefixes: []netip.Prefix{pfx("10.0.1.0/28")}},
				Protocol: ProtoTCP, Ports: []PortRange{{8100, 8150}}, Action: ActionAllow},
			{Name: "span", Priority: 1, Direction: Ingress, Target: Target{Port: "tap-a"},
				Remote:   Remote{Prefixes: []netip.Prefix{pfx("10.0.1.11/32"), pfx("10.0.1.12/31")}},
				Protocol: ProtoTCP, Ports: []PortRange{{8192, 8207}}, Action: ActionAllow},
			{Name: "split", Priority: 2, Direction: Ingress, Target: Target{Port: "tap-a"},
				Protocol: ProtoTCP, Ports: []PortRange{{9001, 9001}, {9003, 9003}, {9005, 9005}}, Action: ActionAllow},
			{Name: "set", Priority: 3, Direction: Ingress, Target: Target{Port: "tap-a"},
				Remote: Remote{Prefixes: []netip.Prefix{pfx("10.0.2.0/24"), pfx("10.0.3.0/24"), pfx("10.0.5.0/24"), pfx("10.0.7.0/24"),
					pfx("10.0.9.0/24"), pfx("10.0.11.0/24"), pfx("fd00:9::/64")}},
				Protocol: ProtoTCP, Ports: []PortRange{{9101, 9101}, {9103, 9103}, {9105, 9105}, {9107, 9107}, {9109, 9109}, {9111, 9111}},
				Action: ActionAllow},
			{Name: "pings", Priority: 4, Direction: Ingress, Target: Target{Port: "tap-a"},
				Remote:   Remote{Prefixes: []netip.Prefix{pfx("10.0.1.12/32"), pfx("10.0.2.21/32")}},
				Protocol: ProtoICMP, ICMPTypes: []uint8{8, 13}, Action: ActionAllow},
		},
	}
}

func TestSpans(t *testing.T) {
	hex := func(spans []keySpan) []string {
		var out []string
		for _, sp := range spans {
			out = append(out, fmt.Sprintf("%x-%x %s", sp.from, sp.to, sp.text))
		}
		return out
	}
	tests := []struct {
		name string
		got  []keySpan
		want []string
	}{
		{"prefixes merge", prefixSpans(fam4, []netip.Prefix{pfx("192.0.2.0/25"), pfx("192.0.2.128/25"), pfx("2001:db8::/32")}),
			[]string{"c0000200-c00002ff 192.0.2.0/24"}},
		{"address range", prefixSpans(fam4, []netip.Prefix{pfx("10.0.1.12/31"), pfx("10.0.1.11/32")}),
			[]string{"0a00010b-0a00010d 10.0.1.11-10.0.1.13"}},
		{"v6 only", prefixSpans(fam6, []netip.Prefix{pfx("10.0.0.0/8"), pfx("::/0")}),
			[]string{"00000000000000000000000000000000-ffffffffffffffffffffffffffffffff ::/0"}},
		{"ports", portSpans([]PortRange{{443, 443}, {80, 80}, {81, 90}, {8000, 8099}}),
			[]string{"0050-005a 80-90", "01bb-01bb 443", "1f40-1fa3 8000-8099"}},
		{"icmp types", icmpTypeSpans([]uint8{136, 133, 134, 135, 8, 8}),
			[]string{"08-08 8", "85-88 133-136"}},
	}
	for _, tt := range tests {
		if got := hex(tt.got); strings.Join(got, "; ") != strings.Join(tt.want, "; ") {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestPrefixMask(t *testing.T) {
	tests := []struct {
		from, to []byte
		mask     string // hex, empty: not a prefix
	}{
		{[]byte{10, 0, 1, 0}, []byte{10, 0, 1, 255}, "ffffff00"},
		{[]byte{10, 0, 1, 11}, []byte{10, 0, 1, 13}, ""},
		{[]byte{0, 0, 0, 0}, []byte{255, 255, 255, 255}, "00000000"},
		{[]byte{0x20, 0x00}, []byte{0x20, 0x0f}, "fff0"},
		{[]byte{0x1f, 0x40}, []byte{0x1f, 0xa3}, ""},
		{[]byte{0x20, 0x01}, []byte{0x20, 0x0f}, ""},
	}
	for _, tt := range tests {
		mask, ok := prefixMask(tt.from, tt.to)
		got := ""
		if ok {
			got = fmt.Sprintf("%x", mask)
		}
		if got != tt.mask {
			t.Errorf("prefixMask(%x, %x) = %q, want %q", tt.from, tt.to, got, tt.mask)
		}
	}
}

// TestValidName holds the hand-written name check to the regexp that
// documents it.
func TestValidName(t *testing.T) {
	for _, n := range []string{
		"", "a", "A0", "_a", "a_", "a.b-c", "-a", ".a", "a b", "é", "a\n",
		strings.Repeat("a", 63), strings.Repeat("a", 64),
	} {
		if got, want := validName(n), nameRE.MatchString(n); got != want {
			t.Errorf("validName(%q) = %v, want %v", n, got, want)
		}
	}
}

// runsPolicy has rules that merge into runs of every kind (see runs.go),
// a rule that overlaps an earlier one and keeps its kernel rule, and a
// run too short to be kept.
func runsPolicy() Policy {
	in := func(name string, prio int, proto Protocol, ports []PortRange, remote Remote, a Action) Rule {
		return Rule{Name: name, Priority: prio, Direction: Ingress, Target: Target{Port: "tap-a"}, Protocol: proto, Ports: ports, Remote: remote, Action: a}
	}
	one := func(p uint16) []PortRange { return []PortRange{{p, p}} }
	nets := Remote{Prefixes: []netip.Prefix{pfx("192.0.2.0/24"), pfx("2001:db8::/48")}}
	office := Remote{AddressGroup: "office"}
	return Policy{
		Tenant:        "blue",
		AddressGroups: []AddressGroup{{Name: "office", Prefixes: []netip.Prefix{pfx("198.51.100.0/24"), pfx("2001:db8:1::/48")}}},
		Rules: []Rule{
			in("http", 1, ProtoTCP, one(80), Remote{}, ActionAllow),
			in("https", 2, ProtoTCP, one(443), Remote{}, ActionAllow),
			in("dns", 3, ProtoUDP, []PortRange{{53, 53}, {5353, 5353}}, Remote{}, ActionAllow),
			in("ssh-nets", 4, ProtoTCP, one(22), nets, ActionAllow),
			in("git-nets", 5, ProtoTCP, []PortRange{{9418, 9420}}, nets, ActionAllow),
			in("db-office", 6, ProtoTCP, one(5432), office, ActionAllow),
			in("ldap-office", 7, ProtoTCP, one(389), office, ActionAllow),
			in("no-telnet", 8, ProtoTCP, one(23), Remote{}, ActionReject),
			in("no-rsh", 9, ProtoTCP, one(514), Remote{}, ActionReject),
			in("no-tftp", 10, ProtoUDP, one(69), Remote{}, ActionDeny),
			in("no-snmp", 11, ProtoUDP, one(161), Remote{}, ActionDeny),
			{Name: "ping", Priority: 12, Direction: Ingress, Target: Target{Port: "tap-a"}, Protocol: ProtoICMP, ICMPTypes: []uint8{8}, Action: ActionAllow},
			{Name: "ts", Priority: 13, Direction: Ingress, Target: Target{Port: "tap-a"}, Protocol: ProtoICMP, ICMPTypes: []uint8{13}, Action: ActionAllow},
			// Overlaps http: keeps its kernel rule, after the runs.
			in("http-nets", 14, ProtoTCP, []PortRange{{80, 81}}, nets, ActionDeny),
			// Alone in its run (udp reject): keeps its kernel rule.
			in("no-syslog", 15, ProtoUDP, one(514), Remote{}, ActionReject),
		},
	}
}
