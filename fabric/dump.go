package fabric

import (
	"context"
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// listNeigh lists one family's neighbors (AF_BRIDGE: the bridge FDB).
type listNeigh func(family int) ([]netlink.Neigh, error)

// handleList lists on h, a tenant's own handle.
func handleList(h *netlink.Handle) listNeigh {
	return func(family int) ([]netlink.Neigh, error) { return h.NeighList(0, family) }
}

// listAt lists neighbors in ns on a socket of its own that ctx's end
// closes: the kernel fills a dump's messages as they are read, so once
// the socket is gone the kernel does no more of it. A snapshot needs
// that: at 250k entries the FDB dump costs the kernel many seconds (each
// message walks the table again), and a repair's snapshot gives way when
// routes start to be written (see daemon.snapshotGate). A listing ends in
// context.Cause(ctx) when ctx ended under it, netlink.ErrDumpInterrupted
// when the table changed under the dump (kernel.Dump retries); one read
// to its end before ctx ended is whole and returned. done releases the
// socket.
func listAt(ctx context.Context, ns netns.NsHandle) (list listNeigh, done func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, context.Cause(ctx)
	}
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, nil, fmt.Errorf("netlink socket: %w", err)
	}
	stop := context.AfterFunc(ctx, s.Close)
	list = func(family int) ([]netlink.Neigh, error) {
		out, err := readNeighDump(s, family, 0)
		if err != nil && ctx.Err() != nil {
			return nil, context.Cause(ctx) // the socket was closed under it
		}
		return out, err
	}
	return list, func() { stop(); s.Close() }, nil
}

// listPortFDB lists the bridge FDB entries on one port of namespace ns.
func listPortFDB(ns netns.NsHandle, port int) ([]netlink.Neigh, error) {
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return readNeighDump(s, unix.AF_BRIDGE, port)
}

// readNeighDump asks the kernel for a dump of family's neighbors on s (on
// bridge port port only, when not 0) and reads it to the end.
func readNeighDump(s *nl.NetlinkSocket, family, port int) ([]netlink.Neigh, error) {
	seq, err := askNeighDump(s, family, port)
	if err != nil {
		return nil, err
	}
	pid, err := s.GetPid()
	if err != nil {
		return nil, err
	}
	var (
		out         []netlink.Neigh
		interrupted bool
	)
	for {
		msgs, from, err := s.Receive()
		if err != nil {
			return nil, err
		}
		if from.Pid != nl.PidKernel {
			continue
		}
		for _, m := range msgs {
			if m.Header.Seq != seq || m.Header.Pid != pid {
				continue
			}
			if m.Header.Flags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE, unix.NLMSG_ERROR:
				if err := kernelErr(m); err != nil {
					return nil, fmt.Errorf("list neighbors of family %d: %w", family, err)
				}
				if interrupted {
					return nil, netlink.ErrDumpInterrupted
				}
				return out, nil
			case unix.RTM_NEWNEIGH:
			default:
				continue
			}
			n, err := netlink.NeighDeserialize(m.Data)
			if err != nil {
				return nil, err
			}
			if int(n.Family) != family {
				continue
			}
			out = append(out, *n)
		}
	}
}
