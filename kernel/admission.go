package kernel

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrBusy means every sandbox slot is taken and the queue is full.
var ErrBusy = errors.New("busy")

// admission bounds concurrent sandboxes and the calls waiting for one.
//
// A freed slot is handed to the first waiter under the lock, so "running"
// and "queued" are exact at every moment: a caller that releases a slot and
// asks again at once (probation does) finds the queue as it really is, not
// still counting the waiter that was just let in.
type admission struct {
	max, maxQueue int

	mu      sync.Mutex
	running int             // slots taken, including ones handed to waiters
	waiters []chan struct{} // FIFO; closed when the slot is handed over
}

func newAdmission(max, queue int) *admission {
	return &admission{max: max, maxQueue: queue}
}

// acquire waits for a slot. It fails at once with ErrBusy when the queue is
// full, and with ctx's error if the caller gives up while queued.
func (a *admission) acquire(ctx context.Context) (release func(), err error) {
	a.mu.Lock()
	if a.running < a.max && len(a.waiters) == 0 {
		a.running++
		a.mu.Unlock()
		return a.release, nil
	}
	if len(a.waiters) >= a.maxQueue {
		a.mu.Unlock()
		return nil, fmt.Errorf("%w: %d sandboxes running and %d calls queued; retry later", ErrBusy, a.max, a.maxQueue)
	}
	ready := make(chan struct{})
	a.waiters = append(a.waiters, ready)
	a.mu.Unlock()

	select {
	case <-ready:
		return a.release, nil
	case <-ctx.Done():
	}
	a.mu.Lock()
	select {
	case <-ready:
		// Handed a slot as the caller gave up: pass it on.
		a.mu.Unlock()
		a.release()
	default:
		for i, w := range a.waiters {
			if w == ready {
				a.waiters = append(a.waiters[:i], a.waiters[i+1:]...)
				break
			}
		}
		a.mu.Unlock()
	}
	return nil, ctx.Err()
}

// release frees a slot, or hands it to the first waiter.
func (a *admission) release() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.waiters) > 0 {
		close(a.waiters[0])
		a.waiters = a.waiters[1:]
		return
	}
	a.running--
}

// load reports running and queued calls.
func (a *admission) load() (running, queued int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.running, len(a.waiters)
}
