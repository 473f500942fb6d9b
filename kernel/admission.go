package kernel

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
)

// ErrBusy means every sandbox slot is taken and the queue is full.
var ErrBusy = errors.New("busy")

// admission bounds concurrent sandboxes and the calls waiting for one.
type admission struct {
	slots    chan struct{}
	maxQueue int64
	queued   atomic.Int64
}

func newAdmission(max, queue int) *admission {
	return &admission{slots: make(chan struct{}, max), maxQueue: int64(queue)}
}

// acquire waits for a slot. It fails at once with ErrBusy when the queue is
// full, and with ctx's error if the caller gives up while queued.
func (a *admission) acquire(ctx context.Context) (release func(), err error) {
	select {
	case a.slots <- struct{}{}:
		return a.release, nil
	default:
	}
	if a.queued.Add(1) > a.maxQueue {
		a.queued.Add(-1)
		return nil, fmt.Errorf("%w: %d sandboxes running and %d calls queued; retry later", ErrBusy, cap(a.slots), a.maxQueue)
	}
	defer a.queued.Add(-1)
	select {
	case a.slots <- struct{}{}:
		return a.release, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (a *admission) release() { <-a.slots }

// Load reports running and queued calls.
func (a *admission) load() (running, queued int) {
	return len(a.slots), int(a.queued.Load())
}
