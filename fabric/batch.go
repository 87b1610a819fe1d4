package fabric

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/evpnd/evpnd/evpn"
	"github.com/evpnd/evpnd/fabric/kernel"
)

// Socket and window sizes for pipelined writes. The kernel handles every
// message of one sendto in the sender's context and queues one ACK skb per
// message on our receive queue, so the number of unread ACKs, not the
// number of sends, is what must fit in the receive buffer. An ACK skb costs
// well under 1 KiB of receive buffer; a 1024 window leaves a wide margin in
// 16 MiB.
const (
	batchSockBuf  = 16 << 20
	batchWindow   = 1024
	batchChunk    = 64 << 10
	batchRecvBuf  = 1 << 20
	batchRecvWait = 30 // seconds without any ACK before a batch gives up
)

// ndaProtocol is NDA_PROTOCOL; evpnd stamps its neighbor entries with
// neighProto so `ip neigh` shows who installed them.
const (
	ndaProtocol = 12
	neighProto  = 0xe5
)

// Ownership tags of evpnd's routes and addresses. rtm_protocol 0xe5 marks
// routes EVPN installed (Sync prunes exactly these), 0xe6 the tenant's
// configured static routes (Set prunes exactly these); neither is assigned
// in iproute2's rt_protos. Gateway addresses carry IFA_PROTO 0xe5, so Set
// removes only addresses it added.
const (
	routeProto  = 0xe5
	staticProto = 0xe6
	addrProto   = 0xe5
	ifaProto    = 11 // IFA_PROTO, not in x/sys yet
)

// opKind is one kind of remote-entry write.
type opKind uint8

const (
	opFDBAdd       opKind = iota // bridge extern_learn + vxlan dst, one message
	opFDBDel                     // both, one message; see Linux.write
	opFDBDelMaster               // bridge entry on the vxlan port
	opFDBDelSelf                 // vxlan fdb entry with this dst
	opFloodAdd
	opFloodDel
	opNeighAdd
	opNeighDel
	opNeighUse // NTF_USE: the kernel re-probes a stale neighbor
	opRouteAdd // create or replace, exactly these next hops
	opRouteDel
	opAddrAdd
	opAddrDel
)

// op is one netlink request of a batch.
type op struct {
	kind    opKind
	ifindex int
	vni     evpn.VNI
	mac     net.HardwareAddr
	addr    netip.Addr // VTEP for FDB/flood, IP for neighbors and addresses
	// l3 marks an entry of a tenant's L3VNI (router MAC, EVPN route)
	// rather than of a segment.
	l3 bool
	// Routes: the destination (or, for addresses, the prefix length),
	// gateways as written to the kernel, rtm_protocol, and whether the
	// gateways are on-link on ifindex (EVPN) or resolved by the kernel
	// (static routes, ifindex 0).
	prefix netip.Prefix
	hops   []netip.Addr
	proto  uint8
	metric uint32
	onlink bool
}

func (o op) isDelete() bool {
	switch o.kind {
	case opFDBDel, opFDBDelMaster, opFDBDelSelf, opFloodDel, opNeighDel, opRouteDel, opAddrDel:
		return true
	}
	return false
}

func (o op) String() string {
	switch o.kind {
	case opFDBAdd:
		return fmt.Sprintf("add fdb vni %d mac %s vtep %s", o.vni, o.mac, o.addr)
	case opFDBDel:
		return fmt.Sprintf("delete fdb vni %d mac %s vtep %s", o.vni, o.mac, o.addr)
	case opFDBDelMaster:
		return fmt.Sprintf("delete bridge fdb vni %d mac %s", o.vni, o.mac)
	case opFDBDelSelf:
		return fmt.Sprintf("delete vxlan fdb vni %d mac %s vtep %s", o.vni, o.mac, o.addr)
	case opFloodAdd:
		return fmt.Sprintf("add flood vni %d vtep %s", o.vni, o.addr)
	case opFloodDel:
		return fmt.Sprintf("delete flood vni %d vtep %s", o.vni, o.addr)
	case opNeighAdd:
		return fmt.Sprintf("add neighbor vni %d ip %s mac %s", o.vni, o.addr, o.mac)
	case opNeighDel:
		return fmt.Sprintf("delete neighbor vni %d ip %s", o.vni, o.addr)
	case opNeighUse:
		return fmt.Sprintf("probe neighbor vni %d ip %s", o.vni, o.addr)
	case opRouteAdd:
		return fmt.Sprintf("add route vni %d %s via %v", o.vni, o.prefix, o.hops)
	case opRouteDel:
		return fmt.Sprintf("delete route vni %d %s", o.vni, o.prefix)
	case opAddrAdd:
		return fmt.Sprintf("add address vni %d %s", o.vni, o.prefix)
	case opAddrDel:
		return fmt.Sprintf("delete address vni %d %s", o.vni, o.prefix)
	}
	return fmt.Sprintf("op %d", o.kind)
}

var zeroMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}

// encode appends the netlink message for o with sequence number seq.
func (o op) encode(b []byte, seq uint32) []byte {
	switch o.kind {
	case opRouteAdd, opRouteDel:
		return o.encodeRoute(b, seq)
	case opAddrAdd, opAddrDel:
		return o.encodeAddr(b, seq)
	}
	var (
		typ    uint16
		flags  uint16 = unix.NLM_F_REQUEST | unix.NLM_F_ACK
		family uint8  = unix.AF_BRIDGE
		state  uint16
		nflags uint8
		mac    = o.mac
		dst    = true
	)
	switch o.kind {
	case opFDBAdd:
		typ, flags = unix.RTM_NEWNEIGH, flags|unix.NLM_F_CREATE|unix.NLM_F_REPLACE
		state = unix.NUD_REACHABLE | unix.NUD_NOARP
		nflags = unix.NTF_SELF | unix.NTF_MASTER | unix.NTF_EXT_LEARNED
	case opFDBDel:
		typ, nflags = unix.RTM_DELNEIGH, unix.NTF_SELF|unix.NTF_MASTER
	case opFDBDelMaster:
		typ, nflags, dst = unix.RTM_DELNEIGH, unix.NTF_MASTER, false
	case opFDBDelSelf:
		typ, nflags = unix.RTM_DELNEIGH, unix.NTF_SELF
	case opFloodAdd:
		typ, flags = unix.RTM_NEWNEIGH, flags|unix.NLM_F_CREATE|unix.NLM_F_APPEND
		state, nflags, mac = unix.NUD_PERMANENT|unix.NUD_NOARP, unix.NTF_SELF, zeroMAC
	case opFloodDel:
		typ, nflags, mac = unix.RTM_DELNEIGH, unix.NTF_SELF, zeroMAC
	case opNeighAdd:
		typ, flags = unix.RTM_NEWNEIGH, flags|unix.NLM_F_CREATE|unix.NLM_F_REPLACE
		family, state, nflags = addrFamily(o.addr), unix.NUD_NOARP, unix.NTF_EXT_LEARNED
	case opNeighDel:
		typ, family, mac = unix.RTM_DELNEIGH, addrFamily(o.addr), nil
	case opNeighUse:
		// Without NLM_F_CREATE: a neighbor that vanished meanwhile is not
		// made again (ENOENT), and NTF_USE leaves the entry's state to the
		// kernel's own state machine (neigh_event_send).
		typ, family, mac, nflags = unix.RTM_NEWNEIGH, addrFamily(o.addr), nil, unix.NTF_USE
	}
	start := len(b)
	b = appendHeader(b, typ, flags, seq)
	// struct ndmsg: family, 3 pad, ifindex, state, flags, type.
	b = append(b, family, 0, 0, 0)
	b = binary.NativeEndian.AppendUint32(b, uint32(o.ifindex))
	b = binary.NativeEndian.AppendUint16(b, state)
	b = append(b, nflags, 0)
	if mac != nil {
		b = appendAttr(b, unix.NDA_LLADDR, mac)
	}
	if dst {
		b = appendAttr(b, unix.NDA_DST, o.addr.AsSlice())
	}
	if o.kind == opNeighAdd {
		b = appendAttr(b, ndaProtocol, []byte{neighProto})
	}
	binary.NativeEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

// encodeRoute writes an RTM_NEWROUTE / RTM_DELROUTE in the main table.
// Several next hops make one multipath route; NLM_F_REPLACE swaps the
// whole set at once.
func (o op) encodeRoute(b []byte, seq uint32) []byte {
	typ, flags := uint16(unix.RTM_NEWROUTE), uint16(unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_REPLACE)
	scope := uint8(unix.RT_SCOPE_UNIVERSE)
	if o.kind == opRouteDel {
		// Scope "nowhere" matches any scope; the protocol makes the
		// kernel delete only a route carrying evpnd's tag.
		typ, flags, scope = unix.RTM_DELROUTE, unix.NLM_F_REQUEST|unix.NLM_F_ACK, unix.RT_SCOPE_NOWHERE
	}
	var nhFlags uint8
	if o.onlink {
		nhFlags = unix.RTNH_F_ONLINK
	}
	start := len(b)
	b = appendHeader(b, typ, flags, seq)
	// struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope,
	// type, flags.
	b = append(b, addrFamily(o.prefix.Addr()), uint8(o.prefix.Bits()), 0, 0, unix.RT_TABLE_MAIN, o.proto, scope, unix.RTN_UNICAST)
	rtFlags := uint32(0)
	if o.kind == opRouteAdd && len(o.hops) == 1 {
		rtFlags = uint32(nhFlags)
	}
	b = binary.NativeEndian.AppendUint32(b, rtFlags)
	b = appendAttr(b, unix.RTA_DST, o.prefix.Addr().AsSlice())
	b = binary.NativeEndian.AppendUint32(appendAttrHeader(b, unix.RTA_PRIORITY, 4), o.metric)
	if o.kind == opRouteAdd {
		switch len(o.hops) {
		case 1:
			b = appendAttr(b, unix.RTA_GATEWAY, o.hops[0].AsSlice())
			if o.ifindex != 0 {
				b = binary.NativeEndian.AppendUint32(appendAttrHeader(b, unix.RTA_OIF, 4), uint32(o.ifindex))
			}
		default:
			var mp []byte
			for _, h := range o.hops {
				gw := appendAttr(nil, unix.RTA_GATEWAY, h.AsSlice())
				// struct rtnexthop: len, flags, hops, ifindex.
				mp = binary.NativeEndian.AppendUint16(mp, uint16(8+len(gw)))
				mp = append(mp, nhFlags, 0)
				mp = binary.NativeEndian.AppendUint32(mp, uint32(o.ifindex))
				mp = append(mp, gw...)
			}
			b = appendAttr(b, unix.RTA_MULTIPATH, mp)
		}
	}
	binary.NativeEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

// encodeAddr writes an RTM_NEWADDR / RTM_DELADDR for o.prefix (address
// and length) on o.ifindex, tagged with addrProto. IPv6 addresses are
// nodad: the anycast gateway is the same address on every host.
func (o op) encodeAddr(b []byte, seq uint32) []byte {
	typ, flags := uint16(unix.RTM_NEWADDR), uint16(unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	if o.kind == opAddrDel {
		typ, flags = unix.RTM_DELADDR, unix.NLM_F_REQUEST|unix.NLM_F_ACK
	}
	a := o.prefix.Addr()
	start := len(b)
	b = appendHeader(b, typ, flags, seq)
	// struct ifaddrmsg: family, prefixlen, flags, scope, index.
	b = append(b, addrFamily(a), uint8(o.prefix.Bits()), 0, unix.RT_SCOPE_UNIVERSE)
	b = binary.NativeEndian.AppendUint32(b, uint32(o.ifindex))
	b = appendAttr(b, unix.IFA_LOCAL, a.AsSlice())
	b = appendAttr(b, unix.IFA_ADDRESS, a.AsSlice())
	if o.kind == opAddrAdd {
		if a.Is6() {
			b = binary.NativeEndian.AppendUint32(appendAttrHeader(b, unix.IFA_FLAGS, 4), unix.IFA_F_NODAD)
		}
		b = appendAttr(b, ifaProto, []byte{addrProto})
	}
	binary.NativeEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

// appendHeader appends a struct nlmsghdr whose length the caller patches.
func appendHeader(b []byte, typ, flags uint16, seq uint32) []byte {
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	return binary.NativeEndian.AppendUint32(b, 0)
}

// appendAttrHeader appends the header of an attribute whose n-byte value
// (a multiple of 4) the caller appends.
func appendAttrHeader(b []byte, typ uint16, n int) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+n))
	return binary.NativeEndian.AppendUint16(b, typ)
}

func appendAttr(b []byte, typ uint16, val []byte) []byte {
	l := 4 + len(val)
	b = binary.NativeEndian.AppendUint16(b, uint16(l))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, val...)
	for i := l; i%4 != 0; i++ {
		b = append(b, 0)
	}
	return b
}

func addrFamily(a netip.Addr) uint8 {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// batchWriter owns one NETLINK_ROUTE socket opened in one namespace and
// writes batches on it pipelined: up to batchWindow requests in flight,
// many per sendto, ACKs read in bulk and matched by sequence number.
type batchWriter struct {
	fd   int
	seq  uint32
	send []byte
	recv []byte
}

func newBatchWriter(ns netns.NsHandle) (*batchWriter, error) {
	w := &batchWriter{fd: -1}
	err := kernel.InNetns(ns, func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("netlink socket: %w", err)
		}
		w.fd = fd
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := w.setup(); err != nil {
		unix.Close(w.fd)
		return nil, err
	}
	w.send = make([]byte, 0, batchChunk+4096)
	w.recv = make([]byte, batchRecvBuf)
	return w, nil
}

func (w *batchWriter) setup() error {
	if err := unix.Bind(w.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("bind netlink socket: %w", err)
	}
	// FORCE variants exceed rmem_max/wmem_max (we run as root); fall back
	// to the capped sizes otherwise.
	if err := unix.SetsockoptInt(w.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, batchSockBuf); err != nil {
		_ = unix.SetsockoptInt(w.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, batchSockBuf)
	}
	if err := unix.SetsockoptInt(w.fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, batchSockBuf); err != nil {
		_ = unix.SetsockoptInt(w.fd, unix.SOL_SOCKET, unix.SO_SNDBUF, batchSockBuf)
	}
	// ACKs for failed requests would otherwise carry the whole request.
	_ = unix.SetsockoptInt(w.fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	tv := unix.Timeval{Sec: batchRecvWait}
	if err := unix.SetsockoptTimeval(w.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("set receive timeout: %w", err)
	}
	return nil
}

func (w *batchWriter) close() {
	if w.fd >= 0 {
		unix.Close(w.fd)
		w.fd = -1
	}
}

// opError is the kernel's answer to one request of a batch.
type opError struct {
	index int
	op    op
	errno syscall.Errno
}

// write sends ops and returns the ones the kernel refused. ENOENT on a
// delete and EEXIST on an add count as success; missing lists the deletes
// that found nothing. err is set when the batch could not complete; ops
// without an answer then count as failed.
func (w *batchWriter) write(ctx context.Context, ops []op) (failed []opError, missing []int, err error) {
	if len(ops) == 0 {
		return nil, nil, nil
	}
	base := w.seq + 1
	w.seq += uint32(len(ops))
	answered := make([]bool, len(ops))
	next, acked := 0, 0
	for acked < len(ops) {
		if next < len(ops) && next-acked < batchWindow {
			if err := ctx.Err(); err != nil {
				return w.unanswered(ops, answered, failed), missing, fmt.Errorf("batch cancelled after %d of %d requests: %w", next, len(ops), err)
			}
			b := w.send[:0]
			for next < len(ops) && next-acked < batchWindow && len(b) < batchChunk {
				b = ops[next].encode(b, base+uint32(next))
				next++
			}
			w.send = b
			if err := unix.Sendto(w.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
				return w.unanswered(ops, answered, failed), missing, fmt.Errorf("send netlink batch: %w", err)
			}
			// The kernel has processed the chunk by now; reading ACKs
			// before sending more keeps the window bounded.
			if next-acked < batchWindow && next < len(ops) {
				continue
			}
		}
		n, _, err := unix.Recvfrom(w.fd, w.recv, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return w.unanswered(ops, answered, failed), missing, fmt.Errorf("read netlink acks (%d of %d answered): %w", acked, len(ops), err)
		}
		msgs, err := syscall.ParseNetlinkMessage(w.recv[:n])
		if err != nil {
			return w.unanswered(ops, answered, failed), missing, fmt.Errorf("parse netlink acks: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
				continue
			}
			i := int(m.Header.Seq - base)
			if m.Header.Seq < base || i >= next || answered[i] {
				continue // a stale answer from an earlier, abandoned batch
			}
			answered[i] = true
			acked++
			errno := kernelErrno(m)
			if isMissing(errno, ops[i]) {
				missing = append(missing, i)
				continue
			}
			if errno == 0 || (errno == unix.EEXIST && !ops[i].isDelete()) {
				continue
			}
			failed = append(failed, opError{index: i, op: ops[i], errno: errno})
		}
	}
	return failed, missing, nil
}

// isMissing reports whether errno says the object o deletes (or probes)
// was not there; each object kind has its own errno for it.
func isMissing(errno syscall.Errno, o op) bool {
	switch {
	case o.kind == opNeighUse:
		return errno == unix.ENOENT
	case o.kind == opRouteDel:
		return errno == unix.ESRCH || errno == unix.ENOENT
	case o.kind == opAddrDel:
		return errno == unix.EADDRNOTAVAIL
	}
	return errno == unix.ENOENT && o.isDelete()
}

// kernelAddr is one interface address with its IFA_PROTO tag, which the
// netlink library does not parse.
type kernelAddr struct {
	ifindex int
	prefix  netip.Prefix // address and prefix length
	proto   uint8
}

// dump sends a dump request of typ with body and hands each answer of
// type want to each, until the kernel says done. what names the table in
// errors. An interrupted dump is netlink.ErrDumpInterrupted, so callers
// retry it like the netlink library's own dumps.
func (w *batchWriter) dump(what string, typ uint16, body []byte, want uint16, each func(m *syscall.NetlinkMessage) error) error {
	w.seq++
	seq := w.seq
	req := appendHeader(nil, typ, unix.NLM_F_REQUEST|unix.NLM_F_DUMP, seq)
	req = append(req, body...)
	binary.NativeEndian.PutUint32(req, uint32(len(req)))
	if err := unix.Sendto(w.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("send %s dump: %w", what, err)
	}
	interrupted := false
	for {
		n, _, err := unix.Recvfrom(w.fd, w.recv, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("read %s dump: %w", what, err)
		}
		msgs, err := syscall.ParseNetlinkMessage(w.recv[:n])
		if err != nil {
			return fmt.Errorf("parse %s dump: %w", what, err)
		}
		for i := range msgs {
			m := &msgs[i]
			if m.Header.Seq != seq {
				continue // an answer to an earlier, abandoned request
			}
			interrupted = interrupted || m.Header.Flags&unix.NLM_F_DUMP_INTR != 0
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				if interrupted {
					return netlink.ErrDumpInterrupted
				}
				return nil
			case unix.NLMSG_ERROR:
				if err := kernelErr(*m); err != nil {
					return fmt.Errorf("%s dump: %w", what, err)
				}
			case want:
				if err := each(m); err != nil {
					return err
				}
			}
		}
	}
}

// dumpAddrs lists every address in the writer's namespace.
func (w *batchWriter) dumpAddrs() ([]kernelAddr, error) {
	var out []kernelAddr
	err := w.dump("address", unix.RTM_GETADDR, make([]byte, unix.SizeofIfAddrmsg), unix.RTM_NEWADDR, func(m *syscall.NetlinkMessage) error {
		if len(m.Data) < unix.SizeofIfAddrmsg {
			return nil
		}
		a := kernelAddr{ifindex: int(binary.NativeEndian.Uint32(m.Data[4:8]))}
		bits := int(m.Data[1])
		attrs, err := syscall.ParseNetlinkRouteAttr(m)
		if err != nil {
			return fmt.Errorf("parse address attributes: %w", err)
		}
		var local, address netip.Addr
		for _, at := range attrs {
			switch at.Attr.Type {
			case unix.IFA_LOCAL:
				local, _ = netip.AddrFromSlice(at.Value)
			case unix.IFA_ADDRESS:
				address, _ = netip.AddrFromSlice(at.Value)
			case ifaProto:
				if len(at.Value) > 0 {
					a.proto = at.Value[0]
				}
			}
		}
		if !local.IsValid() {
			local = address
		}
		if local.IsValid() {
			a.prefix = netip.PrefixFrom(local, bits)
			out = append(out, a)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (w *batchWriter) unanswered(ops []op, answered []bool, failed []opError) []opError {
	for i, o := range ops {
		if !answered[i] {
			failed = append(failed, opError{index: i, op: o, errno: unix.EIO})
		}
	}
	return failed
}
