package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"slices"

	"github.com/evpnd/evpnd/cmd/evpnd/internal/config"
	"github.com/evpnd/evpnd/policy"
)

// bindingOf tells the policy engine where tenant lives on this host under
// cfg.
func bindingOf(cfg *config.Config, tenant string) (policy.Binding, bool) {
	for _, t := range cfg.Tenants {
		if t.Name != tenant {
			continue
		}
		b := policy.Binding{Tenant: t.Name, Namespace: cfg.NetnsPrefix + t.Name}
		for _, s := range t.Segments {
			b.Segments = append(b.Segments, policy.SegmentBinding{
				Name: s.Name, Bridge: fmt.Sprintf("br%d", s.VNI), Ports: slices.Clone(s.Ports)})
		}
		for _, p := range cfg.Policies {
			if p.Tenant == tenant && p.NAT != nil {
				b.Uplink = "uplink"
			}
		}
		return b, true
	}
	return policy.Binding{}, false
}

func policiesByTenant(cfg *config.Config) map[string]policy.Policy {
	out := make(map[string]policy.Policy, len(cfg.Policies))
	for _, p := range cfg.Policies {
		out[p.Tenant] = p
	}
	return out
}

func publicAddresses(cfg *config.Config) map[netip.Prefix]bool {
	out := map[netip.Prefix]bool{}
	for _, p := range cfg.Policies {
		for _, a := range p.PublicAddresses() {
			out[netip.PrefixFrom(a, a.BitLen())] = true
		}
	}
	return out
}

// reconcilePolicies moves the kernel from old's policies to cfg's: it
// applies the policies that are new or changed (or whose tenant's shape
// changed), removes those that are gone, and advertises or withdraws the
// addresses their NAT makes public. A policy the engine refuses leaves the
// tenant's previous one in force; the error is logged with the fields it
// names.
func (d *Daemon) reconcilePolicies(ctx context.Context, old, cfg *config.Config) {
	was, now := policiesByTenant(old), policiesByTenant(cfg)
	for tenant, p := range now {
		b, ok := bindingOf(cfg, tenant)
		if !ok {
			continue
		}
		if op, had := was[tenant]; had && reflect.DeepEqual(op, p) {
			if ob, _ := bindingOf(old, tenant); reflect.DeepEqual(ob, b) {
				continue
			}
		}
		res, err := d.pol.Apply(ctx, b, p)
		d.metrics.PolicyApplied(tenant, res.Duration, err)
		d.metrics.ReconcileDone("policy", err)
		if err != nil {
			d.log.Error("policy not applied", "tenant", tenant, "err", err)
			continue
		}
		d.log.Info("policy applied", "tenant", tenant, "rules", res.Rules, "took", res.Duration, "kernel_commit", res.Commit)
		d.restorePortAddresses(ctx, tenant)
	}
	for tenant := range was {
		if _, ok := now[tenant]; ok {
			continue
		}
		err := d.pol.Remove(ctx, tenant)
		d.metrics.ReconcileDone("policy", err)
		if err != nil {
			d.log.Error("policy not removed", "tenant", tenant, "err", err)
			continue
		}
		d.metrics.ForgetTenant(tenant)
		d.log.Info("policy removed", "tenant", tenant)
	}

	pubOld, pubNew := publicAddresses(old), publicAddresses(cfg)
	var add, del []netip.Prefix
	for p := range pubNew {
		if !pubOld[p] {
			add = append(add, p)
		}
	}
	for p := range pubOld {
		if !pubNew[p] {
			del = append(del, p)
		}
	}
	if len(add) > 0 {
		if err := d.speaker.AdvertiseUnicast(ctx, add, false); err != nil {
			d.log.Error("advertise public addresses", "err", err)
		}
	}
	if len(del) > 0 {
		if err := d.speaker.AdvertiseUnicast(ctx, del, true); err != nil {
			d.log.Error("withdraw public addresses", "err", err)
		}
	}
}

// restorePortAddresses hands a freshly applied policy the addresses
// already learned on the tenant's ports.
func (d *Daemon) restorePortAddresses(ctx context.Context, tenant string) {
	ports := map[string]bool{}
	for _, lm := range d.local {
		if lm.tenant == tenant && len(lm.ips) > 0 {
			ports[lm.port] = true
		}
	}
	for p := range ports {
		d.portAddressesChanged(ctx, tenant, p)
	}
}

// portAddressesChanged hands the engine the addresses now learned on a
// workload port, so rules targeting it (or its groups) follow.
func (d *Daemon) portAddressesChanged(ctx context.Context, tenant, port string) {
	if port == "" {
		return
	}
	var addrs []netip.Addr
	for _, lm := range d.local {
		if lm.tenant != tenant || lm.port != port {
			continue
		}
		for ip := range lm.ips {
			addrs = append(addrs, ip)
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	if err := d.pol.SetPortAddresses(ctx, tenant, port, addrs); err != nil {
		d.log.Error("policy port addresses", "tenant", tenant, "port", port, "err", err)
	}
}
