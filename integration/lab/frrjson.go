package lab

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// EVPNRoute is one path of an EVPN route as an FRR node holds it.
type EVPNRoute struct {
	RD     string
	Prefix string // FRR's text form, e.g. [2]:[0]:[48]:[aa:bb:cc:dd:ee:ff]
	Type   int
	MAC    net.HardwareAddr // type 2
	// IP is the type-2 IP (zero when the route carries none) or the type-3
	// originator.
	IP             netip.Addr
	NextHop        netip.Addr
	PeerID         string
	ExtCommunities []string // "RT:65000:100", "ET:8", ...
	Valid, Best    bool
}

// HasExtCommunity reports whether the path carries community c (FRR's text
// form, e.g. "RT:65000:100").
func (r EVPNRoute) HasExtCommunity(c string) bool { return slices.Contains(r.ExtCommunities, c) }

// frrEVPNPath is one path in `show bgp l2vpn evpn route json`.
type frrEVPNPath struct {
	Valid             bool   `json:"valid"`
	Bestpath          bool   `json:"bestpath"`
	RouteType         int    `json:"routeType"`
	MAC               string `json:"mac"`
	IP                string `json:"ip"`
	PeerID            string `json:"peerId"`
	ExtendedCommunity struct {
		String string `json:"string"`
	} `json:"extendedCommunity"`
	Nexthops []struct {
		IP string `json:"ip"`
	} `json:"nexthops"`
}

// EVPNRoutes lists every path of every EVPN route in an FRR node's BGP
// table (`show bgp l2vpn evpn route json`).
func (l *Lab) EVPNRoutes(node string) ([]EVPNRoute, error) {
	var top map[string]json.RawMessage
	if err := l.VtyshJSON(node, "show bgp l2vpn evpn route json", &top); err != nil {
		return nil, err
	}
	return parseEVPNRoutes(top)
}

// parseEVPNRoutes walks FRR's layout: {RD: {"rd": RD, PREFIX: {"paths":
// [[path, ...]]}}, "numPrefix": N, ...}.
func parseEVPNRoutes(top map[string]json.RawMessage) ([]EVPNRoute, error) {
	var routes []EVPNRoute
	for rd, raw := range top {
		if !strings.Contains(rd, ":") {
			continue // numPrefix, numPaths
		}
		var prefixes map[string]json.RawMessage
		if err := json.Unmarshal(raw, &prefixes); err != nil {
			return nil, fmt.Errorf("rd %s: %w", rd, err)
		}
		for prefix, raw := range prefixes {
			if !strings.HasPrefix(prefix, "[") {
				continue // "rd"
			}
			var entry struct {
				Paths [][]frrEVPNPath `json:"paths"`
			}
			if err := json.Unmarshal(raw, &entry); err != nil {
				return nil, fmt.Errorf("rd %s prefix %s: %w", rd, prefix, err)
			}
			for _, group := range entry.Paths {
				for _, p := range group {
					r, err := p.route(rd, prefix)
					if err != nil {
						return nil, err
					}
					routes = append(routes, r)
				}
			}
		}
	}
	return routes, nil
}

func (p frrEVPNPath) route(rd, prefix string) (EVPNRoute, error) {
	r := EVPNRoute{
		RD: rd, Prefix: prefix, Type: p.RouteType, PeerID: p.PeerID,
		ExtCommunities: strings.Fields(p.ExtendedCommunity.String),
		Valid:          p.Valid, Best: p.Bestpath,
	}
	var err error
	if p.MAC != "" {
		if r.MAC, err = net.ParseMAC(p.MAC); err != nil {
			return r, fmt.Errorf("rd %s prefix %s: mac: %w", rd, prefix, err)
		}
	}
	if p.IP != "" {
		if r.IP, err = netip.ParseAddr(p.IP); err != nil {
			return r, fmt.Errorf("rd %s prefix %s: ip: %w", rd, prefix, err)
		}
	}
	if len(p.Nexthops) > 0 {
		if r.NextHop, err = netip.ParseAddr(p.Nexthops[0].IP); err != nil {
			return r, fmt.Errorf("rd %s prefix %s: next hop: %w", rd, prefix, err)
		}
	}
	return r, nil
}

// BGPPeerStates maps each BGP neighbor of an FRR node in the l2vpn evpn
// family to its state ("Established", "Active", ...).
func (l *Lab) BGPPeerStates(node string) (map[string]string, error) {
	var sum struct {
		Peers map[string]struct {
			State string `json:"state"`
		} `json:"peers"`
	}
	if err := l.VtyshJSON(node, "show bgp l2vpn evpn summary json", &sum); err != nil {
		return nil, err
	}
	states := make(map[string]string, len(sum.Peers))
	for addr, p := range sum.Peers {
		states[addr] = p.State
	}
	return states, nil
}

// FDBEntry is one bridge forwarding entry as `bridge -j fdb show` prints it.
type FDBEntry struct {
	MAC    string   `json:"mac"`
	Ifname string   `json:"ifname"`
	Master string   `json:"master"`
	Dst    string   `json:"dst"`
	Flags  []string `json:"flags"`
	State  string   `json:"state"`
	VNI    int      `json:"vni"`
	SrcVNI int      `json:"src_vni"`
}

// ExternLearn reports whether a control plane (FRR's zebra, evpnd) put the
// entry there.
func (e FDBEntry) ExternLearn() bool { return slices.Contains(e.Flags, "extern_learn") }

// FDB lists the forwarding entries of every port of bridge br, and the
// entries of those ports' own (VXLAN) tables, in namespace ns.
func FDB(ns, br string) ([]FDBEntry, error) {
	out, err := ExecNS(ns, "bridge", "-j", "fdb", "show", "br", br)
	if err != nil {
		return nil, err
	}
	var entries []FDBEntry
	if err := json.Unmarshal(out, &entries); err != nil {
		return nil, fmt.Errorf("in %s: bridge fdb show br %s: decode json: %w", ns, br, err)
	}
	return entries, nil
}
