#!/usr/bin/env bash
# make demo: bring up the L2 EVPN lab (two evpnd hosts, an FRR EVPN host and
# an FRR route reflector, as network namespaces), show the BGP sessions and
# EVPN routes, move real TCP traffic across the overlay, and leave the lab
# running for a look around. Everything stays inside the lab's namespaces.
set -euo pipefail
cd "$(dirname "$0")/../.."
topo=${1:-integration/topologies/l2-evpn.clab.yml}
policy_topo=integration/topologies/policy.clab.yml

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

# Act 2: the same kind of fabric with a routed tenant and a policy: ACLs,
# NAT (floating IP, SNAT) and QoS, seen taking effect on real traffic.
say "act 2: policy - bringing up $policy_topo"
out2=$(go run ./integration/cmd/lab up --keep "$policy_topo")
id2=$(echo "$out2" | sed -n 's/^lab \(l[0-9a-f]*\)[: ].*/\1/p' | head -1)
[ -n "$id2" ] || { echo "demo: could not read the policy lab id" >&2; exit 1; }
run2=/tmp/evpnd-lab/$id2
p() { local node=$1; shift; ip netns exec "$id2-$node" "$@"; }
for i in $(seq 1 60); do
  bin/evpnctl --socket "$run2/host1/evpnd.sock" show peers -o json 2>/dev/null | grep -q PEER_STATE_ESTABLISHED && break
  sleep 1
done
# Workloads announce themselves to their gateway: evpnd learns their
# addresses, and the policy's per-port address maps fill.
for vm in w1 w2 w3; do p $vm bash -c 'exec 3<>/dev/tcp/172.31.1.254/9' 2>/dev/null || true; done
for i in $(seq 1 30); do
  [ "$(p host1-blue nft list map inet evpnd ingress_v4 2>/dev/null | grep -c '172.31.1.[12] ')" -ge 2 ] && break
  sleep 1
done
bin/evpnctl --socket "$run2/host1/evpnd.sock" show routes --tenant blue
p w1 iperf3 -s -D -p 80
p w1 iperf3 -s -D -p 22
p w2 iperf3 -s -D -p 5202
sleep 0.5

say "allowed by rule http-in: w3 (host2) -> w1:80 (host1), across the overlay"
p w3 iperf3 -c 172.31.1.1 -p 80 -t 2 -f m | tail -4 | head -2
say "rejected by rule ssh-in: w3 -> w1:22, although a server listens there"
p w3 iperf3 -c 172.31.1.1 -p 22 -t 1 2>&1 | tail -1 || true
say "floating IP: outside -> 203.0.113.10:80 reaches w1; the edge router learned it over BGP"
ip netns exec "$id2-edge" vtysh --vty_socket "$run2/edge/frr" -c 'show ip route 203.0.113.10' | grep -E 'Routing entry|Known via|10.0.0.1'
p outside iperf3 -c 203.0.113.10 -p 80 -t 2 -f m | tail -4 | head -2
say "SNAT: w2 -> outside, which has no route to the tenant; the outside server sees the SNAT address"
log2=$run2/outside-iperf3.log
p outside iperf3 -s -1 -p 5300 > "$log2" 2>&1 &
sleep 0.5
p w2 iperf3 -c 198.18.0.2 -p 5300 -t 1 > /dev/null
wait
grep -m1 'Accepted connection from' "$log2"
say "QoS: w3 -> w2:5202, shaped by HTB on tap-w2 to 20 Mbit/s"
p w3 iperf3 -c 172.31.1.2 -p 5202 -t 3 -f m | tail -4 | head -2
say "rule counters on host1 (evpnctl policy counters)"
bin/evpnctl --socket "$run2/host1/evpnd.sock" policy counters --tenant blue

cat <<MSG

The labs $id (L2) and $id2 (policy) are still running. Look around:
  bin/evpnctl --socket $run/host1/evpnd.sock show evpn routes
  bin/evpnctl --socket $run/host2/evpnd.sock show evpn macs -o json
  ip netns exec $id-rr vtysh --vty_socket $run/rr/frr -c 'show bgp l2vpn evpn'
  ip netns exec $id-host1-blue bridge fdb show br br100
  ip netns exec $id-vm1 bash        # a shell in workload vm1 (172.31.1.1)
  ip netns exec $id2-host1-blue nft list ruleset     # the compiled policy
  bin/evpnctl --socket $run2/host1/evpnd.sock show routes
  logs: $run/<node>/*.log
Tear it down:
  make lab-down
MSG
