package convergence

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/evpnd/evpnd/bgp"
	"github.com/evpnd/evpnd/evpn"
	"github.com/evpnd/evpnd/integration/lab"
)

// The injector's routes: MAC-only type-2s of one L2VNI behind a handful of
// remote VTEPs, as a rack of hosts would advertise them, plus one type-3
// per VTEP.
const (
	benchVNI   evpn.VNI = 100
	benchASN   uint32   = 65000
	benchVTEPs          = 10
)

// macOUI is the first three bytes of every injected MAC (locally
// administered), so the FDB count ignores anything else on the bridge.
var macOUI = [3]byte{0x02, 0xbe, 0x00}

// maxRoutes is what the three low MAC bytes can number.
const maxRoutes = 1 << 24

// Addresses in the bench topologies' underlay (10.0.0.0/24).
var (
	injectorAddr  = netip.MustParseAddr("10.0.0.250")
	dutAddr       = netip.MustParseAddr("10.0.0.1")
	firstVTEPAddr = netip.MustParseAddr("10.0.0.100")
)

// injectRequest is the parent's first line to the injector: what to load.
type injectRequest struct {
	// Mode is "" for the injector, "listen" for a listener that loads
	// nothing and reports every type-2 it receives as a "route" event,
	// "floor" for RunFloor's bare GoBGP receiver, which expects Routes
	// paths.
	Mode     string       `json:"mode,omitempty"`
	RouterID netip.Addr   `json:"router_id"`
	ASN      uint32       `json:"asn"`
	Routes   int          `json:"routes"`
	VTEPs    []netip.Addr `json:"vteps"`
	// Extra are MAC routes added to the generated ones: real workloads
	// behind real VTEPs, each with the VTEP's type-3.
	Extra []extraMAC `json:"extra,omitempty"`
	// Passive makes the injector wait for the DUT to connect (it listens
	// on port 179 of RouterID) instead of connecting itself, so that a
	// restarted DUT reconnects on its own schedule, not the injector's.
	Passive bool `json:"passive,omitempty"`
}

// extraMAC is one workload MAC behind a VTEP.
type extraMAC struct {
	MAC  net.HardwareAddr `json:"mac"`
	VTEP netip.Addr       `json:"vtep"`
}

// peerRequest is the parent's second line: start the session.
type peerRequest struct {
	Peer netip.Addr `json:"peer"`
	ASN  uint32     `json:"asn"`
}

// injectEvent is one line from the injector.
type injectEvent struct {
	Event string `json:"event"` // loaded, established, error
	// Loaded: how many paths are in the injector's RIB and how long adding
	// them took.
	Paths   int           `json:"paths,omitempty"`
	LoadFor time.Duration `json:"load_for,omitempty"`
	// Established: when the injector saw the session up, Unix nanoseconds
	// (CLOCK_REALTIME is shared with the parent; the monotonic clock of
	// another process is not).
	At    int64  `json:"at,omitempty"`
	Error string `json:"error,omitempty"`
	// Route (listener): a received type-2, At when the listener got it.
	MAC  string     `json:"mac,omitempty"`
	VTEP netip.Addr `json:"vtep,omitzero"`
	// RSS (floor, received): the floor process's VmHWM in bytes.
	RSS uint64 `json:"rss,omitempty"`
}

// injectedMAC is the i-th injected MAC.
func injectedMAC(i int) net.HardwareAddr {
	return net.HardwareAddr{macOUI[0], macOUI[1], macOUI[2], byte(i >> 16), byte(i >> 8), byte(i)}
}

// startInjectorNode starts the injector in the lab's injector node, with
// its log in the node's directory (the lab makes node directories only for
// nodes with daemons).
func startInjectorNode(l *lab.Lab, argv []string, opts Options) (*injector, error) {
	if err := os.MkdirAll(l.NodeDir(injNode), 0o755); err != nil {
		return nil, fmt.Errorf("injector dir: %w", err)
	}
	return startInjector(l.NS(injNode), argv, opts.InjectorEnv, filepath.Join(l.NodeDir(injNode), "injector.log"))
}

// injectedVTEPs are the remote VTEPs the injector's routes point at.
func injectedVTEPs() []netip.Addr {
	vteps := make([]netip.Addr, benchVTEPs)
	for i, a := 0, firstVTEPAddr; i < benchVTEPs; i, a = i+1, a.Next() {
		vteps[i] = a
	}
	return vteps
}

// benchRoutes builds n type-2 routes spread round-robin over vteps, each
// VTEP with its own RD <vtep>:100, and one type-3 per VTEP.
func benchRoutes(n int, asn uint32, vteps []netip.Addr, extra []extraMAC) []evpn.Route {
	segs := make([]evpn.Segment, len(vteps))
	routes := make([]evpn.Route, 0, n+len(vteps)+2*len(extra))
	for i, v := range vteps {
		segs[i] = evpn.NewSegment(v, asn, evpn.PresetFRR, uint16(benchVNI), "bench", "bench", benchVNI, nil, nil)
		routes = append(routes, segs[i].IMETRoute(v))
	}
	for i := range n {
		j := i % len(vteps)
		routes = append(routes, segs[j].MACIPRoute(vteps[j], injectedMAC(i), netip.Addr{}, 0))
	}
	for _, e := range extra {
		seg := evpn.NewSegment(e.VTEP, asn, evpn.PresetFRR, uint16(benchVNI), "bench", "bench", benchVNI, nil, nil)
		routes = append(routes, seg.IMETRoute(e.VTEP), seg.MACIPRoute(e.VTEP, e.MAC, netip.Addr{}, 0))
	}
	return routes
}

// RunInjector is the injector process: a GoBGP speaker (package bgp) in the
// injector's lab namespace. It reads an injectRequest line from in, loads
// the routes into its RIB with no peer configured and reports "loaded";
// then reads a peerRequest, adds the peer and reports "established" with
// the time it first saw the session up (polling every 10 ms). It stops when
// in is closed. GoBGP's goroutines cannot be pinned to a namespace, which
// is why this is a process of its own started with ip netns exec.
func RunInjector(in io.Reader, out io.Writer, logw io.Writer) error {
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelInfo}))
	enc := json.NewEncoder(out)
	err := inject(bufio.NewScanner(in), enc, log)
	if err != nil {
		_ = enc.Encode(injectEvent{Event: "error", Error: err.Error()})
	}
	return err
}

func inject(in *bufio.Scanner, enc *json.Encoder, log *slog.Logger) error {
	var req injectRequest
	if err := readLine(in, &req); err != nil {
		return fmt.Errorf("read load request: %w", err)
	}
	switch req.Mode {
	case "listen":
		return listen(in, enc, log, req)
	case "floor":
		return floor(in, enc, log, req)
	}
	if req.Routes < 1 || req.Routes > maxRoutes || len(req.VTEPs) == 0 {
		return fmt.Errorf("load request: %d routes over %d vteps: want 1..%d routes and at least one vtep", req.Routes, len(req.VTEPs), maxRoutes)
	}
	ctx := context.Background()
	s := bgp.New(log)
	// The injector only connects out. The DUT also connects to it, and two
	// GoBGP speakers both connecting resolve the collision by closing both
	// sides over and over (a minute to establish, measured here).
	err := s.Start(ctx, bgp.Config{
		RouterID:        req.RouterID,
		ASN:             req.ASN,
		NextHop:         req.RouterID,
		ListenAddresses: []netip.Addr{req.RouterID},
		ListenPort:      listenPort(req.Passive),
	})
	if err != nil {
		return fmt.Errorf("start bgp: %w", err)
	}
	defer s.Stop()
	routes := benchRoutes(req.Routes, req.ASN, req.VTEPs, req.Extra)
	start := time.Now()
	if err := s.Advertise(ctx, routes); err != nil {
		return fmt.Errorf("load %d routes: %w", len(routes), err)
	}
	loadFor := time.Since(start)
	log.Info("routes loaded", "paths", len(routes), "took", loadFor)
	if err := enc.Encode(injectEvent{Event: "loaded", Paths: len(routes), LoadFor: loadFor}); err != nil {
		return err
	}

	var pr peerRequest
	if err := readLine(in, &pr); err != nil {
		return fmt.Errorf("read peer request: %w", err)
	}
	peer := bgp.PeerConfig{Address: pr.Peer, ASN: pr.ASN, Description: "dut"}
	if req.Passive {
		// The bgp package has no passive peers: the injector's own
		// attempts go to a closed port and fail at once, and the DUT's
		// connections to port 179 are the ones that establish.
		peer.Port = discardPort
	}
	if err := s.SetPeers(ctx, []bgp.PeerConfig{peer}); err != nil {
		return err
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		peers, err := s.Peers(ctx)
		if err != nil {
			return fmt.Errorf("peer %s: state: %w", pr.Peer, err)
		}
		if len(peers) == 1 && peers[0].State == "established" {
			break
		}
	}
	at := time.Now()
	log.Info("session established", "peer", pr.Peer)
	if err := enc.Encode(injectEvent{Event: "established", At: at.UnixNano()}); err != nil {
		return err
	}
	// Serve the session until the parent closes stdin. A line asking for
	// a reset replaces the peer with a fresh one: GoBGP keeps a peer whose
	// session just died idle for a while and refuses connections meanwhile,
	// which would time the injector instead of a restarting DUT.
	for in.Scan() {
		var c control
		if json.Unmarshal(in.Bytes(), &c) != nil || !c.Reset {
			continue
		}
		if err := s.SetPeers(ctx, nil); err != nil {
			return err
		}
		if err := s.SetPeers(ctx, []bgp.PeerConfig{peer}); err != nil {
			return err
		}
		if err := enc.Encode(injectEvent{Event: "reset"}); err != nil {
			return err
		}
	}
	return nil
}

// control is a line the parent sends a running injector.
type control struct {
	Reset bool `json:"reset"`
}

func readLine(in *bufio.Scanner, v any) error {
	if !in.Scan() {
		if err := in.Err(); err != nil {
			return err
		}
		return io.ErrUnexpectedEOF
	}
	return json.Unmarshal(in.Bytes(), v)
}

// injector is the parent's side of a running injector process.
type injector struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	events chan injectEvent
	routes chan injectEvent // a listener's route events
	done   chan struct{}    // closed when the process has exited
	err    error            // the exit, valid once done is closed
	log    string
}

// startInjector runs argv in namespace ns with stdout read as events and
// stderr written to logPath. Lines that are not events (a test binary's
// own output) are skipped.
func startInjector(ns string, argv, env []string, logPath string) (*injector, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("injector log: %w", err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = logf
	// Its own process group: on ^C the parent stops it in order, after
	// reading what it needs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("injector stdin: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("injector stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start injector %s: %w", filepath.Base(argv[0]), err)
	}
	inj := &injector{cmd: cmd, stdin: stdin, events: make(chan injectEvent, 4), routes: make(chan injectEvent, 1<<16), done: make(chan struct{}), log: logPath}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev injectEvent
			if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Event == "" {
				continue
			}
			if ev.Event == "route" {
				inj.routes <- ev
				continue
			}
			inj.events <- ev
		}
		inj.err = cmd.Wait()
		logf.Close()
		close(inj.done)
	}()
	return inj, nil
}

func (inj *injector) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := inj.stdin.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write to injector: %w", err)
	}
	return nil
}

// await waits for event want; an error event, an early exit or ctx ending
// fail it.
func (inj *injector) await(ctx context.Context, want string) (injectEvent, error) {
	select {
	case ev := <-inj.events:
		switch ev.Event {
		case want:
			return ev, nil
		case "error":
			return ev, fmt.Errorf("injector: %s", ev.Error)
		}
		return ev, fmt.Errorf("injector: got event %q, want %q", ev.Event, want)
	case <-inj.done:
		return injectEvent{}, fmt.Errorf("injector exited (%v) before %q; log %s:\n%s", inj.err, want, inj.log, lab.Tail(inj.log, 20))
	case <-ctx.Done():
		return injectEvent{}, fmt.Errorf("waiting for injector %q: %w", want, context.Cause(ctx))
	}
}

// stop closes stdin, which ends the injector, and kills it if it lingers.
func (inj *injector) stop() error {
	inj.stdin.Close()
	select {
	case <-inj.done:
		return nil
	case <-time.After(5 * time.Second):
	}
	// ip netns exec execs in place, so this is the injector itself.
	if err := inj.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill injector: %w", err)
	}
	<-inj.done
	return nil
}

// discardPort is where a passive injector's own connection attempts go:
// nothing listens there in a lab namespace.
const discardPort = 9

func listenPort(passive bool) int32 {
	if passive {
		return 179
	}
	return -1
}

// listen is the listener process: a GoBGP speaker that peers with the
// route reflector and reports every type-2 it receives, with the time it
// got it, so that latencies are taken where the fabric sees the route and
// not by polling a CLI.
func listen(in *bufio.Scanner, enc *json.Encoder, log *slog.Logger, req injectRequest) error {
	var pr peerRequest
	if err := readLine(in, &pr); err != nil {
		return fmt.Errorf("read peer request: %w", err)
	}
	ctx := context.Background()
	s := bgp.New(log)
	err := s.Start(ctx, bgp.Config{
		RouterID:        req.RouterID,
		ASN:             req.ASN,
		NextHop:         req.RouterID,
		ListenAddresses: []netip.Addr{req.RouterID},
		ListenPort:      -1,
		Peers:           []bgp.PeerConfig{{Address: pr.Peer, ASN: pr.ASN, Description: "rr"}},
	})
	if err != nil {
		return fmt.Errorf("start bgp: %w", err)
	}
	defer s.Stop()
	stdinDone := make(chan struct{})
	go func() {
		for in.Scan() {
		}
		close(stdinDone)
	}()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var mu sync.Mutex // enc is shared by the route loop and the state loop
	emit := func(ev injectEvent) error {
		mu.Lock()
		defer mu.Unlock()
		return enc.Encode(ev)
	}
	routesDone := make(chan error, 1)
	go func() {
		for batch := range s.Events() {
			at := time.Now().UnixNano()
			for _, r := range batch {
				m, ok := r.NLRI.(*evpn.MACIP)
				if !ok || r.Withdraw {
					continue
				}
				if err := emit(injectEvent{Event: "route", MAC: m.MAC.String(), VTEP: r.NextHop, At: at}); err != nil {
					routesDone <- err
					return
				}
			}
		}
		routesDone <- nil
	}()
	established := false
	for {
		select {
		case <-stdinDone:
			return nil
		case err := <-routesDone:
			if err != nil {
				return err
			}
			return errors.New("route stream ended")
		case <-tick.C:
			if established {
				continue
			}
			peers, err := s.Peers(ctx)
			if err != nil {
				return fmt.Errorf("peer %s: state: %w", pr.Peer, err)
			}
			if len(peers) == 1 && peers[0].State == "established" {
				established = true
				log.Info("session established", "peer", pr.Peer)
				if err := emit(injectEvent{Event: "established", At: time.Now().UnixNano()}); err != nil {
					return err
				}
			}
		}
	}
}

// kill ends the injector at once: its BGP session goes down with it, as
// when a peer dies.
func (inj *injector) kill() error {
	if err := inj.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill injector: %w", err)
	}
	<-inj.done
	return nil
}
