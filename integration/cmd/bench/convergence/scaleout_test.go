package convergence

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/evpnd/evpnd/integration/lab"
)

func TestScalePlan(t *testing.T) {
	for _, o := range []ScaleOutOptions{{Hosts: 30, Tenants: 100, MACs: 10}, {Hosts: 4, Tenants: 4, MACs: 3}, {Hosts: 2, Tenants: 5, MACs: 1}, {Hosts: 7, Tenants: 1, MACs: 2}} {
		p := newScalePlan(o)
		replicas := min(scaleReplicas, o.Hosts)
		placed := 0
		for tn, hosts := range p.tenants {
			seen := map[int]bool{}
			for _, h := range hosts {
				if seen[h] {
					t.Errorf("%+v: tenant %d is on host %d twice: %v", o, tn, h, hosts)
				}
				seen[h] = true
			}
			if len(hosts) != replicas {
				t.Errorf("%+v: tenant %d is on %d hosts, want %d", o, tn, len(hosts), replicas)
			}
			placed += len(hosts)
		}
		total := 0
		for h, ts := range p.hosts {
			total += len(ts)
			if want := (replicas - 1) * o.MACs * len(ts); p.remote(h) != want {
				t.Errorf("%+v: host %d must install %d remote macs, want %d", o, h, p.remote(h), want)
			}
		}
		if total != placed {
			t.Errorf("%+v: hosts hold %d tenants, tenants are on %d hosts", o, total, placed)
		}
	}
	// The full size spreads evenly: ten tenants a host.
	for h, ts := range newScalePlan(ScaleOutOptions{Hosts: 30, Tenants: 100, MACs: 10}).hosts {
		if len(ts) != 10 {
			t.Errorf("host %d has %d tenants, want 10", h, len(ts))
		}
	}
}

func TestScaleMACsDistinct(t *testing.T) {
	o := ScaleOutOptions{Hosts: MaxScaleOutHosts, Tenants: MaxScaleOutTenants, MACs: MaxScaleOutMACs}
	seen := map[[6]byte]bool{}
	for _, tn := range []int{0, 1, 255, 256, o.Tenants - 1} {
		for _, h := range []int{0, 1, o.Hosts - 1} {
			for _, i := range []int{0, 1, o.MACs - 1} {
				m := [6]byte(scaleMAC(tn, h, i))
				if seen[m] {
					t.Fatalf("mac %x of tenant %d host %d index %d is taken", m, tn, h, i)
				}
				seen[m] = true
				if [2]byte(m[:2]) != scaleOUI {
					t.Fatalf("mac %x is outside the scale-out OUI", m)
				}
			}
		}
	}
}

// The generated topology must be one the lab runner accepts, with every
// host's daemon config where the node's role expects it.
func TestScaleTopology(t *testing.T) {
	for _, dut := range DUTs {
		t.Run(string(dut), func(t *testing.T) {
			dir := t.TempDir()
			p := newScalePlan(ScaleOutOptions{Hosts: 5, Tenants: 7, MACs: 2})
			path, err := writeScaleTopology(dir, dut, p)
			if err != nil {
				t.Fatal(err)
			}
			topo, err := lab.LoadTopology(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(topo.Nodes) != 5+len(scaleRRs)+1 || len(topo.Links) != 5+len(scaleRRs) {
				t.Fatalf("%d nodes, %d links: want %d and %d", len(topo.Nodes), len(topo.Links), 5+len(scaleRRs)+1, 5+len(scaleRRs))
			}
			for h := range 5 {
				n := topo.Node(scaleHostName(h))
				if n == nil {
					t.Fatalf("no node %s", scaleHostName(h))
				}
				wantRole, conf := lab.RoleEvpnd, n.EvpndConfig()
				if dut == FRR {
					wantRole, conf = lab.RoleFRR, n.FRRConfig()
				}
				if n.Role != wantRole {
					t.Errorf("%s is %s, want %s", n.Name, n.Role, wantRole)
				}
				data, err := os.ReadFile(conf)
				if err != nil {
					t.Fatal(err)
				}
				for _, tn := range p.hosts[h] {
					port, wl := scalePort(tn)
					if !strings.Contains(n.Exec[0], "link add "+port+" type veth peer name "+wl+"\n") {
						t.Errorf("%s does not make the port pair of tenant %d:\n%s", n.Name, tn, n.Exec[0])
					}
					if dut == Evpnd && !strings.Contains(string(data), "ports: ["+port+"]") {
						t.Errorf("%s config has no port %s:\n%s", n.Name, port, data)
					}
				}
				if dut == FRR && strings.Count(string(data), "peer-group rr\n") != len(scaleRRs) {
					t.Errorf("%s does not peer with both route reflectors:\n%s", n.Name, data)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "rr1.conf")); err != nil {
				t.Error(err)
			}
		})
	}
}
