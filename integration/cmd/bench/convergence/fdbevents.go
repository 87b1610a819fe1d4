package convergence

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// fdbEvents follows the injected MACs on one bridge through the kernel's
// neighbor notifications instead of dumps: a dump walks the whole FDB
// again for every netlink message it fills (quadratic in the table; 3 s of
// kernel time at 100k MACs here), so polling by dumps loads the machine
// under test more the bigger the table, and times the dump as much as the
// DUT. Notifications cost the reader one message per change and say when
// each change happened. If the socket overflows (ENOBUFS) the count can no
// longer be trusted: lost is set and the caller goes back to dumps.
type fdbEvents struct {
	sock    *nl.NetlinkSocket
	brIndex uint32

	mu      sync.Mutex
	present map[[6]byte]struct{}
	changed time.Time // when the last change to present was read
	lost    error

	stop chan struct{}
	done chan struct{}
}

// watchFDBEvents subscribes to neighbor notifications in the namespace at
// nsPath. Subscribe before the DUT gets its first route.
func watchFDBEvents(nsPath string, brIndex uint32) (*fdbEvents, error) {
	nsh, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", nsPath, err)
	}
	defer nsh.Close()
	sock, err := nl.SubscribeAt(nsh, netns.None(), unix.NETLINK_ROUTE, unix.RTNLGRP_NEIGH)
	if err != nil {
		return nil, fmt.Errorf("subscribe to neighbor events in %s: %w", nsPath, err)
	}
	// Room for a burst of a quarter of a million changes (each
	// notification takes about 1 KB of socket memory) while the reader
	// waits for a core.
	if err := sock.SetReceiveBufferSize(512<<20, true); err != nil {
		sock.Close()
		return nil, fmt.Errorf("neighbor events in %s: receive buffer: %w", nsPath, err)
	}
	if err := sock.SetReceiveTimeout(&unix.Timeval{Usec: 200_000}); err != nil {
		sock.Close()
		return nil, fmt.Errorf("neighbor events in %s: receive timeout: %w", nsPath, err)
	}
	w := &fdbEvents{sock: sock, brIndex: brIndex, present: map[[6]byte]struct{}{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w, nil
}

func (w *fdbEvents) run() {
	defer close(w.done)
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		msgs, _, err := w.sock.Receive()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			w.mu.Lock()
			w.lost = fmt.Errorf("neighbor events: %w", err)
			w.mu.Unlock()
			return
		}
		at := time.Now()
		w.mu.Lock()
		for _, m := range msgs {
			mac, ok := injectedEntry(m.Data, w.brIndex)
			if !ok {
				continue
			}
			switch m.Header.Type {
			case unix.RTM_NEWNEIGH:
				w.present[mac] = struct{}{}
			case unix.RTM_DELNEIGH:
				delete(w.present, mac)
			default:
				continue
			}
			w.changed = at
		}
		w.mu.Unlock()
	}
}

// count is how many injected MACs are on the bridge and when that count
// was last changed, or the error that made the count untrustworthy.
func (w *fdbEvents) count() (int, time.Time, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.present), w.changed, w.lost
}

func (w *fdbEvents) close() {
	close(w.stop)
	<-w.done
	w.sock.Close()
}
