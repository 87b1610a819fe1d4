package integration

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
	"github.com/evpnd/evpnd/integration/lab"
)

// TestPrivilegedDuplicateMAC gives vm2 vm1's MAC and makes both talk in
// turn, so the MAC moves between host1 and host2 over and over. Within a
// few moves (5 in 180 s by default, RFC 7432 s15.1) evpnd freezes it: it
// is listed as a duplicate, counted in the metrics, stops moving, and is
// cleared with evpnctl once the conflict is fixed.
func TestPrivilegedDuplicateMAC(t *testing.T) {
	requireLab(t)
	for _, b := range []string{"evpnd", "evpnctl"} {
		if _, err := os.Stat(filepath.Join("..", "bin", b)); err != nil {
			t.Skipf("bin/%s is missing: run make build", b)
		}
	}
	l := lab.Up(t, "topologies/api.clab.yml", lab.Options{})
	c1, c2 := dialAPI(t, l, "host1"), dialAPI(t, l, "host2")
	ctx := apiCtx(t)
	for _, err := range []error{
		second(c1.CreateTenant(ctx, &evpndv1.CreateTenantRequest{Tenant: &evpndv1.Tenant{Name: "blue"}})),
		second(c1.CreateSegment(ctx, &evpndv1.CreateSegmentRequest{Segment: &evpndv1.Segment{Tenant: "blue", Name: "web", Vni: 100, Mtu: 1450}})),
		second(c1.AttachPort(ctx, &evpndv1.AttachPortRequest{Port: &evpndv1.Port{Interface: "tap-vm1", Tenant: "blue", Segment: "web"}})),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	vm2 := netip.MustParseAddr("172.31.1.2")
	lab.Eventually(t, converge, pollEvery, func() error {
		return lab.TCPExchange(t, l.NS("vm1"), l.NS("vm2"), vm2, 7201)
	})
	mac1 := strings.TrimSpace(string(must(l.Exec("vm1", "cat", "/sys/class/net/eth1/address"))))
	mac2 := strings.TrimSpace(string(must(l.Exec("vm2", "cat", "/sys/class/net/eth1/address"))))
	must(l.Exec("vm2", "ip", "link", "set", "dev", "eth1", "address", mac1))

	frozen := func() (node string, dup *evpndv1.DuplicateMac) {
		for node, c := range map[string]evpndv1.EvpndServiceClient{"host1": c1, "host2": c2} {
			resp, err := c.ListDuplicateMacs(ctx, &evpndv1.ListDuplicateMacsRequest{})
			if err != nil {
				t.Fatalf("%s: list duplicates: %v", node, err)
			}
			if len(resp.GetMacs()) > 0 {
				return node, resp.GetMacs()[0]
			}
		}
		return "", nil
	}
	// host1's FDB says where the MAC is: local (on tap-vm1) or at host2.
	where := func() string {
		fdb, err := lab.FDB(l.TenantNS("host1", "blue"), "br100")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range fdb {
			if strings.EqualFold(e.MAC, mac1) {
				return e.Ifname
			}
		}
		return ""
	}
	// Talk from each side in turn, waiting for host1 to see each move,
	// until one host freezes the MAC.
	var node string
	var dup *evpndv1.DuplicateMac
	for i := 0; i < 20 && dup == nil; i++ {
		from, want := "vm1", "tap-vm1"
		if i%2 == 1 {
			from, want = "vm2", "vx100"
		}
		_ = lab.Poll(5*time.Second, 20*time.Millisecond, func() error {
			if err := lab.Knock(l.NS(from), netip.MustParseAddr("172.31.1.99")); err != nil {
				return err
			}
			if got := where(); got != want {
				return fmt.Errorf("host1 has %s on %q, want %q", mac1, got, want)
			}
			return nil
		})
		node, dup = frozen()
	}
	if dup == nil {
		t.Fatal("20 moves of one MAC between two hosts, and no host froze it")
	}
	if dup.GetMac() != mac1 || dup.GetVni() != 100 || dup.GetTenant() != "blue" || dup.GetMoves() < 5 {
		t.Fatalf("%s froze %v; want %s in blue/100 after at least 5 moves", node, dup, mac1)
	}
	// Frozen on host1: more talk from the other side does not move it.
	if node == "host1" {
		at := where()
		for _, from := range []string{"vm1", "vm2", "vm1", "vm2"} {
			if err := lab.Knock(l.NS(from), netip.MustParseAddr("172.31.1.99")); err != nil {
				t.Fatal(err)
			}
		}
		if now := where(); now != at && !(at == "vx100" && now == "tap-vm1") {
			t.Fatalf("frozen MAC moved on host1 from %s to %s", at, now)
		}
		lab.Eventually(t, converge, pollEvery, func() error {
			text, err := scrape(l.NS("host1"), "127.0.0.1:9469")
			if err != nil {
				return err
			}
			if v, ok := sample(text, "evpnd_mac_duplicates_frozen"); !ok || v != 1 {
				return fmt.Errorf("evpnd_mac_duplicates_frozen = %v (present %v), want 1", v, ok)
			}
			return nil
		})
	}

	if out := string(must(l.Evpnctl(node, "show", "evpn", "duplicates"))); !strings.Contains(out, mac1) {
		t.Fatalf("evpnctl show evpn duplicates on %s lacks %s:\n%s", node, mac1, out)
	}
	// Fix the conflict, then clear it on every host that froze it (each
	// detects on its own, as RFC 7432 has it): no host lists it any more.
	must(l.Exec("vm2", "ip", "link", "set", "dev", "eth1", "address", mac2))
	// vm2's old claim on mac1 ages out of host2's bridge (300 s in the
	// kernel; the test does not wait for that).
	_, _ = lab.ExecNS(l.TenantNS("host2", "blue"), "bridge", "fdb", "del", mac1, "dev", "tap-vm2", "master")
	// Each host decides on its own, and one may freeze the MAC a moment
	// after another: clear until no host lists it.
	lab.Eventually(t, converge, pollEvery, func() error {
		for _, h := range []string{"host1", "host2"} {
			if out, err := l.Evpnctl(h, "show", "evpn", "duplicates", "-o", "json"); err != nil || !strings.Contains(string(out), mac1) {
				continue
			}
			if out, err := l.Evpnctl(h, "clear", "duplicate-mac", "100", mac1); err != nil {
				t.Fatalf("clear on %s: %v: %s", h, err, out)
			}
		}
		if n, d := frozen(); d != nil {
			return fmt.Errorf("%s still lists %v", n, d)
		}
		return nil
	})
	if _, err := l.Evpnctl(node, "clear", "duplicate-mac", "100", mac1); err == nil || !strings.Contains(err.Error(), "not frozen") {
		t.Fatalf("clearing a MAC that is not frozen: %v, want a 'not frozen' error", err)
	}
	lab.Eventually(t, converge, pollEvery, func() error {
		// vm1 talks first, so host1 learns (and advertises) mac1 again.
		if err := lab.Knock(l.NS("vm1"), netip.MustParseAddr("172.31.1.99")); err != nil {
			return err
		}
		return lab.TCPExchange(t, l.NS("vm1"), l.NS("vm2"), vm2, 7202)
	})
}
