#!/usr/bin/env bash
# make demo: bring up the L2 EVPN lab (two evpnd hosts, an FRR EVPN host and
# an FRR route reflector, as network namespaces), show the BGP sessions and
# EVPN routes, move real TCP traffic across the overlay, and leave the lab
# running for a look around. Everything stays inside the lab's namespaces.
set -euo pipefail
cd "$(dirname "$0")/../.."
topo=${1:-integration/topologies/l2-evpn.clab.yml}

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
[ "$(id -u)" = 0 ] || { echo "demo: run as root (network namespaces, netlink)" >&2; exit 1; }

say "bringing up $topo"
out=$(go run ./integration/cmd/lab up --keep "$topo")
echo "$out" | sed -n '1,12p'
id=$(echo "$out" | sed -n 's/^lab \(l[0-9a-f]*\)[: ].*/\1/p' | head -1)
[ -n "$id" ] || { echo "demo: could not read the lab id" >&2; exit 1; }
run=/tmp/evpnd-lab/$id
ctl() { local node=$1; shift; bin/evpnctl --socket "$run/$node/evpnd.sock" "$@"; }
rr() { ip netns exec "$id-rr" vtysh --vty_socket "$run/rr/frr" -c "$1"; }

say "waiting for BGP sessions (host1, host2 -> route reflector)"
for i in $(seq 1 60); do
  up=0
  for h in host1 host2; do
    ctl $h show peers -o json 2>/dev/null | grep -q 'PEER_STATE_ESTABLISHED' && up=$((up + 1))
  done
  [ $up = 2 ] && break
  sleep 1
done
[ $up = 2 ] || { echo "demo: sessions did not come up; logs in $run/*/"; exit 1; }
ctl host1 show peers

say "workloads say hello (their MACs are learned and advertised as type-2 routes)"
for vm in vm1 vm2 vm3; do
  n=${vm#vm}
  ip netns exec "$id-$vm" ip neigh flush dev eth1 >/dev/null 2>&1 || true
  for peer in 1 2 3; do
    [ $peer = $n ] || ip netns exec "$id-$vm" bash -c "exec 3<>/dev/tcp/172.31.1.$peer/9" 2>/dev/null || true
  done
done
for i in $(seq 1 30); do
  [ "$(rr 'show bgp l2vpn evpn route type macip' | grep -c '\*>')" -ge 3 ] && break
  sleep 1
done

say "EVPN routes on host1 (evpnctl show evpn routes)"
ctl host1 show evpn routes
say "the FRR route reflector's view (vtysh: show bgp l2vpn evpn route)"
rr 'show bgp l2vpn evpn route'
say "MAC table of tenant blue on host1 (evpnctl show evpn macs)"
ctl host1 show evpn macs

say "TCP across the overlay: vm1 (behind evpnd host1) -> vm2 (behind evpnd host2), iperf3 for 3 s"
ip netns exec "$id-vm2" iperf3 -s -1 -D -B 172.31.1.2
sleep 0.5
ip netns exec "$id-vm1" iperf3 -c 172.31.1.2 -t 3 -f m | tail -4

say "TCP across the overlay: vm1 (evpnd) -> vm3 (behind the FRR EVPN host), iperf3 for 3 s"
ip netns exec "$id-vm3" iperf3 -s -1 -D -B 172.31.1.3
sleep 0.5
ip netns exec "$id-vm1" iperf3 -c 172.31.1.3 -t 3 -f m | tail -4

say "the FRR host installed vm1's MAC from evpnd's route (bridge fdb, extern_learn)"
mac1=$(ip netns exec "$id-vm1" cat /sys/class/net/eth1/address)
ip netns exec "$id-host3" bridge fdb show br br100 | grep -i "$mac1" || true

cat <<MSG

The lab $id is still running. Look around:
  bin/evpnctl --socket $run/host1/evpnd.sock show evpn routes
  bin/evpnctl --socket $run/host2/evpnd.sock show evpn macs -o json
  ip netns exec $id-rr vtysh --vty_socket $run/rr/frr -c 'show bgp l2vpn evpn'
  ip netns exec $id-host1-blue bridge fdb show br br100
  ip netns exec $id-vm1 bash        # a shell in workload vm1 (172.31.1.1)
  logs: $run/<node>/*.log
Tear it down:
  make lab-down
MSG
