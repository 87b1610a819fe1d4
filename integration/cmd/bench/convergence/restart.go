package convergence

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/evpnd/evpnd/integration/lab"
)

// Names and addresses of the restart topologies (bench-restart-*.clab.yml).
var (
	farAddr = netip.MustParseAddr("10.0.0.2")
	w1Addr  = netip.MustParseAddr("172.31.1.1")
	w2Addr  = netip.MustParseAddr("172.31.1.2")
	w2MAC   = net.HardwareAddr{0x02, 0xbe, 0x01, 0x00, 0x00, 0x02}
)

// syncedLine is what evpnd logs once it has reconciled the kernel with
// everything its peers sent.
const syncedLine = "kernel synced with control plane"

// flowInterval paces the restart benchmark's flow: 1,000 datagrams a
// second in each direction, so a lost datagram is about a lost
// millisecond.
const flowInterval = time.Millisecond

// RestartMode is one way of restarting the DUT.
type RestartMode string

// The restarts B6 measures.
const (
	RestartTerm RestartMode = "sigterm" // stop (SIGTERM), then start
	RestartKill RestartMode = "sigkill" // crash (SIGKILL), then start
)

// RestartModes is every restart, in the order they run.
var RestartModes = []RestartMode{RestartTerm, RestartKill}

// Restart is one restart of the DUT holding Routes remote routes.
type Restart struct {
	Mode RestartMode `json:"mode"`
	// Reconcile is from starting the DUT again until it has reconciled:
	// for evpnd the log says "kernel synced with control plane" and every
	// injected MAC is in the FDB; for FRR bgpd holds the injector's
	// routes again and every MAC is in the FDB.
	Reconcile time.Duration `json:"reconcile_ns"`
	// Down is how long the DUT was stopped (stop until started again,
	// including the injector's reset of its side of the session).
	Down time.Duration `json:"down_ns"`
	// Sent and Lost count the flow's datagrams in both directions from a
	// second before the stop until a second after reconciliation.
	Sent uint64 `json:"sent"`
	Lost uint64 `json:"lost"`
}

// RestartResult is B6 for one DUT.
type RestartResult struct {
	DUT      DUT       `json:"dut"`
	Routes   int       `json:"routes"`
	Restarts []Restart `json:"restarts"`
	LabID    string    `json:"lab_id"`
}

// RunRestart brings up a DUT holding routes remote routes with a flow
// through it, restarts it in every RestartMode and tears the lab down.
func RunRestart(ctx context.Context, dut DUT, routes int, opts Options) (res RestartResult, err error) {
	res = RestartResult{DUT: dut, Routes: routes}
	if routes < 1 || routes > maxRoutes {
		return res, fmt.Errorf("routes: %d is out of range 1..%d", routes, maxRoutes)
	}
	err = inLab(ctx, dut, "bench-restart-"+string(dut)+".clab.yml", opts, &res.LabID,
		func(ctx context.Context, l *lab.Lab, argv []string, opts Options) error {
			return restart(ctx, l, dut, routes, argv, opts, &res)
		})
	if err != nil {
		return res, fmt.Errorf("%s restart, %d routes: %w", dut, routes, err)
	}
	return res, nil
}

func restart(ctx context.Context, l *lab.Lab, dut DUT, routes int, argv []string, opts Options, res *RestartResult) error {
	fdbNS := fdbNamespace(l, dut)
	counter, err := waitDUTReady(ctx, l, dut, fdbNS)
	if err != nil {
		return err
	}
	defer counter.close()
	inj, err := startInjectorNode(l, argv, opts)
	if err != nil {
		return err
	}
	defer inj.stop()
	vteps := injectedVTEPs()
	req := injectRequest{RouterID: injectorAddr, ASN: benchASN, Routes: routes, VTEPs: vteps,
		Extra: []extraMAC{{MAC: w2MAC, VTEP: farAddr}}, Passive: true}
	if err := inj.send(req); err != nil {
		return err
	}
	if _, err := inj.await(ctx, "loaded"); err != nil {
		return err
	}
	if err := inj.send(peerRequest{Peer: dutAddr, ASN: benchASN}); err != nil {
		return err
	}
	if _, err := inj.await(ctx, "established"); err != nil {
		return err
	}
	full := func(n int) bool { return n >= routes }
	progress := func(n int) { opts.Logf("lab %s: %d of %d macs in the fdb", l.ID, n, routes) }
	if err := waitCount(ctx, counter, full, progress); err != nil {
		return err
	}

	out, err := newFlow("w1->w2", l.NS("w1"), l.NS("w2"), w2Addr)
	if err != nil {
		return err
	}
	defer out.close()
	in, err := newFlow("w2->w1", l.NS("w2"), l.NS("w1"), w1Addr)
	if err != nil {
		return err
	}
	defer in.close()
	out.start(flowInterval)
	in.start(flowInterval)
	// The flow must work before a restart can lose any of it.
	err = pollCtx(ctx, 100*time.Millisecond, func() error {
		for _, f := range []*flow{out, in} {
			if s := f.sent.Load(); s < 50 || !f.received(s-10) {
				return fmt.Errorf("flow %s: datagram %d not received", f.name, s-10)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("flow through the dut: %w", err)
	}
	if dut == Evpnd {
		// evpnd logs its sync line only once the session has been quiet
		// for a while after the last route; a restart before that would
		// count this run's line as the next run's.
		err = pollCtx(ctx, 100*time.Millisecond, func() error {
			if syncedLines(l) == 0 {
				return fmt.Errorf("evpnd has not logged %q", syncedLine)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	opts.Logf("lab %s: %d routes installed, flow running", l.ID, routes)

	for _, mode := range RestartModes {
		r, err := restartOnce(ctx, l, dut, inj, mode, routes, counter, out, in)
		if err != nil {
			return fmt.Errorf("%s: %w", mode, err)
		}
		opts.Logf("lab %s: %s: reconciled %s after start, down %s, %d of %d datagrams lost",
			l.ID, mode, r.Reconcile.Round(time.Millisecond), r.Down.Round(time.Millisecond), r.Lost, r.Sent)
		res.Restarts = append(res.Restarts, r)
	}
	return nil
}

// syncedLines counts the sync lines in the DUT's evpnd log: one per run
// that reconciled.
func syncedLines(l *lab.Lab) int {
	b, _ := os.ReadFile(filepath.Join(l.NodeDir(dutNode), "evpnd.log"))
	return strings.Count(string(b), syncedLine)
}

func restartOnce(ctx context.Context, l *lab.Lab, dut DUT, inj *injector, mode RestartMode, routes int, counter *fdbCounter, out, in *flow) (Restart, error) {
	r := Restart{Mode: mode}
	syncedBefore := syncedLines(l)
	if err := pause(ctx, time.Second); err != nil {
		return r, err
	}
	outFrom, inFrom := out.sent.Load(), in.sent.Load()
	stopAt := time.Now()
	var err error
	if mode == RestartKill {
		err = l.KillDaemons(dutNode)
	} else {
		err = l.StopDaemons(dutNode)
	}
	if err != nil {
		return r, err
	}
	if err := inj.send(control{Reset: true}); err != nil {
		return r, err
	}
	if _, err := inj.await(ctx, "reset"); err != nil {
		return r, err
	}
	startAt := time.Now()
	r.Down = startAt.Sub(stopAt)
	if err := l.StartDaemons(dutNode); err != nil {
		return r, err
	}
	err = pollCtx(ctx, 20*time.Millisecond, func() error {
		if dut == Evpnd {
			if syncedLines(l) <= syncedBefore {
				return fmt.Errorf("evpnd has not logged %q since the start", syncedLine)
			}
		} else if err := frrHasRoutes(l, routes); err != nil {
			return err
		}
		n, err := counter.count()
		if err != nil {
			return err
		}
		if n < routes {
			return fmt.Errorf("%d of %d macs in the fdb", n, routes)
		}
		return nil
	})
	if err != nil {
		return r, fmt.Errorf("reconcile: %w", err)
	}
	r.Reconcile = time.Since(startAt)
	if err := pause(ctx, time.Second); err != nil {
		return r, err
	}
	outTo, inTo := out.sent.Load(), in.sent.Load()
	// Datagrams still in flight are not lost.
	if err := pause(ctx, 200*time.Millisecond); err != nil {
		return r, err
	}
	r.Sent = outTo - outFrom + inTo - inFrom
	r.Lost = out.lost(outFrom, outTo) + in.lost(inFrom, inTo)
	return r, nil
}

// frrHasRoutes checks that the FRR DUT's bgpd has an established session
// with the injector and holds at least routes prefixes from it.
func frrHasRoutes(l *lab.Lab, routes int) error {
	var sum struct {
		Peers map[string]struct {
			State  string `json:"state"`
			PfxRcd int    `json:"pfxRcd"`
		} `json:"peers"`
	}
	if err := l.VtyshJSON(dutNode, "show bgp l2vpn evpn summary json", &sum); err != nil {
		return err
	}
	p, ok := sum.Peers[injectorAddr.String()]
	if !ok || p.State != "Established" || p.PfxRcd < routes {
		return fmt.Errorf("bgpd: injector session %q with %d of %d routes", p.State, p.PfxRcd, routes)
	}
	return nil
}

// pause lets the flow run for d: the loss window around a restart.
func pause(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
