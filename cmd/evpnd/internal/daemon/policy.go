package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/evpnd/evpnd/policy"
)

// binding tells the policy engine where tenant lives on this host.
func (d *Daemon) binding(tenant string) (policy.Binding, bool) {
	for _, t := range d.cfg.Tenants {
		if t.Name != tenant {
			continue
		}
		b := policy.Binding{Tenant: t.Name, Namespace: d.cfg.NetnsPrefix + t.Name}
		for _, s := range t.Segments {
			b.Segments = append(b.Segments, policy.SegmentBinding{
				Name: s.Name, Bridge: fmt.Sprintf("br%d", s.VNI), Ports: slices.Clone(s.Ports)})
		}
		for _, p := range d.cfg.Policies {
			if p.Tenant == tenant && p.NAT != nil {
				b.Uplink = "uplink"
			}
		}
		return b, true
	}
	return policy.Binding{}, false
}

// applyPolicies applies every tenant's policy and advertises the addresses
// their NAT makes public. A policy the engine refuses leaves the tenant's
// previous one in force (none at start); the error is logged with the
// fields it names.
func (d *Daemon) applyPolicies(ctx context.Context) {
	var public []netip.Prefix
	for _, p := range d.cfg.Policies {
		b, ok := d.binding(p.Tenant)
		if !ok {
			continue
		}
		res, err := d.pol.Apply(ctx, b, p)
		if err != nil {
			d.log.Error("policy not applied", "tenant", p.Tenant, "err", err)
			continue
		}
		d.log.Info("policy applied", "tenant", p.Tenant, "rules", res.Rules, "took", res.Duration)
		for _, a := range p.PublicAddresses() {
			public = append(public, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	if len(public) == 0 {
		return
	}
	if err := d.speaker.AdvertiseUnicast(ctx, public, false); err != nil {
		d.log.Error("advertise public addresses", "err", err)
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
