// Package policybench owns evpnd's policy benchmarks: how long the policy
// engine takes to compile and apply a large tenant policy (P1), to apply
// small policies to many tenants (P2) and to apply a one-rule change (P3),
// and what a large policy costs bridged TCP throughput between two
// workloads (P4). Every run builds fresh, uniquely named namespaces laid
// out as evpnd's fabric builds a tenant and deletes them again, also when
// the context is cancelled; Sweep removes those of killed runs.
//
// integration/cmd/bench prints the figures next to the targets of the
// performance issue; the integration package's smoke test runs the same
// code at a tiny size. Figures are printed, never asserted.
package policybench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"time"

	"github.com/evpnd/evpnd/policy"
)

// Targets from the performance issue, printed for context.
const (
	TargetApply10k       = 100 * time.Millisecond
	TargetChange         = 5 * time.Millisecond
	TargetThroughputRate = 0.95
)

// Options size the runs. The zero value of a field means its default.
type Options struct {
	// Rules are the policy sizes of P1 and P3 (default 1000, 10000).
	Rules []int
	// Tenants is the tenant count of P2 (default 1000; negative skips P2)
	// and TenantRules the rules of each tenant's policy (default 10).
	Tenants     int
	TenantRules int
	// ThroughputRules is the policy size of P4 (default the largest of
	// Rules; negative skips P4).
	ThroughputRules int
	// Duration is one iperf3 run (default 5 s), Repeats how many runs and
	// applies each median is taken over (default 3).
	Duration time.Duration
	Repeats  int
	// Iperf is the iperf3 binary (default iperf3 on PATH).
	Iperf string
	// Logf receives progress lines; silent when nil.
	Logf func(format string, args ...any)
}

func (o *Options) defaults() {
	if len(o.Rules) == 0 {
		o.Rules = []int{1000, 10000}
	}
	if o.Tenants == 0 {
		o.Tenants = 1000
	}
	if o.TenantRules == 0 {
		o.TenantRules = 10
	}
	if o.ThroughputRules == 0 {
		o.ThroughputRules = slices.Max(o.Rules)
	}
	if o.Duration == 0 {
		o.Duration = 5 * time.Second
	}
	if o.Repeats == 0 {
		o.Repeats = 3
	}
	if o.Iperf == "" {
		o.Iperf = "iperf3"
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
}

// Result holds every figure of one run.
type Result struct {
	Scale      []Scale     `json:"scale"`
	Tenants    *Tenants    `json:"tenants,omitempty"`
	Throughput *Throughput `json:"throughput,omitempty"`
}

// Scale is P1 and P3 for one policy size in one tenant. Durations are
// medians over Options.Repeats.
type Scale struct {
	Rules int `json:"rules"`
	// NftRules is the number of rules in evpnd's nftables tables after
	// the apply, read back from the kernel.
	NftRules int `json:"nft_rules"`
	// NftElements is the number of elements of evpnd's run sets then:
	// rules held as set elements (see policy.RunPrefix).
	NftElements int `json:"nft_run_elements"`
	// Compile is policy.Compile alone; Apply is Engine.Apply of the policy
	// into a namespace without evpnd tables (validate, compile, one
	// batch, kernel commit).
	Compile time.Duration `json:"compile_ns"`
	Apply   time.Duration `json:"apply_ns"`
	// Change is Engine.Apply of the same policy with one rule's ports
	// changed.
	Change time.Duration `json:"change_ns"`
	// ApplyCommit and ChangeCommit are the parts of Apply and Change the
	// kernel took to take in and commit the batch (policy.Applied.Commit):
	// the floor under each while the ruleset has this many kernel rules.
	ApplyCommit  time.Duration `json:"apply_commit_ns,omitempty"`
	ChangeCommit time.Duration `json:"change_commit_ns,omitempty"`
}

// Tenants is P2: one small policy applied to each of many tenants, each in
// its own namespace, one after the other.
type Tenants struct {
	Tenants   int           `json:"tenants"`
	RulesEach int           `json:"rules_each"`
	Total     time.Duration `json:"total_ns"`
	Median    time.Duration `json:"median_ns"`
	Max       time.Duration `json:"max_ns"`
	// NftRules is the kernel's rule count of one tenant.
	NftRules int `json:"nft_rules_each"`
}

// Throughput is P4: TCP between two workloads of one segment (bridged,
// br_netfilter on) without evpnd tables, with a policy of the one rule
// that allows the flow, and with the full policy, medians over Runs runs
// of Duration each, taken in turn. The one-rule policy tells the cost of
// filtering statefully at all (conntrack on every bridged packet) from
// the cost of the rule count.
type Throughput struct {
	Rules      int           `json:"rules"`
	Duration   time.Duration `json:"duration_ns"`
	Runs       int           `json:"runs"`
	NoPolicy   float64       `json:"no_policy_bps"`
	OneRule    float64       `json:"one_rule_bps"`
	WithPolicy float64       `json:"with_policy_bps"`
	Ratio      float64       `json:"ratio"` // WithPolicy / NoPolicy
	// OneRuleRatio is OneRule / NoPolicy and RulesRatio WithPolicy /
	// OneRule: what statefulness costs, and what the rules add to it.
	OneRuleRatio float64 `json:"one_rule_ratio"`
	RulesRatio   float64 `json:"rules_ratio"`
	// FlowRulePackets is the counter of FlowRule after the last run (the
	// policy is removed and applied again between runs): the connections
	// went through the policy and were allowed by it. Only their first
	// packets count; established packets pass before the rules.
	FlowRulePackets uint64    `json:"flow_rule_packets"`
	NoPolicyRuns    []float64 `json:"no_policy_runs_bps"`
	OneRuleRuns     []float64 `json:"one_rule_runs_bps"`
	WithPolicyRuns  []float64 `json:"with_policy_runs_bps"`
}

// Check reports what the benchmark needs and lacks.
func Check(opts Options) error {
	opts.defaults()
	if os.Geteuid() != 0 {
		return errors.New("policy benchmark needs root (network namespaces, nftables)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("policy benchmark needs ip (iproute2) to run iperf3 in namespaces: %w", err)
	}
	if opts.ThroughputRules >= 0 {
		if _, err := exec.LookPath(opts.Iperf); err != nil {
			return fmt.Errorf("policy benchmark needs iperf3 (apt-get install iperf3): %w", err)
		}
	}
	for i, n := range opts.Rules {
		if n < 1 {
			return fmt.Errorf("rules[%d]: %d is not a positive count", i, n)
		}
	}
	if opts.TenantRules < 1 {
		return fmt.Errorf("tenant rules: %d is not a positive count", opts.TenantRules)
	}
	return nil
}

// Run measures P1 and P3 for each size, then P2, then P4. One thing runs
// at a time: on a small machine parallel work would measure contention.
func Run(ctx context.Context, opts Options) (Result, error) {
	opts.defaults()
	var res Result
	if err := Check(opts); err != nil {
		return res, err
	}
	if removed, err := Sweep(); err != nil {
		opts.Logf("policy bench: sweeping namespaces of dead runs: %v", err)
	} else if len(removed) > 0 {
		opts.Logf("policy bench: swept %d namespaces of dead runs", len(removed))
	}
	for _, n := range opts.Rules {
		opts.Logf("policy bench: P1/P3 %d rules ...", n)
		sc, err := runScale(ctx, n, opts)
		if err != nil {
			return res, fmt.Errorf("%d rules: %w", n, err)
		}
		res.Scale = append(res.Scale, sc)
	}
	if opts.Tenants > 0 {
		opts.Logf("policy bench: P2 %d tenants x %d rules ...", opts.Tenants, opts.TenantRules)
		t, err := runTenants(ctx, opts)
		if err != nil {
			return res, fmt.Errorf("%d tenants: %w", opts.Tenants, err)
		}
		res.Tenants = &t
	}
	if opts.ThroughputRules > 0 {
		opts.Logf("policy bench: P4 throughput, no policy vs one rule vs %d rules, %d x %s each ...", opts.ThroughputRules, opts.Repeats, opts.Duration)
		t, err := runThroughput(ctx, opts)
		if err != nil {
			return res, fmt.Errorf("throughput: %w", err)
		}
		res.Throughput = &t
	}
	return res, nil
}

// tenantLab is one tenant namespace with the benchmark layout and,
// optionally, workload namespaces on flowClient and flowServer.
type tenantLab struct {
	tenant    *space
	workloads map[string]*space // port -> workload namespace
	all       []*space
}

// newTenantLab builds the layout in fresh namespaces named by nm with
// role; on error it removes what it made.
func newTenantLab(nm namer, role string, withWorkloads bool) (l *tenantLab, err error) {
	l = &tenantLab{workloads: map[string]*space{}}
	defer func() {
		if err != nil {
			l.remove()
			l = nil
		}
	}()
	if l.tenant, err = newSpace(nm.name(role)); err != nil {
		return l, err
	}
	l.all = append(l.all, l.tenant)
	if withWorkloads {
		for _, p := range []string{flowClient, flowServer} {
			w, err := newSpace(nm.name(role + "w" + p[len(p)-1:]))
			if err != nil {
				return l, err
			}
			l.all = append(l.all, w)
			l.workloads[p] = w
		}
	}
	for _, s := range layout {
		if err := l.tenant.addBridge(s.bridge, s.gw); err != nil {
			return l, err
		}
		for _, p := range s.ports {
			w := l.workloads[p.name]
			peer := "eth0"
			if w == nil {
				peer = "wl-" + p.name[len(p.name)-1:]
			}
			if err := l.tenant.addPort(p.name, s.bridge, peer, w, p.addr, s.gw.Addr()); err != nil {
				return l, err
			}
		}
	}
	return l, nil
}

// release closes the handles, keeping the namespaces.
func (l *tenantLab) release() {
	for _, s := range l.all {
		s.close()
	}
}

// remove closes and deletes every namespace of l.
func (l *tenantLab) remove() error {
	var errs []error
	for _, s := range l.all {
		s.close()
		if err := deleteNamespace(s.name); err != nil {
			errs = append(errs, err)
		}
	}
	l.all = nil
	return errors.Join(errs...)
}

// learn tells the engine every port's workload address, as the daemon's
// local learning does.
func learn(ctx context.Context, e policy.Engine, tenant string) error {
	for _, s := range layout {
		for _, p := range s.ports {
			if err := e.SetPortAddresses(ctx, tenant, p.name, []netip.Addr{p.addr.Addr()}); err != nil {
				return err
			}
		}
	}
	return nil
}

func portAddrs() map[string][]netip.Addr {
	m := map[string][]netip.Addr{}
	for _, s := range layout {
		for _, p := range s.ports {
			m[p.name] = []netip.Addr{p.addr.Addr()}
		}
	}
	return m
}

// newEngine returns a fresh engine; each measurement has its own, so no
// tenant state carries over between them.
func newEngine() (*policy.Nftables, error) {
	e, err := policy.New(policy.Options{})
	if err != nil {
		return nil, fmt.Errorf("policy engine: %w", err)
	}
	return e, nil
}

func runScale(ctx context.Context, n int, opts Options) (sc Scale, err error) {
	sc.Rules = n
	l, err := newTenantLab(newNamer(), "s", false)
	if err != nil {
		return sc, err
	}
	defer func() { err = errors.Join(err, l.remove()) }()
	e, err := newEngine()
	if err != nil {
		return sc, err
	}
	defer e.Close()
	const tenant = "bench"
	b := Binding(tenant, l.tenant.name)
	p := Generate(tenant, n)
	if err := learn(ctx, e, tenant); err != nil {
		return sc, err
	}
	addrs := portAddrs()
	var compiles, applies, changes, applyCommits, changeCommits []time.Duration
	for i := range opts.Repeats {
		if err := ctx.Err(); err != nil {
			return sc, err
		}
		start := time.Now()
		if _, err := policy.Compile(p, b, addrs); err != nil {
			return sc, fmt.Errorf("compile: %w", err)
		}
		compiles = append(compiles, time.Since(start))
		if i > 0 {
			// Back to a namespace without evpnd tables, so every apply
			// measured is a first one.
			if err := e.Remove(ctx, tenant); err != nil {
				return sc, err
			}
			if err := learn(ctx, e, tenant); err != nil {
				return sc, err
			}
		}
		start = time.Now()
		res, err := e.Apply(ctx, b, p)
		if err != nil {
			return sc, fmt.Errorf("apply: %w", err)
		}
		applies = append(applies, time.Since(start))
		applyCommits = append(applyCommits, res.Commit)
	}
	if sc.NftRules, err = countRules(l.tenant.ns); err != nil {
		return sc, err
	}
	if sc.NftElements, err = countRunElements(l.tenant.ns); err != nil {
		return sc, err
	}
	// P3: each repeat changes a different rule of the policy applied last,
	// so that each apply differs from the one before in one rule.
	q := p
	for i := range opts.Repeats {
		if err := ctx.Err(); err != nil {
			return sc, err
		}
		rule := (n - 1) * (i + 1) / (opts.Repeats + 1)
		q = ChangeOne(q, rule, uint16(60000+i))
		start := time.Now()
		res, err := e.Apply(ctx, b, q)
		if err != nil {
			return sc, fmt.Errorf("one-rule change: %w", err)
		}
		changes = append(changes, time.Since(start))
		changeCommits = append(changeCommits, res.Commit)
	}
	sc.Compile, sc.Apply, sc.Change = median(compiles), median(applies), median(changes)
	sc.ApplyCommit, sc.ChangeCommit = median(applyCommits), median(changeCommits)
	opts.Logf("policy bench: %d rules: %d nftables rules and %d run elements, compile %v, apply %v (kernel commit %v), one-rule change %v (kernel commit %v)",
		n, sc.NftRules, sc.NftElements, sc.Compile.Round(time.Microsecond), sc.Apply.Round(time.Microsecond), sc.ApplyCommit.Round(time.Microsecond),
		sc.Change.Round(time.Microsecond), sc.ChangeCommit.Round(time.Microsecond))
	return sc, nil
}

func runTenants(ctx context.Context, opts Options) (res Tenants, err error) {
	res = Tenants{Tenants: opts.Tenants, RulesEach: opts.TenantRules}
	nm := newNamer()
	labs := make([]*tenantLab, 0, opts.Tenants)
	defer func() {
		var errs []error
		for _, l := range labs {
			errs = append(errs, l.remove())
		}
		err = errors.Join(append([]error{err}, errs...)...)
	}()
	start := time.Now()
	for i := range opts.Tenants {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		l, err := newTenantLab(nm, fmt.Sprintf("t%d", i), false)
		if err != nil {
			return res, err
		}
		// The engine opens its own handles; keeping ours would double
		// the open descriptors.
		l.release()
		labs = append(labs, l)
	}
	opts.Logf("policy bench: %d tenant namespaces built in %v (not timed)", opts.Tenants, time.Since(start).Round(time.Millisecond))
	e, err := newEngine()
	if err != nil {
		return res, err
	}
	defer e.Close()
	per := make([]time.Duration, 0, opts.Tenants)
	var total time.Duration
	for i, l := range labs {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		tenant := fmt.Sprintf("t%04d", i)
		if err := learn(ctx, e, tenant); err != nil {
			return res, err
		}
		p := Generate(tenant, opts.TenantRules)
		start := time.Now()
		if _, err := e.Apply(ctx, Binding(tenant, l.tenant.name), p); err != nil {
			return res, fmt.Errorf("tenant %s: apply: %w", tenant, err)
		}
		d := time.Since(start)
		total += d
		per = append(per, d)
	}
	res.Total, res.Median, res.Max = total, median(per), slices.Max(per)
	// One tenant read back from the kernel, as evidence every apply landed
	// a whole ruleset; the counters of all tenants prove each is there.
	cs, err := e.Counters(ctx)
	if err != nil {
		return res, err
	}
	rules := 0
	for _, c := range cs {
		if !c.IsDefault() {
			rules++
		}
	}
	if want := opts.Tenants * opts.TenantRules; rules != want {
		return res, fmt.Errorf("%d rule counters across tenants after the applies, want %d", rules, want)
	}
	ns, err := openNamespace(labs[0].tenant.name)
	if err != nil {
		return res, err
	}
	defer ns.Close()
	if res.NftRules, err = countRules(ns); err != nil {
		return res, err
	}
	opts.Logf("policy bench: %d tenants: total %v, per tenant median %v, max %v",
		res.Tenants, res.Total.Round(time.Millisecond), res.Median.Round(time.Microsecond), res.Max.Round(time.Microsecond))
	return res, nil
}

func runThroughput(ctx context.Context, opts Options) (res Throughput, err error) {
	res = Throughput{Rules: opts.ThroughputRules, Duration: opts.Duration, Runs: opts.Repeats}
	l, err := newTenantLab(newNamer(), "x", true)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, l.remove()) }()
	if err := l.tenant.bridgeNetfilter(); err != nil {
		return res, err
	}
	e, err := newEngine()
	if err != nil {
		return res, err
	}
	defer e.Close()
	const tenant = "bench"
	b := Binding(tenant, l.tenant.name)
	p, one := Generate(tenant, opts.ThroughputRules), Generate(tenant, 1)
	srv, err := startIperfServer(ctx, opts.Iperf, l.workloads[flowServer].name)
	if err != nil {
		return res, err
	}
	defer srv.stop()
	server := portAddrs()[flowServer][0].String()
	client := l.workloads[flowClient].name
	for i := range opts.Repeats {
		// Alternating keeps slow drifts of the machine out of the ratio.
		if i > 0 {
			if err := e.Remove(ctx, tenant); err != nil {
				return res, err
			}
		}
		bps, err := iperfRun(ctx, opts.Iperf, client, server, opts.Duration)
		if err != nil {
			return res, fmt.Errorf("no policy: %w", err)
		}
		res.NoPolicyRuns = append(res.NoPolicyRuns, bps)
		if err := learn(ctx, e, tenant); err != nil {
			return res, err
		}
		if _, err := e.Apply(ctx, b, one); err != nil {
			return res, fmt.Errorf("apply one rule: %w", err)
		}
		bps, err = iperfRun(ctx, opts.Iperf, client, server, opts.Duration)
		if err != nil {
			return res, fmt.Errorf("with one rule: %w", err)
		}
		res.OneRuleRuns = append(res.OneRuleRuns, bps)
		if _, err := e.Apply(ctx, b, p); err != nil {
			return res, fmt.Errorf("apply: %w", err)
		}
		bps, err = iperfRun(ctx, opts.Iperf, client, server, opts.Duration)
		if err != nil {
			return res, fmt.Errorf("with %d rules: %w", opts.ThroughputRules, err)
		}
		res.WithPolicyRuns = append(res.WithPolicyRuns, bps)
		opts.Logf("policy bench: throughput run %d: no policy %.2f Gbit/s, one rule %.2f Gbit/s, %d rules %.2f Gbit/s",
			i+1, res.NoPolicyRuns[i]/1e9, res.OneRuleRuns[i]/1e9, opts.ThroughputRules, bps/1e9)
	}
	cs, err := e.Counters(ctx)
	if err != nil {
		return res, err
	}
	for _, c := range cs {
		if c.Tenant == tenant && c.Rule == FlowRule {
			res.FlowRulePackets = c.Packets
		}
	}
	res.NoPolicy, res.OneRule, res.WithPolicy = medianF(res.NoPolicyRuns), medianF(res.OneRuleRuns), medianF(res.WithPolicyRuns)
	res.Ratio = res.WithPolicy / res.NoPolicy
	res.OneRuleRatio, res.RulesRatio = res.OneRule/res.NoPolicy, res.WithPolicy/res.OneRule
	return res, nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

func medianF(fs []float64) float64 {
	s := slices.Clone(fs)
	slices.Sort(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}
