// Package evpn owns the EVPN model of evpnd as plain Go values: route types
// 2 (MAC/IP advertisement), 3 (inclusive multicast Ethernet tag) and 5 (IP
// prefix), route distinguishers, route targets and the extended communities
// hardware ToRs expect (RFC 7432, RFC 8365, RFC 9135, RFC 9136).
//
// It derives RDs and RTs for segments and routed tenants (symmetric IRB),
// encodes and decodes routes in BGP wire format, owns MAC mobility sequence
// numbers, and turns the EVPN routes known for segments and tenants into
// kernel intents (FDB, flood list, neighbors, L3 routes, router MACs). It
// does no I/O: the bgp package moves routes, the fabric package programs the
// kernel.
package evpn
