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
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/evpnd/evpnd/integration/lab"
)

// B7 scale-out: many hosts of one kind, two FRR route reflectors and many
// tenants spread over the hosts, all on one underlay bridge.

// ScaleOutOptions sizes B7.
type ScaleOutOptions struct {
	Hosts   int // hosts of the DUT's kind, each a client of both route reflectors
	Tenants int // L2VNIs, each on min(3, Hosts) hosts
	MACs    int // workload MACs of each tenant on each of its hosts
}

// Limits of ScaleOutOptions: host addresses are 10.0.0.1..200 (the route
// reflectors are .253 and .254); a MAC holds the tenant in two bytes and
// the host and the workload in one each; VNIs start at scaleVNIBase.
const (
	MaxScaleOutHosts   = 200
	MaxScaleOutTenants = 4000
	MaxScaleOutMACs    = 250
	scaleVNIBase       = 1000
	scaleReplicas      = 3
	// scaleSettle lets the burst of type-3 routes that follows the
	// sessions coming up pass before anything is timed: B7 measures the
	// type-2s of the workloads, not the session start.
	scaleSettle = 2 * time.Second
	// scaleResendEvery is how often a workload MAC that no local bridge
	// has learned yet (a frame the kernel dropped) is sent again.
	scaleResendEvery = 2 * time.Second
)

var scaleRRs = []netip.Addr{netip.MustParseAddr("10.0.0.253"), netip.MustParseAddr("10.0.0.254")}

// scaleOUI is the first two bytes of every B7 workload MAC, apart from the
// other benchmarks' (0x02, 0xbe).
var scaleOUI = [2]byte{0x02, 0xb7}

// ScaleOutResult is B7 for one DUT.
type ScaleOutResult struct {
	DUT     DUT `json:"dut"`
	Hosts   int `json:"hosts"`
	Tenants int `json:"tenants"`
	MACs    int `json:"macs_per_tenant_host"`
	// RemoteMin and RemoteMax bound how many remote MACs one host must
	// install: its tenants' MACs on their other hosts.
	RemoteMin int `json:"remote_min"`
	RemoteMax int `json:"remote_max"`
	// BringUp is the lab bring-up (namespaces, links, daemons started one
	// after the other); Sessions is from then until both route
	// reflectors have every host established. Neither is part of Converge.
	BringUp  time.Duration `json:"bring_up_ns"`
	Sessions time.Duration `json:"sessions_ns"`
	// Converge (B7) is from the first gratuitous ARP of the burst, every
	// workload of every tenant on every host sending one, until the
	// netlink update that gave the last host the last remote MAC pointing
	// at the right VTEP.
	Converge time.Duration `json:"converge_ns"`
	// First is from the first frame until any host installed any remote
	// MAC: the latency of one route through the fabric, where Converge
	// is bound by throughput.
	First time.Duration `json:"first_ns"`
	// HostConverge is the same for each host on its own, host order.
	HostConverge []time.Duration `json:"host_converge_ns"`
	// Resent counts frames sent again because no local bridge had
	// learned their MAC; normally zero.
	Resent int `json:"resent,omitempty"`
	// RSS is each host's VmHWM after convergence: evpnd's, or bgpd's plus
	// zebra's. The route reflectors are not counted.
	RSS   []uint64 `json:"rss_bytes"`
	LabID string   `json:"lab_id"`
}

// RSSMedian is the median host's RSS.
func (r ScaleOutResult) RSSMedian() uint64 { return median(r.RSS) }

// RSSMax is the largest host's RSS.
func (r ScaleOutResult) RSSMax() uint64 {
	if len(r.RSS) == 0 {
		return 0
	}
	return slices.Max(r.RSS)
}

// HostConvergeMedian is the median of the hosts' own convergence times.
func (r ScaleOutResult) HostConvergeMedian() time.Duration { return median(r.HostConverge) }

func median[T int64 | uint64 | time.Duration](v []T) T {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// scalePlan is where every tenant lives and what each host must learn.
type scalePlan struct {
	o       ScaleOutOptions
	hosts   [][]int // tenants of each host
	tenants [][]int // hosts of each tenant
}

func newScalePlan(o ScaleOutOptions) scalePlan {
	p := scalePlan{o: o, hosts: make([][]int, o.Hosts), tenants: make([][]int, o.Tenants)}
	r := min(scaleReplicas, o.Hosts)
	// Spread a tenant's hosts evenly around the ring so that no two hosts
	// share all their tenants and each host peers in the overlay with many
	// others, as in a fabric where placement is not coordinated.
	stride := o.Hosts / r
	for t := range o.Tenants {
		for j := range r {
			h := (t + j*stride) % o.Hosts
			p.tenants[t] = append(p.tenants[t], h)
			p.hosts[h] = append(p.hosts[h], t)
		}
	}
	return p
}

// remote is how many MACs host h must install.
func (p scalePlan) remote(h int) int {
	n := 0
	for _, t := range p.hosts[h] {
		n += (len(p.tenants[t]) - 1) * p.o.MACs
	}
	return n
}

func scaleHostName(h int) string          { return fmt.Sprintf("h%02d", h+1) }
func scaleHostAddr(h int) netip.Addr      { return netip.AddrFrom4([4]byte{10, 0, 0, byte(h + 1)}) }
func scaleVNI(t int) int                  { return scaleVNIBase + t }
func scaleTenantName(t int) string        { return fmt.Sprintf("t%d", t) }
func scalePort(t int) (bridge, wl string) { return fmt.Sprintf("p%d", t), fmt.Sprintf("w%d", t) }
func scaleMACIP(h, i int) netip.Addr      { return netip.AddrFrom4([4]byte{172, 16, byte(h), byte(i + 1)}) }
func scaleMAC(t, h, i int) net.HardwareAddr {
	return net.HardwareAddr{scaleOUI[0], scaleOUI[1], byte(t >> 8), byte(t), byte(h), byte(i)}
}

// RunScaleOut brings up B7's lab with hosts of kind dut, waits for every
// session, sends the workloads' frames and waits until every host has
// every remote MAC of its tenants, then tears the lab down.
func RunScaleOut(ctx context.Context, dut DUT, so ScaleOutOptions, opts Options) (res ScaleOutResult, err error) {
	res = ScaleOutResult{DUT: dut, Hosts: so.Hosts, Tenants: so.Tenants, MACs: so.MACs}
	if so.Hosts < 2 || so.Hosts > MaxScaleOutHosts || so.Tenants < 1 || so.Tenants > MaxScaleOutTenants || so.MACs < 1 || so.MACs > MaxScaleOutMACs {
		return res, fmt.Errorf("scale-out: %d hosts, %d tenants, %d macs: want 2..%d hosts, 1..%d tenants, 1..%d macs",
			so.Hosts, so.Tenants, so.MACs, MaxScaleOutHosts, MaxScaleOutTenants, MaxScaleOutMACs)
	}
	opts, err = prepare(dut, opts)
	if err != nil {
		return res, err
	}
	plan := newScalePlan(so)
	res.RemoteMin, res.RemoteMax = plan.remote(0), plan.remote(0)
	for h := range so.Hosts {
		res.RemoteMin, res.RemoteMax = min(res.RemoteMin, plan.remote(h)), max(res.RemoteMax, plan.remote(h))
	}

	dir, err := os.MkdirTemp("", "evpnd-b7-")
	if err != nil {
		return res, fmt.Errorf("scale-out topology dir: %w", err)
	}
	// The lab copies FRR configs into its run directory but evpnd reads
	// its config in place, so the directory stays until the lab is down.
	keepDir := false
	defer func() {
		if !keepDir {
			if rerr := os.RemoveAll(dir); rerr != nil {
				err = errors.Join(err, fmt.Errorf("remove topology dir: %w", rerr))
			}
		}
	}()
	topo, err := writeScaleTopology(dir, dut, plan)
	if err != nil {
		return res, err
	}
	runCtx, cancel := context.WithTimeoutCause(ctx, opts.Timeout, fmt.Errorf("run timeout %s", opts.Timeout))
	defer cancel()
	began := time.Now()
	l, cleanup, err := bringUp(ctx, topo, opts, func() {
		keepDir = true
		opts.Logf("scale-out topology kept in %s", dir)
	})
	if err != nil {
		return res, fmt.Errorf("%s scale-out: %w", dut, err)
	}
	res.BringUp = time.Since(began)
	res.LabID = l.ID
	defer func() { err = cleanup(err) }()
	opts.Logf("lab %s: %d %s hosts up after %s", l.ID, so.Hosts, dut, res.BringUp.Round(time.Millisecond))
	if err := scaleOut(runCtx, l, dut, plan, opts, &res); err != nil {
		return res, fmt.Errorf("%s scale-out, %d hosts, lab %s: %w", dut, so.Hosts, l.ID, err)
	}
	return res, nil
}

// writeScaleTopology writes the lab's topology file and the hosts' and
// route reflectors' configs to dir and returns the topology's path.
func writeScaleTopology(dir string, dut DUT, p scalePlan) (string, error) {
	var files = map[string]string{}
	var y strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&y, format, a...) }
	w("# Generated by integration/cmd/bench for B7 (scale-out).\nname: bench-scaleout-%s\n\ntopology:\n  nodes:\n    fabric:\n      kind: bridge\n", dut)
	for i, a := range scaleRRs {
		name := fmt.Sprintf("rr%d", i+1)
		files[name+".conf"] = scaleRRConf(name, a)
		w("    %s:\n      kind: linux\n      image: quay.io/frrouting/frr:8.4.4\n      labels:\n        evpnd.frr/zebra: \"false\"\n", name)
		w("      binds:\n        - %s.conf:/etc/frr/frr.conf\n      exec:\n        - ip addr add %s/24 dev eth1\n", name, a)
	}
	for h := range p.o.Hosts {
		name := scaleHostName(h)
		addr := scaleHostAddr(h)
		// One ip batch per host: a fork per command would make the
		// bring-up of the full lab take minutes.
		var b strings.Builder
		fmt.Fprintf(&b, "ip -batch - <<'EOF'\naddress add %s/24 dev eth1\n", addr)
		for _, t := range p.hosts[h] {
			port, wl := scalePort(t)
			// No IPv6 link-local addresses: their DAD and router
			// solicitations would teach the bridges MACs beyond the
			// workloads'.
			fmt.Fprintf(&b, "link add %s type veth peer name %s\n", port, wl)
			fmt.Fprintf(&b, "link set %s addrgenmode none\nlink set %s addrgenmode none\nlink set %s up\n", port, wl, wl)
			if dut == FRR {
				vni := scaleVNI(t)
				fmt.Fprintf(&b, "link add br%d type bridge\nlink set br%d addrgenmode none\n", vni, vni)
				fmt.Fprintf(&b, "link add vx%d type vxlan id %d local %s dstport 4789 nolearning\n", vni, vni, addr)
				fmt.Fprintf(&b, "link set vx%d master br%d addrgenmode none\n", vni, vni)
				fmt.Fprintf(&b, "link set dev vx%d type bridge_slave neigh_suppress on learning off\n", vni)
				fmt.Fprintf(&b, "link set %s master br%d\n", port, vni)
				fmt.Fprintf(&b, "link set vx%d up\nlink set br%d up\n", vni, vni)
			}
			fmt.Fprintf(&b, "link set %s up\n", port)
		}
		b.WriteString("EOF")
		w("    %s:\n      kind: linux\n", name)
		if dut == FRR {
			files[name+".conf"] = scaleFRRHostConf(name, addr)
			w("      image: quay.io/frrouting/frr:8.4.4\n      binds:\n        - %s.conf:/etc/frr/frr.conf\n", name)
		} else {
			files[name+".yaml"] = scaleEvpndConf(addr, p.hosts[h])
			w("      image: ghcr.io/evpnd/evpnd:latest\n      binds:\n        - %s.yaml:/etc/evpnd/evpnd.yaml\n", name)
		}
		w("      exec:\n        - |\n")
		for _, line := range strings.Split(b.String(), "\n") {
			w("          %s\n", line)
		}
	}
	w("\n  links:\n")
	for i := range scaleRRs {
		w("    - endpoints: [\"rr%d:eth1\", \"fabric:rr%d\"]\n", i+1, i+1)
	}
	for h := range p.o.Hosts {
		w("    - endpoints: [\"%s:eth1\", \"fabric:%s\"]\n", scaleHostName(h), scaleHostName(h))
	}
	files["bench-scaleout.clab.yml"] = y.String()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			return "", fmt.Errorf("scale-out topology: %w", err)
		}
	}
	return filepath.Join(dir, "bench-scaleout.clab.yml"), nil
}

func scaleRRConf(name string, a netip.Addr) string {
	return fmt.Sprintf(`frr defaults datacenter
hostname %s
log stdout informational
!
! Route reflector of B7: every host connects, the RR reflects every EVPN
! route with next hop and route targets unchanged. The two RRs do not
! peer with each other; every host peers with both.
router bgp 65000
 bgp router-id %s
 no bgp default ipv4-unicast
 neighbor hosts peer-group
 neighbor hosts remote-as 65000
 bgp listen range 10.0.0.0/24 peer-group hosts
 bgp listen limit 1000
 !
 address-family l2vpn evpn
  neighbor hosts activate
  neighbor hosts route-reflector-client
 exit-address-family
exit
!
`, name, a)
}

func scaleFRRHostConf(name string, a netip.Addr) string {
	var b strings.Builder
	fmt.Fprintf(&b, "frr defaults datacenter\nhostname %s\nlog stdout informational\nno ipv6 forwarding\n!\n", name)
	b.WriteString("! FRR host of B7: zebra learns every tenant's VNI from its vxlan device and\n! the workload MACs on its bridge; bgpd peers with both route reflectors.\n")
	fmt.Fprintf(&b, "router bgp 65000\n bgp router-id %s\n no bgp default ipv4-unicast\n neighbor rr peer-group\n neighbor rr remote-as 65000\n", a)
	for _, rr := range scaleRRs {
		fmt.Fprintf(&b, " neighbor %s peer-group rr\n", rr)
	}
	b.WriteString(" !\n address-family l2vpn evpn\n  neighbor rr activate\n  advertise-all-vni\n exit-address-family\nexit\n!\n")
	return b.String()
}

func scaleEvpndConf(a netip.Addr, tenants []int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# evpnd host of B7; the lab runner overrides netns-prefix, state-dir\n# and api.listen per run.\n")
	fmt.Fprintf(&b, "router-id: %s\nasn: 65000\nvtep-address: %s\nnetns-prefix: evpn-\nrt-preset: frr\n", a, a)
	fmt.Fprintf(&b, "bgp:\n  listen-addresses: [%s]\n  listen-port: 179\npeers:\n", a)
	for i, rr := range scaleRRs {
		fmt.Fprintf(&b, "  - address: %s\n    asn: 65000\n    description: rr%d\n", rr, i+1)
	}
	b.WriteString("tenants:\n")
	for _, t := range tenants {
		port, _ := scalePort(t)
		fmt.Fprintf(&b, "  - name: %s\n    segments:\n      - name: seg%d\n        vni: %d\n        ports: [%s]\n", scaleTenantName(t), scaleVNI(t), scaleVNI(t), port)
	}
	b.WriteString("api:\n  listen: unix:///run/evpnd/evpnd.sock\nstate-dir: /var/lib/evpnd\nlog:\n  level: info\n  format: text\n")
	return b.String()
}

// scaleBridgeNS is where host h keeps tenant t's bridge: the tenant
// namespace evpnd made, or the FRR host's own.
func scaleBridgeNS(l *lab.Lab, dut DUT, h, t int) string {
	if dut == Evpnd {
		return l.TenantNS(scaleHostName(h), scaleTenantName(t))
	}
	return l.NS(scaleHostName(h))
}

func scaleOut(ctx context.Context, l *lab.Lab, dut DUT, p scalePlan, opts Options, res *ScaleOutResult) error {
	up := time.Now()
	if err := pollCtx(ctx, 200*time.Millisecond, func() error { return scaleSessionsUp(l, p.o.Hosts) }); err != nil {
		return fmt.Errorf("sessions: %w", err)
	}
	res.Sessions = time.Since(up)
	opts.Logf("lab %s: every host established with both route reflectors after %s", l.ID, res.Sessions.Round(time.Millisecond))
	for h := range p.o.Hosts {
		if err := pollCtx(ctx, 100*time.Millisecond, func() error { return scaleHostReady(l, dut, p, h) }); err != nil {
			return fmt.Errorf("%s not ready: %w", scaleHostName(h), err)
		}
	}
	if err := pause(ctx, scaleSettle); err != nil {
		return err
	}

	tr := newScaleTracker(dut, p)
	var watches []*scaleWatch
	defer func() {
		for _, w := range watches {
			w.close()
		}
	}()
	for ns := range tr.namespaces {
		w, err := tr.watch(l, ns)
		if err != nil {
			return err
		}
		watches = append(watches, w)
	}
	senders := make([]*scaleSender, p.o.Hosts)
	defer func() {
		for _, s := range senders {
			if s != nil {
				s.close()
			}
		}
	}()
	for h := range senders {
		s, err := newScaleSender(l.NS(scaleHostName(h)))
		if err != nil {
			return err
		}
		senders[h] = s
	}
	if n := tr.seen(); n != 0 {
		return fmt.Errorf("%d remote workload macs in the fdbs before any frame was sent", n)
	}

	opts.Logf("lab %s: B7: %d workload macs on %d hosts, %d..%d remote macs per host", l.ID, p.o.Tenants*min(scaleReplicas, p.o.Hosts)*p.o.MACs, p.o.Hosts, res.RemoteMin, res.RemoteMax)
	t0 := time.Now()
	for h, s := range senders {
		for _, t := range p.hosts[h] {
			for i := range p.o.MACs {
				if err := s.garp(t, scaleMAC(t, h, i), scaleMACIP(h, i)); err != nil {
					return err
				}
			}
		}
	}
	resend := time.NewTicker(scaleResendEvery)
	defer resend.Stop()
	for {
		select {
		case <-tr.done:
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", tr.missing(), context.Cause(ctx))
		case <-resend.C:
			if err := tr.failed(); err != nil {
				return err
			}
			opts.Logf("lab %s: %s", l.ID, tr.missing())
			for _, k := range tr.unlearned() {
				if err := senders[k.h].garp(k.t, scaleMAC(k.t, k.h, k.i), scaleMACIP(k.h, k.i)); err != nil {
					return err
				}
				res.Resent++
			}
			continue
		}
		break
	}
	if err := tr.failed(); err != nil {
		return err
	}
	res.Converge, res.First, res.HostConverge = tr.times(t0)
	opts.Logf("lab %s: every host has every remote mac %s after the first frame (%d frames sent again)", l.ID, res.Converge.Round(time.Millisecond), res.Resent)

	for h := range p.o.Hosts {
		rss, err := hostRSS(l, dut, scaleHostName(h))
		if err != nil {
			return err
		}
		res.RSS = append(res.RSS, rss)
	}
	return nil
}

// scaleSessionsUp checks that both route reflectors have every host
// established.
func scaleSessionsUp(l *lab.Lab, hosts int) error {
	for i := range scaleRRs {
		rr := fmt.Sprintf("rr%d", i+1)
		states, err := l.BGPPeerStates(rr)
		if err != nil {
			return err
		}
		n := 0
		for _, s := range states {
			if s == "Established" {
				n++
			}
		}
		if n < hosts {
			return fmt.Errorf("%s has %d of %d hosts established", rr, n, hosts)
		}
	}
	return nil
}

// scaleHostReady checks that a host can take its workloads' frames: every
// port on its tenant's bridge and, for FRR, bgpd knowing every VNI from
// zebra (before that, zebra would not tell bgpd about the MACs).
func scaleHostReady(l *lab.Lab, dut DUT, p scalePlan, h int) error {
	for _, t := range p.hosts[h] {
		port, _ := scalePort(t)
		if err := onBridge(scaleBridgeNS(l, dut, h, t), port, fmt.Sprintf("br%d", scaleVNI(t))); err != nil {
			return err
		}
	}
	if dut != FRR {
		return nil
	}
	var vnis map[string]any
	if err := l.VtyshJSON(scaleHostName(h), "show bgp l2vpn evpn vni json", &vnis); err != nil {
		return err
	}
	for _, t := range p.hosts[h] {
		if _, ok := vnis[fmt.Sprint(scaleVNI(t))]; !ok {
			return fmt.Errorf("bgpd does not know vni %d yet", scaleVNI(t))
		}
	}
	return nil
}

// onBridge checks that port is up and enslaved to bridge in ns.
func onBridge(ns, port, bridge string) error {
	h, err := lab.HandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	br, err := h.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", ns, bridge, err)
	}
	pl, err := h.LinkByName(port)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", ns, port, err)
	}
	if pl.Attrs().MasterIndex != br.Attrs().Index || pl.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("%s: %s is not up on %s", ns, port, bridge)
	}
	return nil
}

// scaleSender sends the workloads' frames of one host: one packet socket
// in the host namespace, writing to each tenant's workload end of its veth
// pair. Protocol 0 keeps the socket from receiving a copy of every frame
// of the namespace.
type scaleSender struct {
	fs    frameSender
	ports map[int]int // tenant -> ifindex of its workload end
}

func newScaleSender(ns string) (*scaleSender, error) {
	s := &scaleSender{fs: frameSender{fd: -1, ns: ns}, ports: map[int]int{}}
	err := inNS(ns, func() error {
		ifs, err := net.Interfaces()
		if err != nil {
			return err
		}
		for _, ifi := range ifs {
			var t int
			if _, err := fmt.Sscanf(ifi.Name, "w%d", &t); err == nil {
				s.ports[t] = ifi.Index
			}
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		s.fs.fd = fd
		return nil
	})
	if err != nil {
		if s.fs.fd >= 0 {
			unix.Close(s.fs.fd)
		}
		return nil, fmt.Errorf("frame sender in %s: %w", ns, err)
	}
	return s, nil
}

func (s *scaleSender) garp(t int, mac net.HardwareAddr, ip netip.Addr) error {
	idx, ok := s.ports[t]
	if !ok {
		return fmt.Errorf("%s: no workload port of tenant %d", s.fs.ns, t)
	}
	s.fs.ifindex = idx
	return s.fs.garp(mac, ip)
}

func (s *scaleSender) close() { s.fs.close() }

// scaleKey is one workload MAC in one bridge namespace.
type scaleKey struct {
	ns  int
	mac [6]byte
}

// scaleOrigin is where a workload MAC lives: its tenant, host, index.
type scaleOrigin struct{ t, h, i int }

// scaleTracker follows the FDBs of every bridge namespace of the lab and
// knows when every host holds every remote MAC it should.
type scaleTracker struct {
	namespaces []scaleNS

	mu        sync.Mutex
	remote    map[scaleKey]netip.Addr // expected VTEP of each remote MAC
	have      map[scaleKey]bool
	left      []int       // remote MACs each host still lacks
	hostDone  []time.Time // when each host got its last one
	leftAll   int
	local     map[scaleKey]scaleOrigin // workload MACs on their own host
	learned   map[scaleKey]bool
	doneAt    time.Time
	firstAt   time.Time
	done      chan struct{}
	err       error
	installed int // remote MACs ever seen at the right VTEP, for seen()
}

// scaleNS is one bridge namespace: host's own (FRR, tenant -1) or the
// namespace evpnd made there for tenant.
type scaleNS struct {
	host, tenant int
}

func (sn scaleNS) name(l *lab.Lab) string {
	if sn.tenant < 0 {
		return l.NS(scaleHostName(sn.host))
	}
	return l.TenantNS(scaleHostName(sn.host), scaleTenantName(sn.tenant))
}

func newScaleTracker(dut DUT, p scalePlan) *scaleTracker {
	tr := &scaleTracker{remote: map[scaleKey]netip.Addr{}, have: map[scaleKey]bool{}, local: map[scaleKey]scaleOrigin{},
		learned: map[scaleKey]bool{}, left: make([]int, p.o.Hosts), hostDone: make([]time.Time, p.o.Hosts), done: make(chan struct{})}
	index := map[scaleNS]int{}
	for h, ts := range p.hosts {
		for _, t := range ts {
			sn := scaleNS{host: h, tenant: t}
			if dut == FRR {
				sn.tenant = -1
			}
			ns, ok := index[sn]
			if !ok {
				ns = len(tr.namespaces)
				index[sn] = ns
				tr.namespaces = append(tr.namespaces, sn)
			}
			for _, o := range p.tenants[t] {
				for i := range p.o.MACs {
					k := scaleKey{ns: ns, mac: [6]byte(scaleMAC(t, o, i))}
					if o == h {
						tr.local[k] = scaleOrigin{t: t, h: h, i: i}
						continue
					}
					tr.remote[k] = scaleHostAddr(o)
					tr.left[h]++
					tr.leftAll++
				}
			}
		}
	}
	return tr
}

// watch subscribes to the FDB of one bridge namespace.
func (tr *scaleTracker) watch(l *lab.Lab, ns int) (*scaleWatch, error) {
	name := tr.namespaces[ns].name(l)
	ch, done, err := subscribeFDB(name, 1024, 1<<21, func(err error) {
		tr.mu.Lock()
		if tr.err == nil {
			tr.err = fmt.Errorf("fdb subscription in %s: %w", name, err)
		}
		tr.mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	w := &scaleWatch{done: done, ch: ch}
	go func() {
		for u := range w.ch {
			tr.update(ns, u, time.Now())
		}
	}()
	return w, nil
}

func (tr *scaleTracker) update(ns int, u netlink.NeighUpdate, at time.Time) {
	n := u.Neigh
	if n.Family != unix.AF_BRIDGE || len(n.HardwareAddr) != 6 || [2]byte(n.HardwareAddr[:2]) != scaleOUI {
		return
	}
	k := scaleKey{ns: ns, mac: [6]byte(n.HardwareAddr)}
	add := u.Type == unix.RTM_NEWNEIGH
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if n.IP == nil {
		// The bridge's own entry: a local MAC is learned on the port,
		// never extern_learn.
		if _, ok := tr.local[k]; ok && n.Flags&netlink.NTF_EXT_LEARNED == 0 {
			tr.learned[k] = add
		}
		return
	}
	want, ok := tr.remote[k]
	if !ok {
		return
	}
	vtep, _ := netip.AddrFromSlice(n.IP)
	at1 := add && vtep.Unmap() == want
	h := tr.namespaces[ns].host
	switch {
	case at1 && !tr.have[k]:
		tr.have[k] = true
		if tr.installed == 0 {
			tr.firstAt = at
		}
		tr.installed++
		tr.left[h]--
		tr.leftAll--
		if tr.left[h] == 0 {
			tr.hostDone[h] = at
		}
		if tr.leftAll == 0 && tr.doneAt.IsZero() {
			tr.doneAt = at
			close(tr.done)
		}
	case !at1 && tr.have[k] && (add || vtep.Unmap() == want):
		// Deleted, or moved to another VTEP: no longer there.
		tr.have[k] = false
		tr.left[h]++
		tr.leftAll++
	}
}

// seen counts remote MACs installed so far.
func (tr *scaleTracker) seen() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.installed
}

func (tr *scaleTracker) failed() error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.err
}

// missing says how far the hosts are.
func (tr *scaleTracker) missing() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var lacking []string
	for h, n := range tr.left {
		if n > 0 {
			lacking = append(lacking, fmt.Sprintf("%s lacks %d", scaleHostName(h), n))
		}
	}
	if len(lacking) > 6 {
		lacking = append(lacking[:6], "...")
	}
	return fmt.Sprintf("%d remote macs missing on %d hosts (%s)", tr.leftAll, countIf(tr.left, func(n int) bool { return n > 0 }), strings.Join(lacking, ", "))
}

func countIf(v []int, f func(int) bool) int {
	n := 0
	for _, x := range v {
		if f(x) {
			n++
		}
	}
	return n
}

// unlearned lists the workload MACs no bridge of their own host holds.
func (tr *scaleTracker) unlearned() []scaleOrigin {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []scaleOrigin
	for k, o := range tr.local {
		if !tr.learned[k] {
			out = append(out, o)
		}
	}
	return out
}

// times is Converge, First and HostConverge from t0.
func (tr *scaleTracker) times(t0 time.Time) (all, first time.Duration, hosts []time.Duration) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	hosts = make([]time.Duration, len(tr.hostDone))
	for h, at := range tr.hostDone {
		if !at.IsZero() { // a host without remote MACs has nothing to wait for
			hosts[h] = at.Sub(t0)
		}
	}
	return tr.doneAt.Sub(t0), tr.firstAt.Sub(t0), hosts
}

type scaleWatch struct {
	done chan struct{}
	ch   chan netlink.NeighUpdate
}

// close ends the subscription; its goroutine drains ch until the library
// closes it once the socket sees its next message or the namespace goes.
func (w *scaleWatch) close() { close(w.done) }
