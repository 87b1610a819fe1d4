package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
)

// apiServer is an in-process EvpndService for the configuration, neighbor
// and watch RPCs. It keeps objects with the API's rules (idempotent
// create, generation checks, config objects read-only) so the CLI's
// read-change-write paths run for real, and it records every request so
// tests assert what the CLI sent. It is not evpnd: the lead's end-to-end
// tests run the CLI against the real daemon.
type apiServer struct {
	evpndv1.UnimplementedEvpndServiceServer

	mu       sync.Mutex
	requests []proto.Message
	tenants  map[string]*evpndv1.Tenant
	segments map[string]*evpndv1.Segment // by tenant/name
	ports    map[string]*evpndv1.Port
	policies map[string]*evpndv1.Policy
	counters []*evpndv1.PolicyCounter
	neigh    []*evpndv1.Neighbor
	// bumpAfterGet makes every GetTenant a read that someone else's
	// update follows, to provoke ABORTED.
	bumpAfterGet bool

	routeEvents []*evpndv1.WatchRoutesResponse
	macEvents   []*evpndv1.WatchMacsResponse
	peerEvents  []*evpndv1.WatchPeersResponse
	// holdWatch keeps a watch open after its events until the client goes;
	// sent is signalled when the events are out.
	holdWatch bool
	sent      chan struct{}
}

// pageSize is small so every list takes several pages.
const pageSize = 2

var (
	created = timestamppb.New(time.Date(2025, 11, 1, 8, 0, 0, 0, time.UTC))
	updated = timestamppb.New(time.Date(2025, 11, 20, 9, 30, 0, 0, time.UTC))
)

func meta(gen int64, src evpndv1.Source) *evpndv1.Meta {
	return &evpndv1.Meta{Generation: gen, Source: src, CreateTime: created, UpdateTime: updated}
}

const (
	api    = evpndv1.Source_SOURCE_API
	config = evpndv1.Source_SOURCE_CONFIG
)

func newAPIServer() *apiServer {
	s := &apiServer{
		tenants: map[string]*evpndv1.Tenant{
			"blue": {Name: "blue", L3Vni: 5000, AnycastGatewayMac: "02:00:00:00:00:01",
				Routes:       []*evpndv1.StaticRoute{{Prefix: "198.51.100.0/24", Via: "10.1.0.254"}},
				RouteTargets: &evpndv1.RouteTargets{Import: []string{"65000:5000"}, Export: []string{"65000:5000"}},
				Namespace:    "evpn-blue", Meta: meta(3, api)},
			"green": {Name: "green", Namespace: "evpn-green", Meta: meta(1, api)},
			"red":   {Name: "red", L3Vni: 6000, AdvertiseConnected: proto.Bool(false), Namespace: "evpn-red", Meta: meta(1, config)},
		},
		segments: map[string]*evpndv1.Segment{
			"blue/web": {Tenant: "blue", Name: "web", Vni: 100, Gateway: []string{"10.1.0.1/24", "2001:db8:1::1/64"}, Meta: meta(2, api)},
			"blue/db":  {Tenant: "blue", Name: "db", Vni: 101, Mtu: 1450, Gateway: []string{"10.2.0.1/24"}, Meta: meta(1, api)},
			"red/lan": {Tenant: "red", Name: "lan", Vni: 300,
				RouteTargets: &evpndv1.RouteTargets{Import: []string{"65000:300"}, Export: []string{"65000:300"}}, Meta: meta(1, config)},
		},
		ports: map[string]*evpndv1.Port{
			"tap-vm1": {Interface: "tap-vm1", Tenant: "blue", Segment: "web", Meta: meta(1, api)},
			"tap-vm2": {Interface: "tap-vm2", Tenant: "blue", Segment: "web", Meta: meta(1, api)},
			"tap-db1": {Interface: "tap-db1", Tenant: "blue", Segment: "db", Meta: meta(1, api)},
			"tap-red": {Interface: "tap-red", Tenant: "red", Segment: "lan", Meta: meta(1, config)},
		},
		policies: map[string]*evpndv1.Policy{
			"blue": bluePolicy(),
			"red":  {Tenant: "red", Rules: []*evpndv1.Rule{{Name: "any", Priority: 1, Direction: "egress", Segment: "lan", Action: "allow"}}, Meta: meta(1, config)},
		},
		counters: []*evpndv1.PolicyCounter{
			{Tenant: "blue", Rule: "default:db:ingress", Packets: 12, Bytes: 720},
			{Tenant: "blue", Rule: "http", Packets: 1843, Bytes: 240512},
			{Tenant: "blue", Rule: "ping", Packets: 4, Bytes: 336},
			{Tenant: "red", Rule: "any", Packets: 0, Bytes: 0},
		},
		neigh: []*evpndv1.Neighbor{
			{Tenant: "blue", Vni: 100, Ip: "10.1.0.10", Mac: "02:00:00:00:01:01", State: "reachable"},
			{Tenant: "blue", Vni: 100, Ip: "10.1.0.20", Mac: "02:00:00:00:02:01", Remote: true, State: "noarp"},
			{Tenant: "blue", Vni: 100, Ip: "2001:db8:1::10", Mac: "02:00:00:00:01:01", State: "stale"},
			{Tenant: "red", Vni: 300, Ip: "10.3.0.5", Mac: "02:00:00:00:03:05", State: "reachable"},
		},
		sent: make(chan struct{}, 1),
	}
	return s
}

func bluePolicy() *evpndv1.Policy {
	return &evpndv1.Policy{
		Tenant:        "blue",
		AddressGroups: []*evpndv1.AddressGroup{{Name: "office", Prefixes: []string{"198.51.100.0/24", "2001:db8:f::/48"}}},
		PortGroups:    []*evpndv1.PortGroup{{Name: "web", Ports: []string{"tap-vm1", "tap-vm2"}}},
		Segments:      []*evpndv1.SegmentDefaults{{Segment: "db", Ingress: "drop"}},
		Rules: []*evpndv1.Rule{
			{Name: "http", Priority: 10, Direction: "ingress", PortGroup: "web", Remote: &evpndv1.Remote{AddressGroup: "office"},
				Protocol: "tcp", Ports: []string{"80", "443"}, Action: "allow", Log: true},
			{Name: "ping", Priority: 20, Direction: "ingress", PortGroup: "web", Protocol: "icmp", IcmpTypes: []int32{8}, Action: "allow", Dscp: proto.Int32(46)},
		},
		Nat: &evpndv1.Nat{Snat: "203.0.113.1", FloatingIps: []*evpndv1.FloatingIp{{External: "203.0.113.10", Internal: "10.1.0.10"}},
			PortForwards: []*evpndv1.PortForward{{External: "203.0.113.1", Protocol: "tcp", Port: 2222, Internal: "10.1.0.10", InternalPort: 22}}},
		Qos:  []*evpndv1.PortQos{{Port: "tap-vm1", Egress: &evpndv1.Rate{Rate: "100mbit", Burst: "64kb"}}},
		Meta: meta(4, api),
	}
}

// serve starts s on a unix socket in a test directory and returns the
// socket and a function that stops the server at once.
func (s *apiServer) serve(t *testing.T) (socket string, stop func()) {
	t.Helper()
	socket = filepath.Join(t.TempDir(), "evpnd.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	evpndv1.RegisterEvpndServiceServer(gs, s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		gs.Serve(l)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			gs.Stop()
			<-done
		})
	}
	t.Cleanup(stop)
	return socket, stop
}

func (s *apiServer) record(req proto.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, proto.Clone(req))
}

// sentRequests are the requests recorded, in order.
func (s *apiServer) sentRequests() []proto.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]proto.Message(nil), s.requests...)
}

// page serves rows page by page with the index of the next row as token.
func page[T any](rows []T, token string) ([]T, string, error) {
	start := 0
	if token != "" {
		n, err := strconv.Atoi(token)
		if err != nil || n < 0 || n > len(rows) {
			return nil, "", status.Errorf(codes.InvalidArgument, "bad page token %q", token)
		}
		start = n
	}
	end := min(start+pageSize, len(rows))
	next := ""
	if end < len(rows) {
		next = strconv.Itoa(end)
	}
	return rows[start:end], next, nil
}

func sorted[T any](m map[string]T) []T {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]T, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}

func badRequest(msg string, fields ...string) error {
	st := status.New(codes.InvalidArgument, msg)
	br := &errdetails.BadRequest{}
	for i := 0; i+1 < len(fields); i += 2 {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: fields[i], Description: fields[i+1]})
	}
	st, err := st.WithDetails(br)
	if err != nil {
		panic(err)
	}
	return st.Err()
}

func readOnly(kind, name string) error {
	return status.Errorf(codes.FailedPrecondition, "%s %s is declared in the config file: change the file and send evpnd SIGHUP", kind, name)
}

// checkGeneration applies the optimistic concurrency rule.
func checkGeneration(kind, name string, want int64, stored *evpndv1.Meta) error {
	if want != 0 && want != stored.GetGeneration() {
		return status.Errorf(codes.Aborted, "%s %s is at generation %d, not %d", kind, name, stored.GetGeneration(), want)
	}
	return nil
}

// settingsEqual compares two objects without what the server fills in.
func settingsEqual(a, b proto.Message, clear func(proto.Message)) bool {
	a, b = proto.Clone(a), proto.Clone(b)
	clear(a)
	clear(b)
	return proto.Equal(a, b)
}

func clearTenant(m proto.Message) {
	t := m.(*evpndv1.Tenant)
	t.Namespace, t.Meta = "", nil
}

func clearSegment(m proto.Message) {
	s := m.(*evpndv1.Segment)
	s.Ports, s.Meta = nil, nil
}

func clearPolicy(m proto.Message) { m.(*evpndv1.Policy).Meta = nil }

// next is the meta of an object after an accepted write.
func next(old *evpndv1.Meta) *evpndv1.Meta {
	if old == nil {
		return meta(1, api)
	}
	return &evpndv1.Meta{Generation: old.GetGeneration() + 1, Source: api, CreateTime: old.GetCreateTime(), UpdateTime: updated}
}

func validateTenant(t *evpndv1.Tenant) error {
	var fields []string
	if t.GetName() == "" {
		fields = append(fields, "tenant.name", "must not be empty")
	}
	if t.GetL3Vni() > 16777215 {
		fields = append(fields, "tenant.l3vni", fmt.Sprintf("%d is out of range 1..16777215", t.GetL3Vni()))
	}
	for i, r := range t.GetRoutes() {
		if _, err := netip.ParsePrefix(r.GetPrefix()); err != nil {
			fields = append(fields, fmt.Sprintf("tenant.routes[%d].prefix", i), fmt.Sprintf("%q is not an IP prefix", r.GetPrefix()))
		}
	}
	if len(fields) > 0 {
		return badRequest("invalid tenant "+strconv.Quote(t.GetName()), fields...)
	}
	return nil
}

func (s *apiServer) CreateTenant(_ context.Context, req *evpndv1.CreateTenantRequest) (*evpndv1.CreateTenantResponse, error) {
	s.record(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	t := req.GetTenant()
	if err := validateTenant(t); err != nil {
		return nil, err
	}
	if old, ok := s.tenants[t.GetName()]; ok {
		if settingsEqual(old, t, clearTenant) {
			return &evpndv1.CreateTenantResponse{Tenant: old}, nil
		}
		return nil, status.Errorf(codes.AlreadyExists, "tenant %s already exists with other settings", t.GetName())
	}
	t = proto.Clone(t).(*evpndv1.Tenant)
	t.Namespace, t.Meta = "evpn-"+t.GetName(), meta(1, api)
	s.tenants[t.GetName()] = t
	return &evpndv1.CreateTenantResponse{Tenant: t, Created: true}, nil
}

func (s *apiServer) GetTenant(_ context.Context, req *evpndv1.GetTenantRequest) (*evpndv1.GetTenantResponse, error) {
	s.record(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tenants[req.GetName()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "tenant %s not found", req.GetName())
	}
	resp := &evpndv1.GetTenantResponse{Tenant: proto.Clone(t).(*evpndv1.Tenant)}
	if s.bumpAfterGet {
		t.Meta = next(t.GetMeta())
	}
	return resp, nil
}

func (s *apiServer) ListTenants(_ context.Context, req *evpndv1.ListTenantsRequest) (*evpndv1.ListTenantsResponse, error) {
	s.record(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	rows, next, err := page(sorted(s.tenants), req.GetPageToken())
	return &evpndv1.ListTenantsResponse{Tenants: rows, NextPageToken: next}, err
}

func (s *apiServer) UpdateTenant(_ context.Context, req *evpndv1.UpdateTenantRequest) (*evpndv1.UpdateTenantResponse, error) {
	s.record(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	t := req.GetTenant()
	old, ok := s.tenants[t.GetName()]
	switch {
	case !ok:
		return nil, status.Errorf(codes.NotFound, "tenant %s not found", t.GetName())
	case old.GetMeta().GetSource() == config:
		return nil, readOnly("tenant", t.GetName())
	}
	if err := checkGeneration("tenant", t.GetName(), t.GetMeta().GetGeneration(), old.GetMeta()); err != nil {
		return nil, err
	}
	if err := validateTenant(t); err != nil {
		return nil, err
	}
	t = proto.Clone(t).(*evpndv1.Tenant)
	t.Namespace, t.Meta = old.GetNamespace(), next(old.GetMeta())
	s.tenants[t.GetName()] = t
	return &evpndv1.UpdateTenantResponse{Tenant: t}, nil
}

func (s *apiServer) DeleteTenant(_ context.Context, req *evpndv1.DeleteTenantRequest) (*evpndv1.DeleteTenantResponse, error) {
	s.record(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.tenants[req.GetName()]
	switch {
	case !ok && req.GetAllowMissing():
		return &evpndv1.DeleteTenantResponse{}, nil
	case !ok:
		return nil, status.Errorf(codes.NotFound, "tenant %s not found", req.GetName())
	case old.GetMeta().GetSource() == config:
		return nil, readOnly("tenant", req.GetName())
	}
	if err := checkGeneration("tenant", req.GetName(), req.GetGeneration(), old.GetMeta()); err != nil {
		return nil, err
	}
	for _, seg := range sorted(s.segments) {
		if seg.GetTenant() == req.GetName() {
			return nil, status.Errorf(codes.FailedPrecondition, "tenant %s still has segment %s: delete its segments first", req.GetName(), seg.GetName())
		}
	}
	delete(s.tenants, req.GetName())
	return &evpndv1.DeleteTenantResponse{}, nil
}

// withPorts is a segment as the API returns it, with its ports.
func (s *apiServer) withPorts(seg *evpndv1.Segment) *evpndv1.Segment {
	seg = proto.Clone(seg).(*evpndv1.Segment)
	seg.Ports = nil
	for _, p := range sorted(s.ports) {
		if p.GetTenant() == seg.GetTenant() && p.GetSegment() == seg.GetName() {
			seg.Ports = append(seg.Ports, p.GetInterface())
		}
	}
	return seg
}

func validateSegment(seg *evpndv1.Segment) error {
	if seg.GetVni() == 0 || seg.GetVni() > 16777215 {
		return badRequest("invalid segment "+strconv.Quote(seg.GetName()), "segment.vni", fmt.Sprintf("%d is out of range 1..16777215", seg.GetVni()))
	}
	return nil
}

func (s *apiServer) CreateSegment(_ context.Context, req *evpndv1.CreateSegmentRequest) (*evpndv1.CreateSegmentResponse, error) {
	s.record(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	seg := req.GetSegment()
	if err := validateSegment(seg); err != nil {
		return nil, err
	}
	if _, ok := s.tenants[seg.GetTenant()]; !ok {
		return nil, status.Errorf(codes.FailedPrecondition, "tenant %s does not exist", seg.GetTenant())
	}
	key := seg.GetTenant() + "/" + seg.GetName()
	if old, ok := s.segments[key]; ok {
		if settingsEqual(old, seg, clearSegment) {
			return &evpndv1.CreateSegmentResponse{Segment: s.withPorts(old)}, nil
		}
		return nil, status.Errorf(codes.AlreadyExists, "segment %s already exists with other settings", key)
	}
	seg = proto.Clone(seg).(*evpndv1.Segment)
	seg.Ports, seg.Meta = nil, meta(1, api)
	s.segments[key] = seg
	return &evpndv1.CreateSegmentResponse{Segment: s.withPorts(seg), Created: true}, nil
}

func (s *apiServer) GetSegment(_ context.Context, req *evpndv1.GetSegmentRequest) (*evpndv1.GetSegmentResponse, error) {
	s.record(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	seg, ok := s.segments[req.GetTenant()+"/"+req.GetName()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "segment %s/%s not found", req.GetTenant(), req.GetName())
	}
	return &evpndv1.GetSegmentResponse{Segment: s.withPorts(seg)}, nil
}

func (s *apiServer) ListSegments(_ context.Context, req *evpndv1.ListSegmentsRequest) (*evpndv1.ListSegmentsResponse, error) {
	s.record(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*evpndv1.Segment
	for _, seg := range sorted(s.segments) {
		if req.GetTenant() == "" || seg.GetTenant() == req.GetTenant() {
			all = append(all, s.withPorts(seg))
		}
	}
	rows, next, err := page(all, req.GetPageToken())
	return &evpndv1.ListSegmentsResponse{Segments: rows, NextPageToken: next}, err
}

func (s *apiServer) UpdateSegment(_ context.Context, req *evpndv1.UpdateSegmentRequest) (*evpndv1.UpdateSegmentResponse, error) {
	s.record(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	seg := req.GetSegment()
	key := seg.GetTenant() + "/" + seg.GetName()
	old, ok := s.segments[key]
	switch {
	case !ok:
		return nil, status.Errorf(codes.NotFound, "segment %s not found", key)
	case old.GetMeta().GetSource() == config:
		return nil, readOnly("segment", key)
	}
	if err := checkGeneration("segment", key, seg.GetMeta().GetGeneration(), old.GetMeta()); err != nil {
		return nil, err
	}
	if err := validateSegment(seg); err != nil {
		return nil, err
	}
	seg = proto.Clone(seg).(*evpndv1.Segment)
	seg.Ports, seg.Meta = nil, next(old.GetMeta())
	s.segments[key] = seg
	return &evpndv1.UpdateSegmentResponse{Segment: s.withPorts(seg)}, nil
}

func (s *apiServer) DeleteSegment(_ context.Context, req *evpndv1.DeleteSegmentRequest) (*evpndv1.DeleteSegmentResponse, error) {
	s.record(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	key := req.GetTenant() + "/" + req.GetName()
	old, ok := s.segments[key]
	switch {
	case !ok && req.GetAllowMissing():
		return &evpndv1.DeleteSegmentResponse{}, nil
	case !ok:
		return nil, status.Errorf(codes.NotFound, "segment %s not found", key)
	case old.GetMeta().GetSource() == config:
		return nil, readOnly("segment", key)
	}
	if err := checkGeneration("segment", key, req.GetGeneration(), old.GetMeta()); err != nil {
		return nil, err
	}
	delete(s.segments, key)
	return &evpndv1.DeleteSegmentResponse{}, nil
}

func (s *apiServer) AttachPort(_ context.Context, req *evpndv1.AttachPortRequest) (*evpndv1.AttachPortResponse, error) {
	s.record(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	p := req.GetPort()
	if _, ok := s.segments[p.GetTenant()+"/"+p.GetSegment()]; !ok {
		return nil, status.Errorf(codes.FailedPrecondition, "segment %s/%s does not exist", p.GetTenant(), p.GetSegment())
	}
	if old, ok := s.ports[p.GetInterface()]; ok {
		if old.GetTenant() == p.GetTenant() && old.GetSegment() == p.GetSegment() {
			return &evpndv1.AttachPortResponse{Port: old}, nil
		}
		return nil, status.Errorf(codes.AlreadyExists, "port %s is attached to %s/%s", p.GetInterface(), old.GetTenant(), old.GetSegment())
	}
	p = proto.Clone(p).(*evpndv1.Port)
	p.Meta = meta(1, api)
	s.ports[p.GetInterface()] = p
	return &evpndv1.AttachPortResponse{Port: p, Created: true}, nil
}

func (s *apiServer) GetPort(_ context.Context, req *evpndv1.GetPortRequest) (*evpndv1.GetPortResponse, error) {
	s.record(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.ports[req.GetInterface()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "port %s not found", req.GetInterface())
	}
	return &evpndv1.GetPortResponse{Port: p}, nil
}

func (s *apiServer) ListPorts(_ context.Context, req *evpndv1.ListPortsRequest) (*evpndv1.ListPortsResponse, error) {
	s.record(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*evpndv1.Port
	for _, p := range sorted(s.ports) {
		if (req.GetTenant() == "" || p.GetTenant() == req.GetTenant()) && (req.GetSegment() == "" || p.GetSegment() == req.GetSegment()) {
			all = append(all, p)
		}
	}
	rows, next, err := page(all, req.GetPageToken())
	return &evpndv1.ListPortsResponse{Ports: rows, NextPageToken: next}, err
}

func (s *apiServer) DetachPort(_ context.Context, req *evpndv1.DetachPortRequest) (*evpndv1.DetachPortResponse, error) {
	s.record(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.ports[req.GetInterface()]
	switch {
	case !ok && req.GetAllowMissing():
		return &evpndv1.DetachPortResponse{}, nil
	case !ok:
		return nil, status.Errorf(codes.NotFound, "port %s not found", req.GetInterface())
	case old.GetMeta().GetSource() == config:
		return nil, readOnly("port", req.GetInterface())
	}
	if err := checkGeneration("port", req.GetInterface(), req.GetGeneration(), old.GetMeta()); err != nil {
		return nil, err
	}
	delete(s.ports, req.GetInterface())
	return &evpndv1.DetachPortResponse{}, nil
}

func (s *apiServer) CreatePolicy(_ context.Context, req *evpndv1.CreatePolicyRequest) (*evpndv1.CreatePolicyResponse, error) {
	s.record(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	p := req.GetPolicy()
	if old, ok := s.policies[p.GetTenant()]; ok {
		if settingsEqual(old, p, clearPolicy) {
			return &evpndv1.CreatePolicyResponse{Policy: old}, nil
		}
		return nil, status.Errorf(codes.AlreadyExists, "tenant %s already has a policy", p.GetTenant())
	}
	p = proto.Clone(p).(*evpndv1.Policy)
	p.Meta = meta(1, api)
	s.policies[p.GetTenant()] = p
	return &evpndv1.CreatePolicyResponse{Policy: p, Created: true}, nil
}

func (s *apiServer) GetPolicy(_ context.Context, req *evpndv1.GetPolicyRequest) (*evpndv1.GetPolicyResponse, error) {
	s.record(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.policies[req.GetTenant()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "tenant %s has no policy", req.GetTenant())
	}
	return &evpndv1.GetPolicyResponse{Policy: p}, nil
}

func (s *apiServer) ListPolicies(_ context.Context, req *evpndv1.ListPoliciesRequest) (*evpndv1.ListPoliciesResponse, error) {
	s.record(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	rows, next, err := page(sorted(s.policies), req.GetPageToken())
	return &evpndv1.ListPoliciesResponse{Policies: rows, NextPageToken: next}, err
}

func (s *apiServer) UpdatePolicy(_ context.Context, req *evpndv1.UpdatePolicyRequest) (*evpndv1.UpdatePolicyResponse, error) {
	s.record(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	p := req.GetPolicy()
	old, ok := s.policies[p.GetTenant()]
	switch {
	case !ok:
		return nil, status.Errorf(codes.NotFound, "tenant %s has no policy", p.GetTenant())
	case old.GetMeta().GetSource() == config:
		return nil, readOnly("policy", p.GetTenant())
	}
	if err := checkGeneration("policy", p.GetTenant(), p.GetMeta().GetGeneration(), old.GetMeta()); err != nil {
		return nil, err
	}
	p = proto.Clone(p).(*evpndv1.Policy)
	p.Meta = next(old.GetMeta())
	s.policies[p.GetTenant()] = p
	return &evpndv1.UpdatePolicyResponse{Policy: p}, nil
}

func (s *apiServer) DeletePolicy(_ context.Context, req *evpndv1.DeletePolicyRequest) (*evpndv1.DeletePolicyResponse, error) {
	s.record(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.policies[req.GetTenant()]
	switch {
	case !ok && req.GetAllowMissing():
		return &evpndv1.DeletePolicyResponse{}, nil
	case !ok:
		return nil, status.Errorf(codes.NotFound, "tenant %s has no policy", req.GetTenant())
	case old.GetMeta().GetSource() == config:
		return nil, readOnly("policy", req.GetTenant())
	}
	if err := checkGeneration("policy", req.GetTenant(), req.GetGeneration(), old.GetMeta()); err != nil {
		return nil, err
	}
	delete(s.policies, req.GetTenant())
	return &evpndv1.DeletePolicyResponse{}, nil
}

func (s *apiServer) ListPolicyCounters(_ context.Context, req *evpndv1.ListPolicyCountersRequest) (*evpndv1.ListPolicyCountersResponse, error) {
	s.record(req)
	var all []*evpndv1.PolicyCounter
	for _, c := range s.counters {
		if req.GetTenant() == "" || c.GetTenant() == req.GetTenant() {
			all = append(all, c)
		}
	}
	rows, next, err := page(all, req.GetPageToken())
	return &evpndv1.ListPolicyCountersResponse{Counters: rows, NextPageToken: next}, err
}

func (s *apiServer) ListNeighbors(_ context.Context, req *evpndv1.ListNeighborsRequest) (*evpndv1.ListNeighborsResponse, error) {
	s.record(req)
	if req.Vni != nil && (req.GetVni() == 0 || req.GetVni() > 16777215) {
		return nil, badRequest("invalid filter", "vni", fmt.Sprintf("%d is out of range 1..16777215", req.GetVni()))
	}
	var all []*evpndv1.Neighbor
	for _, n := range s.neigh {
		if (req.GetTenant() == "" || n.GetTenant() == req.GetTenant()) &&
			(req.Vni == nil || n.GetVni() == req.GetVni()) &&
			(req.GetOrigin() == evpndv1.MacOrigin_MAC_ORIGIN_UNSPECIFIED || n.GetRemote() == (req.GetOrigin() == evpndv1.MacOrigin_MAC_ORIGIN_REMOTE)) {
			all = append(all, n)
		}
	}
	rows, next, err := page(all, req.GetPageToken())
	return &evpndv1.ListNeighborsResponse{Neighbors: rows, NextPageToken: next}, err
}

// stream sends events, then ends the stream or, with holdWatch, waits for
// the client to go.
func stream[T any](s *apiServer, ctx context.Context, events []*T, send func(*T) error) error {
	for _, e := range events {
		if err := send(e); err != nil {
			return err
		}
	}
	if !s.holdWatch {
		return nil
	}
	s.sent <- struct{}{}
	<-ctx.Done()
	return ctx.Err()
}

func (s *apiServer) WatchRoutes(req *evpndv1.WatchRoutesRequest, st grpc.ServerStreamingServer[evpndv1.WatchRoutesResponse]) error {
	s.record(req)
	return stream(s, st.Context(), s.routeEvents, st.Send)
}

func (s *apiServer) WatchMacs(req *evpndv1.WatchMacsRequest, st grpc.ServerStreamingServer[evpndv1.WatchMacsResponse]) error {
	s.record(req)
	return stream(s, st.Context(), s.macEvents, st.Send)
}

func (s *apiServer) WatchPeers(req *evpndv1.WatchPeersRequest, st grpc.ServerStreamingServer[evpndv1.WatchPeersResponse]) error {
	s.record(req)
	return stream(s, st.Context(), s.peerEvents, st.Send)
}
