package apiserver

import (
	"sync"

	"github.com/evpnd/evpnd/bgp"
	"github.com/evpnd/evpnd/evpn"
	"github.com/evpnd/evpnd/fabric"
)

// Event is one change the Watch streams report; exactly one of Route, MAC
// and Peer is set.
type Event struct {
	Removed bool
	Route   *evpn.Route
	MAC     *fabric.MAC
	Peer    *bgp.Peer
}

// Hub fans the daemon's events out to the watch streams. Publishing never
// blocks the daemon: a watcher that falls more than its buffer behind is
// cut off (its stream ends with RESOURCE_EXHAUSTED) rather than slowing
// the event loop or silently missing events.
type Hub struct {
	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

// Subscription is one watcher's feed.
type Subscription struct {
	C       chan Event
	overrun chan struct{}
	hub     *Hub
}

// NewHub returns a hub without watchers.
func NewHub() *Hub { return &Hub{subs: map[*Subscription]struct{}{}} }

// subscribeBuffer is how many events a watcher may lag behind.
const subscribeBuffer = 4096

// Subscribe adds a watcher; Close it when done.
func (h *Hub) Subscribe() *Subscription {
	s := &Subscription{C: make(chan Event, subscribeBuffer), overrun: make(chan struct{}), hub: h}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

// Overrun is closed when the watcher fell too far behind and was dropped.
func (s *Subscription) Overrun() <-chan struct{} { return s.overrun }

// Close removes the watcher.
func (s *Subscription) Close() {
	s.hub.mu.Lock()
	delete(s.hub.subs, s)
	s.hub.mu.Unlock()
}

// Watching reports whether anyone listens, so publishers can skip building
// events nobody reads.
func (h *Hub) Watching() bool {
	if h == nil {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs) > 0
}

// Publish hands events to every watcher.
func (h *Hub) Publish(events ...Event) {
	if h == nil || len(events) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		for _, e := range events {
			select {
			case s.C <- e:
			default:
				close(s.overrun)
				delete(h.subs, s)
			}
			if _, ok := h.subs[s]; !ok {
				break
			}
		}
	}
}
