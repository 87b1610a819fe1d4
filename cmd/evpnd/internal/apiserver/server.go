package apiserver

import (
	"context"
	"log/slog"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
	"github.com/evpnd/evpnd/bgp"
	"github.com/evpnd/evpnd/cmd/evpnd/internal/config"
	"github.com/evpnd/evpnd/evpn"
	"github.com/evpnd/evpnd/fabric"
	"github.com/evpnd/evpnd/policy"
)

// Backend is the daemon state the API reads and changes. The daemon
// satisfies it with its bgp.Speaker, fabric.Datapath, policy.Engine and its
// configuration objects.
type Backend interface {
	Peers(ctx context.Context) ([]bgp.Peer, error)
	// Routes lists the EVPN RIB; a route with a zero Peer is local.
	Routes(ctx context.Context) ([]evpn.Route, error)
	MACs(ctx context.Context) ([]fabric.MAC, error)
	Neighbors(ctx context.Context) ([]fabric.Neighbor, error)
	// TenantRoutes lists the main routing table of every tenant namespace.
	TenantRoutes(ctx context.Context) ([]fabric.Route, error)
	PolicyCounters(ctx context.Context) ([]policy.Counter, error)
	// Objects lists the configuration objects, from the config file and
	// the API, with their Meta and output-only fields filled in.
	Objects(ctx context.Context) (config.APIObjects, error)
	// Change applies one create, update or delete and returns the object
	// as stored (nil for a delete) and whether a create made a new one.
	// Errors are gRPC statuses.
	Change(ctx context.Context, c Change) (proto.Message, bool, error)
	// Events is where the daemon publishes route, MAC and peer events.
	Events() *Hub
	// Duplicates lists the MACs frozen as duplicates, with their tenant.
	Duplicates(ctx context.Context) ([]Duplicate, error)
	// ClearDuplicate thaws a frozen MAC; a MAC that is not frozen is a
	// NOT_FOUND status.
	ClearDuplicate(ctx context.Context, vni evpn.VNI, mac net.HardwareAddr) error
}

// Server is the gRPC server of the evpnd API.
type Server struct {
	grpc   *grpc.Server
	health *health.Server
}

// New returns a server answering from b. Nothing listens until Serve. opts
// carry the transport's credentials (Endpoint.Options) and interceptors.
func New(b Backend, log *slog.Logger, opts ...grpc.ServerOption) *Server {
	if log == nil {
		log = slog.Default()
	}
	opts = append([]grpc.ServerOption{grpc.ChainUnaryInterceptor(logFailures(log))}, opts...)
	s := &Server{
		grpc:   grpc.NewServer(opts...),
		health: health.NewServer(),
	}
	evpndv1.RegisterEvpndServiceServer(s.grpc, &service{backend: b})
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	return s
}

// Serve accepts connections on l until Stop; it returns nil after Stop.
func (s *Server) Serve(l net.Listener) error {
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(evpndv1.EvpndService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	return s.grpc.Serve(l)
}

// Stop reports NOT_SERVING to health watchers, lets in-flight calls finish
// and closes the listener.
func (s *Server) Stop() {
	s.health.Shutdown()
	s.grpc.GracefulStop()
}

// logFailures logs calls that fail for a reason other than the caller's
// request, so a broken backend shows in the daemon log, not only in evpnctl.
func logFailures(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		switch status.Code(err) {
		case codes.OK, codes.InvalidArgument, codes.Canceled, codes.DeadlineExceeded,
			codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition, codes.Aborted:
		default:
			log.Error("api call failed", "method", info.FullMethod, "err", err)
		}
		return resp, err
	}
}
