package integration

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/evpnd/evpnd/integration/lab"
)

// TestPrivilegedEvpnctlSession runs the README's evpnctl session against a
// real evpnd (host1 of the API lab, which starts with no tenants): create
// a tenant and a segment, attach vm1's port, see traffic to vm2 flow, apply
// a policy from a file and see it take effect, read its counters.
func TestPrivilegedEvpnctlSession(t *testing.T) {
	requireLab(t)
	for _, b := range []string{"evpnd", "evpnctl"} {
		if _, err := os.Stat(filepath.Join("..", "bin", b)); err != nil {
			t.Skipf("bin/%s is missing: run make build", b)
		}
	}
	l := lab.Up(t, "topologies/api.clab.yml", lab.Options{})
	run := func(args ...string) string {
		t.Helper()
		out, err := l.Evpnctl("host1", args...)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	// Routed (an L3VNI and an anycast gateway): the policy engine keys
	// port rules by the addresses evpnd learns on the port, which it
	// learns from the tenant's neighbor table.
	run("tenant", "create", "blue", "--l3vni", "5000")
	run("segment", "create", "blue", "web", "--vni", "100", "--mtu", "1450", "--gateway", "172.31.1.254/24")
	run("port", "attach", "tap-vm1", "--tenant", "blue", "--segment", "web")
	if out := run("segment", "list"); !strings.Contains(out, "tap-vm1") || !strings.Contains(out, "api") {
		t.Fatalf("segment list does not show the attached port and source:\n%s", out)
	}

	vm1, gw := netip.MustParseAddr("172.31.1.1"), netip.MustParseAddr("172.31.1.254")
	lab.Eventually(t, converge, pollEvery, func() error {
		if err := lab.Knock(l.NS("vm1"), gw); err != nil {
			return err
		}
		return lab.TCPExchange(t, l.NS("vm2"), l.NS("vm1"), vm1, 22)
	})
	if out := run("show", "evpn", "macs", "--tenant", "blue"); !strings.Contains(out, "10.0.0.2") {
		t.Fatalf("MAC table lacks vm2 behind VTEP 10.0.0.2:\n%s", out)
	}

	pol, err := filepath.Abs("testdata/blue-web-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if out := run("policy", "apply", "-f", pol); !strings.Contains(out, "created") {
		t.Fatalf("policy apply: %s", out)
	}
	lab.Eventually(t, converge, pollEvery, func() error {
		if err := lab.TCPExchange(t, l.NS("vm2"), l.NS("vm1"), vm1, 80); err != nil {
			return fmt.Errorf("port 80 should be allowed: %w", err)
		}
		if err := lab.TCPExchange(t, l.NS("vm2"), l.NS("vm1"), vm1, 22); err == nil {
			return errors.New("port 22 still reaches vm1 under the policy")
		}
		return nil
	})
	// Applying the same file again changes nothing.
	if out := run("policy", "apply", "-f", pol); !strings.Contains(out, "unchanged") {
		t.Fatalf("second policy apply: %s", out)
	}
	counters := run("policy", "counters", "--tenant", "blue")
	for _, rule := range []string{"http", "rest"} {
		if !strings.Contains(counters, rule) {
			t.Fatalf("counters lack rule %s:\n%s", rule, counters)
		}
	}
}
