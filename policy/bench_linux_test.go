package policy_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"os/exec"
	"testing"

	"github.com/evpnd/evpnd/integration/cmd/bench/policybench"
	"github.com/evpnd/evpnd/policy"
)

// BenchmarkPrivilegedOneRuleChange applies a one-rule change to an
// applied 10,000-rule policy, as the policy bench's P3 does.
func BenchmarkPrivilegedOneRuleChange(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: creates a network namespace and nftables tables")
	}
	buf := make([]byte, 3)
	rand.Read(buf)
	ns := "pbench-" + hex.EncodeToString(buf)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		b.Fatalf("ip netns add: %v: %s", err, out)
	}
	b.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	e, err := policy.New(policy.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	ctx := context.Background()
	for port, a := range map[string]string{"tap-a": "10.0.1.11", "tap-b": "10.0.1.12", "tap-c": "10.0.1.13", "tap-d": "10.0.2.21", "tap-e": "10.0.2.22"} {
		if err := e.SetPortAddresses(ctx, "bench", port, []netip.Addr{netip.MustParseAddr(a)}); err != nil {
			b.Fatal(err)
		}
	}
	const n = 10000
	p := policybench.Generate("bench", n)
	bind := policybench.Binding("bench", ns)
	if _, err := e.Apply(ctx, bind, p); err != nil {
		b.Fatal(err)
	}
	// Each apply changes one rule of the policy applied before it.
	for i := 0; b.Loop(); i++ {
		p = policybench.ChangeOne(p, (n-1)*(i%97+1)/98, uint16(60000+i%1000))
		if _, err := e.Apply(ctx, bind, p); err != nil {
			b.Fatal(err)
		}
	}
}
