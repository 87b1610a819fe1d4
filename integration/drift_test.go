package integration

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
	"github.com/evpnd/evpnd/integration/lab"
)

// TestPrivilegedDriftRepair changes host1's kernel and nftables state by
// hand (a remote FDB entry, the VXLAN device, the policy table) and
// requires evpnd to put all of it back within its repair interval, with
// traffic and policy working again, while objects that are not evpnd's (a
// static neighbor, an nftables table) survive its repair passes.
func TestPrivilegedDriftRepair(t *testing.T) {
	requireLab(t)
	if _, err := os.Stat(filepath.Join("..", "bin", "evpnd")); err != nil {
		t.Skip("bin/evpnd is missing: run make build")
	}
	l := lab.Up(t, "topologies/api.clab.yml", lab.Options{})
	c := dialAPI(t, l, "host1")
	ctx := apiCtx(t)
	for _, err := range []error{
		second(c.CreateTenant(ctx, &evpndv1.CreateTenantRequest{Tenant: &evpndv1.Tenant{Name: "blue", L3Vni: 5000}})),
		second(c.CreateSegment(ctx, &evpndv1.CreateSegmentRequest{Segment: &evpndv1.Segment{
			Tenant: "blue", Name: "web", Vni: 100, Mtu: 1450, Gateway: []string{"172.31.1.254/24"}}})),
		second(c.AttachPort(ctx, &evpndv1.AttachPortRequest{Port: &evpndv1.Port{Interface: "tap-vm1", Tenant: "blue", Segment: "web"}})),
		second(c.CreatePolicy(ctx, &evpndv1.CreatePolicyRequest{Policy: &evpndv1.Policy{Tenant: "blue", Rules: []*evpndv1.Rule{
			{Name: "http", Priority: 10, Direction: "ingress", Port: "tap-vm1", Protocol: "tcp", Ports: []string{"80"}, Action: "allow"},
			{Name: "rest", Priority: 100, Direction: "ingress", Port: "tap-vm1", Action: "reject"}}}})),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	vm1, gw := netip.MustParseAddr("172.31.1.1"), netip.MustParseAddr("172.31.1.254")
	tenant := l.TenantNS("host1", "blue")
	mac2 := strings.TrimSpace(string(must(l.Exec("vm2", "cat", "/sys/class/net/eth1/address"))))
	working := func() error {
		if err := lab.Knock(l.NS("vm1"), gw); err != nil {
			return err
		}
		if err := lab.TCPExchange(t, l.NS("vm2"), l.NS("vm1"), vm1, 80); err != nil {
			return fmt.Errorf("vm2 -> vm1:80 (allowed): %w", err)
		}
		if err := lab.TCPExchange(t, l.NS("vm2"), l.NS("vm1"), vm1, 22); err == nil {
			return errors.New("vm2 -> vm1:22 passes; the policy rejects it")
		}
		return remoteFDB(tenant, mac2)
	}
	lab.Eventually(t, converge, pollEvery, working)

	// Someone else's objects, which repair must leave alone.
	for _, cmd := range [][]string{
		{"ip", "neigh", "add", "172.31.1.77", "lladdr", "02:00:00:00:00:77", "dev", "br100", "nud", "permanent"},
		{"nft", "add table inet other; add chain inet other c; add rule inet other c counter"},
	} {
		if out, err := lab.ExecNS(tenant, cmd...); err != nil {
			t.Fatalf("%v: %v: %s", cmd, err, out)
		}
	}
	for _, tamper := range [][]string{
		{"bridge", "fdb", "del", mac2, "dev", "vx100", "master"},
		{"ip", "link", "del", "vx100"},
		{"nft", "delete", "table", "inet", "evpnd"},
	} {
		if out, err := lab.ExecNS(tenant, tamper...); err != nil {
			t.Fatalf("%v: %v: %s", tamper, err, out)
		}
		lab.Eventually(t, converge, pollEvery, working)
	}
	if out, err := lab.ExecNS(tenant, "ip", "neigh", "show", "172.31.1.77"); err != nil || !strings.Contains(string(out), "02:00:00:00:00:77") {
		t.Fatalf("a static neighbor that is not evpnd's is gone after repair: %v: %s", err, out)
	}
	if out, err := lab.ExecNS(tenant, "nft", "list", "table", "inet", "other"); err != nil {
		t.Fatalf("an nftables table that is not evpnd's is gone after repair: %v: %s", err, out)
	}
	if log := readLog(t, l, "host1"); !strings.Contains(log, "repaired") && !strings.Contains(log, "re-applied") {
		t.Fatalf("host1 never logged a repair:\n%s", lab.Tail(filepath.Join(l.NodeDir("host1"), "evpnd.log"), 30))
	}
}

func second[T any](_ T, err error) error { return err }
