package fabric

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/evpnd/evpnd/evpn"
)

// VXLANPort is the UDP port of every VXLAN device evpnd creates.
const VXLANPort = 4789

// What VXLAN adds to a frame: outer Ethernet, IP, UDP and VXLAN headers.
const (
	vxlanOverhead4 = 50
	vxlanOverhead6 = 70
)

// DefaultLearnBuffer is the Learned channel capacity when Options leaves it
// zero.
const DefaultLearnBuffer = 1 << 16

// DefaultNeighborKeepalive is how often learned local neighbors are
// re-probed when Options leaves it zero: well inside the bridge's default
// 300 s FDB ageing, so a silent but live workload keeps its MAC.
const DefaultNeighborKeepalive = 60 * time.Second

// Options configures a Linux datapath.
type Options struct {
	Logger *slog.Logger
	// Underlay is the namespace holding the VTEP address and the workload
	// ports before they are attached. nil means the namespace of the
	// calling thread at New. New duplicates the handle; the caller keeps
	// ownership of its own.
	Underlay *netns.NsHandle
	// LearnBuffer is the capacity of the Learned channel. When the
	// consumer falls this far behind, fabric stops reading netlink events;
	// the kernel then drops events on the subscription socket and fabric
	// resubscribes, redelivering the current facts (and Gone for facts that
	// vanished meanwhile). Nothing is lost for good, but intermediate
	// states can be skipped. Removing a tenant reports Gone for its facts
	// and waits for the channel to take them, so a consumer that stops
	// reading also stalls that Set; Close always ends the wait.
	LearnBuffer int
	// NeighborKeepalive is how often every learned local neighbor (a
	// workload IP on a segment bridge) is handed back to the kernel with
	// NTF_USE: a stale entry is re-probed by unicast ARP/NS, so a live but
	// silent host answers and refreshes its neighbor and bridge FDB entry,
	// and a host that is gone fails the probe and is reported Gone. Zero
	// means DefaultNeighborKeepalive, negative turns it off.
	NeighborKeepalive time.Duration
}

// Linux is the Datapath on a Linux kernel: one netlink handle and one
// batch socket per namespace, all owned here.
type Linux struct {
	log      *slog.Logger
	underlay netns.NsHandle
	uh       *netlink.Handle

	learned   chan Learned
	keepalive time.Duration
	done      chan struct{}
	wg        sync.WaitGroup

	// mu serialises Set, Update, Sync, MACs and Close; it guards every
	// field below.
	mu      sync.Mutex
	closed  bool
	cfg     Config
	tenants map[string]*tenantNS
	byVNI   map[evpn.VNI]*segState
	byL3    map[evpn.VNI]*l3State // by L3VNI
	remote  remoteState
	// gen counts Sets, so a Snapshot taken before one is not used after.
	gen uint64
	// adopted is set once Set opens a tenant namespace that was already
	// there: it may hold remote entries of an earlier run.
	adopted bool
	// uplinkFwd holds the forwarding sysctls of the underlay evpnd turned
	// on for tenant uplinks, to turn off when the last uplink goes.
	uplinkFwd map[string]bool

	// pendMu guards pending on its own, so link watchers never wait for a
	// Set in progress.
	pendMu  sync.Mutex
	pending map[string]portWant
	// configured is every port the current config names.
	configured map[string]portWant

	batches, writes, writeErrors atomic.Uint64
	lastBatch                    atomic.Int64
	localLearned                 atomic.Int64
}

// tenantNS is one tenant namespace and what fabric holds open in it.
type tenantNS struct {
	name   string // tenant name
	nsName string // namespace name (prefix + tenant)
	ns     netns.NsHandle
	h      *netlink.Handle
	bw     *batchWriter
	stop   chan struct{}
	exited chan struct{}
	// dropFacts makes the learner report Gone for everything it knows
	// when it stops, because the tenant is being removed.
	dropFacts bool
	// l3vni is the tenant's L3VNI (0 when not routed); the learner reads
	// it to leave the L3VNI bridge out of local learning.
	l3vni atomic.Uint32
	// local is what the learner holds as local MACs, for write to tell
	// it of remote entries written over them.
	local *localMACs
}

// segState is one configured segment as last set.
type segState struct {
	tenant  *tenantNS
	vni     evpn.VNI
	vxIndex int
	brIndex int
}

// l3State is a routed tenant's L3VNI as last set.
type l3State struct {
	tenant  *tenantNS
	vni     evpn.VNI
	vxIndex int
	brIndex int
}

// portWant is a workload port named in the config but not attached yet.
type portWant struct {
	tenant string
	vni    evpn.VNI
}

// remoteState is what evpnd believes it has installed; it decides which
// deletes are stale (a MAC that moved to another VTEP) and feeds Stats.
type remoteState struct {
	fdb   map[macKey]netip.Addr
	flood map[floodKey]struct{}
	neigh map[ipKey][6]byte
	// Routed tenants: router MAC per (L3VNI, VTEP) and the VTEPs of each
	// EVPN route per (L3VNI, prefix).
	rmac   map[rmacKey][6]byte
	routes map[routeKey][]netip.Addr
}

type rmacKey struct {
	vni  evpn.VNI
	vtep netip.Addr
}

type routeKey struct {
	vni    evpn.VNI
	prefix netip.Prefix
}

type macKey struct {
	vni evpn.VNI
	mac [6]byte
}

type floodKey struct {
	vni  evpn.VNI
	vtep netip.Addr
}

type ipKey struct {
	vni evpn.VNI
	ip  netip.Addr
}

func newRemoteState() remoteState {
	return remoteState{
		fdb:    make(map[macKey]netip.Addr),
		flood:  make(map[floodKey]struct{}),
		neigh:  make(map[ipKey][6]byte),
		rmac:   make(map[rmacKey][6]byte),
		routes: make(map[routeKey][]netip.Addr),
	}
}

var _ Datapath = (*Linux)(nil)

// New opens the underlay namespace and starts watching it for workload
// ports. Tenants appear with the first Set.
func New(opts Options) (*Linux, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	var underlay netns.NsHandle
	if opts.Underlay == nil {
		ns, err := netns.Get()
		if err != nil {
			return nil, fmt.Errorf("open underlay namespace: %w", err)
		}
		underlay = ns
	} else {
		fd, err := unix.FcntlInt(uintptr(*opts.Underlay), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("duplicate underlay namespace handle: %w", err)
		}
		underlay = netns.NsHandle(fd)
	}
	uh, err := netlink.NewHandleAt(underlay, unix.NETLINK_ROUTE)
	if err != nil {
		underlay.Close()
		return nil, fmt.Errorf("netlink handle in underlay namespace: %w", err)
	}
	size := opts.LearnBuffer
	if size <= 0 {
		size = DefaultLearnBuffer
	}
	keepalive := opts.NeighborKeepalive
	if keepalive == 0 {
		keepalive = DefaultNeighborKeepalive
	}
	l := &Linux{
		log:       log,
		underlay:  underlay,
		uh:        uh,
		learned:   make(chan Learned, size),
		keepalive: keepalive,
		done:      make(chan struct{}),
		tenants:   make(map[string]*tenantNS),
		byVNI:     make(map[evpn.VNI]*segState),
		byL3:      make(map[evpn.VNI]*l3State),
		remote:    newRemoteState(),
		uplinkFwd: make(map[string]bool),
		pending:   make(map[string]portWant),
	}
	if err := l.watchUnderlay(); err != nil {
		uh.Close()
		underlay.Close()
		return nil, err
	}
	return l, nil
}

// Learned delivers local learning facts; it is closed by Close.
func (l *Linux) Learned() <-chan Learned { return l.learned }

// Stats reports counters since New.
func (l *Linux) Stats() Stats {
	l.mu.Lock()
	fdb, flood, neigh := len(l.remote.fdb), len(l.remote.flood), len(l.remote.neigh)
	routes, rmacs := len(l.remote.routes), len(l.remote.rmac)
	l.mu.Unlock()
	return Stats{
		Batches:      l.batches.Load(),
		Writes:       l.writes.Load(),
		WriteErrors:  l.writeErrors.Load(),
		LastBatch:    time.Duration(l.lastBatch.Load()),
		RemoteFDB:    fdb,
		RemoteFlood:  flood,
		RemoteNeigh:  neigh,
		RemoteRoutes: routes,
		RouterMACs:   rmacs,
		LocalLearned: int(l.localLearned.Load()),
	}
}

// Close stops the watchers and releases handles; kernel objects stay.
func (l *Linux) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.done)
	tenants := l.tenants
	l.tenants = map[string]*tenantNS{}
	l.mu.Unlock()

	for _, t := range tenants {
		t.shutdown()
	}
	l.wg.Wait()
	close(l.learned)
	l.uh.Close()
	return l.underlay.Close()
}

// shutdown stops the tenant's learner and releases its handles.
func (t *tenantNS) shutdown() {
	if t.stop != nil {
		close(t.stop)
		<-t.exited
		t.stop = nil
	}
	if t.bw != nil {
		t.bw.close()
	}
	if t.h != nil {
		t.h.Close()
	}
	if t.ns.IsOpen() {
		t.ns.Close()
	}
}
