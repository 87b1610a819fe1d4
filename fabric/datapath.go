package fabric

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/evpnd/evpnd/evpn"
)

// Config is the desired shape of the datapath on this host.
type Config struct {
	// NetnsPrefix + tenant name is the tenant's namespace.
	NetnsPrefix string
	// VTEP is the local underlay address VXLAN encapsulates from.
	VTEP    netip.Addr
	Tenants []Tenant
}

// Tenant is one isolated overlay: a network namespace.
type Tenant struct {
	Name     string
	Segments []Segment
	// L3 makes the tenant a routed network (symmetric IRB); nil for an L2
	// only tenant.
	L3 *TenantL3
	// Uplink is the tenant's external gateway link (for NAT); nil for
	// none. It needs a routed tenant.
	Uplink *Uplink
}

// Uplink connects a tenant namespace to the outside: a link named
// "uplink" in the tenant namespace carrying the tenant's default route,
// and host routes in evpnd's namespace that bring the tenant's public
// addresses to it. What is translated on it is policy's (nftables).
type Uplink struct {
	// Interface is an existing interface in evpnd's namespace that is
	// moved into the tenant namespace and renamed "uplink"; removing the
	// uplink moves it back under its own name. Empty: evpnd creates a
	// veth pair whose other end, "evu<hash>", stays in its own namespace.
	Interface string
	// Address is the tenant side with its subnet length; zero means
	// 169.254.0.1/30.
	Address netip.Prefix
	// Gateway is the tenant's next hop on the uplink; zero means the
	// first host address of Address's subnet that is not Address
	// (169.254.0.2 for the default). With a veth pair evpnd's side
	// holds it.
	Gateway netip.Addr
	// Public are the addresses routed from evpnd's namespace to the
	// tenant (floating IPs, port-forward and SNAT addresses). Only a veth
	// uplink gets these routes: with Interface the upstream network
	// routes them to Address itself.
	Public []netip.Addr
}

// TenantL3 is the routed side of a tenant: forwarding on in its namespace,
// an L3VNI bridge + VXLAN device carrying this host's router MAC, and the
// tenant's static routes.
type TenantL3 struct {
	VNI       evpn.VNI // the L3VNI
	RouterMAC net.HardwareAddr
	Routes    []StaticRoute
}

// StaticRoute is a tenant route to a next hop on one of its segments.
type StaticRoute struct {
	Prefix netip.Prefix
	Via    netip.Addr
}

// Segment is one L2 VNI: a VXLAN device and a bridge in the tenant
// namespace, with workload ports enslaved.
type Segment struct {
	Name  string
	VNI   evpn.VNI
	MTU   int      // bridge and VXLAN MTU; 0 means underlay MTU - 50
	Ports []string // interfaces in evpnd's namespace (or already moved)
	// Gateways are the distributed anycast gateway addresses (with their
	// subnet length) on the segment bridge, the same on every host; only
	// in a routed tenant.
	Gateways []netip.Prefix
	// GatewayMAC is the anycast gateway MAC the segment bridge answers
	// with, the same on every host; set when Gateways is.
	GatewayMAC net.HardwareAddr
}

// Learned is a fact learned on a local port, or its end (Gone).
type Learned struct {
	Tenant string
	VNI    evpn.VNI
	MAC    net.HardwareAddr
	IP     netip.Addr // zero for a MAC-only fact
	Port   string
	Gone   bool
}

// MAC is one row of a segment's MAC table, local or remote.
type MAC struct {
	Tenant string
	VNI    evpn.VNI
	MAC    net.HardwareAddr
	Port   string     // local port, or the VXLAN device for remote MACs
	VTEP   netip.Addr // zero for local MACs
	Remote bool
}

// Neighbor is one entry of a segment's neighbor (ARP/ND) table.
type Neighbor struct {
	Tenant string
	VNI    evpn.VNI
	IP     netip.Addr
	MAC    net.HardwareAddr
	Remote bool   // a suppression entry evpnd installed from an EVPN route
	State  string // kernel NUD state in lower case: "reachable", "stale", "permanent", "noarp", "delay", "probe", "failed", "incomplete"
}

// Stats counts what the datapath did, for metrics and benchmarks.
type Stats struct {
	Batches      uint64
	Writes       uint64
	WriteErrors  uint64
	LastBatch    time.Duration
	RemoteFDB    int
	RemoteFlood  int
	RemoteNeigh  int
	RemoteRoutes int // EVPN routes in routed tenants
	RouterMACs   int // remote router MACs on L3VNIs
	LocalLearned int
}

// RouteProtocol says who put a tenant route in the kernel.
type RouteProtocol string

// The route protocols Routes reports.
const (
	RouteEVPN      RouteProtocol = "evpn"      // from EVPN type-2/type-5 routes
	RouteStatic    RouteProtocol = "static"    // from the tenant's config: static routes, the NAT uplink's default
	RouteConnected RouteProtocol = "connected" // a subnet on one of the tenant's devices
	RouteOther     RouteProtocol = "other"     // made by someone else
)

// Route is one row of a tenant's routing table.
type Route struct {
	Tenant string
	Prefix netip.Prefix
	// NextHops are the gateways (remote VTEPs for EVPN routes); empty for
	// a connected route.
	NextHops []netip.Addr
	Device   string // the device of a single next hop or connected route
	Protocol RouteProtocol
}

// Datapath is the kernel side of evpnd as the daemon sees it.
type Datapath interface {
	// Set makes the tenants, segments and ports match cfg. It is
	// idempotent, adopts matching objects it finds (after a restart),
	// removes only evpnd-owned objects cfg no longer names, and returns
	// every failure joined.
	Set(ctx context.Context, cfg Config) error
	// Update applies a change to the remote entries, batched per
	// namespace. Entries for VNIs not configured are ignored.
	Update(ctx context.Context, d evpn.Diff) error
	// Sync makes the remote entries equal to full: it adds what is missing
	// and removes evpnd-tagged entries that full does not hold. The daemon
	// calls it once the control plane has converged after a start, so a
	// restart never flushes entries that keep traffic flowing.
	Sync(ctx context.Context, full evpn.Intents) error
	// Snapshot dumps the remote entries of every tenant without holding
	// the datapath: Update and the rest go on while the kernel works
	// through the dumps (quadratic in the FDB: seconds at 100k entries).
	// It may be called from another goroutine; the end of ctx stops it
	// midway, with the context's cause as its error.
	Snapshot(ctx context.Context) (*Snapshot, error)
	// SyncWith is Sync against a snapshot; ErrStaleSnapshot when a Set
	// came after it. Entries Update changed since the snapshot cost
	// redundant writes at most.
	SyncWith(ctx context.Context, full evpn.Intents, snap *Snapshot) error
	// Adopted reports whether Set ever found a tenant namespace already
	// there, which may hold remote entries of an earlier run. When it did
	// not, every remote entry was written by Update and the first Sync
	// has nothing to prune.
	Adopted() bool
	// Learned delivers local learning facts. On start every fact already in
	// the kernel is delivered once, then changes as they happen.
	Learned() <-chan Learned
	// MACs lists the MAC tables of all segments.
	MACs(ctx context.Context) ([]MAC, error)
	// Neighbors lists the neighbor tables of all segment bridges.
	Neighbors(ctx context.Context) ([]Neighbor, error)
	// Routes lists the main routing table of every tenant namespace.
	Routes(ctx context.Context) ([]Route, error)
	Stats() Stats
	// Close stops watching; kernel objects stay (traffic keeps flowing).
	Close() error
}
