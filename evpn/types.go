package evpn

import (
	"fmt"
	"net"
	"net/netip"
)

// VNI is a 24-bit VXLAN network identifier.
type VNI uint32

// MaxVNI is the largest VNI that fits in 24 bits.
const MaxVNI VNI = 1<<24 - 1

// Valid reports whether v is in 1..MaxVNI.
func (v VNI) Valid() bool { return v >= 1 && v <= MaxVNI }

// RouteType is the EVPN route type octet.
type RouteType uint8

// The route types evpnd speaks.
const (
	TypeMACIP  RouteType = 2 // MAC/IP advertisement
	TypeIMET   RouteType = 3 // inclusive multicast Ethernet tag
	TypePrefix RouteType = 5 // IP prefix
)

func (t RouteType) String() string {
	switch t {
	case TypeMACIP:
		return "macip"
	case TypeIMET:
		return "multicast"
	case TypePrefix:
		return "prefix"
	}
	return fmt.Sprintf("type%d", uint8(t))
}

// ESI is an Ethernet segment identifier; evpnd hosts are single-homed, so
// the ESIs they advertise are zero.
type ESI [10]byte

// NLRI is one EVPN route key: *MACIP, *IMET or *Prefix.
type NLRI interface {
	Type() RouteType
	Distinguisher() RD
	// Key is a comparable identity of the NLRI (type, RD and key fields),
	// usable as a map key.
	Key() string
	String() string
}

// MACIP is a type-2 route: a MAC, optionally with one IP, behind a VTEP.
type MACIP struct {
	RD     RD
	ESI    ESI
	EthTag uint32
	MAC    net.HardwareAddr
	IP     netip.Addr // zero Addr when the route carries no IP
	// Labels holds the L2VNI and, in symmetric IRB, the L3VNI second.
	Labels []VNI
}

// IMET is a type-3 route: "flood this VNI's BUM traffic to me".
type IMET struct {
	RD         RD
	EthTag     uint32
	Originator netip.Addr
}

// Prefix is a type-5 route.
type Prefix struct {
	RD      RD
	ESI     ESI
	EthTag  uint32
	Prefix  netip.Prefix
	Gateway netip.Addr // zero means "0" on the wire, as evpnd advertises
	Label   VNI
}

// Route is one EVPN path: an NLRI and the attributes evpnd reads and writes.
type Route struct {
	NLRI    NLRI
	NextHop netip.Addr // the originating VTEP
	RTs     []RT
	// Encap is the tunnel type of the Encapsulation extended community
	// (EncapVXLAN = 8); 0 when absent.
	Encap     uint16
	Mobility  *Mobility        // nil when the route has no MAC Mobility community
	RouterMAC net.HardwareAddr // nil when absent
	PMSI      *PMSI            // type-3 only
	Withdraw  bool
	// Peer is the BGP neighbour the route was learned from; zero for local
	// routes.
	Peer netip.Addr
}

// EncapVXLAN is the Encapsulation extended community tunnel type for VXLAN
// (RFC 8365).
const EncapVXLAN uint16 = 8

// Mobility is the MAC Mobility extended community (RFC 7432 s7.7).
type Mobility struct {
	Seq    uint32
	Sticky bool
}

// PMSI tunnel types evpnd uses.
const PMSIIngressReplication uint8 = 6

// PMSI is the P-Multicast Service Interface Tunnel attribute of a type-3
// route (RFC 6514); evpnd uses ingress replication with label = VNI.
type PMSI struct {
	Flags    uint8
	Type     uint8
	Label    VNI
	Endpoint netip.Addr
}
