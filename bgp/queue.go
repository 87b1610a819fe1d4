package bgp

import "sync"

// queue is an unbounded FIFO between GoBGP's watch callback, which must
// return quickly, and the goroutine that hands routes to evpnd's consumer.
// A burst of 100k routes must not block GoBGP's watch on evpnd's
// consumers. GoBGP reports best paths one UPDATE at a time, mostly one
// path each, so the queue keeps one flat slice rather than a slice per
// event: a take hands the consumer everything as one batch, at no
// allocation per event.
type queue[T any] struct {
	mu     sync.Mutex
	items  []T
	notify chan struct{}
}

func newQueue[T any]() *queue[T] {
	return &queue[T]{notify: make(chan struct{}, 1)}
}

// push appends items (copying them: the caller may reuse its slice).
func (q *queue[T]) push(items []T) {
	if len(items) == 0 {
		return
	}
	q.mu.Lock()
	q.items = append(q.items, items...)
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// poke wakes the taker without queueing anything.
func (q *queue[T]) poke() {
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// drain takes everything queued so far, in order.
func (q *queue[T]) drain() []T {
	q.mu.Lock()
	items := q.items
	q.items = nil
	q.mu.Unlock()
	return items
}
