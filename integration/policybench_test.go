package integration

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/evpnd/evpnd/integration/cmd/bench/policybench"
)

// TestPrivilegedPolicyBenchSmoke runs `make bench`'s policy suite at a tiny
// size (50 rules, 5 tenants, 1 s throughput runs) and checks that every
// policy reached the kernel and that TCP flowed with and without the
// policy, through the rule that allows it. Figures are logged, never
// asserted.
func TestPrivilegedPolicyBenchSmoke(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the policy benchmark smoke test needs root (network namespaces, nftables); run with sudo")
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Skip("the policy benchmark smoke test needs iperf3 (apt-get install iperf3)")
	}
	const rules, tenants, tenantRules = 50, 5, 10
	opts := policybench.Options{
		Rules:       []int{rules},
		Tenants:     tenants,
		TenantRules: tenantRules,
		Duration:    time.Second,
		Logf:        t.Logf,
	}
	res, err := policybench.Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	policybench.Print(&out, res)
	t.Logf("\n%s", out.String())

	if len(res.Scale) != 1 || res.Scale[0].Rules != rules {
		t.Fatalf("scale results %+v: want one for %d rules", res.Scale, rules)
	}
	// Every policy rule is at least one nftables rule or run element, and
	// the table has dispatch and conntrack rules besides.
	if s := res.Scale[0]; s.NftRules+s.NftElements <= rules || s.NftElements == 0 {
		t.Errorf("%d rules and %d run elements in the kernel after applying %d policy rules: want more, some in runs",
			s.NftRules, s.NftElements, rules)
	}
	if tr := res.Tenants; tr == nil || tr.Tenants != tenants || tr.NftRules <= tenantRules {
		t.Errorf("tenants result %+v: want %d tenants with more than %d kernel rules each", tr, tenants, tenantRules)
	}
	th := res.Throughput
	if th == nil {
		t.Fatal("no throughput result")
	}
	if len(th.NoPolicyRuns) != 3 || len(th.OneRuleRuns) != 3 || len(th.WithPolicyRuns) != 3 {
		t.Errorf("throughput runs %d without policy, %d with one rule and %d with the policy, want 3 each",
			len(th.NoPolicyRuns), len(th.OneRuleRuns), len(th.WithPolicyRuns))
	}
	for i := range min(len(th.NoPolicyRuns), len(th.OneRuleRuns), len(th.WithPolicyRuns)) {
		if th.NoPolicyRuns[i] <= 0 || th.OneRuleRuns[i] <= 0 || th.WithPolicyRuns[i] <= 0 {
			t.Errorf("run %d: %.0f bit/s without policy, %.0f with one rule, %.0f with the policy: want traffic in all",
				i, th.NoPolicyRuns[i], th.OneRuleRuns[i], th.WithPolicyRuns[i])
		}
	}
	if th.FlowRulePackets == 0 {
		t.Errorf("counter of rule %s did not move: the flow did not go through the policy", policybench.FlowRule)
	}
	if left := benchNamespaces(t); len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
}

// benchNamespaces lists the namespaces this process's policy benchmark
// runs made and did not delete.
func benchNamespaces(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("/run/netns")
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	prefix := "evpb" + strconv.Itoa(os.Getpid()) + "-"
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	return names
}
