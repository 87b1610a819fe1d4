package evpn

import (
	"net"
	"net/netip"
	"slices"
)

// Segment is one L2 VNI of a tenant as the control plane sees it: its RD
// and the route targets it exports and imports.
type Segment struct {
	Tenant, Name string
	VNI          VNI
	RD           RD
	Import       []RT
	Export       []RT
	// AutoImport imports every route carrying an RT whose ImportVNI is the
	// segment's VNI, whatever its ASN, as FRR does: in an eBGP fabric with
	// one AS per leaf the exporters' auto RTs all differ in the ASN.
	AutoImport bool
	// L3 is the routed side of the segment's tenant; nil for a tenant that
	// is only bridged.
	L3 *L3
}

// NewSegment derives a segment's RD and route targets. routerID must be an
// IPv4 address (a BGP router ID); index makes the RD unique per VNI on this
// host. An empty exp exports the auto RT of preset p; an empty imp imports
// by VNI (AutoImport), otherwise exactly the RTs listed.
func NewSegment(routerID netip.Addr, asn uint32, p Preset, index uint16, tenant, name string, vni VNI, imp, exp []RT) Segment {
	s := Segment{
		Tenant: tenant,
		Name:   name,
		VNI:    vni,
		RD:     NewRD1(routerID, index),
		Import: slices.Clone(imp),
		Export: slices.Clone(exp),
	}
	if len(s.Export) == 0 {
		s.Export = []RT{AutoRT(p, asn, vni)}
	}
	s.AutoImport = len(s.Import) == 0
	return s
}

// Imports reports whether a route carrying rts is imported into s.
func (s Segment) Imports(rts []RT) bool {
	for _, rt := range rts {
		if s.importsRT(rt) {
			return true
		}
	}
	return false
}

func (s Segment) importsRT(rt RT) bool {
	if s.AutoImport {
		return rt.ImportVNI() == s.VNI
	}
	return slices.Contains(s.Import, rt)
}

// IMETRoute is the type-3 route this host advertises for s: "flood s's BUM
// traffic to vtep" by ingress replication.
func (s Segment) IMETRoute(vtep netip.Addr) Route {
	return Route{
		NLRI:    &IMET{RD: s.RD, Originator: vtep},
		NextHop: vtep,
		RTs:     slices.Clone(s.Export),
		Encap:   EncapVXLAN,
		PMSI: &PMSI{
			Type:     PMSIIngressReplication,
			Label:    s.VNI,
			Endpoint: vtep,
		},
	}
}

// MACIPRoute is the type-2 route this host advertises for a local MAC (and
// IP, when valid) of s. seq is the MAC mobility sequence number from
// RIB.Local; 0 leaves the community out, as RFC 7432 s15 asks for a MAC
// that never moved.
//
// In a routed tenant (s.L3 set) a MAC+IP route is also the host route of
// symmetric IRB (RFC 9135 s5.1): it carries the L3VNI as second label, the
// L3 export RTs after the segment's and the router MAC, without which
// NX-OS does not install it. A MAC-only route stays a pure L2 route.
func (s Segment) MACIPRoute(vtep netip.Addr, mac net.HardwareAddr, ip netip.Addr, seq uint32) Route {
	r := Route{
		NLRI: &MACIP{
			RD:     s.RD,
			MAC:    slices.Clone(mac),
			IP:     ip,
			Labels: []VNI{s.VNI},
		},
		NextHop: vtep,
		RTs:     slices.Clone(s.Export),
		Encap:   EncapVXLAN,
	}
	if s.L3 != nil && ip.IsValid() {
		m := r.NLRI.(*MACIP)
		m.Labels = append(m.Labels, s.L3.VNI)
		r.RTs = append(r.RTs, s.L3.Export...)
		r.RouterMAC = slices.Clone(s.L3.RouterMAC)
	}
	if seq > 0 {
		r.Mobility = &Mobility{Seq: seq}
	}
	return r
}
