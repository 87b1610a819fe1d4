package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/evpnd/evpnd/bgp"
	"github.com/evpnd/evpnd/evpn"
	"github.com/evpnd/evpnd/fabric"
	"github.com/evpnd/evpnd/policy"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testSource is a Source over fixed state. errs fails a source by name
// (the source label values); block makes a source wait for its context.
type testSource struct {
	peers     []bgp.Peer
	routes    []evpn.Route
	macs      []fabric.MAC
	neighbors map[string][2]int
	counters  []policy.Counter
	stats     fabric.Stats
	tenants   map[evpn.VNI]string
	errs      map[string]error
	block     map[string]bool
}

func (s *testSource) fail(ctx context.Context, source string) error {
	if s.block[source] {
		<-ctx.Done()
		return fmt.Errorf("%s: %w", source, ctx.Err())
	}
	return s.errs[source]
}

func (s *testSource) Peers(ctx context.Context) ([]bgp.Peer, error) {
	return s.peers, s.fail(ctx, sourcePeers)
}

func (s *testSource) Routes(ctx context.Context) ([]evpn.Route, error) {
	return s.routes, s.fail(ctx, sourceRoutes)
}

func (s *testSource) MACs(ctx context.Context) ([]fabric.MAC, error) {
	return s.macs, s.fail(ctx, sourceMACs)
}

func (s *testSource) NeighborCounts(ctx context.Context) (map[string][2]int, error) {
	return s.neighbors, s.fail(ctx, sourceNeighbors)
}

func (s *testSource) TenantOfVNI(vni evpn.VNI) (string, bool) {
	t, ok := s.tenants[vni]
	return t, ok
}

func (s *testSource) PolicyCounters(ctx context.Context) ([]policy.Counter, error) {
	return s.counters, s.fail(ctx, sourcePolicyCounters)
}

func (s *testSource) DatapathStats() fabric.Stats { return s.stats }

var (
	peer1 = netip.MustParseAddr("192.0.2.1")
	peer2 = netip.MustParseAddr("2001:db8::2")
	rd    = evpn.RD{}
	mac1  = mustMAC("02:00:00:00:00:01")
)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// fullSource is a daemon with two tenants: blue (L2VNI 100) and red (L2VNI
// 200, L3VNI 5000).
func fullSource() *testSource {
	return &testSource{
		peers: []bgp.Peer{
			{Address: peer1, ASN: 65000, Description: "rr1", State: "established", Uptime: 90 * time.Second, Received: 10, Accepted: 9, Advertised: 4},
			{Address: peer2, ASN: 4200000000, Description: "tor", State: "active"},
			{Address: netip.MustParseAddr("192.0.2.3"), ASN: 65003, State: "bogus"},
		},
		routes: []evpn.Route{
			{NLRI: &evpn.MACIP{RD: rd, MAC: mac1, Labels: []evpn.VNI{100}}},
			{NLRI: &evpn.MACIP{RD: rd, MAC: mac1, Labels: []evpn.VNI{100}}, Peer: peer1},
			{NLRI: &evpn.MACIP{RD: rd, MAC: mac1, Labels: []evpn.VNI{100, 5000}}, Peer: peer2},
			{NLRI: &evpn.IMET{RD: rd}, PMSI: &evpn.PMSI{Type: evpn.PMSIIngressReplication, Label: 100}},
			{NLRI: &evpn.IMET{RD: rd, EthTag: 200}, Peer: peer1},
			{NLRI: &evpn.Prefix{RD: rd, Prefix: netip.MustParsePrefix("10.1.0.0/24"), Label: 5000}, Peer: peer1},
			{NLRI: &evpn.MACIP{RD: rd, MAC: mac1, Labels: []evpn.VNI{999}}, Peer: peer1},
			{NLRI: &evpn.MACIP{RD: rd, MAC: mac1, Labels: []evpn.VNI{100}}, Peer: peer1, Withdraw: true},
		},
		macs: []fabric.MAC{
			{Tenant: "blue", VNI: 100, MAC: mac1, Port: "tap0"},
			{Tenant: "blue", VNI: 100, MAC: mac1, Port: "tap1"},
			{Tenant: "blue", VNI: 100, MAC: mac1, Port: "vx100", VTEP: peer1, Remote: true},
			{Tenant: "red", VNI: 200, MAC: mac1, Port: "vx200", VTEP: peer1, Remote: true},
		},
		neighbors: map[string][2]int{"blue": {3, 1}, "red": {0, 2}},
		counters: []policy.Counter{
			{Tenant: "blue", Rule: "web-in", Packets: 10, Bytes: 1500},
			{Tenant: "blue", Rule: "ssh", Packets: 1, Bytes: 60},
			{Tenant: "blue", Rule: "ssh", Packets: 1, Bytes: 60},
			{Tenant: "red", Rule: "deny-all"},
		},
		stats: fabric.Stats{
			Batches: 7, Writes: 120, WriteErrors: 2, LastBatch: 250 * time.Millisecond,
			RemoteFDB: 5, RemoteFlood: 2, RemoteNeigh: 3, RemoteRoutes: 4, RouterMACs: 1, LocalLearned: 6,
		},
		tenants: map[evpn.VNI]string{100: "blue", 200: "red", 5000: "red"},
	}
}

// samples flattens metric families to "name{k="v",...}" -> value, labels
// sorted; histograms give name_count and name_sum.
func samples(mfs []*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			slices.Sort(labels)
			key := func(suffix string) string {
				return mf.GetName() + suffix + "{" + strings.Join(labels, ",") + "}"
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key("")] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key("")] = m.GetGauge().GetValue()
			case dto.MetricType_UNTYPED:
				out[key("")] = m.GetUntyped().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key("_count")] = float64(m.GetHistogram().GetSampleCount())
				out[key("_sum")] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

func gather(t *testing.T, r *Registry) map[string]float64 {
	t.Helper()
	mfs, err := r.Gatherer().Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	return samples(mfs)
}

// hasFamily reports whether any sample of metric name is present.
func hasFamily(got map[string]float64, name string) bool {
	for k := range got {
		if strings.HasPrefix(k, name+"{") {
			return true
		}
	}
	return false
}

func quiet() Option { return WithLogger(slog.New(slog.DiscardHandler)) }

func TestCollect(t *testing.T) {
	full := map[string]float64{
		`evpnd_bgp_peer_state{asn="65000",description="rr1",peer="192.0.2.1"}`:                     6,
		`evpnd_bgp_peer_state{asn="4200000000",description="tor",peer="2001:db8::2"}`:              3,
		`evpnd_bgp_peer_state{asn="65003",description="",peer="192.0.2.3"}`:                        0,
		`evpnd_bgp_peer_up{peer="192.0.2.1"}`:                                                      1,
		`evpnd_bgp_peer_up{peer="2001:db8::2"}`:                                                    0,
		`evpnd_bgp_peer_uptime_seconds{peer="192.0.2.1"}`:                                          90,
		`evpnd_bgp_peer_received_routes{afi_safi="l2vpn_evpn",peer="192.0.2.1"}`:                   10,
		`evpnd_bgp_peer_accepted_routes{afi_safi="l2vpn_evpn",peer="192.0.2.1"}`:                   9,
		`evpnd_bgp_peer_advertised_routes{afi_safi="l2vpn_evpn",peer="192.0.2.1"}`:                 4,
		`evpnd_evpn_routes{direction="advertised",route_type="mac_ip",tenant="blue"}`:              1,
		`evpnd_evpn_routes{direction="received",route_type="mac_ip",tenant="blue"}`:                2,
		`evpnd_evpn_routes{direction="advertised",route_type="inclusive_multicast",tenant="blue"}`: 1,
		`evpnd_evpn_routes{direction="received",route_type="inclusive_multicast",tenant="red"}`:    1,
		`evpnd_evpn_routes{direction="received",route_type="ip_prefix",tenant="red"}`:              1,
		`evpnd_evpn_routes{direction="received",route_type="mac_ip",tenant=""}`:                    1,
		`evpnd_fdb_entries{origin="local",tenant="blue"}`:                                          2,
		`evpnd_fdb_entries{origin="remote",tenant="blue"}`:                                         1,
		`evpnd_fdb_entries{origin="local",tenant="red"}`:                                           0,
		`evpnd_fdb_entries{origin="remote",tenant="red"}`:                                          1,
		`evpnd_neighbor_entries{origin="local",tenant="blue"}`:                                     3,
		`evpnd_neighbor_entries{origin="remote",tenant="red"}`:                                     2,
		`evpnd_policy_rule_packets_total{rule="web-in",tenant="blue"}`:                             10,
		`evpnd_policy_rule_bytes_total{rule="web-in",tenant="blue"}`:                               1500,
		`evpnd_policy_rule_packets_total{rule="ssh",tenant="blue"}`:                                2,
		`evpnd_policy_rule_bytes_total{rule="ssh",tenant="blue"}`:                                  120,
		`evpnd_policy_rule_packets_total{rule="deny-all",tenant="red"}`:                            0,
		`evpnd_datapath_netlink_batches_total{}`:                                                   7,
		`evpnd_datapath_netlink_writes_total{}`:                                                    120,
		`evpnd_datapath_netlink_write_errors_total{}`:                                              2,
		`evpnd_datapath_last_batch_duration_seconds{}`:                                             0.25,
		`evpnd_datapath_entries{kind="remote_fdb"}`:                                                5,
		`evpnd_datapath_entries{kind="local_learned"}`:                                             6,
		`evpnd_scrape_errors_total{source="peers"}`:                                                0,
		`evpnd_scrape_errors_total{source="routes"}`:                                               0,
		`evpnd_reconcile_runs_total{kind="set"}`:                                                   0,
		`evpnd_reconcile_errors_total{kind="sync"}`:                                                0,
	}
	without := func(drop ...string) map[string]float64 {
		m := maps.Clone(full)
		for k := range m {
			for _, d := range drop {
				if strings.HasPrefix(k, d+"{") {
					delete(m, k)
				}
			}
		}
		return m
	}
	with := func(m map[string]float64, kv ...any) map[string]float64 {
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1].(float64)
		}
		return m
	}
	boom := errors.New("boom")

	tests := []struct {
		name   string
		src    func() *testSource
		want   map[string]float64
		absent []string // metric names with no sample at all
	}{
		{
			name: "full state",
			src:  fullSource,
			want: full,
		},
		{
			name: "empty daemon",
			src:  func() *testSource { return &testSource{} },
			want: map[string]float64{
				`evpnd_datapath_netlink_writes_total{}`:     0,
				`evpnd_scrape_errors_total{source="macs"}`:  0,
				`evpnd_reconcile_runs_total{kind="policy"}`: 0,
			},
			absent: []string{"evpnd_bgp_peer_state", "evpnd_evpn_routes", "evpnd_fdb_entries", "evpnd_neighbor_entries", "evpnd_policy_rule_packets_total"},
		},
		{
			name: "bgp down",
			src: func() *testSource {
				s := fullSource()
				s.errs = map[string]error{sourcePeers: boom, sourceRoutes: boom}
				return s
			},
			want: with(without("evpnd_bgp_peer_state", "evpnd_bgp_peer_up", "evpnd_bgp_peer_uptime_seconds",
				"evpnd_bgp_peer_received_routes", "evpnd_bgp_peer_accepted_routes", "evpnd_bgp_peer_advertised_routes",
				"evpnd_evpn_routes"),
				`evpnd_scrape_errors_total{source="peers"}`, 1.0,
				`evpnd_scrape_errors_total{source="routes"}`, 1.0),
			absent: []string{"evpnd_bgp_peer_state", "evpnd_bgp_peer_up", "evpnd_evpn_routes"},
		},
		{
			name: "kernel reads fail",
			src: func() *testSource {
				s := fullSource()
				s.errs = map[string]error{sourceMACs: boom, sourceNeighbors: boom, sourcePolicyCounters: boom}
				return s
			},
			want: with(without("evpnd_fdb_entries", "evpnd_neighbor_entries", "evpnd_policy_rule_packets_total", "evpnd_policy_rule_bytes_total"),
				`evpnd_scrape_errors_total{source="macs"}`, 1.0,
				`evpnd_scrape_errors_total{source="neighbors"}`, 1.0,
				`evpnd_scrape_errors_total{source="policy_counters"}`, 1.0,
				`evpnd_scrape_errors_total{source="peers"}`, 0.0),
			absent: []string{"evpnd_fdb_entries", "evpnd_neighbor_entries", "evpnd_policy_rule_bytes_total"},
		},
		{
			name: "routes hang past the scrape timeout",
			src: func() *testSource {
				s := fullSource()
				s.block = map[string]bool{sourceRoutes: true}
				return s
			},
			want:   with(without("evpnd_evpn_routes"), `evpnd_scrape_errors_total{source="routes"}`, 1.0),
			absent: []string{"evpnd_evpn_routes"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New(tt.src(), "v1.2.3", quiet(), WithScrapeTimeout(50*time.Millisecond))
			got := gather(t, r)
			for k, v := range tt.want {
				g, ok := got[k]
				if !ok {
					t.Errorf("missing sample %s", k)
					continue
				}
				if g != v {
					t.Errorf("%s = %v, want %v", k, g, v)
				}
			}
			for _, name := range tt.absent {
				if hasFamily(got, name) {
					t.Errorf("%s has samples, want none", name)
				}
			}
			if !hasFamily(got, "go_goroutines") || !hasFamily(got, "process_cpu_seconds_total") {
				t.Errorf("go and process collectors are missing")
			}
		})
	}
}

func TestScrapeErrorsAccumulate(t *testing.T) {
	s := fullSource()
	s.errs = map[string]error{sourcePeers: errors.New("bgp: not started")}
	r := New(s, "v1", quiet())
	for range 3 {
		gather(t, r)
	}
	if got := gather(t, r)[`evpnd_scrape_errors_total{source="peers"}`]; got != 4 {
		t.Errorf("evpnd_scrape_errors_total{source=peers} = %v after 4 failed scrapes, want 4", got)
	}
}

// TestCollectExposition pins the exact exposition of the BGP peer and
// build info families, help text included, as dashboards read them.
func TestCollectExposition(t *testing.T) {
	s := fullSource()
	s.peers = s.peers[:2]
	c := newCollector(s, "v1.2.3", DefaultScrapeTimeout, slog.New(slog.DiscardHandler))
	want := `
# HELP evpnd_bgp_peer_state BGP FSM state of the peer: 1 idle, 2 connect, 3 active, 4 opensent, 5 openconfirm, 6 established, 0 unknown.
# TYPE evpnd_bgp_peer_state gauge
evpnd_bgp_peer_state{asn="65000",description="rr1",peer="192.0.2.1"} 6
evpnd_bgp_peer_state{asn="4200000000",description="tor",peer="2001:db8::2"} 3
# HELP evpnd_bgp_peer_up 1 when the BGP session with the peer is established, else 0.
# TYPE evpnd_bgp_peer_up gauge
evpnd_bgp_peer_up{peer="192.0.2.1"} 1
evpnd_bgp_peer_up{peer="2001:db8::2"} 0
# HELP evpnd_bgp_peer_received_routes Paths received from the peer (Adj-RIB-In, before import policy).
# TYPE evpnd_bgp_peer_received_routes gauge
evpnd_bgp_peer_received_routes{afi_safi="l2vpn_evpn",peer="192.0.2.1"} 10
evpnd_bgp_peer_received_routes{afi_safi="l2vpn_evpn",peer="2001:db8::2"} 0
# HELP evpnd_evpn_routes EVPN best paths in the RIB by tenant (from the route's VNI; empty when no tenant has that VNI), route type (mac_ip, inclusive_multicast, ip_prefix) and direction (advertised: originated here; received: learned from a peer).
# TYPE evpnd_evpn_routes gauge
evpnd_evpn_routes{direction="advertised",route_type="inclusive_multicast",tenant="blue"} 1
evpnd_evpn_routes{direction="advertised",route_type="mac_ip",tenant="blue"} 1
evpnd_evpn_routes{direction="received",route_type="inclusive_multicast",tenant="red"} 1
evpnd_evpn_routes{direction="received",route_type="ip_prefix",tenant="red"} 1
evpnd_evpn_routes{direction="received",route_type="mac_ip",tenant=""} 1
evpnd_evpn_routes{direction="received",route_type="mac_ip",tenant="blue"} 2
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"evpnd_bgp_peer_state", "evpnd_bgp_peer_up", "evpnd_bgp_peer_received_routes", "evpnd_evpn_routes"); err != nil {
		t.Error(err)
	}
	build := fmt.Sprintf(`
# HELP evpnd_build_info Always 1; the labels carry the evpnd version and the Go version it was built with.
# TYPE evpnd_build_info gauge
evpnd_build_info{goversion=%q,version="v1.2.3"} 1
`, runtime.Version())
	if err := testutil.CollectAndCompare(c, strings.NewReader(build), "evpnd_build_info"); err != nil {
		t.Error(err)
	}
}

func TestLint(t *testing.T) {
	r := New(fullSource(), "v1", quiet())
	// Series of the instruments appear only once used.
	r.PolicyApplied("blue", time.Millisecond, nil)
	r.PolicyApplied("blue", 0, errors.New("nft: table busy"))
	r.APIRequest("/evpnd.v1.Evpnd/ListTenants", "OK")
	r.ReconcileDone("set", nil)
	problems, err := testutil.GatherAndLint(r.Gatherer())
	if err != nil {
		t.Fatalf("lint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestInstruments(t *testing.T) {
	r := New(&testSource{}, "v1", quiet())
	boom := errors.New("boom")
	r.ReconcileDone("set", nil)
	r.ReconcileDone("set", boom)
	r.ReconcileDone("update", nil)
	r.ReconcileDone("sync", boom)
	r.PolicyApplied("blue", 20*time.Millisecond, nil)
	r.PolicyApplied("blue", 30*time.Millisecond, nil)
	r.PolicyApplied("blue", time.Microsecond, boom)
	r.PolicyApplied("red", 10*time.Millisecond, nil)
	r.APIRequest("/evpnd.v1.Evpnd/GetTenant", "OK")
	r.APIRequest("/evpnd.v1.Evpnd/GetTenant", "NotFound")
	r.APIRequest("/evpnd.v1.Evpnd/GetTenant", "OK")

	unary := r.UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: "/evpnd.v1.Evpnd/SetTenant"}
	if _, err := unary(context.Background(), nil, info, func(context.Context, any) (any, error) {
		return nil, status.Error(codes.InvalidArgument, "tenants[0].name: empty")
	}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("interceptor changed the error: %v", err)
	}
	if _, err := unary(context.Background(), nil, info, func(context.Context, any) (any, error) {
		return "ok", nil
	}); err != nil {
		t.Errorf("interceptor: %v", err)
	}
	stream := r.StreamServerInterceptor()
	if err := stream(nil, nil, &grpc.StreamServerInfo{FullMethod: "/evpnd.v1.Evpnd/Watch"}, func(any, grpc.ServerStream) error {
		return context.Canceled
	}); err != context.Canceled {
		t.Errorf("stream interceptor changed the error: %v", err)
	}

	want := map[string]float64{
		`evpnd_reconcile_runs_total{kind="set"}`:                                              2,
		`evpnd_reconcile_errors_total{kind="set"}`:                                            1,
		`evpnd_reconcile_runs_total{kind="update"}`:                                           1,
		`evpnd_reconcile_errors_total{kind="update"}`:                                         0,
		`evpnd_reconcile_errors_total{kind="sync"}`:                                           1,
		`evpnd_reconcile_runs_total{kind="policy"}`:                                           0,
		`evpnd_policy_apply_duration_seconds_count{tenant="blue"}`:                            2,
		`evpnd_policy_apply_duration_seconds_sum{tenant="blue"}`:                              0.05,
		`evpnd_policy_apply_errors_total{tenant="blue"}`:                                      1,
		`evpnd_policy_apply_duration_seconds_count{tenant="red"}`:                             1,
		`evpnd_policy_apply_errors_total{tenant="red"}`:                                       0,
		`evpnd_api_requests_total{code="OK",method="/evpnd.v1.Evpnd/GetTenant"}`:              2,
		`evpnd_api_requests_total{code="NotFound",method="/evpnd.v1.Evpnd/GetTenant"}`:        1,
		`evpnd_api_requests_total{code="InvalidArgument",method="/evpnd.v1.Evpnd/SetTenant"}`: 1,
		`evpnd_api_requests_total{code="OK",method="/evpnd.v1.Evpnd/SetTenant"}`:              1,
		`evpnd_api_requests_total{code="Canceled",method="/evpnd.v1.Evpnd/Watch"}`:            1,
	}
	got := gather(t, r)
	for k, v := range want {
		// The sum of float seconds is not exact.
		if g, ok := got[k]; !ok || g < v-1e-9 || g > v+1e-9 {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}

	r.ForgetTenant("blue")
	got = gather(t, r)
	for _, k := range []string{`evpnd_policy_apply_duration_seconds_count{tenant="blue"}`, `evpnd_policy_apply_errors_total{tenant="blue"}`} {
		if _, ok := got[k]; ok {
			t.Errorf("%s still present after ForgetTenant", k)
		}
	}
	if _, ok := got[`evpnd_policy_apply_duration_seconds_count{tenant="red"}`]; !ok {
		t.Errorf("ForgetTenant(blue) dropped red")
	}
}

func TestRouteVNI(t *testing.T) {
	tests := []struct {
		name  string
		route evpn.Route
		want  evpn.VNI
		ok    bool
	}{
		{"type 2 l2vni", evpn.Route{NLRI: &evpn.MACIP{Labels: []evpn.VNI{100}}}, 100, true},
		{"type 2 symmetric irb takes the l2vni", evpn.Route{NLRI: &evpn.MACIP{Labels: []evpn.VNI{100, 5000}}}, 100, true},
		{"type 2 no label", evpn.Route{NLRI: &evpn.MACIP{}}, 0, false},
		{"type 3 pmsi label", evpn.Route{NLRI: &evpn.IMET{EthTag: 7}, PMSI: &evpn.PMSI{Label: 200}}, 200, true},
		{"type 3 ethernet tag without pmsi", evpn.Route{NLRI: &evpn.IMET{EthTag: 300}}, 300, true},
		{"type 3 nothing", evpn.Route{NLRI: &evpn.IMET{}}, 0, false},
		{"type 5 l3vni", evpn.Route{NLRI: &evpn.Prefix{Label: 5000}}, 5000, true},
		{"type 5 label beyond 24 bits", evpn.Route{NLRI: &evpn.Prefix{Label: evpn.MaxVNI + 1}}, evpn.MaxVNI + 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := RouteVNI(tt.route)
			if got != tt.want || ok != tt.ok {
				t.Errorf("RouteVNI = %d, %v; want %d, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// httpClient keeps no idle connections, so no transport goroutine
// outlives a test.
func httpClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
}

func get(t *testing.T, url string) (int, string, string) {
	t.Helper()
	resp, err := httpClient().Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
}

func TestServe(t *testing.T) {
	s := fullSource()
	s.errs = map[string]error{sourceNeighbors: errors.New("netns gone")}
	r := New(s, "v1.2.3", quiet())
	r.ReconcileDone("set", nil)
	r.APIRequest("/evpnd.v1.Evpnd/ListTenants", "OK")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := r.Serve(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatalf("Serve: %v", err)
	}
	base := "http://" + addr.String()

	code, ctype, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: status %d: %s", code, body)
	}
	if !strings.HasPrefix(ctype, "text/plain") {
		t.Errorf("GET /metrics: content type %q, want the text format", ctype)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	got := samples(slices.Collect(maps.Values(families)))
	want := map[string]float64{
		`evpnd_bgp_peer_up{peer="192.0.2.1"}`:                                             1,
		`evpnd_bgp_peer_state{asn="4200000000",description="tor",peer="2001:db8::2"}`:     3,
		`evpnd_evpn_routes{direction="received",route_type="ip_prefix",tenant="red"}`:     1,
		`evpnd_fdb_entries{origin="local",tenant="blue"}`:                                 2,
		`evpnd_policy_rule_bytes_total{rule="web-in",tenant="blue"}`:                      1500,
		`evpnd_datapath_netlink_writes_total{}`:                                           120,
		`evpnd_reconcile_runs_total{kind="set"}`:                                          1,
		`evpnd_api_requests_total{code="OK",method="/evpnd.v1.Evpnd/ListTenants"}`:        1,
		`evpnd_scrape_errors_total{source="neighbors"}`:                                   1,
		`evpnd_scrape_errors_total{source="peers"}`:                                       0,
		fmt.Sprintf(`evpnd_build_info{goversion=%q,version="v1.2.3"}`, runtime.Version()): 1,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	if hasFamily(got, "evpnd_neighbor_entries") {
		t.Errorf("evpnd_neighbor_entries served although NeighborCounts failed")
	}
	if !hasFamily(got, "promhttp_metric_handler_requests_total") {
		t.Errorf("promhttp_metric_handler_requests_total missing")
	}

	code, ctype, body = get(t, base+"/")
	if code != http.StatusOK || !strings.HasPrefix(ctype, "text/html") || !strings.Contains(body, `href="/metrics"`) {
		t.Errorf("GET /: status %d, type %q, body %q; want a page linking to /metrics", code, ctype, body)
	}
	if code, _, _ = get(t, base+"/nothing"); code != http.StatusNotFound {
		t.Errorf("GET /nothing: status %d, want 404", code)
	}

	cancel()
	// The server shuts down in its own goroutine; wait for the port to
	// close. goleak in TestMain checks that nothing is left running.
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr.String(), time.Second)
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatalf("metrics server still accepts connections after its context ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServeListenerStops(t *testing.T) {
	r := New(fullSource(), "v1", quiet())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.ServeListener(ctx, ln) }()

	if code, _, _ := get(t, "http://"+ln.Addr().String()+"/metrics"); code != http.StatusOK {
		t.Fatalf("GET /metrics: status %d", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ServeListener after cancel: %v", err)
	}
	if conn, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		conn.Close()
		t.Errorf("listener still open after ServeListener returned")
	}
}

func TestServeListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r := New(&testSource{}, "v1", quiet())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := r.Serve(ctx, ln.Addr().String()); err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Errorf("Serve on a taken port: err %v, want an error naming the address", err)
	}
}

// TestOwnRegistry checks that evpnd's metrics stay out of the process-wide
// default registry, which other libraries in the process may fill.
func TestOwnRegistry(t *testing.T) {
	New(fullSource(), "v1", quiet()).ReconcileDone("set", nil)
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "evpnd_") {
			t.Errorf("%s is in the default registry", mf.GetName())
		}
	}
}
