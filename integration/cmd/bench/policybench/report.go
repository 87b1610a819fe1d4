package policybench

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Print writes r as a table of figures with units, next to the targets of
// the performance issue. Nothing here passes or fails.
func Print(w io.Writer, r Result) {
	fmt.Fprintf(w, "policy: compile = policy.Compile; apply = Engine.Apply into a namespace without evpnd tables (validate, compile, one nftables batch, commit); change = Engine.Apply with one rule's ports changed; kernel commit alone = the part of either from sending the batch to the kernel's acknowledgement (the floor under it for this many kernel rules and run elements: most rules are elements of a few counted sets per chain, see docs/optimizations.md 16-18); medians\n")
	fmt.Fprintf(w, "targets (performance issue, for context, not asserted): 10k rules applied under %v, one change under %v, throughput ratio at least %.2f\n\n",
		TargetApply10k, TargetChange, TargetThroughputRate)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "test\tfigure\t%10s\tunit\t\n", "value")
	for _, s := range r.Scale {
		p1 := fmt.Sprintf("P1 %d rules", s.Rules)
		fmt.Fprintf(tw, "%s\tnftables rules\t%10d\trules\t\n", p1, s.NftRules)
		fmt.Fprintf(tw, "%s\tnftables run elements\t%10d\telements\t\n", p1, s.NftElements)
		fmt.Fprintf(tw, "%s\tcompile\t%10s\tms\t\n", p1, ms(s.Compile))
		fmt.Fprintf(tw, "%s\tapply\t%10s\tms\t\n", p1, ms(s.Apply))
		if s.ApplyCommit > 0 {
			fmt.Fprintf(tw, "%s\tapply: kernel commit alone\t%10s\tms\t\n", p1, ms(s.ApplyCommit))
		}
		fmt.Fprintf(tw, "P3 %d rules\tone-rule change\t%10s\tms\t\n", s.Rules, ms(s.Change))
		if s.ChangeCommit > 0 {
			fmt.Fprintf(tw, "P3 %d rules\tone-rule change: kernel commit alone\t%10s\tms\t\n", s.Rules, ms(s.ChangeCommit))
		}
	}
	if t := r.Tenants; t != nil {
		p2 := fmt.Sprintf("P2 %d tenants x %d rules", t.Tenants, t.RulesEach)
		fmt.Fprintf(tw, "%s\tnftables rules per tenant\t%10d\trules\t\n", p2, t.NftRules)
		fmt.Fprintf(tw, "%s\ttotal apply\t%10s\tms\t\n", p2, ms(t.Total))
		fmt.Fprintf(tw, "%s\tapply per tenant, median\t%10s\tms\t\n", p2, ms(t.Median))
		fmt.Fprintf(tw, "%s\tapply per tenant, max\t%10s\tms\t\n", p2, ms(t.Max))
	}
	if t := r.Throughput; t != nil {
		p4 := fmt.Sprintf("P4 TCP, %d x %v", t.Runs, t.Duration)
		fmt.Fprintf(tw, "%s\tno policy\t%10.2f\tGbit/s\t\n", p4, t.NoPolicy/1e9)
		fmt.Fprintf(tw, "%s\twith 1 rule\t%10.2f\tGbit/s\t\n", p4, t.OneRule/1e9)
		fmt.Fprintf(tw, "%s\twith %d rules\t%10.2f\tGbit/s\t\n", p4, t.Rules, t.WithPolicy/1e9)
		fmt.Fprintf(tw, "%s\tratio with/without\t%10.3f\t\t\n", p4, t.Ratio)
		fmt.Fprintf(tw, "%s\tratio 1 rule/without (stateful filtering)\t%10.3f\t\t\n", p4, t.OneRuleRatio)
		fmt.Fprintf(tw, "%s\tratio %d rules/1 rule (rule count)\t%10.3f\t\t\n", p4, t.Rules, t.RulesRatio)
		fmt.Fprintf(tw, "%s\tflow rule counter, last run\t%10d\tpackets\t\n", p4, t.FlowRulePackets)
	}
	tw.Flush()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }
