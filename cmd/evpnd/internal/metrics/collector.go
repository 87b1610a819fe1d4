package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/evpnd/evpnd/bgp"
	"github.com/evpnd/evpnd/evpn"
	"github.com/evpnd/evpnd/fabric"
	"github.com/evpnd/evpnd/policy"
)

// Source is what the collector reads at scrape time. The daemon implements
// it. Methods may be called concurrently, from several scrapes at once.
type Source interface {
	Peers(ctx context.Context) ([]bgp.Peer, error)
	// Routes is the EVPN RIB: local (zero Peer) and received best paths.
	Routes(ctx context.Context) ([]evpn.Route, error)
	// MACs is every segment's MAC table.
	MACs(ctx context.Context) ([]fabric.MAC, error)
	// NeighborCounts is, per tenant, the [local, remote] neighbour entries.
	NeighborCounts(ctx context.Context) (map[string][2]int, error)
	// TenantOfVNI maps an L2 or L3 VNI to its tenant. It is called once per
	// route in the RIB, so it must be cheap.
	TenantOfVNI(vni evpn.VNI) (string, bool)
	PolicyCounters(ctx context.Context) ([]policy.Counter, error)
	DatapathStats() fabric.Stats
}

// DefaultScrapeTimeout bounds the Source calls of one scrape; it is below
// Prometheus' default scrape timeout (10 s) so a slow source costs its own
// metrics, not the whole scrape.
const DefaultScrapeTimeout = 5 * time.Second

// The values of the source label of evpnd_scrape_errors_total.
const (
	sourcePeers          = "peers"
	sourceRoutes         = "routes"
	sourceMACs           = "macs"
	sourceNeighbors      = "neighbors"
	sourcePolicyCounters = "policy_counters"
)

var scrapeSources = []string{sourcePeers, sourceRoutes, sourceMACs, sourceNeighbors, sourcePolicyCounters}

// peerStates numbers the BGP FSM states in RFC 4271 order, as frr_exporter
// and the GoBGP exporter do, so dashboards built for them read ours.
var peerStates = map[string]float64{
	"idle":        1,
	"connect":     2,
	"active":      3,
	"opensent":    4,
	"openconfirm": 5,
	"established": 6,
}

const afiSafiEVPN = "l2vpn_evpn"

// collector turns one Source into metrics at scrape time.
type collector struct {
	src     Source
	timeout time.Duration
	log     *slog.Logger

	// scrapeErrors is a real counter (it must keep counting across scrapes)
	// that the collector owns and emits itself, so a failure is visible in
	// the very scrape that hit it.
	scrapeErrors *prometheus.CounterVec

	buildInfo *prometheus.Desc
	version   string

	peerState      *prometheus.Desc
	peerUp         *prometheus.Desc
	peerUptime     *prometheus.Desc
	peerReceived   *prometheus.Desc
	peerAccepted   *prometheus.Desc
	peerAdvertised *prometheus.Desc

	evpnRoutes *prometheus.Desc
	fdbEntries *prometheus.Desc
	neighbors  *prometheus.Desc

	rulePackets *prometheus.Desc
	ruleBytes   *prometheus.Desc

	dpBatches     *prometheus.Desc
	dpWrites      *prometheus.Desc
	dpWriteErrors *prometheus.Desc
	dpLastBatch   *prometheus.Desc
	dpEntries     *prometheus.Desc
}

func newCollector(src Source, version string, timeout time.Duration, log *slog.Logger) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	c := &collector{
		src:     src,
		timeout: timeout,
		log:     log,
		version: version,
		scrapeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "evpnd_scrape_errors_total",
			Help: "Failed reads of daemon state while collecting metrics, by source; the metrics of that source are missing from the scrape that failed.",
		}, []string{"source"}),
		buildInfo: d("evpnd_build_info",
			"Always 1; the labels carry the evpnd version and the Go version it was built with.",
			"version", "goversion"),

		peerState: d("evpnd_bgp_peer_state",
			"BGP FSM state of the peer: 1 idle, 2 connect, 3 active, 4 opensent, 5 openconfirm, 6 established, 0 unknown.",
			"peer", "asn", "description"),
		peerUp: d("evpnd_bgp_peer_up",
			"1 when the BGP session with the peer is established, else 0.",
			"peer"),
		peerUptime: d("evpnd_bgp_peer_uptime_seconds",
			"Time since the BGP session with the peer was established; 0 when it is not.",
			"peer"),
		peerReceived: d("evpnd_bgp_peer_received_routes",
			"Paths received from the peer (Adj-RIB-In, before import policy).",
			"peer", "afi_safi"),
		peerAccepted: d("evpnd_bgp_peer_accepted_routes",
			"Paths received from the peer and accepted by import policy.",
			"peer", "afi_safi"),
		peerAdvertised: d("evpnd_bgp_peer_advertised_routes",
			"Paths advertised to the peer.",
			"peer", "afi_safi"),

		evpnRoutes: d("evpnd_evpn_routes",
			"EVPN best paths in the RIB by tenant (from the route's VNI; empty when no tenant has that VNI), route type (mac_ip, inclusive_multicast, ip_prefix) and direction (advertised: originated here; received: learned from a peer).",
			"tenant", "route_type", "direction"),
		fdbEntries: d("evpnd_fdb_entries",
			"MAC table entries in the tenant's segments: origin local (learned on a local port) or remote (installed from EVPN, behind a remote VTEP).",
			"tenant", "origin"),
		neighbors: d("evpnd_neighbor_entries",
			"Neighbour (ARP/NDP) entries in the tenant's namespace: origin local or remote (installed from EVPN).",
			"tenant", "origin"),

		rulePackets: d("evpnd_policy_rule_packets_total",
			"Packets matched by a policy rule, read from its nftables counter.",
			"tenant", "rule"),
		ruleBytes: d("evpnd_policy_rule_bytes_total",
			"Bytes matched by a policy rule, read from its nftables counter.",
			"tenant", "rule"),

		dpBatches: d("evpnd_datapath_netlink_batches_total",
			"Batches of kernel writes the datapath flushed."),
		dpWrites: d("evpnd_datapath_netlink_writes_total",
			"Netlink writes (FDB, neighbour, route changes) the datapath made."),
		dpWriteErrors: d("evpnd_datapath_netlink_write_errors_total",
			"Netlink writes the kernel rejected."),
		dpLastBatch: d("evpnd_datapath_last_batch_duration_seconds",
			"How long the last flushed batch of kernel writes took."),
		dpEntries: d("evpnd_datapath_entries",
			"Kernel entries the datapath holds by kind: remote_fdb, remote_flood, remote_neigh, remote_routes, router_macs, local_learned.",
			"kind"),
	}
	for _, s := range scrapeSources {
		c.scrapeErrors.WithLabelValues(s)
	}
	return c
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	c.scrapeErrors.Describe(ch)
	for _, d := range []*prometheus.Desc{
		c.buildInfo,
		c.peerState, c.peerUp, c.peerUptime, c.peerReceived, c.peerAccepted, c.peerAdvertised,
		c.evpnRoutes, c.fdbEntries, c.neighbors,
		c.rulePackets, c.ruleBytes,
		c.dpBatches, c.dpWrites, c.dpWriteErrors, c.dpLastBatch, c.dpEntries,
	} {
		ch <- d
	}
}

// snapshot is what one scrape read from the Source.
type snapshot struct {
	peers     []bgp.Peer
	routes    []evpn.Route
	macs      []fabric.MAC
	neighbors map[string][2]int
	counters  []policy.Counter
	failed    map[string]error
}

// read calls the Source concurrently under one deadline, so one slow
// source cannot use up the scrape's time for the others.
func (c *collector) read() snapshot {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()

	var (
		s  = snapshot{failed: map[string]error{}}
		mu sync.Mutex
		wg sync.WaitGroup
	)
	fail := func(source string, err error) {
		if err == nil {
			return
		}
		mu.Lock()
		s.failed[source] = err
		mu.Unlock()
	}
	wg.Add(5)
	go func() {
		defer wg.Done()
		var err error
		s.peers, err = c.src.Peers(ctx)
		fail(sourcePeers, err)
	}()
	go func() {
		defer wg.Done()
		var err error
		s.routes, err = c.src.Routes(ctx)
		fail(sourceRoutes, err)
	}()
	go func() {
		defer wg.Done()
		var err error
		s.macs, err = c.src.MACs(ctx)
		fail(sourceMACs, err)
	}()
	go func() {
		defer wg.Done()
		var err error
		s.neighbors, err = c.src.NeighborCounts(ctx)
		fail(sourceNeighbors, err)
	}()
	go func() {
		defer wg.Done()
		var err error
		s.counters, err = c.src.PolicyCounters(ctx)
		fail(sourcePolicyCounters, err)
	}()
	wg.Wait()
	return s
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.buildInfo, prometheus.GaugeValue, 1, c.version, runtime.Version())

	s := c.read()
	for _, src := range scrapeSources {
		if err := s.failed[src]; err != nil {
			c.scrapeErrors.WithLabelValues(src).Inc()
			c.log.Warn("metrics scrape: read daemon state", "source", src, "err", err)
		}
	}
	c.scrapeErrors.Collect(ch)

	if s.failed[sourcePeers] == nil {
		c.collectPeers(ch, s.peers)
	}
	if s.failed[sourceRoutes] == nil {
		c.collectRoutes(ch, s.routes)
	}
	if s.failed[sourceMACs] == nil {
		c.collectMACs(ch, s.macs)
	}
	if s.failed[sourceNeighbors] == nil {
		for tenant, n := range s.neighbors {
			ch <- prometheus.MustNewConstMetric(c.neighbors, prometheus.GaugeValue, float64(n[0]), tenant, "local")
			ch <- prometheus.MustNewConstMetric(c.neighbors, prometheus.GaugeValue, float64(n[1]), tenant, "remote")
		}
	}
	if s.failed[sourcePolicyCounters] == nil {
		c.collectCounters(ch, s.counters)
	}
	c.collectDatapath(ch, c.src.DatapathStats())
}

func (c *collector) collectPeers(ch chan<- prometheus.Metric, peers []bgp.Peer) {
	for _, p := range peers {
		addr := p.Address.String()
		state := peerStates[p.State] // unknown states read as 0
		up := 0.0
		if p.State == "established" {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.peerState, prometheus.GaugeValue, state,
			addr, strconv.FormatUint(uint64(p.ASN), 10), p.Description)
		ch <- prometheus.MustNewConstMetric(c.peerUp, prometheus.GaugeValue, up, addr)
		ch <- prometheus.MustNewConstMetric(c.peerUptime, prometheus.GaugeValue, p.Uptime.Seconds(), addr)
		ch <- prometheus.MustNewConstMetric(c.peerReceived, prometheus.GaugeValue, float64(p.Received), addr, afiSafiEVPN)
		ch <- prometheus.MustNewConstMetric(c.peerAccepted, prometheus.GaugeValue, float64(p.Accepted), addr, afiSafiEVPN)
		ch <- prometheus.MustNewConstMetric(c.peerAdvertised, prometheus.GaugeValue, float64(p.Advertised), addr, afiSafiEVPN)
	}
}

type routeKey struct {
	tenant, routeType, direction string
}

func (c *collector) collectRoutes(ch chan<- prometheus.Metric, routes []evpn.Route) {
	counts := map[routeKey]int{}
	for _, r := range routes {
		if r.Withdraw || r.NLRI == nil {
			continue
		}
		k := routeKey{routeType: routeTypeLabel(r.NLRI.Type()), direction: "advertised"}
		if r.Peer.IsValid() {
			k.direction = "received"
		}
		if vni, ok := RouteVNI(r); ok {
			k.tenant, _ = c.src.TenantOfVNI(vni)
		}
		counts[k]++
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.evpnRoutes, prometheus.GaugeValue, float64(n), k.tenant, k.routeType, k.direction)
	}
}

// RouteVNI is the VNI that places a route in a tenant: a type-2's first
// label (the L2VNI), a type-3's PMSI label (or its Ethernet tag, which
// carries the VNI in VLAN-aware bundles), a type-5's label (the L3VNI).
func RouteVNI(r evpn.Route) (evpn.VNI, bool) {
	var vni evpn.VNI
	switch n := r.NLRI.(type) {
	case *evpn.MACIP:
		if len(n.Labels) > 0 {
			vni = n.Labels[0]
		}
	case *evpn.IMET:
		if r.PMSI != nil {
			vni = r.PMSI.Label
		}
		if vni == 0 {
			vni = evpn.VNI(n.EthTag)
		}
	case *evpn.Prefix:
		vni = n.Label
	}
	return vni, vni.Valid()
}

func routeTypeLabel(t evpn.RouteType) string {
	switch t {
	case evpn.TypeMACIP:
		return "mac_ip"
	case evpn.TypeIMET:
		return "inclusive_multicast"
	case evpn.TypePrefix:
		return "ip_prefix"
	}
	return fmt.Sprintf("type_%d", uint8(t))
}

func (c *collector) collectMACs(ch chan<- prometheus.Metric, macs []fabric.MAC) {
	// Both origins are reported for every tenant seen, so "no remote MACs"
	// is a 0 sample rather than a missing series.
	counts := map[string]*[2]int{}
	for _, m := range macs {
		n := counts[m.Tenant]
		if n == nil {
			n = new([2]int)
			counts[m.Tenant] = n
		}
		if m.Remote {
			n[1]++
		} else {
			n[0]++
		}
	}
	for tenant, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.fdbEntries, prometheus.GaugeValue, float64(n[0]), tenant, "local")
		ch <- prometheus.MustNewConstMetric(c.fdbEntries, prometheus.GaugeValue, float64(n[1]), tenant, "remote")
	}
}

func (c *collector) collectCounters(ch chan<- prometheus.Metric, counters []policy.Counter) {
	type key struct{ tenant, rule string }
	// Two counters with one tenant and rule name would make the registry
	// reject the whole scrape; sum them instead.
	sums := map[key]*[2]uint64{}
	for _, pc := range counters {
		k := key{pc.Tenant, pc.Rule}
		s := sums[k]
		if s == nil {
			s = new([2]uint64)
			sums[k] = s
		}
		s[0] += pc.Packets
		s[1] += pc.Bytes
	}
	for k, s := range sums {
		ch <- prometheus.MustNewConstMetric(c.rulePackets, prometheus.CounterValue, float64(s[0]), k.tenant, k.rule)
		ch <- prometheus.MustNewConstMetric(c.ruleBytes, prometheus.CounterValue, float64(s[1]), k.tenant, k.rule)
	}
}

func (c *collector) collectDatapath(ch chan<- prometheus.Metric, st fabric.Stats) {
	ch <- prometheus.MustNewConstMetric(c.dpBatches, prometheus.CounterValue, float64(st.Batches))
	ch <- prometheus.MustNewConstMetric(c.dpWrites, prometheus.CounterValue, float64(st.Writes))
	ch <- prometheus.MustNewConstMetric(c.dpWriteErrors, prometheus.CounterValue, float64(st.WriteErrors))
	ch <- prometheus.MustNewConstMetric(c.dpLastBatch, prometheus.GaugeValue, st.LastBatch.Seconds())
	for _, e := range []struct {
		kind string
		n    int
	}{
		{"remote_fdb", st.RemoteFDB},
		{"remote_flood", st.RemoteFlood},
		{"remote_neigh", st.RemoteNeigh},
		{"remote_routes", st.RemoteRoutes},
		{"router_macs", st.RouterMACs},
		{"local_learned", st.LocalLearned},
	} {
		ch <- prometheus.MustNewConstMetric(c.dpEntries, prometheus.GaugeValue, float64(e.n), e.kind)
	}
}
