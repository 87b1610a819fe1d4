package apiserver

import (
	"cmp"
	"context"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
	"github.com/evpnd/evpnd/fabric"
)

// watch runs one watch stream: every event of the hub that send accepts
// (returns true for) is sent until the client goes away, the server stops,
// or the client falls too far behind.
func (s *service) watch(ctx context.Context, send func(Event) (bool, error)) error {
	sub := s.backend.Events().Subscribe()
	defer sub.Close()
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-sub.Overrun():
			return status.Errorf(codes.ResourceExhausted,
				"watcher fell more than %d events behind and was dropped; list again, then watch", subscribeBuffer)
		case e := <-sub.C:
			if _, err := send(e); err != nil {
				return err
			}
		}
	}
}

func eventKind(removed bool) evpndv1.EventKind {
	if removed {
		return evpndv1.EventKind_EVENT_KIND_REMOVED
	}
	return evpndv1.EventKind_EVENT_KIND_ADDED
}

func (s *service) WatchRoutes(req *evpndv1.WatchRoutesRequest, stream evpndv1.EvpndService_WatchRoutesServer) error {
	var v violations
	f := routeFilterOf(&v, &evpndv1.ListRoutesRequest{
		Type: req.GetType(), Vni: req.Vni, Rd: req.GetRd(), Mac: req.GetMac(), Prefix: req.GetPrefix()})
	if err := v.err(); err != nil {
		return err
	}
	return s.watch(stream.Context(), func(e Event) (bool, error) {
		if e.Route == nil || e.Route.NLRI == nil || !f.match(*e.Route) {
			return false, nil
		}
		return true, stream.Send(&evpndv1.WatchRoutesResponse{Kind: eventKind(e.Removed), Route: routeToProto(*e.Route)})
	})
}

func (s *service) WatchMacs(req *evpndv1.WatchMacsRequest, stream evpndv1.EvpndService_WatchMacsServer) error {
	var v violations
	f := macFilterOf(&v, &evpndv1.ListMacsRequest{Tenant: req.GetTenant(), Vni: req.Vni, Origin: req.GetOrigin()})
	if err := v.err(); err != nil {
		return err
	}
	return s.watch(stream.Context(), func(e Event) (bool, error) {
		if e.MAC == nil || !f.match(*e.MAC) {
			return false, nil
		}
		return true, stream.Send(&evpndv1.WatchMacsResponse{Kind: eventKind(e.Removed), Mac: macToProto(*e.MAC)})
	})
}

func (s *service) WatchPeers(_ *evpndv1.WatchPeersRequest, stream evpndv1.EvpndService_WatchPeersServer) error {
	return s.watch(stream.Context(), func(e Event) (bool, error) {
		if e.Peer == nil {
			return false, nil
		}
		return true, stream.Send(&evpndv1.WatchPeersResponse{Peer: peerToProto(*e.Peer)})
	})
}

func (s *service) ListNeighbors(ctx context.Context, req *evpndv1.ListNeighborsRequest) (*evpndv1.ListNeighborsResponse, error) {
	var v violations
	f := macFilterOf(&v, &evpndv1.ListMacsRequest{Tenant: req.GetTenant(), Vni: req.Vni, Origin: req.GetOrigin()})
	pg := v.page(req.GetPageSize(), req.GetPageToken(), req)
	if err := v.err(); err != nil {
		return nil, err
	}
	ns, err := s.backend.Neighbors(ctx)
	if err != nil {
		return nil, backendError("list neighbors", err)
	}
	ns = slices.DeleteFunc(slices.Clone(ns), func(n fabric.Neighbor) bool {
		return !f.match(fabric.MAC{Tenant: n.Tenant, VNI: n.VNI, Remote: n.Remote})
	})
	slices.SortStableFunc(ns, func(a, b fabric.Neighbor) int {
		return cmp.Or(strings.Compare(a.Tenant, b.Tenant), cmp.Compare(a.VNI, b.VNI), a.IP.Compare(b.IP))
	})
	ns, next := paginate(pg, ns)
	resp := &evpndv1.ListNeighborsResponse{NextPageToken: next}
	for _, n := range ns {
		resp.Neighbors = append(resp.Neighbors, &evpndv1.Neighbor{Tenant: n.Tenant, Vni: uint32(n.VNI),
			Ip: n.IP.String(), Mac: macString(n.MAC), Remote: n.Remote, State: n.State})
	}
	return resp, nil
}
