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

	"github.com/evpnd/evpnd/bgp"
	"github.com/evpnd/evpnd/evpn"
	"github.com/evpnd/evpnd/fabric"
)

// Backend answers with the values it holds, or Err.
type Backend struct {
	PeerList  []bgp.Peer
	RouteList []evpn.Route
	MACList   []fabric.MAC
	Err       error
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

// The fixture host: VTEP 10.0.0.1 in AS 65000, tenant "blue" with L2VNIs 100
// and 200 and L3VNI 5000, tenant "red" with L2VNI 300; host 10.0.0.2 is the
// remote VTEP, reached through route reflector 10.0.0.254.
var (
	vtep      = netip.MustParseAddr("10.0.0.1")
	remote    = netip.MustParseAddr("10.0.0.2")
	reflector = netip.MustParseAddr("10.0.0.254")
)

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// Fixture returns a backend with a few routes of every type, local and
// remote, two peers and MAC tables of two tenants. Lists are deliberately
// not in the order the API sorts them.
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
	}
}
