package convergence

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/evpnd/evpnd/integration/lab"
)

// GoBGP is B1's floor: the GoBGP library evpnd embeds, alone in the DUT's
// place. It is not one of DUTs: only the ingest suite runs it.
const GoBGP DUT = "gobgp"

// RunFloor is B1 and B2 for GoBGP alone, the floor under evpnd's figures:
// in the DUT's namespace of a lab like Run's, a process runs a bare GoBGP
// v3 server (no import policy, no kernel, nothing of evpnd) with the one
// thing any program embedding it needs to learn routes, a best-path
// watch, whose callback only counts. Converge is from the injector seeing
// the session established until the watch has delivered every path;
// PeakRSS is that process's VmHWM then; Withdraw is from the injector
// being killed until the watch has delivered every withdrawal. Its time
// and memory are what evpnd cannot go below while GoBGP receives the
// routes and holds the table.
func RunFloor(ctx context.Context, routes int, opts Options) (res Result, err error) {
	res = Result{DUT: GoBGP, Routes: routes}
	if routes < 1 || routes > maxRoutes {
		return res, fmt.Errorf("routes: %d is out of range 1..%d", routes, maxRoutes)
	}
	err = inLab(ctx, GoBGP, "bench-gobgp.clab.yml", opts, &res.LabID,
		func(ctx context.Context, l *lab.Lab, argv []string, opts Options) error {
			return measureFloor(ctx, l, routes, argv, opts, &res)
		})
	if err != nil {
		return res, fmt.Errorf("%s, %d routes: %w", GoBGP, routes, err)
	}
	return res, nil
}

func measureFloor(ctx context.Context, l *lab.Lab, routes int, argv []string, opts Options, res *Result) error {
	if err := os.MkdirAll(l.NodeDir(dutNode), 0o755); err != nil {
		return fmt.Errorf("floor dir: %w", err)
	}
	paths := routes + len(injectedVTEPs())
	rcv, err := startInjector(l.NS(dutNode), argv, opts.InjectorEnv, filepath.Join(l.NodeDir(dutNode), "gobgp.log"))
	if err != nil {
		return err
	}
	defer rcv.stop()
	if err := rcv.send(injectRequest{Mode: "floor", RouterID: dutAddr, ASN: benchASN, Routes: paths}); err != nil {
		return err
	}
	if err := rcv.send(peerRequest{Peer: injectorAddr, ASN: benchASN}); err != nil {
		return err
	}
	if _, err := rcv.await(ctx, "ready"); err != nil {
		return err
	}

	inj, err := startSession(ctx, l, argv, routes, opts, res)
	if err != nil {
		return err
	}
	defer inj.stop()
	est, err := inj.await(ctx, "established")
	if err != nil {
		return err
	}
	got, err := rcv.await(ctx, "received")
	if err != nil {
		return err
	}
	res.Converge = time.Unix(0, got.At).Sub(time.Unix(0, est.At))
	res.PeakRSS = got.RSS
	opts.Logf("lab %s: gobgp has all %d paths after %s, rss %.0f MB", l.ID, paths, res.Converge.Round(time.Millisecond), float64(res.PeakRSS)/(1<<20))

	// B2: the peer goes away; GoBGP withdraws every path it sent.
	wctx, cancel := context.WithTimeoutCause(ctx, withdrawLimit, errWithdrawLimit)
	defer cancel()
	gone := time.Now()
	if err := inj.kill(); err != nil {
		return err
	}
	w, err := rcv.await(wctx, "withdrawn")
	if err != nil {
		return fmt.Errorf("withdrawal: %w", err)
	}
	res.Withdraw = time.Unix(0, w.At).Sub(gone)
	opts.Logf("lab %s: gobgp withdrew all %d paths %s after the peer died", l.ID, paths, res.Withdraw.Round(time.Millisecond))
	return nil
}

// floor is the floor process (RunFloor): a bare GoBGP server in the DUT's
// namespace that peers with the injector and counts the paths its
// best-path watch delivers. It reports "ready" once the peer is
// configured, "received" (with its VmHWM) when it holds req.Routes paths
// and "withdrawn" when they are all gone again.
func floor(in *bufio.Scanner, enc *json.Encoder, log *slog.Logger, req injectRequest) error {
	var pr peerRequest
	if err := readLine(in, &pr); err != nil {
		return fmt.Errorf("read peer request: %w", err)
	}
	if req.Routes < 1 {
		return fmt.Errorf("floor request: %d paths: want at least one", req.Routes)
	}
	ctx := context.Background()
	s := server.NewBgpServer()
	go s.Serve()
	defer s.Stop()
	err := s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: req.ASN, RouterId: req.RouterID.String(), ListenPort: 179, ListenAddresses: []string{req.RouterID.String()},
	}})
	if err != nil {
		return fmt.Errorf("start bgp: %w", err)
	}
	// phase: 0 receiving, 1 all received, 2 all withdrawn (then the
	// count is no longer watched).
	var (
		mu     sync.Mutex
		n      int
		phase  int
		report = make(chan injectEvent, 2)
	)
	watchCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	err = s.WatchEvent(watchCtx, &api.WatchEventRequest{Table: &api.WatchEventRequest_Table{
		Filters: []*api.WatchEventRequest_Table_Filter{{Type: api.WatchEventRequest_Table_Filter_BEST}},
	}}, func(r *api.WatchEventResponse) {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range r.GetTable().GetPaths() {
			if p.GetIsWithdraw() {
				n--
			} else {
				n++
			}
		}
		switch {
		case phase == 0 && n >= req.Routes:
			phase = 1
			report <- injectEvent{Event: "received", At: time.Now().UnixNano()}
		case phase == 1 && n <= 0:
			phase = 2
			report <- injectEvent{Event: "withdrawn", At: time.Now().UnixNano()}
		}
	})
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	err = s.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: pr.Peer.String(), PeerAsn: pr.ASN},
		AfiSafis: []*api.AfiSafi{{Config: &api.AfiSafiConfig{
			Family: &api.Family{Afi: api.Family_AFI_L2VPN, Safi: api.Family_SAFI_EVPN}, Enabled: true,
		}}},
	}})
	if err != nil {
		return fmt.Errorf("add peer %s: %w", pr.Peer, err)
	}
	if err := enc.Encode(injectEvent{Event: "ready"}); err != nil {
		return err
	}
	stdinDone := make(chan struct{})
	go func() {
		for in.Scan() {
		}
		close(stdinDone)
	}()
	for {
		select {
		case <-stdinDone:
			return nil
		case ev := <-report:
			if ev.Event == "received" {
				rss, err := vmHWM(os.Getpid())
				if err != nil {
					return err
				}
				ev.RSS = rss
				log.Info("all paths received", "paths", req.Routes)
			}
			if err := enc.Encode(ev); err != nil {
				return err
			}
		}
	}
}
