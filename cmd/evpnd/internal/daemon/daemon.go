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
	"time"

	"github.com/evpnd/evpnd/bgp"
	"github.com/evpnd/evpnd/cmd/evpnd/internal/apiserver"
	"github.com/evpnd/evpnd/cmd/evpnd/internal/config"
	"github.com/evpnd/evpnd/evpn"
	"github.com/evpnd/evpnd/fabric"
	"github.com/evpnd/evpnd/policy"
)

// Daemon is one running evpnd.
type Daemon struct {
	log     *slog.Logger
	cfg     *config.Config
	speaker bgp.Speaker
	dp      fabric.Datapath
	pol     policy.Engine
	rib     *evpn.RIB
	segs    map[evpn.VNI]evpn.Segment
	local   map[macKey]*localMAC
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

// New builds a daemon over a speaker and a datapath; Run starts them.
func New(log *slog.Logger, cfg *config.Config, sp bgp.Speaker, dp fabric.Datapath, pol policy.Engine) *Daemon {
	return &Daemon{
		log:     log,
		cfg:     cfg,
		speaker: sp,
		dp:      dp,
		pol:     pol,
		rib:     evpn.NewRIB(cfg.VTEP),
		segs:    map[evpn.VNI]evpn.Segment{},
		local:   map[macKey]*localMAC{},
	}
}

// Run brings the datapath to the configuration, starts BGP and the API,
// and runs the event loop until ctx ends. Kernel objects outlive Run, so a
// restart does not interrupt traffic.
func (d *Daemon) Run(ctx context.Context) error {
	if err := d.dp.Set(ctx, d.cfg.Fabric()); err != nil {
		// A missing port or one bad segment must not take the whole host
		// off the fabric: report, carry on with what was built.
		d.log.Error("datapath not fully reconciled", "err", err)
	}
	segs := d.cfg.Segments()
	for _, s := range segs {
		d.segs[s.VNI] = s
	}
	d.apply(ctx, d.rib.SetSegments(segs))
	l3s := d.cfg.L3()
	d.apply(ctx, d.rib.SetL3(l3s))

	if err := d.speaker.Start(ctx, d.cfg.BGP); err != nil {
		return err
	}
	defer d.speaker.Stop()

	if err := d.speaker.Advertise(ctx, d.originated(segs, l3s)); err != nil {
		d.log.Error("advertise segment and prefix routes", "err", err)
	}
	d.applyPolicies(ctx)

	api, err := d.serveAPI()
	if err != nil {
		return err
	}
	defer api.Stop()

	d.log.Info("evpnd running", "router_id", d.cfg.RouterID, "asn", d.cfg.ASN, "vtep", d.cfg.VTEP,
		"tenants", len(d.cfg.Tenants), "segments", len(segs), "api", d.cfg.APIListen)
	return d.loop(ctx)
}

// originated is what this host advertises regardless of what it learns: a
// type-3 per segment, and per routed tenant a type-5 for each gateway
// subnet (unless advertise-connected is off) and each static route.
func (d *Daemon) originated(segs []evpn.Segment, l3s []evpn.L3) []evpn.Route {
	var out []evpn.Route
	for _, s := range segs {
		out = append(out, s.IMETRoute(d.cfg.VTEP))
	}
	l3 := map[string]evpn.L3{}
	for _, l := range l3s {
		l3[l.Tenant] = l
	}
	for _, t := range d.cfg.Tenants {
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
				out = append(out, l3[t.Name].PrefixRoute(d.cfg.VTEP, p))
			}
		}
	}
	return out
}

func (d *Daemon) serveAPI() (*apiserver.Server, error) {
	l, err := apiserver.Listen(d.cfg.APIListen)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	s := apiserver.New(d, d.log.With("component", "api"))
	go func() {
		if err := s.Serve(l); err != nil && !errors.Is(err, net.ErrClosed) {
			d.log.Error("api server stopped", "err", err)
		}
	}()
	return s, nil
}

func (d *Daemon) loop(ctx context.Context) error {
	converged := d.speaker.Converged()
	events := d.speaker.Events()
	learned := d.dp.Learned()
	for {
		select {
		case <-ctx.Done():
			d.log.Info("evpnd stopping; kernel state stays in place")
			return nil
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
			d.sync(ctx)
		}
	}
}

// remote applies a batch of received routes to the RIB and the kernel.
func (d *Daemon) remote(ctx context.Context, batch []evpn.Route) {
	start := time.Now()
	diff := d.rib.Update(batch)
	d.apply(ctx, diff)
	for _, s := range d.rib.Superseded() {
		d.superseded(ctx, s)
	}
	d.log.Debug("remote routes applied", "routes", len(batch), "add", diff.Add.Len(), "del", diff.Del.Len(),
		"took", time.Since(start))
}

func (d *Daemon) apply(ctx context.Context, diff evpn.Diff) {
	if diff.Empty() {
		return
	}
	if err := d.dp.Update(ctx, diff); err != nil {
		// The next Sync repairs what a failed write left; say what failed.
		d.log.Error("kernel update incomplete", "err", err)
	}
}

// sync prunes stale remote entries once the control plane has told us
// everything: until then a restart keeps what the kernel has.
func (d *Daemon) sync(ctx context.Context) {
	want := d.rib.Intents()
	if err := d.dp.Sync(ctx, want); err != nil {
		d.log.Error("kernel sync incomplete", "err", err)
	} else {
		d.log.Info("kernel synced with control plane", "fdb", len(want.FDB), "flood", len(want.Flood), "neigh", len(want.Neigh))
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
}

// Peers implements apiserver.Backend.
func (d *Daemon) Peers(ctx context.Context) ([]bgp.Peer, error) { return d.speaker.Peers(ctx) }

// Routes implements apiserver.Backend: the BGP RIB's best paths, local
// and received.
func (d *Daemon) Routes(ctx context.Context) ([]evpn.Route, error) { return d.speaker.Routes(ctx) }

// MACs implements apiserver.Backend.
func (d *Daemon) MACs(ctx context.Context) ([]fabric.MAC, error) { return d.dp.MACs(ctx) }

// TenantRoutes implements apiserver.Backend.
func (d *Daemon) TenantRoutes(ctx context.Context) ([]fabric.Route, error) { return d.dp.Routes(ctx) }
