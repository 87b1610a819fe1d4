package config

import (
	"fmt"
	"slices"
	"strings"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
)

// Objects created through the API join the file's: they are written as
// the same definitions (TenantDef, SegmentDef, PolicyDef), merged into one
// File and validated as a whole, so an API object obeys exactly the rules a
// config file does and the two can never disagree about what is valid.

// APIObjects are the objects created through the API, as stored.
type APIObjects struct {
	Tenants  []*evpndv1.Tenant
	Segments []*evpndv1.Segment
	Ports    []*evpndv1.Port
	Policies []*evpndv1.Policy
}

// Placement says where Merge put each API object in the merged File, so a
// problem reported at a file path can be handed back to the API object it
// belongs to.
type Placement struct {
	Tenants  map[string]string    // tenant name -> "tenants[i]"
	Segments map[[2]string]string // tenant, segment -> "tenants[i].segments[j]"
	Ports    map[string]string    // interface -> "tenants[i].segments[j].ports[k]"
	Policies map[string]string    // tenant -> "policies[i]"
}

// Merge returns f with objs added: API tenants after the file's, API
// segments after their tenant's segments, API ports after their segment's
// ports, API policies after the file's. An object whose parent is missing
// is a problem; everything else (duplicates, ranges, references) is left to
// Validate on the result.
func Merge(f File, objs APIObjects) (File, Placement, []string) {
	out := f
	out.Tenants = make([]TenantDef, len(f.Tenants))
	for i, t := range f.Tenants {
		t.Segments = slices.Clone(t.Segments)
		for j := range t.Segments {
			t.Segments[j].Ports = slices.Clone(t.Segments[j].Ports)
		}
		out.Tenants[i] = t
	}
	out.Policies = slices.Clone(f.Policies)
	pl := Placement{Tenants: map[string]string{}, Segments: map[[2]string]string{},
		Ports: map[string]string{}, Policies: map[string]string{}}
	var probs []string

	for _, t := range objs.Tenants {
		pl.Tenants[t.GetName()] = fmt.Sprintf("tenants[%d]", len(out.Tenants))
		out.Tenants = append(out.Tenants, TenantDefFromProto(t))
	}
	tenantIdx := func(name string) int {
		// The last one wins: a file tenant shadowed by an API tenant of the
		// same name is a duplicate Validate reports.
		for i := len(out.Tenants) - 1; i >= 0; i-- {
			if out.Tenants[i].Name == name {
				return i
			}
		}
		return -1
	}
	for _, s := range objs.Segments {
		i := tenantIdx(s.GetTenant())
		if i < 0 {
			probs = append(probs, fmt.Sprintf("segment %s/%s: tenant %q does not exist", s.GetTenant(), s.GetName(), s.GetTenant()))
			continue
		}
		pl.Segments[[2]string{s.GetTenant(), s.GetName()}] = fmt.Sprintf("tenants[%d].segments[%d]", i, len(out.Tenants[i].Segments))
		out.Tenants[i].Segments = append(out.Tenants[i].Segments, SegmentDefFromProto(s))
	}
	for _, p := range objs.Ports {
		i := tenantIdx(p.GetTenant())
		j := -1
		if i >= 0 {
			j = slices.IndexFunc(out.Tenants[i].Segments, func(s SegmentDef) bool { return s.Name == p.GetSegment() })
		}
		if j < 0 {
			probs = append(probs, fmt.Sprintf("port %s: segment %s/%s does not exist", p.GetInterface(), p.GetTenant(), p.GetSegment()))
			continue
		}
		seg := &out.Tenants[i].Segments[j]
		pl.Ports[p.GetInterface()] = fmt.Sprintf("tenants[%d].segments[%d].ports[%d]", i, j, len(seg.Ports))
		seg.Ports = append(seg.Ports, p.GetInterface())
	}
	for _, p := range objs.Policies {
		pl.Policies[p.GetTenant()] = fmt.Sprintf("policies[%d]", len(out.Policies))
		out.Policies = append(out.Policies, PolicyDefFromProto(p))
	}
	return out, pl, probs
}

// Problem is one validation problem split into the path it names and what
// is wrong there.
type Problem struct {
	Path, Description string
}

// SplitProblem splits "path: description".
func SplitProblem(s string) Problem {
	path, desc, ok := strings.Cut(s, ": ")
	if !ok || strings.ContainsAny(path, " \"") {
		return Problem{Description: s}
	}
	return Problem{Path: path, Description: desc}
}

// APIField turns the part of a file path below an object into the API's
// field path: "route-targets.import[0]" -> "route_targets.import[0]".
func APIField(rest string) string {
	return strings.ReplaceAll(rest, "-", "_")
}

// TenantDefFromProto is the file form of an API tenant (without segments).
func TenantDefFromProto(t *evpndv1.Tenant) TenantDef {
	d := TenantDef{
		Name:         t.GetName(),
		L3VNI:        t.GetL3Vni(),
		AnycastMAC:   t.GetAnycastGatewayMac(),
		RouteTargets: rtDefFromProto(t.GetRouteTargets()),
	}
	if t.AdvertiseConnected != nil {
		v := t.GetAdvertiseConnected()
		d.AdvertiseConnected = &v
	}
	for _, r := range t.GetRoutes() {
		d.Routes = append(d.Routes, RouteDef{Prefix: r.GetPrefix(), Via: r.GetVia()})
	}
	return d
}

// TenantToProto is the API form of a tenant definition.
func TenantToProto(d TenantDef) *evpndv1.Tenant {
	t := &evpndv1.Tenant{
		Name:              d.Name,
		L3Vni:             d.L3VNI,
		AnycastGatewayMac: d.AnycastMAC,
		RouteTargets:      rtToProto(d.RouteTargets),
	}
	if d.AdvertiseConnected != nil {
		v := *d.AdvertiseConnected
		t.AdvertiseConnected = &v
	}
	for _, r := range d.Routes {
		t.Routes = append(t.Routes, &evpndv1.StaticRoute{Prefix: r.Prefix, Via: r.Via})
	}
	return t
}

// SegmentDefFromProto is the file form of an API segment (without ports).
func SegmentDefFromProto(s *evpndv1.Segment) SegmentDef {
	return SegmentDef{
		Name:         s.GetName(),
		VNI:          s.GetVni(),
		MTU:          int(s.GetMtu()),
		Gateway:      slices.Clone(s.GetGateway()),
		RouteTargets: rtDefFromProto(s.GetRouteTargets()),
	}
}

// SegmentToProto is the API form of a segment definition, ports included.
func SegmentToProto(tenant string, d SegmentDef) *evpndv1.Segment {
	return &evpndv1.Segment{
		Tenant:       tenant,
		Name:         d.Name,
		Vni:          d.VNI,
		Mtu:          int32(d.MTU),
		Gateway:      slices.Clone(d.Gateway),
		RouteTargets: rtToProto(d.RouteTargets),
		Ports:        slices.Clone(d.Ports),
	}
}

func rtDefFromProto(rt *evpndv1.RouteTargets) RTFile {
	return RTFile{Import: slices.Clone(rt.GetImport()), Export: slices.Clone(rt.GetExport())}
}

func rtToProto(rt RTFile) *evpndv1.RouteTargets {
	if len(rt.Import) == 0 && len(rt.Export) == 0 {
		return nil
	}
	return &evpndv1.RouteTargets{Import: slices.Clone(rt.Import), Export: slices.Clone(rt.Export)}
}

// PolicyDefFromProto is the file form of an API policy.
func PolicyDefFromProto(p *evpndv1.Policy) PolicyDef {
	d := PolicyDef{Tenant: p.GetTenant()}
	for _, g := range p.GetAddressGroups() {
		d.AddressGroups = append(d.AddressGroups, AddressGroupDef{Name: g.GetName(), Prefixes: slices.Clone(g.GetPrefixes())})
	}
	for _, g := range p.GetPortGroups() {
		d.PortGroups = append(d.PortGroups, PortGroupDef{Name: g.GetName(), Ports: slices.Clone(g.GetPorts())})
	}
	for _, s := range p.GetSegments() {
		d.Segments = append(d.Segments, SegmentPolDef{Segment: s.GetSegment(), Ingress: s.GetIngress(), Egress: s.GetEgress()})
	}
	for _, r := range p.GetRules() {
		rd := RuleDef{
			Name: r.GetName(), Priority: int(r.GetPriority()), Direction: r.GetDirection(),
			Port: r.GetPort(), PortGroup: r.GetPortGroup(), Segment: r.GetSegment(),
			Remote:   RemoteDef{Prefixes: slices.Clone(r.GetRemote().GetPrefixes()), AddressGroup: r.GetRemote().GetAddressGroup()},
			Protocol: r.GetProtocol(), Ports: slices.Clone(r.GetPorts()), Action: r.GetAction(),
			Log: r.GetLog(), Class: r.GetClass(),
		}
		for _, t := range r.GetIcmpTypes() {
			rd.ICMPTypes = append(rd.ICMPTypes, int(t))
		}
		if r.Dscp != nil {
			v := int(r.GetDscp())
			rd.DSCP = &v
		}
		d.Rules = append(d.Rules, rd)
	}
	if n := p.GetNat(); n != nil {
		nd := &NATDef{Interface: n.GetInterface(), Address: n.GetAddress(), Gateway: n.GetGateway(),
			SNAT: n.GetSnat(), Masquerade: n.GetMasquerade()}
		for _, f := range n.GetFloatingIps() {
			nd.FloatingIPs = append(nd.FloatingIPs, FloatingIPDef{External: f.GetExternal(), Internal: f.GetInternal()})
		}
		for _, f := range n.GetPortForwards() {
			nd.PortForwards = append(nd.PortForwards, PortForwardDef{External: f.GetExternal(), Protocol: f.GetProtocol(),
				Port: int(f.GetPort()), Internal: f.GetInternal(), InternalPort: int(f.GetInternalPort())})
		}
		d.NAT = nd
	}
	for _, q := range p.GetQos() {
		qd := QoSDef{Port: q.GetPort(),
			Egress:  RateDef{Rate: q.GetEgress().GetRate(), Burst: q.GetEgress().GetBurst()},
			Ingress: RateDef{Rate: q.GetIngress().GetRate(), Burst: q.GetIngress().GetBurst()}}
		for _, c := range q.GetClasses() {
			qd.Classes = append(qd.Classes, ClassDef{Name: c.GetName(), Rate: c.GetRate(), Ceil: c.GetCeil(), Priority: c.GetPriority()})
		}
		d.QoS = append(d.QoS, qd)
	}
	return d
}

// PolicyToProto is the API form of a policy definition.
func PolicyToProto(d PolicyDef) *evpndv1.Policy {
	p := &evpndv1.Policy{Tenant: d.Tenant}
	for _, g := range d.AddressGroups {
		p.AddressGroups = append(p.AddressGroups, &evpndv1.AddressGroup{Name: g.Name, Prefixes: slices.Clone(g.Prefixes)})
	}
	for _, g := range d.PortGroups {
		p.PortGroups = append(p.PortGroups, &evpndv1.PortGroup{Name: g.Name, Ports: slices.Clone(g.Ports)})
	}
	for _, s := range d.Segments {
		p.Segments = append(p.Segments, &evpndv1.SegmentDefaults{Segment: s.Segment, Ingress: s.Ingress, Egress: s.Egress})
	}
	for _, r := range d.Rules {
		pr := &evpndv1.Rule{
			Name: r.Name, Priority: int32(r.Priority), Direction: r.Direction,
			Port: r.Port, PortGroup: r.PortGroup, Segment: r.Segment,
			Protocol: r.Protocol, Ports: slices.Clone(r.Ports), Action: r.Action, Log: r.Log, Class: r.Class,
		}
		if len(r.Remote.Prefixes) > 0 || r.Remote.AddressGroup != "" {
			pr.Remote = &evpndv1.Remote{Prefixes: slices.Clone(r.Remote.Prefixes), AddressGroup: r.Remote.AddressGroup}
		}
		for _, t := range r.ICMPTypes {
			pr.IcmpTypes = append(pr.IcmpTypes, int32(t))
		}
		if r.DSCP != nil {
			v := int32(*r.DSCP)
			pr.Dscp = &v
		}
		p.Rules = append(p.Rules, pr)
	}
	if n := d.NAT; n != nil {
		pn := &evpndv1.Nat{Interface: n.Interface, Address: n.Address, Gateway: n.Gateway, Snat: n.SNAT, Masquerade: n.Masquerade}
		for _, f := range n.FloatingIPs {
			pn.FloatingIps = append(pn.FloatingIps, &evpndv1.FloatingIp{External: f.External, Internal: f.Internal})
		}
		for _, f := range n.PortForwards {
			pn.PortForwards = append(pn.PortForwards, &evpndv1.PortForward{External: f.External, Protocol: f.Protocol,
				Port: int32(f.Port), Internal: f.Internal, InternalPort: int32(f.InternalPort)})
		}
		p.Nat = pn
	}
	for _, q := range d.QoS {
		pq := &evpndv1.PortQos{Port: q.Port}
		if q.Egress != (RateDef{}) {
			pq.Egress = &evpndv1.Rate{Rate: q.Egress.Rate, Burst: q.Egress.Burst}
		}
		if q.Ingress != (RateDef{}) {
			pq.Ingress = &evpndv1.Rate{Rate: q.Ingress.Rate, Burst: q.Ingress.Burst}
		}
		for _, c := range q.Classes {
			pq.Classes = append(pq.Classes, &evpndv1.QosClass{Name: c.Name, Rate: c.Rate, Ceil: c.Ceil, Priority: c.Priority})
		}
		p.Qos = append(p.Qos, pq)
	}
	return p
}
