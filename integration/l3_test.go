package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/evpnd/evpnd/integration/lab"
)

// The L3 lab test runs the l3-irb topology: three evpnd hosts route tenant
// blue (L3VNI 5000) and tenant red (L3VNI 5001) in symmetric IRB through an
// FRR route reflector, and the border host routes blue to an outside
// network. Real TCP between workload namespaces decides, next to what the
// RR holds and what the tenant namespaces' routing tables say.

// moveWithin bounds how long a moved workload may take to be reachable at
// its new host and to be withdrawn at the old one: learning, one BGP round
// trip through the RR and kernel writes, not a hold timer.
const moveWithin = 30 * time.Second

// Addresses of the l3-irb topology.
var (
	vtepBorder = netip.MustParseAddr("10.0.0.3")
	w1IP4      = netip.MustParseAddr("172.31.1.1")
	w2IP4      = netip.MustParseAddr("172.31.1.2")
	w1IP6      = netip.MustParseAddr("2001:db8:1::11")
	w2IP6      = netip.MustParseAddr("2001:db8:1::12")
	a1IP4      = netip.MustParseAddr("172.31.2.1")
	a1IP6      = netip.MustParseAddr("2001:db8:2::11")
	d2IP4      = netip.MustParseAddr("172.31.3.2")
	d2IP6      = netip.MustParseAddr("2001:db8:3::12")
	mvIP4      = netip.MustParseAddr("172.31.1.50")
	webGW4     = netip.MustParseAddr("172.31.1.254")
	extIP      = netip.MustParseAddr("198.51.100.1")
	mvMAC      = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x50}
)

// routerMAC is the router MAC evpnd derives from a router ID 10.0.0.<n>:
// 02:52 followed by the router ID's bytes.
func routerMAC(vtep netip.Addr) string {
	b := vtep.As4()
	return net.HardwareAddr{0x02, 0x52, b[0], b[1], b[2], b[3]}.String()
}

// rrPath is the part of one path in the RR's `show bgp l2vpn evpn route rd
// RD json` that the L3 checks read; Raw is the whole path as FRR printed it.
type rrPath struct {
	// VNI is FRR's rendering of the route's labels: "110/5000" for a type-2
	// carrying an L2VNI and an L3VNI.
	VNI               string `json:"vni"`
	Valid             bool   `json:"valid"`
	ExtendedCommunity struct {
		String string `json:"string"`
	} `json:"extendedCommunity"`
	Nexthops []struct {
		IP string `json:"ip"`
	} `json:"nexthops"`
	Raw json.RawMessage `json:"-"`
}

func (p rrPath) communities() []string { return strings.Fields(p.ExtendedCommunity.String) }

// rrPathFor returns the first path of prefix under rd on the RR, and the
// whole route entry as FRR printed it.
func rrPathFor(l *lab.Lab, rd, prefix string) (rrPath, json.RawMessage, error) {
	var top map[string]json.RawMessage
	if err := l.VtyshJSON("rr", "show bgp l2vpn evpn route rd "+rd+" json", &top); err != nil {
		return rrPath{}, nil, err
	}
	var prefixes map[string]json.RawMessage
	if raw, ok := top[rd]; !ok {
		return rrPath{}, nil, fmt.Errorf("rr: no routes under rd %s", rd)
	} else if err := json.Unmarshal(raw, &prefixes); err != nil {
		return rrPath{}, nil, fmt.Errorf("rr: rd %s: %w", rd, err)
	}
	raw, ok := prefixes[prefix]
	if !ok {
		have := make([]string, 0, len(prefixes))
		for k := range prefixes {
			have = append(have, k)
		}
		slices.Sort(have)
		return rrPath{}, nil, fmt.Errorf("rr: rd %s has no %s; has %v", rd, prefix, have)
	}
	var entry struct {
		Paths [][]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(raw, &entry); err != nil {
		return rrPath{}, nil, fmt.Errorf("rr: rd %s %s: %w", rd, prefix, err)
	}
	if len(entry.Paths) == 0 || len(entry.Paths[0]) == 0 {
		return rrPath{}, nil, fmt.Errorf("rr: rd %s %s: no paths", rd, prefix)
	}
	var p rrPath
	if err := json.Unmarshal(entry.Paths[0][0], &p); err != nil {
		return rrPath{}, nil, fmt.Errorf("rr: rd %s %s: path: %w", rd, prefix, err)
	}
	p.Raw = entry.Paths[0][0]
	return p, raw, nil
}

// mobilitySeq is the MAC Mobility sequence number FRR shows in a path's
// ext communities ("MM:<seq>", "MM:<seq>, sticky MAC"), 0 when absent.
func mobilitySeq(comms []string) (uint32, error) {
	for _, c := range comms {
		if v, ok := strings.CutPrefix(c, "MM:"); ok {
			n, err := strconv.ParseUint(strings.TrimSuffix(v, ","), 10, 32)
			if err != nil {
				return 0, fmt.Errorf("mac mobility community %q: %w", c, err)
			}
			return uint32(n), nil
		}
	}
	return 0, nil
}

// routeGet is `ip -j route get` in a namespace: the route the kernel picks.
type routeGet struct {
	Dst     string   `json:"dst"`
	Gateway string   `json:"gateway"`
	Dev     string   `json:"dev"`
	Flags   []string `json:"flags"`
}

func getRoute(ns string, dst netip.Addr) (routeGet, error) {
	out, err := lab.ExecNS(ns, "ip", "-j", "route", "get", dst.String())
	if err != nil {
		return routeGet{}, err
	}
	var rs []routeGet
	if err := json.Unmarshal(out, &rs); err != nil || len(rs) != 1 {
		return routeGet{}, fmt.Errorf("in %s: ip -j route get %s: %v: %s", ns, dst, err, out)
	}
	return rs[0], nil
}

// viaL3VNI checks that ns routes dst through the L3VNI bridge toward vtep,
// the symmetric-IRB path, and not by bridging or by a local subnet.
func viaL3VNI(ns string, dst, vtep netip.Addr, br string) error {
	r, err := getRoute(ns, dst)
	if err != nil {
		return err
	}
	gw := vtep.String()
	if dst.Is6() {
		gw = netip.AddrFrom16(vtep.As16()).String() // ::ffff:<vtep>
	}
	if r.Gateway != gw || r.Dev != br {
		return fmt.Errorf("in %s: route to %s is %+v, want via %s dev %s", ns, dst, r, gw, br)
	}
	return nil
}

// txPackets reads a device's transmitted packet counter in a namespace.
func txPackets(t *testing.T, ns, dev string) uint64 {
	t.Helper()
	out, err := lab.ExecNS(ns, "cat", "/sys/class/net/"+dev+"/statistics/tx_packets")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatalf("%s tx_packets in %s: %v", dev, ns, err)
	}
	return n
}

// compactJSON is FRR's indented JSON on one line, for logs.
func compactJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}

// ipCmd runs ip(8) in the test's own namespace; with -n or netns arguments
// it acts on lab namespaces only.
func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// TestPrivilegedL3IRB brings up l3-irb once for every routed-tenant check
// (one bring-up keeps CI time down). Move changes the topology, so it runs
// last; each other subtest makes its own traffic first and runs alone with
// -run.
func TestPrivilegedL3IRB(t *testing.T) {
	requireL2Lab(t)
	l := lab.Up(t, "topologies/l3-irb.clab.yml", lab.Options{})
	h1blue, h1red := l.TenantNS("host1", "blue"), l.TenantNS("host1", "red")

	// Bridged across hosts through VNI 100, both address families.
	t.Run("SameSubnetAcrossHosts", func(t *testing.T) {
		exchange(t, l, "w1", "w2", w2IP4, 6001)
		exchange(t, l, "w2", "w1", w1IP4, 6002)
		exchange(t, l, "w1", "w2", w2IP6, 6003)
		exchange(t, l, "w2", "w1", w1IP6, 6004)
	})

	// Routed between hosts in symmetric IRB: host1 reaches d2's host route
	// through br5000 toward host2's VTEP, and the frames leave through
	// vx5000 (the L3VNI), not through a segment's VXLAN device.
	t.Run("RoutedAcrossHosts", func(t *testing.T) {
		before := txPackets(t, h1blue, "vx5000")
		exchange(t, l, "a1", "d2", d2IP4, 6011)
		exchange(t, l, "d2", "a1", a1IP4, 6012)
		exchange(t, l, "a1", "d2", d2IP6, 6013)
		exchange(t, l, "d2", "a1", a1IP6, 6014)
		for _, dst := range []netip.Addr{d2IP4, d2IP6} {
			lab.Eventually(t, converge, pollEvery, func() error {
				return viaL3VNI(h1blue, dst, vtep2, "br5000")
			})
		}
		if after := txPackets(t, h1blue, "vx5000"); after <= before {
			t.Errorf("host1 blue vx5000 tx_packets %d before, %d after routed traffic to host2: symmetric IRB would send it there", before, after)
		}
		t.Logf("host1 blue vx5000 tx_packets %d -> %d", before, txPackets(t, h1blue, "vx5000"))
	})

	// Routed on one host, between two of its segments.
	t.Run("RoutedLocally", func(t *testing.T) {
		exchange(t, l, "w1", "a1", a1IP4, 6021)
		exchange(t, l, "w1", "a1", a1IP6, 6022)
		r, err := getRoute(h1blue, a1IP4)
		if err != nil {
			t.Fatal(err)
		}
		if r.Dev != "br110" || r.Gateway != "" {
			t.Errorf("host1 blue: route to a1 %s is %+v, want the connected subnet on br110", a1IP4, r)
		}
	})

	// The border's static route reaches host1 as a type-5 toward the
	// border's VTEP, and TCP flows between the outside and both hosts.
	t.Run("Border", func(t *testing.T) {
		exchange(t, l, "a1", "ext", extIP, 6031)
		exchange(t, l, "d2", "ext", extIP, 6032)
		exchange(t, l, "ext", "a1", a1IP4, 6033)
		lab.Eventually(t, converge, pollEvery, func() error {
			out, err := lab.ExecNS(h1blue, "ip", "-j", "route", "show", "198.51.100.0/24")
			if err != nil {
				return err
			}
			var rs []routeGet
			if err := json.Unmarshal(out, &rs); err != nil {
				return fmt.Errorf("host1 blue: ip -j route show 198.51.100.0/24: %w: %s", err, out)
			}
			for _, r := range rs {
				if r.Dst == "198.51.100.0/24" && r.Gateway == vtepBorder.String() && r.Dev == "br5000" {
					return nil
				}
			}
			return fmt.Errorf("host1 blue: 198.51.100.0/24 is %s, want via %s dev br5000", bytes.TrimSpace(out), vtepBorder)
		})
		lab.Eventually(t, converge, pollEvery, func() error {
			return viaL3VNI(h1blue, extIP, vtepBorder, "br5000")
		})
	})

	// What evpnd advertises, as the RR holds it: a type-2 MAC+IP with both
	// RTs, the router MAC and both labels (L2VNI/L3VNI), and a type-5 with
	// the L3VNI's RT, the router MAC and no gateway IP.
	t.Run("RRView", func(t *testing.T) {
		exchange(t, l, "a1", "d2", d2IP4, 6041)
		a1MAC := workloadMAC(t, l, "a1")
		rmac := "Rmac:" + routerMAC(vtep1)
		macIP := fmt.Sprintf("[2]:[0]:[48]:[%s]:[32]:[%s]", a1MAC, a1IP4)
		var raw2, raw5 json.RawMessage
		lab.Eventually(t, converge, pollEvery, func() error {
			p, raw, err := rrPathFor(l, "10.0.0.1:110", macIP)
			if err != nil {
				return err
			}
			raw2 = raw
			var errs []error
			for _, c := range []string{"RT:65000:110", "RT:65000:5000", rmac, "ET:8"} {
				if !slices.Contains(p.communities(), c) {
					errs = append(errs, fmt.Errorf("lacks %s", c))
				}
			}
			if p.VNI != "110/5000" {
				errs = append(errs, fmt.Errorf("labels %q, want 110/5000", p.VNI))
			}
			if !p.Valid || len(p.Nexthops) == 0 || p.Nexthops[0].IP != vtep1.String() {
				errs = append(errs, fmt.Errorf("valid %v next hops %+v, want valid via %s", p.Valid, p.Nexthops, vtep1))
			}
			if err := errors.Join(errs...); err != nil {
				return fmt.Errorf("rr: a1's type-2 %s: %w; path %s", macIP, err, p.Raw)
			}
			return nil
		})
		const t5 = "[5]:[0]:[24]:[172.31.2.0]"
		lab.Eventually(t, converge, pollEvery, func() error {
			p, raw, err := rrPathFor(l, "10.0.0.1:5000", t5)
			if err != nil {
				return err
			}
			raw5 = raw
			var errs []error
			for _, c := range []string{"RT:65000:5000", rmac, "ET:8"} {
				if !slices.Contains(p.communities(), c) {
					errs = append(errs, fmt.Errorf("lacks %s", c))
				}
			}
			if slices.ContainsFunc(p.communities(), func(c string) bool {
				return strings.HasPrefix(c, "RT:") && c != "RT:65000:5000"
			}) {
				errs = append(errs, fmt.Errorf("carries an RT other than RT:65000:5000"))
			}
			if p.VNI != "5000" {
				errs = append(errs, fmt.Errorf("label %q, want 5000", p.VNI))
			}
			// FRR prints the gateway IP only when it is not zero.
			var fields map[string]json.RawMessage
			if err := json.Unmarshal(p.Raw, &fields); err != nil {
				return err
			}
			for k, v := range fields {
				if strings.Contains(strings.ToLower(k), "gateway") && string(v) != `"0.0.0.0"` {
					errs = append(errs, fmt.Errorf("%s %s, want 0.0.0.0", k, v))
				}
			}
			if err := errors.Join(errs...); err != nil {
				return fmt.Errorf("rr: host1's type-5 %s: %w; path %s", t5, err, p.Raw)
			}
			return nil
		})
		t.Logf("rr: type-2 MAC+IP as host1 advertises it (rd 10.0.0.1:110): %s", compactJSON(raw2))
		t.Logf("rr: type-5 as host1 advertises it (rd 10.0.0.1:5000): %s", compactJSON(raw5))
	})

	// Two tenants with the same subnets and addresses on the same hosts:
	// each reaches its own 172.31.3.2 only, and the RR carries each
	// tenant's routes under its own route targets.
	t.Run("Isolation", func(t *testing.T) {
		const port = 6051
		for _, n := range []string{"d2", "rd2"} {
			s, err := lab.ListenEcho(l.NS(n), d2IP4, port)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
		}
		for _, c := range []struct{ from, want, other string }{{"ra1", "rd2", "d2"}, {"a1", "d2", "rd2"}} {
			dial := func() error {
				banner, err := lab.DialEcho(l.NS(c.from), d2IP4, port)
				if err != nil {
					return err
				}
				if banner == l.NS(c.other) {
					t.Fatalf("isolation broken: %s reached %s at %s", c.from, c.other, d2IP4)
				}
				if banner != l.NS(c.want) {
					return fmt.Errorf("%s -> %s: answered by %q, want %s", c.from, d2IP4, banner, l.NS(c.want))
				}
				return nil
			}
			lab.Eventually(t, converge, pollEvery, dial)
			for range 10 {
				if err := dial(); err != nil {
					t.Fatal(err)
				}
			}
		}
		lab.Eventually(t, converge, pollEvery, func() error {
			return viaL3VNI(h1red, d2IP4, vtep2, "br5001")
		})

		red := []string{"RT:65000:111", "RT:65000:121", "RT:65000:5001"}
		blue := []string{"RT:65000:100", "RT:65000:110", "RT:65000:120", "RT:65000:130", "RT:65000:5000"}
		ra1MAC := workloadMAC(t, l, "ra1")
		// Red's routes are there before the absence of leaks is judged.
		lab.Eventually(t, converge, pollEvery, func() error {
			return hasRoute(l, "rr", func(r lab.EVPNRoute) bool {
				return r.Type == 2 && bytes.Equal(r.MAC, ra1MAC) && r.IP == a1IP4 && r.NextHop == vtep1 &&
					r.HasExtCommunity("RT:65000:111") && r.HasExtCommunity("RT:65000:5001")
			}, "red type-2 MAC+IP for ra1 with RT:65000:111 RT:65000:5001")
		})
		lab.Eventually(t, converge, pollEvery, func() error {
			return hasRoute(l, "rr", func(r lab.EVPNRoute) bool {
				return r.Type == 5 && r.RD == "10.0.0.2:5001" && r.Prefix == "[5]:[0]:[24]:[172.31.3.0]" &&
					r.HasExtCommunity("RT:65000:5001")
			}, "red type-5 172.31.3.0/24 from host2 with RT:65000:5001")
		})
		routes, err := l.EVPNRoutes("rr")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range routes {
			isRed := slices.ContainsFunc(red, r.HasExtCommunity)
			isBlue := slices.ContainsFunc(blue, r.HasExtCommunity)
			if isRed == isBlue {
				t.Errorf("rr: %s %s carries red RT %v, blue RT %v: %v", r.RD, r.Prefix, isRed, isBlue, r.ExtCommunities)
			}
		}
	})

	// mv moves from host1 to host2 as a live migration does: it appears
	// on host2 (tap-mv, already in host2's config) and speaks there while
	// its old port on host1 still exists, then the old port goes. host2
	// must advertise it with a higher MAC Mobility sequence number, host1
	// must withdraw, and mv must be reachable at its new place, routed and
	// bridged.
	t.Run("Move", func(t *testing.T) {
		mvNS := l.NS("mv")
		srv, err := lab.ListenEcho(mvNS, mvIP4, 6061)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		reach := func(from string) func() error {
			return func() error {
				banner, err := lab.DialEcho(l.NS(from), mvIP4, 6061)
				if err != nil {
					return err
				}
				if banner != mvNS {
					return fmt.Errorf("%s -> mv %s: answered by %q", from, mvIP4, banner)
				}
				return nil
			}
		}
		mvRoutes := func(vtep netip.Addr) ([]lab.EVPNRoute, error) {
			routes, err := l.EVPNRoutes("rr")
			if err != nil {
				return nil, err
			}
			var out []lab.EVPNRoute
			for _, r := range routes {
				if r.Type == 2 && bytes.Equal(r.MAC, mvMAC) && r.NextHop == vtep {
					out = append(out, r)
				}
			}
			return out, nil
		}

		// At host1: reachable routed (a1) and bridged (w2), and advertised
		// by host1 with MAC and MAC+IP.
		lab.Eventually(t, converge, pollEvery, reach("a1"))
		lab.Eventually(t, converge, pollEvery, reach("w2"))
		var lastSeq uint32
		lab.Eventually(t, converge, pollEvery, func() error {
			rs, err := mvRoutes(vtep1)
			if err != nil {
				return err
			}
			if !slices.ContainsFunc(rs, func(r lab.EVPNRoute) bool { return r.IP == mvIP4 }) {
				return fmt.Errorf("rr: no type-2 MAC+IP for mv %s %s from host1; host1's for it: %+v", mvMAC, mvIP4, rs)
			}
			lastSeq = 0
			for _, r := range rs {
				seq, err := mobilitySeq(r.ExtCommunities)
				if err != nil {
					return err
				}
				lastSeq = max(lastSeq, seq)
			}
			return nil
		})
		t.Logf("mv at host1: highest MAC Mobility sequence number %d", lastSeq)

		// eth1 must really be silent once mv has moved: a frame from mv's
		// MAC there (IPv6 neighbor discovery, say) is mv showing up on
		// host1 again, which host1 rightly takes back with a higher
		// sequence number. Turning IPv6 off sends its last frames now,
		// before the move.
		if out, err := lab.ExecNS(mvNS, "sysctl", "-qw", "net.ipv6.conf.eth1.disable_ipv6=1"); err != nil {
			t.Fatalf("silence eth1: %v: %s", err, out)
		}
		// Nor may it answer ARP for mv's address, which Linux does on any
		// interface by default (host1's gateway asks on its segment).
		if err := ipCmd("-n", mvNS, "link", "set", "eth1", "arp", "off"); err != nil {
			t.Fatal(err)
		}

		// The new port: eth2 in mv with mv's MAC, tap-mv in host2's
		// namespace, where evpnd picks it up by name. mv's address moves to
		// eth2; eth1 stays up but silent, so host1 still holds the MAC.
		if err := ipCmd("link", "add", "eth2", "netns", mvNS, "address", mvMAC.String(),
			"type", "veth", "peer", "name", "tap-mv", "netns", l.NS("host2")); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			{"-n", mvNS, "addr", "del", mvIP4.String() + "/24", "dev", "eth1"},
			{"-n", mvNS, "link", "set", "eth2", "up"},
			{"-n", mvNS, "addr", "add", mvIP4.String() + "/24", "dev", "eth2"},
			{"-n", mvNS, "route", "replace", "default", "via", webGW4.String(), "dev", "eth2"},
		} {
			if err := ipCmd(args...); err != nil {
				t.Fatal(err)
			}
		}
		lab.Eventually(t, moveWithin, pollEvery, func() error {
			if err := lab.Knock(mvNS, webGW4); err != nil {
				return err
			}
			rs, err := mvRoutes(vtep2)
			if err != nil {
				return err
			}
			var macOnly, macIP bool
			for _, r := range rs {
				seq, err := mobilitySeq(r.ExtCommunities)
				if err != nil {
					return err
				}
				if seq <= lastSeq {
					return fmt.Errorf("rr: host2's %s %s has MAC Mobility sequence %d, host1's last was %d: %v", r.RD, r.Prefix, seq, lastSeq, r.ExtCommunities)
				}
				macOnly = macOnly || !r.IP.IsValid()
				macIP = macIP || r.IP == mvIP4
			}
			if !macOnly || !macIP {
				return fmt.Errorf("rr: host2 does not advertise both mv's MAC and MAC+IP %s yet: %+v", mvIP4, rs)
			}
			return nil
		})
		// host1 withdraws because host2's sequence number is higher: its
		// port for mv still exists.
		lab.Eventually(t, moveWithin, pollEvery, func() error {
			rs, err := mvRoutes(vtep1)
			if err != nil {
				return err
			}
			if len(rs) > 0 {
				return fmt.Errorf("rr: host1 still advertises mv after host2 took it over with a higher sequence number: %+v", rs)
			}
			return nil
		})

		// The old port goes; mv lives on host2 only.
		if err := ipCmd("-n", mvNS, "link", "del", "eth1"); err != nil {
			t.Fatal(err)
		}
		lab.Eventually(t, moveWithin, pollEvery, reach("a1"))
		lab.Eventually(t, moveWithin, pollEvery, reach("w2"))
		if err := lab.Poll(moveWithin, pollEvery, func() error { return viaL3VNI(h1blue, mvIP4, vtep2, "br5000") }); err != nil {
			for _, c := range [][]string{{"ip", "neigh"}, {"ip", "route"}, {"bridge", "fdb", "show", "br", "br100"}} {
				out, _ := lab.ExecNS(h1blue, c...)
				t.Logf("host1 %v:\n%s", c, out)
			}
			out, _ := l.Evpnctl("host1", "show", "evpn", "routes", "--mac", mvMAC.String())
			t.Logf("host1 routes for mv:\n%s", out)
			t.Fatal(err)
		}
		rs, err := mvRoutes(vtep1)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) > 0 {
			t.Errorf("rr: host1 advertises mv again after its port went: %+v", rs)
		}
		if rs, err = mvRoutes(vtep2); err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			t.Logf("rr: mv after the move: %s %s nh %s %v", r.RD, r.Prefix, r.NextHop, r.ExtCommunities)
		}
	})
}
