package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/evpnd/evpnd/integration/lab"
)

// grMACs is how many MACs host2 holds behind vm2 while host1 restarts.
const grMACs = 10000

// grHelper is the peer that keeps host1's routes while host1's evpnd
// restarts, seen through its own table.
type grHelper struct {
	// name is the helper's lab node.
	name string
	// ready returns nil once the helper and host1 have negotiated graceful
	// restart; it skips t when the helper will not keep host1's routes.
	ready func(t *testing.T, l *lab.Lab) error
	// fromHost1 reads the helper's paths from host1. stale is -1 when the
	// helper does not show which paths are stale.
	fromHost1 func(l *lab.Lab) (helperPaths, error)
	// fromHost2 reads the helper's paths from host2; nil when host2 is the
	// helper.
	fromHost2 func(l *lab.Lab) (helperPaths, error)
}

// TestPrivilegedGracefulRestart runs the graceful restart test with an
// FRR route reflector as host1's helper. FRR 8.4 (Debian 12) keeps no
// l2vpn-evpn routes for a restarting peer, so this skips there; the
// evpnd-helper variant below runs everywhere.
func TestPrivilegedGracefulRestart(t *testing.T) {
	testGracefulRestart(t, "topologies/gr.clab.yml", grHelper{
		name: "rr",
		ready: func(t *testing.T, l *lab.Lab) error {
			out, err := l.Vtysh("rr", "show bgp neighbors 10.0.0.1")
			if err != nil {
				return err
			}
			if !strings.Contains(string(out), "Graceful Restart Capability: advertised and received") {
				return errors.New("rr and host1 have not negotiated graceful restart")
			}
			// FRR counts a family for graceful restart only if it is one of
			// its NSF families; FRR 8.4's end at SAFI_MPLS_VPN, so it is a
			// helper for nothing evpnd carries and drops host1's routes with
			// the session.
			if !strings.Contains(string(out), "Remote GR Mode: Restart") {
				ver, _ := l.Vtysh("rr", "show version")
				t.Skipf("the RR's FRR negotiates graceful restart but keeps no l2vpn-evpn routes for a restarting peer "+
					"(Remote GR Mode is not Restart: EVPN is not among its NSF families); needs an FRR with EVPN graceful restart. %s",
					strings.SplitN(string(ver), "\n", 2)[0])
			}
			return nil
		},
		fromHost1: func(l *lab.Lab) (helperPaths, error) { return rrPathsFrom(l, "10.0.0.1") },
		fromHost2: func(l *lab.Lab) (helperPaths, error) { return rrPathsFrom(l, "10.0.0.2") },
	})
}

// TestPrivilegedGracefulRestartEvpndHelper runs the graceful restart test
// with evpnd on both sides: host1 and host2 peer directly, and host2's
// evpnd (GoBGP as helper) keeps host1's routes, and so its kernel entries,
// while host1 restarts.
func TestPrivilegedGracefulRestartEvpndHelper(t *testing.T) {
	testGracefulRestart(t, "topologies/gr-mesh.clab.yml", grHelper{
		name: "host2",
		ready: func(t *testing.T, l *lab.Lab) error {
			state, err := evpndPeerState(l, "host2", "10.0.0.1")
			if err != nil {
				return err
			}
			if state != "PEER_STATE_ESTABLISHED" {
				return fmt.Errorf("host2's session with host1 is %s", state)
			}
			return nil
		},
		fromHost1: evpndPathsFrom("host2", "10.0.0.1"),
	})
}

// evpndPathsFrom reads the type-2 routes node's evpnd holds from the host
// with router ID peer (its RD 10.0.0.x:100, VNI 100). evpnd does not show
// which paths are stale.
func evpndPathsFrom(node, peer string) func(l *lab.Lab) (helperPaths, error) {
	return func(l *lab.Lab) (helperPaths, error) {
		var out struct {
			Routes []ctlRoute `json:"routes"`
		}
		if err := l.EvpnctlJSON(node, &out, "show", "evpn", "routes", "--rd", peer+":100"); err != nil {
			return helperPaths{}, err
		}
		rs := helperPaths{stale: -1, macs: map[string]bool{}}
		for _, r := range out.Routes {
			if r.Local || r.NextHop != peer {
				continue
			}
			rs.paths++
			if r.MAC != "" {
				rs.macs[strings.ToLower(r.MAC)] = true
			}
		}
		return rs, nil
	}
}

// testGracefulRestart restarts host1's evpnd twice, once with the restart
// signal (SIGUSR1) and once with kill -9, while host2 holds grMACs MACs
// and vm1 sends a numbered UDP flow to vm2. Each time: no packet of the
// flow is lost; the helper keeps host1's routes (marked stale where it
// shows it) until host1 is back; host2 keeps vm1's MAC throughout; and
// once host1 has sent End-of-RIB, what it no longer has (a MAC that left
// host1 while it was down) is swept on the helper and on host2, and what
// host2 withdrew meanwhile is swept from host1's kernel, nothing else.
// Then a plain SIGTERM makes the helper drop host1's routes at once.
func testGracefulRestart(t *testing.T, topology string, helper grHelper) {
	requireLab(t)
	if _, err := os.Stat(filepath.Join("..", "bin", "evpnd")); err != nil {
		t.Skip("bin/evpnd is missing: run make build")
	}
	l := lab.Up(t, topology, lab.Options{})
	vm2 := netip.MustParseAddr("172.31.1.2")
	lab.Eventually(t, converge, pollEvery, func() error {
		return lab.TCPExchange(t, l.NS("vm1"), l.NS("vm2"), vm2, 7101)
	})
	lab.Eventually(t, converge, pollEvery, func() error { return helper.ready(t, l) })
	tenant1, tenant2 := l.TenantNS("host1", "blue"), l.TenantNS("host2", "blue")
	mac1 := strings.TrimSpace(string(must(l.Exec("vm1", "cat", "/sys/class/net/eth1/address"))))

	// host2 learns grMACs MACs from vm2 and advertises them; host1
	// installs them.
	if err := sendFromMACs(l.NS("vm2"), "eth1", 0x47, grMACs); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 3*converge, time.Second, func() error {
		return wantRemote(tenant1, "02:5a:47:", grMACs)
	})
	// host1 still has vm1's MAC and host2 has it from host1.
	vm1At2 := func() error { return remoteFDB(tenant2, mac1) }
	lab.Eventually(t, converge, pollEvery, vm1At2)

	for i, mode := range []struct {
		name string
		stop func() error
	}{
		{"SIGUSR1", func() error { return signalAndWait(l, "host1", syscall.SIGUSR1) }},
		{"kill -9", func() error { return l.KillDaemons("host1") }},
	} {
		t.Logf("restart %d: %s", i+1, mode.name)
		// Keep host2's MACs from ageing out over a long run; refreshing
		// changes nothing in evpnd.
		if err := sendFromMACs(l.NS("vm2"), "eth1", 0x47, grMACs); err != nil {
			t.Fatal(err)
		}
		// The refresh brings back the MAC host2 withdrew in the round
		// before: host1 must hold it before it goes down, since the
		// check below wants host1 to keep every one of them.
		lab.Eventually(t, converge, pollEvery, func() error {
			return wantRemote(tenant1, "02:5a:47:", grMACs)
		})
		// A MAC that will leave host1 while its evpnd is down.
		leaver := byte(0x60 + i)
		leaverMAC := fmt.Sprintf("02:5a:%02x:00:00:00", leaver)
		if err := sendFromMACs(l.NS("vm1"), "eth1", int(leaver), 1); err != nil {
			t.Fatal(err)
		}
		lab.Eventually(t, converge, pollEvery, func() error { return remoteFDB(tenant2, leaverMAC) })
		// A MAC host2 will withdraw while host1 is down.
		gone2 := fmt.Sprintf("02:5a:47:00:00:%02x", i)

		flow := startFlow(t, l.NS("vm1"), l.NS("vm2"), vm2, uint16(7200+i), 2*time.Millisecond)
		lab.Eventually(t, converge, pollEvery, flow.flowing)

		logBefore := readLog(t, l, "host1")
		if err := mode.stop(); err != nil {
			t.Fatal(err)
		}
		// The helper helps: host1's routes stay, stale.
		lab.Eventually(t, converge, pollEvery, func() error {
			rs, err := helper.fromHost1(l)
			if err != nil {
				return err
			}
			if rs.paths == 0 || (rs.stale >= 0 && rs.stale != rs.paths) || !rs.macs[strings.ToLower(mac1)] {
				return fmt.Errorf("%s holds %d paths from host1 (vm1's MAC %s among them: %v), %d stale; want all kept as stale",
					helper.name, rs.paths, mac1, rs.macs[strings.ToLower(mac1)], rs.stale)
			}
			return nil
		})
		if err := vm1At2(); err != nil {
			t.Fatalf("host1 down (%s): %v", mode.name, err)
		}
		// While host1 is down its leaver goes, and host2 withdraws one of
		// its MACs.
		if _, err := lab.ExecNS(tenant1, "bridge", "fdb", "del", leaverMAC, "dev", "tap-vm1", "master"); err != nil {
			t.Fatal(err)
		}
		if _, err := lab.ExecNS(tenant2, "bridge", "fdb", "del", gone2, "dev", "tap-vm2", "master"); err != nil {
			t.Fatal(err)
		}
		lab.Eventually(t, converge, pollEvery, func() error {
			if err := remoteFDB(tenant1, gone2); err != nil {
				return fmt.Errorf("host1's kernel must keep what it had until it is back: %w", err)
			}
			if helper.fromHost2 == nil {
				return nil
			}
			rs, err := helper.fromHost2(l)
			if err != nil {
				return err
			}
			if rs.macs[gone2] {
				return fmt.Errorf("%s still has %s from host2", helper.name, gone2)
			}
			return nil
		})

		if err := l.StartDaemons("host1"); err != nil {
			t.Fatal(err)
		}
		// Until host1 has synced: host2 keeps vm1's MAC, host1 keeps every
		// remote MAC (the withdrawn one too: it has not heard yet). The
		// prune starts only after host1 logs "bgp converged", so the log
		// is read after the FDB dump: when it still lacks a new line, the
		// dump was taken before any prune and must hold every MAC.
		deadline := time.Now().Add(converge)
		for {
			if err := vm1At2(); err != nil {
				t.Fatalf("during restart (%s): %v", mode.name, err)
			}
			dumped := wantRemote(tenant1, "02:5a:47:", grMACs)
			log := readLog(t, l, "host1")
			if strings.Count(log, "bgp converged") > strings.Count(logBefore, "bgp converged") {
				break
			}
			if dumped != nil {
				t.Fatalf("during restart (%s), before convergence: %v", mode.name, dumped)
			}
			if time.Now().After(deadline) {
				t.Fatalf("restarted evpnd (%s) never converged", mode.name)
			}
			time.Sleep(pollEvery)
		}
		lab.Eventually(t, converge, pollEvery, func() error {
			if log := readLog(t, l, "host1"); strings.Count(log, "kernel synced with control plane") <= strings.Count(logBefore, "kernel synced with control plane") {
				return fmt.Errorf("restarted evpnd (%s) has not synced with the control plane", mode.name)
			}
			return nil
		})
		log := readLog(t, l, "host1")[len(logBefore):]
		for _, want := range []string{"bgp graceful restart", `reason="every peer sent its routes"`} {
			if !strings.Contains(log, want) {
				t.Errorf("restart (%s): host1's log lacks %q", mode.name, want)
			}
		}

		// Fresh again: no stale path from host1 on the helper, the leaver
		// swept on the helper and on host2, host2's withdrawn MAC swept on
		// host1 and nothing else.
		lab.Eventually(t, converge, pollEvery, func() error {
			rs, err := helper.fromHost1(l)
			if err != nil {
				return err
			}
			switch {
			case rs.paths == 0 || rs.stale > 0:
				return fmt.Errorf("%s holds %d paths from host1, %d stale; want all fresh", helper.name, rs.paths, rs.stale)
			case rs.macs[leaverMAC]:
				return fmt.Errorf("%s still has %s, which left host1 while it was down", helper.name, leaverMAC)
			case !rs.macs[strings.ToLower(mac1)]:
				return fmt.Errorf("%s lacks vm1's MAC %s from host1", helper.name, mac1)
			}
			if err := remoteFDB(tenant2, leaverMAC); err == nil {
				return fmt.Errorf("host2 still has %s", leaverMAC)
			}
			if err := remoteFDB(tenant1, gone2); err == nil {
				return fmt.Errorf("host1 still has %s, which host2 withdrew", gone2)
			}
			// The refresh at the top of this round brought back the MAC
			// host2 withdrew in the round before; only this round's is gone.
			return wantRemote(tenant1, "02:5a:47:", grMACs-1)
		})
		if err := vm1At2(); err != nil {
			t.Fatal(err)
		}
		lost := flow.Lost(t)
		t.Logf("restart %d (%s): %d packets sent, %d lost", i+1, mode.name, flow.sent.Load(), lost)
		if lost != 0 {
			t.Errorf("restart (%s): %d of %d packets lost", mode.name, lost, flow.sent.Load())
		}
	}

	// A plain SIGTERM is a clean stop: the helper drops host1's routes at
	// once, and the next start will not claim a restart.
	if err := l.StopDaemons("host1"); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, converge, pollEvery, func() error {
		rs, err := helper.fromHost1(l)
		if err != nil {
			return err
		}
		if rs.paths != 0 {
			return fmt.Errorf("%s holds %d paths from host1 (%d stale) after a clean stop", helper.name, rs.paths, rs.stale)
		}
		if err := remoteFDB(tenant2, mac1); err == nil {
			return fmt.Errorf("host2 still has vm1's MAC %s", mac1)
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(l.NodeDir("host1"), "state", "bgp-restarting")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a clean stop left the restart marker (%v)", err)
	}
}

// signalAndWait sends sig to node's evpnd and waits until it has exited,
// then drops it from the lab's records.
func signalAndWait(l *lab.Lab, node string, sig syscall.Signal) error {
	pid := 0
	for _, p := range l.State().Procs {
		if p.Node == node && p.Name == "evpnd" {
			pid = p.PID
		}
	}
	if pid == 0 {
		return fmt.Errorf("node %s runs no evpnd", node)
	}
	if err := l.Signal(node, "evpnd", sig); err != nil {
		return err
	}
	err := lab.Poll(converge, 20*time.Millisecond, func() error {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(b), ") Z ") {
			return nil
		}
		return fmt.Errorf("evpnd pid %d still running after %v", pid, sig)
	})
	if err != nil {
		return err
	}
	return l.KillDaemons(node) // only the records: the process is gone
}

// helperPaths summarises a helper's paths from one peer.
type helperPaths struct {
	paths, stale int             // stale is -1 where the helper does not show it
	macs         map[string]bool // type-2 MACs, lower case
}

// rrPathsFrom reads `show bgp l2vpn evpn route json` on the RR, counting
// the paths learned from peer and those FRR marks stale.
func rrPathsFrom(l *lab.Lab, peer string) (helperPaths, error) {
	var top map[string]json.RawMessage
	if err := l.VtyshJSON("rr", "show bgp l2vpn evpn route json", &top); err != nil {
		return helperPaths{}, err
	}
	out := helperPaths{macs: map[string]bool{}}
	for _, raw := range top {
		var rd map[string]json.RawMessage
		if json.Unmarshal(raw, &rd) != nil {
			continue // numPrefix and other scalars
		}
		for _, praw := range rd {
			var prefix struct {
				Paths [][]struct {
					PeerID string `json:"peerId"`
					Stale  bool   `json:"stale"`
					MAC    string `json:"mac"`
				} `json:"paths"`
			}
			if json.Unmarshal(praw, &prefix) != nil {
				continue
			}
			for _, group := range prefix.Paths {
				for _, p := range group {
					if p.PeerID != peer {
						continue
					}
					out.paths++
					if p.Stale {
						out.stale++
					}
					if p.MAC != "" {
						out.macs[strings.ToLower(p.MAC)] = true
					}
				}
			}
		}
	}
	return out, nil
}

// wantRemote checks that ns's bridge holds exactly n remote MACs starting
// with prefix.
func wantRemote(ns, prefix string, n int) error {
	got, err := remoteMACs(ns, prefix)
	if err != nil {
		return err
	}
	if got != n {
		return fmt.Errorf("%s holds %d remote MACs %s*, want %d", ns, got, prefix, n)
	}
	return nil
}
