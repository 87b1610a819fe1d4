package lab

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// exchangeTimeout bounds one connect-send-echo round of TCPExchange.
const exchangeTimeout = 3 * time.Second

// InNS runs fn on an OS thread switched into the named namespace. Sockets
// fn creates stay in that namespace after it returns, so a listener or
// connection made here is used from any goroutine afterwards.
func InNS(ns string, fn func() error) error {
	target, err := netns.GetFromName(ns)
	if err != nil {
		return fmt.Errorf("namespace %s: %w", ns, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// The thread stays locked and dies with this goroutine rather
			// than running other goroutines in the wrong namespace.
			errc <- errors.Join(ferr, fmt.Errorf("leave namespace %s: %w", ns, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// EchoServer is a TCP server in one namespace that answers each connection
// with a banner line naming its namespace, then echoes what it reads. The
// banner proves which namespace answered when tenants reuse addresses.
type EchoServer struct {
	NS   string
	Addr netip.AddrPort

	ln net.Listener
	wg sync.WaitGroup
}

// ListenEcho starts an EchoServer on ip:port inside namespace ns.
func ListenEcho(ns string, ip netip.Addr, port uint16) (*EchoServer, error) {
	s := &EchoServer{NS: ns, Addr: netip.AddrPortFrom(ip, port)}
	err := InNS(ns, func() error {
		ln, err := net.Listen("tcp", s.Addr.String())
		s.ln = ln
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("echo server in %s on %s: %w", ns, s.Addr, err)
	}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

func (s *EchoServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(exchangeTimeout))
			if _, err := io.WriteString(c, s.NS+"\n"); err != nil {
				return
			}
			_, _ = io.Copy(c, c) // the client checks what comes back
		}()
	}
}

// Close stops the server and waits for its connections to end.
func (s *EchoServer) Close() error {
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

// DialEcho connects from namespace fromNS to an EchoServer at ip:port,
// sends random bytes, and checks they come back. It returns the banner,
// the namespace of the server that answered.
func DialEcho(fromNS string, ip netip.Addr, port uint16) (string, error) {
	to := netip.AddrPortFrom(ip, port)
	var c net.Conn
	err := InNS(fromNS, func() error {
		var err error
		c, err = net.DialTimeout("tcp", to.String(), exchangeTimeout)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("tcp %s -> %s: connect: %w", fromNS, to, err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(exchangeTimeout)); err != nil {
		return "", fmt.Errorf("tcp %s -> %s: %w", fromNS, to, err)
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random payload: %w", err)
	}
	payload := hex.EncodeToString(b[:])
	if _, err := io.WriteString(c, payload+"\n"); err != nil {
		return "", fmt.Errorf("tcp %s -> %s: send: %w", fromNS, to, err)
	}
	r := bufio.NewReader(c)
	banner, err := r.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("tcp %s -> %s: read banner: %w", fromNS, to, err)
	}
	echo, err := r.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("tcp %s -> %s: read echo: %w", fromNS, to, err)
	}
	if got := strings.TrimSuffix(echo, "\n"); got != payload {
		return "", fmt.Errorf("tcp %s -> %s: echo %q, sent %q", fromNS, to, got, payload)
	}
	return strings.TrimSuffix(banner, "\n"), nil
}

// TCPExchange proves TCP works both ways between two namespaces: it serves
// on toIP:port in toNS, connects from fromNS, sends bytes and reads their
// echo, and checks that toNS answered. It returns an error rather than
// failing so that it can sit inside Eventually while the fabric converges.
func TCPExchange(t testing.TB, fromNS, toNS string, toIP netip.Addr, port uint16) error {
	t.Helper()
	srv, err := ListenEcho(toNS, toIP, port)
	if err != nil {
		return err
	}
	defer srv.Close()
	banner, err := DialEcho(fromNS, toIP, port)
	if err != nil {
		return err
	}
	if banner != toNS {
		return fmt.Errorf("tcp %s -> %s: answered by namespace %q, want %q", fromNS, srv.Addr, banner, toNS)
	}
	return nil
}

// Knock makes namespace ns send frames toward ip (ARP, then a TCP SYN to
// port 9 if ARP resolves) without caring about an answer: it makes a
// silent workload's MAC known to the bridge it hangs off.
func Knock(ns string, ip netip.Addr) error {
	return InNS(ns, func() error {
		d := net.Dialer{Timeout: 200 * time.Millisecond}
		c, err := d.Dial("tcp", net.JoinHostPort(ip.String(), strconv.Itoa(9)))
		if err == nil {
			c.Close()
		}
		return nil
	})
}
