package integration

import (
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
	"github.com/evpnd/evpnd/integration/lab"
)

var soakCycles = flag.Int("soak-cycles", 4, "churn cycles of TestPrivilegedSoakChurn (make test runs the short default)")

// sendFromMACs makes namespace ns send one broadcast frame from each of n
// source MACs (02:5a:<cycle>:<i>) out of dev: a workload port full of new
// MACs, as a hypervisor with many VMs looks to the bridge.
func sendFromMACs(ns, dev string, cycle, n int) error {
	return lab.InNS(ns, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(syscall.ETH_P_ALL)))
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		addr := &syscall.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
		frame := make([]byte, 60)
		copy(frame[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		binary.BigEndian.PutUint16(frame[12:14], 0x88b5) // local experimental ethertype
		for i := 0; i < n; i++ {
			copy(frame[6:12], []byte{0x02, 0x5a, byte(cycle), byte(i >> 16), byte(i >> 8), byte(i)})
			if err := syscall.Sendto(fd, frame, 0, addr); err != nil {
				return fmt.Errorf("send frame %d: %w", i, err)
			}
		}
		return nil
	})
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// TestPrivilegedSoakChurn churns thousands of MACs through two evpnd
// hosts: each cycle a workload port on host1 shows 2,000 new MACs (learned,
// advertised, installed on host2), then they are flushed (withdrawn,
// removed on host2). After every cycle evpnd's own state is back to
// empty, and after a warm-up cycle the goroutines of both evpnd processes
// do not grow. make test runs a few cycles; -soak-cycles runs it longer.
func TestPrivilegedSoakChurn(t *testing.T) {
	requireLab(t)
	if _, err := os.Stat(filepath.Join("..", "bin", "evpnd")); err != nil {
		t.Skip("bin/evpnd is missing: run make build")
	}
	l := lab.Up(t, "topologies/api.clab.yml", lab.Options{})
	c, c2 := dialAPI(t, l, "host1"), dialAPI(t, l, "host2")
	ctx := apiCtx(t)
	for _, err := range []error{
		second(c.CreateTenant(ctx, &evpndv1.CreateTenantRequest{Tenant: &evpndv1.Tenant{Name: "blue"}})),
		second(c.CreateSegment(ctx, &evpndv1.CreateSegmentRequest{Segment: &evpndv1.Segment{Tenant: "blue", Name: "web", Vni: 100, Mtu: 1450}})),
		second(c.AttachPort(ctx, &evpndv1.AttachPortRequest{Port: &evpndv1.Port{Interface: "tap-vm1", Tenant: "blue", Segment: "web"}})),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	const macs = 2000
	host1, host2 := l.TenantNS("host1", "blue"), l.TenantNS("host2", "blue")
	type usage struct{ goroutines, rss float64 }
	read := func(node string) usage {
		t.Helper()
		text, err := scrape(l.NS(node), "127.0.0.1:9469")
		if err != nil {
			t.Fatalf("%s metrics: %v", node, err)
		}
		g, ok1 := sample(text, "go_goroutines")
		r, ok2 := sample(text, "process_resident_memory_bytes")
		if !ok1 || !ok2 {
			t.Fatalf("%s metrics lack go_goroutines or process_resident_memory_bytes", node)
		}
		return usage{g, r}
	}
	var first, last map[string]usage
	for cycle := 0; cycle <= *soakCycles; cycle++ {
		if err := sendFromMACs(l.NS("vm1"), "eth1", cycle, macs); err != nil {
			t.Fatal(err)
		}
		lab.Eventually(t, converge, pollEvery, func() error {
			n, err := remoteMACs(host2, "02:5a:")
			if err != nil || n != macs {
				return fmt.Errorf("cycle %d: host2 holds %d of %d churn MACs (%v)", cycle, n, macs, err)
			}
			return nil
		})
		// The MACs leave: their bridge entries go (as when they age out).
		var batch strings.Builder
		for i := 0; i < macs; i++ {
			fmt.Fprintf(&batch, "fdb del 02:5a:%02x:%02x:%02x:%02x dev tap-vm1 master\n", byte(cycle), byte(i>>16), byte(i>>8), byte(i))
		}
		script := filepath.Join(t.TempDir(), "del.batch")
		if err := os.WriteFile(script, []byte(batch.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := lab.ExecNS(host1, "bridge", "-force", "-batch", script); err != nil {
			t.Fatalf("delete the churn MACs: %v: %s", err, out)
		}
		lab.Eventually(t, converge, pollEvery, func() error {
			n, err := remoteMACs(host2, "02:5a:")
			if err != nil || n != 0 {
				return fmt.Errorf("cycle %d: host2 still holds %d churn MACs after the flush (%v)", cycle, n, err)
			}
			return nil
		})
		// evpnd's own state is back where it started: no churn MAC in the
		// RIB of either host or in host1's MAC table.
		lab.Eventually(t, converge, pollEvery, func() error {
			for node, api := range map[string]evpndv1.EvpndServiceClient{"host1": c, "host2": c2} {
				routes, err := api.ListRoutes(ctx, &evpndv1.ListRoutesRequest{Type: evpndv1.RouteType_ROUTE_TYPE_MAC_IP})
				if err != nil {
					return err
				}
				for _, r := range routes.GetRoutes() {
					if strings.HasPrefix(r.GetMac(), "02:5a:") {
						return fmt.Errorf("cycle %d: %s still has a route for churn MAC %s", cycle, node, r.GetMac())
					}
				}
			}
			macs, err := c.ListMacs(ctx, &evpndv1.ListMacsRequest{Origin: evpndv1.MacOrigin_MAC_ORIGIN_LOCAL})
			if err != nil {
				return err
			}
			for _, m := range macs.GetMacs() {
				if strings.HasPrefix(m.GetMac(), "02:5a:") {
					return fmt.Errorf("cycle %d: host1 still lists churn MAC %s as local", cycle, m.GetMac())
				}
			}
			return nil
		})
		now := map[string]usage{"host1": read("host1"), "host2": read("host2")}
		t.Logf("cycle %d: host1 %.0f goroutines %.1f MB, host2 %.0f goroutines %.1f MB", cycle,
			now["host1"].goroutines, now["host1"].rss/1e6, now["host2"].goroutines, now["host2"].rss/1e6)
		if cycle == 0 {
			continue // warm-up: pools, maps and GoBGP tables reach their size
		}
		if first == nil {
			first = now
		}
		last = now
	}
	if dir := os.Getenv("EVPND_SOAK_PROFILES"); dir != "" {
		// Heap profiles of both hosts after the churn, for a leak hunt:
		// go tool pprof -sample_index=inuse_space DIR/host1.heap
		for _, node := range []string{"host1", "host2"} {
			prof, err := httpGet(l.NS(node), "127.0.0.1:9469", "/debug/pprof/heap?gc=1")
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, node+".heap"), []byte(prof), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, node := range []string{"host1", "host2"} {
		f, z := first[node], last[node]
		if z.goroutines > f.goroutines+10 { // API and scrape connections come and go
			t.Errorf("%s: goroutines grew from %.0f to %.0f over the churn", node, f.goroutines, z.goroutines)
		}
		// Resident memory is logged, not asserted: GoBGP v3.37.0 keeps a
		// table entry for every local MAC route ever withdrawn (a local
		// path's ID is released only for paths from peers, so its
		// destination is never deleted) and a MAC index entry for every
		// remote one, about 1 KB per distinct MAC. docs/reliability.md has
		// the evidence; EVPND_SOAK_PROFILES saves heap profiles.
		t.Logf("%s: resident memory %.1f MB after the warm-up, %.1f MB at the end", node, f.rss/1e6, z.rss/1e6)
	}
}
