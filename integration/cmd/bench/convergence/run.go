// Package convergence owns evpnd's control-plane benchmarks against FRR
// (zebra + bgpd), each DUT on the same machine in the same run:
//
//   - B1 ingest (Run): from a BGP session coming up with N remote type-2
//     routes until all N MACs are in the kernel FDB, and peak memory;
//     B2 withdrawal, in the same run: the peer dies, until none is left.
//   - B3 local learn and B4 MAC move (RunFabric): three hosts and a
//     listener behind an FRR route reflector.
//   - B6 restart (RunRestart): the DUT restarts holding N routes with a
//     UDP flow through it.
//
// Each run brings up a fresh lab (integration/lab) in which the helper
// process (an injector or a listener, a real GoBGP speaker in its own
// namespace) peers with the device under test or the route reflector.
//
// integration/cmd/bench prints the comparison and writes the report; the
// integration package's smoke tests run the same paths at tiny sizes.
package convergence

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/evpnd/evpnd/integration/lab"
)

// DUT is the kind of host under test.
type DUT string

// The devices under test.
const (
	Evpnd DUT = "evpnd"
	FRR   DUT = "frr"
)

// dutNode, injNode and benchTenant are names in the bench topologies.
const (
	dutNode     = "dut"
	injNode     = "inj"
	benchTenant = "bench"
	bridgeName  = "br100"
)

// Options tune the runs; the zero value runs the program's own injector
// (this executable with the argument "inject").
type Options struct {
	// TopologyDir holds bench-evpnd.clab.yml and bench-frr.clab.yml;
	// integration/topologies of this repository when empty.
	TopologyDir string
	// Injector is the argv that runs RunInjector with stdin and stdout as
	// its protocol; InjectorEnv is added to its environment.
	Injector    []string
	InjectorEnv []string
	// EvpndBin is the evpnd binary (lab default: bin/evpnd).
	EvpndBin string
	// Keep leaves a failed run's lab up (namespaces, daemons, logs) for
	// debugging; `go run ./integration/cmd/lab down LABID` removes it.
	// Interrupted runs are always torn down.
	Keep bool
	// Timeout bounds one run, bring-up to teardown; 5 minutes when zero.
	Timeout time.Duration
	// Logf receives progress lines; silent when nil.
	Logf func(format string, args ...any)
}

// Result is one run.
type Result struct {
	DUT    DUT `json:"dut"`
	Routes int `json:"routes"`
	// Converge is from the injector seeing the session established until
	// the kernel's neighbor notifications in the DUT's bridge namespace
	// have announced all Routes MACs (read as they come). Should the
	// notifications overflow (DumpFallback), it is until the first FDB
	// dump that finds them all, dumps 100 ms apart or as far apart as the
	// last dump took.
	Converge time.Duration `json:"converge_ns"`
	// PeakRSS is VmHWM in bytes: evpnd's, or the sum of bgpd's and
	// zebra's (both do the work in FRR).
	PeakRSS uint64 `json:"peak_rss_bytes"`
	// Withdraw (B2) is from the injector being killed, which takes its
	// session down as a dead peer does, until the notifications (or a
	// dump) show none of the Routes MACs left.
	Withdraw time.Duration `json:"withdraw_ns"`
	// DumpFallback says the notifications overflowed and the run was
	// finished by FDB dumps.
	DumpFallback bool `json:"dump_fallback,omitempty"`
	// WithdrawLeft is how many MACs were still in the FDB when B2 gave up
	// after two minutes; Withdraw is then that limit, not a completion.
	WithdrawLeft int `json:"withdraw_left,omitempty"`
	// InjectorLoad is how long the injector took to put the routes in its
	// own RIB, before the session; not part of Converge.
	InjectorLoad time.Duration `json:"injector_load_ns"`
	LabID        string        `json:"lab_id"`
}

// prepare checks that dut can run and fills opts' defaults.
func prepare(dut DUT, opts Options) (Options, error) {
	if err := Check(dut, opts); err != nil {
		return opts, err
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Minute
	}
	return opts, nil
}

// pollEvery is the FDB dump interval when counting falls back to dumps.
const pollEvery = 100 * time.Millisecond

// Run brings up a fresh lab with dut, injects routes, waits until they are
// all in dut's kernel FDB and tears the lab down again.
func Run(ctx context.Context, dut DUT, routes int, opts Options) (res Result, err error) {
	res = Result{DUT: dut, Routes: routes}
	if routes < 1 || routes > maxRoutes {
		return res, fmt.Errorf("routes: %d is out of range 1..%d", routes, maxRoutes)
	}
	err = inLab(ctx, dut, "bench-"+string(dut)+".clab.yml", opts, &res.LabID,
		func(ctx context.Context, l *lab.Lab, argv []string, opts Options) error {
			return measure(ctx, l, dut, routes, argv, opts, &res)
		})
	if err != nil {
		return res, fmt.Errorf("%s, %d routes: %w", dut, routes, err)
	}
	return res, nil
}

func measure(ctx context.Context, l *lab.Lab, dut DUT, routes int, argv []string, opts Options, res *Result) error {
	fdbNS := fdbNamespace(l, dut)
	counter, err := waitDUTReady(ctx, l, dut, fdbNS)
	if err != nil {
		return err
	}
	defer counter.close()
	events, err := watchFDBEvents(fdbNS, counter.brIndex)
	if err != nil {
		return err
	}
	defer func() {
		if events != nil {
			events.close()
		}
	}()
	// fromEvents reads the count off the notifications; when they were
	// lost, it says why once and leaves the caller to dumps.
	fromEvents := func() (n int, at time.Time, ok bool) {
		if events == nil {
			return 0, time.Time{}, false
		}
		n, at, err := events.count()
		if err != nil {
			opts.Logf("lab %s: %v; counting by fdb dumps from now on", l.ID, err)
			res.DumpFallback = true
			events.close()
			events = nil
			return 0, time.Time{}, false
		}
		return n, at, true
	}

	inj, err := startSession(ctx, l, argv, routes, opts, res)
	if err != nil {
		return err
	}
	defer inj.stop()
	// Poll from now on: the session may come up and the first routes land
	// before the established event is read.
	var (
		last    int
		endedAt time.Time
	)
	established := make(chan injectEvent, 1)
	awaitErr := make(chan error, 1)
	go func() {
		ev, err := inj.await(ctx, "established")
		if err != nil {
			awaitErr <- err
			return
		}
		established <- ev
	}()
	var t0 time.Time
	// A pause between polls rather than a ticker, at least as long as the
	// last dump took: the kernel walks the whole FDB again for every
	// netlink message of a dump (about 0.6 s at 100k MACs here), and
	// back-to-back dumps would slow the DUT down.
	poll := time.NewTimer(pollEvery)
	defer poll.Stop()
	for t0.IsZero() || endedAt.IsZero() {
		select {
		case ev := <-established:
			t0 = time.Unix(0, ev.At)
			opts.Logf("lab %s: session established", l.ID)
		case err := <-awaitErr:
			return err
		case <-ctx.Done():
			return fmt.Errorf("%d of %d macs in the fdb of %s: %w", last, routes, fdbNS, context.Cause(ctx))
		case <-poll.C:
			if n, at, ok := fromEvents(); ok {
				if n != last {
					opts.Logf("lab %s: %d of %d macs in the fdb", l.ID, n, routes)
					last = n
				}
				if n >= routes {
					endedAt = at
					continue
				}
				poll.Reset(eventPoll)
				continue
			}
			began := time.Now()
			n, err := counter.count()
			if err != nil {
				return err
			}
			if n != last {
				opts.Logf("lab %s: %d of %d macs in the fdb", l.ID, n, routes)
				last = n
			}
			if n >= routes {
				endedAt = time.Now()
				continue
			}
			poll.Reset(max(pollEvery, time.Since(began)))
		}
	}
	res.Converge = endedAt.Sub(t0)
	opts.Logf("lab %s: all %d macs in the fdb after %s; %d fdb polls, the slowest took %s",
		l.ID, routes, res.Converge.Round(time.Millisecond), counter.dumps, counter.slowest.Round(time.Millisecond))
	// One dump of the settled table confirms the notifications' count.
	quiet := time.Now()
	if n, err := counter.count(); err == nil {
		opts.Logf("lab %s: one fdb dump of the settled table takes %s and counts %d macs", l.ID, time.Since(quiet).Round(time.Millisecond), n)
		if n < routes {
			return fmt.Errorf("notifications counted %d macs but a dump of %s finds %d", routes, fdbNS, n)
		}
	}
	if res.PeakRSS, err = hostRSS(l, dut, dutNode); err != nil {
		return err
	}

	// B2: the peer goes away; every route it sent must leave the kernel.
	// A DUT that has not emptied its FDB by withdrawLimit is a result
	// (WithdrawLeft), not a failed run.
	wctx, cancel := context.WithTimeoutCause(ctx, withdrawLimit, errWithdrawLimit)
	defer cancel()
	gone := time.Now()
	if err := inj.kill(); err != nil {
		return err
	}
	left := routes
	progress := func(n int) {
		left = n
		opts.Logf("lab %s: %d of %d macs left in the fdb", l.ID, n, routes)
	}
	err = waitEvents(wctx, fromEvents, func(n int) bool { return n == 0 }, progress)
	if errors.Is(err, errNoEvents) {
		err = waitCount(wctx, counter, func(n int) bool { return n == 0 }, progress)
		res.Withdraw = time.Since(gone)
	} else {
		_, at, _ := fromEvents()
		res.Withdraw = at.Sub(gone)
		if err != nil {
			res.Withdraw = time.Since(gone)
		}
	}
	switch {
	case errors.Is(context.Cause(wctx), errWithdrawLimit) && ctx.Err() == nil:
		res.WithdrawLeft = left
		opts.Logf("lab %s: %d of %d macs still in the fdb %s after the peer died", l.ID, left, routes, res.Withdraw.Round(time.Millisecond))
		return nil
	case err != nil:
		return fmt.Errorf("withdrawal: %w", err)
	}
	opts.Logf("lab %s: all %d macs gone from the fdb %s after the peer died", l.ID, routes, res.Withdraw.Round(time.Millisecond))
	return nil
}

// startSession starts the injector in l, has it load routes and then
// start its session with the DUT; the caller stops it.
func startSession(ctx context.Context, l *lab.Lab, argv []string, routes int, opts Options, res *Result) (*injector, error) {
	inj, err := startInjectorNode(l, argv, opts)
	if err != nil {
		return nil, err
	}
	if err := inj.load(ctx, l, routes, opts, res); err != nil {
		inj.stop()
		return nil, err
	}
	if err := inj.send(peerRequest{Peer: dutAddr, ASN: benchASN}); err != nil {
		inj.stop()
		return nil, err
	}
	return inj, nil
}

// load has the injector put routes behind injectedVTEPs into its RIB
// and records how long that took (before the session: no figure counts
// it).
func (inj *injector) load(ctx context.Context, l *lab.Lab, routes int, opts Options, res *Result) error {
	if err := inj.send(injectRequest{RouterID: injectorAddr, ASN: benchASN, Routes: routes, VTEPs: injectedVTEPs()}); err != nil {
		return err
	}
	ev, err := inj.await(ctx, "loaded")
	if err != nil {
		return err
	}
	res.InjectorLoad = ev.LoadFor
	opts.Logf("lab %s: injector holds %d paths (loaded in %s); starting the session", l.ID, ev.Paths, ev.LoadFor.Round(time.Millisecond))
	return nil
}

// withdrawLimit bounds B2; errWithdrawLimit is the cause when it passes.
const withdrawLimit = 2 * time.Minute

var errWithdrawLimit = errors.New("withdrawal limit")

// eventPoll is how often measure reads the notifications' count; the
// times come from the notifications themselves, not from this interval.
const eventPoll = 10 * time.Millisecond

// errNoEvents says the notifications can no longer be counted on.
var errNoEvents = errors.New("fdb notifications lost")

// waitEvents waits on the notifications' count until done accepts it;
// errNoEvents when they were lost.
func waitEvents(ctx context.Context, count func() (int, time.Time, bool), done func(int) bool, progress func(int)) error {
	return waitUntil(ctx, func() (int, error) {
		n, _, ok := count()
		if !ok {
			return 0, errNoEvents
		}
		return n, nil
	}, func(time.Duration) time.Duration { return eventPoll }, done, progress)
}

// waitCount polls c as measure does (a pause of at least pollEvery, or as
// long as the last dump took) until done accepts the count.
func waitCount(ctx context.Context, c *fdbCounter, done func(int) bool, progress func(int)) error {
	return waitUntil(ctx, c.count, func(took time.Duration) time.Duration { return max(pollEvery, took) }, done, progress)
}

// waitUntil reads count, pausing as long as pause says after each read
// (given how long the read took), until done accepts the count; progress
// sees each new count.
func waitUntil(ctx context.Context, count func() (int, error), pause func(time.Duration) time.Duration, done func(int) bool, progress func(int)) error {
	last := -1
	for {
		began := time.Now()
		n, err := count()
		if err != nil {
			return err
		}
		if n != last {
			progress(n)
			last = n
		}
		if done(n) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d macs in the fdb: %w", n, context.Cause(ctx))
		case <-time.After(pause(time.Since(began))):
		}
	}
}

// waitDUTReady waits until the DUT can take routes at once: its bridge is
// there (evpnd makes it in the tenant namespace after start) and, for FRR,
// bgpd knows VNI 100 from zebra. Otherwise the first seconds would measure
// start-up, not convergence.
func waitDUTReady(ctx context.Context, l *lab.Lab, dut DUT, fdbNS string) (*fdbCounter, error) {
	var c *fdbCounter
	err := pollCtx(ctx, 50*time.Millisecond, func() error {
		if c == nil {
			var err error
			if c, err = newFDBCounter(fdbNS, bridgeName); err != nil {
				return err
			}
		}
		if dut != FRR {
			return nil
		}
		var vnis map[string]any
		if err := l.VtyshJSON(dutNode, "show bgp l2vpn evpn vni json", &vnis); err != nil {
			return err
		}
		if _, ok := vnis[fmt.Sprint(benchVNI)]; !ok {
			return fmt.Errorf("bgpd does not know vni %d yet", benchVNI)
		}
		return nil
	})
	if err != nil {
		if c != nil {
			c.close()
		}
		return nil, fmt.Errorf("dut not ready: %w", err)
	}
	return c, nil
}

// pollCtx calls check every interval until it returns nil or ctx ends.
func pollCtx(ctx context.Context, interval time.Duration, check func() error) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w, last error: %w", context.Cause(ctx), err)
		case <-tick.C:
		}
	}
}

// Check reports why dut (one of DUTs, or the GoBGP floor) cannot be
// benchmarked on this machine, or nil.
func Check(dut DUT, opts Options) error {
	if os.Geteuid() != 0 {
		return errors.New("the benchmark needs root: network namespaces, veth pairs, FRR daemons; run with sudo")
	}
	switch dut {
	case FRR:
		if !lab.FRRInstalled() {
			return errors.New("frr is not installed: /usr/lib/frr/bgpd is missing (apt-get install frr, or make deps)")
		}
	case Evpnd:
		bin := evpndBin(opts)
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("evpnd binary: %w (make build)", err)
		}
	case GoBGP:
	default:
		return fmt.Errorf("dut %q is not one of %s, %s", dut, Evpnd, FRR)
	}
	if _, err := os.Stat(filepath.Join(topologyDir(opts), "bench-"+string(dut)+".clab.yml")); err != nil {
		return fmt.Errorf("bench topology: %w", err)
	}
	return nil
}

// DUTs is every device under test, in the order the benchmark runs them.
var DUTs = []DUT{Evpnd, FRR}

// ParseDUT accepts "evpnd" or "frr".
func ParseDUT(s string) (DUT, error) {
	if d := DUT(s); slices.Contains(DUTs, d) {
		return d, nil
	}
	return "", fmt.Errorf("dut %q is not one of %s, %s", s, Evpnd, FRR)
}

// repoDir is the root of the repository this file is built from.
func repoDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) { // built with -trimpath: assume the repository is the working directory
		return "."
	}
	// file is <repo>/integration/cmd/bench/convergence/run.go.
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "..")
}

func topologyDir(opts Options) string {
	if opts.TopologyDir != "" {
		return opts.TopologyDir
	}
	return filepath.Join(repoDir(), "integration", "topologies")
}

func evpndBin(opts Options) string {
	if opts.EvpndBin != "" {
		return opts.EvpndBin
	}
	return filepath.Join(repoDir(), "bin", "evpnd")
}
