package bgp

import (
	"context"
	"net/netip"
	"time"

	"github.com/evpnd/evpnd/evpn"
)

// PeerConfig is one BGP neighbour.
type PeerConfig struct {
	Address           netip.Addr
	ASN               uint32
	Password          string // TCP-MD5 when set
	HoldTime          time.Duration
	KeepaliveInterval time.Duration
	Description       string
	Port              uint16 // remote TCP port; 0 means 179
	// TTLSecurity is the GTSM radius in hops (RFC 5082): packets are sent
	// with TTL 255 and only those arriving with TTL >= 256-TTLSecurity are
	// accepted. 0 means off.
	TTLSecurity uint8
	// MaxPrefixes caps the routes the peer may send per family (EVPN,
	// IPv4, IPv6 unicast); one more ends the session with a Cease
	// (RFC 4486 subcode 1), which the peer may retry. 0 means no cap.
	MaxPrefixes uint32
	// Passive waits for the peer to connect and never connects out (FRR:
	// neighbor X passive). Where two evpnd hosts peer directly, one side
	// passive saves them from refusing each other's connections while
	// GoBGP sits out its idle hold after a failed attempt.
	Passive bool
}

// Config is the speaker's global configuration.
type Config struct {
	RouterID netip.Addr
	ASN      uint32
	NextHop  netip.Addr // the VTEP address; next hop of every route
	// NextHop6 is the next hop of IPv6 unicast routes; zero means NextHop
	// when it is IPv6, else the IPv4-mapped ::ffff:<NextHop>.
	NextHop6        netip.Addr
	ListenAddresses []netip.Addr
	ListenPort      int32 // -1: do not listen
	Peers           []PeerConfig
	// GracefulRestart is RFC 4724 for every peer; the zero value is off.
	GracefulRestart GracefulRestart
}

// Peer is the state of one neighbour.
type Peer struct {
	Address     netip.Addr
	ASN         uint32
	Description string
	State       string // idle, connect, active, opensent, openconfirm, established
	Uptime      time.Duration
	Received    uint64 // EVPN paths received
	Accepted    uint64
	Advertised  uint64
}

// Speaker is the BGP side of evpnd as the daemon sees it.
type Speaker interface {
	// Start runs the server and adds the configured peers.
	Start(ctx context.Context, cfg Config) error
	// SetPeers makes the peer set equal to peers.
	SetPeers(ctx context.Context, peers []PeerConfig) error
	// SetImport makes f the EVPN paths accepted from peers; the rest are
	// rejected before they reach the RIB or Events, and paths a change
	// accepts or no longer accepts are delivered or withdrawn without a
	// session reset. Until it is first called every path is accepted; it
	// may be called before Start.
	SetImport(ctx context.Context, f ImportFilter) error
	// Advertise adds or replaces local routes (Withdraw set: removes them).
	Advertise(ctx context.Context, routes []evpn.Route) error
	// AdvertiseUnicast advertises prefixes (withdraw: withdraws them) as
	// IPv4/IPv6 unicast routes with this host as next hop: the public
	// addresses of tenants' uplinks. Received unicast routes are not
	// delivered on Events.
	AdvertiseUnicast(ctx context.Context, prefixes []netip.Prefix, withdraw bool) error
	// UnicastRoutes lists the unicast prefixes this host advertises.
	UnicastRoutes(ctx context.Context) ([]netip.Prefix, error)
	// Events delivers received best paths (and their withdrawals) in
	// batches, in order. Routes this host originated are not delivered.
	// Routes share their route targets, MAC mobility and router MAC
	// values with other routes that carried the same attribute: readers
	// must not modify them (appends copy: the slices are capped).
	Events() <-chan []evpn.Route
	// Peers reports the neighbours' states.
	Peers(ctx context.Context) ([]Peer, error)
	// PeerEvents delivers a peer's state each time its session state
	// changes (and once per configured peer when it is added). The channel
	// is never closed before Stop; a slow reader never blocks the BGP
	// server: if the reader falls behind, older events of the same peer
	// are coalesced (the reader always gets the latest state of every
	// peer).
	PeerEvents() <-chan Peer
	// Routes lists the EVPN RIB: local and received best paths.
	Routes(ctx context.Context) ([]evpn.Route, error)
	// Converged is closed once every configured peer has sent End-of-RIB
	// for l2vpn-evpn; the daemon then prunes stale kernel state. Every
	// route received before that is on Events before Converged closes.
	Converged() <-chan struct{}
	// Stop ends every session with a NOTIFICATION: peers withdraw this
	// host's routes.
	Stop()
	// StopForRestart ends the speaker so that peers that negotiated
	// graceful restart keep its routes until it is back; the process must
	// exit soon after.
	StopForRestart()
}
