// Package metrics owns evpnd's Prometheus metrics: the instruments the
// daemon updates as things happen (reconcile runs, policy applies, API
// calls), a collector that reads the daemon's state through Source at
// scrape time (BGP peers, the EVPN RIB, MAC and neighbour tables, policy
// counters, datapath counters), and the HTTP server for /metrics. It uses
// its own registry, never the process-wide default one.
//
// A Source call that fails (or outlasts the scrape timeout, 5 s by
// default) costs only its own metrics and counts in
// evpnd_scrape_errors_total; the rest of the scrape is still served.
//
// Metrics (names follow frr_exporter and the GoBGP exporter):
//
//	name                                         type       labels                           meaning
//	evpnd_build_info                             gauge      version, goversion               always 1
//	evpnd_bgp_peer_state                         gauge      peer, asn, description           FSM state: 1 idle, 2 connect, 3 active, 4 opensent, 5 openconfirm, 6 established, 0 unknown
//	evpnd_bgp_peer_up                            gauge      peer                             1 when established, else 0
//	evpnd_bgp_peer_uptime_seconds                gauge      peer                             time since the session was established; 0 when down
//	evpnd_bgp_peer_received_routes               gauge      peer, afi_safi="l2vpn_evpn"      paths received (Adj-RIB-In)
//	evpnd_bgp_peer_accepted_routes               gauge      peer, afi_safi="l2vpn_evpn"      paths received and accepted by import policy
//	evpnd_bgp_peer_advertised_routes             gauge      peer, afi_safi="l2vpn_evpn"      paths advertised to the peer
//	evpnd_evpn_routes                            gauge      tenant, route_type, direction    EVPN best paths in the RIB; route_type mac_ip | inclusive_multicast | ip_prefix;
//	                                                                                         direction advertised (originated here, zero Peer) | received; tenant from the
//	                                                                                         route's VNI (type 2: first label = L2VNI; type 3: PMSI label, else Ethernet
//	                                                                                         tag; type 5: label = L3VNI), "" when no tenant has that VNI
//	evpnd_fdb_entries                            gauge      tenant, origin=local|remote      MAC table entries of the tenant's segments
//	evpnd_neighbor_entries                       gauge      tenant, origin=local|remote      ARP/NDP entries in the tenant's namespace
//	evpnd_reconcile_runs_total                   counter    kind=set|update|sync|policy      reconcile runs
//	evpnd_reconcile_errors_total                 counter    kind                             reconcile runs that failed
//	evpnd_policy_apply_duration_seconds          histogram  tenant                           duration of successful policy applies
//	evpnd_policy_apply_errors_total              counter    tenant                           failed policy applies
//	evpnd_policy_rule_packets_total              counter    tenant, rule                     packets matched by a rule (nftables counter)
//	evpnd_policy_rule_bytes_total                counter    tenant, rule                     bytes matched by a rule (nftables counter)
//	evpnd_datapath_netlink_batches_total         counter    -                                batches of kernel writes flushed
//	evpnd_datapath_netlink_writes_total          counter    -                                netlink writes made
//	evpnd_datapath_netlink_write_errors_total    counter    -                                netlink writes the kernel rejected
//	evpnd_datapath_last_batch_duration_seconds   gauge      -                                duration of the last flushed batch
//	evpnd_datapath_entries                       gauge      kind                             kernel entries the datapath holds: remote_fdb, remote_flood, remote_neigh,
//	                                                                                         remote_routes, router_macs, local_learned
//	evpnd_api_requests_total                     counter    method, code                     gRPC calls by full method name and status code name
//	evpnd_scrape_errors_total                    counter    source                           failed Source reads while scraping; source peers | routes | macs | neighbors |
//	                                                                                         policy_counters
//
// Also served: the Go runtime (go_*) and process (process_*) collectors and
// promhttp_metric_handler_requests_total / _in_flight / _errors_total.
package metrics
