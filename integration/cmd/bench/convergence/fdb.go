package convergence

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/evpnd/evpnd/integration/lab"
)

// fdbCounter counts the injected MACs a DUT has installed: bridge FDB
// entries with extern_learn on one bridge, read by a netlink dump in the
// DUT's namespace. Forking bridge -j for 100k rows every poll would load
// the machine under test, and so does decoding every row into a
// netlink.Neigh (a 100k-route dump holds 200k rows with the VXLAN
// device's own entries; decoded, it took a second of CPU here), so the
// rows are read in place from the dump buffer.
type fdbCounter struct {
	h       *netlink.Handle // owns the socket; LinkByName
	sock    *nl.SocketHandle
	ns      string
	brIndex uint32
	last    int // the last count from a complete dump
	dumps   int
	slowest time.Duration // the longest dump: what polling costs the machine
}

// newFDBCounter opens the namespace bind-mounted at nsPath.
func newFDBCounter(nsPath, bridge string) (*fdbCounter, error) {
	nsh, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", nsPath, err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", nsPath, err)
	}
	br, err := h.LinkByName(bridge)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("namespace %s: bridge %s: %w", nsPath, bridge, err)
	}
	sock, err := nl.GetNetlinkSocketAt(nsh, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("netlink socket in %s: %w", nsPath, err)
	}
	return &fdbCounter{h: h, sock: &nl.SocketHandle{Socket: sock}, ns: nsPath, brIndex: uint32(br.Attrs().Index)}, nil
}

// count returns how many injected MACs are extern_learn entries on the
// bridge. A dump the kernel interrupted because the table changed under it
// (the normal case while a DUT installs routes) is partial: the last
// complete count stands until a later poll, and it is not retried at once,
// since every dump competes with the DUT for the kernel. Once the DUT stops
// writing, dumps complete.
func (c *fdbCounter) count() (int, error) {
	start := time.Now()
	n, err := c.dump()
	c.dumps++
	c.slowest = max(c.slowest, time.Since(start))
	if errors.Is(err, netlink.ErrDumpInterrupted) {
		return c.last, nil
	}
	if err != nil {
		return 0, fmt.Errorf("namespace %s: fdb dump: %w", c.ns, err)
	}
	c.last = n
	return n, nil
}

// Offsets in struct ndmsg (linux/neighbour.h).
const (
	ndmFlagsOff = 10
	ndmSize     = 12
)

func (c *fdbCounter) dump() (int, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETNEIGH, unix.NLM_F_DUMP)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: c.sock}
	req.AddData(&netlink.Ndmsg{Family: unix.AF_BRIDGE})
	n := 0
	err := req.ExecuteIter(unix.NETLINK_ROUTE, unix.RTM_NEWNEIGH, func(m []byte) bool {
		if _, ok := injectedEntry(m, c.brIndex); ok {
			n++
		}
		return true
	})
	return n, err
}

// injectedEntry reports whether an ndmsg (with its attributes) is an
// injected MAC's extern_learn entry on the bridge brIndex, read in place,
// and its MAC.
func injectedEntry(m []byte, brIndex uint32) ([6]byte, bool) {
	if len(m) < ndmSize || m[0] != unix.AF_BRIDGE {
		return [6]byte{}, false
	}
	flags := m[ndmFlagsOff]
	if flags&unix.NTF_EXT_LEARNED == 0 || flags&unix.NTF_SELF != 0 {
		return [6]byte{}, false
	}
	var (
		master uint32
		mac    [6]byte
		ours   bool
	)
	for b := m[ndmSize:]; len(b) >= unix.SizeofRtAttr; {
		l := int(nl.NativeEndian().Uint16(b[0:2]))
		typ := nl.NativeEndian().Uint16(b[2:4])
		if l < unix.SizeofRtAttr || l > len(b) {
			break
		}
		v := b[unix.SizeofRtAttr:l]
		switch typ {
		case unix.NDA_MASTER:
			if len(v) == 4 {
				master = nl.NativeEndian().Uint32(v)
			}
		case unix.NDA_LLADDR:
			if len(v) == 6 && [3]byte(v[:3]) == macOUI {
				mac, ours = [6]byte(v), true
			}
		}
		b = b[min(len(b), (l+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1)):]
	}
	return mac, ours && master == brIndex
}

func (c *fdbCounter) close() {
	c.sock.Socket.Close()
	c.h.Close()
}

// fdbNamespace is the path of the namespace holding the DUT's bridge: the
// FRR node's own, or the tenant namespace evpnd created.
func fdbNamespace(l *lab.Lab, dut DUT) string {
	if dut != Evpnd {
		return "/run/netns/" + l.NS(dutNode)
	}
	return "/run/netns/" + l.TenantNS(dutNode, benchTenant)
}

// hostRSS is the VmHWM of a node's DUT daemons: evpnd's, or the sum of
// bgpd's and zebra's (both do the work in FRR).
func hostRSS(l *lab.Lab, dut DUT, node string) (uint64, error) {
	want := map[string]bool{"evpnd": dut == Evpnd, "bgpd": dut == FRR, "zebra": dut == FRR}
	var total uint64
	found := 0
	for _, p := range l.State().Procs {
		if p.Node != node || !want[p.Name] {
			continue
		}
		hwm, err := vmHWM(p.PID)
		if err != nil {
			return 0, fmt.Errorf("%s %s: %w", node, p.Name, err)
		}
		total += hwm
		found++
	}
	if wantN := map[DUT]int{Evpnd: 1, FRR: 2}[dut]; found != wantN {
		return 0, fmt.Errorf("%s: rss: found %d of the %d %s daemons", node, found, wantN, dut)
	}
	return total, nil
}

// vmHWM reads a process's peak resident set size in bytes.
func vmHWM(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "VmHWM:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("pid %d: VmHWM %q: %w", pid, v, err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("pid %d: no VmHWM in /proc/%d/status", pid, pid)
}
