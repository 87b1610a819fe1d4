package convergence

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// inNS runs fn on a thread switched into the namespace at /run/netns/ns;
// sockets fn opens stay in that namespace after the thread switches back.
func inNS(ns string, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("current namespace: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(ns)
	if err != nil {
		return fmt.Errorf("namespace %s: %w", ns, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return fmt.Errorf("enter namespace %s: %w", ns, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// The thread is in the wrong namespace; keep it locked so that
		// the runtime retires it instead of reusing it.
		runtime.LockOSThread()
		return fmt.Errorf("leave namespace %s: %w", ns, err)
	}
	return ferr
}

// frameSender sends Ethernet frames out of one interface of a workload
// namespace, as a workload with any source MAC would.
type frameSender struct {
	fd      int
	ifindex int
	ns      string
}

func newFrameSender(ns, ifname string) (*frameSender, error) {
	s := &frameSender{fd: -1, ns: ns}
	err := inNS(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		s.ifindex = ifi.Index
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		s.fd = fd
		return nil
	})
	if err != nil {
		if s.fd >= 0 {
			unix.Close(s.fd)
		}
		return nil, fmt.Errorf("frame sender in %s on %s: %w", ns, ifname, err)
	}
	return s, nil
}

// garp sends a gratuitous ARP from mac claiming ip: what a VM sends when
// it comes up or arrives after a migration.
func (s *frameSender) garp(mac net.HardwareAddr, ip netip.Addr) error {
	f := make([]byte, 60) // minimum Ethernet frame without FCS
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:14], unix.ETH_P_ARP)
	a := f[14:]
	binary.BigEndian.PutUint16(a[0:2], 1) // Ethernet
	binary.BigEndian.PutUint16(a[2:4], unix.ETH_P_IP)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], 1) // request
	copy(a[8:14], mac)
	ip4 := ip.As4()
	copy(a[14:18], ip4[:])
	copy(a[24:28], ip4[:])
	sa := &unix.SockaddrLinklayer{Ifindex: s.ifindex, Halen: 6}
	copy(sa.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	if err := unix.Sendto(s.fd, f, 0, sa); err != nil {
		return fmt.Errorf("send frame in %s: %w", s.ns, err)
	}
	return nil
}

func (s *frameSender) close() { unix.Close(s.fd) }

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// benchMAC is the i-th MAC of a benchmark step: locally administered,
// second byte 0xbe, third byte the step, so steps never share MACs with
// each other or with the injector (third byte 0).
func benchMAC(step byte, i int) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0xbe, step, byte(i >> 16), byte(i >> 8), byte(i)}
}

// benchIP is a per-MAC address for the gratuitous ARP; nothing routes it.
func benchIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{172, 30, byte(i >> 8), byte(i)})
}

// flowPort is the UDP port of the restart benchmark's flow.
const flowPort = 9000

// flow is one direction of a constant-rate UDP stream between two
// workload namespaces; every datagram carries its sequence number, so the
// receiver knows exactly which ones were lost.
type flow struct {
	name string
	tx   *net.UDPConn
	rx   *net.UDPConn
	dst  *net.UDPAddr
	sent atomic.Uint64

	mu   sync.Mutex
	got  []bool
	stop chan struct{}
	wg   sync.WaitGroup
}

func newFlow(name, srcNS, dstNS string, dst netip.Addr) (*flow, error) {
	f := &flow{name: name, dst: net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, flowPort)), stop: make(chan struct{})}
	err := inNS(dstNS, func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: flowPort})
		f.rx = c
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("flow %s: receiver in %s: %w", name, dstNS, err)
	}
	err = inNS(srcNS, func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{})
		f.tx = c
		return err
	})
	if err != nil {
		f.rx.Close()
		return nil, fmt.Errorf("flow %s: sender in %s: %w", name, srcNS, err)
	}
	return f, nil
}

// start sends one datagram every interval until close.
func (f *flow) start(interval time.Duration) {
	f.wg.Add(2)
	go func() {
		defer f.wg.Done()
		buf := make([]byte, 8)
		for {
			n, err := f.rx.Read(buf)
			if err != nil {
				return
			}
			if n != 8 {
				continue
			}
			seq := binary.BigEndian.Uint64(buf)
			f.mu.Lock()
			for uint64(len(f.got)) <= seq {
				f.got = append(f.got, false)
			}
			f.got[seq] = true
			f.mu.Unlock()
		}
	}()
	go func() {
		defer f.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		buf := make([]byte, 8)
		for {
			select {
			case <-f.stop:
				return
			case <-t.C:
			}
			seq := f.sent.Load()
			binary.BigEndian.PutUint64(buf, seq)
			// A send error (no route for a moment) is a lost datagram.
			_, _ = f.tx.WriteToUDP(buf, f.dst)
			f.sent.Add(1)
		}
	}()
}

// lost counts the datagrams with sequence numbers in [from, to) that never
// arrived.
func (f *flow) lost(from, to uint64) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n uint64
	for s := from; s < to; s++ {
		if s >= uint64(len(f.got)) || !f.got[s] {
			n++
		}
	}
	return n
}

// received reports whether datagram seq arrived.
func (f *flow) received(seq uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return seq < uint64(len(f.got)) && f.got[seq]
}

func (f *flow) close() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	f.tx.Close()
	f.rx.Close()
	f.wg.Wait()
}
