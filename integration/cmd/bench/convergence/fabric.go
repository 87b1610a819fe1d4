package convergence

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/evpnd/evpnd/integration/lab"
)

// Addresses and names of the fabric topologies (bench-fabric-*.clab.yml).
var (
	rrAddr       = netip.MustParseAddr("10.0.0.254")
	listenerAddr = netip.MustParseAddr("10.0.0.251")
	hostAddrs    = []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")}
)

const (
	monNode = "mon"
	rrNode  = "rr"
	// The third MAC byte of each step's MACs (see benchMAC).
	stepWarmup byte = 0x0f
	stepLearn  byte = 0x03
	stepMove   byte = 0x04
	// eventTimeout bounds the wait for one learn or one move: far above
	// any latency worth measuring, short enough to fail a broken run.
	eventTimeout = 10 * time.Second
)

// Latency is a distribution of one kind of event's latencies.
type Latency struct {
	Samples int           `json:"samples"`
	P50     time.Duration `json:"p50_ns"`
	P99     time.Duration `json:"p99_ns"`
	Max     time.Duration `json:"max_ns"`
}

func newLatency(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return Latency{Samples: len(s), P50: q(0.50), P99: q(0.99), Max: s[len(s)-1]}
}

// FabricResult is B3 and B4 for one DUT.
type FabricResult struct {
	DUT DUT `json:"dut"`
	// Learn (B3): from a gratuitous ARP with a new source MAC leaving a
	// workload on host1 until the BGP segment carrying its type-2 arrives
	// at the route reflector (kernel receive time on the reflector's
	// interface).
	Learn Latency `json:"learn"`
	// LearnViaRR is the same MAC until the listener, another client of the
	// route reflector, receives the type-2: Learn plus the reflector's own
	// work (FRR's bgpd holds its processing queue 50 ms).
	LearnViaRR Latency `json:"learn_via_rr"`
	// Move (B4): a MAC learned on host1 is removed there (its port's FDB
	// entry is flushed, as when a VM leaves) and sends a gratuitous ARP on
	// host2; until host3's kernel FDB points the MAC at host2's VTEP,
	// seen by a netlink subscription in host3's bridge namespace.
	Move  Latency `json:"move"`
	LabID string  `json:"lab_id"`
}

// FabricOptions sizes the fabric benchmarks.
type FabricOptions struct {
	MACs  int // B3: new MACs, one at a time
	Moves int // B4: moves, each of a fresh MAC
}

// RunFabric brings up a fabric of three dut hosts, a route reflector and a
// listener, measures B3 and then B4, and tears it down.
func RunFabric(ctx context.Context, dut DUT, fo FabricOptions, opts Options) (res FabricResult, err error) {
	res = FabricResult{DUT: dut}
	if fo.MACs < 1 || fo.Moves < 1 || fo.MACs > 1<<16 || fo.Moves > 1<<16 {
		return res, fmt.Errorf("fabric: %d macs, %d moves: want 1..65536 of each", fo.MACs, fo.Moves)
	}
	err = inLab(ctx, dut, "bench-fabric-"+string(dut)+".clab.yml", opts, &res.LabID,
		func(ctx context.Context, l *lab.Lab, argv []string, opts Options) error {
			return fabric(ctx, l, dut, fo, argv, opts, &res)
		})
	if err != nil {
		return res, fmt.Errorf("%s fabric: %w", dut, err)
	}
	return res, nil
}

// inLab checks dut, brings up topology (a file of the topology
// directory), runs body in it under opts.Timeout with the injector argv
// and opts with defaults, and tears the lab down (or keeps a failed one
// when asked). labID receives the lab's ID.
func inLab(ctx context.Context, dut DUT, topology string, opts Options, labID *string,
	body func(ctx context.Context, l *lab.Lab, argv []string, opts Options) error) (err error) {
	opts, err = prepare(dut, opts)
	if err != nil {
		return err
	}
	argv := opts.Injector
	if len(argv) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("injector: own executable: %w", err)
		}
		// Resolved here: /proc/self/exe inside ip netns exec is ip.
		argv = []string{exe, "inject"}
	}
	l, cleanup, err := bringUp(ctx, filepath.Join(topologyDir(opts), topology), opts, nil)
	if err != nil {
		return err
	}
	*labID = l.ID
	defer func() { err = cleanup(err) }()
	runCtx, cancel := context.WithTimeoutCause(ctx, opts.Timeout, fmt.Errorf("run timeout %s", opts.Timeout))
	defer cancel()
	if err := body(runCtx, l, argv, opts); err != nil {
		return fmt.Errorf("lab %s: %w", l.ID, err)
	}
	return nil
}

// bringUp starts the lab of the topology file and returns it with a
// cleanup that tears it down, or keeps a failed one when asked (calling
// kept), and joins its error to the run's.
func bringUp(ctx context.Context, topo string, opts Options, kept func()) (*lab.Lab, func(error) error, error) {
	// A kept lab must survive sweeps by later runs while its daemons run.
	l, err := lab.Start(topo, lab.Options{EvpndBin: evpndBin(opts), Keep: opts.Keep, Detached: opts.Keep, Logf: opts.Logf})
	if err != nil {
		return nil, nil, err
	}
	cleanup := func(err error) error {
		if err != nil && opts.Keep && ctx.Err() == nil {
			if kept != nil {
				kept()
			}
			return fmt.Errorf("%w (lab %s kept: run dir %s; remove with go run ./integration/cmd/lab down %s)", err, l.ID, l.RunDir, l.ID)
		}
		if derr := l.Down(); derr != nil {
			err = errors.Join(err, fmt.Errorf("lab %s teardown: %w", l.ID, derr))
		}
		return err
	}
	return l, cleanup, nil
}

// hostBridge is where host i's (0-based) tenant bridge lives and the name
// of its workload port there.
func hostBridge(l *lab.Lab, dut DUT, i int) (ns, port string) {
	host := fmt.Sprintf("host%d", i+1)
	if dut == Evpnd {
		return l.TenantNS(host, benchTenant), fmt.Sprintf("tap-w%d", i+1)
	}
	return l.NS(host), "eth2"
}

func fabric(ctx context.Context, l *lab.Lab, dut DUT, fo FabricOptions, argv []string, opts Options, res *FabricResult) error {
	// Every host's port must be on its tenant bridge before a frame can
	// teach it anything (evpnd moves its ports after start).
	for i := range hostAddrs {
		ns, port := hostBridge(l, dut, i)
		if err := pollCtx(ctx, 50*time.Millisecond, func() error { return onBridge(ns, port, bridgeName) }); err != nil {
			return fmt.Errorf("host%d not ready: %w", i+1, err)
		}
	}
	if err := os.MkdirAll(l.NodeDir(monNode), 0o755); err != nil {
		return fmt.Errorf("listener dir: %w", err)
	}
	mon, err := startInjector(l.NS(monNode), argv, opts.InjectorEnv, filepath.Join(l.NodeDir(monNode), "listener.log"))
	if err != nil {
		return err
	}
	defer mon.stop()
	if err := mon.send(injectRequest{Mode: "listen", RouterID: listenerAddr, ASN: benchASN}); err != nil {
		return err
	}
	if err := mon.send(peerRequest{Peer: rrAddr, ASN: benchASN}); err != nil {
		return err
	}
	if _, err := mon.await(ctx, "established"); err != nil {
		return err
	}
	senders := make([]*frameSender, len(hostAddrs))
	for i := range senders {
		s, err := newFrameSender(l.NS(fmt.Sprintf("w%d", i+1)), "eth1")
		if err != nil {
			return err
		}
		defer s.close()
		senders[i] = s
	}
	watches := make([]*fdbWatch, len(hostAddrs))
	for i := range watches {
		ns, _ := hostBridge(l, dut, i)
		w, err := watchFDB(ns)
		if err != nil {
			return err
		}
		defer w.close()
		watches[i] = w
	}

	// Warm-up: each host learns one MAC and every other host installs it,
	// which proves all sessions are up before anything is timed. Frames
	// are repeated: a host whose session is not up yet learns the MAC but
	// may advertise it only later.
	for i, s := range senders {
		mac := benchMAC(stepWarmup, i)
		err := pollCtx(ctx, 500*time.Millisecond, func() error {
			if err := s.garp(mac, benchIP(i)); err != nil {
				return err
			}
			for j, w := range watches {
				if j != i && w.dst(mac) != hostAddrs[i] {
					return fmt.Errorf("host%d has no fdb entry for %s at %s", j+1, mac, hostAddrs[i])
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	drainRoutes(mon)
	opts.Logf("lab %s: fabric up; B3: %d new macs on host1", l.ID, fo.MACs)

	tap, err := newBGPTap(l.NS(rrNode), "eth1", hostAddrs[0], benchMAC(stepLearn, 0)[:3])
	if err != nil {
		return err
	}
	defer tap.close()
	lat := make([]time.Duration, 0, fo.MACs)
	viaRR := make([]time.Duration, 0, fo.MACs)
	for i := range fo.MACs {
		mac := benchMAC(stepLearn, i)
		sent := time.Now()
		if err := senders[0].garp(mac, benchIP(i)); err != nil {
			return err
		}
		atRR, err := tap.await(mac, eventTimeout)
		if err != nil {
			return fmt.Errorf("b3 mac %d of %d: %w", i+1, fo.MACs, err)
		}
		at, err := awaitRoute(ctx, mon, mac, hostAddrs[0])
		if err != nil {
			return fmt.Errorf("b3 mac %d of %d: %w", i+1, fo.MACs, err)
		}
		lat = append(lat, atRR.Sub(sent))
		viaRR = append(viaRR, at.Sub(sent))
	}
	res.Learn, res.LearnViaRR = newLatency(lat), newLatency(viaRR)
	opts.Logf("lab %s: B3 at the reflector p50 %s p99 %s; at a client behind it p50 %s p99 %s",
		l.ID, res.Learn.P50, res.Learn.P99, res.LearnViaRR.P50, res.LearnViaRR.P99)

	// B4. host1's port, for flushing a MAC there as a leaving VM does.
	ns1, port1 := hostBridge(l, dut, 0)
	h1, err := lab.HandleAt(ns1)
	if err != nil {
		return err
	}
	defer h1.Close()
	p1, err := h1.LinkByName(port1)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", ns1, port1, err)
	}
	lat = lat[:0]
	for i := range fo.Moves {
		mac := benchMAC(stepMove, i)
		if err := senders[0].garp(mac, benchIP(i)); err != nil {
			return err
		}
		for _, j := range []int{1, 2} {
			if _, err := watches[j].await(ctx, mac, hostAddrs[0], time.Time{}); err != nil {
				return fmt.Errorf("b4 move %d: before the move: host%d: %w", i+1, j+1, err)
			}
		}
		err := h1.NeighDel(&netlink.Neigh{LinkIndex: p1.Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_MASTER, HardwareAddr: mac})
		if err != nil {
			return fmt.Errorf("b4 move %d: flush %s on host1: %w", i+1, mac, err)
		}
		sent := time.Now()
		if err := senders[1].garp(mac, benchIP(i)); err != nil {
			return err
		}
		at, err := watches[2].await(ctx, mac, hostAddrs[1], sent)
		if err != nil {
			return fmt.Errorf("b4 move %d of %d: host3: %w", i+1, fo.Moves, err)
		}
		lat = append(lat, at.Sub(sent))
	}
	res.Move = newLatency(lat)
	opts.Logf("lab %s: B4 p50 %s p99 %s", l.ID, res.Move.P50, res.Move.P99)
	return nil
}

func drainRoutes(mon *injector) {
	for {
		select {
		case <-mon.routes:
		default:
			return
		}
	}
}

// awaitRoute waits for the listener to report a type-2 for mac from vtep
// and returns when the listener received it.
func awaitRoute(ctx context.Context, mon *injector, mac net.HardwareAddr, vtep netip.Addr) (time.Time, error) {
	timeout := time.NewTimer(eventTimeout)
	defer timeout.Stop()
	want := mac.String()
	for {
		select {
		case ev := <-mon.routes:
			if ev.MAC == want && ev.VTEP == vtep {
				return time.Unix(0, ev.At), nil
			}
		case <-mon.done:
			return time.Time{}, fmt.Errorf("listener exited (%v); log %s:\n%s", mon.err, mon.log, lab.Tail(mon.log, 20))
		case <-timeout.C:
			return time.Time{}, fmt.Errorf("no type-2 for %s from %s at the listener within %s", mac, vtep, eventTimeout)
		case <-ctx.Done():
			return time.Time{}, context.Cause(ctx)
		}
	}
}

// fdbWatch follows a bridge namespace's FDB through a netlink
// subscription: for every MAC, the VTEP its VXLAN entry points at and when
// that was last set. Polling would add its own interval to every latency.
type fdbWatch struct {
	ns   string
	done chan struct{}
	ch   chan netlink.NeighUpdate

	mu      sync.Mutex
	entries map[string]fdbDst
	changed chan struct{} // closed and replaced on every change
	err     error
}

type fdbDst struct {
	vtep netip.Addr
	at   time.Time
}

func watchFDB(ns string) (*fdbWatch, error) {
	w := &fdbWatch{ns: ns, entries: map[string]fdbDst{}, changed: make(chan struct{})}
	var err error
	w.ch, w.done, err = subscribeFDB(ns, 4096, 1<<22, func(err error) {
		w.mu.Lock()
		w.err = err
		w.mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	go w.run()
	return w, nil
}

// subscribeFDB subscribes to the neighbor (and FDB) changes of the named
// namespace, the existing entries first, with a channel of chanLen
// updates and a socket buffer of bufLen bytes; closing done ends it.
func subscribeFDB(ns string, chanLen, bufLen int, onErr func(error)) (ch chan netlink.NeighUpdate, done chan struct{}, err error) {
	nsh, err := netns.GetFromName(ns)
	if err != nil {
		return nil, nil, fmt.Errorf("namespace %s: %w", ns, err)
	}
	defer nsh.Close()
	ch, done = make(chan netlink.NeighUpdate, chanLen), make(chan struct{})
	err = netlink.NeighSubscribeWithOptions(ch, done, netlink.NeighSubscribeOptions{
		Namespace:         &nsh,
		ReceiveBufferSize: bufLen,
		ErrorCallback:     onErr,
		ListExisting:      true,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("subscribe to the fdb of %s: %w", ns, err)
	}
	return ch, done, nil
}

func (w *fdbWatch) run() {
	for u := range w.ch {
		at := time.Now()
		n := u.Neigh
		if n.Family != unix.AF_BRIDGE || len(n.HardwareAddr) != 6 || n.IP == nil {
			continue
		}
		vtep, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		vtep = vtep.Unmap()
		mac := n.HardwareAddr.String()
		w.mu.Lock()
		switch u.Type {
		case unix.RTM_NEWNEIGH:
			w.entries[mac] = fdbDst{vtep: vtep, at: at}
		case unix.RTM_DELNEIGH:
			if w.entries[mac].vtep == vtep {
				delete(w.entries, mac)
			}
		}
		close(w.changed)
		w.changed = make(chan struct{})
		w.mu.Unlock()
	}
}

// dst is the VTEP mac points at now, or the zero Addr.
func (w *fdbWatch) dst(mac net.HardwareAddr) netip.Addr {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.entries[mac.String()].vtep
}

// await waits until mac points at vtep by an update made after since and
// returns when that update arrived.
func (w *fdbWatch) await(ctx context.Context, mac net.HardwareAddr, vtep netip.Addr, since time.Time) (time.Time, error) {
	timeout := time.NewTimer(eventTimeout)
	defer timeout.Stop()
	key := mac.String()
	for {
		w.mu.Lock()
		e, ok := w.entries[key]
		changed, err := w.changed, w.err
		w.mu.Unlock()
		if err != nil {
			return time.Time{}, fmt.Errorf("fdb subscription in %s: %w", w.ns, err)
		}
		if ok && e.vtep == vtep && !e.at.Before(since) {
			return e.at, nil
		}
		select {
		case <-changed:
		case <-timeout.C:
			return time.Time{}, fmt.Errorf("fdb of %s: %s does not point at %s within %s (now %s)", w.ns, mac, vtep, eventTimeout, e.vtep)
		case <-ctx.Done():
			return time.Time{}, context.Cause(ctx)
		}
	}
}

func (w *fdbWatch) close() {
	close(w.done)
	// The subscription closes ch once its socket is closed, which a
	// receive blocked in the kernel only notices with the next message;
	// run() drains ch until then, so nothing waits here.
}
