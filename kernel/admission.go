package kernel

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// ErrBusy means every sandbox slot is taken and the queue is full, or the
// inputs of the calls running and waiting already fill the daemon's budget.
var ErrBusy = errors.New("busy")

// errTooLarge means one input is larger than the whole input budget: no
// amount of waiting admits it.
var errTooLarge = errors.New("input larger than the daemon admits")

// admission bounds concurrent sandboxes, the calls waiting for one, and
// the input bytes they hold together (a queue of 64 calls of 256 MiB each
// would otherwise be 16 GiB of memory).
//
// A freed slot is handed to the first waiter under the lock, so "running"
// and "queued" are exact at every moment: a caller that releases a slot and
// asks again at once (probation does) finds the queue as it really is, not
// still counting the waiter that was just let in.
type admission struct {
	max, maxQueue int
	maxBytes      int64

	mu      sync.Mutex
	running int       // slots taken, including ones handed to waiters
	retired int       // slots of sandboxes that were not wiped clean
	bytes   int64     // input bytes of running and queued calls
	waiters []*waiter // FIFO
}

// waiter is a queued call. ready is closed when it is handed a slot
// (granted) or when no slot is left to hand it (every one retired).
type waiter struct {
	ready   chan struct{}
	granted bool
}

func newAdmission(max, queue int, maxBytes int64) *admission {
	return &admission{max: max, maxQueue: queue, maxBytes: maxBytes}
}

// acquire waits for a slot for a call holding n input bytes. It fails at
// once with ErrBusy when the queue or the byte budget is full, and with
// ctx's error if the caller gives up while queued. release(retire) frees
// the slot, or with retire keeps it taken for good (the sandbox that had it
// was not wiped clean).
func (a *admission) acquire(ctx context.Context, n int64) (release func(retire bool), err error) {
	a.mu.Lock()
	if n > a.maxBytes {
		a.mu.Unlock()
		return nil, fmt.Errorf("%w: %d bytes of input, and the daemon holds at most %d bytes of input at once", errTooLarge, n, a.maxBytes)
	}
	if a.bytes+n > a.maxBytes {
		a.mu.Unlock()
		return nil, fmt.Errorf("%w: the calls running and waiting hold %d bytes of input, and this one's %d would pass the daemon's %d; retry later", ErrBusy, a.bytes, n, a.maxBytes)
	}
	release = func(retire bool) { a.release(n, retire) }
	if a.running < a.max-a.retired && len(a.waiters) == 0 {
		a.running++
		a.bytes += n
		a.mu.Unlock()
		return release, nil
	}
	if a.retired >= a.max {
		a.mu.Unlock()
		return nil, fmt.Errorf("%w: every sandbox slot is held by a sandbox that could not be wiped clean; see the daemon's log and restart it", ErrBusy)
	}
	if len(a.waiters) >= a.maxQueue {
		a.mu.Unlock()
		return nil, fmt.Errorf("%w: %d sandboxes running and %d calls queued; retry later", ErrBusy, a.max-a.retired, a.maxQueue)
	}
	w := &waiter{ready: make(chan struct{})}
	a.waiters = append(a.waiters, w)
	a.bytes += n
	a.mu.Unlock()

	select {
	case <-w.ready:
	case <-ctx.Done():
	}
	a.mu.Lock()
	select {
	case <-w.ready:
		granted := w.granted
		if !granted {
			a.bytes -= n
		}
		a.mu.Unlock()
		switch {
		case !granted:
			return nil, fmt.Errorf("%w: every sandbox slot is held by a sandbox that could not be wiped clean; see the daemon's log and restart it", ErrBusy)
		case ctx.Err() != nil:
			// Handed a slot as the caller gave up: pass it on.
			release(false)
			return nil, ctx.Err()
		}
		return release, nil
	default:
		a.waiters = slices.DeleteFunc(a.waiters, func(x *waiter) bool { return x == w })
		a.bytes -= n
		a.mu.Unlock()
	}
	return nil, ctx.Err()
}

// release frees a slot holding n input bytes, or hands it to the first
// waiter; with retire the slot is not freed but retired.
func (a *admission) release(n int64, retire bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.bytes -= n
	if retire {
		a.retired++
		a.running--
		if a.retired >= a.max {
			// Nothing will ever be handed over again.
			for _, w := range a.waiters {
				close(w.ready)
			}
			a.waiters = nil
		}
		return
	}
	if len(a.waiters) > 0 {
		w := a.waiters[0]
		w.granted = true
		close(w.ready)
		a.waiters = a.waiters[1:]
		return
	}
	a.running--
}

// load reports running and queued calls and the slots still usable.
func (a *admission) load() (running, queued, max int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.running, len(a.waiters), a.max - a.retired
}
