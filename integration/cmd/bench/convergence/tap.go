package convergence

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// bgpTap timestamps, on the route reflector's own interface, the first
// BGP segment from one speaker that carries each MAC of interest: the
// moment a type-2 is "at the route reflector", before the reflector does
// anything with it. Timing a client behind the reflector instead would add
// the reflector's own processing (FRR's bgpd holds its route-processing
// queue 50 ms before it works it) to every sample.
type bgpTap struct {
	fd   int
	from netip.Addr

	mu     sync.Mutex
	want   []byte // the MAC prefix (first 3 bytes) to look for
	seen   map[string]time.Time
	signal chan struct{} // closed and replaced when seen grows
	err    error
	stop   chan struct{}
	done   chan struct{}
}

// newBGPTap starts a tap on ifname in namespace ns for TCP segments to or
// from port 179 sent by from, looking for MACs that start with prefix.
func newBGPTap(ns, ifname string, from netip.Addr, prefix []byte) (*bgpTap, error) {
	t := &bgpTap{fd: -1, from: from, want: bytes.Clone(prefix), seen: map[string]time.Time{},
		signal: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	err := inNS(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IP)))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		t.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi.Index}); err != nil {
			return fmt.Errorf("bind to %s: %w", ifname, err)
		}
		// Kernel receive timestamps: the segment's arrival, not when this
		// goroutine got scheduled to read it.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
			return fmt.Errorf("SO_TIMESTAMPNS: %w", err)
		}
		// A read timeout lets run notice close: closing the socket does
		// not wake a blocked read.
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return fmt.Errorf("SO_RCVTIMEO: %w", err)
		}
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	})
	if err != nil {
		if t.fd >= 0 {
			unix.Close(t.fd)
		}
		return nil, fmt.Errorf("bgp tap in %s on %s: %w", ns, ifname, err)
	}
	go t.run()
	return t, nil
}

func (t *bgpTap) run() {
	defer close(t.done)
	buf := make([]byte, 1<<16)
	oob := make([]byte, 128)
	for {
		select {
		case <-t.stop:
			return
		default:
		}
		n, oobn, _, _, err := unix.Recvmsg(t.fd, buf, oob, 0)
		if err != nil {
			if !errors.Is(err, unix.EINTR) && !errors.Is(err, unix.EAGAIN) {
				t.fail(err)
				return
			}
			continue
		}
		at := rxTime(oob[:oobn])
		payload, ok := bgpPayload(buf[:n], t.from)
		if !ok {
			continue
		}
		t.scan(payload, at)
	}
}

func (t *bgpTap) fail(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err == nil {
		t.err = err
	}
	close(t.signal)
	t.signal = make(chan struct{})
}

// scan records every MAC of interest in payload not seen before.
func (t *bgpTap) scan(payload []byte, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	grew := false
	for rest := payload; ; {
		i := bytes.Index(rest, t.want)
		if i < 0 || i+6 > len(rest) {
			break
		}
		mac := net.HardwareAddr(rest[i : i+6]).String()
		if _, ok := t.seen[mac]; !ok {
			t.seen[mac] = at
			grew = true
		}
		rest = rest[i+1:]
	}
	if grew {
		close(t.signal)
		t.signal = make(chan struct{})
	}
}

// await returns when mac was first seen, waiting up to timeout.
func (t *bgpTap) await(mac net.HardwareAddr, timeout time.Duration) (time.Time, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	want := mac.String()
	for {
		t.mu.Lock()
		at, ok := t.seen[want]
		err, signal := t.err, t.signal
		t.mu.Unlock()
		switch {
		case ok:
			return at, nil
		case err != nil:
			return time.Time{}, fmt.Errorf("bgp tap: %w", err)
		}
		select {
		case <-signal:
		case <-deadline.C:
			return time.Time{}, fmt.Errorf("no bgp segment from %s with %s at the route reflector within %s", t.from, mac, timeout)
		}
	}
}

func (t *bgpTap) close() {
	close(t.stop)
	<-t.done
	unix.Close(t.fd)
}

// bgpPayload returns the TCP payload of an IPv4 packet from src to or from
// port 179.
func bgpPayload(p []byte, src netip.Addr) ([]byte, bool) {
	if len(p) < 20 || p[0]>>4 != 4 || p[9] != unix.IPPROTO_TCP {
		return nil, false
	}
	ihl := int(p[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(p[2:4]))
	if ihl < 20 || total > len(p) || total < ihl+20 {
		return nil, false
	}
	if netip.AddrFrom4([4]byte(p[12:16])) != src {
		return nil, false
	}
	tcp := p[ihl:total]
	sport, dport := binary.BigEndian.Uint16(tcp[0:2]), binary.BigEndian.Uint16(tcp[2:4])
	if sport != 179 && dport != 179 {
		return nil, false
	}
	off := int(tcp[12]>>4) * 4
	if off < 20 || off > len(tcp) {
		return nil, false
	}
	return tcp[off:], true
}

// rxTime is the SO_TIMESTAMPNS time in a control message, or now.
func rxTime(oob []byte) time.Time {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err == nil {
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= 16 {
				sec := int64(binary.NativeEndian.Uint64(m.Data[0:8]))
				nsec := int64(binary.NativeEndian.Uint64(m.Data[8:16]))
				return time.Unix(sec, nsec)
			}
		}
	}
	return time.Now()
}
