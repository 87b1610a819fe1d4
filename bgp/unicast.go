package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	gobgp "github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// The unicast families: a tenant's public addresses (floating IPs,
// port-forward and SNAT addresses) are advertised in them, with this host
// as next hop, so the fabric routes them to the host owning the tenant's
// uplink. Received unicast routes are not consumed: Events carries EVPN
// only.
var (
	ipv4Family = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	ipv6Family = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
)

// unicastNextHop is the next hop of a local unicast route to prefix.
//
// IPv4 prefixes go via NextHop, which must then be IPv4 (an IPv6 next hop
// for IPv4 NLRI, RFC 8950, needs the extended next hop capability on every
// peer). IPv6 prefixes go via NextHop6 when set, via NextHop when it is
// IPv6, and otherwise via the IPv4-mapped ::ffff:<NextHop>, as a 16-byte
// MP_REACH next hop (what FRR itself sends for IPv6 unicast over an IPv4
// session without a global IPv6 address). Measured here with FRR 8.4:
// bgpd takes it as valid and best, and zebra resolves it over the IPv4
// route to NextHop, but the Linux kernel refuses the IPv6 route via an
// IPv4-mapped gateway that zebra writes without onlink ("r - rejected").
// So an FRR-on-Linux router carries such a route in BGP but does not
// forward on it: hosts whose IPv6 public addresses must be reachable
// through Linux routers set NextHop6 to a global IPv6 underlay address.
func (c Config) unicastNextHop(prefix netip.Prefix) (netip.Addr, error) {
	nh := c.NextHop.Unmap()
	if prefix.Addr().Is4() {
		if !nh.Is4() {
			return netip.Addr{}, fmt.Errorf("prefix %v: next hop %v is not ipv4", prefix, c.NextHop)
		}
		return nh, nil
	}
	switch {
	case c.NextHop6.IsValid():
		return c.NextHop6, nil
	case nh.Is6():
		return nh, nil
	case nh.Is4():
		return netip.AddrFrom16(nh.As16()), nil
	}
	return netip.Addr{}, fmt.Errorf("prefix %v: no next hop", prefix)
}

// unicastPath is the GoBGP path of a local unicast route.
func (s *Server) unicastPath(prefix netip.Prefix, withdraw bool) (*api.Path, *api.Family, error) {
	if !prefix.IsValid() {
		return nil, nil, errors.New("invalid prefix")
	}
	prefix = netip.PrefixFrom(prefix.Addr().Unmap(), min(prefix.Bits(), prefix.Addr().Unmap().BitLen())).Masked()
	nh, err := s.cfg.unicastNextHop(prefix)
	if err != nil {
		return nil, nil, err
	}
	origin := gobgp.NewPathAttributeOrigin(gobgp.BGP_ORIGIN_ATTR_TYPE_IGP)
	if prefix.Addr().Is4() {
		nlri := gobgp.NewIPAddrPrefix(uint8(prefix.Bits()), prefix.Addr().String())
		p, err := apiutil.NewPath(nlri, withdraw, []gobgp.PathAttributeInterface{origin, gobgp.NewPathAttributeNextHop(nh.String())}, time.Now())
		return p, ipv4Family, err
	}
	nlri := gobgp.NewIPv6AddrPrefix(uint8(prefix.Bits()), prefix.Addr().String())
	mp := gobgp.NewPathAttributeMpReachNLRI(nh.String(), []gobgp.AddrPrefixInterface{nlri})
	p, err := apiutil.NewPath(nlri, withdraw, []gobgp.PathAttributeInterface{origin, mp}, time.Now())
	return p, ipv6Family, err
}

// AdvertiseUnicast advertises prefixes (withdraw: withdraws them) as IPv4
// or IPv6 unicast routes with this host as next hop and origin IGP. The
// export policy still applies: only local routes leave the host.
func (s *Server) AdvertiseUnicast(ctx context.Context, prefixes []netip.Prefix, withdraw bool) error {
	if s.bgp == nil {
		return errors.New("bgp: advertise unicast: server not started")
	}
	var errs []error
	for _, pfx := range prefixes {
		p, fam, err := s.unicastPath(pfx, withdraw)
		if err != nil {
			errs = append(errs, fmt.Errorf("unicast route %v: %w", pfx, err))
			continue
		}
		if withdraw {
			err = s.bgp.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: fam, Path: p})
		} else {
			_, err = s.bgp.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: p})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("unicast route %v: %w", pfx, err))
		}
	}
	return errors.Join(errs...)
}

// UnicastRoutes lists the unicast prefixes this host advertises, sorted.
func (s *Server) UnicastRoutes(ctx context.Context) ([]netip.Prefix, error) {
	if s.bgp == nil {
		return nil, errors.New("bgp: unicast routes: server not started")
	}
	var out []netip.Prefix
	for _, fam := range []*api.Family{ipv4Family, ipv6Family} {
		err := s.bgp.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: fam}, func(d *api.Destination) {
			for _, p := range d.GetPaths() {
				if a, err := netip.ParseAddr(p.GetNeighborIp()); err == nil && !a.IsUnspecified() {
					continue // received, not ours
				}
				if pfx, err := netip.ParsePrefix(d.GetPrefix()); err == nil {
					out = append(out, pfx)
					return
				}
			}
		})
		if err != nil {
			return nil, fmt.Errorf("bgp: list unicast paths: %w", err)
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return out, nil
}
