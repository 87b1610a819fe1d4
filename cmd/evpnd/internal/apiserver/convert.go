package apiserver

import (
	"net"
	"net/netip"
	"slices"
	"strings"

	"google.golang.org/protobuf/types/known/durationpb"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
	"github.com/evpnd/evpnd/bgp"
	"github.com/evpnd/evpnd/evpn"
	"github.com/evpnd/evpnd/fabric"
)

var peerStates = map[string]evpndv1.PeerState{
	"idle":        evpndv1.PeerState_PEER_STATE_IDLE,
	"connect":     evpndv1.PeerState_PEER_STATE_CONNECT,
	"active":      evpndv1.PeerState_PEER_STATE_ACTIVE,
	"opensent":    evpndv1.PeerState_PEER_STATE_OPENSENT,
	"openconfirm": evpndv1.PeerState_PEER_STATE_OPENCONFIRM,
	"established": evpndv1.PeerState_PEER_STATE_ESTABLISHED,
}

func peerToProto(p bgp.Peer) *evpndv1.Peer {
	return &evpndv1.Peer{
		Address:     addrString(p.Address),
		Asn:         p.ASN,
		Description: p.Description,
		// An unknown state string maps to UNSPECIFIED rather than failing
		// the whole listing.
		State:      peerStates[strings.ToLower(p.State)],
		Uptime:     durationpb.New(p.Uptime),
		Received:   p.Received,
		Accepted:   p.Accepted,
		Advertised: p.Advertised,
	}
}

func routeToProto(r evpn.Route) *evpndv1.Route {
	out := &evpndv1.Route{
		Rd:            r.NLRI.Distinguisher().String(),
		Nlri:          r.NLRI.String(),
		NextHop:       addrString(r.NextHop),
		RouteTargets:  make([]string, 0, len(r.RTs)),
		Encapsulation: evpndv1.Encapsulation(r.Encap),
		RouterMac:     macString(r.RouterMAC),
		Peer:          addrString(r.Peer),
		Local:         !r.Peer.IsValid(),
	}
	switch n := r.NLRI.(type) {
	case *evpn.MACIP:
		out.Type = evpndv1.RouteType_ROUTE_TYPE_MAC_IP
		out.Esi = esiString(n.ESI)
		out.EthernetTag = n.EthTag
		out.Mac = macString(n.MAC)
		out.Ip = addrString(n.IP)
		out.Labels = vnis(n.Labels)
	case *evpn.IMET:
		out.Type = evpndv1.RouteType_ROUTE_TYPE_INCLUSIVE_MULTICAST
		out.EthernetTag = n.EthTag
		out.Originator = addrString(n.Originator)
	case *evpn.Prefix:
		out.Type = evpndv1.RouteType_ROUTE_TYPE_IP_PREFIX
		out.Esi = esiString(n.ESI)
		out.EthernetTag = n.EthTag
		if n.Prefix.IsValid() {
			out.Prefix = n.Prefix.String()
		}
		out.GatewayIp = addrString(n.Gateway)
		out.Labels = vnis([]evpn.VNI{n.Label})
	}
	for _, rt := range r.RTs {
		out.RouteTargets = append(out.RouteTargets, rt.String())
	}
	if r.Mobility != nil {
		out.MacMobility = &evpndv1.MacMobility{Sequence: r.Mobility.Seq, Sticky: r.Mobility.Sticky}
	}
	if r.PMSI != nil {
		out.PmsiTunnel = &evpndv1.PmsiTunnel{
			Type:     evpndv1.PmsiTunnelType(r.PMSI.Type),
			Label:    uint32(r.PMSI.Label),
			Endpoint: addrString(r.PMSI.Endpoint),
			Flags:    uint32(r.PMSI.Flags),
		}
	}
	return out
}

func macToProto(m fabric.MAC) *evpndv1.Mac {
	return &evpndv1.Mac{
		Tenant: m.Tenant,
		Vni:    uint32(m.VNI),
		Mac:    macString(m.MAC),
		Port:   m.Port,
		Vtep:   addrString(m.VTEP),
		Remote: m.Remote,
	}
}

var routeProtocols = map[fabric.RouteProtocol]evpndv1.RouteProtocol{
	fabric.RouteConnected: evpndv1.RouteProtocol_ROUTE_PROTOCOL_CONNECTED,
	fabric.RouteStatic:    evpndv1.RouteProtocol_ROUTE_PROTOCOL_STATIC,
	fabric.RouteEVPN:      evpndv1.RouteProtocol_ROUTE_PROTOCOL_EVPN,
	fabric.RouteOther:     evpndv1.RouteProtocol_ROUTE_PROTOCOL_OTHER,
}

func tenantRouteToProto(r fabric.Route) *evpndv1.TenantRoute {
	// The API promises next hops in address order, whatever order the
	// backend keeps them in.
	sorted := slices.SortedFunc(slices.Values(r.NextHops), netip.Addr.Compare)
	hops := make([]string, 0, len(sorted))
	for _, h := range sorted {
		if h.IsValid() {
			hops = append(hops, h.String())
		}
	}
	return &evpndv1.TenantRoute{
		Tenant:   r.Tenant,
		Prefix:   r.Prefix.String(),
		NextHops: hops,
		Device:   r.Device,
		// A protocol the datapath added after this API was written maps
		// to UNSPECIFIED rather than failing the whole listing.
		Protocol: routeProtocols[r.Protocol],
	}
}

// addrString is "" for the zero Addr, which the API uses for "absent".
func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// macString is "" for an absent MAC.
func macString(m []byte) string {
	if len(m) == 0 {
		return ""
	}
	return net.HardwareAddr(m).String()
}

func esiString(e evpn.ESI) string { return macString(e[:]) }

func vnis(in []evpn.VNI) []uint32 {
	out := make([]uint32, len(in))
	for i, v := range in {
		out[i] = uint32(v)
	}
	return out
}
