package integration

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/evpnd/evpnd/integration/lab"
)

// probeTimeout bounds one probe of the isolation matrix: the lab is
// converged before the matrix runs, so an answer comes in microseconds.
const probeTimeout = 500 * time.Millisecond

// udpBanner serves UDP on ip:port in ns, answering every datagram with the
// namespace's name.
func udpBanner(t *testing.T, ns string, ip netip.Addr, port uint16) {
	t.Helper()
	var c net.PacketConn
	if err := lab.InNS(ns, func() error {
		var err error
		c, err = net.ListenPacket("udp", netip.AddrPortFrom(ip, port).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			_, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			c.WriteTo([]byte(ns), from)
		}
	}()
}

// askUDP sends one datagram from ns to ip:port and returns the answer.
func askUDP(ns string, ip netip.Addr, port uint16) (string, error) {
	var c net.Conn
	if err := lab.InNS(ns, func() error {
		var err error
		c, err = net.Dial("udp", netip.AddrPortFrom(ip, port).String())
		return err
	}); err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(probeTimeout))
	if _, err := c.Write([]byte("who")); err != nil {
		return "", err
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// askTCP connects from ns to ip:port and returns the server's banner.
func askTCP(ns string, ip netip.Addr, port uint16) (string, error) {
	var c net.Conn
	if err := lab.InNS(ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp", netip.AddrPortFrom(ip, port).String(), probeTimeout)
		return err
	}); err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(probeTimeout))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(buf[:n])), nil
}

// pingOnce sends one ICMP echo request from ns to ip and reports whether
// a reply from ip came back.
func pingOnce(ns string, ip netip.Addr) (bool, error) {
	var c *icmp.PacketConn
	if err := lab.InNS(ns, func() error {
		var err error
		c, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		return false, err
	}
	defer c.Close()
	id := os.Getpid() & 0xffff
	msg, err := (&icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: 1, Data: []byte("isolation")}}).Marshal(nil)
	if err != nil {
		return false, err
	}
	if _, err := c.WriteTo(msg, &net.IPAddr{IP: ip.AsSlice()}); err != nil {
		return false, nil // unreachable: no route, no answer
	}
	c.SetReadDeadline(time.Now().Add(probeTimeout))
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return false, nil
		}
		m, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id && from.String() == ip.String() {
			return true, nil
		}
	}
}

// TestPrivilegedIsolationMatrix checks every pair of three routed tenants
// that share subnets, gateways and (for a1) addresses, across two hosts:
// from each tenant's a1 on host1 to every tenant's a2 (bridged over the
// overlay) and b2 (routed, symmetric IRB) on host2, over TCP, UDP and
// ICMP. Same tenant: answered, by the right workload. Other tenant:
// nothing, ever. And from each a2 to the shared address 10.9.1.1, the
// answer is always its own tenant's a1.
func TestPrivilegedIsolationMatrix(t *testing.T) {
	requireLab(t)
	if _, err := os.Stat(filepath.Join("..", "bin", "evpnd")); err != nil {
		t.Skip("bin/evpnd is missing: run make build")
	}
	l := lab.Up(t, "topologies/isolation.clab.yml", lab.Options{})
	tenants := []string{"red", "green", "blue"}
	const port = 7300
	a1 := netip.MustParseAddr("10.9.1.1")
	a2 := map[string]netip.Addr{}
	b2 := map[string]netip.Addr{}
	for i, tn := range tenants {
		a2[tn] = netip.MustParseAddr(fmt.Sprintf("10.9.1.2%d", i+1))
		b2[tn] = netip.MustParseAddr(fmt.Sprintf("10.9.2.1%d", i+1))
		for node, ip := range map[string]netip.Addr{tn + "-a1": a1, tn + "-a2": a2[tn], tn + "-b2": b2[tn]} {
			s, err := lab.ListenEcho(l.NS(node), ip, port)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			udpBanner(t, l.NS(node), ip, port)
		}
	}

	// Within each tenant everything answers, from the right workload.
	for _, tn := range tenants {
		for _, dst := range []struct {
			node string
			ip   netip.Addr
		}{{tn + "-a2", a2[tn]}, {tn + "-b2", b2[tn]}} {
			from := l.NS(tn + "-a1")
			lab.Eventually(t, converge, pollEvery, func() error {
				if b, err := askTCP(from, dst.ip, port); err != nil || b != l.NS(dst.node) {
					return fmt.Errorf("tcp %s -> %s: %q, %v; want %s", tn+"-a1", dst.ip, b, err, dst.node)
				}
				if b, err := askUDP(from, dst.ip, port); err != nil || b != l.NS(dst.node) {
					return fmt.Errorf("udp %s -> %s: %q, %v; want %s", tn+"-a1", dst.ip, b, err, dst.node)
				}
				if ok, err := pingOnce(from, dst.ip); err != nil || !ok {
					return fmt.Errorf("icmp %s -> %s: no reply (%v)", tn+"-a1", dst.ip, err)
				}
				return nil
			})
		}
		// The shared address answers from the caller's own tenant.
		for _, src := range []string{tn + "-a2", tn + "-b2"} {
			lab.Eventually(t, converge, pollEvery, func() error {
				for _, ask := range []func(string, netip.Addr, uint16) (string, error){askTCP, askUDP} {
					b, err := ask(l.NS(src), a1, port)
					if err != nil {
						return fmt.Errorf("%s -> %s: %v", src, a1, err)
					}
					if b != l.NS(tn+"-a1") {
						if strings.HasSuffix(b, "-a1") {
							t.Fatalf("isolation broken: %s reached %s at the shared address %s", src, b, a1)
						}
						return fmt.Errorf("%s -> %s answered by %q", src, a1, b)
					}
				}
				return nil
			})
		}
	}

	// Across tenants nothing answers: every pair, every protocol, bridged
	// and routed. The fabric has converged (above), so silence is final.
	leaks := 0
	for _, src := range tenants {
		for _, dst := range tenants {
			if src == dst {
				continue
			}
			from := l.NS(src + "-a1")
			for kind, ip := range map[string]netip.Addr{"bridged": a2[dst], "routed": b2[dst]} {
				if b, err := askTCP(from, ip, port); err == nil {
					t.Errorf("leak: tcp %s-a1 -> %s's %s (%s) answered by %s", src, dst, ip, kind, b)
					leaks++
				}
				if b, err := askUDP(from, ip, port); err == nil {
					t.Errorf("leak: udp %s-a1 -> %s's %s (%s) answered by %s", src, dst, ip, kind, b)
					leaks++
				}
				if ok, _ := pingOnce(from, ip); ok {
					t.Errorf("leak: icmp %s-a1 -> %s's %s (%s) replied", src, dst, ip, kind)
					leaks++
				}
			}
		}
	}
	if leaks == 0 {
		t.Logf("isolation matrix: %d tenant pairs x 2 paths x 3 protocols, no leak", len(tenants)*(len(tenants)-1))
	}
}
