// Package daemon owns the wiring of one evpnd process: it connects the BGP
// speaker, the EVPN RIB and the kernel datapath in one event loop, turns
// locally learned MACs into advertised routes and received routes into
// kernel intents, and serves the API. It holds no protocol or kernel logic
// of its own.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/evpnd/evpnd/bgp"
	"github.com/evpnd/evpnd/cmd/evpnd/internal/apiserver"
	"github.com/evpnd/evpnd/cmd/evpnd/internal/config"
	"github.com/evpnd/evpnd/cmd/evpnd/internal/metrics"
	"github.com/evpnd/evpnd/cmd/evpnd/internal/sdnotify"
	"github.com/evpnd/evpnd/cmd/evpnd/internal/store"
	"github.com/evpnd/evpnd/evpn"
	"github.com/evpnd/evpnd/fabric"
	"github.com/evpnd/evpnd/policy"
)

// Daemon is one running evpnd.
type Daemon struct {
	log     *slog.Logger
	speaker bgp.Speaker
	dp      fabric.Datapath
	pol     policy.Engine
	rib     *evpn.RIB
	segs    map[evpn.VNI]evpn.Segment
	local   map[macKey]*localMAC
	hub     *apiserver.Hub
	metrics *metrics.Registry
	version string
	// tenantOf maps every L2 and L3 VNI to its tenant, for the metrics
	// scrape, which runs outside the loop.
	tenantOf atomic.Pointer[map[evpn.VNI]string]
	store    *store.Store
	source   string
	reload   func() (config.File, error)
	// repairEvery is how often kernel and nftables state is checked
	// against the desired state; 0 never.
	repairEvery time.Duration
	synced      bool // the first sync after convergence ran
	// snapshots carries a kernel snapshot (the first sync's or a
	// repair's) back to the loop; snapshotting says one is being taken.
	snapshots    chan snapshotResult
	snapshotting bool
	// stopSnapshot ends the last snapshot taken (a no-op once its
	// result is in); yields says the one being taken gives way to remote
	// writes (see snapshotGate).
	stopSnapshot context.CancelCauseFunc
	yields       bool
	// gate holds a repair's snapshot back while remote changes are being
	// written; retry asks it again then (nil when nothing waits).
	gate  snapshotGate
	retry <-chan time.Time
	// frozenLocal are local MACs not advertised because they are frozen
	// as duplicates elsewhere; clearing one replays its facts.
	frozenLocal  map[macKey][]fabric.Learned
	frozenWarned map[macKey]bool // said once per freeze
	// requests runs API changes in the event loop, so they are ordered
	// with the events they affect.
	requests chan request

	// mu guards the configuration below: the loop writes it, API calls
	// read it. Code in the loop reads it without the lock.
	mu     sync.RWMutex
	file   config.File       // as the config file declares it
	api    config.APIObjects // created through the API, as stored
	merged config.File       // file + api
	place  config.Placement
	cfg    *config.Config // merged, validated
	loaded time.Time      // when the config file was (re)loaded
}

type macKey struct {
	vni evpn.VNI
	mac [6]byte
}

// localMAC is a MAC learned on a local port and what evpnd advertises
// for it.
type localMAC struct {
	tenant string
	port   string
	seq    uint32
	ips    map[netip.Addr]bool
}

// Options are what a Daemon is built from.
type Options struct {
	Log *slog.Logger
	// Source names the config file in messages; File is what it declares.
	Source string
	File   config.File
	// Reload reads the config file again (SIGHUP).
	Reload func() (config.File, error)
	// RepairInterval is how often evpnd puts back kernel and nftables
	// state changed behind its back; 0 never.
	RepairInterval time.Duration
	Store          *store.Store
	Version        string
	Speaker        bgp.Speaker
	Datapath       fabric.Datapath
	Policy         policy.Engine
}

// New builds a daemon; Run starts it. The config file and the objects kept
// in the store are validated together: a store the file contradicts (a
// tenant declared in both, a segment whose tenant the file dropped) is an
// error naming each problem, and nothing starts.
func New(o Options) (*Daemon, error) {
	d := &Daemon{
		log:         o.Log,
		speaker:     o.Speaker,
		dp:          o.Datapath,
		pol:         o.Policy,
		segs:        map[evpn.VNI]evpn.Segment{},
		local:       map[macKey]*localMAC{},
		hub:         apiserver.NewHub(),
		store:       o.Store,
		version:     o.Version,
		source:      o.Source,
		reload:      o.Reload,
		repairEvery: o.RepairInterval,
		snapshots:   make(chan snapshotResult, 1),
		requests:    make(chan request),
		file:        o.File,
		loaded:      time.Now(),
	}
	api := config.APIObjects(o.Store.State())
	merged, place, cfg, err := d.validate(o.File, api)
	if err != nil {
		return nil, err
	}
	d.api, d.merged, d.place, d.cfg = api, merged, place, cfg
	d.rib = evpn.NewRIB(cfg.VTEP)
	d.rib.SetDupDetection(evpn.DupDetection{MaxMoves: cfg.DupMaxMoves, Window: cfg.DupWindow})
	d.frozenLocal = map[macKey][]fabric.Learned{}
	d.frozenWarned = map[macKey]bool{}
	d.metrics = metrics.New(d, o.Version, metrics.WithLogger(o.Log.With("component", "metrics")))
	return d, nil
}

// validate merges the file and the API objects and checks the result.
func (d *Daemon) validate(f config.File, api config.APIObjects) (config.File, config.Placement, *config.Config, error) {
	merged, place, probs := config.Merge(f, api)
	cfg, vprobs := merged.Validate()
	probs = append(probs, vprobs...)
	if len(probs) > 0 {
		slices.Sort(probs)
		return merged, place, nil, &config.Error{Source: d.source + " with " + d.store.Path(), Problems: slices.Compact(probs)}
	}
	return merged, place, cfg, nil
}

// ErrRestart, as the cause of Run's context, stops evpnd for a restart:
// BGP peers keep its routes (graceful restart) instead of withdrawing them.
var ErrRestart = errors.New("stopping for a restart")

// Run brings the datapath to the configuration, starts BGP and the API,
// and runs the event loop until ctx ends. Kernel objects outlive Run, so a
// restart does not interrupt traffic.
func (d *Daemon) Run(ctx context.Context) error {
	// SIGHUP is caught from the start: before the loop runs, a reload
	// waits for it instead of killing evpnd (the signal's default).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg := d.cfg
	d.setDatapath(ctx, cfg)
	if err := d.speaker.Start(ctx, cfg.BGP); err != nil {
		return err
	}
	defer func() {
		// A stop for a restart leaves peers holding this host's routes;
		// any other end of Run withdraws them.
		if errors.Is(context.Cause(ctx), ErrRestart) {
			d.speaker.StopForRestart()
			return
		}
		d.speaker.Stop()
	}()
	d.reannounce(ctx, nil, d.originated(cfg))
	d.reconcilePolicies(ctx, &config.Config{}, cfg)

	api, err := d.serveAPI()
	if err != nil {
		return err
	}
	defer api.Stop()
	if cfg.MetricsListen != "" {
		addr, err := d.metrics.Serve(ctx, cfg.MetricsListen)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		d.log.Info("metrics served", "addr", "http://"+addr.String()+"/metrics")
	}

	d.log.Info("evpnd running", "router_id", cfg.RouterID, "asn", cfg.ASN, "vtep", cfg.VTEP,
		"tenants", len(cfg.Tenants), "segments", len(d.segs), "api", cfg.APIListen, "state", d.store.Path())
	if _, err := sdnotify.Notify("READY=1\nSTATUS=running"); err != nil {
		d.log.Warn("systemd notify", "err", err)
	}
	defer func() { _ = sdnotify.Stopping() }()
	return d.loop(ctx, hup)
}

// originated is what this host advertises regardless of what it learns: a
// type-3 per segment, and per routed tenant a type-5 for each gateway
// subnet (unless advertise-connected is off) and each static route.
func (d *Daemon) originated(cfg *config.Config) []evpn.Route {
	var out []evpn.Route
	for _, s := range cfg.Segments() {
		out = append(out, s.IMETRoute(cfg.VTEP))
	}
	l3 := map[string]evpn.L3{}
	for _, l := range cfg.L3() {
		l3[l.Tenant] = l
	}
	for _, t := range cfg.Tenants {
		if t.L3 == nil {
			continue
		}
		seen := map[netip.Prefix]bool{}
		var prefixes []netip.Prefix
		if t.L3.AdvertiseConnected {
			for _, s := range t.Segments {
				for _, g := range s.Gateways {
					prefixes = append(prefixes, g.Masked())
				}
			}
		}
		for _, r := range t.L3.Routes {
			prefixes = append(prefixes, r.Prefix)
		}
		for _, p := range prefixes {
			if !seen[p] {
				seen[p] = true
				out = append(out, l3[t.Name].PrefixRoute(cfg.VTEP, p))
			}
		}
	}
	return out
}

func (d *Daemon) serveAPI() (*apiserver.Server, error) {
	var files *apiserver.TLSFiles
	if t := d.cfg.APITLS; t != (config.APITLS{}) {
		files = &apiserver.TLSFiles{Cert: t.Cert, Key: t.Key, ClientCA: t.ClientCA}
	}
	ep, err := apiserver.Open(d.cfg.APIListen, files)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	opts := append(ep.Options,
		grpc.ChainUnaryInterceptor(d.metrics.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(d.metrics.StreamServerInterceptor()))
	s := apiserver.New(d, d.log.With("component", "api"), opts...)
	l := ep.Listener
	go func() {
		if err := s.Serve(l); err != nil && !errors.Is(err, net.ErrClosed) {
			d.log.Error("api server stopped", "err", err)
		}
	}()
	return s, nil
}

func (d *Daemon) loop(ctx context.Context, hup <-chan os.Signal) error {
	converged := d.speaker.Converged()
	events := d.speaker.Events()
	learned := d.dp.Learned()
	peers := d.speaker.PeerEvents()
	var repair <-chan time.Time
	if d.repairEvery > 0 {
		t := time.NewTicker(d.repairEvery)
		defer t.Stop()
		repair = t.C
	}
	// After a restart the kernel holds the last run's remote entries, and
	// the first sync prunes them against a snapshot. Its dumps take
	// seconds at 100k MACs; taken now, they overlap the sessions coming up
	// and the ingest instead of following convergence. Entries Update
	// writes meanwhile cost a redundant write at most (see
	// fabric.Linux.SyncWith), and a Set meanwhile makes it stale, so
	// firstSync takes another. early holds it until convergence.
	var early *snapshotResult
	if d.dp.Adopted() {
		d.takeSnapshot(ctx, false)
	}
	for {
		select {
		case <-ctx.Done():
			d.log.Info("evpnd stopping; kernel state stays in place", "restart", errors.Is(context.Cause(ctx), ErrRestart))
			return nil
		case r := <-d.requests:
			r.run(ctx)
			close(r.done)
		case <-hup:
			d.reloadConfig(ctx)
		case <-repair:
			d.repair(ctx)
		case <-d.retry:
			d.retry = nil
			d.repairSnapshot(ctx)
		case r := <-d.snapshots:
			d.snapshotting, d.yields = false, false
			d.stopSnapshot(nil)
			switch {
			case d.synced:
				d.repairRemote(ctx, r)
			case converged != nil:
				early = &r
			default:
				d.firstSync(ctx, r)
			}
		case p := <-peers:
			d.hub.Publish(apiserver.Event{Peer: &p})
		case batch, ok := <-events:
			if !ok {
				return errors.New("bgp event stream ended")
			}
			d.remote(ctx, batch)
		case l, ok := <-learned:
			if !ok {
				return errors.New("datapath learning stream ended")
			}
			d.learn(ctx, l)
		case <-converged:
			converged = nil
			// Routes received before convergence may still wait in events;
			// pruning before applying them would delete and re-add their
			// kernel entries.
			if err := d.drainEvents(ctx, events); err != nil {
				return err
			}
			// The prune syncs against a snapshot, taken off the loop, so
			// withdrawals that arrive meanwhile (a peer lost just after an
			// ingest) are applied at once rather than after the dumps.
			// With nothing adopted from an earlier run there is nothing
			// to prune.
			switch {
			case !d.dp.Adopted():
				d.synced = true
				d.metrics.ReconcileDone("sync", nil)
				d.log.Info("kernel synced with control plane", "adopted", false)
			case early != nil:
				r := *early
				early = nil
				d.firstSync(ctx, r)
			case d.snapshotting:
				// The early snapshot is on its way; firstSync runs when
				// it arrives.
			default:
				d.takeSnapshot(ctx, false)
			}
		}
	}
}

// drainEvents applies every batch already waiting in events.
func (d *Daemon) drainEvents(ctx context.Context, events <-chan []evpn.Route) error {
	for {
		select {
		case batch, ok := <-events:
			if !ok {
				return errors.New("bgp event stream ended")
			}
			d.remote(ctx, batch)
		default:
			return nil
		}
	}
}

// remote applies a batch of received routes to the RIB and the kernel.
func (d *Daemon) remote(ctx context.Context, batch []evpn.Route) {
	start := time.Now()
	if d.hub.Watching() {
		evs := make([]apiserver.Event, len(batch))
		for i := range batch {
			evs[i] = apiserver.Event{Route: &batch[i], Removed: batch[i].Withdraw}
		}
		d.hub.Publish(evs...)
	}
	diff := d.rib.Update(batch)
	d.apply(ctx, diff)
	for _, s := range d.rib.Superseded() {
		d.superseded(ctx, s)
	}
	d.log.Debug("remote routes applied", "routes", len(batch), "add", diff.Add.Len(), "del", diff.Del.Len(),
		"took", time.Since(start))
}

func (d *Daemon) apply(ctx context.Context, diff evpn.Diff) {
	d.noteDuplicates()
	if diff.Empty() {
		return
	}
	d.publishFDB(diff)
	d.gate.wrote(time.Now())
	if d.yields {
		d.yields = false
		d.stopSnapshot(errYield)
	}
	err := d.dp.Update(ctx, diff)
	d.metrics.ReconcileDone("update", err)
	if err != nil {
		// The next Sync repairs what a failed write left; say what failed.
		d.log.Error("kernel update incomplete", "err", err)
	}
}

// takeSnapshot dumps the kernel's remote entries outside the loop; the
// result comes back on d.snapshots. One that yields is stopped by the
// next remote write.
func (d *Daemon) takeSnapshot(ctx context.Context, yields bool) {
	d.snapshotting = true
	sctx, stop := context.WithCancelCause(ctx)
	d.stopSnapshot, d.yields = stop, yields
	go func() {
		snap, err := d.dp.Snapshot(sctx)
		d.snapshots <- snapshotResult{snap: snap, err: err}
	}()
}

// errYield stops a repair's snapshot when remote writes resume.
var errYield = errors.New("remote routes are being written")

// firstSync prunes stale remote entries once the control plane has told
// us everything (until then a restart keeps what the kernel has), against
// the snapshot taken when it converged. A snapshot that a Set made stale
// is taken again; one that failed gives way to fresh dumps on the loop.
func (d *Daemon) firstSync(ctx context.Context, r snapshotResult) {
	want := d.rib.Intents()
	var err error
	if r.snap != nil && r.err == nil {
		err = d.dp.SyncWith(ctx, want, r.snap)
		if errors.Is(err, fabric.ErrStaleSnapshot) {
			d.takeSnapshot(ctx, false)
			return
		}
	} else {
		d.log.Warn("kernel snapshot incomplete; syncing from fresh dumps", "err", r.err)
		err = d.dp.Sync(ctx, want)
	}
	d.synced = true
	d.metrics.ReconcileDone("sync", err)
	if err != nil {
		d.log.Error("kernel sync incomplete", "err", err)
	} else {
		d.log.Info("kernel synced with control plane", "fdb", len(want.FDB), "flood", len(want.Flood), "neigh", len(want.Neigh))
	}
}

// repair puts back what was changed behind evpnd's back: devices, ports
// and addresses (Set), remote FDB, flood, neighbor and route entries (a
// sync against a snapshot, once the control plane has converged: before
// that the RIB is not complete), and policy tables. Objects that are not
// evpnd's are never touched: Set and Sync only change what evpnd tagged,
// Repair only evpnd's tables. The snapshot's dumps run outside the loop:
// they take the kernel seconds at 100k entries, and routes keep being
// applied meanwhile.
func (d *Daemon) repair(ctx context.Context) {
	before := d.dp.Stats().Writes
	err := d.dp.Set(ctx, d.cfg.Fabric())
	d.metrics.ReconcileDone("set", err)
	if err != nil {
		d.log.Error("repair: datapath not fully reconciled", "err", err)
	}
	if n := d.dp.Stats().Writes - before; n > 0 {
		d.log.Warn("kernel state changed outside evpnd was repaired", "writes", n)
	}
	d.repairSnapshot(ctx)
	tenants, err := d.pol.Repair(ctx)
	if len(tenants) > 0 || err != nil {
		d.metrics.ReconcileDone("policy", err)
	}
	if err != nil {
		d.log.Error("repair: policy", "err", err)
	}
	for _, t := range tenants {
		d.restorePortAddresses(ctx, t)
	}
}

// repairSnapshot takes the snapshot a repair syncs the remote entries
// against (repairRemote), once the control plane has converged and when
// the gate lets it; otherwise it asks again after repairQuiet.
func (d *Daemon) repairSnapshot(ctx context.Context) {
	if !d.synced || d.snapshotting || d.retry != nil {
		return
	}
	take, yields := d.gate.due(time.Now(), d.repairEvery)
	if !take {
		d.log.Debug("repair: remote routes are being written; snapshot deferred", "quiet_for", repairQuiet)
		d.retry = time.After(repairQuiet)
		return
	}
	d.takeSnapshot(ctx, yields)
}

// repairQuiet is how long the datapath must go without remote changes
// before a repair snapshots it.
const repairQuiet = 3 * time.Second

// snapshotGate decides when a repair may snapshot the kernel. The
// snapshot dumps every tenant's FDB, which costs the kernel seconds at
// 100k entries and grows with the square of the table (a dump walks the
// table again for every message it fills); taken while remote routes are
// still being written (an ingest, a peer's routes withdrawn), it competes
// with them for the CPU, and the sync against it then redoes what Update
// did meanwhile. So a repair's snapshot waits until no remote change was
// written for repairQuiet, and one taken in such a quiet moment yields:
// the next remote write stops it (at 250k entries a dump takes the kernel
// longer than many a pause between bursts), and it is wanted again. Drift
// is still repaired under changes that never stop: a snapshot waits for a
// quiet moment no longer than two repair intervals, and yields no longer
// than one interval after it first did; then it is taken to the end. (Two:
// a burst as long as one interval, 250k routes arriving, is followed by a
// quiet moment, and a snapshot taken in it still yields to the next.)
type snapshotGate struct {
	lastWrite time.Time // the last remote change written
	waiting   time.Time // since when a snapshot is wanted; zero when none
	yielded   time.Time // when it first yielded; zero when it did not
}

// wrote records a remote change written to the datapath at now.
func (g *snapshotGate) wrote(now time.Time) { g.lastWrite = now }

// due reports whether a snapshot wanted at now may be taken, and whether
// it yields to remote writes. The wait for one starts at the first call
// and ends with taken.
func (g *snapshotGate) due(now time.Time, interval time.Duration) (take, yields bool) {
	if g.waiting.IsZero() {
		g.waiting = now
	}
	quiet := now.Sub(g.lastWrite) >= repairQuiet
	yields = quiet && (g.yielded.IsZero() || now.Sub(g.yielded) < interval)
	return quiet || now.Sub(g.waiting) >= 2*interval, yields
}

// yield records that a snapshot gave way to a remote write at now.
func (g *snapshotGate) yield(now time.Time) {
	if g.yielded.IsZero() {
		g.yielded = now
	}
}

// taken ends the wait: a repair's snapshot was taken to the end.
func (g *snapshotGate) taken() { g.waiting, g.yielded = time.Time{}, time.Time{} }

// snapshotResult is what a repair's snapshot goroutine hands the loop.
type snapshotResult struct {
	snap *fabric.Snapshot
	err  error
}

// repairRemote syncs the remote entries against a repair's snapshot.
// One that yielded to remote writes is wanted again once they pause.
func (d *Daemon) repairRemote(ctx context.Context, r snapshotResult) {
	if errors.Is(r.err, errYield) {
		d.gate.yield(time.Now())
		d.log.Debug("repair: snapshot stopped, remote routes are being written", "quiet_for", repairQuiet)
		d.retry = time.After(repairQuiet)
		return
	}
	d.gate.taken()
	if r.err != nil {
		d.log.Error("repair: kernel snapshot incomplete", "err", r.err)
	}
	if r.snap == nil {
		d.metrics.ReconcileDone("sync", r.err)
		return
	}
	before := d.dp.Stats().Writes
	err := d.dp.SyncWith(ctx, d.rib.Intents(), r.snap)
	if errors.Is(err, fabric.ErrStaleSnapshot) {
		d.log.Debug("repair: the datapath changed during the snapshot; next pass")
		return
	}
	d.metrics.ReconcileDone("sync", errors.Join(r.err, err))
	if err != nil {
		d.log.Error("repair: kernel sync incomplete", "err", err)
	}
	if n := d.dp.Stats().Writes - before; n > 0 {
		d.log.Warn("kernel state changed outside evpnd was repaired", "writes", n, "snapshot_took", r.snap.Took())
	}
}

// learn turns a local fact into advertisements.
func (d *Daemon) learn(ctx context.Context, l fabric.Learned) {
	seg, ok := d.segs[l.VNI]
	if !ok || len(l.MAC) != 6 {
		return
	}
	k := macKey{vni: l.VNI, mac: [6]byte(l.MAC)}
	lm := d.local[k]
	log := d.log.With("tenant", l.Tenant, "vni", l.VNI, "mac", l.MAC.String())
	if lm == nil && !d.rib.LocalAllowed(l.VNI, l.MAC) {
		// Frozen as a duplicate at a remote VTEP: advertising it here
		// would be one more move. Keep the fact for when it is cleared.
		if l.Gone {
			delete(d.frozenLocal, k)
		} else {
			if !d.frozenWarned[k] {
				d.frozenWarned[k] = true
				log.Warn("duplicate mac seen locally; not advertised until cleared", "port", l.Port)
			}
			d.frozenLocal[k] = append(d.frozenLocal[k], l)
		}
		return
	}
	if l.Gone {
		if lm == nil {
			return
		}
		if l.IP.IsValid() {
			if lm.ips[l.IP] {
				delete(lm.ips, l.IP)
				d.advertise(ctx, seg.MACIPRoute(d.cfg.VTEP, l.MAC, l.IP, lm.seq), true)
				d.portAddressesChanged(ctx, lm.tenant, lm.port)
				log.Info("local ip gone", "ip", l.IP)
			}
			return
		}
		d.forget(ctx, seg, k, lm)
		log.Info("local mac gone", "port", l.Port)
		return
	}
	if lm == nil {
		seq, diff := d.rib.Local(l.VNI, l.MAC, true)
		d.apply(ctx, diff)
		lm = &localMAC{tenant: l.Tenant, port: l.Port, seq: seq, ips: map[netip.Addr]bool{}}
		d.local[k] = lm
		d.advertise(ctx, seg.MACIPRoute(d.cfg.VTEP, l.MAC, netip.Addr{}, seq), false)
		d.hub.Publish(apiserver.Event{MAC: &fabric.MAC{Tenant: l.Tenant, VNI: l.VNI, MAC: l.MAC, Port: l.Port}})
		log.Info("local mac learned", "port", l.Port, "seq", seq)
	}
	if !l.IP.IsValid() && l.Port != "" && l.Port != lm.port {
		// Only a MAC fact names the port. After a restart the neighbor of
		// a MAC can be reported before its FDB entry, so the port arrives
		// here; a MAC that moved between local ports arrives here too. The
		// policy engine's per-port addresses follow.
		old := lm.port
		lm.port = l.Port
		if len(lm.ips) > 0 {
			d.portAddressesChanged(ctx, lm.tenant, old)
			d.portAddressesChanged(ctx, lm.tenant, lm.port)
		}
		log.Info("local mac on port", "port", l.Port, "was", old)
	}
	if l.IP.IsValid() && !lm.ips[l.IP] {
		lm.ips[l.IP] = true
		d.advertise(ctx, seg.MACIPRoute(d.cfg.VTEP, l.MAC, l.IP, lm.seq), false)
		d.portAddressesChanged(ctx, lm.tenant, lm.port)
		log.Info("local ip learned", "ip", l.IP, "seq", lm.seq)
	}
}

// forget withdraws every route of a local MAC.
func (d *Daemon) forget(ctx context.Context, seg evpn.Segment, k macKey, lm *localMAC) {
	mac := net.HardwareAddr(k.mac[:])
	routes := []evpn.Route{seg.MACIPRoute(d.cfg.VTEP, mac, netip.Addr{}, lm.seq)}
	for ip := range lm.ips {
		routes = append(routes, seg.MACIPRoute(d.cfg.VTEP, mac, ip, lm.seq))
	}
	for i := range routes {
		routes[i].Withdraw = true
	}
	if err := d.speaker.Advertise(ctx, routes); err != nil {
		d.log.Error("withdraw local mac", "vni", k.vni, "mac", mac.String(), "err", err)
	}
	d.publishRoutes(routes)
	d.hub.Publish(apiserver.Event{Removed: true, MAC: &fabric.MAC{Tenant: lm.tenant, VNI: k.vni, MAC: mac, Port: lm.port}})
	delete(d.local, k)
	if len(lm.ips) > 0 {
		d.portAddressesChanged(ctx, lm.tenant, lm.port)
	}
	_, diff := d.rib.Local(k.vni, mac, false)
	d.apply(ctx, diff)
}

// superseded handles a local MAC that moved away: a remote route with a
// higher sequence number now owns it (RFC 7432 s15).
func (d *Daemon) superseded(ctx context.Context, s evpn.LocalMAC) {
	seg, ok := d.segs[s.VNI]
	if !ok || len(s.MAC) != 6 {
		return
	}
	k := macKey{vni: s.VNI, mac: [6]byte(s.MAC)}
	lm := d.local[k]
	if lm == nil {
		return
	}
	d.log.Info("local mac moved away", "vni", s.VNI, "mac", s.MAC.String(), "seq", s.Seq, "remote_seq", s.RemoteSeq)
	d.forget(ctx, seg, k, lm)
}

func (d *Daemon) advertise(ctx context.Context, r evpn.Route, withdraw bool) {
	r.Withdraw = withdraw
	if err := d.speaker.Advertise(ctx, []evpn.Route{r}); err != nil {
		d.log.Error("advertise", "route", r.NLRI, "withdraw", withdraw, "err", err)
	}
	d.publishRoutes([]evpn.Route{r})
}

// Peers implements apiserver.Backend.
func (d *Daemon) Peers(ctx context.Context) ([]bgp.Peer, error) { return d.speaker.Peers(ctx) }

// Routes implements apiserver.Backend: the BGP RIB's best paths, local
// and received.
func (d *Daemon) Routes(ctx context.Context) ([]evpn.Route, error) { return d.speaker.Routes(ctx) }

// MACs implements apiserver.Backend.
func (d *Daemon) MACs(ctx context.Context) ([]fabric.MAC, error) { return d.dp.MACs(ctx) }

// NeighborCounts implements metrics.Source: per tenant, the local and
// remote neighbor entries.
func (d *Daemon) NeighborCounts(ctx context.Context) (map[string][2]int, error) {
	ns, err := d.dp.Neighbors(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string][2]int{}
	for _, n := range ns {
		c := out[n.Tenant]
		if n.Remote {
			c[1]++
		} else {
			c[0]++
		}
		out[n.Tenant] = c
	}
	return out, nil
}

// TenantOfVNI implements metrics.Source.
func (d *Daemon) TenantOfVNI(vni evpn.VNI) (string, bool) {
	m := d.tenantOf.Load()
	if m == nil {
		return "", false
	}
	t, ok := (*m)[vni]
	return t, ok
}

// DatapathStats implements metrics.Source.
func (d *Daemon) DatapathStats() fabric.Stats { return d.dp.Stats() }

// noteDuplicates logs and counts the MACs the RIB froze since last time.
func (d *Daemon) noteDuplicates() {
	dups := d.rib.NewDuplicates()
	if len(dups) == 0 {
		return
	}
	for _, dup := range dups {
		tenant := ""
		if s, ok := d.segs[dup.VNI]; ok {
			tenant = s.Tenant
		}
		d.log.Warn("duplicate mac detected and frozen (RFC 7432 s15.1); clear it with evpnctl clear duplicate-mac",
			"tenant", tenant, "vni", dup.VNI, "mac", dup.MAC.String(), "moves", dup.Moves, "vtep", dup.At)
	}
	d.metrics.DuplicatesDetected(len(dups), len(d.rib.Duplicates()))
}

// Duplicates implements apiserver.Backend.
func (d *Daemon) Duplicates(ctx context.Context) ([]apiserver.Duplicate, error) {
	var out []apiserver.Duplicate
	err := d.do(ctx, func(context.Context) {
		for _, dup := range d.rib.Duplicates() {
			a := apiserver.Duplicate{Duplicate: dup, Local: dup.At == d.cfg.VTEP}
			if s, ok := d.segs[dup.VNI]; ok {
				a.Tenant = s.Tenant
			}
			out = append(out, a)
		}
	})
	return out, err
}

// ClearDuplicate implements apiserver.Backend.
func (d *Daemon) ClearDuplicate(ctx context.Context, vni evpn.VNI, mac net.HardwareAddr) error {
	var found bool
	err := d.do(ctx, func(ctx context.Context) {
		var diff evpn.Diff
		found, diff = d.rib.ClearDuplicate(vni, mac)
		if !found {
			return
		}
		d.log.Info("duplicate mac cleared", "vni", vni, "mac", mac.String())
		d.apply(ctx, diff)
		for _, s := range d.rib.Superseded() {
			d.superseded(ctx, s)
		}
		d.metrics.DuplicatesDetected(0, len(d.rib.Duplicates()))
		k := macKey{vni: vni, mac: [6]byte(mac)}
		facts := d.frozenLocal[k]
		delete(d.frozenLocal, k)
		delete(d.frozenWarned, k)
		for _, l := range facts {
			d.learn(ctx, l)
		}
	})
	if err != nil {
		return err
	}
	if !found {
		return apiserver.Errorf(codes.NotFound, "mac %s in vni %d is not frozen as a duplicate ('evpnctl show evpn duplicates' lists them)", mac, vni)
	}
	return nil
}

// Neighbors implements apiserver.Backend.
func (d *Daemon) Neighbors(ctx context.Context) ([]fabric.Neighbor, error) {
	return d.dp.Neighbors(ctx)
}

// PolicyCounters implements apiserver.Backend.
func (d *Daemon) PolicyCounters(ctx context.Context) ([]policy.Counter, error) {
	return d.pol.Counters(ctx)
}

// Events implements apiserver.Backend.
func (d *Daemon) Events() *apiserver.Hub { return d.hub }

// TenantRoutes implements apiserver.Backend.
func (d *Daemon) TenantRoutes(ctx context.Context) ([]fabric.Route, error) { return d.dp.Routes(ctx) }
