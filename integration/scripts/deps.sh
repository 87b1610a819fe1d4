#!/usr/bin/env bash
# Installs what evpnd's tests, labs and benchmarks need and this machine
# lacks: FRR (bgpd, zebra, vtysh), nftables, iproute2, iperf3, tcpdump.
# Runs apt-get update once, and only when something is missing.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "$1" ]; }
have /usr/lib/frr/bgpd || need+=(frr)
have /usr/lib/frr/zebra || need+=(frr)
have vtysh || need+=(frr)
have nft || need+=(nftables)
have ip || need+=(iproute2)
have bridge || need+=(iproute2)
have iperf3 || need+=(iperf3)
have tcpdump || need+=(tcpdump)
have make || need+=(make)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deps: missing ${need[*]}; run as root (or: sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${need[@]}" | sort -u) >/dev/null
fi

# Debian's frr package may start FRR in the machine's own namespace where
# an init system exists; evpnd's labs run their own FRR instances in lab
# namespaces and never need or touch that one.
command -v go >/dev/null || { echo "deps: Go 1.26 is required (https://go.dev/dl)" >&2; exit 1; }
echo "deps: ok ($(/usr/lib/frr/bgpd --version | head -1), $(go version | cut -d' ' -f3))"
