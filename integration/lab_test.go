package integration

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/evpnd/evpnd/integration/lab"
)

// Convergence bounds for lab tests: generous, since they only cap how long
// a broken lab takes to fail; passing tests return as soon as state is seen.
const (
	converge  = 60 * time.Second
	pollEvery = 200 * time.Millisecond
)

// requireLab skips unless the machine can run a lab: root for namespaces,
// FRR for the route reflector and the third-party host.
func requireLab(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("lab tests need root (network namespaces, veth pairs, FRR daemons); run with sudo")
	}
	if !lab.FRRInstalled() {
		t.Skip("lab tests need FRR: /usr/lib/frr/bgpd is missing (apt-get install frr)")
	}
}

func TestLabTopologyParse(t *testing.T) {
	topo, err := lab.LoadTopology("topologies/l2-evpn.clab.yml")
	if err != nil {
		t.Fatal(err)
	}
	wantRoles := map[string]lab.Role{
		"fabric": lab.RoleBridge, "rr": lab.RoleFRR, "host1": lab.RoleEvpnd, "host2": lab.RoleEvpnd,
		"host3": lab.RoleFRR, "vm1": lab.RoleWorkload, "vm2": lab.RoleWorkload, "vm3": lab.RoleWorkload,
	}
	if len(topo.Nodes) != len(wantRoles) {
		t.Errorf("l2-evpn: %d nodes, want %d", len(topo.Nodes), len(wantRoles))
	}
	for name, role := range wantRoles {
		n := topo.Node(name)
		if n == nil {
			t.Errorf("l2-evpn: node %s missing", name)
			continue
		}
		if n.Role != role {
			t.Errorf("l2-evpn: node %s role %s, want %s", name, n.Role, role)
		}
		for _, conf := range []string{n.FRRConfig(), n.EvpndConfig()} {
			if conf == "" {
				continue
			}
			if _, err := os.Stat(conf); err != nil {
				t.Errorf("l2-evpn: node %s: bound file: %v", name, err)
			}
		}
	}
	if topo.Node("rr").RunsZebra() {
		t.Error("l2-evpn: rr runs zebra, want bgpd -Z alone")
	}
	if !topo.Node("host3").RunsZebra() {
		t.Error("l2-evpn: host3 runs without zebra, want zebra + bgpd")
	}
	if len(topo.Links) != 7 {
		t.Errorf("l2-evpn: %d links, want 7", len(topo.Links))
	}
	if len(topo.Node("vm3").Exec) != 1 || topo.Node("vm3").Image != "alpine:3" {
		t.Errorf("l2-evpn: vm3 = %+v, want kind linux defaults (alpine:3) and one exec", topo.Node("vm3"))
	}

	const nodes = `
name: bad
topology:
  nodes:
    a: {kind: linux}
    b: {kind: linux}
`
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown node", nodes + `  links:
    - endpoints: ["a:eth1", "nope:eth1"]
`, `topology.links[0].endpoints[1]: "nope:eth1" names unknown node "nope"`},
		{"duplicate interface", nodes + `  links:
    - endpoints: ["a:eth1", "b:eth1"]
    - endpoints: ["a:eth1", "b:eth2"]
`, `topology.links[1].endpoints[0]: interface "a:eth1" is already used by topology.links[0].endpoints[0]`},
		{"no colon", nodes + `  links:
    - endpoints: ["aeth1", "b:eth1"]
`, `topology.links[0].endpoints[0]: "aeth1" is not "node:interface"`},
		{"empty interface", nodes + `  links:
    - endpoints: ["a:eth1", "b:"]
`, `topology.links[0].endpoints[1]: "b:" is not "node:interface"`},
		{"one endpoint", nodes + `  links:
    - endpoints: ["a:eth1"]
`, `topology.links[0].endpoints: want 2 endpoints, have 1`},
		{"interface name too long", nodes + `  links:
    - endpoints: ["a:eth1", "b:averyveryverylongname"]
`, `topology.links[0].endpoints[1]: "b:averyveryverylongname": interface name "averyveryverylongname" must be 1..15 characters`},
		{"frr without frr.conf", `
name: bad
topology:
  nodes:
    r: {kind: linux, image: quay.io/frrouting/frr:8.4.4}
`, `topology.nodes.r: binds: an frr node needs a bind with target /etc/frr/frr.conf`},
		{"evpnd without config", `
name: bad
topology:
  nodes:
    h: {kind: linux, image: ghcr.io/evpnd/evpnd:latest, binds: ["x.yaml:/etc/evpnd/other.yml"]}
`, `topology.nodes.h: binds: an evpnd node needs a bind whose target ends in evpnd.yaml`},
		{"bad bind", `
name: bad
topology:
  nodes:
    h: {kind: linux, binds: ["nocolon"]}
`, `topology.nodes.h: binds[0]: "nocolon" is not "source:target[:mode]"`},
		{"bad role label", `
name: bad
topology:
  nodes:
    h: {kind: linux, labels: {evpnd.role: router}}
`, `topology.nodes.h: labels.evpnd.role: "router" is not one of evpnd, frr, bridge, workload`},
		{"missing kind", `
name: bad
topology:
  nodes:
    h: {image: alpine:3}
`, `topology.nodes.h: kind: missing`},
		{"missing name", `
topology:
  nodes:
    h: {kind: linux}
`, `name: missing`},
		{"no nodes", `
name: bad
topology: {}
`, `topology.nodes: no nodes`},
		{"not yaml", "name: [", `parse yaml`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := lab.ParseTopology([]byte(tt.yaml), t.TempDir())
			if err == nil {
				t.Fatalf("parsed, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, tt.want)
			}
		})
	}

	t.Run("kind defaults and bind paths", func(t *testing.T) {
		dir := t.TempDir()
		topo, err := lab.ParseTopology([]byte(`
name: kinds
topology:
  kinds:
    linux: {image: alpine:3, env: {A: kind, B: kind}}
  nodes:
    r:
      kind: linux
      labels: {evpnd.role: frr, evpnd.frr/zebra: "false"}
      env: {B: node}
      binds: ["r/frr.conf:/etc/frr/frr.conf:ro", "/abs/daemons:/etc/frr/daemons"]
`), dir)
		if err != nil {
			t.Fatal(err)
		}
		r := topo.Node("r")
		if r.Role != lab.RoleFRR || r.RunsZebra() || r.Image != "alpine:3" {
			t.Errorf("r = %+v, want frr role from label, no zebra, image from kind", r)
		}
		if r.Env["A"] != "kind" || r.Env["B"] != "node" {
			t.Errorf("r env = %v, want A from kind, B from node", r.Env)
		}
		if got, want := r.FRRConfig(), filepath.Join(dir, "r/frr.conf"); got != want {
			t.Errorf("frr.conf bind = %s, want %s", got, want)
		}
		if got := r.BindFor("/etc/frr/daemons"); got != "/abs/daemons" {
			t.Errorf("daemons bind = %s, want /abs/daemons", got)
		}
	})
}

// frrOnlyTopology is the FRR half of l2-evpn: an FRR route reflector
// (bgpd -Z), an FRR EVPN host with VNI 100 and two workloads on its bridge.
const frrOnlyTopology = `
name: frr-only
topology:
  nodes:
    fabric: {kind: bridge}
    rr:
      kind: linux
      image: quay.io/frrouting/frr:8.4.4
      labels: {evpnd.frr/zebra: "false"}
      binds: ["rr.conf:/etc/frr/frr.conf"]
      exec: ["ip addr add 10.0.0.254/24 dev eth1"]
    host3:
      kind: linux
      image: quay.io/frrouting/frr:8.4.4
      binds: ["host3.conf:/etc/frr/frr.conf"]
      exec:
        - ip addr add 10.0.0.3/24 dev eth1
        - ip link add br100 type bridge
        - ip link add vxlan100 type vxlan id 100 local 10.0.0.3 dstport 4789 nolearning
        - ip link set vxlan100 master br100
        - bridge link set dev vxlan100 neigh_suppress on learning off
        - ip link set eth2 master br100
        - ip link set eth3 master br100
        - ip link set vxlan100 up
        - ip link set br100 up
    vm3:
      kind: linux
      image: alpine:3
      exec: ["ip addr add 172.31.1.3/24 dev eth1"]
    vm4:
      kind: linux
      image: alpine:3
      exec: ["ip addr add 172.31.1.4/24 dev eth1"]
  links:
    - endpoints: ["rr:eth1", "fabric:rr"]
    - endpoints: ["host3:eth1", "fabric:host3"]
    - endpoints: ["vm3:eth1", "host3:eth2"]
    - endpoints: ["vm4:eth1", "host3:eth3"]
`

const frrOnlyRR = `frr defaults datacenter
hostname rr
router bgp 65000
 bgp router-id 10.0.0.254
 no bgp default ipv4-unicast
 neighbor hosts peer-group
 neighbor hosts remote-as 65000
 bgp listen range 10.0.0.0/24 peer-group hosts
 address-family l2vpn evpn
  neighbor hosts activate
  neighbor hosts route-reflector-client
 exit-address-family
`

const frrOnlyHost = `frr defaults datacenter
hostname host3
router bgp 65000
 bgp router-id 10.0.0.3
 no bgp default ipv4-unicast
 neighbor 10.0.0.254 remote-as 65000
 address-family l2vpn evpn
  neighbor 10.0.0.254 activate
  advertise-all-vni
 exit-address-family
`

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestPrivilegedLabFRROnly proves the runner and the FRR wrangling: FRR as
// route reflector and as EVPN host come up in lab namespaces, peer, and the
// host's type-3 and (once a workload sends a frame) type-2 reach the RR;
// teardown leaves no namespace behind.
func TestPrivilegedLabFRROnly(t *testing.T) {
	requireLab(t)
	dir := writeFiles(t, map[string]string{
		"frr-only.clab.yml": frrOnlyTopology, "rr.conf": frrOnlyRR, "host3.conf": frrOnlyHost,
	})
	l := lab.Up(t, filepath.Join(dir, "frr-only.clab.yml"), lab.Options{})
	vtep := netip.MustParseAddr("10.0.0.3")

	lab.Eventually(t, converge, pollEvery, func() error {
		states, err := l.BGPPeerStates("rr")
		if err != nil {
			return err
		}
		if s := states[vtep.String()]; s != "Established" {
			return fmt.Errorf("rr: peer %s state %q, want Established (peers %v)", vtep, s, states)
		}
		return nil
	})

	lab.Eventually(t, converge, pollEvery, func() error {
		return hasRoute(l, "rr", func(r lab.EVPNRoute) bool {
			return r.Type == 3 && r.IP == vtep && r.NextHop == vtep && r.Valid &&
				r.HasExtCommunity("RT:65000:100") && r.HasExtCommunity("ET:8")
		}, "type-3 from 10.0.0.3 with RT:65000:100 ET:8")
	})

	// Traffic between two workloads of the FRR host proves the lab's links,
	// exec commands and the TCP helper; it also makes vm3's MAC known.
	lab.Eventually(t, converge, pollEvery, func() error {
		return lab.TCPExchange(t, l.NS("vm3"), l.NS("vm4"), netip.MustParseAddr("172.31.1.4"), 5001)
	})
	lab.Eventually(t, converge, pollEvery, func() error {
		return lab.TCPExchange(t, l.NS("vm4"), l.NS("vm3"), netip.MustParseAddr("172.31.1.3"), 5001)
	})

	macOut, err := l.Exec("vm3", "cat", "/sys/class/net/eth1/address")
	if err != nil {
		t.Fatal(err)
	}
	mac, err := net.ParseMAC(string(bytes.TrimSpace(macOut)))
	if err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, converge, pollEvery, func() error {
		if err := lab.Knock(l.NS("vm3"), netip.MustParseAddr("172.31.1.99")); err != nil {
			return err
		}
		return hasRoute(l, "rr", func(r lab.EVPNRoute) bool {
			return r.Type == 2 && bytes.Equal(r.MAC, mac) && r.NextHop == vtep &&
				r.HasExtCommunity("RT:65000:100") && r.HasExtCommunity("ET:8")
		}, fmt.Sprintf("type-2 for vm3 %s via 10.0.0.3", mac))
	})

	// A restarted FRR host peers again: StopDaemons/StartDaemons for
	// restart tests.
	if err := l.StopDaemons("host3"); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, converge, pollEvery, func() error {
		states, err := l.BGPPeerStates("rr")
		if err != nil {
			return err
		}
		if s, ok := states[vtep.String()]; ok && s == "Established" {
			return fmt.Errorf("rr: peer %s still Established after host3 stopped", vtep)
		}
		return nil
	})
	if err := l.StartDaemons("host3"); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, converge, pollEvery, func() error {
		return hasRoute(l, "rr", func(r lab.EVPNRoute) bool {
			return r.Type == 3 && r.IP == vtep && r.Valid
		}, "type-3 from 10.0.0.3 after host3 restarted")
	})

	id, runDir := l.ID, l.RunDir
	if err := l.Down(); err != nil {
		t.Fatalf("teardown: %v", err)
	}
	assertGone(t, id, runDir)
}

func hasRoute(l *lab.Lab, node string, match func(lab.EVPNRoute) bool, what string) error {
	routes, err := l.EVPNRoutes(node)
	if err != nil {
		return err
	}
	for _, r := range routes {
		if match(r) {
			return nil
		}
	}
	var have []string
	for _, r := range routes {
		have = append(have, fmt.Sprintf("%s %s nh %s %v", r.RD, r.Prefix, r.NextHop, r.ExtCommunities))
	}
	return fmt.Errorf("%s: no %s; have %d paths: %s", node, what, len(routes), strings.Join(have, "; "))
}

func assertGone(t *testing.T, id, runDir string) {
	t.Helper()
	left, err := lab.Namespaces(id)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("lab %s: namespaces left after teardown: %v", id, left)
	}
	if _, err := os.Stat(runDir); !os.IsNotExist(err) {
		t.Errorf("lab %s: run dir %s left after teardown (stat: %v)", id, runDir, err)
	}
}

const pairTopology = `
name: pair
topology:
  nodes:
    a: {kind: linux, exec: ["ip addr add 172.31.9.1/24 dev eth1"]}
    b: {kind: linux, exec: ["ip addr add 172.31.9.2/24 dev eth1", "%s"]}
  links:
    - endpoints: ["a:eth1", "b:eth1"]
`

// TestPrivilegedLabDownSweep covers the CLI's paths: Down from the state
// file, Sweep of a dead detached lab, and a bring-up failing midway
// cleaning up after itself.
func TestPrivilegedLabDownSweep(t *testing.T) {
	requireLab(t)
	dir := writeFiles(t, map[string]string{
		"ok.clab.yml":   fmt.Sprintf(pairTopology, "true"),
		"fail.clab.yml": fmt.Sprintf(pairTopology, "ip link set nosuchdev up"),
	})
	start := func() *lab.Lab {
		t.Helper()
		l, err := lab.Start(filepath.Join(dir, "ok.clab.yml"), lab.Options{Detached: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Down() }) // only matters when the test fails early
		return l
	}

	a := start()
	if err := lab.TCPExchange(t, a.NS("a"), a.NS("b"), netip.MustParseAddr("172.31.9.2"), 7); err != nil {
		t.Fatal(err)
	}
	if err := lab.Down("", a.ID); err != nil {
		t.Fatalf("down %s from state file: %v", a.ID, err)
	}
	assertGone(t, a.ID, a.RunDir)

	// A detached lab without daemons has nothing keeping it alive.
	b := start()
	removed, err := lab.Sweep("")
	if err != nil {
		t.Fatalf("sweep: %v", err)
	}
	if !strings.Contains(strings.Join(removed, " "), b.ID) {
		t.Errorf("sweep removed %v, want %s among them", removed, b.ID)
	}
	assertGone(t, b.ID, b.RunDir)

	_, err = lab.Start(filepath.Join(dir, "fail.clab.yml"), lab.Options{})
	if err == nil {
		t.Fatal("bring-up with a failing exec command succeeded")
	}
	if !strings.Contains(err.Error(), `exec[1] "ip link set nosuchdev up"`) {
		t.Errorf("error %q does not name the failing exec command", err)
	}
	m := regexp.MustCompile(`lab (l[0-9a-f]{5}) bring-up`).FindStringSubmatch(err.Error())
	if m == nil {
		t.Fatalf("error %q does not name the lab", err)
	}
	assertGone(t, m[1], filepath.Join(lab.DefaultRoot, m[1]))
}
