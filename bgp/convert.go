package bgp

import (
	"fmt"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	gobgp "github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/evpnd/evpnd/evpn"
)

// evpnFamily is l2vpn-evpn (AFI 25, SAFI 70).
var evpnFamily = &api.Family{Afi: api.Family_AFI_L2VPN, Safi: api.Family_SAFI_EVPN}

// toAPIPath turns a local evpn.Route into a GoBGP path. The NLRI crosses
// as wire bytes so package evpn's codec is the one definition of the
// encoding; GoBGP parses it back into its own type.
func toAPIPath(r evpn.Route, nextHop netip.Addr) (*api.Path, error) {
	b, err := evpn.MarshalNLRI(r.NLRI)
	if err != nil {
		return nil, err
	}
	nlri := &gobgp.EVPNNLRI{}
	if err := nlri.DecodeFromBytes(b); err != nil {
		return nil, fmt.Errorf("route %s: gobgp rejects nlri: %w", r.NLRI, err)
	}
	nh := r.NextHop
	if !nh.IsValid() {
		nh = nextHop
	}
	attrs := []gobgp.PathAttributeInterface{
		gobgp.NewPathAttributeOrigin(gobgp.BGP_ORIGIN_ATTR_TYPE_IGP),
		gobgp.NewPathAttributeMpReachNLRI(nh.String(), []gobgp.AddrPrefixInterface{nlri}),
	}
	if !r.Withdraw {
		ecs := r.ExtCommunities()
		native := make([]gobgp.ExtendedCommunityInterface, 0, len(ecs))
		for _, ec := range ecs {
			n, err := gobgp.ParseExtended(ec[:])
			if err != nil {
				return nil, fmt.Errorf("route %s: extended community %x: %w", r.NLRI, ec[:], err)
			}
			native = append(native, n)
		}
		if len(native) > 0 {
			attrs = append(attrs, gobgp.NewPathAttributeExtendedCommunities(native))
		}
		if p := r.PMSI; p != nil {
			ep := p.Endpoint
			if !ep.IsValid() {
				ep = nh
			}
			attrs = append(attrs, gobgp.NewPathAttributePmsiTunnel(
				gobgp.PmsiTunnelType(p.Type), false, uint32(p.Label), gobgp.NewIngressReplTunnelID(ep.String())))
		}
	}
	return apiutil.NewPath(nlri, r.Withdraw, attrs, time.Now())
}

// fromAPIPath turns a GoBGP path into an evpn.Route. ok is false for paths
// evpnd does not consume (not EVPN). It is the general conversion, through
// GoBGP's native types and the wire encoding; ingest is the fast one for
// bulk and falls back to it.
func fromAPIPath(p *api.Path) (r evpn.Route, ok bool, err error) {
	if !isEVPN(p.GetFamily()) {
		return r, false, nil
	}
	native, err := apiutil.GetNativeNlri(p)
	if err != nil {
		return r, false, fmt.Errorf("nlri: %w", err)
	}
	b, err := native.Serialize()
	if err != nil {
		return r, false, fmt.Errorf("nlri %s: %w", native, err)
	}
	n, _, err := evpn.ParseNLRI(b)
	if err != nil {
		return r, false, err
	}
	r.NLRI = n
	r.Withdraw = p.GetIsWithdraw()
	if a, err := netip.ParseAddr(p.GetNeighborIp()); err == nil && !a.IsUnspecified() {
		r.Peer = a
	}
	attrs, err := apiutil.GetNativePathAttributes(p)
	if err != nil {
		return r, false, fmt.Errorf("route %s: attributes: %w", n, err)
	}
	for _, a := range attrs {
		applyAttribute(&r, a)
	}
	return r, true, nil
}
