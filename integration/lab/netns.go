package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// netnsDir is where iproute2 keeps named namespaces.
const netnsDir = "/run/netns"

// addNamespace creates the node's namespace with lo up, and for a bridge
// node the bridge itself (named after the node when that fits in an
// interface name).
func (l *Lab) addNamespace(n *Node) error {
	ns := l.NS(n.Name)
	// Record first: if creation half-succeeds, teardown still looks for it.
	if err := l.recordNS(ns); err != nil {
		return err
	}
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		return fmt.Errorf("node %s: ip netns add %s: %w: %s", n.Name, ns, err, strings.TrimSpace(string(out)))
	}
	h, err := HandleAt(ns)
	if err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("node %s: lo: %w", n.Name, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("node %s: set lo up: %w", n.Name, err)
	}
	if n.Role != RoleBridge {
		return nil
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridgeName(n)}}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("node %s: add bridge %s: %w", n.Name, br.Name, err)
	}
	if err := h.LinkSetUp(br); err != nil {
		return fmt.Errorf("node %s: set bridge %s up: %w", n.Name, br.Name, err)
	}
	return nil
}

// bridgeName is the bridge device of a bridge node.
func bridgeName(n *Node) string {
	if len(n.Name) <= maxIfName {
		return n.Name
	}
	return "br0"
}

// addLink creates a veth pair with one end in each endpoint's namespace,
// both up; an end on a bridge node is enslaved to its bridge.
func (l *Lab) addLink(lk Link) error {
	name := lk.A.String() + " <-> " + lk.B.String()
	ha, err := HandleAt(l.NS(lk.A.Node))
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	defer ha.Close()
	nsB, err := netns.GetFromName(l.NS(lk.B.Node))
	if err != nil {
		return fmt.Errorf("link %s: namespace %s: %w", name, l.NS(lk.B.Node), err)
	}
	defer nsB.Close()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: lk.A.Interface},
		PeerName:      lk.B.Interface,
		PeerNamespace: netlink.NsFd(int(nsB)),
	}
	if err := ha.LinkAdd(veth); err != nil {
		return fmt.Errorf("link %s: add veth: %w", name, err)
	}
	for _, ep := range []Endpoint{lk.A, lk.B} {
		if err := l.endpointUp(ep); err != nil {
			return fmt.Errorf("link %s: %w", name, err)
		}
	}
	return nil
}

func (l *Lab) endpointUp(ep Endpoint) error {
	h, err := HandleAt(l.NS(ep.Node))
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := h.LinkByName(ep.Interface)
	if err != nil {
		return fmt.Errorf("%s: %w", ep, err)
	}
	if n := l.Topo.Node(ep.Node); n.Role == RoleBridge {
		br, err := h.LinkByName(bridgeName(n))
		if err != nil {
			return fmt.Errorf("%s: bridge: %w", ep, err)
		}
		if err := h.LinkSetMaster(link, br); err != nil {
			return fmt.Errorf("%s: enslave to %s: %w", ep, br.Attrs().Name, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("%s: set up: %w", ep, err)
	}
	return nil
}

// HandleAt is a netlink handle in the named namespace (/run/netns/ns).
func HandleAt(ns string) (*netlink.Handle, error) {
	nsh, err := netns.GetFromName(ns)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", ns, err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", ns, err)
	}
	return h, nil
}

// Namespaces lists the named namespaces on the machine that belong to lab
// id: its node namespaces and the tenant namespaces its evpnd nodes made.
func Namespaces(id string) ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), id+"-") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func namespacesExist(id string) bool {
	ns, err := Namespaces(id)
	return err != nil || len(ns) > 0
}

// nsInode identifies a named namespace, to tell whether a PID still runs in
// it before signalling it.
func nsInode(ns string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(netnsDir+"/"+ns, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// pidNSInode is the network namespace inode of a process.
func pidNSInode(pid int) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// deleteNamespace removes a named namespace; the kernel destroys it, with
// its interfaces, once no process holds it.
func deleteNamespace(ns string) error {
	out, err := exec.Command("ip", "netns", "delete", ns).CombinedOutput()
	if err != nil {
		if _, statErr := os.Stat(netnsDir + "/" + ns); errors.Is(statErr, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("ip netns delete %s: %w: %s", ns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// nsPIDs lists processes running in a namespace.
func nsPIDs(ns string) ([]int, error) {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns pids %s: %w", ns, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
