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

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
	"github.com/evpnd/evpnd/bgp"
	"github.com/evpnd/evpnd/evpn"
	"github.com/evpnd/evpnd/fabric"
)

// Backend is the daemon state the API reads. The daemon satisfies it with
// its bgp.Speaker and fabric.Datapath.
type Backend interface {
	Peers(ctx context.Context) ([]bgp.Peer, error)
	// Routes lists the EVPN RIB; a route with a zero Peer is local.
	Routes(ctx context.Context) ([]evpn.Route, error)
	MACs(ctx context.Context) ([]fabric.MAC, error)
	// TenantRoutes lists the main routing table of every tenant namespace.
	TenantRoutes(ctx context.Context) ([]fabric.Route, error)
}

// Server is the gRPC server of the evpnd API.
type Server struct {
	grpc   *grpc.Server
	health *health.Server
}

// New returns a server answering from b. Nothing listens until Serve.
func New(b Backend, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{
		grpc:   grpc.NewServer(grpc.ChainUnaryInterceptor(logFailures(log))),
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
		case codes.OK, codes.InvalidArgument, codes.Canceled, codes.DeadlineExceeded:
		default:
			log.Error("api call failed", "method", info.FullMethod, "err", err)
		}
		return resp, err
	}
}
