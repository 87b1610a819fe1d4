package policy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// udpReceiver opens a UDP socket in ns that reports the TOS byte of each
// datagram (IP_RECVTOS).
func (l *lab) udpReceiver(ns string, port int) *net.UDPConn {
	var c *net.UDPConn
	var err error
	in(l.t, ns, func() { c, err = net.ListenUDP("udp4", &net.UDPAddr{Port: port}) })
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { c.Close() })
	raw, err := c.SyscallConn()
	if err != nil {
		l.t.Fatal(err)
	}
	raw.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_RECVTOS, 1)
	})
	if err != nil {
		l.t.Fatal(err)
	}
	return c
}

func readTOS(c *net.UDPConn) (tos int, err error) {
	buf, oob := make([]byte, 2048), make([]byte, 128)
	_, oobn, _, _, err := c.ReadMsgUDP(buf, oob)
	if err != nil {
		return 0, err
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return 0, err
	}
	for _, m := range msgs {
		if m.Header.Level == syscall.IPPROTO_IP && m.Header.Type == syscall.IP_TOS && len(m.Data) > 0 {
			return int(m.Data[0]), nil
		}
	}
	return 0, fmt.Errorf("no IP_TOS control message")
}

func (l *lab) udpSender(ns, dst string) *net.UDPConn {
	var c *net.UDPConn
	var err error
	in(l.t, ns, func() {
		var c0 net.Conn
		c0, err = net.Dial("udp4", dst)
		if err == nil {
			c = c0.(*net.UDPConn)
		}
	})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { c.Close() })
	return c
}

func TestPrivilegedDSCPAndPolicing(t *testing.T) {
	l := newLab(t)
	e := newEngine(t)
	ctx := context.Background()
	if err := e.SetPortAddresses(ctx, "blue", "tap-a", []netip.Addr{netip.MustParseAddr("10.0.1.11")}); err != nil {
		t.Fatal(err)
	}
	const rate = 800_000 // bits/s: 100 kB/s
	p := Policy{
		Tenant: "blue",
		Rules: []Rule{{Name: "voice", Direction: Ingress, Target: Target{Port: "tap-a"}, Protocol: ProtoUDP,
			Ports: []PortRange{{7000, 7000}}, Action: ActionAllow, DSCP: u8(46), Class: "gold"}},
		QoS: []PortQoS{
			{Port: "tap-a", EgressRate: 1e9, Classes: []Class{{Name: "gold", Rate: 1e8}}},
			{Port: "tap-b", IngressRate: rate},
		},
	}
	if _, err := e.Apply(ctx, l.binding(), p); err != nil {
		t.Fatalf("apply: %v\n%s", err, l.nftList())
	}

	// DSCP on every packet of the flow, not only the first.
	rx := l.udpReceiver(l.w["w1"], 7000)
	tx := l.udpSender(l.w["w3"], "10.0.1.11:7000")
	for i := 0; i < 5; i++ {
		if _, err := tx.Write([]byte("voice")); err != nil {
			t.Fatal(err)
		}
		rx.SetReadDeadline(time.Now().Add(2 * time.Second))
		tos, err := readTOS(rx)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if tos>>2 != 46 {
			t.Errorf("packet %d: dscp %d, want 46 (tos 0x%02x)", i, tos>>2, tos)
		}
	}
	// A flow the rule does not cover keeps its DSCP.
	rx2 := l.udpReceiver(l.w["w1"], 7001)
	tx2 := l.udpSender(l.w["w3"], "10.0.1.11:7001")
	tx2.Write([]byte("x"))
	rx2.SetReadDeadline(time.Now().Add(2 * time.Second))
	if tos, err := readTOS(rx2); err != nil || tos>>2 != 0 {
		t.Errorf("unmarked flow: tos 0x%02x, %v", tos, err)
	}

	// Ingress policing of tap-b: blast UDP from w2 and count arrivals.
	rx3 := l.udpReceiver(l.w["w1"], 7002)
	tx3 := l.udpSender(l.w["w2"], "10.0.1.11:7002")
	received := make(chan int)
	go func() {
		n := 0
		buf := make([]byte, 2048)
		for {
			rx3.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := rx3.Read(buf); err != nil {
				received <- n
				return
			}
			n++
		}
	}()
	payload := make([]byte, 1000)
	sent := 0
	start := time.Now()
	for time.Since(start) < 300*time.Millisecond {
		if _, err := tx3.Write(payload); err == nil {
			sent++
		}
	}
	elapsed := time.Since(start)
	got := <-received
	// The kernel's byte limit starts with a bucket of one second at the
	// rate plus the burst.
	allowedBytes := float64(rate/8)*(elapsed.Seconds()+1) + float64(ingressBurst(p.QoS[1]))
	allowed := int(allowedBytes / 1000)
	t.Logf("policing: sent %d datagrams of 1000 bytes in %v, %d passed, the rate allows about %d", sent, elapsed, got, allowed)
	if sent < 5*allowed {
		t.Skipf("sender too slow to exceed the rate (%d sent)", sent)
	}
	if got == 0 || got > 3*allowed+10 {
		t.Errorf("policing: %d datagrams passed, want between 1 and %d", got, 3*allowed+10)
	}
}
