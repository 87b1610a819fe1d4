package fabric

import (
	"encoding/binary"
	"fmt"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// subscribeNeigh subscribes to the neighbor and bridge FDB events of a
// tenant namespace, listing the tables first (every family, then the
// bridge FDB), as netlink.NeighSubscribeWithOptions does, with two
// differences:
//
//   - A socket filter in the kernel drops the deletions of entries evpnd
//     installed (extern_learn). The learner has no use for them (a remote
//     entry's arrival, not its removal, says a local MAC moved away), and
//     when a peer's routes are withdrawn they were nearly all of its
//     work: one wake-up, receive and decode per MAC (B2 of issue #6).
//   - The dump requests go to the kernel only. The library sends them to
//     the socket's groups as well, so every other listener of the
//     namespace hears them.
func (l *Linux) subscribeNeigh(ns netns.NsHandle, stop chan struct{}) (<-chan netlink.NeighUpdate, error) {
	s, err := nl.SubscribeAt(ns, netns.None(), unix.NETLINK_ROUTE, unix.RTNLGRP_NEIGH)
	if err != nil {
		return nil, err
	}
	filter := dropOwnDeletions()
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.SetsockoptSockFprog(s.GetFd(), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		s.Close()
		return nil, fmt.Errorf("neighbor subscription: socket filter: %w", err)
	}
	if err := s.SetReceiveBufferSize(subSockBuf, true); err != nil {
		s.Close()
		return nil, fmt.Errorf("neighbor subscription: receive buffer: %w", err)
	}
	if err := dumpNeigh(s, unix.AF_UNSPEC); err != nil {
		s.Close()
		return nil, err
	}
	done := l.subDone(stop)
	go func() {
		<-done
		s.Close()
	}()
	ch := make(chan netlink.NeighUpdate, subChanNeigh)
	go l.readNeigh(s, ch, l.subError(done, "neighbor"))
	return ch, nil
}

// readNeigh delivers s's events to ch until the socket fails or is
// closed, then closes ch. After the first dump it asks for the bridge FDB
// (the kernel serves one dump at a time on a socket).
func (l *Linux) readNeigh(s *nl.NetlinkSocket, ch chan<- netlink.NeighUpdate, cberr func(error)) {
	defer close(ch)
	listBridge := true
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
				if listBridge {
					listBridge = false
					if err := dumpNeigh(s, unix.AF_BRIDGE); err != nil {
						cberr(err)
						return
					}
				}
				continue
			case unix.NLMSG_ERROR:
				if e := int32(binary.NativeEndian.Uint32(m.Data[0:4])); e != 0 {
					cberr(syscall.Errno(-e))
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

// dumpNeigh asks the kernel, and only the kernel, for a dump of family's
// neighbors on s.
func dumpNeigh(s *nl.NetlinkSocket, family int) error {
	req := nl.NewNetlinkRequest(unix.RTM_GETNEIGH, unix.NLM_F_DUMP)
	req.AddData(&netlink.Ndmsg{Family: uint8(family)})
	if err := unix.Sendto(s.GetFd(), req.Serialize(), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("neighbor subscription: list family %d: %w", family, err)
	}
	return nil
}

// dropOwnDeletions is a classic BPF socket filter that drops
// RTM_DELNEIGH messages of entries flagged NTF_EXT_LEARNED and accepts
// everything else. Every event is a message of its own, so the filter
// sees each at offset 0; dump replies hold only RTM_NEWNEIGH.
func dropOwnDeletions() []unix.SockFilter {
	// Netlink headers are in host byte order; a BPF halfword load reads
	// network (big-endian) order.
	var typ [2]byte
	binary.NativeEndian.PutUint16(typ[:], unix.RTM_DELNEIGH)
	del := uint32(binary.BigEndian.Uint16(typ[:]))
	const (
		typeOffset  = 4                      // nlmsghdr.nlmsg_type
		flagsOffset = unix.NLMSG_HDRLEN + 10 // ndmsg.ndm_flags
	)
	return []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: typeOffset},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: del, Jt: 0, Jf: 3}, // not a deletion: accept
		{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: flagsOffset},
		{Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, K: unix.NTF_EXT_LEARNED, Jt: 0, Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: 0},          // drop
		{Code: unix.BPF_RET | unix.BPF_K, K: 0xffffffff}, // accept
	}
}
