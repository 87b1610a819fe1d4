package policy

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/nftables"
)

// Repair re-applies the policy of every tenant whose evpnd tables were
// deleted or changed behind evpnd's back (a chain or a rule added or
// removed), and the QoS of every tenant whose ports' qdiscs and classes
// were (rule edits do not read tc back), and returns the tenants it
// repaired, sorted. Only evpnd's own tables and its ports' tc state are
// read and changed; nothing else in the namespace is touched.
func (e *Nftables) Repair(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	type job struct {
		b Binding
		p Policy
	}
	var (
		jobs []job
		errs []error
		qos  []string
	)
	e.mu.Lock()
	for name, t := range e.tenants {
		ok, err := intact(t)
		if err != nil {
			errs = append(errs, fmt.Errorf("tenant %s: check tables: %w", name, err))
			continue
		}
		if !ok {
			jobs = append(jobs, job{t.snap.b, t.snap.p})
			continue
		}
		if fixed, err := repairQoS(t); err != nil {
			errs = append(errs, fmt.Errorf("tenant %s: repair qos: %w", name, err))
		} else if fixed {
			e.log.Warn("policy qos was changed outside evpnd; re-applied", "tenant", name)
			qos = append(qos, name)
		}
	}
	e.mu.Unlock()
	repaired := qos
	for _, j := range jobs {
		// Drifted tables are replaced whole: what the engine knows of
		// them no longer holds.
		if _, err := e.apply(ctx, j.b, j.p, true); err != nil {
			errs = append(errs, fmt.Errorf("tenant %s: repair: %w", j.b.Tenant, err))
			continue
		}
		e.log.Warn("policy tables were changed outside evpnd; re-applied", "tenant", j.b.Tenant)
		repaired = append(repaired, j.b.Tenant)
	}
	slices.Sort(repaired)
	return repaired, errors.Join(errs...)
}

// repairQoS brings t's ports' tc state back to its policy's QoS, and
// reports whether anything had to change.
func repairQoS(t *tenantState) (bool, error) {
	if t.snap == nil {
		return false, nil
	}
	// What cannot be planned (a port not there yet) the apply reported;
	// it is not repeated every pass.
	ops, err := planQoS(t.h, t.snap.p.QoS)
	if len(ops) == 0 {
		return false, nil
	}
	return true, errors.Join(err, execQoS(t.h, ops))
}

// intact reports whether t's tables hold exactly the chains, and per chain
// as many rules, as evpnd installed.
func intact(t *tenantState) (bool, error) {
	if t.rs == nil {
		return true, nil
	}
	for _, want := range []*nftTable{t.rs.inet, t.rs.bridge} {
		chains, err := t.conn.ListChainsOfTableFamily(want.family)
		if err != nil {
			return false, err
		}
		got := map[string]*nftables.Chain{}
		for _, c := range chains {
			if c.Table != nil && c.Table.Name == want.name {
				got[c.Name] = c
			}
		}
		if len(got) != len(want.chains) {
			return false, nil
		}
		tbl := &nftables.Table{Family: want.family, Name: want.name}
		for _, ch := range want.chains {
			c, ok := got[ch.name]
			if !ok {
				return false, nil
			}
			rules, err := t.conn.GetRules(tbl, c)
			if err != nil {
				return false, err
			}
			if len(rules) != len(ch.rules) {
				return false, nil
			}
		}
	}
	return true, nil
}
