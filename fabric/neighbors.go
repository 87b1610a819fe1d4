package fabric

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/evpnd/evpnd/fabric/kernel"
)

// sizeofNdmsg is struct ndmsg: family, 3 pad, ifindex, state, flags, type.
const sizeofNdmsg = 12

// kernelNeigh is one ARP/ND entry with its NDA_PROTOCOL tag, which the
// netlink library does not parse.
type kernelNeigh struct {
	ifindex int
	ip      netip.Addr
	mac     net.HardwareAddr
	state   uint16
	flags   uint8
	proto   uint8
}

// remote reports whether evpnd installed n from an EVPN route: Update and
// Sync write suppression entries extern_learn and stamp them neighProto.
func (n kernelNeigh) remote() bool {
	return n.flags&unix.NTF_EXT_LEARNED != 0 && n.proto == neighProto
}

// Neighbors lists the neighbor tables of the segment bridges of every
// tenant, local and remote entries, sorted by tenant, VNI and IP. The
// L3VNI bridges' entries (remote router MACs) are not a segment's and are
// left out.
func (l *Linux) Neighbors(ctx context.Context) ([]Neighbor, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errors.New("neighbors: datapath is closed")
	}
	var (
		out  []Neighbor
		errs []error
	)
	for _, t := range l.tenants {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		brVNI := make(map[int]*segState)
		for _, s := range l.byVNI {
			if s.tenant == t {
				brVNI[s.brIndex] = s
			}
		}
		if len(brVNI) == 0 {
			continue
		}
		ns, err := kernel.Dump("neighbors", t.bw.dumpNeighs)
		if err != nil {
			errs = append(errs, fmt.Errorf("tenant %q: %w", t.name, err))
			continue
		}
		for _, n := range ns {
			s, ok := brVNI[n.ifindex]
			if !ok {
				continue
			}
			out = append(out, Neighbor{Tenant: t.name, VNI: s.vni, IP: n.ip, MAC: n.mac, Remote: n.remote(), State: nudState(n.state)})
		}
	}
	slices.SortFunc(out, func(a, b Neighbor) int {
		if c := strings.Compare(a.Tenant, b.Tenant); c != 0 {
			return c
		}
		if a.VNI != b.VNI {
			return int(a.VNI) - int(b.VNI)
		}
		return a.IP.Compare(b.IP)
	})
	return out, errors.Join(errs...)
}

// nudNames are the NUD states in the order `ip neigh` prints them.
var nudNames = []struct {
	bit  uint16
	name string
}{
	{unix.NUD_INCOMPLETE, "incomplete"},
	{unix.NUD_REACHABLE, "reachable"},
	{unix.NUD_STALE, "stale"},
	{unix.NUD_DELAY, "delay"},
	{unix.NUD_PROBE, "probe"},
	{unix.NUD_FAILED, "failed"},
	{unix.NUD_NOARP, "noarp"},
	{unix.NUD_PERMANENT, "permanent"},
}

// nudState names a kernel NUD state. An entry is in one state; should the
// kernel ever report several bits they are joined with commas.
func nudState(state uint16) string {
	var names []string
	for _, s := range nudNames {
		if state&s.bit != 0 {
			names = append(names, s.name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

// dumpNeighs lists every IPv4 and IPv6 neighbor in the writer's namespace.
func (w *batchWriter) dumpNeighs() ([]kernelNeigh, error) {
	var out []kernelNeigh
	// AF_UNSPEC walks the ARP and ND tables, not the bridge FDB.
	err := w.dump("neighbor", unix.RTM_GETNEIGH, make([]byte, sizeofNdmsg), unix.RTM_NEWNEIGH, func(m *syscall.NetlinkMessage) error {
		if len(m.Data) < sizeofNdmsg {
			return nil
		}
		if fam := m.Data[0]; fam != unix.AF_INET && fam != unix.AF_INET6 {
			return nil
		}
		kn := kernelNeigh{
			ifindex: int(int32(binary.NativeEndian.Uint32(m.Data[4:8]))),
			state:   binary.NativeEndian.Uint16(m.Data[8:10]),
			flags:   m.Data[10],
		}
		attrs, err := nl.ParseRouteAttr(m.Data[sizeofNdmsg:])
		if err != nil {
			return fmt.Errorf("parse neighbor attributes: %w", err)
		}
		for _, at := range attrs {
			switch at.Attr.Type {
			case unix.NDA_DST:
				kn.ip, _ = netip.AddrFromSlice(at.Value)
			case unix.NDA_LLADDR:
				if len(at.Value) > 0 {
					kn.mac = net.HardwareAddr(slices.Clone(at.Value))
				}
			case ndaProtocol:
				if len(at.Value) > 0 {
					kn.proto = at.Value[0]
				}
			}
		}
		if kn.ip.IsValid() {
			out = append(out, kn)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
