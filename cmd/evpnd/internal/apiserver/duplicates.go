package apiserver

import (
	"cmp"
	"context"
	"slices"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
	"github.com/evpnd/evpnd/evpn"
)

// Duplicate is a MAC frozen as a duplicate, in its tenant.
type Duplicate struct {
	evpn.Duplicate
	Tenant string
	Local  bool
}

func (s *service) ListDuplicateMacs(ctx context.Context, req *evpndv1.ListDuplicateMacsRequest) (*evpndv1.ListDuplicateMacsResponse, error) {
	var v violations
	pg := v.page(req.GetPageSize(), req.GetPageToken(), req)
	if err := v.err(); err != nil {
		return nil, err
	}
	ds, err := s.backend.Duplicates(ctx)
	if err != nil {
		return nil, backendError("list duplicate macs", err)
	}
	ds = slices.DeleteFunc(slices.Clone(ds), func(d Duplicate) bool {
		return req.GetTenant() != "" && d.Tenant != req.GetTenant()
	})
	slices.SortStableFunc(ds, func(a, b Duplicate) int {
		return cmp.Or(strings.Compare(a.Tenant, b.Tenant), cmp.Compare(a.VNI, b.VNI), slices.Compare(a.MAC, b.MAC))
	})
	ds, next := paginate(pg, ds)
	resp := &evpndv1.ListDuplicateMacsResponse{NextPageToken: next}
	for _, d := range ds {
		resp.Macs = append(resp.Macs, &evpndv1.DuplicateMac{Tenant: d.Tenant, Vni: uint32(d.VNI), Mac: macString(d.MAC),
			Moves: uint32(d.Moves), Since: timestamppb.New(d.Since), At: d.At.String(), Local: d.Local})
	}
	return resp, nil
}

func (s *service) ClearDuplicateMac(ctx context.Context, req *evpndv1.ClearDuplicateMacRequest) (*evpndv1.ClearDuplicateMacResponse, error) {
	var v violations
	vni := v.vni("vni", req.GetVni())
	mac := v.mac("mac", req.GetMac())
	if err := v.err(); err != nil {
		return nil, err
	}
	if err := s.backend.ClearDuplicate(ctx, vni, mac); err != nil {
		return nil, err
	}
	return &evpndv1.ClearDuplicateMacResponse{}, nil
}
