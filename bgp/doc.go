// Package bgp owns the one embedded GoBGP server of the process: its global
// settings, peers (iBGP to route reflectors, eBGP to ToRs, TCP-MD5), and the
// l2vpn-evpn family. It advertises and withdraws evpn.Routes and turns
// GoBGP's best-path events into evpn.Routes on a queue of its own, so no
// other package sees a GoBGP type.
package bgp
