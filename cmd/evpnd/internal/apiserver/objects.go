package apiserver

import (
	"cmp"
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

// createAs is a create of obj, a required field of the request.
func createAs[T proto.Message](ctx context.Context, s *service, field string, obj T) (T, bool, error) {
	var zero T
	if !obj.ProtoReflect().IsValid() {
		return zero, false, InvalidObject([]FieldViolation{{field, "is required"}})
	}
	out, created, err := s.create(ctx, obj)
	if err != nil {
		return zero, false, err
	}
	return out.(T), created, nil
}

// updateAs is an update of obj, a required field of the request.
func updateAs[T proto.Message](ctx context.Context, s *service, field string, obj T) (T, error) {
	var zero T
	if !obj.ProtoReflect().IsValid() {
		return zero, InvalidObject([]FieldViolation{{field, "is required"}})
	}
	out, err := s.update(ctx, obj)
	if err != nil {
		return zero, err
	}
	return out.(T), nil
}

// getOne finds the object match selects among those rows lists, after
// checking the request's key fields (field name to value) are set.
func getOne[T proto.Message](ctx context.Context, s *service, keys [][2]string, rows func(config.APIObjects) []T,
	match func(T) bool, kind, name string) (T, error) {
	var zero T
	var v violations
	for _, k := range keys {
		keyRequired(&v, k[0], k[1])
	}
	if err := v.err(); err != nil {
		return zero, err
	}
	o, err := s.objects(ctx)
	if err != nil {
		return zero, err
	}
	list := rows(o)
	i := slices.IndexFunc(list, match)
	if i < 0 {
		return zero, notFound(kind, name, strings.Fields(kind)[0])
	}
	return list[i], nil
}

// listSome lists the objects rows gives that keep selects, ordered by
// cmp, one page of them.
func listSome[T proto.Message](ctx context.Context, s *service, req proto.Message, size int32, token string,
	rows func(config.APIObjects) []T, keep func(T) bool, cmp func(a, b T) int) ([]T, string, error) {
	var v violations
	pg := v.page(size, token, req)
	if err := v.err(); err != nil {
		return nil, "", err
	}
	o, err := s.objects(ctx)
	if err != nil {
		return nil, "", err
	}
	list := slices.DeleteFunc(slices.Clone(rows(o)), func(x T) bool { return keep != nil && !keep(x) })
	slices.SortStableFunc(list, cmp)
	list, next := paginate(pg, list)
	return list, next, nil
}

// deleteKey deletes the object key names, after checking the request's
// key fields are set.
func (s *service) deleteKey(ctx context.Context, keys [][2]string, key proto.Message, gen int64, allowMissing bool) error {
	var v violations
	for _, k := range keys {
		keyRequired(&v, k[0], k[1])
	}
	if err := v.err(); err != nil {
		return err
	}
	return s.remove(ctx, key, gen, allowMissing)
}

// --- tenants

func tenants(o config.APIObjects) []*evpndv1.Tenant   { return o.Tenants }
func segments(o config.APIObjects) []*evpndv1.Segment { return o.Segments }
func ports(o config.APIObjects) []*evpndv1.Port       { return o.Ports }
func policies(o config.APIObjects) []*evpndv1.Policy  { return o.Policies }

func (s *service) CreateTenant(ctx context.Context, req *evpndv1.CreateTenantRequest) (*evpndv1.CreateTenantResponse, error) {
	out, created, err := createAs(ctx, s, "tenant", req.GetTenant())
	if err != nil {
		return nil, err
	}
	return &evpndv1.CreateTenantResponse{Tenant: out, Created: created}, nil
}

func (s *service) GetTenant(ctx context.Context, req *evpndv1.GetTenantRequest) (*evpndv1.GetTenantResponse, error) {
	t, err := getOne(ctx, s, [][2]string{{"name", req.GetName()}}, tenants,
		func(t *evpndv1.Tenant) bool { return t.GetName() == req.GetName() }, "tenant", req.GetName())
	if err != nil {
		return nil, err
	}
	return &evpndv1.GetTenantResponse{Tenant: t}, nil
}

func (s *service) ListTenants(ctx context.Context, req *evpndv1.ListTenantsRequest) (*evpndv1.ListTenantsResponse, error) {
	rows, next, err := listSome(ctx, s, req, req.GetPageSize(), req.GetPageToken(), tenants, nil,
		func(a, b *evpndv1.Tenant) int { return strings.Compare(a.GetName(), b.GetName()) })
	if err != nil {
		return nil, err
	}
	return &evpndv1.ListTenantsResponse{Tenants: rows, NextPageToken: next}, nil
}

func (s *service) UpdateTenant(ctx context.Context, req *evpndv1.UpdateTenantRequest) (*evpndv1.UpdateTenantResponse, error) {
	out, err := updateAs(ctx, s, "tenant", req.GetTenant())
	if err != nil {
		return nil, err
	}
	return &evpndv1.UpdateTenantResponse{Tenant: out}, nil
}

func (s *service) DeleteTenant(ctx context.Context, req *evpndv1.DeleteTenantRequest) (*evpndv1.DeleteTenantResponse, error) {
	err := s.deleteKey(ctx, [][2]string{{"name", req.GetName()}}, &evpndv1.Tenant{Name: req.GetName()},
		req.GetGeneration(), req.GetAllowMissing())
	if err != nil {
		return nil, err
	}
	return &evpndv1.DeleteTenantResponse{}, nil
}

// --- segments

func (s *service) CreateSegment(ctx context.Context, req *evpndv1.CreateSegmentRequest) (*evpndv1.CreateSegmentResponse, error) {
	out, created, err := createAs(ctx, s, "segment", req.GetSegment())
	if err != nil {
		return nil, err
	}
	return &evpndv1.CreateSegmentResponse{Segment: out, Created: created}, nil
}

func (s *service) GetSegment(ctx context.Context, req *evpndv1.GetSegmentRequest) (*evpndv1.GetSegmentResponse, error) {
	seg, err := getOne(ctx, s, [][2]string{{"tenant", req.GetTenant()}, {"name", req.GetName()}}, segments,
		func(x *evpndv1.Segment) bool { return x.GetTenant() == req.GetTenant() && x.GetName() == req.GetName() },
		"segment", req.GetTenant()+"/"+req.GetName())
	if err != nil {
		return nil, err
	}
	return &evpndv1.GetSegmentResponse{Segment: seg}, nil
}

func (s *service) ListSegments(ctx context.Context, req *evpndv1.ListSegmentsRequest) (*evpndv1.ListSegmentsResponse, error) {
	rows, next, err := listSome(ctx, s, req, req.GetPageSize(), req.GetPageToken(), segments,
		func(x *evpndv1.Segment) bool { return req.GetTenant() == "" || x.GetTenant() == req.GetTenant() },
		func(a, b *evpndv1.Segment) int {
			return cmp.Or(strings.Compare(a.GetTenant(), b.GetTenant()), strings.Compare(a.GetName(), b.GetName()))
		})
	if err != nil {
		return nil, err
	}
	return &evpndv1.ListSegmentsResponse{Segments: rows, NextPageToken: next}, nil
}

func (s *service) UpdateSegment(ctx context.Context, req *evpndv1.UpdateSegmentRequest) (*evpndv1.UpdateSegmentResponse, error) {
	out, err := updateAs(ctx, s, "segment", req.GetSegment())
	if err != nil {
		return nil, err
	}
	return &evpndv1.UpdateSegmentResponse{Segment: out}, nil
}

func (s *service) DeleteSegment(ctx context.Context, req *evpndv1.DeleteSegmentRequest) (*evpndv1.DeleteSegmentResponse, error) {
	err := s.deleteKey(ctx, [][2]string{{"tenant", req.GetTenant()}, {"name", req.GetName()}},
		&evpndv1.Segment{Tenant: req.GetTenant(), Name: req.GetName()}, req.GetGeneration(), req.GetAllowMissing())
	if err != nil {
		return nil, err
	}
	return &evpndv1.DeleteSegmentResponse{}, nil
}

// --- ports

func (s *service) AttachPort(ctx context.Context, req *evpndv1.AttachPortRequest) (*evpndv1.AttachPortResponse, error) {
	out, created, err := createAs(ctx, s, "port", req.GetPort())
	if err != nil {
		return nil, err
	}
	return &evpndv1.AttachPortResponse{Port: out, Created: created}, nil
}

func (s *service) GetPort(ctx context.Context, req *evpndv1.GetPortRequest) (*evpndv1.GetPortResponse, error) {
	p, err := getOne(ctx, s, [][2]string{{"interface", req.GetInterface()}}, ports,
		func(x *evpndv1.Port) bool { return x.GetInterface() == req.GetInterface() }, "port", req.GetInterface())
	if err != nil {
		return nil, err
	}
	return &evpndv1.GetPortResponse{Port: p}, nil
}

func (s *service) ListPorts(ctx context.Context, req *evpndv1.ListPortsRequest) (*evpndv1.ListPortsResponse, error) {
	if req.GetSegment() != "" && req.GetTenant() == "" {
		var v violations
		v.add("segment", "needs tenant: segment names are unique only within a tenant")
		return nil, v.err()
	}
	rows, next, err := listSome(ctx, s, req, req.GetPageSize(), req.GetPageToken(), ports,
		func(x *evpndv1.Port) bool {
			return (req.GetTenant() == "" || x.GetTenant() == req.GetTenant()) &&
				(req.GetSegment() == "" || x.GetSegment() == req.GetSegment())
		},
		func(a, b *evpndv1.Port) int { return strings.Compare(a.GetInterface(), b.GetInterface()) })
	if err != nil {
		return nil, err
	}
	return &evpndv1.ListPortsResponse{Ports: rows, NextPageToken: next}, nil
}

func (s *service) DetachPort(ctx context.Context, req *evpndv1.DetachPortRequest) (*evpndv1.DetachPortResponse, error) {
	err := s.deleteKey(ctx, [][2]string{{"interface", req.GetInterface()}}, &evpndv1.Port{Interface: req.GetInterface()},
		req.GetGeneration(), req.GetAllowMissing())
	if err != nil {
		return nil, err
	}
	return &evpndv1.DetachPortResponse{}, nil
}

// --- policies

func (s *service) CreatePolicy(ctx context.Context, req *evpndv1.CreatePolicyRequest) (*evpndv1.CreatePolicyResponse, error) {
	out, created, err := createAs(ctx, s, "policy", req.GetPolicy())
	if err != nil {
		return nil, err
	}
	return &evpndv1.CreatePolicyResponse{Policy: out, Created: created}, nil
}

func (s *service) GetPolicy(ctx context.Context, req *evpndv1.GetPolicyRequest) (*evpndv1.GetPolicyResponse, error) {
	p, err := getOne(ctx, s, [][2]string{{"tenant", req.GetTenant()}}, policies,
		func(x *evpndv1.Policy) bool { return x.GetTenant() == req.GetTenant() }, "policy of tenant", req.GetTenant())
	if err != nil {
		return nil, err
	}
	return &evpndv1.GetPolicyResponse{Policy: p}, nil
}

func (s *service) ListPolicies(ctx context.Context, req *evpndv1.ListPoliciesRequest) (*evpndv1.ListPoliciesResponse, error) {
	rows, next, err := listSome(ctx, s, req, req.GetPageSize(), req.GetPageToken(), policies, nil,
		func(a, b *evpndv1.Policy) int { return strings.Compare(a.GetTenant(), b.GetTenant()) })
	if err != nil {
		return nil, err
	}
	return &evpndv1.ListPoliciesResponse{Policies: rows, NextPageToken: next}, nil
}

func (s *service) UpdatePolicy(ctx context.Context, req *evpndv1.UpdatePolicyRequest) (*evpndv1.UpdatePolicyResponse, error) {
	out, err := updateAs(ctx, s, "policy", req.GetPolicy())
	if err != nil {
		return nil, err
	}
	return &evpndv1.UpdatePolicyResponse{Policy: out}, nil
}

func (s *service) DeletePolicy(ctx context.Context, req *evpndv1.DeletePolicyRequest) (*evpndv1.DeletePolicyResponse, error) {
	err := s.deleteKey(ctx, [][2]string{{"tenant", req.GetTenant()}}, &evpndv1.Policy{Tenant: req.GetTenant()},
		req.GetGeneration(), req.GetAllowMissing())
	if err != nil {
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
