package apiserver

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
	"github.com/evpnd/evpnd/bgp"
	"github.com/evpnd/evpnd/evpn"
	"github.com/evpnd/evpnd/fabric"
)

// service implements EvpndService; it is unexported so that Server's API is
// only its life cycle.
type service struct {
	evpndv1.UnimplementedEvpndServiceServer
	backend Backend
}

func (s *service) ListPeers(ctx context.Context, req *evpndv1.ListPeersRequest) (*evpndv1.ListPeersResponse, error) {
	var v violations
	pg := v.page(req.GetPageSize(), req.GetPageToken(), req)
	if err := v.err(); err != nil {
		return nil, err
	}
	peers, err := s.backend.Peers(ctx)
	if err != nil {
		return nil, backendError("list peers", err)
	}
	// The backend may hand out its own slice; sorting must not reorder it.
	peers = slices.Clone(peers)
	slices.SortStableFunc(peers, func(a, b bgp.Peer) int { return a.Address.Compare(b.Address) })
	peers, next := paginate(pg, peers)
	resp := &evpndv1.ListPeersResponse{Peers: make([]*evpndv1.Peer, 0, len(peers)), NextPageToken: next}
	for _, p := range peers {
		resp.Peers = append(resp.Peers, peerToProto(p))
	}
	return resp, nil
}

// routeFilter is a validated ListRoutesRequest.
type routeFilter struct {
	typ    evpn.RouteType // 0: any
	vni    evpn.VNI       // 0: any
	rd     *evpn.RD
	mac    net.HardwareAddr
	prefix netip.Prefix
}

// routeFilterOf validates the filters of a route listing or watch.
func routeFilterOf(v *violations, req *evpndv1.ListRoutesRequest) routeFilter {
	var f routeFilter
	switch req.GetType() {
	case evpndv1.RouteType_ROUTE_TYPE_UNSPECIFIED:
	case evpndv1.RouteType_ROUTE_TYPE_MAC_IP:
		f.typ = evpn.TypeMACIP
	case evpndv1.RouteType_ROUTE_TYPE_INCLUSIVE_MULTICAST:
		f.typ = evpn.TypeIMET
	case evpndv1.RouteType_ROUTE_TYPE_IP_PREFIX:
		f.typ = evpn.TypePrefix
	default:
		v.add("type", fmt.Sprintf("%d is not a route type evpnd lists (%s)", req.GetType(), routeTypeNames()))
	}
	if req.Vni != nil {
		f.vni = v.vni("vni", req.GetVni())
	}
	if req.GetRd() != "" {
		rd, err := evpn.ParseRD(req.GetRd())
		if err != nil {
			v.add("rd", fmt.Sprintf("%q is not a route distinguisher (want <asn|ipv4>:<number>)", req.GetRd()))
		} else {
			f.rd = &rd
		}
	}
	if req.GetMac() != "" {
		f.mac = v.mac("mac", req.GetMac())
	}
	if req.GetPrefix() != "" {
		f.prefix = v.prefix("prefix", req.GetPrefix())
	}
	return f
}

func (s *service) ListRoutes(ctx context.Context, req *evpndv1.ListRoutesRequest) (*evpndv1.ListRoutesResponse, error) {
	var v violations
	f := routeFilterOf(&v, req)
	pg := v.page(req.GetPageSize(), req.GetPageToken(), req)
	if err := v.err(); err != nil {
		return nil, err
	}

	routes, err := s.backend.Routes(ctx)
	if err != nil {
		return nil, backendError("list routes", err)
	}
	routes = slices.DeleteFunc(slices.Clone(routes), func(r evpn.Route) bool { return r.NLRI == nil || r.Withdraw || !f.match(r) })
	slices.SortStableFunc(routes, compareRoutes)
	routes, next := paginate(pg, routes)
	resp := &evpndv1.ListRoutesResponse{Routes: make([]*evpndv1.Route, 0, len(routes)), NextPageToken: next}
	for _, r := range routes {
		resp.Routes = append(resp.Routes, routeToProto(r))
	}
	return resp, nil
}

func (f *routeFilter) match(r evpn.Route) bool {
	if f.typ != 0 && r.NLRI.Type() != f.typ {
		return false
	}
	if f.rd != nil && r.NLRI.Distinguisher() != *f.rd {
		return false
	}
	if f.vni != 0 && !slices.Contains(routeVNIs(r), f.vni) {
		return false
	}
	if f.mac != nil {
		m, ok := r.NLRI.(*evpn.MACIP)
		if !ok || !bytes.Equal(m.MAC, f.mac) {
			return false
		}
	}
	if f.prefix.IsValid() {
		switch n := r.NLRI.(type) {
		case *evpn.MACIP:
			if !n.IP.IsValid() || !f.prefix.Contains(n.IP) {
				return false
			}
		case *evpn.Prefix:
			p := n.Prefix
			if !p.IsValid() || p.Bits() < f.prefix.Bits() || !f.prefix.Contains(p.Addr()) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// routeVNIs are the VNIs a route carries as labels.
func routeVNIs(r evpn.Route) []evpn.VNI {
	switch n := r.NLRI.(type) {
	case *evpn.MACIP:
		return n.Labels
	case *evpn.Prefix:
		return []evpn.VNI{n.Label}
	case *evpn.IMET:
		if r.PMSI != nil {
			return []evpn.VNI{r.PMSI.Label}
		}
	}
	return nil
}

// compareRoutes orders routes by type, RD and NLRI key, then by the peer
// they came from (local first), so listings and pages are stable.
func compareRoutes(a, b evpn.Route) int {
	an, bn := a.NLRI, b.NLRI
	ard, brd := an.Distinguisher(), bn.Distinguisher()
	return cmp.Or(
		cmp.Compare(an.Type(), bn.Type()),
		bytes.Compare(ard[:], brd[:]),
		strings.Compare(an.Key(), bn.Key()),
		a.Peer.Compare(b.Peer),
		a.NextHop.Compare(b.NextHop),
	)
}

// macFilter is a validated ListMacsRequest.
type macFilter struct {
	tenant string
	vni    evpn.VNI // 0: any
	origin evpndv1.MacOrigin
}

// macFilterOf validates the filters of a MAC listing or watch.
func macFilterOf(v *violations, req *evpndv1.ListMacsRequest) macFilter {
	f := macFilter{tenant: req.GetTenant(), origin: req.GetOrigin()}
	if req.Vni != nil {
		f.vni = v.vni("vni", req.GetVni())
	}
	switch f.origin {
	case evpndv1.MacOrigin_MAC_ORIGIN_UNSPECIFIED, evpndv1.MacOrigin_MAC_ORIGIN_LOCAL, evpndv1.MacOrigin_MAC_ORIGIN_REMOTE:
	default:
		v.add("origin", fmt.Sprintf("%d is not a MAC origin (MAC_ORIGIN_LOCAL, MAC_ORIGIN_REMOTE)", f.origin))
	}
	return f
}

func (s *service) ListMacs(ctx context.Context, req *evpndv1.ListMacsRequest) (*evpndv1.ListMacsResponse, error) {
	var v violations
	f := macFilterOf(&v, req)
	pg := v.page(req.GetPageSize(), req.GetPageToken(), req)
	if err := v.err(); err != nil {
		return nil, err
	}

	macs, err := s.backend.MACs(ctx)
	if err != nil {
		return nil, backendError("list macs", err)
	}
	macs = slices.DeleteFunc(slices.Clone(macs), func(m fabric.MAC) bool { return !f.match(m) })
	slices.SortStableFunc(macs, func(a, b fabric.MAC) int {
		return cmp.Or(
			strings.Compare(a.Tenant, b.Tenant),
			cmp.Compare(a.VNI, b.VNI),
			bytes.Compare(a.MAC, b.MAC),
			a.VTEP.Compare(b.VTEP),
		)
	})
	macs, next := paginate(pg, macs)
	resp := &evpndv1.ListMacsResponse{Macs: make([]*evpndv1.Mac, 0, len(macs)), NextPageToken: next}
	for _, m := range macs {
		resp.Macs = append(resp.Macs, macToProto(m))
	}
	return resp, nil
}

func (f *macFilter) match(m fabric.MAC) bool {
	switch {
	case f.tenant != "" && m.Tenant != f.tenant:
		return false
	case f.vni != 0 && m.VNI != f.vni:
		return false
	case f.origin == evpndv1.MacOrigin_MAC_ORIGIN_LOCAL && m.Remote:
		return false
	case f.origin == evpndv1.MacOrigin_MAC_ORIGIN_REMOTE && !m.Remote:
		return false
	}
	return true
}

// tenantRouteFilter is a validated ListTenantRoutesRequest.
type tenantRouteFilter struct {
	tenant   string
	prefix   netip.Prefix // zero: any
	protocol evpndv1.RouteProtocol
}

func (s *service) ListTenantRoutes(ctx context.Context, req *evpndv1.ListTenantRoutesRequest) (*evpndv1.ListTenantRoutesResponse, error) {
	var v violations
	f := tenantRouteFilter{tenant: req.GetTenant(), protocol: req.GetProtocol()}
	if req.GetPrefix() != "" {
		f.prefix = v.prefix("prefix", req.GetPrefix())
	}
	switch f.protocol {
	case evpndv1.RouteProtocol_ROUTE_PROTOCOL_UNSPECIFIED, evpndv1.RouteProtocol_ROUTE_PROTOCOL_CONNECTED,
		evpndv1.RouteProtocol_ROUTE_PROTOCOL_STATIC, evpndv1.RouteProtocol_ROUTE_PROTOCOL_EVPN,
		evpndv1.RouteProtocol_ROUTE_PROTOCOL_OTHER:
	default:
		v.add("protocol", fmt.Sprintf("%d is not a route protocol (%s)", f.protocol, routeProtocolNames()))
	}
	pg := v.page(req.GetPageSize(), req.GetPageToken(), req)
	if err := v.err(); err != nil {
		return nil, err
	}

	routes, err := s.backend.TenantRoutes(ctx)
	if err != nil {
		return nil, backendError("list tenant routes", err)
	}
	routes = slices.DeleteFunc(slices.Clone(routes), func(r fabric.Route) bool { return !r.Prefix.IsValid() || !f.match(r) })
	slices.SortStableFunc(routes, compareTenantRoutes)
	routes, next := paginate(pg, routes)
	resp := &evpndv1.ListTenantRoutesResponse{Routes: make([]*evpndv1.TenantRoute, 0, len(routes)), NextPageToken: next}
	for _, r := range routes {
		resp.Routes = append(resp.Routes, tenantRouteToProto(r))
	}
	return resp, nil
}

func (f *tenantRouteFilter) match(r fabric.Route) bool {
	switch {
	case f.tenant != "" && r.Tenant != f.tenant:
		return false
	case f.prefix.IsValid() && (r.Prefix.Bits() < f.prefix.Bits() || !f.prefix.Contains(r.Prefix.Addr())):
		return false
	case f.protocol != evpndv1.RouteProtocol_ROUTE_PROTOCOL_UNSPECIFIED && routeProtocols[r.Protocol] != f.protocol:
		return false
	}
	return true
}

// compareTenantRoutes orders routes by tenant and prefix, IPv4 first and
// shorter prefixes of one address first; a prefix that is in the table
// more than once (an EVPN route beside the connected subnet it equals) is
// ordered by protocol, device and next hops, so listings and pages are
// stable.
func compareTenantRoutes(a, b fabric.Route) int {
	return cmp.Or(
		strings.Compare(a.Tenant, b.Tenant),
		a.Prefix.Addr().Compare(b.Prefix.Addr()),
		cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()),
		cmp.Compare(routeProtocols[a.Protocol], routeProtocols[b.Protocol]),
		strings.Compare(a.Device, b.Device),
		slices.CompareFunc(a.NextHops, b.NextHops, netip.Addr.Compare),
	)
}

// backendError turns a failure of the daemon's state into a status: the
// caller's own cancellation or deadline keeps its code, anything else is the
// daemon's fault.
func backendError(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	return status.Errorf(codes.Internal, "%s: %v", op, err)
}
