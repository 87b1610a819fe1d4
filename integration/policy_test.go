package integration

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/evpnd/evpnd/integration/lab"
)

// The policy lab test runs the policy topology: host1's tenant blue has a
// policy (security group web = w1 and w2, segment web denies ingress by
// default, per-rule allow/reject, NAT to 203.0.113.0/24, HTB shaping on
// tap-w2 and policing on tap-w1); host2 has none, so every verdict is
// host1's. Real traffic between workload namespaces and the outside host
// decides, next to what the edge router installed and what host1's
// nftables counters say.

// Addresses of the policy topology.
var (
	polW1      = netip.MustParseAddr("172.31.1.1")
	polW2      = netip.MustParseAddr("172.31.1.2")
	polW3      = netip.MustParseAddr("172.31.1.3")
	polW2Extra = netip.MustParseAddr("172.31.1.22")
	polWebGW   = netip.MustParseAddr("172.31.1.254")
	polOutside = netip.MustParseAddr("198.18.0.2")
	polSNAT    = netip.MustParseAddr("203.0.113.1")
	polFIP     = netip.MustParseAddr("203.0.113.10")
	polFwd     = netip.MustParseAddr("203.0.113.11")
	polHost1   = netip.MustParseAddr("10.0.0.1")
	polTenants = netip.MustParsePrefix("172.31.0.0/16")
)

// polDenied is how long a probe waits before calling a flow dropped. The
// allowed probes of the same run answer in milliseconds, so a drop is
// not confused with a slow path.
const polDenied = 1500 * time.Millisecond

// QoS targets of host1's config (policy/host1/evpnd.yaml) and the
// tolerance the test allows around them.
const (
	polShapeRate  = 20e6 // tap-w2 egress
	polBulkRate   = 5e6  // class bulk on tap-w2 (rate = ceil)
	polPoliceRate = 10e6 // tap-w1 ingress
	polTolerance  = 0.15
)

// TestPrivilegedPolicy brings up the policy lab once for every policy
// check. RuleChange restarts host1's evpnd with a changed config, so it
// runs last.
func TestPrivilegedPolicy(t *testing.T) {
	requireL2Lab(t)
	l := lab.Up(t, "topologies/policy.clab.yml", lab.Options{})
	h1blue := l.TenantNS("host1", "blue")
	w1, w2, w3 := l.NS("w1"), l.NS("w2"), l.NS("w3")

	// Rules follow the addresses evpnd learns on the ports; a workload is
	// learned when it talks to its gateway, as a booting one does.
	learned(t, l, h1blue, map[string]netip.Addr{"w1": polW1, "w2": polW2})

	servers := map[string]*polServer{}
	for _, s := range []struct {
		node string
		ip   netip.Addr
		port uint16
	}{
		{"w1", polW1, 80}, {"w1", polW1, 22}, {"w1", polW1, 8081}, {"w1", polW1, 8082}, {"w1", polW1, 9999},
		{"w2", netip.IPv4Unspecified(), 80}, {"w2", netip.IPv4Unspecified(), 22}, {"w2", netip.IPv4Unspecified(), 9999},
		{"outside", polOutside, 7000},
	} {
		key := fmt.Sprintf("%s:%d", s.node, s.port)
		servers[key] = serveTCP(t, l.NS(s.node), s.ip, s.port)
	}
	udpW2 := map[uint16]*polUDPServer{}
	for _, p := range []uint16{53, 5000} {
		udpW2[p] = serveUDP(t, w2, p)
	}
	udpW1 := serveUDP(t, w1, 53)
	// Each subtest first waits for the overlay (w3 on host2 to w1 on
	// host1), so any of them runs alone with -run.
	overlayUp := func(t *testing.T) {
		t.Helper()
		lab.Eventually(t, converge, pollEvery, func() error { return tcpOK(w3, polW1, 80) })
	}

	// Allowed flows pass both ways over the overlay (w3 is on host2, the
	// rules are host1's); denied ones are dropped, rejected ones reset.
	t.Run("Filter", func(t *testing.T) {
		overlayUp(t)
		for _, c := range []struct {
			ip   netip.Addr
			port uint16
			want tcpVerdict
			why  string
		}{
			{polW1, 80, tcpAnswered, "http-in allows tcp 80 to group web"},
			{polW2, 80, tcpAnswered, "http-in allows tcp 80 to group web"},
			{polW1, 22, tcpReset, "ssh-in rejects tcp 22 to group web"},
			{polW2, 22, tcpReset, "ssh-in rejects tcp 22 to group web"},
			{polW1, 8081, tcpAnswered, "svc-w1 allows tcp 8081 to tap-w1"},
			{polW1, 9999, tcpDropped, "segment web denies ingress by default"},
			{polW2, 9999, tcpDropped, "segment web denies ingress by default"},
		} {
			if got := probeTCP(w3, c.ip, c.port); got != c.want {
				t.Errorf("w3 -> %s:%d: %s, want %s (%s)", c.ip, c.port, got, c.want, c.why)
			}
		}
		if err := udpEcho(w3, polW2, 53, polDenied); err != nil {
			t.Errorf("w3 -> w2 udp 53 (dns-w2 allows it, the reply must pass): %v", err)
		}
		if err := udpEcho(w3, polW1, 53, polDenied); err == nil {
			t.Errorf("w3 -> w1 udp 53 answered: dns-w2 allows udp 53 to w2 only and segment web denies the rest (w1 server saw %d datagrams)", udpW1.count())
		}
		for _, dst := range []netip.Addr{polW1, polW2} {
			if err := icmpEcho(w3, dst, icmpEchoRequest, polDenied); err != nil {
				t.Errorf("w3 -> %s icmp echo (ping-in allows it): %v", dst, err)
			}
		}
		// The kernel answers ICMP timestamp requests: w1 gets one answered by
		// w3 (host2 has no policy), and the same request to w1 is not, as
		// ping-in allows only type 8.
		if err := icmpEcho(w1, polW3, icmpTimestampRequest, polDenied); err != nil {
			t.Fatalf("w1 -> w3 icmp timestamp (unfiltered direction): %v", err)
		}
		if err := icmpEcho(w3, polW1, icmpTimestampRequest, polDenied); err == nil {
			t.Errorf("w3 -> w1 icmp timestamp answered: only echo requests are allowed to group web")
		}
	})

	// A second address of w2, once w2 sends from it, is learned on tap-w2
	// and gets the group's rules.
	t.Run("SecurityGroupMembership", func(t *testing.T) {
		overlayUp(t)
		if _, err := lab.ExecNS(w2, "ip", "addr", "add", polW2Extra.String()+"/24", "dev", "eth1"); err != nil {
			t.Fatal(err)
		}
		lab.Eventually(t, converge, pollEvery, func() error {
			if err := knockFrom(w2, polW2Extra, polWebGW); err != nil {
				return err
			}
			return inIngressMap(h1blue, polW2Extra, "in_port_tap-w2")
		})
		for _, c := range []struct {
			port uint16
			want tcpVerdict
		}{{80, tcpAnswered}, {22, tcpReset}, {9999, tcpDropped}} {
			if got := probeTCP(w3, polW2Extra, c.port); got != c.want {
				t.Errorf("w3 -> %s:%d (w2's new address): %s, want %s as for every member of group web", polW2Extra, c.port, got, c.want)
			}
		}
	})

	// SNAT: the outside has no route to the tenant's addresses, yet w2
	// reaches it, seen from the SNAT address; w1 is seen from its floating
	// IP, the 1:1 NAT taking precedence over the tenant's SNAT.
	t.Run("SNAT", func(t *testing.T) {
		if err := noTenantRoute(l); err != nil {
			t.Fatal(err)
		}
		out := servers["outside:7000"]
		for _, c := range []struct {
			node string
			want netip.Addr
		}{{"w2", polSNAT}, {"w1", polFIP}} {
			lab.Eventually(t, converge, pollEvery, func() error { return tcpOK(l.NS(c.node), polOutside, 7000) })
			if !out.sawFrom(c.want) {
				t.Errorf("outside saw %s's connection from %v, want from %s", c.node, out.peers(), c.want)
			}
			for _, p := range out.peers() {
				if polTenants.Contains(p) {
					t.Errorf("outside saw a tenant address %s: NAT did not translate it", p)
				}
			}
		}
	})

	// Floating IP and port forward: the edge learns the public /32s
	// through the RR with host1 as next hop and installs them; the outside
	// reaches w1 through 203.0.113.10 and w2:80 through 203.0.113.11:8080.
	t.Run("FloatingIP", func(t *testing.T) {
		for _, a := range []netip.Addr{polSNAT, polFIP, polFwd} {
			p := netip.PrefixFrom(a, 32)
			lab.Eventually(t, converge, pollEvery, func() error { return bgpUnicast(l, "rr", p, polHost1) })
			lab.Eventually(t, converge, pollEvery, func() error { return bgpUnicast(l, "edge", p, polHost1) })
			lab.Eventually(t, converge, pollEvery, func() error { return edgeInstalled(l, p, polHost1) })
		}
		outside := l.NS("outside")
		lab.Eventually(t, converge, pollEvery, func() error { return tcpOK(outside, polFIP, 80) })
		if b, err := tcpBanner(outside, polFIP, 80); err != nil || b != w1 {
			t.Errorf("outside -> %s:80 answered by %q (%v), want w1 (%s)", polFIP, b, err, w1)
		}
		if !servers["w1:80"].sawFrom(polOutside) {
			t.Errorf("w1:80 saw %v, want the outside's own address %s (a floating IP keeps the source)", servers["w1:80"].peers(), polOutside)
		}
		lab.Eventually(t, converge, pollEvery, func() error { return tcpOK(outside, polFwd, 8080) })
		if b, err := tcpBanner(outside, polFwd, 8080); err != nil || b != w2 {
			t.Errorf("outside -> %s:8080 answered by %q (%v), want w2 (%s) on port 80", polFwd, b, err, w2)
		}
		if got := probeTCP(outside, polFwd, 80); got == tcpAnswered {
			t.Errorf("outside -> %s:80 answered: only port 8080 is forwarded", polFwd)
		}
	})

	// QoS: a default-class flow to w2 gets the port's egress rate, a flow
	// in class bulk its 5 Mbit/s ceiling, and w1's upload the policed
	// rate. iperf3 runs one flow at a time, so the classes do not share.
	t.Run("QoS", func(t *testing.T) {
		overlayUp(t)
		if _, err := exec.LookPath("iperf3"); err != nil {
			t.Skip("QoS needs iperf3 (apt-get install iperf3)")
		}
		iperfServer(t, w2, 5202)
		iperfServer(t, w2, 5201)
		iperfServer(t, w3, 5203)
		for _, c := range []struct {
			name     string
			from     string
			to       netip.Addr
			port     uint16
			want     float64
			classDev string
		}{
			{"tap-w2 egress rate, default class", w3, polW2, 5202, polShapeRate, ""},
			{"tap-w2 class bulk", w3, polW2, 5201, polBulkRate, "e5:10"},
			{"tap-w1 ingress policing", w1, polW3, 5203, polPoliceRate, ""},
		} {
			var before uint64
			if c.classDev != "" {
				before = htbClassBytes(t, h1blue, "tap-w2", c.classDev)
			}
			got, err := iperf(c.from, c.to, c.port)
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
				continue
			}
			dev := (got - c.want) / c.want
			t.Logf("%s: %.2f Mbit/s measured, %.2f Mbit/s configured (%+.1f%%)", c.name, got/1e6, c.want/1e6, dev*100)
			if dev > polTolerance || dev < -polTolerance {
				t.Errorf("%s: %.2f Mbit/s, want %.2f Mbit/s within %.0f%%", c.name, got/1e6, c.want/1e6, polTolerance*100)
			}
			if c.classDev != "" {
				if after := htbClassBytes(t, h1blue, "tap-w2", c.classDev); after <= before {
					t.Errorf("%s: htb class %s sent %d bytes before and %d after the flow: it did not carry it", c.name, c.classDev, before, after)
				}
			}
		}
	})

	// DSCP: voice-w2 marks udp 5000 to w2 with EF (46); w2 receives the
	// mark, while the unmarked udp 53 arrives with DSCP 0.
	t.Run("DSCP", func(t *testing.T) {
		overlayUp(t)
		for _, c := range []struct {
			port uint16
			want uint8
		}{{5000, 46}, {53, 0}} {
			if err := udpEcho(w3, polW2, c.port, polDenied); err != nil {
				t.Fatalf("w3 -> w2 udp %d: %v", c.port, err)
			}
			tos, ok := udpW2[c.port].lastTOS()
			if !ok {
				t.Fatalf("w2 udp %d: no TOS received with the datagram", c.port)
			}
			if tos>>2 != c.want {
				t.Errorf("w2 udp %d: DSCP %d (TOS 0x%02x), want %d", c.port, tos>>2, tos, c.want)
			}
		}
	})

	// Counters of the rules a flow hits go up; those of rules it does not
	// hit stay.
	t.Run("Counters", func(t *testing.T) {
		overlayUp(t)
		before, err := ruleCounters(l, "host1")
		if err != nil {
			t.Fatal(err)
		}
		if err := tcpOK(w3, polW1, 80); err != nil {
			t.Fatal(err)
		}
		if got := probeTCP(w3, polW1, 22); got != tcpReset {
			t.Fatalf("w3 -> w1:22: %s, want %s", got, tcpReset)
		}
		if err := icmpEcho(w3, polW2, icmpEchoRequest, polDenied); err != nil {
			t.Fatal(err)
		}
		after, err := ruleCounters(l, "host1")
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"http-in", "ssh-in", "ping-in"} {
			if after[name] <= before[name] {
				t.Errorf("counter %s: %d packets before, %d after a flow it matches", name, before[name], after[name])
			}
		}
		if _, ok := after["iperf-bulk"]; !ok || after["iperf-bulk"] != before["iperf-bulk"] {
			t.Errorf("counter iperf-bulk: %d -> %d (listed: %v) with no flow to tcp 5201", before["iperf-bulk"], after["iperf-bulk"], ok)
		}
		t.Logf("counters after: %v", after)
	})

	// A rule change through a restart of host1's evpnd (no reload yet):
	// the policy is replaced atomically, an established flow it does not
	// concern keeps carrying data, and new connections follow the new rule.
	t.Run("RuleChange", func(t *testing.T) {
		overlayUp(t)
		// The long-lived flow stays on host1 (w2 -> w1 through w1's
		// ingress rules): restarting evpnd also restarts its BGP session,
		// and without graceful restart (not enabled yet) remote hosts drop
		// host1's routes until it is back, which is not what this checks.
		conn, err := dialTCP(w2, polW1, 80, time.Second)
		if err != nil {
			t.Fatalf("long-lived w2 -> w1:80: %v", err)
		}
		defer conn.Close()
		if err := conn.roundTrip(); err != nil {
			t.Fatalf("long-lived w2 -> w1:80 before the change: %v", err)
		}
		useConfig(t, l, "host1", `ports: ["8081"]`, `ports: ["8082"]`)
		if err := l.StopDaemons("host1"); err != nil {
			t.Fatal(err)
		}
		if err := l.StartDaemons("host1"); err != nil {
			t.Fatal(err)
		}
		lab.Eventually(t, converge, pollEvery, func() error {
			out, err := lab.ExecNS(h1blue, "nft", "list", "chain", "inet", "evpnd", "in_port_tap-w1")
			if err != nil {
				return err
			}
			if !strings.Contains(string(out), "dport 8082") || strings.Contains(string(out), "dport 8081") {
				return fmt.Errorf("host1 in_port_tap-w1 is not the changed rule yet:\n%s", out)
			}
			return nil
		})
		if err := conn.roundTrip(); err != nil {
			t.Errorf("long-lived w2 -> w1:80 after the change: %v (an established flow the change does not concern must survive)", err)
		}
		// The restarted evpnd must dispatch the workloads' addresses to
		// their ports' chains again, without the workloads sending
		// anything: the kernel still holds their neighbor entries.
		for node, ip := range map[string]netip.Addr{"w1": polW1, "w2": polW2} {
			if err := lab.Poll(10*time.Second, pollEvery, func() error { return inIngressMap(h1blue, ip, "in_port_tap-"+node) }); err != nil {
				t.Errorf("after the restart, host1's policy lost %s's address: %v", node, err)
				// Whether the workload talking to its gateway again brings
				// it back tells the two failure modes apart in the report.
				err := lab.Poll(5*time.Second, pollEvery, func() error {
					if err := lab.Knock(l.NS(node), polWebGW); err != nil {
						return err
					}
					return inIngressMap(h1blue, ip, "in_port_tap-"+node)
				})
				t.Logf("%s talking to its gateway after the restart: address back in the policy: %v", node, err == nil)
			}
		}
		// New connections come from host2: wait until the fabric has host1
		// back after its restart.
		overlayUp(t)
		if got := probeTCP(w3, polW1, 8082); got != tcpAnswered {
			t.Errorf("new w3 -> w1:8082: %s, want %s (the changed svc-w1 allows it)", got, tcpAnswered)
		}
		if got := probeTCP(w3, polW1, 8081); got != tcpDropped {
			t.Errorf("new w3 -> w1:8081: %s, want %s (no rule allows it any more)", got, tcpDropped)
		}
		if got := probeTCP(w3, polW1, 80); got != tcpAnswered {
			t.Errorf("new w3 -> w1:80: %s, want %s (http-in is unchanged)", got, tcpAnswered)
		}
	})
}

// learned waits until host1's policy dispatches each workload's address
// to its port's chain, making each one talk to its gateway meanwhile.
func learned(t *testing.T, l *lab.Lab, tenantNS string, ws map[string]netip.Addr) {
	t.Helper()
	for node, ip := range ws {
		lab.Eventually(t, converge, pollEvery, func() error {
			if err := lab.Knock(l.NS(node), polWebGW); err != nil {
				return err
			}
			return inIngressMap(tenantNS, ip, "in_port_tap-"+node)
		})
	}
}

// knockFrom sends a TCP SYN from src in ns to dst (port 9), for the ARP
// and the frame it makes, ignoring the answer.
func knockFrom(ns string, src, dst netip.Addr) error {
	return lab.InNS(ns, func() error {
		d := net.Dialer{Timeout: 200 * time.Millisecond, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		c, err := d.Dial("tcp", netip.AddrPortFrom(dst, 9).String())
		if err == nil {
			c.Close()
		}
		return nil
	})
}

// inIngressMap checks that host1's ingress_v4 map sends ip to chain.
func inIngressMap(ns string, ip netip.Addr, chain string) error {
	out, err := lab.ExecNS(ns, "nft", "-j", "list", "map", "inet", "evpnd", "ingress_v4")
	if err != nil {
		return err
	}
	var doc struct {
		Nftables []struct {
			Map *struct {
				Elem [][]json.RawMessage `json:"elem"`
			} `json:"map"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return fmt.Errorf("ingress_v4 json: %w: %.200s", err, out)
	}
	for _, o := range doc.Nftables {
		if o.Map == nil {
			continue
		}
		for _, e := range o.Map.Elem {
			if len(e) != 2 {
				continue
			}
			var key string
			if json.Unmarshal(e[0], &key) != nil || key != ip.String() {
				continue
			}
			var v struct {
				Goto struct {
					Target string `json:"target"`
				} `json:"goto"`
			}
			if err := json.Unmarshal(e[1], &v); err != nil || v.Goto.Target != chain {
				return fmt.Errorf("ingress_v4: %s -> %s, want goto %s", ip, e[1], chain)
			}
			return nil
		}
	}
	return fmt.Errorf("ingress_v4 in %s has no %s (not learned yet):\n%s", ns, ip, out)
}

// polServer is a TCP server in a namespace that answers each connection
// with a banner naming its namespace, then echoes lines with no deadline,
// so a connection lives as long as the client wants. It records the
// source address of every connection.
type polServer struct {
	ns string
	ln net.Listener

	mu   sync.Mutex
	from []netip.Addr
	wg   sync.WaitGroup
}

func serveTCP(t *testing.T, ns string, ip netip.Addr, port uint16) *polServer {
	t.Helper()
	s := &polServer{ns: ns}
	err := lab.InNS(ns, func() error {
		var err error
		s.ln, err = net.Listen("tcp4", netip.AddrPortFrom(ip, port).String())
		return err
	})
	if err != nil {
		t.Fatalf("tcp server in %s on %s:%d: %v", ns, ip, port, err)
	}
	var conns sync.Map
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			conns.Store(c, true)
			s.mu.Lock()
			s.from = append(s.from, c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap())
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer conns.Delete(c)
				defer c.Close()
				if _, err := io.WriteString(c, ns+"\n"); err != nil {
					return
				}
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		s.ln.Close()
		conns.Range(func(c, _ any) bool { c.(net.Conn).Close(); return true })
		s.wg.Wait()
	})
	return s
}

func (s *polServer) peers() []netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.from)
}

func (s *polServer) sawFrom(a netip.Addr) bool { return slices.Contains(s.peers(), a) }

// polConn is a client connection to a polServer.
type polConn struct {
	net.Conn
	r *bufio.Reader
}

// dialTCP connects from ns to ip:port and reads the server's banner.
func dialTCP(ns string, ip netip.Addr, port uint16, timeout time.Duration) (*polConn, error) {
	to := netip.AddrPortFrom(ip, port)
	var c net.Conn
	err := lab.InNS(ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", to.String(), timeout)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tcp %s -> %s: %w", ns, to, err)
	}
	pc := &polConn{Conn: c, r: bufio.NewReader(c)}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	if _, err := pc.r.ReadString('\n'); err != nil {
		c.Close()
		return nil, fmt.Errorf("tcp %s -> %s: banner: %w", ns, to, err)
	}
	return pc, nil
}

// roundTrip sends a line and waits for its echo.
func (c *polConn) roundTrip() error {
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	line := strconv.FormatInt(time.Now().UnixNano(), 10)
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	got, err := c.r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if strings.TrimSuffix(got, "\n") != line {
		return fmt.Errorf("echo %q, sent %q", got, line)
	}
	return nil
}

// tcpBanner connects, exchanges a line and returns which namespace served.
func tcpBanner(ns string, ip netip.Addr, port uint16) (string, error) {
	to := netip.AddrPortFrom(ip, port)
	var c net.Conn
	err := lab.InNS(ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", to.String(), time.Second)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("tcp %s -> %s: %w", ns, to, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	pc := &polConn{Conn: c, r: bufio.NewReader(c)}
	banner, err := pc.r.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("tcp %s -> %s: banner: %w", ns, to, err)
	}
	if err := pc.roundTrip(); err != nil {
		return "", fmt.Errorf("tcp %s -> %s: %w", ns, to, err)
	}
	return strings.TrimSuffix(banner, "\n"), nil
}

func tcpOK(ns string, ip netip.Addr, port uint16) error {
	_, err := tcpBanner(ns, ip, port)
	return err
}

// tcpVerdict is what a connection attempt met.
type tcpVerdict string

const (
	tcpAnswered tcpVerdict = "answered"
	tcpReset    tcpVerdict = "reset"   // RST: rejected (or no listener)
	tcpDropped  tcpVerdict = "dropped" // no answer within polDenied
	tcpOther    tcpVerdict = "other error"
)

func probeTCP(ns string, ip netip.Addr, port uint16) tcpVerdict {
	var c net.Conn
	err := lab.InNS(ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", netip.AddrPortFrom(ip, port).String(), polDenied)
		return err
	})
	switch {
	case err == nil:
		c.Close()
		return tcpAnswered
	case errors.Is(err, syscall.ECONNREFUSED):
		return tcpReset
	case errors.Is(err, os.ErrDeadlineExceeded):
		return tcpDropped
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return tcpDropped
	}
	return tcpOther + tcpVerdict(": "+err.Error())
}

// polUDPServer echoes datagrams in a namespace and keeps the TOS byte of
// the last one (IP_RECVTOS), as it arrived on the wire at the workload.
type polUDPServer struct {
	mu  sync.Mutex
	tos int // -1: none seen
	n   int
}

func serveUDP(t *testing.T, ns string, port uint16) *polUDPServer {
	t.Helper()
	var c *net.UDPConn
	err := lab.InNS(ns, func() error {
		var err error
		c, err = net.ListenUDP("udp4", &net.UDPAddr{Port: int(port)})
		return err
	})
	if err != nil {
		t.Fatalf("udp server in %s on %d: %v", ns, port, err)
	}
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVTOS, 1) }); err != nil || serr != nil {
		t.Fatalf("udp server in %s: IP_RECVTOS: %v %v", ns, err, serr)
	}
	s := &polUDPServer{tos: -1}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf, oob := make([]byte, 2048), make([]byte, 128)
		for {
			n, oobn, _, from, err := c.ReadMsgUDP(buf, oob)
			if err != nil {
				return
			}
			tos := -1
			if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
				for _, m := range msgs {
					if m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_TOS && len(m.Data) > 0 {
						tos = int(m.Data[0])
					}
				}
			}
			s.mu.Lock()
			s.tos, s.n = tos, s.n+1
			s.mu.Unlock()
			_, _ = c.WriteToUDP(buf[:n], from)
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return s
}

func (s *polUDPServer) lastTOS() (uint8, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return uint8(s.tos), s.tos >= 0
}

func (s *polUDPServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// udpEcho sends a datagram from ns to ip:port and waits for its echo.
func udpEcho(ns string, ip netip.Addr, port uint16, timeout time.Duration) error {
	to := netip.AddrPortFrom(ip, port)
	var c net.Conn
	err := lab.InNS(ns, func() error {
		var err error
		c, err = net.Dial("udp4", to.String())
		return err
	})
	if err != nil {
		return fmt.Errorf("udp %s -> %s: %w", ns, to, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	msg := []byte(strconv.FormatInt(time.Now().UnixNano(), 10))
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("udp %s -> %s: send: %w", ns, to, err)
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return fmt.Errorf("udp %s -> %s: no echo: %w", ns, to, err)
	}
	if string(buf[:n]) != string(msg) {
		return fmt.Errorf("udp %s -> %s: echo %q, sent %q", ns, to, buf[:n], msg)
	}
	return nil
}

// ICMP request types and the reply each one gets.
const (
	icmpEchoRequest      = 8
	icmpTimestampRequest = 13
)

var icmpReplyTo = map[uint8]uint8{icmpEchoRequest: 0, icmpTimestampRequest: 14}

// icmpEcho sends one ICMP request of type typ from ns to dst on a raw
// socket and waits for the matching reply.
func icmpEcho(ns string, dst netip.Addr, typ uint8, timeout time.Duration) error {
	var c *net.IPConn
	err := lab.InNS(ns, func() error {
		pc, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
		if err == nil {
			c = pc.(*net.IPConn)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("icmp socket in %s: %w", ns, err)
	}
	defer c.Close()
	id := uint16(time.Now().UnixNano())
	msg := make([]byte, 8)
	if typ == icmpTimestampRequest {
		msg = make([]byte, 20)
	} else {
		msg = append(msg, "evpnd policy lab"...)
	}
	msg[0] = typ
	binary.BigEndian.PutUint16(msg[4:], id)
	binary.BigEndian.PutUint16(msg[6:], 1)
	binary.BigEndian.PutUint16(msg[2:], icmpChecksum(msg))
	if _, err := c.WriteTo(msg, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return fmt.Errorf("icmp %s -> %s: send: %w", ns, dst, err)
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("icmp type %d %s -> %s: no reply: %w", typ, ns, dst, err)
		}
		if n >= 8 && buf[0] == icmpReplyTo[typ] && binary.BigEndian.Uint16(buf[4:]) == id &&
			from.(*net.IPAddr).IP.Equal(dst.AsSlice()) {
			return nil
		}
	}
}

func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// noTenantRoute checks that neither the outside host nor the edge routes
// the tenant's addresses: the outside only has its subnet and a default
// route via the edge, and the edge has no route to 172.31.0.0/16.
func noTenantRoute(l *lab.Lab) error {
	out, err := l.Exec("outside", "ip", "-j", "-4", "route", "show")
	if err != nil {
		return err
	}
	var routes []struct {
		Dst string `json:"dst"`
	}
	if err := json.Unmarshal(out, &routes); err != nil {
		return fmt.Errorf("outside routes: %w: %s", err, out)
	}
	for _, r := range routes {
		if r.Dst == "default" {
			continue
		}
		p, err := netip.ParsePrefix(r.Dst)
		if err != nil {
			p = netip.PrefixFrom(netip.MustParseAddr(r.Dst), 32)
		}
		if p.Overlaps(polTenants) {
			return fmt.Errorf("outside has a route %s into the tenant's %s", r.Dst, polTenants)
		}
	}
	if out, err := l.Exec("edge", "ip", "route", "get", polW1.String()); err == nil {
		return fmt.Errorf("edge routes the tenant address %s: %s", polW1, out)
	}
	return nil
}

// bgpUnicast checks that an FRR node holds prefix in ipv4 unicast with
// next hop nh, as a valid best path.
func bgpUnicast(l *lab.Lab, node string, prefix netip.Prefix, nh netip.Addr) error {
	var r struct {
		Paths []struct {
			Valid    bool `json:"valid"`
			Bestpath *struct {
				Overall bool `json:"overall"`
			} `json:"bestpath"`
			Nexthops []struct {
				IP string `json:"ip"`
			} `json:"nexthops"`
		} `json:"paths"`
	}
	if err := l.VtyshJSON(node, "show ip bgp "+prefix.String()+" json", &r); err != nil {
		return err
	}
	for _, p := range r.Paths {
		if p.Valid && p.Bestpath != nil && p.Bestpath.Overall && len(p.Nexthops) > 0 && p.Nexthops[0].IP == nh.String() {
			return nil
		}
	}
	raw, _ := l.Vtysh(node, "show ip bgp "+prefix.String()+" json")
	return fmt.Errorf("%s: no valid best path for %s via %s: %s", node, prefix, nh, compactJSON(raw))
}

// edgeInstalled checks that the edge's zebra installed prefix from BGP
// toward nh in the kernel.
func edgeInstalled(l *lab.Lab, prefix netip.Prefix, nh netip.Addr) error {
	var routes map[string][]struct {
		Protocol  string `json:"protocol"`
		Selected  bool   `json:"selected"`
		Installed bool   `json:"installed"`
		Nexthops  []struct {
			IP string `json:"ip"`
		} `json:"nexthops"`
	}
	if err := l.VtyshJSON("edge", "show ip route "+prefix.String()+" json", &routes); err != nil {
		return err
	}
	for _, r := range routes[prefix.String()] {
		if r.Protocol == "bgp" && r.Selected && r.Installed && len(r.Nexthops) > 0 && r.Nexthops[0].IP == nh.String() {
			out, err := l.Exec("edge", "ip", "route", "get", prefix.Addr().String())
			if err != nil {
				return err
			}
			if !strings.Contains(string(out), "via "+nh.String()) {
				return fmt.Errorf("edge kernel route to %s: %s, want via %s", prefix.Addr(), out, nh)
			}
			return nil
		}
	}
	return fmt.Errorf("edge: %s not installed from bgp via %s: %v", prefix, nh, routes)
}

// iperfServer runs iperf3 -s in ns on port until the test ends, and waits
// until it listens.
func iperfServer(t *testing.T, ns string, port uint16) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, "iperf3", "-s", "-p", strconv.Itoa(int(port)))
	if err := cmd.Start(); err != nil {
		t.Fatalf("iperf3 server in %s: %v", ns, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		out, err := lab.ExecNS(ns, "ss", "-Hltn", "sport", "=", ":"+strconv.Itoa(int(port)))
		if err != nil {
			return err
		}
		if len(strings.TrimSpace(string(out))) == 0 {
			return fmt.Errorf("iperf3 in %s not listening on %d yet", ns, port)
		}
		return nil
	})
}

// iperf runs one 4 s iperf3 TCP flow from ns to ip:port, the first second
// left out (slow start, queue fill), and returns what the receiver got in
// bits per second.
func iperf(ns string, ip netip.Addr, port uint16) (float64, error) {
	out, err := exec.Command("ip", "netns", "exec", ns, "iperf3", "-c", ip.String(), "-p", strconv.Itoa(int(port)),
		"-t", "4", "-O", "1", "-J").Output()
	if err != nil {
		return 0, fmt.Errorf("iperf3 %s -> %s:%d: %w: %.300s", ns, ip, port, err, out)
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, fmt.Errorf("iperf3 json: %w", err)
	}
	if r.Error != "" {
		return 0, fmt.Errorf("iperf3 %s -> %s:%d: %s", ns, ip, port, r.Error)
	}
	return r.End.SumReceived.BitsPerSecond, nil
}

// htbClassBytes is the bytes an HTB class of dev has sent, from tc's
// text output (this iproute2 prints classes as text even with -j).
func htbClassBytes(t *testing.T, ns, dev, class string) uint64 {
	t.Helper()
	out, err := lab.ExecNS(ns, "tc", "-s", "class", "show", "dev", dev)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(out), "\n")
	for i, line := range lines {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "class" || f[2] != class {
			continue
		}
		for _, next := range lines[i+1:] {
			g := strings.Fields(next)
			if len(g) >= 3 && g[0] == "Sent" && g[2] == "bytes" {
				n, err := strconv.ParseUint(g[1], 10, 64)
				if err != nil {
					t.Fatalf("tc class %s of %s: %q: %v", class, dev, next, err)
				}
				return n
			}
		}
	}
	t.Fatalf("%s has no htb class %s with statistics:\n%s", dev, class, out)
	return 0
}

// ruleCounters reads the packet counts of node's blue policy rules as
// evpnctl shows them: a rule's named counter in the kernel, or the sum
// of its elements' counters when it is held in a run.
func ruleCounters(l *lab.Lab, node string) (map[string]uint64, error) {
	var rows []struct {
		Rule    string      `json:"rule"`
		Packets json.Number `json:"packets"`
	}
	if err := l.EvpnctlJSON(node, &rows, "policy", "counters", "--tenant", "blue"); err != nil {
		return nil, err
	}
	m := map[string]uint64{}
	for _, r := range rows {
		n := uint64(0)
		if r.Packets != "" {
			v, err := strconv.ParseUint(string(r.Packets), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("rule %s: packets %q: %w", r.Rule, r.Packets, err)
			}
			n = v
		}
		m[r.Rule] = n
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("%s: no policy counters", node)
	}
	return m, nil
}

// useConfig points node's evpnd at a copy of its config, in the run
// directory, with old replaced by new (exactly once), for its next start.
// The runner reads the config path from the node's bind, so the test
// rebinds it; the original is restored when the test ends.
func useConfig(t *testing.T, l *lab.Lab, node, old, new string) {
	t.Helper()
	n := l.Topo.Node(node)
	orig := n.EvpndConfig()
	data, err := os.ReadFile(orig)
	if err != nil {
		t.Fatal(err)
	}
	if c := strings.Count(string(data), old); c != 1 {
		t.Fatalf("%s: %q occurs %d times, want once", orig, old, c)
	}
	changed := l.NodeDir(node) + "/evpnd-changed.yaml"
	if err := os.WriteFile(changed, []byte(strings.Replace(string(data), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, b := range n.Binds {
		if b.Source == orig {
			n.Binds[i].Source = changed
			t.Cleanup(func() { n.Binds[i].Source = orig })
		}
	}
}
