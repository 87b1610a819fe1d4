// Package fabric owns the kernel datapath of evpnd: tenant network
// namespaces, the VXLAN device and bridge of every segment, workload ports,
// and the remote FDB, flood-list and neighbor entries EVPN asks for. It
// programs the kernel through netlink handles bound to one namespace each,
// reconciles desired against actual state (touching only objects evpnd
// tagged), batches writes per namespace, and reports the MACs and IPs it
// learns on local ports. It knows nothing of BGP.
package fabric
