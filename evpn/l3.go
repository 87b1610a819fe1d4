package evpn

import (
	"net"
	"net/netip"
	"slices"
)

// L3 is the routed side of a tenant (symmetric IRB, RFC 9135): its L3VNI,
// the RD and route targets of its type-5 routes and of the second label of
// its type-2 MAC+IP routes, and this host's router MAC.
type L3 struct {
	Tenant     string
	VNI        VNI // the L3VNI
	RD         RD
	Import     []RT
	Export     []RT
	AutoImport bool // as Segment.AutoImport, on the L3VNI
	RouterMAC  net.HardwareAddr
	// Local holds the prefixes this host itself routes for the tenant
	// (connected gateway subnets and static routes): a remote type-5 for
	// the same prefix is not installed over them.
	Local []netip.Prefix
}

// NewL3 derives the routed side of a tenant as NewSegment derives a
// segment: RD type 1 <routerID>:<index>, the auto RT of preset p on the
// L3VNI when exp is empty, import by VNI when imp is empty. index must
// differ from the segments' indexes so that the RD is unique on this host.
// The local prefixes are kept masked, since a route's prefix is.
func NewL3(routerID netip.Addr, asn uint32, p Preset, index uint16, tenant string, vni VNI, imp, exp []RT, routerMAC net.HardwareAddr, local []netip.Prefix) L3 {
	l := L3{
		Tenant:    tenant,
		VNI:       vni,
		RD:        NewRD1(routerID, index),
		Import:    slices.Clone(imp),
		Export:    slices.Clone(exp),
		RouterMAC: slices.Clone(routerMAC),
	}
	if len(l.Export) == 0 {
		l.Export = []RT{AutoRT(p, asn, vni)}
	}
	l.AutoImport = len(l.Import) == 0
	for _, pfx := range local {
		l.Local = append(l.Local, pfx.Masked())
	}
	return l
}

// Imports reports whether a route carrying rts is imported into l's
// tenant routing table.
func (l L3) Imports(rts []RT) bool {
	for _, rt := range rts {
		if l.AutoImport && rt.ImportVNI() == l.VNI || !l.AutoImport && slices.Contains(l.Import, rt) {
			return true
		}
	}
	return false
}

// PrefixRoute is the type-5 route this host advertises for a prefix it
// routes in l's tenant: gateway IP 0 and label = L3VNI (RFC 9136 s4.4.1,
// the interface-less model every hardware ToR implements), with the router
// MAC that symmetric IRB needs to build the inner Ethernet header.
func (l L3) PrefixRoute(vtep netip.Addr, p netip.Prefix) Route {
	return Route{
		NLRI: &Prefix{
			RD:     l.RD,
			Prefix: p.Masked(),
			Label:  l.VNI,
		},
		NextHop:   vtep,
		RTs:       slices.Clone(l.Export),
		Encap:     EncapVXLAN,
		RouterMAC: slices.Clone(l.RouterMAC),
	}
}
