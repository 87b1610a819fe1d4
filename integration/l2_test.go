package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/evpnd/evpnd/integration/lab"
)

// The L2 lab tests run evpnd (bin/evpnd) next to FRR in the lab topologies
// and decide by real TCP traffic between workload namespaces, by what the
// FRR route reflector holds, by what evpnd reports over its API and by the
// kernel FDB of every host.

// evpndBin is bin/evpnd as seen from the integration package directory,
// where go test runs.
const evpndBin = "../bin/evpnd"

// withdrawWithin bounds how long a withdrawn MAC may linger anywhere in the
// fabric: BGP withdraw plus kernel FDB removal, not a hold timer.
const withdrawWithin = 30 * time.Second

// The VTEPs and workload addresses of the L2 topologies.
var (
	vtep1  = netip.MustParseAddr("10.0.0.1")
	vtep2  = netip.MustParseAddr("10.0.0.2")
	vtep3  = netip.MustParseAddr("10.0.0.3")
	rrAddr = netip.MustParseAddr("10.0.0.254")
	wlIP1  = netip.MustParseAddr("172.31.1.1")
	wlIP2  = netip.MustParseAddr("172.31.1.2")
	wlIP3  = netip.MustParseAddr("172.31.1.3")
)

// requireL2Lab skips unless the machine can run a lab with evpnd in it.
func requireL2Lab(t *testing.T) {
	t.Helper()
	requireLab(t)
	if _, err := os.Stat(evpndBin); err != nil {
		t.Skipf("L2 lab tests need bin/evpnd (%v): run make build", err)
	}
}

// exchange waits until TCP from one workload to another works.
func exchange(t *testing.T, l *lab.Lab, from, to string, toIP netip.Addr, port uint16) {
	t.Helper()
	lab.Eventually(t, converge, pollEvery, func() error {
		return lab.TCPExchange(t, l.NS(from), l.NS(to), toIP, port)
	})
}

// workloadMAC is the MAC of a workload's eth1, the address its frames carry
// into the fabric.
func workloadMAC(t *testing.T, l *lab.Lab, node string) net.HardwareAddr {
	t.Helper()
	out, err := l.Exec(node, "cat", "/sys/class/net/eth1/address")
	if err != nil {
		t.Fatal(err)
	}
	mac, err := net.ParseMAC(string(bytes.TrimSpace(out)))
	if err != nil {
		t.Fatalf("%s eth1 address: %v", node, err)
	}
	return mac
}

// tenantFDB lists the forwarding entries of bridge br in an evpnd node's
// tenant namespace.
func tenantFDB(l *lab.Lab, node, tenant, br string) ([]lab.FDBEntry, error) {
	return lab.FDB(l.TenantNS(node, tenant), br)
}

// entriesFor returns the FDB entries for mac.
func entriesFor(entries []lab.FDBEntry, mac net.HardwareAddr) []lab.FDBEntry {
	var out []lab.FDBEntry
	for _, e := range entries {
		if m, err := net.ParseMAC(e.MAC); err == nil && bytes.Equal(m, mac) {
			out = append(out, e)
		}
	}
	return out
}

// remoteEntry checks that a control plane installed mac toward vtep: an
// extern_learn entry whose VXLAN destination is vtep.
func remoteEntry(where string, entries []lab.FDBEntry, mac net.HardwareAddr, vtep netip.Addr) error {
	mine := entriesFor(entries, mac)
	for _, e := range mine {
		if e.ExternLearn() && e.Dst == vtep.String() {
			return nil
		}
	}
	return fmt.Errorf("%s: no extern_learn entry for %s with dst %s; entries for it: %+v", where, mac, vtep, mine)
}

// noEntry checks that no FDB entry of any kind exists for mac.
func noEntry(where string, entries []lab.FDBEntry, mac net.HardwareAddr) error {
	if mine := entriesFor(entries, mac); len(mine) > 0 {
		return fmt.Errorf("%s: still holds %s: %+v", where, mac, mine)
	}
	return nil
}

// ctlRoute, ctlMAC and ctlPeer are the parts of evpnctl's JSON the tests
// read (see cmd/evpnctl/testdata/*.json.golden).
type ctlRoute struct {
	Type         string   `json:"type"`
	RD           string   `json:"rd"`
	MAC          string   `json:"mac"`
	NextHop      string   `json:"next_hop"`
	RouteTargets []string `json:"route_targets"`
	Peer         string   `json:"peer"`
	Local        bool     `json:"local"`
}

type ctlMAC struct {
	Tenant string `json:"tenant"`
	VNI    uint32 `json:"vni"`
	MAC    string `json:"mac"`
	Port   string `json:"port"`
	VTEP   string `json:"vtep"`
	Remote bool   `json:"remote"`
}

type ctlPeer struct {
	Address string `json:"address"`
	ASN     uint32 `json:"asn"`
	State   string `json:"state"`
}

func sameMAC(s string, mac net.HardwareAddr) bool {
	m, err := net.ParseMAC(s)
	return err == nil && bytes.Equal(m, mac)
}

// evpndMAC checks evpnctl's MAC table on node for one entry matching want.
func evpndMAC(l *lab.Lab, node string, match func(ctlMAC) bool, what string) error {
	var out struct {
		MACs []ctlMAC `json:"macs"`
	}
	if err := l.EvpnctlJSON(node, &out, "show", "evpn", "macs"); err != nil {
		return err
	}
	if slices.ContainsFunc(out.MACs, match) {
		return nil
	}
	return fmt.Errorf("%s: evpnctl show evpn macs: no %s; have %+v", node, what, out.MACs)
}

// rrType2 and rrType3 match the RR's paths of one host's routes in VNI 100
// of the l2 labs: right next hop, RT and encapsulation, RD of that host.
func rrType2(mac net.HardwareAddr, vtep netip.Addr, rt string) func(lab.EVPNRoute) bool {
	return func(r lab.EVPNRoute) bool {
		return r.Type == 2 && bytes.Equal(r.MAC, mac) && r.NextHop == vtep && r.Valid &&
			strings.HasPrefix(r.RD, vtep.String()+":") &&
			r.HasExtCommunity(rt) && r.HasExtCommunity("ET:8")
	}
}

func rrType3(vtep netip.Addr, rt string) func(lab.EVPNRoute) bool {
	return func(r lab.EVPNRoute) bool {
		return r.Type == 3 && r.IP == vtep && r.NextHop == vtep && r.Valid &&
			strings.HasPrefix(r.RD, vtep.String()+":") &&
			r.HasExtCommunity(rt) && r.HasExtCommunity("ET:8")
	}
}

// TestPrivilegedL2FabricRR runs the l2-evpn lab once for three checks (one
// bring-up keeps CI time down): evpnd hosts through an FRR route reflector,
// interop with an FRR EVPN host, and withdrawal of a MAC whose port goes
// away. Withdrawal destroys vm1's link, so it runs last; each subtest
// establishes its own preconditions, so any one runs alone with -run.
func TestPrivilegedL2FabricRR(t *testing.T) {
	requireL2Lab(t)
	l := lab.Up(t, "topologies/l2-evpn.clab.yml", lab.Options{})
	vm1, vm2, vm3 := workloadMAC(t, l, "vm1"), workloadMAC(t, l, "vm2"), workloadMAC(t, l, "vm3")

	// Two evpnd hosts carry TCP both ways through the FRR RR; the RR holds
	// both hosts' type-2 and type-3 as evpnd encodes them, and evpnd
	// reports the remote MAC, the local MAC and the RR session.
	t.Run("TwoHostsRR", func(t *testing.T) {
		exchange(t, l, "vm1", "vm2", wlIP2, 5001)
		exchange(t, l, "vm2", "vm1", wlIP1, 5002)
		for _, h := range []struct {
			vm   string
			mac  net.HardwareAddr
			vtep netip.Addr
		}{{"vm1", vm1, vtep1}, {"vm2", vm2, vtep2}} {
			lab.Eventually(t, converge, pollEvery, func() error {
				return hasRoute(l, "rr", rrType2(h.mac, h.vtep, "RT:65000:100"),
					fmt.Sprintf("type-2 for %s %s via %s with RT:65000:100 ET:8", h.vm, h.mac, h.vtep))
			})
			lab.Eventually(t, converge, pollEvery, func() error {
				return hasRoute(l, "rr", rrType3(h.vtep, "RT:65000:100"),
					fmt.Sprintf("type-3 of %s with RT:65000:100 ET:8", h.vtep))
			})
		}
		lab.Eventually(t, converge, pollEvery, func() error {
			return evpndMAC(l, "host1", func(m ctlMAC) bool {
				return sameMAC(m.MAC, vm2) && m.Remote && m.VTEP == vtep2.String() && m.Tenant == "blue" && m.VNI == 100
			}, fmt.Sprintf("remote %s (vm2) via %s in blue/100", vm2, vtep2))
		})
		lab.Eventually(t, converge, pollEvery, func() error {
			return evpndMAC(l, "host1", func(m ctlMAC) bool {
				return sameMAC(m.MAC, vm1) && !m.Remote && m.Port == "tap-vm1" && m.Tenant == "blue" && m.VNI == 100
			}, fmt.Sprintf("local %s (vm1) on tap-vm1 in blue/100", vm1))
		})
		lab.Eventually(t, converge, pollEvery, func() error {
			var out struct {
				Peers []ctlPeer `json:"peers"`
			}
			if err := l.EvpnctlJSON("host1", &out, "show", "peers"); err != nil {
				return err
			}
			for _, p := range out.Peers {
				if p.Address == rrAddr.String() && p.State == "PEER_STATE_ESTABLISHED" {
					return nil
				}
			}
			return fmt.Errorf("host1: evpnctl show peers: %s not established: %+v", rrAddr, out.Peers)
		})
	})

	// evpnd and FRR (zebra + bgpd) hosts install each other's MACs in the
	// kernel toward the right VTEP, and TCP flows between their workloads.
	t.Run("InteropFRRHost", func(t *testing.T) {
		exchange(t, l, "vm1", "vm3", wlIP3, 5003)
		exchange(t, l, "vm3", "vm1", wlIP1, 5004)
		lab.Eventually(t, converge, pollEvery, func() error {
			entries, err := lab.FDB(l.NS("host3"), "br100")
			if err != nil {
				return err
			}
			return remoteEntry("host3 br100", entries, vm1, vtep1)
		})
		lab.Eventually(t, converge, pollEvery, func() error {
			entries, err := tenantFDB(l, "host1", "blue", "br100")
			if err != nil {
				return err
			}
			return remoteEntry("host1 tenant blue br100", entries, vm3, vtep3)
		})
	})

	// A port that disappears takes its MAC out of the fabric: the RR, the
	// other evpnd host's kernel and the FRR host's kernel, while everything
	// else stays.
	t.Run("Withdrawal", func(t *testing.T) {
		// Traffic makes every workload's MAC known before the cut, so
		// absence afterwards means withdrawal, not "never learned".
		exchange(t, l, "vm1", "vm2", wlIP2, 5005)
		exchange(t, l, "vm1", "vm3", wlIP3, 5006)
		lab.Eventually(t, converge, pollEvery, func() error {
			if err := hasRoute(l, "rr", rrType2(vm1, vtep1, "RT:65000:100"), "type-2 for vm1 before the cut"); err != nil {
				return err
			}
			entries, err := tenantFDB(l, "host2", "blue", "br100")
			if err != nil {
				return err
			}
			if err := remoteEntry("host2 tenant blue br100", entries, vm1, vtep1); err != nil {
				return err
			}
			if entries, err = lab.FDB(l.NS("host3"), "br100"); err != nil {
				return err
			}
			return remoteEntry("host3 br100", entries, vm1, vtep1)
		})
		lab.Eventually(t, converge, pollEvery, func() error {
			return hasRoute(l, "rr", rrType2(vm2, vtep2, "RT:65000:100"), "type-2 for vm2 before the cut")
		})

		if _, err := l.Exec("vm1", "ip", "link", "del", "eth1"); err != nil {
			t.Fatal(err)
		}

		lab.Eventually(t, withdrawWithin, pollEvery, func() error {
			var errs []error
			routes, err := l.EVPNRoutes("rr")
			if err != nil {
				return err
			}
			for _, r := range routes {
				if r.Type == 2 && bytes.Equal(r.MAC, vm1) {
					errs = append(errs, fmt.Errorf("rr: still holds %s %s nh %s", r.RD, r.Prefix, r.NextHop))
				}
			}
			if entries, err := tenantFDB(l, "host2", "blue", "br100"); err != nil {
				errs = append(errs, err)
			} else {
				errs = append(errs, noEntry("host2 tenant blue br100", entries, vm1))
			}
			if entries, err := lab.FDB(l.NS("host3"), "br100"); err != nil {
				errs = append(errs, err)
			} else {
				errs = append(errs, noEntry("host3 br100", entries, vm1))
			}
			return errors.Join(errs...)
		})

		// The rest of the fabric is untouched: host2's routes, host1's
		// type-3 (its segment still exists), and traffic between the
		// remaining workloads.
		for _, c := range []struct {
			match func(lab.EVPNRoute) bool
			what  string
		}{
			{rrType2(vm2, vtep2, "RT:65000:100"), "type-2 for vm2 after vm1's withdrawal"},
			{rrType3(vtep2, "RT:65000:100"), "type-3 of host2 after vm1's withdrawal"},
			{rrType3(vtep1, "RT:65000:100"), "type-3 of host1 after vm1's withdrawal"},
		} {
			if err := hasRoute(l, "rr", c.match, c.what); err != nil {
				t.Error(err)
			}
		}
		exchange(t, l, "vm2", "vm3", wlIP3, 5007)
	})
}

// TestPrivilegedL2Isolation proves that two tenants reusing one subnet and
// the same addresses on the same hosts never see each other: TCP to the
// shared address is answered by the caller's tenant only, ARP resolves to
// the caller's tenant's MAC, the RR carries each tenant under its own RT,
// and no tenant's FDB holds the other tenant's MACs.
func TestPrivilegedL2Isolation(t *testing.T) {
	requireL2Lab(t)
	l := lab.Up(t, "topologies/l2-isolation.clab.yml", lab.Options{})
	macs := map[string]net.HardwareAddr{}
	for _, n := range []string{"b1", "r1", "b2", "r2"} {
		macs[n] = workloadMAC(t, l, n)
	}

	// Servers on the shared address in both tenants at once, so a leak has
	// a listener to reach. The banner is the answering namespace.
	const port = 7000
	for _, srv := range []struct {
		node string
		ip   netip.Addr
	}{{"b2", wlIP2}, {"r2", wlIP2}, {"b1", wlIP1}, {"r1", wlIP1}} {
		s, err := lab.ListenEcho(l.NS(srv.node), srv.ip, port)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
	}

	for _, c := range []struct {
		from, want, other string
		ip                netip.Addr
	}{
		{"b1", "b2", "r2", wlIP2}, {"r1", "r2", "b2", wlIP2},
		{"b2", "b1", "r1", wlIP1}, {"r2", "r1", "b1", wlIP1},
	} {
		dial := func() error {
			banner, err := lab.DialEcho(l.NS(c.from), c.ip, port)
			if err != nil {
				return err
			}
			if banner == l.NS(c.other) {
				t.Fatalf("isolation broken: %s reached %s at %s", c.from, c.other, c.ip)
			}
			if banner != l.NS(c.want) {
				return fmt.Errorf("%s -> %s: answered by %q, want %s", c.from, c.ip, banner, l.NS(c.want))
			}
			return nil
		}
		lab.Eventually(t, converge, pollEvery, dial)
		// Once converged, every further connection lands in the same tenant.
		for range 10 {
			if err := dial(); err != nil {
				t.Fatal(err)
			}
		}
	}

	for _, c := range []struct{ from, want, other string }{{"b1", "b2", "r2"}, {"r1", "r2", "b2"}} {
		lab.Eventually(t, converge, pollEvery, func() error {
			out, err := l.Exec(c.from, "ip", "-j", "neigh", "show", "to", wlIP2.String(), "dev", "eth1")
			if err != nil {
				return err
			}
			var neigh []struct {
				LLAddr string `json:"lladdr"`
			}
			if err := json.Unmarshal(out, &neigh); err != nil {
				return fmt.Errorf("%s: ip -j neigh: %w: %s", c.from, err, out)
			}
			for _, n := range neigh {
				if sameMAC(n.LLAddr, macs[c.other]) {
					t.Fatalf("isolation broken: %s resolved %s to %s's MAC %s", c.from, wlIP2, c.other, n.LLAddr)
				}
				if sameMAC(n.LLAddr, macs[c.want]) {
					return nil
				}
			}
			return fmt.Errorf("%s: neighbor %s = %+v, want %s's MAC %s", c.from, wlIP2, neigh, c.want, macs[c.want])
		})
	}

	rrChecks := []struct {
		node string
		vtep netip.Addr
		rt   string
	}{{"b1", vtep1, "RT:65000:100"}, {"b2", vtep2, "RT:65000:100"}, {"r1", vtep1, "RT:65000:200"}, {"r2", vtep2, "RT:65000:200"}}
	for _, c := range rrChecks {
		lab.Eventually(t, converge, pollEvery, func() error {
			return hasRoute(l, "rr", rrType2(macs[c.node], c.vtep, c.rt),
				fmt.Sprintf("type-2 for %s %s via %s with %s", c.node, macs[c.node], c.vtep, c.rt))
		})
	}
	routes, err := l.EVPNRoutes("rr")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Type != 2 {
			continue
		}
		blue := bytes.Equal(r.MAC, macs["b1"]) || bytes.Equal(r.MAC, macs["b2"])
		red := bytes.Equal(r.MAC, macs["r1"]) || bytes.Equal(r.MAC, macs["r2"])
		if (blue && r.HasExtCommunity("RT:65000:200")) || (red && r.HasExtCommunity("RT:65000:100")) {
			t.Errorf("rr: %s %s carries the other tenant's RT: %v", r.RD, r.Prefix, r.ExtCommunities)
		}
	}

	for _, c := range []struct {
		host, tenant, br string
		remote           string // this tenant's workload on the other host
		vtep             netip.Addr
		foreign          []string // the other tenant's workloads
	}{
		{"host1", "blue", "br100", "b2", vtep2, []string{"r1", "r2"}},
		{"host1", "red", "br200", "r2", vtep2, []string{"b1", "b2"}},
		{"host2", "blue", "br100", "b1", vtep1, []string{"r1", "r2"}},
		{"host2", "red", "br200", "r1", vtep1, []string{"b1", "b2"}},
	} {
		where := fmt.Sprintf("%s tenant %s %s", c.host, c.tenant, c.br)
		var entries []lab.FDBEntry
		// The tenant's own remote MAC is there first, so the absence of the
		// other tenant's MACs is checked on a populated table.
		lab.Eventually(t, converge, pollEvery, func() error {
			var err error
			if entries, err = tenantFDB(l, c.host, c.tenant, c.br); err != nil {
				return err
			}
			return remoteEntry(where, entries, macs[c.remote], c.vtep)
		})
		for _, f := range c.foreign {
			if err := noEntry(where, entries, macs[f]); err != nil {
				t.Errorf("isolation broken: %v (a %s MAC)", err, f)
			}
		}
	}
}

// TestPrivilegedL2EBGP proves evpnd in an eBGP fabric with one AS per leaf:
// through an FRR ToR that keeps next hops, TCP flows both ways, and host2
// installs host1's type-2 although it carries host1's RT 65001:100, because
// auto import matches on the VNI.
func TestPrivilegedL2EBGP(t *testing.T) {
	requireL2Lab(t)
	l := lab.Up(t, "topologies/l2-ebgp.clab.yml", lab.Options{})
	vm1 := workloadMAC(t, l, "vm1")

	exchange(t, l, "vm1", "vm2", wlIP2, 5001)
	exchange(t, l, "vm2", "vm1", wlIP1, 5002)

	lab.Eventually(t, converge, pollEvery, func() error {
		return hasRoute(l, "tor", func(r lab.EVPNRoute) bool {
			return r.Type == 2 && bytes.Equal(r.MAC, vm1) && r.NextHop == vtep1 && r.Valid &&
				r.HasExtCommunity("RT:65001:100") && r.HasExtCommunity("ET:8")
		}, fmt.Sprintf("type-2 for vm1 %s via %s with RT:65001:100 ET:8", vm1, vtep1))
	})
	lab.Eventually(t, converge, pollEvery, func() error {
		var out struct {
			Routes []ctlRoute `json:"routes"`
		}
		if err := l.EvpnctlJSON("host2", &out, "show", "evpn", "routes"); err != nil {
			return err
		}
		for _, r := range out.Routes {
			if r.Type == "ROUTE_TYPE_MAC_IP" && sameMAC(r.MAC, vm1) && !r.Local &&
				r.NextHop == vtep1.String() && slices.Contains(r.RouteTargets, "65001:100") {
				return nil
			}
		}
		return fmt.Errorf("host2: evpnctl show evpn routes: no type-2 for vm1 %s with next hop %s and RT 65001:100; have %+v", vm1, vtep1, out.Routes)
	})
	lab.Eventually(t, converge, pollEvery, func() error {
		return evpndMAC(l, "host2", func(m ctlMAC) bool {
			return sameMAC(m.MAC, vm1) && m.Remote && m.VTEP == vtep1.String() && m.VNI == 100
		}, fmt.Sprintf("remote %s (vm1) via %s in VNI 100", vm1, vtep1))
	})
	lab.Eventually(t, converge, pollEvery, func() error {
		entries, err := tenantFDB(l, "host2", "blue", "br100")
		if err != nil {
			return err
		}
		return remoteEntry("host2 tenant blue br100", entries, vm1, vtep1)
	})
}
