// Package policy owns the virtual network services evpnd layers onto each
// tenant's datapath: security groups and ACLs (stateful), NAT (source NAT,
// floating IPs, port forwards on the tenant's uplink) and QoS (per-port HTB
// shaping with priority classes, per-port ingress policing, DSCP marking).
//
// The model is pure data with a validator that names every bad field. The
// engine compiles a tenant's policy into one nftables ruleset per tenant
// namespace (an inet table for filtering, marking and NAT, with bridged
// traffic passed through it by br_netfilter, and a bridge table for
// per-port policing), replaced atomically in one batch, plus tc HTB
// qdiscs on the workload ports. Objects it does not own are never touched.
// It knows nothing of BGP.
package policy
