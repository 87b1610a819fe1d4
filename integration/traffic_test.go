package integration

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/evpnd/evpnd/integration/lab"
)

// flow is a UDP stream with sequence numbers from one namespace to
// another, counting what arrives: a fault that loses packets shows as a
// gap.
type flow struct {
	sent     atomic.Uint64
	sendErr  atomic.Pointer[error]
	mu       sync.Mutex
	received map[uint64]bool
	stop     chan struct{}
	stopOnce sync.Once
	sending  chan struct{} // closed when the sender has returned
	done     sync.WaitGroup
	tx       net.Conn
}

// startFlow sends a datagram every interval from fromNS to ip:port in
// toNS until Stop; the test's cleanup stops it.
func startFlow(t *testing.T, fromNS, toNS string, ip netip.Addr, port uint16, interval time.Duration) *flow {
	t.Helper()
	f := &flow{received: map[uint64]bool{}, stop: make(chan struct{}), sending: make(chan struct{})}
	var rx net.PacketConn
	if err := lab.InNS(toNS, func() error {
		var err error
		rx, err = net.ListenPacket("udp", netip.AddrPortFrom(ip, port).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// A receiver starved of CPU for a moment must not count as loss on
	// the wire: the socket buffers what arrives meanwhile.
	if uc, ok := rx.(*net.UDPConn); ok {
		_ = uc.SetReadBuffer(8 << 20)
	}
	if err := lab.InNS(fromNS, func() error {
		var err error
		f.tx, err = net.Dial("udp", netip.AddrPortFrom(ip, port).String())
		return err
	}); err != nil {
		rx.Close()
		t.Fatal(err)
	}
	f.done.Add(2)
	go func() {
		defer f.done.Done()
		buf := make([]byte, 64)
		for {
			n, _, err := rx.ReadFrom(buf)
			if err != nil {
				return
			}
			if n >= 8 {
				f.mu.Lock()
				f.received[binary.BigEndian.Uint64(buf)] = true
				f.mu.Unlock()
			}
		}
	}()
	go func() {
		defer f.done.Done()
		defer close(f.sending)
		defer f.tx.Close()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		buf := make([]byte, 64)
		for {
			select {
			case <-f.stop:
				return
			case <-tick.C:
			}
			binary.BigEndian.PutUint64(buf, f.sent.Load())
			// An ICMP error from a path that broke for a moment loses
			// that datagram; the flow goes on. Anything else ends it.
			if _, err := f.tx.Write(buf); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
				f.sendErr.Store(&err)
				return
			}
			f.sent.Add(1)
		}
	}()
	t.Cleanup(func() {
		f.Stop()
		rx.Close()
		f.done.Wait()
	})
	return f
}

// Received is how many datagrams arrived so far.
func (f *flow) Received() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.received)
}

// flowing reports whether anything arrived yet: until then the sender may
// still be resolving the receiver's address.
func (f *flow) flowing() error {
	if f.Received() == 0 {
		return errors.New("no datagram of the flow arrived yet")
	}
	return nil
}

// Stop ends the sending; safe to call twice.
func (f *flow) Stop() {
	f.stopOnce.Do(func() { close(f.stop) })
}

// Lost stops the flow, waits for the datagrams in flight, and returns how
// many of those sent after the first one that arrived never did (the ones
// before went while the address was being resolved). A send error fails
// the test.
func (f *flow) Lost(t *testing.T) uint64 {
	t.Helper()
	f.Stop()
	<-f.sending
	sent := f.sent.Load()
	_ = lab.Poll(2*time.Second, 20*time.Millisecond, func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if sent > 0 && !f.received[sent-1] {
			return errors.New("in flight")
		}
		return nil
	})
	if err := f.sendErr.Load(); err != nil {
		t.Fatalf("the flow stopped sending: %v", *err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	first := sent
	for s := range f.received {
		first = min(first, s)
	}
	var lost uint64
	for s := first; s < sent; s++ {
		if !f.received[s] {
			lost++
		}
	}
	return lost
}

// waitFor lets the flow carry n more datagrams: traffic keeps flowing
// through a fault, not only after it.
func (f *flow) waitFor(t *testing.T, n int) {
	t.Helper()
	target := f.Received() + n
	lab.Eventually(t, converge, pollEvery, func() error {
		if got := f.Received(); got < target {
			return fmt.Errorf("flow carried %d datagrams, waiting for %d", got, target)
		}
		return nil
	})
}

// remoteMACs counts the MACs starting with prefix that ns's br100 holds
// behind a remote VTEP, as evpnd installs them (extern_learn, on the
// bridge).
func remoteMACs(ns, prefix string) (int, error) {
	fdb, err := lab.FDB(ns, "br100")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range fdb {
		if strings.HasPrefix(strings.ToLower(e.MAC), prefix) && e.ExternLearn() && e.Master != "" {
			n++
		}
	}
	return n, nil
}

// remoteFDB checks ns's br100 holds mac behind a remote VTEP.
func remoteFDB(ns, mac string) error {
	n, err := remoteMACs(ns, strings.ToLower(mac))
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%s: no extern_learn FDB entry for %s", ns, mac)
	}
	return nil
}
