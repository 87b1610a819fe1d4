package integration

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evpnd/evpnd/integration/lab"
)

// TestPrivilegedL2RestartAdopts stops evpnd on host1 and starts it again.
// The kernel state it built must outlive it (stop leaves devices and
// remote FDB entries in place), and the new evpnd must adopt it: the same
// devices (same ifindex), and the remote MAC of vm2 present at every sample
// from the stop until the new evpnd has synced with the control plane.
// Traffic between the workloads works again afterwards.
func TestPrivilegedL2RestartAdopts(t *testing.T) {
	requireLab(t)
	if _, err := os.Stat(filepath.Join("..", "bin", "evpnd")); err != nil {
		t.Skip("bin/evpnd is missing: run make build")
	}
	l := lab.Up(t, "topologies/l2-evpn.clab.yml", lab.Options{})
	vm1, vm2 := netip.MustParseAddr("172.31.1.1"), netip.MustParseAddr("172.31.1.2")
	lab.Eventually(t, converge, pollEvery, func() error {
		return lab.TCPExchange(t, l.NS("vm1"), l.NS("vm2"), vm2, 7001)
	})

	tenant := l.TenantNS("host1", "blue")
	mac2 := strings.TrimSpace(string(must(l.Exec("vm2", "cat", "/sys/class/net/eth1/address"))))
	remoteMAC := func() error { return remoteFDB(tenant, mac2) }
	lab.Eventually(t, converge, pollEvery, remoteMAC)
	ifindex := func(dev string) string {
		out, err := lab.ExecNS(tenant, "cat", "/sys/class/net/"+dev+"/ifindex")
		if err != nil {
			t.Fatalf("%s in %s: %v", dev, tenant, err)
		}
		return strings.TrimSpace(string(out))
	}
	vxBefore, brBefore := ifindex("vx100"), ifindex("br100")

	if err := l.StopDaemons("host1"); err != nil {
		t.Fatal(err)
	}
	if err := remoteMAC(); err != nil {
		t.Fatalf("after evpnd stopped: %v (a stop must not flush the kernel)", err)
	}
	logBefore := readLog(t, l, "host1")

	if err := l.StartDaemons("host1"); err != nil {
		t.Fatal(err)
	}
	// Sample until the new evpnd reports its sync with the control plane:
	// the remote entry must never have gone missing meanwhile.
	deadline := time.Now().Add(converge)
	for {
		if err := remoteMAC(); err != nil {
			t.Fatalf("during restart: %v", err)
		}
		if strings.Count(readLog(t, l, "host1"), "kernel synced with control plane") > strings.Count(logBefore, "kernel synced with control plane") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("restarted evpnd never synced with the control plane")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if vx, br := ifindex("vx100"), ifindex("br100"); vx != vxBefore || br != brBefore {
		t.Errorf("devices recreated: vx100 %s -> %s, br100 %s -> %s; evpnd must adopt them", vxBefore, vx, brBefore, br)
	}
	lab.Eventually(t, converge, pollEvery, func() error {
		return lab.TCPExchange(t, l.NS("vm2"), l.NS("vm1"), vm1, 7002)
	})
}

func readLog(t *testing.T, l *lab.Lab, node string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(l.NodeDir(node), "evpnd.log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
