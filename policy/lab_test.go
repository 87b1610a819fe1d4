package policy

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/evpnd/evpnd/fabric/kernel"
)

// lab is a tenant namespace as evpnd's fabric builds it (segment bridges
// with gateway addresses, workload ports enslaved), with workload
// namespaces on veth ports and an "outside" namespace on the uplink.
type lab struct {
	t      *testing.T
	suffix string
	tenant string            // namespace name
	w      map[string]string // workload name -> namespace
	out    string
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root (network namespaces, nftables)")
	}
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// newLab builds:
//
//	tenant: br100 10.0.1.1/24 [tap-a -> w1 10.0.1.11, tap-b -> w2 10.0.1.12]
//	        br200 10.0.2.1/24 [tap-c -> w3 10.0.2.21]
//	        up0 192.0.2.1/24 -> outside o0 192.0.2.2/24 (routes 198.51.100.0/24 back)
func newLab(t *testing.T) *lab {
	requireRoot(t)
	b := make([]byte, 3)
	rand.Read(b)
	l := &lab{t: t, suffix: hex.EncodeToString(b), w: map[string]string{}}
	l.tenant = "pt-" + l.suffix
	l.out = "po-" + l.suffix
	nss := []string{l.tenant, l.out}
	for _, w := range []string{"w1", "w2", "w3"} {
		l.w[w] = "p" + w + "-" + l.suffix
		nss = append(nss, l.w[w])
	}
	for _, ns := range nss {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	T := l.tenant
	run(t, "ip", "netns", "exec", T, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	for _, br := range []struct{ name, addr string }{{"br100", "10.0.1.1/24"}, {"br200", "10.0.2.1/24"}} {
		run(t, "ip", "-n", T, "link", "add", br.name, "type", "bridge")
		run(t, "ip", "-n", T, "addr", "add", br.addr, "dev", br.name)
		run(t, "ip", "-n", T, "link", "set", br.name, "up")
	}
	for _, p := range []struct{ w, port, br, addr, gw string }{
		{"w1", "tap-a", "br100", "10.0.1.11/24", "10.0.1.1"},
		{"w2", "tap-b", "br100", "10.0.1.12/24", "10.0.1.1"},
		{"w3", "tap-c", "br200", "10.0.2.21/24", "10.0.2.1"},
	} {
		ns := l.w[p.w]
		run(t, "ip", "-n", T, "link", "add", p.port, "type", "veth", "peer", "name", "eth0", "netns", ns)
		run(t, "ip", "-n", T, "link", "set", p.port, "master", p.br, "up")
		run(t, "ip", "-n", ns, "addr", "add", p.addr, "dev", "eth0")
		run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
		run(t, "ip", "-n", ns, "route", "add", "default", "via", p.gw)
	}
	run(t, "ip", "-n", T, "link", "add", "up0", "type", "veth", "peer", "name", "o0", "netns", l.out)
	run(t, "ip", "-n", T, "addr", "add", "192.0.2.1/24", "dev", "up0")
	run(t, "ip", "-n", T, "link", "set", "up0", "up")
	run(t, "ip", "-n", l.out, "addr", "add", "192.0.2.2/24", "dev", "o0")
	run(t, "ip", "-n", l.out, "link", "set", "o0", "up")
	run(t, "ip", "-n", l.out, "route", "add", "198.51.100.0/24", "via", "192.0.2.1")
	return l
}

func (l *lab) binding() Binding {
	return Binding{
		Tenant:    "blue",
		Namespace: l.tenant,
		Segments: []SegmentBinding{
			{Name: "web", Bridge: "br100", Ports: []string{"tap-a", "tap-b"}},
			{Name: "db", Bridge: "br200", Ports: []string{"tap-c"}},
		},
		Uplink: "up0",
	}
}

// in runs fn on a thread inside namespace ns; sockets fn opens stay there.
func in(t *testing.T, ns string, fn func()) {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := kernel.InNetns(h, func() error { fn(); return nil }); err != nil {
		t.Fatal(err)
	}
}

// listenTCP starts an echo server in ns on port; it returns the address
// each accepted connection came from.
func (l *lab) listenTCP(ns string, port int) <-chan netip.AddrPort {
	var ln net.Listener
	var err error
	in(l.t, ns, func() { ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", port)) })
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { ln.Close() })
	peers := make(chan netip.AddrPort, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case peers <- c.RemoteAddr().(*net.TCPAddr).AddrPort():
			default:
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 1500)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					c.Write(buf[:n])
				}
			}()
		}
	}()
	return peers
}

// dialTCP connects from ns; a refused connection (RST) and a timeout
// (drop) are told apart by the error.
func (l *lab) dialTCP(ns, addr string) (net.Conn, error) {
	var c net.Conn
	var err error
	in(l.t, ns, func() {
		d := net.Dialer{Timeout: 700 * time.Millisecond}
		c, err = d.Dial("tcp4", addr)
	})
	if err == nil {
		l.t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
func isTimeout(err error) bool { var ne net.Error; return errors.As(err, &ne) && ne.Timeout() }

func echo(c net.Conn) error {
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	_, err := c.Read(buf)
	return err
}

// ping sends ICMP echo requests from ns to dst and reports whether one
// was answered.
func (l *lab) ping(ns, dst string) bool {
	var pc net.PacketConn
	var err error
	in(l.t, ns, func() { pc, err = net.ListenPacket("ip4:icmp", "0.0.0.0") })
	if err != nil {
		l.t.Fatal(err)
	}
	defer pc.Close()
	id := uint16(time.Now().UnixNano())
	for seq := uint16(1); seq <= 3; seq++ {
		msg := []byte{8, 0, 0, 0, byte(id >> 8), byte(id), byte(seq >> 8), byte(seq), 'e', 'v', 'p', 'n'}
		cs := checksum(msg)
		msg[2], msg[3] = byte(cs>>8), byte(cs)
		if _, err := pc.WriteTo(msg, &net.IPAddr{IP: net.ParseIP(dst)}); err != nil {
			return false
		}
		pc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				break
			}
			if n >= 8 && buf[0] == 0 && from.String() == dst && binary.BigEndian.Uint16(buf[4:]) == id {
				return true
			}
		}
	}
	return false
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

func counters(t *testing.T, e *Nftables) map[string]Counter {
	t.Helper()
	cs, err := e.Counters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Counter{}
	for _, c := range cs {
		out[c.Rule] = c
	}
	return out
}

func newEngine(t *testing.T) *Nftables {
	e, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func (l *lab) nftList() string {
	out, _ := exec.Command("ip", "netns", "exec", l.tenant, "nft", "list", "ruleset").CombinedOutput()
	return string(out)
}
