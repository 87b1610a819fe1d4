package evpn

import (
	"net"
	"net/netip"
)

// FDB is a kernel intent: frames for MAC in VNI go to VTEP.
type FDB struct {
	VNI  VNI
	MAC  net.HardwareAddr
	VTEP netip.Addr
}

// Flood is a kernel intent: BUM traffic of VNI is replicated to VTEP.
type Flood struct {
	VNI  VNI
	VTEP netip.Addr
}

// Neigh is a kernel intent: IP in VNI resolves to MAC (for ARP/ND
// suppression on the segment bridge).
type Neigh struct {
	VNI VNI
	IP  netip.Addr
	MAC net.HardwareAddr
}

// L3Route is a kernel intent of a routed tenant (symmetric IRB): traffic to
// Prefix in the tenant whose L3VNI is VNI is routed over the L3VNI to one
// of NextHops (remote VTEPs; several mean ECMP). In a Diff's Add it
// installs or replaces the route with exactly these next hops; in Del only
// VNI and Prefix count.
type L3Route struct {
	VNI      VNI
	Prefix   netip.Prefix
	NextHops []netip.Addr
}

// RouterMAC is a kernel intent of a routed tenant: the remote VTEP's router
// MAC on the L3VNI (a neighbor entry VTEP -> MAC on the L3VNI bridge and an
// FDB entry MAC -> VTEP on its VXLAN device, as symmetric IRB needs to
// build the inner Ethernet header).
type RouterMAC struct {
	VNI  VNI
	VTEP netip.Addr
	MAC  net.HardwareAddr
}

// Intents is a set of kernel intents, used both as a full desired state and
// as one side (add or delete) of a change.
type Intents struct {
	FDB    []FDB
	Flood  []Flood
	Neigh  []Neigh
	Routes []L3Route
	RMACs  []RouterMAC
}

// Len is the number of intents.
func (in Intents) Len() int {
	return len(in.FDB) + len(in.Flood) + len(in.Neigh) + len(in.Routes) + len(in.RMACs)
}

// Diff is a change to the kernel: what to add and what to delete.
type Diff struct {
	Add, Del Intents
}

// Empty reports whether d changes nothing.
func (d Diff) Empty() bool { return d.Add.Len() == 0 && d.Del.Len() == 0 }
