package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/evpnd/evpnd/integration/lab"
)

// The security lab decides by what both ends report (FRR's neighbor table,
// evpnd's API) and by the kernel's own TCP counters in the namespace that
// dropped the segments, which say why a session cannot come up.

// tcpExt reads one TcpExt counter (TCPMD5Failure, TCPMinTTLDrop, ...) of a
// node's namespace; /proc/net is per namespace.
func tcpExt(l *lab.Lab, node, name string) (uint64, error) {
	out, err := l.Exec(node, "cat", "/proc/net/netstat")
	if err != nil {
		return 0, err
	}
	// Pairs of lines: "TcpExt: Name1 Name2 ..." then "TcpExt: 1 2 ...".
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "TcpExt:" {
			continue
		}
		if names == nil {
			names = f[1:]
			continue
		}
		for i, n := range names {
			if n == name && i+1 < len(f) {
				return strconv.ParseUint(f[i+1], 10, 64)
			}
		}
		break
	}
	return 0, fmt.Errorf("%s: /proc/net/netstat has no TcpExt %s", node, name)
}

// frrNeighbor is the part of `show bgp neighbors json` the tests read.
type frrNeighbor struct {
	State string `json:"bgpState"`
	// Established counts sessions that reached Established since the
	// neighbor was configured: zero means never, not just not now.
	Established int `json:"connectionsEstablished"`
	Dropped     int `json:"connectionsDropped"`
}

// frrNeighbors lists an FRR node's neighbors by address; a dynamic
// (listen range) neighbor is listed only once a connection was accepted.
func frrNeighbors(l *lab.Lab, node string) (map[string]frrNeighbor, error) {
	var ns map[string]frrNeighbor
	if err := l.VtyshJSON(node, "show bgp neighbors json", &ns); err != nil {
		return nil, err
	}
	return ns, nil
}

// evpndPeerState is evpnd's state of its session to peer.
func evpndPeerState(l *lab.Lab, node, peer string) (string, error) {
	var out struct {
		Peers []ctlPeer `json:"peers"`
	}
	if err := l.EvpnctlJSON(node, &out, "show", "peers"); err != nil {
		return "", err
	}
	for _, p := range out.Peers {
		if p.Address == peer {
			return p.State, nil
		}
	}
	return "", fmt.Errorf("%s: evpnctl show peers: no %s: %+v", node, peer, out.Peers)
}

// established waits until both FRR and evpnd report the session up.
func established(t *testing.T, l *lab.Lab, host, hostAddr string) {
	t.Helper()
	lab.Eventually(t, converge, pollEvery, func() error {
		ns, err := frrNeighbors(l, "rr")
		if err != nil {
			return err
		}
		if n, ok := ns[hostAddr]; !ok || n.State != "Established" {
			return fmt.Errorf("rr: neighbor %s is %+v (present %v), want Established", hostAddr, n, ok)
		}
		st, err := evpndPeerState(l, host, rrAddr.String())
		if err != nil {
			return err
		}
		if st != "PEER_STATE_ESTABLISHED" {
			return fmt.Errorf("%s: session to %s is %s", host, rrAddr, st)
		}
		return nil
	})
}

// evpndPeerUps counts GoBGP's "Peer Up" lines in a node's evpnd log: one
// per session that reached Established, however briefly.
func evpndPeerUps(l *lab.Lab, node string) (int, error) {
	for _, p := range l.State().Procs {
		if p.Node == node && p.Name == "evpnd" {
			data, err := os.ReadFile(p.Log)
			if err != nil {
				return 0, err
			}
			return bytes.Count(data, []byte(`msg="Peer Up"`)), nil
		}
	}
	return 0, fmt.Errorf("%s: no evpnd process", node)
}

// neverEstablished waits until the kernel counter name of node has grown by
// at least grow (each step is one more refused segment) and until holds,
// checking on every poll that evpnd on host has never had its session to
// the RR up (its log counts every Established, so one that came and went
// between polls is caught too) and that never returns nil.
func neverEstablished(t *testing.T, l *lab.Lab, host, node, counter string, grow uint64, never, until func() error) {
	t.Helper()
	base, err := tcpExt(l, node, counter)
	if err != nil {
		t.Fatal(err)
	}
	var problem error
	lab.Eventually(t, converge, pollEvery, func() error {
		if err := never(); err != nil {
			problem = err
			return nil
		}
		st, err := evpndPeerState(l, host, rrAddr.String())
		if err != nil {
			return err
		}
		ups, err := evpndPeerUps(l, host)
		if err != nil {
			return err
		}
		if st == "PEER_STATE_ESTABLISHED" || ups > 0 {
			problem = fmt.Errorf("%s: session to %s came up (state %s, %d Peer Up in its log)", host, rrAddr, st, ups)
			return nil
		}
		n, err := tcpExt(l, node, counter)
		if err != nil {
			return err
		}
		if n < base+grow {
			return fmt.Errorf("%s: TcpExt %s is %d, want at least %d (%s's session refused by the kernel)", node, counter, n, base+grow, host)
		}
		return until()
	})
	if problem != nil {
		t.Fatal(problem)
	}
}

// TestPrivilegedSessionSecurity runs the security lab once for TCP-MD5 and
// GTSM against FRR. host1/host2 and host3/host4 are pairs that differ in one
// setting, so a refused session is refused for that setting alone.
func TestPrivilegedSessionSecurity(t *testing.T) {
	requireL2Lab(t)
	l := lab.Up(t, "topologies/security.clab.yml", lab.Options{})

	// evpnd's listening socket takes the MD5 key and TTL options: it is
	// plain TCP, not Multipath TCP, on which the kernel refuses both (the
	// godebug line in go.mod). Without that a peer dialling evpnd fails.
	t.Run("ListenerOptions", func(t *testing.T) {
		established(t, l, "host1", vtep1.String())
		for _, node := range []string{"host1", "host3"} {
			log := readLog(t, l, node)
			for _, bad := range []string{"cannot set TTL", "failed to set md5"} {
				if strings.Contains(log, bad) {
					t.Errorf("%s: evpnd logged %q: its BGP listener refused a socket option", node, bad)
				}
			}
		}
	})

	// The right key: FRR's listen range has it, the session comes up and
	// carries routes.
	t.Run("MD5", func(t *testing.T) {
		established(t, l, "host1", vtep1.String())
		lab.Eventually(t, converge, pollEvery, func() error {
			return hasRoute(l, "rr", rrType3(vtep1, "RT:65000:100"), fmt.Sprintf("type-3 of %s over the MD5 session", vtep1))
		})
	})

	// A wrong key: the RR's kernel drops host2's SYNs as MD5 failures
	// before bgpd sees them (so bgpd logs nothing and never creates the
	// dynamic neighbor). Measured once host1, started alongside, is up.
	t.Run("MD5WrongKey", func(t *testing.T) {
		established(t, l, "host1", vtep1.String())
		// FRR's connectionsEstablished is cumulative: zero means never.
		neverEstablished(t, l, "host2", "rr", "TCPMD5Failure", 3, func() error {
			ns, err := frrNeighbors(l, "rr")
			if err != nil {
				return err
			}
			if n, ok := ns[vtep2.String()]; ok && (n.Established > 0 || n.State == "Established") {
				return fmt.Errorf("rr: neighbor %s came up: %+v", vtep2, n)
			}
			return nil
		}, func() error { return nil })
	})

	// GTSM on both ends: each sends TTL 255 and accepts only 255. FRR
	// drops anything below 255 too, so this also shows evpnd sends 255
	// rather than eBGP's TTL 1.
	t.Run("GTSM", func(t *testing.T) {
		established(t, l, "host3", "10.0.0.11")
	})

	// GTSM on evpnd only: FRR sends its eBGP default TTL 1, and host4's
	// kernel drops it on IP_MINTTL. FRR's OPEN can still arrive with 255
	// (an accepted socket starts with FRR's listener TTL), so FRR may see
	// the session up for a moment; evpnd never does, and holds it in
	// OpenConfirm until its hold timer ends it.
	t.Run("GTSMRefused", func(t *testing.T) {
		established(t, l, "host3", "10.0.0.11")
		// The kernel's count of segments refused for their TTL is the
		// proof; whether FRR ever counts a dropped session depends on how
		// far its side got before the hold timer, so it is not asked.
		neverEstablished(t, l, "host4", "host4", "TCPMinTTLDrop", 3, func() error { return nil }, func() error { return nil })
	})
}
