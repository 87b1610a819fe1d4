// Package apitest owns the fixed daemon state that the API's tests (the
// server's and evpnctl's) are run against: a Backend holding real bgp, evpn
// and fabric values, and the fixtured command serving it. It is not used by
// the daemon.
package apitest

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/evpnd/evpnd/bgp"
	"github.com/evpnd/evpnd/cmd/evpnd/internal/apiserver"
	"github.com/evpnd/evpnd/cmd/evpnd/internal/config"
	"github.com/evpnd/evpnd/evpn"
	"github.com/evpnd/evpnd/fabric"
	"github.com/evpnd/evpnd/policy"
)

// Backend answers with the values it holds, or Err.
type Backend struct {
	PeerList  []bgp.Peer
	RouteList []evpn.Route
	MACList   []fabric.MAC
	// TenantRouteList is the tenants' routing tables.
	TenantRouteList []fabric.Route
	NeighborList    []fabric.Neighbor
	CounterList     []policy.Counter
	DuplicateList   []apiserver.Duplicate
	// Objs are the configuration objects listed; the fixture refuses
	// changes (the daemon's own tests cover them against a real evpnd).
	Objs config.APIObjects
	Hub  *apiserver.Hub
	Err  error
}

// Neighbors returns a copy of NeighborList.
func (b *Backend) Neighbors(context.Context) ([]fabric.Neighbor, error) {
	return slices.Clone(b.NeighborList), b.Err
}

// PolicyCounters returns a copy of CounterList.
func (b *Backend) PolicyCounters(context.Context) ([]policy.Counter, error) {
	return slices.Clone(b.CounterList), b.Err
}

// Objects returns Objs.
func (b *Backend) Objects(context.Context) (config.APIObjects, error) { return b.Objs, b.Err }

// Change refuses: the fixture's state is fixed.
func (b *Backend) Change(context.Context, apiserver.Change) (proto.Message, bool, error) {
	return nil, false, status.Error(codes.Unimplemented, "the API fixture is read-only")
}

// Duplicates returns DuplicateList.
func (b *Backend) Duplicates(context.Context) ([]apiserver.Duplicate, error) {
	return slices.Clone(b.DuplicateList), b.Err
}

// ClearDuplicate refuses: the fixture's state is fixed.
func (b *Backend) ClearDuplicate(context.Context, evpn.VNI, net.HardwareAddr) error {
	return status.Error(codes.Unimplemented, "the API fixture is read-only")
}

// Events returns Hub, created on first use.
func (b *Backend) Events() *apiserver.Hub {
	if b.Hub == nil {
		b.Hub = apiserver.NewHub()
	}
	return b.Hub
}

// Peers returns a copy of PeerList.
func (b *Backend) Peers(context.Context) ([]bgp.Peer, error) {
	return slices.Clone(b.PeerList), b.Err
}

// Routes returns a copy of RouteList.
func (b *Backend) Routes(context.Context) ([]evpn.Route, error) {
	return slices.Clone(b.RouteList), b.Err
}

// MACs returns a copy of MACList.
func (b *Backend) MACs(context.Context) ([]fabric.MAC, error) {
	return slices.Clone(b.MACList), b.Err
}

// TenantRoutes returns a copy of TenantRouteList.
func (b *Backend) TenantRoutes(context.Context) ([]fabric.Route, error) {
	return slices.Clone(b.TenantRouteList), b.Err
}

// The fixture host: VTEP 10.0.0.1 in AS 65000, tenant "blue" with L2VNIs 100
// and 200 and L3VNI 5000, tenant "red" with L2VNI 300 and L3VNI 5001; hosts
// 10.0.0.2 and 10.0.0.3 are remote VTEPs, reached through route reflector
// 10.0.0.254.
var (
	vtep      = netip.MustParseAddr("10.0.0.1")
	remote    = netip.MustParseAddr("10.0.0.2")
	remote3   = netip.MustParseAddr("10.0.0.3")
	reflector = netip.MustParseAddr("10.0.0.254")
)

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// Fixture returns a backend with a few routes of every type, local and
// remote, three peers, and MAC tables and routing tables of two tenants.
// Lists are deliberately not in the order the API sorts them.
func Fixture() *Backend {
	rt := func(vni evpn.VNI) evpn.RT { return evpn.AutoRT(evpn.PresetFRR, 65000, vni) }
	return &Backend{
		PeerList: []bgp.Peer{
			{
				Address: reflector, ASN: 65000, Description: "rr1",
				State: "established", Uptime: 26*time.Hour + 3*time.Minute + 4*time.Second,
				Received: 4, Accepted: 4, Advertised: 3,
			},
			{
				Address: netip.MustParseAddr("10.0.0.253"), ASN: 65000, Description: "rr2",
				State: "active",
			},
			{
				Address: netip.MustParseAddr("fd00::fe"), ASN: 4200000001, Description: "tor-v6",
				State: "established", Uptime: 90 * time.Second,
				Received: 1, Accepted: 0, Advertised: 3,
			},
		},
		RouteList: []evpn.Route{
			{
				NLRI: &evpn.Prefix{
					RD: evpn.NewRD1(remote, 3), Prefix: netip.MustParsePrefix("10.2.0.0/24"), Label: 5000,
				},
				NextHop: remote, RTs: []evpn.RT{rt(5000)}, Encap: evpn.EncapVXLAN,
				RouterMAC: mac("02:00:0a:00:00:02"), Peer: reflector,
			},
			{
				NLRI: &evpn.MACIP{
					RD: evpn.NewRD1(vtep, 1), MAC: mac("02:00:00:00:01:01"),
					IP: netip.MustParseAddr("10.1.0.11"), Labels: []evpn.VNI{100, 5000},
				},
				NextHop: vtep, RTs: []evpn.RT{rt(100), rt(5000)}, Encap: evpn.EncapVXLAN,
				RouterMAC: mac("02:00:0a:00:00:01"),
			},
			{
				NLRI: &evpn.MACIP{
					RD: evpn.NewRD1(vtep, 1), MAC: mac("02:00:00:00:01:01"), Labels: []evpn.VNI{100},
				},
				NextHop: vtep, RTs: []evpn.RT{rt(100)}, Encap: evpn.EncapVXLAN,
			},
			{
				NLRI: &evpn.MACIP{
					RD: evpn.NewRD1(remote, 1), MAC: mac("02:00:00:00:02:01"), Labels: []evpn.VNI{100},
				},
				NextHop: remote, RTs: []evpn.RT{rt(100)}, Encap: evpn.EncapVXLAN,
				Mobility: &evpn.Mobility{Seq: 3}, Peer: reflector,
			},
			{
				NLRI: &evpn.MACIP{
					RD: evpn.NewRD1(remote, 2), MAC: mac("02:00:00:00:02:02"),
					IP: netip.MustParseAddr("fd00:1::22"), Labels: []evpn.VNI{200},
				},
				NextHop: remote, RTs: []evpn.RT{rt(200)}, Encap: evpn.EncapVXLAN,
				Mobility: &evpn.Mobility{Seq: 0, Sticky: true}, Peer: reflector,
			},
			{
				NLRI:    &evpn.IMET{RD: evpn.NewRD1(vtep, 1), Originator: vtep},
				NextHop: vtep, RTs: []evpn.RT{rt(100)}, Encap: evpn.EncapVXLAN,
				PMSI: &evpn.PMSI{Type: evpn.PMSIIngressReplication, Label: 100, Endpoint: vtep},
			},
			{
				NLRI:    &evpn.IMET{RD: evpn.NewRD1(remote, 2), Originator: remote},
				NextHop: remote, RTs: []evpn.RT{rt(200)}, Encap: evpn.EncapVXLAN,
				PMSI: &evpn.PMSI{Type: evpn.PMSIIngressReplication, Label: 200, Endpoint: remote},
				Peer: reflector,
			},
			{
				// A withdrawal marker is not a route of the RIB; the API
				// must not list it.
				NLRI:     &evpn.IMET{RD: evpn.NewRD1(remote, 9), Originator: remote},
				NextHop:  remote,
				Withdraw: true, Peer: reflector,
			},
		},
		MACList: []fabric.MAC{
			{Tenant: "red", VNI: 300, MAC: mac("02:00:00:00:03:01"), Port: "tap-red1"},
			{Tenant: "blue", VNI: 100, MAC: mac("02:00:00:00:02:01"), Port: "vxlan100", VTEP: remote, Remote: true},
			{Tenant: "blue", VNI: 100, MAC: mac("02:00:00:00:01:01"), Port: "veth-web1"},
			{Tenant: "blue", VNI: 200, MAC: mac("02:00:00:00:02:02"), Port: "vxlan200", VTEP: remote, Remote: true},
		},
		// The tables as fabric reads them: gateway subnets on the segment
		// bridges, EVPN routes on the L3VNI bridge (none for ECMP, whose
		// next hops each name it), next hops unmapped and sorted.
		TenantRouteList: []fabric.Route{
			{Tenant: "red", Prefix: netip.MustParsePrefix("fd00:3::/64"), Device: "br300", Protocol: fabric.RouteConnected},
			{
				// Type-5 routes from both remote hosts: ECMP.
				Tenant: "blue", Prefix: netip.MustParsePrefix("10.2.0.0/24"),
				NextHops: []netip.Addr{remote, remote3}, Protocol: fabric.RouteEVPN,
			},
			{
				Tenant: "blue", Prefix: netip.MustParsePrefix("0.0.0.0/0"),
				NextHops: addrs("10.1.0.254"), Device: "br100", Protocol: fabric.RouteStatic,
			},
			{
				// The remote host advertises the subnet it shares with
				// this one; the kernel keeps it beside the connected
				// route, which wins.
				Tenant: "blue", Prefix: netip.MustParsePrefix("10.1.0.0/24"),
				NextHops: []netip.Addr{remote}, Device: "br5000", Protocol: fabric.RouteEVPN,
			},
			{Tenant: "blue", Prefix: netip.MustParsePrefix("fd00:1::/64"), Device: "br100", Protocol: fabric.RouteConnected},
			{Tenant: "blue", Prefix: netip.MustParsePrefix("10.1.0.0/24"), Device: "br100", Protocol: fabric.RouteConnected},
			{
				// A type-2 MAC+IP with the L3VNI label: a host route.
				Tenant: "blue", Prefix: netip.MustParsePrefix("10.1.0.22/32"),
				NextHops: []netip.Addr{remote}, Device: "br5000", Protocol: fabric.RouteEVPN,
			},
			{Tenant: "red", Prefix: netip.MustParsePrefix("10.3.0.0/24"), Device: "br300", Protocol: fabric.RouteConnected},
			{
				// Added by hand in the tenant namespace, not by evpnd.
				Tenant: "red", Prefix: netip.MustParsePrefix("192.0.2.0/24"),
				NextHops: addrs("10.3.0.254"), Device: "br300", Protocol: fabric.RouteOther,
			},
		},
	}
}
