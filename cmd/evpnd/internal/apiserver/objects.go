package apiserver

import (
	"context"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
	"github.com/evpnd/evpnd/cmd/evpnd/internal/config"
	"github.com/evpnd/evpnd/policy"
)

// The configuration resources: the handlers check the request's shape and
// paging, and leave every rule about the objects themselves to the
// backend, which validates them together with the config file.

// input clears what a client may not set (Meta apart from the generation,
// output-only fields), so equal specs compare equal.
func input[T proto.Message](obj T) (T, int64) {
	obj = proto.Clone(obj).(T)
	var gen int64
	switch o := any(obj).(type) {
	case *evpndv1.Tenant:
		gen = o.GetMeta().GetGeneration()
		o.Meta, o.Namespace = nil, ""
	case *evpndv1.Segment:
		gen = o.GetMeta().GetGeneration()
		o.Meta, o.Ports = nil, nil
	case *evpndv1.Port:
		gen = o.GetMeta().GetGeneration()
		o.Meta = nil
	case *evpndv1.Policy:
		gen = o.GetMeta().GetGeneration()
		o.Meta = nil
	}
	return obj, gen
}

func (s *service) create(ctx context.Context, obj proto.Message) (proto.Message, bool, error) {
	obj, _ = input(obj)
	return s.backend.Change(ctx, Change{Op: OpCreate, Object: obj})
}

func (s *service) update(ctx context.Context, obj proto.Message) (proto.Message, error) {
	obj, gen := input(obj)
	out, _, err := s.backend.Change(ctx, Change{Op: OpUpdate, Object: obj, Generation: gen})
	return out, err
}

func (s *service) remove(ctx context.Context, key proto.Message, gen int64, allowMissing bool) error {
	_, _, err := s.backend.Change(ctx, Change{Op: OpDelete, Object: key, Generation: gen, AllowMissing: allowMissing})
	return err
}

func (s *service) objects(ctx context.Context) (config.APIObjects, error) {
	objs, err := s.backend.Objects(ctx)
	if err != nil {
		return objs, backendError("list objects", err)
	}
	return objs, nil
}

func notFound(kind, name, list string) error {
	return status.Errorf(codes.NotFound, "%s %q not found ('evpnctl %s list' shows what exists)", kind, name, list)
}

func keyRequired(v *violations, field, val string) {
	if val == "" {
		v.add(field, "is required")
	}
}

// --- tenants

func (s *service) CreateTenant(ctx context.Context, req *evpndv1.CreateTenantRequest) (*evpndv1.CreateTenantResponse, error) {
	if req.GetTenant() == nil {
		return nil, InvalidObject([]FieldViolation{{"tenant", "is required"}})
	}
	out, created, err := s.create(ctx, req.GetTenant())
	if err != nil {
		return nil, err
	}
	return &evpndv1.CreateTenantResponse{Tenant: out.(*evpndv1.Tenant), Created: created}, nil
}

func (s *service) GetTenant(ctx context.Context, req *evpndv1.GetTenantRequest) (*evpndv1.GetTenantResponse, error) {
	var v violations
	keyRequired(&v, "name", req.GetName())
	if err := v.err(); err != nil {
		return nil, err
	}
	o, err := s.objects(ctx)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(o.Tenants, func(t *evpndv1.Tenant) bool { return t.GetName() == req.GetName() })
	if i < 0 {
		return nil, notFound("tenant", req.GetName(), "tenant")
	}
	return &evpndv1.GetTenantResponse{Tenant: o.Tenants[i]}, nil
}

func (s *service) ListTenants(ctx context.Context, req *evpndv1.ListTenantsRequest) (*evpndv1.ListTenantsResponse, error) {
	var v violations
	pg := v.page(req.GetPageSize(), req.GetPageToken(), req)
	if err := v.err(); err != nil {
		return nil, err
	}
	o, err := s.objects(ctx)
	if err != nil {
		return nil, err
	}
	rows := slices.Clone(o.Tenants)
	slices.SortStableFunc(rows, func(a, b *evpndv1.Tenant) int { return strings.Compare(a.GetName(), b.GetName()) })
	rows, next := paginate(pg, rows)
	return &evpndv1.ListTenantsResponse{Tenants: rows, NextPageToken: next}, nil
}

func (s *service) UpdateTenant(ctx context.Context, req *evpndv1.UpdateTenantRequest) (*evpndv1.UpdateTenantResponse, error) {
	if req.GetTenant() == nil {
		return nil, InvalidObject([]FieldViolation{{"tenant", "is required"}})
	}
	out, err := s.update(ctx, req.GetTenant())
	if err != nil {
		return nil, err
	}
	return &evpndv1.UpdateTenantResponse{Tenant: out.(*evpndv1.Tenant)}, nil
}

func (s *service) DeleteTenant(ctx context.Context, req *evpndv1.DeleteTenantRequest) (*evpndv1.DeleteTenantResponse, error) {
	var v violations
	keyRequired(&v, "name", req.GetName())
	if err := v.err(); err != nil {
		return nil, err
	}
	if err := s.remove(ctx, &evpndv1.Tenant{Name: req.GetName()}, req.GetGeneration(), req.GetAllowMissing()); err != nil {
		return nil, err
	}
	return &evpndv1.DeleteTenantResponse{}, nil
}

// --- segments

func (s *service) CreateSegment(ctx context.Context, req *evpndv1.CreateSegmentRequest) (*evpndv1.CreateSegmentResponse, error) {
	if req.GetSegment() == nil {
		return nil, InvalidObject([]FieldViolation{{"segment", "is required"}})
	}
	out, created, err := s.create(ctx, req.GetSegment())
	if err != nil {
		return nil, err
	}
	return &evpndv1.CreateSegmentResponse{Segment: out.(*evpndv1.Segment), Created: created}, nil
}

func (s *service) GetSegment(ctx context.Context, req *evpndv1.GetSegmentRequest) (*evpndv1.GetSegmentResponse, error) {
	var v violations
	keyRequired(&v, "tenant", req.GetTenant())
	keyRequired(&v, "name", req.GetName())
	if err := v.err(); err != nil {
		return nil, err
	}
	o, err := s.objects(ctx)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(o.Segments, func(x *evpndv1.Segment) bool {
		return x.GetTenant() == req.GetTenant() && x.GetName() == req.GetName()
	})
	if i < 0 {
		return nil, notFound("segment", req.GetTenant()+"/"+req.GetName(), "segment")
	}
	return &evpndv1.GetSegmentResponse{Segment: o.Segments[i]}, nil
}

func (s *service) ListSegments(ctx context.Context, req *evpndv1.ListSegmentsRequest) (*evpndv1.ListSegmentsResponse, error) {
	var v violations
	pg := v.page(req.GetPageSize(), req.GetPageToken(), req)
	if err := v.err(); err != nil {
		return nil, err
	}
	o, err := s.objects(ctx)
	if err != nil {
		return nil, err
	}
	rows := slices.DeleteFunc(slices.Clone(o.Segments), func(x *evpndv1.Segment) bool {
		return req.GetTenant() != "" && x.GetTenant() != req.GetTenant()
	})
	slices.SortStableFunc(rows, func(a, b *evpndv1.Segment) int {
		if c := strings.Compare(a.GetTenant(), b.GetTenant()); c != 0 {
			return c
		}
		return strings.Compare(a.GetName(), b.GetName())
	})
	rows, next := paginate(pg, rows)
	return &evpndv1.ListSegmentsResponse{Segments: rows, NextPageToken: next}, nil
}

func (s *service) UpdateSegment(ctx context.Context, req *evpndv1.UpdateSegmentRequest) (*evpndv1.UpdateSegmentResponse, error) {
	if req.GetSegment() == nil {
		return nil, InvalidObject([]FieldViolation{{"segment", "is required"}})
	}
	out, err := s.update(ctx, req.GetSegment())
	if err != nil {
		return nil, err
	}
	return &evpndv1.UpdateSegmentResponse{Segment: out.(*evpndv1.Segment)}, nil
}

func (s *service) DeleteSegment(ctx context.Context, req *evpndv1.DeleteSegmentRequest) (*evpndv1.DeleteSegmentResponse, error) {
	var v violations
	keyRequired(&v, "tenant", req.GetTenant())
	keyRequired(&v, "name", req.GetName())
	if err := v.err(); err != nil {
		return nil, err
	}
	key := &evpndv1.Segment{Tenant: req.GetTenant(), Name: req.GetName()}
	if err := s.remove(ctx, key, req.GetGeneration(), req.GetAllowMissing()); err != nil {
		return nil, err
	}
	return &evpndv1.DeleteSegmentResponse{}, nil
}

// --- ports

func (s *service) AttachPort(ctx context.Context, req *evpndv1.AttachPortRequest) (*evpndv1.AttachPortResponse, error) {
	if req.GetPort() == nil {
		return nil, InvalidObject([]FieldViolation{{"port", "is required"}})
	}
	out, created, err := s.create(ctx, req.GetPort())
	if err != nil {
		return nil, err
	}
	return &evpndv1.AttachPortResponse{Port: out.(*evpndv1.Port), Created: created}, nil
}

func (s *service) GetPort(ctx context.Context, req *evpndv1.GetPortRequest) (*evpndv1.GetPortResponse, error) {
	var v violations
	keyRequired(&v, "interface", req.GetInterface())
	if err := v.err(); err != nil {
		return nil, err
	}
	o, err := s.objects(ctx)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(o.Ports, func(x *evpndv1.Port) bool { return x.GetInterface() == req.GetInterface() })
	if i < 0 {
		return nil, notFound("port", req.GetInterface(), "port")
	}
	return &evpndv1.GetPortResponse{Port: o.Ports[i]}, nil
}

func (s *service) ListPorts(ctx context.Context, req *evpndv1.ListPortsRequest) (*evpndv1.ListPortsResponse, error) {
	var v violations
	if req.GetSegment() != "" && req.GetTenant() == "" {
		v.add("segment", "needs tenant: segment names are unique only within a tenant")
	}
	pg := v.page(req.GetPageSize(), req.GetPageToken(), req)
	if err := v.err(); err != nil {
		return nil, err
	}
	o, err := s.objects(ctx)
	if err != nil {
		return nil, err
	}
	rows := slices.DeleteFunc(slices.Clone(o.Ports), func(x *evpndv1.Port) bool {
		return (req.GetTenant() != "" && x.GetTenant() != req.GetTenant()) ||
			(req.GetSegment() != "" && x.GetSegment() != req.GetSegment())
	})
	slices.SortStableFunc(rows, func(a, b *evpndv1.Port) int { return strings.Compare(a.GetInterface(), b.GetInterface()) })
	rows, next := paginate(pg, rows)
	return &evpndv1.ListPortsResponse{Ports: rows, NextPageToken: next}, nil
}

func (s *service) DetachPort(ctx context.Context, req *evpndv1.DetachPortRequest) (*evpndv1.DetachPortResponse, error) {
	var v violations
	keyRequired(&v, "interface", req.GetInterface())
	if err := v.err(); err != nil {
		return nil, err
	}
	if err := s.remove(ctx, &evpndv1.Port{Interface: req.GetInterface()}, req.GetGeneration(), req.GetAllowMissing()); err != nil {
		return nil, err
	}
	return &evpndv1.DetachPortResponse{}, nil
}

// --- policies

func (s *service) CreatePolicy(ctx context.Context, req *evpndv1.CreatePolicyRequest) (*evpndv1.CreatePolicyResponse, error) {
	if req.GetPolicy() == nil {
		return nil, InvalidObject([]FieldViolation{{"policy", "is required"}})
	}
	out, created, err := s.create(ctx, req.GetPolicy())
	if err != nil {
		return nil, err
	}
	return &evpndv1.CreatePolicyResponse{Policy: out.(*evpndv1.Policy), Created: created}, nil
}

func (s *service) GetPolicy(ctx context.Context, req *evpndv1.GetPolicyRequest) (*evpndv1.GetPolicyResponse, error) {
	var v violations
	keyRequired(&v, "tenant", req.GetTenant())
	if err := v.err(); err != nil {
		return nil, err
	}
	o, err := s.objects(ctx)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(o.Policies, func(x *evpndv1.Policy) bool { return x.GetTenant() == req.GetTenant() })
	if i < 0 {
		return nil, notFound("policy of tenant", req.GetTenant(), "policy")
	}
	return &evpndv1.GetPolicyResponse{Policy: o.Policies[i]}, nil
}

func (s *service) ListPolicies(ctx context.Context, req *evpndv1.ListPoliciesRequest) (*evpndv1.ListPoliciesResponse, error) {
	var v violations
	pg := v.page(req.GetPageSize(), req.GetPageToken(), req)
	if err := v.err(); err != nil {
		return nil, err
	}
	o, err := s.objects(ctx)
	if err != nil {
		return nil, err
	}
	rows := slices.Clone(o.Policies)
	slices.SortStableFunc(rows, func(a, b *evpndv1.Policy) int { return strings.Compare(a.GetTenant(), b.GetTenant()) })
	rows, next := paginate(pg, rows)
	return &evpndv1.ListPoliciesResponse{Policies: rows, NextPageToken: next}, nil
}

func (s *service) UpdatePolicy(ctx context.Context, req *evpndv1.UpdatePolicyRequest) (*evpndv1.UpdatePolicyResponse, error) {
	if req.GetPolicy() == nil {
		return nil, InvalidObject([]FieldViolation{{"policy", "is required"}})
	}
	out, err := s.update(ctx, req.GetPolicy())
	if err != nil {
		return nil, err
	}
	return &evpndv1.UpdatePolicyResponse{Policy: out.(*evpndv1.Policy)}, nil
}

func (s *service) DeletePolicy(ctx context.Context, req *evpndv1.DeletePolicyRequest) (*evpndv1.DeletePolicyResponse, error) {
	var v violations
	keyRequired(&v, "tenant", req.GetTenant())
	if err := v.err(); err != nil {
		return nil, err
	}
	if err := s.remove(ctx, &evpndv1.Policy{Tenant: req.GetTenant()}, req.GetGeneration(), req.GetAllowMissing()); err != nil {
		return nil, err
	}
	return &evpndv1.DeletePolicyResponse{}, nil
}

func (s *service) ListPolicyCounters(ctx context.Context, req *evpndv1.ListPolicyCountersRequest) (*evpndv1.ListPolicyCountersResponse, error) {
	var v violations
	pg := v.page(req.GetPageSize(), req.GetPageToken(), req)
	if err := v.err(); err != nil {
		return nil, err
	}
	cs, err := s.backend.PolicyCounters(ctx)
	if err != nil {
		return nil, backendError("read policy counters", err)
	}
	cs = slices.DeleteFunc(slices.Clone(cs), func(c policy.Counter) bool {
		return req.GetTenant() != "" && c.Tenant != req.GetTenant()
	})
	slices.SortStableFunc(cs, func(a, b policy.Counter) int {
		if c := strings.Compare(a.Tenant, b.Tenant); c != 0 {
			return c
		}
		return strings.Compare(a.Rule, b.Rule)
	})
	cs, next := paginate(pg, cs)
	resp := &evpndv1.ListPolicyCountersResponse{NextPageToken: next}
	for _, c := range cs {
		resp.Counters = append(resp.Counters, &evpndv1.PolicyCounter{Tenant: c.Tenant, Rule: c.Rule, Packets: c.Packets, Bytes: c.Bytes})
	}
	return resp, nil
}
