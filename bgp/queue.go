package bgp

import "sync"

// queue is an unbounded FIFO of batches between GoBGP's watch callback,
// which must return quickly, and the goroutine that converts paths. A burst
// of 100k routes must not block GoBGP's event loop on evpnd's consumers.
type queue[T any] struct {
	mu     sync.Mutex
	items  [][]T
	notify chan struct{}
}

func newQueue[T any]() *queue[T] {
	return &queue[T]{notify: make(chan struct{}, 1)}
}

func (q *queue[T]) push(batch []T) {
	if len(batch) == 0 {
		return
	}
	q.mu.Lock()
	q.items = append(q.items, batch)
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// drain takes everything queued so far, in order.
func (q *queue[T]) drain() [][]T {
	q.mu.Lock()
	items := q.items
	q.items = nil
	q.mu.Unlock()
	return items
}
