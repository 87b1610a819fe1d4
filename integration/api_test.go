package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
	"github.com/evpnd/evpnd/integration/lab"
)

// dialAPI connects to an evpnd node's API socket, as an orchestrator does.
func dialAPI(t *testing.T, l *lab.Lab, node string) evpndv1.EvpndServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+l.APISocket(node), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s api: %v", node, err)
	}
	t.Cleanup(func() { conn.Close() })
	return evpndv1.NewEvpndServiceClient(conn)
}

func apiCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*converge)
	t.Cleanup(cancel)
	return ctx
}

// wantCode fails unless err is a status with code c whose message
// contains each of subs.
func wantCode(t *testing.T, what string, err error, c codes.Code, subs ...string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != c {
		t.Fatalf("%s: got %v, want code %v", what, err, c)
	}
	for _, s := range subs {
		if !strings.Contains(st.Message(), s) {
			t.Fatalf("%s: message %q lacks %q", what, st.Message(), s)
		}
	}
}

// violations are the BadRequest field violations of err, field -> text.
func violations(err error) map[string]string {
	out := map[string]string{}
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, fv := range br.GetFieldViolations() {
				out[fv.GetField()] = fv.GetDescription()
			}
		}
	}
	return out
}

// scrape reads a node's /metrics from inside its namespace (the endpoint
// is on the namespace's loopback).
func scrape(ns, addr string) (string, error) { return httpGet(ns, addr, "/metrics") }

// httpGet reads path from the metrics endpoint at addr in namespace ns.
func httpGet(ns, addr, path string) (string, error) {
	var conn net.Conn
	if err := lab.InNS(ns, func() error {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		conn = c
		return err
	}); err != nil {
		return "", err
	}
	used := false
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			if used {
				return nil, errors.New("one connection only")
			}
			used = true
			return conn, nil
		},
		DisableKeepAlives: true,
	}}
	resp, err := client.Get("http://" + addr + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return string(b), err
}

// sample finds one sample's value in a Prometheus text exposition.
func sample(text, name string, labels ...string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		return v, err == nil
	}
	return 0, false
}

// TestPrivilegedAPILifecycle drives host1's evpnd only through its gRPC
// API, as an orchestrator would: it creates tenant blue, segment web and
// attaches vm1's port; traffic flows to vm2 on host2, whose blue comes
// from its config file (and is read-only through the API). The objects
// survive a kill -9; detaching the port stops traffic; deleting the rest
// removes the tenant namespace. Metrics are scraped and checked on the way.
func TestPrivilegedAPILifecycle(t *testing.T) {
	requireLab(t)
	if _, err := os.Stat(filepath.Join("..", "bin", "evpnd")); err != nil {
		t.Skip("bin/evpnd is missing: run make build")
	}
	l := lab.Up(t, "topologies/api.clab.yml", lab.Options{})
	c1, c2 := dialAPI(t, l, "host1"), dialAPI(t, l, "host2")
	ctx := apiCtx(t)
	vm2 := netip.MustParseAddr("172.31.1.2")

	ts, err := c1.ListTenants(ctx, &evpndv1.ListTenantsRequest{})
	if err != nil || len(ts.GetTenants()) != 0 {
		t.Fatalf("host1 starts with tenants %v (err %v), want none", ts.GetTenants(), err)
	}

	// A watcher sees the MACs the API's objects bring.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	watch, err := c1.WatchMacs(wctx, &evpndv1.WatchMacsRequest{Tenant: "blue"})
	if err != nil {
		t.Fatal(err)
	}
	macEvents := make(chan *evpndv1.WatchMacsResponse, 64)
	go func() {
		for {
			ev, err := watch.Recv()
			if err != nil {
				close(macEvents)
				return
			}
			macEvents <- ev
		}
	}()

	routes, err := c1.WatchRoutes(wctx, &evpndv1.WatchRoutesRequest{Type: evpndv1.RouteType_ROUTE_TYPE_INCLUSIVE_MULTICAST})
	if err != nil {
		t.Fatal(err)
	}
	routeEvents := make(chan *evpndv1.WatchRoutesResponse, 64)
	go func() {
		for {
			ev, err := routes.Recv()
			if err != nil {
				close(routeEvents)
				return
			}
			routeEvents <- ev
		}
	}()

	tenant := &evpndv1.Tenant{Name: "blue"}
	seg := &evpndv1.Segment{Tenant: "blue", Name: "web", Vni: 100, Mtu: 1450}
	port := &evpndv1.Port{Interface: "tap-vm1", Tenant: "blue", Segment: "web"}
	ct, err := c1.CreateTenant(ctx, &evpndv1.CreateTenantRequest{Tenant: tenant})
	if err != nil || !ct.GetCreated() || ct.GetTenant().GetMeta().GetGeneration() != 1 ||
		ct.GetTenant().GetMeta().GetSource() != evpndv1.Source_SOURCE_API || ct.GetTenant().GetNamespace() != l.TenantNS("host1", "blue") {
		t.Fatalf("create tenant: %v, %v", ct, err)
	}
	if _, err := c1.CreateSegment(ctx, &evpndv1.CreateSegmentRequest{Segment: seg}); err != nil {
		t.Fatalf("create segment: %v", err)
	}
	if _, err := c1.AttachPort(ctx, &evpndv1.AttachPortRequest{Port: port}); err != nil {
		t.Fatalf("attach port: %v", err)
	}
	// Creates are idempotent by name: the same spec again changes nothing.
	again, err := c1.CreateSegment(ctx, &evpndv1.CreateSegmentRequest{Segment: seg})
	if err != nil || again.GetCreated() || again.GetSegment().GetMeta().GetGeneration() != 1 ||
		!slices.Equal(again.GetSegment().GetPorts(), []string{"tap-vm1"}) {
		t.Fatalf("create segment again: %v, %v; want created=false, generation 1, ports [tap-vm1]", again, err)
	}
	other := proto.Clone(seg).(*evpndv1.Segment)
	other.Mtu = 1400
	_, err = c1.CreateSegment(ctx, &evpndv1.CreateSegmentRequest{Segment: other})
	wantCode(t, "create segment with other settings", err, codes.AlreadyExists, "update it instead")

	lab.Eventually(t, converge, pollEvery, func() error {
		return lab.TCPExchange(t, l.NS("vm1"), l.NS("vm2"), vm2, 7101)
	})
	mac1 := strings.TrimSpace(string(must(l.Exec("vm1", "cat", "/sys/class/net/eth1/address"))))
	mac2 := strings.TrimSpace(string(must(l.Exec("vm2", "cat", "/sys/class/net/eth1/address"))))
	seen := map[string]bool{}
	deadline := time.After(converge)
	for !seen["local "+mac1] || !seen["remote "+mac2] {
		select {
		case ev, ok := <-macEvents:
			if !ok {
				t.Fatal("mac watch ended early")
			}
			if ev.GetKind() == evpndv1.EventKind_EVENT_KIND_ADDED {
				origin := "local"
				if ev.GetMac().GetRemote() {
					origin = "remote"
				}
				seen[origin+" "+ev.GetMac().GetMac()] = true
			}
		case <-deadline:
			t.Fatalf("mac watch saw %v; want local %s and remote %s", seen, mac1, mac2)
		}
	}
	// The route watch saw this host's type-3 for VNI 100 advertised and
	// host2's received.
	imet := map[string]bool{}
	for !imet["local 10.0.0.1"] || !imet["received 10.0.0.2"] {
		select {
		case ev, ok := <-routeEvents:
			if !ok {
				t.Fatal("route watch ended early")
			}
			r := ev.GetRoute()
			if ev.GetKind() != evpndv1.EventKind_EVENT_KIND_ADDED || r.GetPmsiTunnel().GetLabel() != 100 {
				continue
			}
			origin := "received"
			if r.GetLocal() || r.GetPeer() == "" {
				origin = "local"
			}
			imet[origin+" "+r.GetOriginator()] = true
		case <-deadline:
			t.Fatalf("route watch saw %v; want local 10.0.0.1 and received 10.0.0.2 type-3 routes for VNI 100", imet)
		}
	}
	wcancel()

	// Optimistic concurrency: an update with a stale generation is refused.
	upd := proto.Clone(seg).(*evpndv1.Segment)
	upd.Gateway = nil
	upd.Meta = &evpndv1.Meta{Generation: 7}
	_, err = c1.UpdateSegment(ctx, &evpndv1.UpdateSegmentRequest{Segment: upd})
	wantCode(t, "update with stale generation", err, codes.Aborted, "generation 1, not 7")
	// A tenant with segments cannot go; neither can a segment with ports.
	_, err = c1.DeleteTenant(ctx, &evpndv1.DeleteTenantRequest{Name: "blue"})
	wantCode(t, "delete tenant with segments", err, codes.FailedPrecondition, "segment blue/web")

	// host2's blue is from its config file: listed, but read-only.
	got2, err := c2.GetTenant(ctx, &evpndv1.GetTenantRequest{Name: "blue"})
	if err != nil || got2.GetTenant().GetMeta().GetSource() != evpndv1.Source_SOURCE_CONFIG {
		t.Fatalf("host2 tenant blue: %v, %v; want source CONFIG", got2, err)
	}
	_, err = c2.UpdateTenant(ctx, &evpndv1.UpdateTenantRequest{Tenant: &evpndv1.Tenant{Name: "blue", L3Vni: 5000}})
	wantCode(t, "update config tenant", err, codes.FailedPrecondition, "read-only", "SIGHUP")
	_, err = c2.DetachPort(ctx, &evpndv1.DetachPortRequest{Interface: "tap-vm2"})
	wantCode(t, "detach config port", err, codes.FailedPrecondition, "read-only")

	// Metrics, scraped from host1's loopback.
	lab.Eventually(t, converge, pollEvery, func() error {
		text, err := scrape(l.NS("host1"), "127.0.0.1:9469")
		if err != nil {
			return err
		}
		for _, want := range []struct {
			name   string
			labels []string
			min    float64
		}{
			{"evpnd_bgp_peer_state", []string{`peer="10.0.0.254"`}, 6},
			{"evpnd_bgp_peer_up", []string{`peer="10.0.0.254"`}, 1},
			{"evpnd_fdb_entries", []string{`tenant="blue"`, `origin="remote"`}, 1},
			{"evpnd_fdb_entries", []string{`tenant="blue"`, `origin="local"`}, 1},
			{"evpnd_evpn_routes", []string{`tenant="blue"`, `route_type="mac_ip"`, `direction="received"`}, 1},
			{"evpnd_evpn_routes", []string{`tenant="blue"`, `route_type="inclusive_multicast"`, `direction="advertised"`}, 1},
			{"evpnd_api_requests_total", []string{`CreateTenant`, `code="OK"`}, 1},
			{"evpnd_reconcile_runs_total", []string{`kind="set"`}, 1},
		} {
			v, ok := sample(text, want.name, want.labels...)
			if !ok || v < want.min {
				return fmt.Errorf("metric %s%v = %v (present %v), want >= %v", want.name, want.labels, v, ok, want.min)
			}
		}
		return nil
	})

	// A peer watcher sees the route reflector's session go down and come
	// back when the reflector restarts.
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	pw, err := c1.WatchPeers(pctx, &evpndv1.WatchPeersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	peerEvents := make(chan *evpndv1.Peer, 64)
	go func() {
		for {
			ev, err := pw.Recv()
			if err != nil {
				close(peerEvents)
				return
			}
			peerEvents <- ev.GetPeer()
		}
	}()
	// The session goes through several states while the reflector is
	// away and back, over seconds: the watcher, registered within
	// milliseconds, sees them whatever the exact moment.
	if err := l.StopDaemons("rr"); err != nil {
		t.Fatal(err)
	}
	if err := l.StartDaemons("rr"); err != nil {
		t.Fatal(err)
	}
	var wentDown bool
	deadline = time.After(2 * converge)
	for up := false; !up; {
		select {
		case p, ok := <-peerEvents:
			if !ok {
				t.Fatal("peer watch ended early")
			}
			if p.GetAddress() != "10.0.0.254" {
				continue
			}
			if p.GetState() != evpndv1.PeerState_PEER_STATE_ESTABLISHED {
				wentDown = true
			} else if wentDown {
				up = true
			}
		case <-deadline:
			t.Fatalf("peer watch: the reflector's session went down %v, never came back established", wentDown)
		}
	}
	pcancel()

	// kill -9 at any moment loses no acknowledged change: the objects come
	// back from state-dir and traffic flows again.
	before, err := c1.ListSegments(ctx, &evpndv1.ListSegmentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.KillDaemons("host1"); err != nil {
		t.Fatal(err)
	}
	if err := l.StartDaemons("host1"); err != nil {
		t.Fatal(err)
	}
	after, err := c1.ListSegments(ctx, &evpndv1.ListSegmentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(before, after) {
		t.Fatalf("segments after kill -9 and restart:\n%v\nwant\n%v", after, before)
	}
	lab.Eventually(t, converge, pollEvery, func() error {
		return lab.TCPExchange(t, l.NS("vm1"), l.NS("vm2"), vm2, 7102)
	})

	// Detach: the port leaves the tenant and traffic stops.
	if _, err := c1.DetachPort(ctx, &evpndv1.DetachPortRequest{Interface: "tap-vm1", Generation: 1}); err != nil {
		t.Fatalf("detach: %v", err)
	}
	lab.Eventually(t, converge, pollEvery, func() error {
		if err := lab.TCPExchange(t, l.NS("vm1"), l.NS("vm2"), vm2, 7103); err == nil {
			return errors.New("vm1 still reaches vm2 after its port was detached")
		}
		return nil
	})
	if _, err := c1.DeleteSegment(ctx, &evpndv1.DeleteSegmentRequest{Tenant: "blue", Name: "web"}); err != nil {
		t.Fatalf("delete segment: %v", err)
	}
	if _, err := c1.DeleteTenant(ctx, &evpndv1.DeleteTenantRequest{Name: "blue"}); err != nil {
		t.Fatalf("delete tenant: %v", err)
	}
	if _, err := c1.DeleteTenant(ctx, &evpndv1.DeleteTenantRequest{Name: "blue", AllowMissing: true}); err != nil {
		t.Fatalf("delete missing tenant with allow_missing: %v", err)
	}
	_, err = c1.DeleteTenant(ctx, &evpndv1.DeleteTenantRequest{Name: "blue"})
	wantCode(t, "delete missing tenant", err, codes.NotFound)
	lab.Eventually(t, converge, pollEvery, func() error {
		if _, err := os.Stat("/run/netns/" + l.TenantNS("host1", "blue")); err == nil {
			return errors.New("tenant namespace still exists after the tenant was deleted")
		}
		return nil
	})
}

// TestPrivilegedAPIInvalidInput feeds host1's API a bad value for every
// field type; each is refused with INVALID_ARGUMENT naming the field, and
// nothing is stored.
func TestPrivilegedAPIInvalidInput(t *testing.T) {
	requireLab(t)
	if _, err := os.Stat(filepath.Join("..", "bin", "evpnd")); err != nil {
		t.Skip("bin/evpnd is missing: run make build")
	}
	l := lab.Up(t, "topologies/api.clab.yml", lab.Options{})
	c := dialAPI(t, l, "host1")
	ctx := apiCtx(t)
	if _, err := c.CreateTenant(ctx, &evpndv1.CreateTenantRequest{Tenant: &evpndv1.Tenant{Name: "blue", L3Vni: 5000}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSegment(ctx, &evpndv1.CreateSegmentRequest{Segment: &evpndv1.Segment{Tenant: "blue", Name: "web", Vni: 100,
		Gateway: []string{"10.1.0.1/24"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AttachPort(ctx, &evpndv1.AttachPortRequest{Port: &evpndv1.Port{Interface: "tap-vm1", Tenant: "blue", Segment: "web"}}); err != nil {
		t.Fatal(err)
	}
	stateBefore := must(os.ReadFile(filepath.Join(l.NodeDir("host1"), "state", "state.json")))

	tenant := func(f func(*evpndv1.Tenant)) func() error {
		return func() error {
			t := &evpndv1.Tenant{Name: "red", L3Vni: 6000}
			f(t)
			_, err := c.CreateTenant(ctx, &evpndv1.CreateTenantRequest{Tenant: t})
			return err
		}
	}
	segment := func(f func(*evpndv1.Segment)) func() error {
		return func() error {
			s := &evpndv1.Segment{Tenant: "blue", Name: "db", Vni: 200}
			f(s)
			_, err := c.CreateSegment(ctx, &evpndv1.CreateSegmentRequest{Segment: s})
			return err
		}
	}
	pol := func(f func(*evpndv1.Policy)) func() error {
		return func() error {
			p := &evpndv1.Policy{Tenant: "blue", Rules: []*evpndv1.Rule{{Name: "web", Direction: "ingress",
				Port: "tap-vm1", Protocol: "tcp", Ports: []string{"80"}, Action: "allow"}}}
			f(p)
			_, err := c.CreatePolicy(ctx, &evpndv1.CreatePolicyRequest{Policy: p})
			return err
		}
	}
	for _, tc := range []struct {
		name  string
		call  func() error
		field string
	}{
		{"tenant name empty", tenant(func(t *evpndv1.Tenant) { t.Name = "" }), "tenant.name"},
		{"tenant name path", tenant(func(t *evpndv1.Tenant) { t.Name = "../etc" }), "tenant.name"},
		{"l3vni out of range", tenant(func(t *evpndv1.Tenant) { t.L3Vni = 1 << 24 }), "tenant.l3vni"},
		{"l3vni taken by a segment", tenant(func(t *evpndv1.Tenant) { t.L3Vni = 100 }), "tenant.l3vni"},
		{"anycast mac", tenant(func(t *evpndv1.Tenant) { t.AnycastGatewayMac = "02:zz" }), "tenant.anycast_gateway_mac"},
		{"route prefix", tenant(func(t *evpndv1.Tenant) {
			t.Routes = []*evpndv1.StaticRoute{{Prefix: "10.9.0.0", Via: "10.1.0.9"}}
		}), "tenant.routes[0].prefix"},
		{"route target", tenant(func(t *evpndv1.Tenant) {
			t.RouteTargets = &evpndv1.RouteTargets{Import: []string{"nonsense"}}
		}), "tenant.route_targets.import[0]"},
		{"segment vni zero", segment(func(s *evpndv1.Segment) { s.Vni = 0 }), "segment.vni"},
		{"segment vni duplicate", segment(func(s *evpndv1.Segment) { s.Vni = 100 }), "segment.vni"},
		{"segment name", segment(func(s *evpndv1.Segment) { s.Name = "a b" }), "segment.name"},
		{"segment gateway", segment(func(s *evpndv1.Segment) { s.Gateway = []string{"10.2.0.1"} }), "segment.gateway[0]"},
		{"segment mtu", segment(func(s *evpndv1.Segment) { s.Mtu = 100000 }), "segment.mtu"},
		{"segment of a missing tenant", segment(func(s *evpndv1.Segment) { s.Tenant = "nope" }), "segment"},
		{"port name", func() error {
			_, err := c.AttachPort(ctx, &evpndv1.AttachPortRequest{Port: &evpndv1.Port{Interface: "a/b", Tenant: "blue", Segment: "web"}})
			return err
		}, "port.interface"},
		{"rule direction", pol(func(p *evpndv1.Policy) { p.Rules[0].Direction = "sideways" }), "policy.rules[0].direction"},
		{"rule action", pol(func(p *evpndv1.Policy) { p.Rules[0].Action = "maybe" }), "policy.rules[0].action"},
		{"rule port range", pol(func(p *evpndv1.Policy) { p.Rules[0].Ports = []string{"80-x"} }), "policy.rules[0].ports[0]"},
		{"rule dscp", pol(func(p *evpndv1.Policy) { d := int32(64); p.Rules[0].Dscp = &d }), "policy.rules[0].dscp"},
		{"rule unknown port", pol(func(p *evpndv1.Policy) { p.Rules[0].Port = "tap-nope" }), "policy.rules[0].port"},
		{"qos rate", pol(func(p *evpndv1.Policy) {
			p.Qos = []*evpndv1.PortQos{{Port: "tap-vm1", Egress: &evpndv1.Rate{Rate: "fast"}}}
		}), "policy.qos[0].egress.rate"},
		{"nat address", pol(func(p *evpndv1.Policy) { p.Nat = &evpndv1.Nat{Snat: "not-an-ip"} }), "policy.nat.snat"},
		{"policy of a missing tenant", pol(func(p *evpndv1.Policy) { p.Tenant = "nope" }), "policy.tenant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			wantCode(t, tc.name, err, codes.InvalidArgument)
			v := violations(err)
			if _, ok := v[tc.field]; !ok {
				t.Fatalf("violations %v lack field %q", v, tc.field)
			}
		})
	}
	if after := must(os.ReadFile(filepath.Join(l.NodeDir("host1"), "state", "state.json"))); string(after) != string(stateBefore) {
		t.Fatalf("refused calls changed the state file:\n%s\nwas\n%s", after, stateBefore)
	}
}

// TestPrivilegedAPIReload edits host2's config file and sends SIGHUP: the
// new tenant appears and the untouched one keeps its devices; a broken
// file changes nothing.
func TestPrivilegedAPIReload(t *testing.T) {
	requireLab(t)
	if _, err := os.Stat(filepath.Join("..", "bin", "evpnd")); err != nil {
		t.Skip("bin/evpnd is missing: run make build")
	}
	// The lab reads configs relative to its file: copy it so the test can
	// edit host2's.
	dir := t.TempDir()
	copyTree(t, "topologies/api", filepath.Join(dir, "api"))
	must(nil, os.WriteFile(filepath.Join(dir, "api.clab.yml"), must(os.ReadFile("topologies/api.clab.yml")), 0o644))
	l := lab.Up(t, filepath.Join(dir, "api.clab.yml"), lab.Options{})
	blue := l.TenantNS("host2", "blue")
	lab.Eventually(t, converge, pollEvery, func() error {
		_, err := lab.ExecNS(blue, "cat", "/sys/class/net/vx100/ifindex")
		return err
	})
	ifindex := strings.TrimSpace(string(must(lab.ExecNS(blue, "cat", "/sys/class/net/vx100/ifindex"))))

	conf := filepath.Join(dir, "api", "host2", "evpnd.yaml")
	orig := must(os.ReadFile(conf))
	withRed := string(orig) + "  - name: red\n    segments:\n      - name: db\n        vni: 300\n"
	must(nil, os.WriteFile(conf, []byte(withRed), 0o644))
	if err := l.Signal("host2", "evpnd", 1); err != nil { // SIGHUP
		t.Fatal(err)
	}
	lab.Eventually(t, converge, pollEvery, func() error {
		_, err := lab.ExecNS(l.TenantNS("host2", "red"), "cat", "/sys/class/net/vx300/ifindex")
		return err
	})
	if now := strings.TrimSpace(string(must(lab.ExecNS(blue, "cat", "/sys/class/net/vx100/ifindex")))); now != ifindex {
		t.Fatalf("blue's vx100 changed ifindex %s -> %s on a reload that did not touch blue", ifindex, now)
	}
	c := dialAPI(t, l, "host2")
	ctx := apiCtx(t)
	if _, err := c.GetSegment(ctx, &evpndv1.GetSegmentRequest{Tenant: "red", Name: "db"}); err != nil {
		t.Fatalf("red/db after reload: %v", err)
	}

	// A file that does not validate is refused whole: red stays.
	logBefore := readLog(t, l, "host2")
	must(nil, os.WriteFile(conf, []byte(strings.Replace(withRed, "vni: 300", "vni: 100", 1)), 0o644))
	if err := l.Signal("host2", "evpnd", 1); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, converge, pollEvery, func() error {
		if strings.Count(readLog(t, l, "host2"), "reload refused") <= strings.Count(logBefore, "reload refused") {
			return errors.New("no reload refusal logged yet")
		}
		return nil
	})
	if !regexp.MustCompile(`vni: 100 is already used`).MatchString(readLog(t, l, "host2")) {
		t.Fatalf("refusal does not say why:\n%s", lab.Tail(filepath.Join(l.NodeDir("host2"), "evpnd.log"), 20))
	}
	if _, err := c.GetSegment(ctx, &evpndv1.GetSegmentRequest{Tenant: "red", Name: "db"}); err != nil {
		t.Fatalf("red/db after a refused reload: %v", err)
	}
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
