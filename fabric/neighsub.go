package fabric

import (
	"encoding/binary"
	"fmt"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/evpnd/evpnd/fabric/kernel"
)

// subscribeNeigh subscribes to the neighbor and bridge FDB events of a
// tenant namespace, listing the tables first (every family, then the
// bridge FDB), as netlink.NeighSubscribeWithOptions does, with three
// differences:
//
//   - A socket filter in the kernel drops the events of entries evpnd
//     installed (extern_learn) that the learner has no use for: their
//     deletions, and the VXLAN device's own entries (see
//     learnerFilter). When a peer's routes arrive or are withdrawn
//     those were most of its work: one wake-up, receive and decode per
//     entry (B1 and B2 of issue #6).
//   - The dump requests go to the kernel only. The library sends them to
//     the socket's groups as well, so every other listener of the
//     namespace hears them.
//   - The bridge FDB is listed port by port, for the bridge ports that
//     are not VXLAN devices: the learner's facts are MACs on workload
//     ports, and a whole FDB dump costs the kernel time quadratic in the
//     table (it walks the table again for every message it fills, and a
//     restart finds every remote MAC there, twice), where the listing of
//     one port walks it once. Ports enslaved after the listing have only
//     entries learned since, which arrive as events: the socket is
//     subscribed before the ports are read.
func (l *Linux) subscribeNeigh(ns netns.NsHandle, stop chan struct{}) (<-chan netlink.NeighUpdate, error) {
	s, err := nl.SubscribeAt(ns, netns.None(), unix.NETLINK_ROUTE, unix.RTNLGRP_NEIGH)
	if err != nil {
		return nil, err
	}
	filter := learnerFilter()
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.SetsockoptSockFprog(s.GetFd(), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		s.Close()
		return nil, fmt.Errorf("neighbor subscription: socket filter: %w", err)
	}
	if err := s.SetReceiveBufferSize(subSockBuf, true); err != nil {
		s.Close()
		return nil, fmt.Errorf("neighbor subscription: receive buffer: %w", err)
	}
	ports, err := workloadPorts(ns)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("neighbor subscription: %w", err)
	}
	if _, err := askNeighDump(s, unix.AF_UNSPEC, 0); err != nil {
		s.Close()
		return nil, fmt.Errorf("neighbor subscription: %w", err)
	}
	done := l.subDone(stop)
	go func() {
		<-done
		s.Close()
	}()
	ch := make(chan netlink.NeighUpdate, subChanNeigh)
	go l.readNeigh(s, ch, ports, l.subError(done, "neighbor"))
	return ch, nil
}

// readNeigh delivers s's events to ch until the socket fails or is
// closed, then closes ch. After each dump it asks for the bridge FDB of
// the next of ports (the kernel serves one dump at a time on a socket).
func (l *Linux) readNeigh(s *nl.NetlinkSocket, ch chan<- netlink.NeighUpdate, ports []int, cberr func(error)) {
	defer close(ch)
	for {
		msgs, from, err := s.Receive()
		if err != nil {
			cberr(err)
			return
		}
		if from.Pid != nl.PidKernel {
			continue // not the kernel's: another socket's multicast
		}
		for _, m := range msgs {
			if m.Header.Flags&unix.NLM_F_DUMP_INTR != 0 {
				cberr(netlink.ErrDumpInterrupted)
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				if len(ports) > 0 {
					if _, err := askNeighDump(s, unix.AF_BRIDGE, ports[0]); err != nil {
						cberr(fmt.Errorf("neighbor subscription: %w", err))
						return
					}
					ports = ports[1:]
				}
				continue
			case unix.NLMSG_ERROR:
				if err := kernelErr(m); err != nil {
					cberr(err)
					return
				}
				continue
			}
			n, err := netlink.NeighDeserialize(m.Data)
			if err != nil {
				cberr(err)
				return
			}
			ch <- netlink.NeighUpdate{Type: m.Header.Type, Neigh: *n}
		}
	}
}

// askNeighDump asks the kernel, and only the kernel, for a dump of
// family's neighbors on s, and returns the request's sequence number.
// With port not 0 the family must be AF_BRIDGE, and the dump holds the
// FDB entries on that bridge port: the kernel reads that filter from an
// ifinfomsg header only (as `bridge fdb show brport` sends), never from
// an ndmsg.
func askNeighDump(s *nl.NetlinkSocket, family, port int) (uint32, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETNEIGH, unix.NLM_F_DUMP)
	if port != 0 {
		m := nl.NewIfInfomsg(family)
		m.Index = int32(port)
		req.AddData(m)
	} else {
		req.AddData(&netlink.Ndmsg{Family: uint8(family)})
	}
	if err := unix.Sendto(s.GetFd(), req.Serialize(), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("list neighbors of family %d: %w", family, err)
	}
	return req.Seq, nil
}

// learnerFilter is a classic BPF socket filter that drops, of the
// neighbor events the kernel sends on its own (not dump replies, which
// carry NLM_F_MULTI and may hold many entries behind the first), those of
// entries flagged NTF_EXT_LEARNED, that is evpnd's, when they are
// deletions, the VXLAN device's own (NTF_SELF) entries, or bridge FDB
// entries. The learner needs none of them: evpnd's remote entry arriving
// on the bridge over a local one is how a MAC moves away, and Linux.write
// tells the learner of those itself (see localMACs). An IP neighbor evpnd
// installs over a local address still passes (remoteIPTakeover).
// Everything else is accepted. Every event is a message of its own, so
// the filter sees each at offset 0.
func learnerFilter() []unix.SockFilter {
	// Netlink headers are in host byte order; a BPF halfword load reads
	// network (big-endian) order, and a byte load reads one byte.
	be16 := func(v uint16) uint32 {
		var b [2]byte
		binary.NativeEndian.PutUint16(b[:], v)
		return uint32(binary.BigEndian.Uint16(b[:]))
	}
	flagsLow := uint32(6) // nlmsghdr.nlmsg_flags, its low byte
	if binary.NativeEndian.Uint16([]byte{0, 1}) == 1 {
		flagsLow = 7 // big-endian host
	}
	const (
		typeOffset = 4                      // nlmsghdr.nlmsg_type
		ndmFamily  = unix.NLMSG_HDRLEN      // ndmsg.ndm_family
		ndmFlags   = unix.NLMSG_HDRLEN + 10 // ndmsg.ndm_flags
		accept     = 0xffffffff
		ldh, ldb   = unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, unix.BPF_LD | unix.BPF_B | unix.BPF_ABS
		jeq, jset  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
		ret        = unix.BPF_RET | unix.BPF_K
	)
	newNeigh, delNeigh := be16(unix.RTM_NEWNEIGH), be16(unix.RTM_DELNEIGH)
	return []unix.SockFilter{
		/* 0 */ {Code: ldh, K: typeOffset},
		/* 1 */ {Code: jeq, K: newNeigh, Jt: 1, Jf: 0}, // to 3
		/* 2 */ {Code: jeq, K: delNeigh, Jt: 0, Jf: 10}, // to 3; else accept
		/* 3 */ {Code: ldb, K: flagsLow},
		/* 4 */ {Code: jset, K: unix.NLM_F_MULTI, Jt: 8, Jf: 0}, // a dump reply: accept
		/* 5 */ {Code: ldb, K: ndmFlags},
		/* 6 */ {Code: jset, K: unix.NTF_EXT_LEARNED, Jt: 0, Jf: 6}, // not evpnd's: accept
		/* 7 */ {Code: jset, K: unix.NTF_SELF, Jt: 4, Jf: 0}, // the VXLAN device's: drop
		/* 8 */ {Code: ldh, K: typeOffset},
		/* 9 */ {Code: jeq, K: delNeigh, Jt: 2, Jf: 0}, // a deletion: drop
		/* 10 */ {Code: ldb, K: ndmFamily},
		/* 11 */ {Code: jeq, K: unix.AF_BRIDGE, Jt: 0, Jf: 1}, // a bridge entry: drop; else accept
		/* 12 */ {Code: ret, K: 0},
		/* 13 */ {Code: ret, K: accept},
	}
}

// workloadPorts lists the bridge ports of namespace ns that are not VXLAN
// devices, by index.
func workloadPorts(ns netns.NsHandle) ([]int, error) {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink handle: %w", err)
	}
	defer h.Close()
	links, err := kernel.Dump("links", h.LinkList)
	if err != nil {
		return nil, err
	}
	bridges := map[int]bool{}
	for _, ln := range links {
		if ln.Type() == "bridge" {
			bridges[ln.Attrs().Index] = true
		}
	}
	var out []int
	for _, ln := range links {
		if a := ln.Attrs(); bridges[a.MasterIndex] && ln.Type() != "vxlan" {
			out = append(out, a.Index)
		}
	}
	return out, nil
}

// kernelErrno is the errno an NLMSG_ERROR or NLMSG_DONE message carries:
// 0 for none (an acknowledgement, a dump's end without one).
func kernelErrno(m syscall.NetlinkMessage) syscall.Errno {
	if len(m.Data) < 4 {
		return 0
	}
	return syscall.Errno(-int32(binary.NativeEndian.Uint32(m.Data[0:4])))
}

// kernelErr is kernelErrno as an error, nil for none.
func kernelErr(m syscall.NetlinkMessage) error {
	if e := kernelErrno(m); e != 0 {
		return e
	}
	return nil
}
