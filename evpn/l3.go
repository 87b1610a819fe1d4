package evpn

import (
	"net"
	"net/netip"
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
