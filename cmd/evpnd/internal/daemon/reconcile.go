package daemon

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/evpnd/evpnd/bgp"
	"github.com/evpnd/evpnd/cmd/evpnd/internal/apiserver"
	"github.com/evpnd/evpnd/cmd/evpnd/internal/config"
	"github.com/evpnd/evpnd/cmd/evpnd/internal/sdnotify"
	"github.com/evpnd/evpnd/evpn"
	"github.com/evpnd/evpnd/fabric"
)

// setDatapath brings the kernel and the RIB to cfg's tenants and segments.
// The datapath's Set is idempotent: what did not change is not touched.
func (d *Daemon) setDatapath(ctx context.Context, cfg *config.Config) {
	err := d.dp.Set(ctx, cfg.Fabric())
	d.metrics.ReconcileDone("set", err)
	if err != nil {
		// A missing port or one bad segment must not take the whole host
		// off the fabric: report, carry on with what was built.
		d.log.Error("datapath not fully reconciled", "err", err)
	}
	segs := cfg.Segments()
	d.segs = make(map[evpn.VNI]evpn.Segment, len(segs))
	tenantOf := map[evpn.VNI]string{}
	for _, s := range segs {
		d.segs[s.VNI] = s
		tenantOf[s.VNI] = s.Tenant
	}
	for _, t := range cfg.Tenants {
		if t.L3 != nil {
			tenantOf[t.L3.VNI] = t.Name
		}
	}
	d.tenantOf.Store(&tenantOf)
	l3s := cfg.L3()
	// BGP drops, before its RIB, the paths no segment or L3 imports; a
	// tenant added here gets its paths back from the peers' adj-RIB-in.
	err = d.speaker.SetImport(ctx, bgp.ImportFilterOf(segs, l3s))
	d.metrics.ReconcileDone("import", err)
	if err != nil {
		d.log.Error("bgp import filter not updated", "err", err)
	}
	d.apply(ctx, d.rib.SetSegments(segs))
	d.apply(ctx, d.rib.SetL3(l3s))
}

// reconcile moves everything from old to cfg, touching only what differs:
// kernel objects, imported routes, local MAC advertisements, originated
// routes, BGP peers and policies.
func (d *Daemon) reconcile(ctx context.Context, old, cfg *config.Config) {
	start := time.Now()
	oldSegs := d.segs
	d.setDatapath(ctx, cfg)

	for k, lm := range d.local {
		was := oldSegs[k.vni]
		now, ok := d.segs[k.vni]
		switch {
		case !ok:
			d.forget(ctx, was, k, lm)
		case !reflect.DeepEqual(was, now):
			// RD, route targets or the routed side changed: the routes
			// of the MAC change with them.
			d.readvertise(ctx, was, now, k, lm)
		}
	}

	d.reannounce(ctx, d.originated(old), d.originated(cfg))
	if !reflect.DeepEqual(old.BGP.Peers, cfg.BGP.Peers) {
		if err := d.speaker.SetPeers(ctx, cfg.BGP.Peers); err != nil {
			d.log.Error("bgp peers not updated", "err", err)
		}
	}
	d.reconcilePolicies(ctx, old, cfg)
	if old.DupMaxMoves != cfg.DupMaxMoves || old.DupWindow != cfg.DupWindow {
		d.apply(ctx, d.rib.SetDupDetection(evpn.DupDetection{MaxMoves: cfg.DupMaxMoves, Window: cfg.DupWindow}))
	}
	d.log.Info("configuration applied", "tenants", len(cfg.Tenants), "segments", len(d.segs),
		"policies", len(cfg.Policies), "took", time.Since(start))
}

// readvertise replaces a local MAC's routes built for segment was by those
// for now.
func (d *Daemon) readvertise(ctx context.Context, was, now evpn.Segment, k macKey, lm *localMAC) {
	mac := net.HardwareAddr(k.mac[:])
	var old, fresh []evpn.Route
	for _, ip := range append([]netip.Addr{{}}, lm.addrs()...) {
		r := was.MACIPRoute(d.cfg.VTEP, mac, ip, lm.seq)
		r.Withdraw = true
		old = append(old, r)
		fresh = append(fresh, now.MACIPRoute(d.cfg.VTEP, mac, ip, lm.seq))
	}
	d.reannounce(ctx, old, fresh)
}

func (lm *localMAC) addrs() []netip.Addr {
	out := make([]netip.Addr, 0, len(lm.ips))
	for ip := range lm.ips {
		out = append(out, ip)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// reannounce moves the advertised set from old to now: it withdraws the
// routes now lacks and advertises the new and changed ones.
func (d *Daemon) reannounce(ctx context.Context, old, now []evpn.Route) {
	keep := make(map[string]evpn.Route, len(now))
	for _, r := range now {
		keep[r.NLRI.Key()] = r
	}
	var out []evpn.Route
	for _, r := range old {
		if _, ok := keep[r.NLRI.Key()]; !ok {
			r.Withdraw = true
			out = append(out, r)
		}
	}
	was := make(map[string]evpn.Route, len(old))
	for _, r := range old {
		r.Withdraw = false
		was[r.NLRI.Key()] = r
	}
	for _, r := range now {
		if o, ok := was[r.NLRI.Key()]; !ok || !reflect.DeepEqual(o, r) {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return
	}
	if err := d.speaker.Advertise(ctx, out); err != nil {
		d.log.Error("advertise originated routes", "routes", len(out), "err", err)
	}
	d.publishRoutes(out)
}

// publishRoutes tells watchers about routes this host advertised or
// withdrew.
func (d *Daemon) publishRoutes(routes []evpn.Route) {
	if !d.hub.Watching() {
		return
	}
	evs := make([]apiserver.Event, len(routes))
	for i := range routes {
		r := routes[i]
		evs[i] = apiserver.Event{Route: &r, Removed: r.Withdraw}
	}
	d.hub.Publish(evs...)
}

// publishFDB tells watchers about remote MACs installed or removed.
func (d *Daemon) publishFDB(diff evpn.Diff) {
	if !d.hub.Watching() {
		return
	}
	var evs []apiserver.Event
	for _, set := range []struct {
		fdb     []evpn.FDB
		removed bool
	}{{diff.Del.FDB, true}, {diff.Add.FDB, false}} {
		for _, f := range set.fdb {
			tenant := ""
			if s, ok := d.segs[f.VNI]; ok {
				tenant = s.Tenant
			}
			evs = append(evs, apiserver.Event{Removed: set.removed, MAC: &fabric.MAC{
				Tenant: tenant, VNI: f.VNI, MAC: f.MAC, Port: fmt.Sprintf("vx%d", f.VNI), VTEP: f.VTEP, Remote: true}})
		}
	}
	d.hub.Publish(evs...)
}

// restartOnly lists the settings a reload cannot change in a running
// evpnd.
func restartOnly(old, cfg *config.Config) []string {
	var out []string
	check := func(key string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			out = append(out, fmt.Sprintf("%s: %v -> %v", key, a, b))
		}
	}
	check("router-id", old.RouterID, cfg.RouterID)
	check("asn", old.ASN, cfg.ASN)
	check("vtep-address", old.VTEP, cfg.VTEP)
	check("netns-prefix", old.NetnsPrefix, cfg.NetnsPrefix)
	check("rt-preset", old.RTPreset, cfg.RTPreset)
	check("router-mac", old.RouterMAC.String(), cfg.RouterMAC.String())
	check("bgp.listen-addresses", old.BGP.ListenAddresses, cfg.BGP.ListenAddresses)
	check("bgp.listen-port", old.BGP.ListenPort, cfg.BGP.ListenPort)
	check("graceful-restart", old.BGP.GracefulRestart, cfg.BGP.GracefulRestart)
	check("api.listen", old.APIListen, cfg.APIListen)
	check("api.tls", old.APITLS, cfg.APITLS)
	check("metrics.listen", old.MetricsListen, cfg.MetricsListen)
	check("state-dir", old.StateDir, cfg.StateDir)
	check("repair-interval", old.RepairInterval, cfg.RepairInterval)
	check("log", fmt.Sprint(old.LogLevel, old.LogFormat), fmt.Sprint(cfg.LogLevel, cfg.LogFormat))
	return out
}

// reloadConfig reads the config file again (SIGHUP) and applies the
// difference. A file that does not validate, together with the API's
// objects, changes nothing.
func (d *Daemon) reloadConfig(ctx context.Context) {
	if d.reload == nil {
		return
	}
	d.log.Info("reloading configuration", "file", d.source)
	if err := sdnotify.Reloading(); err != nil {
		d.log.Warn("systemd notify", "err", err)
	}
	defer func() { _ = sdnotify.Ready() }()
	f, err := d.reload()
	if err != nil {
		d.log.Error("configuration reload refused; the running configuration stays", "err", err)
		return
	}
	merged, place, cfg, err := d.validate(f, d.api)
	if err != nil {
		d.log.Error("configuration reload refused; the running configuration stays", "err", err)
		return
	}
	if diff := restartOnly(d.cfg, cfg); len(diff) > 0 {
		d.log.Error("configuration reload refused; the running configuration stays",
			"err", "these settings only change with a restart: "+strings.Join(diff, "; "))
		return
	}
	old := d.cfg
	d.mu.Lock()
	d.file, d.merged, d.place, d.cfg, d.loaded = f, merged, place, cfg, time.Now()
	d.mu.Unlock()
	d.reconcile(ctx, old, cfg)
	d.log.Info("configuration reloaded", "file", d.source)
}
