package policybench

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where named namespaces live, as for ip netns and the engine.
const netnsDir = "/run/netns"

// nameRE matches every namespace a benchmark process makes:
// evpb<pid>-<run>-<role>. The pid lets Sweep tell a live run's namespaces
// from those of a run that was killed before its cleanup ran.
var nameRE = regexp.MustCompile(`^evpb([0-9]+)-[0-9a-f]{6}-[a-z0-9]+$`)

// namer hands out the namespace names of one run.
type namer struct{ prefix string }

func newNamer() namer {
	b := make([]byte, 3)
	rand.Read(b)
	return namer{prefix: fmt.Sprintf("evpb%d-%s-", os.Getpid(), hex.EncodeToString(b))}
}

func (n namer) name(role string) string { return n.prefix + role }

// Sweep deletes the namespaces of benchmark runs whose process is gone and
// returns their names. Namespaces of live processes are left alone, so
// concurrent runs (a smoke test next to `make bench`) do not disturb each
// other.
func Sweep() ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		m := nameRE.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil {
			continue
		}
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			continue
		}
		if err := deleteNamespace(e.Name()); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, e.Name())
	}
	return removed, errors.Join(errs...)
}

// space is a named network namespace the benchmark made, with a netlink
// handle bound to it.
type space struct {
	name string
	ns   netns.NsHandle
	h    *netlink.Handle
}

// newSpace creates the named namespace with its loopback up. The thread
// that creates it is moved back to its own namespace afterwards; if that
// fails the thread stays locked so the runtime retires it.
func newSpace(name string) (*space, error) {
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("namespace %s: name does not match %s", name, nameRE)
	}
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return nil, fmt.Errorf("namespace %s: %w", name, err)
	}
	ns, err := func() (netns.NsHandle, error) {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			return netns.None(), fmt.Errorf("get thread namespace: %w", err)
		}
		defer orig.Close()
		ns, newErr := netns.NewNamed(name)
		if err := netns.Set(orig); err != nil {
			if newErr == nil {
				ns.Close()
			}
			return netns.None(), fmt.Errorf("restore thread namespace: %w", err)
		}
		runtime.UnlockOSThread()
		return ns, newErr
	}()
	if err != nil {
		// NewNamed may have left the mount point behind.
		deleteNamespace(name)
		return nil, fmt.Errorf("namespace %s: create: %w", name, err)
	}
	s := &space{name: name, ns: ns}
	if s.h, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE); err != nil {
		s.close()
		deleteNamespace(name)
		return nil, fmt.Errorf("namespace %s: netlink handle: %w", name, err)
	}
	lo, err := s.h.LinkByName("lo")
	if err == nil {
		err = s.h.LinkSetUp(lo)
	}
	if err != nil {
		s.close()
		deleteNamespace(name)
		return nil, fmt.Errorf("namespace %s: loopback up: %w", name, err)
	}
	return s, nil
}

// close releases the handles; the namespace stays until deleteNamespace.
func (s *space) close() {
	if s.h != nil {
		s.h.Close()
		s.h = nil
	}
	if s.ns.IsOpen() {
		s.ns.Close()
	}
}

// openNamespace opens a named namespace by path.
func openNamespace(name string) (netns.NsHandle, error) {
	ns, err := netns.GetFromPath(filepath.Join(netnsDir, name))
	if err != nil {
		return netns.None(), fmt.Errorf("namespace %s: open: %w", name, err)
	}
	return ns, nil
}

// deleteNamespace removes a benchmark namespace by name; the kernel frees
// it, and everything in it, once nothing holds it open.
func deleteNamespace(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("namespace %s: refusing to delete a namespace the benchmark did not name", name)
	}
	path := filepath.Join(netnsDir, name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("namespace %s: unmount: %w", name, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("namespace %s: %w", name, err)
	}
	return nil
}

// addBridge creates an up bridge with a gateway address.
func (s *space) addBridge(name string, addr netip.Prefix) error {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := s.h.LinkAdd(br); err != nil {
		return fmt.Errorf("namespace %s: bridge %s: %w", s.name, name, err)
	}
	if err := s.h.AddrAdd(br, &netlink.Addr{IPNet: ipNet(addr)}); err != nil {
		return fmt.Errorf("namespace %s: bridge %s: address %s: %w", s.name, name, addr, err)
	}
	if err := s.h.LinkSetUp(br); err != nil {
		return fmt.Errorf("namespace %s: bridge %s: up: %w", s.name, name, err)
	}
	return nil
}

// addPort creates a workload port enslaved to bridge: a veth whose peer,
// named peer, goes to the workload namespace w (addressed addr, default
// route via gw) or, when w is nil, stays down in s as an idle workload.
func (s *space) addPort(port, bridge, peer string, w *space, addr netip.Prefix, gw netip.Addr) error {
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: port}, PeerName: peer}
	if w != nil {
		v.PeerNamespace = netlink.NsFd(int(w.ns))
	}
	if err := s.h.LinkAdd(v); err != nil {
		return fmt.Errorf("namespace %s: port %s: %w", s.name, port, err)
	}
	br, err := s.h.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("namespace %s: bridge %s: %w", s.name, bridge, err)
	}
	if err := s.h.LinkSetMaster(v, br); err != nil {
		return fmt.Errorf("namespace %s: port %s: master %s: %w", s.name, port, bridge, err)
	}
	if err := s.h.LinkSetUp(v); err != nil {
		return fmt.Errorf("namespace %s: port %s: up: %w", s.name, port, err)
	}
	if w == nil {
		return nil
	}
	eth, err := w.h.LinkByName(peer)
	if err != nil {
		return fmt.Errorf("namespace %s: %s: %w", w.name, peer, err)
	}
	if err := w.h.AddrAdd(eth, &netlink.Addr{IPNet: ipNet(addr)}); err != nil {
		return fmt.Errorf("namespace %s: %s: address %s: %w", w.name, peer, addr, err)
	}
	if err := w.h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("namespace %s: %s: up: %w", w.name, peer, err)
	}
	def := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw.AsSlice()}
	if err := w.h.RouteAdd(def); err != nil {
		return fmt.Errorf("namespace %s: default route via %s: %w", w.name, gw, err)
	}
	return nil
}

// bridgeNetfilter makes bridged traffic in s pass the inet hooks, as the
// engine does on Apply, so the no-policy baseline takes the same bridged
// path with br_netfilter as the policy runs. The sysctls are per
// namespace and only reachable from a thread inside it.
func (s *space) bridgeNetfilter() error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get thread namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(s.ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("namespace %s: enter: %w", s.name, err)
	}
	var errs []error
	for _, name := range []string{"bridge-nf-call-iptables", "bridge-nf-call-ip6tables"} {
		if err := os.WriteFile("/proc/sys/net/bridge/"+name, []byte("1\n"), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("namespace %s: enable br_netfilter: %w", s.name, err))
		}
	}
	if err := netns.Set(orig); err != nil {
		return errors.Join(append(errs, fmt.Errorf("restore thread namespace: %w", err))...)
	}
	runtime.UnlockOSThread()
	return errors.Join(errs...)
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
