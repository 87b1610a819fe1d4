package apiserver_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
	"github.com/evpnd/evpnd/cmd/evpnd/internal/apiserver"
	"github.com/evpnd/evpnd/cmd/evpnd/internal/apiserver/apitest"
	"github.com/evpnd/evpnd/fabric"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// serve runs the API server for b on a unix socket in a fresh temporary
// directory and returns a connection to it; both end with the test.
func serve(t *testing.T, b apiserver.Backend) (*grpc.ClientConn, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "run", "evpnd.sock")
	l, err := apiserver.Listen("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := apiserver.New(b, slog.New(slog.NewTextHandler(io.Discard, nil)))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	// Registered after the server's cleanup, so it runs first: the
	// graceful stop would otherwise wait for this connection.
	t.Cleanup(func() { conn.Close() })
	return conn, sock
}

func TestListenSocket(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "evpnd")
	sock := filepath.Join(dir, "evpnd.sock")
	l, err := apiserver.Listen("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want a socket with 0600", fi.Mode())
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o755 {
		t.Errorf("socket directory mode = %v, want 0755", di.Mode().Perm())
	}
	if got := l.Addr().String(); got != sock {
		t.Errorf("Addr() = %q, want %q", got, sock)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("socket directory holds %d entries, want only the socket", len(entries))
	}

	// A socket that is being served must not be taken over.
	if _, err := apiserver.Listen("unix://" + sock); err == nil || !strings.Contains(err.Error(), "another process is serving it") {
		t.Errorf("Listen on a served socket: err = %v, want \"another process is serving it\"", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still exists after Close: %v", err)
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "evpnd.sock")
	// A crashed evpnd leaves its socket file behind with nobody listening.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()

	l, err := apiserver.Listen("unix://" + sock)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer l.Close()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("dial the new socket: %v", err)
	}
	c.Close()
}

func TestListenRejects(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-socket")
	if err := os.WriteFile(file, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr, want string
	}{
		{"tcp://127.0.0.1:50051", "mutual TLS is required"},
		{"http://x", `scheme "http" is not supported`},
		{"/run/evpnd/evpnd.sock", "want unix:///path/to.sock"},
		{"unix://run/evpnd.sock", "socket path must be absolute"},
		{"unix://" + file, "exists and is not a socket"},
	} {
		l, err := apiserver.Listen(tc.addr)
		if err == nil {
			l.Close()
			t.Errorf("Listen(%q) succeeded, want error containing %q", tc.addr, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Listen(%q) = %v, want error containing %q", tc.addr, err, tc.want)
		}
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me" {
		t.Errorf("Listen touched a file that is not a socket: %q, %v", b, err)
	}
}

func TestHealth(t *testing.T) {
	conn, _ := serve(t, apitest.Fixture())
	for _, svc := range []string{"", evpndv1.EvpndService_ServiceDesc.ServiceName} {
		resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("health check %q: %v", svc, err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of %q = %v, want SERVING", svc, resp.GetStatus())
		}
	}
}

// Server reflection is what grpcurl and other generic clients use to find
// the services and their messages without the proto files.
func TestReflection(t *testing.T) {
	conn, _ := serve(t, apitest.Fixture())
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ask := func(req *reflectionpb.ServerReflectionRequest) *reflectionpb.ServerReflectionResponse {
		t.Helper()
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	want := evpndv1.EvpndService_ServiceDesc.ServiceName
	var services []string
	for _, s := range ask(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}).GetListServicesResponse().GetService() {
		services = append(services, s.GetName())
	}
	if !slices.Contains(services, want) || !slices.Contains(services, "grpc.health.v1.Health") {
		t.Fatalf("reflection lists %v, want %s and grpc.health.v1.Health among them", services, want)
	}
	fds := ask(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: want},
	}).GetFileDescriptorResponse().GetFileDescriptorProto()
	found := false
	for _, b := range fds {
		var fd descriptorpb.FileDescriptorProto
		if err := proto.Unmarshal(b, &fd); err != nil {
			t.Fatal(err)
		}
		for _, svc := range fd.GetService() {
			if fd.GetPackage()+"."+svc.GetName() == want && len(svc.GetMethod()) > 0 {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("reflection gives no file descriptor with the methods of %s", want)
	}
}

func TestListPeers(t *testing.T) {
	conn, _ := serve(t, apitest.Fixture())
	resp, err := evpndv1.NewEvpndServiceClient(conn).ListPeers(context.Background(), &evpndv1.ListPeersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range resp.GetPeers() {
		got = append(got, p.GetAddress()+" "+p.GetState().String()+" "+p.GetUptime().AsDuration().String())
	}
	want := []string{
		"10.0.0.253 PEER_STATE_ACTIVE 0s",
		"10.0.0.254 PEER_STATE_ESTABLISHED 26h3m4s",
		"fd00::fe PEER_STATE_ESTABLISHED 1m30s",
	}
	if !slices.Equal(got, want) {
		t.Errorf("peers:\n got %q\nwant %q", got, want)
	}
	rr := resp.GetPeers()[1]
	if rr.GetAsn() != 65000 || rr.GetDescription() != "rr1" || rr.GetReceived() != 4 || rr.GetAccepted() != 4 || rr.GetAdvertised() != 3 {
		t.Errorf("peer 10.0.0.254 = %v", rr)
	}
	if resp.GetNextPageToken() != "" {
		t.Errorf("next_page_token = %q on a full listing", resp.GetNextPageToken())
	}
}

func nlris(routes []*evpndv1.Route) []string {
	out := make([]string, len(routes))
	for i, r := range routes {
		out[i] = r.GetNlri()
	}
	return out
}

func TestListRoutesFilters(t *testing.T) {
	conn, _ := serve(t, apitest.Fixture())
	client := evpndv1.NewEvpndServiceClient(conn)
	const (
		localMACIP  = "10.0.0.1:1 [2]:[0]:[48]:[02:00:00:00:01:01]:[32]:[10.1.0.11]"
		localMAC    = "10.0.0.1:1 [2]:[0]:[48]:[02:00:00:00:01:01]"
		remoteMAC   = "10.0.0.2:1 [2]:[0]:[48]:[02:00:00:00:02:01]"
		remoteMACv6 = "10.0.0.2:2 [2]:[0]:[48]:[02:00:00:00:02:02]:[128]:[fd00:1::22]"
		localIMET   = "10.0.0.1:1 [3]:[0]:[32]:[10.0.0.1]"
		remoteIMET  = "10.0.0.2:2 [3]:[0]:[32]:[10.0.0.2]"
		remotePfx   = "10.0.0.2:3 [5]:[0]:[24]:[10.2.0.0]"
	)
	vni := func(n uint32) *uint32 { return &n }
	for _, tc := range []struct {
		name string
		req  *evpndv1.ListRoutesRequest
		want []string
	}{
		{"all", &evpndv1.ListRoutesRequest{}, []string{localMAC, localMACIP, remoteMAC, remoteMACv6, localIMET, remoteIMET, remotePfx}},
		{"type macip", &evpndv1.ListRoutesRequest{Type: evpndv1.RouteType_ROUTE_TYPE_MAC_IP}, []string{localMAC, localMACIP, remoteMAC, remoteMACv6}},
		{"type multicast", &evpndv1.ListRoutesRequest{Type: evpndv1.RouteType_ROUTE_TYPE_INCLUSIVE_MULTICAST}, []string{localIMET, remoteIMET}},
		{"type prefix", &evpndv1.ListRoutesRequest{Type: evpndv1.RouteType_ROUTE_TYPE_IP_PREFIX}, []string{remotePfx}},
		{"vni 100", &evpndv1.ListRoutesRequest{Vni: vni(100)}, []string{localMAC, localMACIP, remoteMAC, localIMET}},
		{"l3vni 5000", &evpndv1.ListRoutesRequest{Vni: vni(5000)}, []string{localMACIP, remotePfx}},
		{"vni nobody uses", &evpndv1.ListRoutesRequest{Vni: vni(4242)}, nil},
		{"rd", &evpndv1.ListRoutesRequest{Rd: "10.0.0.2:2"}, []string{remoteMACv6, remoteIMET}},
		{"mac", &evpndv1.ListRoutesRequest{Mac: "02:00:00:00:01:01"}, []string{localMAC, localMACIP}},
		{"mac in dash notation", &evpndv1.ListRoutesRequest{Mac: "02-00-00-00-02-01"}, []string{remoteMAC}},
		{"prefix holding a type-2 IP and a type-5 prefix", &evpndv1.ListRoutesRequest{Prefix: "10.0.0.0/8"}, []string{localMACIP, remotePfx}},
		{"prefix narrower than the type-5 prefix", &evpndv1.ListRoutesRequest{Prefix: "10.2.0.0/25"}, nil},
		{"prefix with host bits", &evpndv1.ListRoutesRequest{Prefix: "10.1.0.99/16"}, []string{localMACIP}},
		{"ipv6 prefix", &evpndv1.ListRoutesRequest{Prefix: "fd00:1::/64"}, []string{remoteMACv6}},
		{"filters combine", &evpndv1.ListRoutesRequest{Type: evpndv1.RouteType_ROUTE_TYPE_MAC_IP, Vni: vni(100), Rd: "10.0.0.2:1"}, []string{remoteMAC}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := client.ListRoutes(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if got := nlris(resp.GetRoutes()); !slices.Equal(got, tc.want) {
				t.Errorf("routes:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestListRoutesFields(t *testing.T) {
	conn, _ := serve(t, apitest.Fixture())
	client := evpndv1.NewEvpndServiceClient(conn)
	resp, err := client.ListRoutes(context.Background(), &evpndv1.ListRoutesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	byNLRI := map[string]*evpndv1.Route{}
	for _, r := range resp.GetRoutes() {
		byNLRI[r.GetNlri()] = r
	}
	for nlri, want := range map[string]*evpndv1.Route{
		"10.0.0.1:1 [2]:[0]:[48]:[02:00:00:00:01:01]:[32]:[10.1.0.11]": {
			Type: evpndv1.RouteType_ROUTE_TYPE_MAC_IP, Rd: "10.0.0.1:1",
			Nlri: "10.0.0.1:1 [2]:[0]:[48]:[02:00:00:00:01:01]:[32]:[10.1.0.11]",
			Esi:  "00:00:00:00:00:00:00:00:00:00", Mac: "02:00:00:00:01:01", Ip: "10.1.0.11",
			Labels: []uint32{100, 5000}, NextHop: "10.0.0.1", RouteTargets: []string{"65000:100", "65000:5000"},
			Encapsulation: evpndv1.Encapsulation_ENCAPSULATION_VXLAN, RouterMac: "02:00:0a:00:00:01", Local: true,
		},
		"10.0.0.2:2 [2]:[0]:[48]:[02:00:00:00:02:02]:[128]:[fd00:1::22]": {
			Type: evpndv1.RouteType_ROUTE_TYPE_MAC_IP, Rd: "10.0.0.2:2",
			Nlri: "10.0.0.2:2 [2]:[0]:[48]:[02:00:00:00:02:02]:[128]:[fd00:1::22]",
			Esi:  "00:00:00:00:00:00:00:00:00:00", Mac: "02:00:00:00:02:02", Ip: "fd00:1::22",
			Labels: []uint32{200}, NextHop: "10.0.0.2", RouteTargets: []string{"65000:200"},
			Encapsulation: evpndv1.Encapsulation_ENCAPSULATION_VXLAN,
			MacMobility:   &evpndv1.MacMobility{Sequence: 0, Sticky: true}, Peer: "10.0.0.254",
		},
		"10.0.0.2:2 [3]:[0]:[32]:[10.0.0.2]": {
			Type: evpndv1.RouteType_ROUTE_TYPE_INCLUSIVE_MULTICAST, Rd: "10.0.0.2:2",
			Nlri: "10.0.0.2:2 [3]:[0]:[32]:[10.0.0.2]", Originator: "10.0.0.2",
			NextHop: "10.0.0.2", RouteTargets: []string{"65000:200"},
			Encapsulation: evpndv1.Encapsulation_ENCAPSULATION_VXLAN,
			PmsiTunnel: &evpndv1.PmsiTunnel{
				Type: evpndv1.PmsiTunnelType_PMSI_TUNNEL_TYPE_INGRESS_REPLICATION, Label: 200, Endpoint: "10.0.0.2",
			},
			Peer: "10.0.0.254",
		},
		"10.0.0.2:3 [5]:[0]:[24]:[10.2.0.0]": {
			Type: evpndv1.RouteType_ROUTE_TYPE_IP_PREFIX, Rd: "10.0.0.2:3",
			Nlri: "10.0.0.2:3 [5]:[0]:[24]:[10.2.0.0]",
			Esi:  "00:00:00:00:00:00:00:00:00:00", Prefix: "10.2.0.0/24",
			Labels: []uint32{5000}, NextHop: "10.0.0.2", RouteTargets: []string{"65000:5000"},
			Encapsulation: evpndv1.Encapsulation_ENCAPSULATION_VXLAN, RouterMac: "02:00:0a:00:00:02",
			Peer: "10.0.0.254",
		},
	} {
		if got := byNLRI[nlri]; !proto.Equal(got, want) {
			t.Errorf("route %s:\n got %v\nwant %v", nlri, got, want)
		}
	}
}

func TestListMacsFilters(t *testing.T) {
	conn, _ := serve(t, apitest.Fixture())
	client := evpndv1.NewEvpndServiceClient(conn)
	vni := func(n uint32) *uint32 { return &n }
	for _, tc := range []struct {
		name string
		req  *evpndv1.ListMacsRequest
		want []string
	}{
		{"all", &evpndv1.ListMacsRequest{}, []string{
			"blue 100 02:00:00:00:01:01 veth-web1 - local",
			"blue 100 02:00:00:00:02:01 vxlan100 10.0.0.2 remote",
			"blue 200 02:00:00:00:02:02 vxlan200 10.0.0.2 remote",
			"red 300 02:00:00:00:03:01 tap-red1 - local",
		}},
		{"tenant", &evpndv1.ListMacsRequest{Tenant: "red"}, []string{"red 300 02:00:00:00:03:01 tap-red1 - local"}},
		{"vni", &evpndv1.ListMacsRequest{Vni: vni(200)}, []string{"blue 200 02:00:00:00:02:02 vxlan200 10.0.0.2 remote"}},
		{"local", &evpndv1.ListMacsRequest{Origin: evpndv1.MacOrigin_MAC_ORIGIN_LOCAL}, []string{
			"blue 100 02:00:00:00:01:01 veth-web1 - local",
			"red 300 02:00:00:00:03:01 tap-red1 - local",
		}},
		{"remote in tenant and vni", &evpndv1.ListMacsRequest{Tenant: "blue", Vni: vni(100), Origin: evpndv1.MacOrigin_MAC_ORIGIN_REMOTE}, []string{
			"blue 100 02:00:00:00:02:01 vxlan100 10.0.0.2 remote",
		}},
		{"unknown tenant", &evpndv1.ListMacsRequest{Tenant: "green"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := client.ListMacs(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range resp.GetMacs() {
				vtep, origin := m.GetVtep(), "local"
				if vtep == "" {
					vtep = "-"
				}
				if m.GetRemote() {
					origin = "remote"
				}
				got = append(got, strings.Join([]string{m.GetTenant(), strconv.FormatUint(uint64(m.GetVni()), 10), m.GetMac(), m.GetPort(), vtep, origin}, " "))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("macs:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// tenantRoutes renders routes as "tenant prefix hops device protocol",
// with "-" for an empty column.
func tenantRoutes(routes []*evpndv1.TenantRoute) []string {
	var out []string
	for _, r := range routes {
		hops, dev := strings.Join(r.GetNextHops(), ","), r.GetDevice()
		if hops == "" {
			hops = "-"
		}
		if dev == "" {
			dev = "-"
		}
		out = append(out, strings.Join([]string{r.GetTenant(), r.GetPrefix(), hops, dev, r.GetProtocol().String()}, " "))
	}
	return out
}

func TestListTenantRoutesFilters(t *testing.T) {
	conn, _ := serve(t, apitest.Fixture())
	client := evpndv1.NewEvpndServiceClient(conn)
	const (
		blueDefault   = "blue 0.0.0.0/0 10.1.0.254 br100 ROUTE_PROTOCOL_STATIC"
		blueSubnet    = "blue 10.1.0.0/24 - br100 ROUTE_PROTOCOL_CONNECTED"
		blueSubnetEV  = "blue 10.1.0.0/24 10.0.0.2 br5000 ROUTE_PROTOCOL_EVPN"
		blueHost      = "blue 10.1.0.22/32 10.0.0.2 br5000 ROUTE_PROTOCOL_EVPN"
		blueECMP      = "blue 10.2.0.0/24 10.0.0.2,10.0.0.3 - ROUTE_PROTOCOL_EVPN"
		blueSubnetV6  = "blue fd00:1::/64 - br100 ROUTE_PROTOCOL_CONNECTED"
		redSubnet     = "red 10.3.0.0/24 - br300 ROUTE_PROTOCOL_CONNECTED"
		redOther      = "red 192.0.2.0/24 10.3.0.254 br300 ROUTE_PROTOCOL_OTHER"
		redSubnetV6   = "red fd00:3::/64 - br300 ROUTE_PROTOCOL_CONNECTED"
		evpnProtocol  = evpndv1.RouteProtocol_ROUTE_PROTOCOL_EVPN
		connProtocol  = evpndv1.RouteProtocol_ROUTE_PROTOCOL_CONNECTED
		otherProtocol = evpndv1.RouteProtocol_ROUTE_PROTOCOL_OTHER
	)
	for _, tc := range []struct {
		name string
		req  *evpndv1.ListTenantRoutesRequest
		want []string
	}{
		{"all", &evpndv1.ListTenantRoutesRequest{}, []string{
			blueDefault, blueSubnet, blueSubnetEV, blueHost, blueECMP, blueSubnetV6, redSubnet, redOther, redSubnetV6,
		}},
		{"tenant", &evpndv1.ListTenantRoutesRequest{Tenant: "red"}, []string{redSubnet, redOther, redSubnetV6}},
		{"unknown tenant", &evpndv1.ListTenantRoutesRequest{Tenant: "green"}, nil},
		{"prefix holds subnets and a host route", &evpndv1.ListTenantRoutesRequest{Prefix: "10.1.0.0/16"}, []string{blueSubnet, blueSubnetEV, blueHost}},
		{"prefix with host bits", &evpndv1.ListTenantRoutesRequest{Prefix: "10.1.0.99/16"}, []string{blueSubnet, blueSubnetEV, blueHost}},
		{"prefix equal to a host route", &evpndv1.ListTenantRoutesRequest{Prefix: "10.1.0.22/32"}, []string{blueHost}},
		{"prefix narrower than a route", &evpndv1.ListTenantRoutesRequest{Prefix: "10.2.0.0/25"}, nil},
		{"ipv4 default holds every ipv4 route", &evpndv1.ListTenantRoutesRequest{Prefix: "0.0.0.0/0"}, []string{
			blueDefault, blueSubnet, blueSubnetEV, blueHost, blueECMP, redSubnet, redOther,
		}},
		{"ipv6 prefix", &evpndv1.ListTenantRoutesRequest{Prefix: "fd00::/16"}, []string{blueSubnetV6, redSubnetV6}},
		{"evpn", &evpndv1.ListTenantRoutesRequest{Protocol: evpnProtocol}, []string{blueSubnetEV, blueHost, blueECMP}},
		{"static", &evpndv1.ListTenantRoutesRequest{Protocol: evpndv1.RouteProtocol_ROUTE_PROTOCOL_STATIC}, []string{blueDefault}},
		{"other", &evpndv1.ListTenantRoutesRequest{Protocol: otherProtocol}, []string{redOther}},
		{"connected in a tenant", &evpndv1.ListTenantRoutesRequest{Tenant: "blue", Protocol: connProtocol}, []string{blueSubnet, blueSubnetV6}},
		{"filters combine", &evpndv1.ListTenantRoutesRequest{Tenant: "blue", Prefix: "10.1.0.0/24", Protocol: evpnProtocol}, []string{blueSubnetEV, blueHost}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := client.ListTenantRoutes(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if got := tenantRoutes(resp.GetRoutes()); !slices.Equal(got, tc.want) {
				t.Errorf("routes:\n got %q\nwant %q", got, tc.want)
			}
			if resp.GetNextPageToken() != "" {
				t.Errorf("next_page_token = %q on a full listing", resp.GetNextPageToken())
			}
		})
	}
}

// TestListTenantRoutesOrder gives the server rows in an order the
// datapath would not: next hops unsorted, and one prefix several times in
// the table, so the listing's order is the server's own.
func TestListTenantRoutesOrder(t *testing.T) {
	route := func(prefix string, proto fabric.RouteProtocol, dev string, hops ...string) fabric.Route {
		r := fabric.Route{Tenant: "blue", Prefix: netip.MustParsePrefix(prefix), Device: dev, Protocol: proto}
		for _, h := range hops {
			r.NextHops = append(r.NextHops, netip.MustParseAddr(h))
		}
		return r
	}
	b := &apitest.Backend{TenantRouteList: []fabric.Route{
		route("fd00:9::/64", fabric.RouteEVPN, "", "10.0.0.3", "10.0.0.2"),
		route("10.9.0.0/24", fabric.RouteOther, "br100", "10.1.0.9"),
		route("10.9.0.0/24", fabric.RouteEVPN, "", "10.0.0.4", "10.0.0.2"),
		route("10.9.0.0/24", fabric.RouteEVPN, "", "10.0.0.3", "10.0.0.2"),
		route("10.9.0.0/16", fabric.RouteStatic, "br100", "10.1.0.1"),
		route("10.9.0.0/24", fabric.RouteConnected, "br100"),
	}}
	conn, _ := serve(t, b)
	client := evpndv1.NewEvpndServiceClient(conn)
	want := []string{
		"blue 10.9.0.0/16 10.1.0.1 br100 ROUTE_PROTOCOL_STATIC",
		"blue 10.9.0.0/24 - br100 ROUTE_PROTOCOL_CONNECTED",
		"blue 10.9.0.0/24 10.0.0.2,10.0.0.3 - ROUTE_PROTOCOL_EVPN",
		"blue 10.9.0.0/24 10.0.0.2,10.0.0.4 - ROUTE_PROTOCOL_EVPN",
		"blue 10.9.0.0/24 10.1.0.9 br100 ROUTE_PROTOCOL_OTHER",
		"blue fd00:9::/64 10.0.0.2,10.0.0.3 - ROUTE_PROTOCOL_EVPN",
	}
	resp, err := client.ListTenantRoutes(context.Background(), &evpndv1.ListTenantRoutesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := tenantRoutes(resp.GetRoutes()); !slices.Equal(got, want) {
		t.Errorf("routes:\n got %q\nwant %q", got, want)
	}
	// Pages of one row each reassemble the same listing.
	var got []string
	req := &evpndv1.ListTenantRoutesRequest{PageSize: 1}
	for range len(want) + 1 {
		resp, err := client.ListTenantRoutes(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, tenantRoutes(resp.GetRoutes())...)
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	if !slices.Equal(got, want) || req.PageToken != "" {
		t.Errorf("paged by one:\n got %q\nwant %q (last token %q)", got, want, req.PageToken)
	}
	// The backend's rows are not reordered behind its back.
	if h := b.TenantRouteList[0].NextHops; h[0] != netip.MustParseAddr("10.0.0.3") {
		t.Errorf("the server sorted the backend's own next hops: %v", h)
	}
}

func TestListTenantRoutesFields(t *testing.T) {
	conn, _ := serve(t, apitest.Fixture())
	resp, err := evpndv1.NewEvpndServiceClient(conn).ListTenantRoutes(context.Background(), &evpndv1.ListTenantRoutesRequest{
		Prefix: "10.2.0.0/24",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := &evpndv1.TenantRoute{
		Tenant: "blue", Prefix: "10.2.0.0/24", NextHops: []string{"10.0.0.2", "10.0.0.3"},
		Protocol: evpndv1.RouteProtocol_ROUTE_PROTOCOL_EVPN,
	}
	if routes := resp.GetRoutes(); len(routes) != 1 || !proto.Equal(routes[0], want) {
		t.Errorf("routes = %v, want [%v]", routes, want)
	}
}

// fieldViolations returns the google.rpc.BadRequest violations of err as
// "field: description", failing the test unless err is INVALID_ARGUMENT.
func fieldViolations(t *testing.T, err error) []string {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.InvalidArgument {
		t.Fatalf("err = %v, want INVALID_ARGUMENT", err)
	}
	var out []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, fv := range br.GetFieldViolations() {
				out = append(out, fv.GetField()+": "+fv.GetDescription())
			}
		}
	}
	if want := strings.Join(out, "; "); st.Message() != want {
		t.Errorf("status message %q does not repeat the violations %q", st.Message(), want)
	}
	return out
}

func TestInvalidFilters(t *testing.T) {
	conn, _ := serve(t, apitest.Fixture())
	client := evpndv1.NewEvpndServiceClient(conn)
	ctx := context.Background()
	vni := func(n uint32) *uint32 { return &n }
	for _, tc := range []struct {
		name string
		call func() error
		want []string
	}{
		{"vni too large", func() error {
			_, err := client.ListRoutes(ctx, &evpndv1.ListRoutesRequest{Vni: vni(16777216)})
			return err
		}, []string{"vni: 16777216 is out of range 1..16777215"}},
		{"vni zero", func() error {
			_, err := client.ListMacs(ctx, &evpndv1.ListMacsRequest{Vni: vni(0)})
			return err
		}, []string{"vni: 0 is out of range 1..16777215"}},
		{"mac", func() error {
			_, err := client.ListRoutes(ctx, &evpndv1.ListRoutesRequest{Mac: "zz"})
			return err
		}, []string{`mac: "zz" is not a MAC address`}},
		{"eui-64 is not a MAC", func() error {
			_, err := client.ListRoutes(ctx, &evpndv1.ListRoutesRequest{Mac: "02:00:00:ff:fe:00:00:01"})
			return err
		}, []string{`mac: "02:00:00:ff:fe:00:00:01" is not a MAC address`}},
		{"rd", func() error {
			_, err := client.ListRoutes(ctx, &evpndv1.ListRoutesRequest{Rd: "10.0.0.1"})
			return err
		}, []string{`rd: "10.0.0.1" is not a route distinguisher (want <asn|ipv4>:<number>)`}},
		{"prefix", func() error {
			_, err := client.ListRoutes(ctx, &evpndv1.ListRoutesRequest{Prefix: "10.0.0.0"})
			return err
		}, []string{`prefix: "10.0.0.0" is not an IP prefix (want address/length)`}},
		{"type", func() error {
			_, err := client.ListRoutes(ctx, &evpndv1.ListRoutesRequest{Type: evpndv1.RouteType(4)})
			return err
		}, []string{"type: 4 is not a route type evpnd lists (ROUTE_TYPE_MAC_IP, ROUTE_TYPE_INCLUSIVE_MULTICAST, ROUTE_TYPE_IP_PREFIX)"}},
		{"origin", func() error {
			_, err := client.ListMacs(ctx, &evpndv1.ListMacsRequest{Origin: evpndv1.MacOrigin(7)})
			return err
		}, []string{"origin: 7 is not a MAC origin (MAC_ORIGIN_LOCAL, MAC_ORIGIN_REMOTE)"}},
		{"tenant route prefix", func() error {
			_, err := client.ListTenantRoutes(ctx, &evpndv1.ListTenantRoutesRequest{Prefix: "10.1.0.0/33"})
			return err
		}, []string{`prefix: "10.1.0.0/33" is not an IP prefix (want address/length)`}},
		{"protocol", func() error {
			_, err := client.ListTenantRoutes(ctx, &evpndv1.ListTenantRoutesRequest{Protocol: evpndv1.RouteProtocol(9)})
			return err
		}, []string{"protocol: 9 is not a route protocol (ROUTE_PROTOCOL_CONNECTED, ROUTE_PROTOCOL_STATIC, ROUTE_PROTOCOL_EVPN, ROUTE_PROTOCOL_OTHER)"}},
		{"tenant route page size", func() error {
			_, err := client.ListTenantRoutes(ctx, &evpndv1.ListTenantRoutesRequest{PageSize: -2})
			return err
		}, []string{"page_size: -2 must not be negative"}},
		{"every tenant route violation at once", func() error {
			_, err := client.ListTenantRoutes(ctx, &evpndv1.ListTenantRoutesRequest{Prefix: "blue", Protocol: evpndv1.RouteProtocol(-1), PageToken: "x"})
			return err
		}, []string{
			`prefix: "blue" is not an IP prefix (want address/length)`,
			"protocol: -1 is not a route protocol (ROUTE_PROTOCOL_CONNECTED, ROUTE_PROTOCOL_STATIC, ROUTE_PROTOCOL_EVPN, ROUTE_PROTOCOL_OTHER)",
			`page_token: "x" is not a token this listing issued (was it issued for other filters?)`,
		}},
		{"page size", func() error {
			_, err := client.ListPeers(ctx, &evpndv1.ListPeersRequest{PageSize: -1})
			return err
		}, []string{"page_size: -1 must not be negative"}},
		{"page token", func() error {
			_, err := client.ListPeers(ctx, &evpndv1.ListPeersRequest{PageToken: "bogus"})
			return err
		}, []string{`page_token: "bogus" is not a token this listing issued (was it issued for other filters?)`}},
		{"every violation at once", func() error {
			_, err := client.ListRoutes(ctx, &evpndv1.ListRoutesRequest{Vni: vni(0), Mac: "zz", Rd: "x"})
			return err
		}, []string{
			"vni: 0 is out of range 1..16777215",
			`rd: "x" is not a route distinguisher (want <asn|ipv4>:<number>)`,
			`mac: "zz" is not a MAC address`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fieldViolations(t, tc.call()); !slices.Equal(got, tc.want) {
				t.Errorf("violations:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestPaging(t *testing.T) {
	conn, _ := serve(t, apitest.Fixture())
	client := evpndv1.NewEvpndServiceClient(conn)
	ctx := context.Background()
	full, err := client.ListRoutes(ctx, &evpndv1.ListRoutesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var pages int
	req := &evpndv1.ListRoutesRequest{PageSize: 3}
	for {
		resp, err := client.ListRoutes(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if n := len(resp.GetRoutes()); n > 3 {
			t.Fatalf("page of %d routes, page_size 3", n)
		}
		got = append(got, nlris(resp.GetRoutes())...)
		if resp.GetNextPageToken() == "" {
			break
		}
		if pages > len(full.GetRoutes()) {
			t.Fatal("paging does not end")
		}
		req.PageToken = resp.GetNextPageToken()
	}
	if want := nlris(full.GetRoutes()); !slices.Equal(got, want) || pages != 3 {
		t.Errorf("paged listing in %d pages:\n got %q\nwant %q in 3 pages", pages, got, want)
	}

	// A token is bound to the filters it was issued for.
	first, err := client.ListRoutes(ctx, &evpndv1.ListRoutesRequest{PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.ListRoutes(ctx, &evpndv1.ListRoutesRequest{PageSize: 1, Rd: "10.0.0.1:1", PageToken: first.GetNextPageToken()})
	if v := fieldViolations(t, err); len(v) != 1 || !strings.HasPrefix(v[0], "page_token: ") {
		t.Errorf("token reused with other filters: violations %q", v)
	}
	_, err = client.ListMacs(ctx, &evpndv1.ListMacsRequest{PageSize: 1, PageToken: first.GetNextPageToken()})
	if v := fieldViolations(t, err); len(v) != 1 || !strings.HasPrefix(v[0], "page_token: ") {
		t.Errorf("routes token used for macs: violations %q", v)
	}
	_, err = client.ListTenantRoutes(ctx, &evpndv1.ListTenantRoutesRequest{PageSize: 1, PageToken: first.GetNextPageToken()})
	if v := fieldViolations(t, err); len(v) != 1 || !strings.HasPrefix(v[0], "page_token: ") {
		t.Errorf("evpn routes token used for tenant routes: violations %q", v)
	}
	blue, err := client.ListTenantRoutes(ctx, &evpndv1.ListTenantRoutesRequest{PageSize: 2, Tenant: "blue"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.ListTenantRoutes(ctx, &evpndv1.ListTenantRoutesRequest{PageSize: 2, Tenant: "red", PageToken: blue.GetNextPageToken()})
	if v := fieldViolations(t, err); len(v) != 1 || !strings.HasPrefix(v[0], "page_token: ") {
		t.Errorf("tenant routes token reused for another tenant: violations %q", v)
	}
}

func TestBackendError(t *testing.T) {
	b := apitest.Fixture()
	b.Err = errors.New("bgp speaker not started")
	conn, _ := serve(t, b)
	_, err := evpndv1.NewEvpndServiceClient(conn).ListPeers(context.Background(), &evpndv1.ListPeersRequest{})
	if st := status.Convert(err); st.Code() != codes.Internal || st.Message() != "list peers: bgp speaker not started" {
		t.Errorf("err = %v, want Internal \"list peers: bgp speaker not started\"", err)
	}

	// A fresh server: the first one's goroutines read b.Err.
	b = apitest.Fixture()
	b.Err = errors.New(`tenant "blue": routes: netlink receive: resource temporarily unavailable`)
	conn, _ = serve(t, b)
	_, err = evpndv1.NewEvpndServiceClient(conn).ListTenantRoutes(context.Background(), &evpndv1.ListTenantRoutesRequest{})
	if st := status.Convert(err); st.Code() != codes.Internal || st.Message() != "list tenant routes: "+b.Err.Error() {
		t.Errorf("err = %v, want Internal \"list tenant routes: %v\"", err, b.Err)
	}
}
