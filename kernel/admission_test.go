package kernel

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestAdmissionBusyPastQueue(t *testing.T) {
	a := newAdmission(1, 1, 1<<30)
	rel, err := a.acquire(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	// One waiter fits in the queue.
	got := make(chan error, 1)
	go func() {
		r, err := a.acquire(context.Background(), 1)
		if err == nil {
			r(false)
		}
		got <- err
	}()
	for {
		if _, q, _ := a.load(); q == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	// The next one does not.
	if _, err := a.acquire(context.Background(), 1); !errors.Is(err, ErrBusy) {
		t.Fatalf("third acquire: err = %v, want ErrBusy", err)
	}
	rel(false)
	if err := <-got; err != nil {
		t.Fatalf("queued acquire: %v", err)
	}
	if r, q, _ := a.load(); r != 0 || q != 0 {
		t.Errorf("after release: running %d queued %d, want 0 0", r, q)
	}
}

func TestAdmissionCancelWhileQueued(t *testing.T) {
	a := newAdmission(1, 4, 1<<30)
	rel, _ := a.acquire(context.Background(), 1)
	defer rel(false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := a.acquire(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if _, q, _ := a.load(); q != 0 {
		t.Errorf("queued = %d after cancel, want 0", q)
	}
}

// A caller that releases its slot and asks again at once, while one call
// waits, must queue behind it, never be told busy: the slot went to the
// waiter, and the queue is empty again (probation works this way).
func TestAdmissionReacquireAfterHandoff(t *testing.T) {
	a := newAdmission(1, 1, 1<<30)
	for range 200 {
		rel, err := a.acquire(context.Background(), 1)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan func(bool), 1)
		go func() {
			r, err := a.acquire(context.Background(), 1)
			if err != nil {
				t.Error(err)
			}
			got <- r
		}()
		for {
			if _, q, _ := a.load(); q == 1 {
				break
			}
			time.Sleep(10 * time.Microsecond)
		}
		rel(false)
		again := make(chan func(bool), 1)
		go func() {
			r, err := a.acquire(context.Background(), 1)
			if err != nil {
				t.Errorf("acquire right after a handoff: %v", err)
				r = func(bool) {}
			}
			again <- r
		}()
		(<-got)(false)
		(<-again)(false)
		if r, q, _ := a.load(); r != 0 || q != 0 {
			t.Fatalf("after all releases: running %d queued %d", r, q)
		}
	}
}

// M6: the input bytes of running and queued calls are bounded, not only
// their number.
func TestAdmissionInputBudget(t *testing.T) {
	a := newAdmission(1, 8, 100)
	ctx := context.Background()
	if _, err := a.acquire(ctx, 101); !errors.Is(err, errTooLarge) {
		t.Errorf("an input larger than the budget: err %v, want errTooLarge", err)
	}
	rel60, err := a.acquire(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	queued := make(chan error, 1)
	go func() {
		r, err := a.acquire(ctx, 30) // queues: the only slot is taken
		if err == nil {
			r(false)
		}
		queued <- err
	}()
	for {
		if _, q, _ := a.load(); q == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	// 60 running + 30 queued: 20 more would pass 100.
	if _, err := a.acquire(ctx, 20); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "bytes of input") {
		t.Errorf("past the budget: err %v, want ErrBusy naming the bytes", err)
	}
	rel60(false)
	if err := <-queued; err != nil {
		t.Fatal(err)
	}
	if r, err := a.acquire(ctx, 100); err != nil {
		t.Errorf("the whole budget once the others are done: %v", err)
	} else {
		r(false)
	}
}

// L3: a slot whose sandbox was not wiped clean is retired: admission no
// longer counts on it, and when none is left it says so, waiters included.
func TestAdmissionRetire(t *testing.T) {
	a := newAdmission(2, 4, 1<<20)
	ctx := context.Background()
	r1, _ := a.acquire(ctx, 1)
	r2, _ := a.acquire(ctx, 1)
	r1(true)
	if r, q, max := a.load(); r != 1 || q != 0 || max != 1 {
		t.Fatalf("after a retire: running %d queued %d max %d, want 1 0 1", r, q, max)
	}
	queued := make(chan error, 1)
	go func() {
		_, err := a.acquire(ctx, 1) // the one slot left is taken: queues
		queued <- err
	}()
	for {
		if _, q, _ := a.load(); q == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	r2(true)
	if err := <-queued; !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "could not be wiped clean") {
		t.Errorf("queued when the last slot was retired: %v, want ErrBusy saying why", err)
	}
	if _, err := a.acquire(ctx, 1); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "could not be wiped clean") {
		t.Errorf("with every slot retired: %v, want ErrBusy saying why", err)
	}
	if r, q, max := a.load(); r != 0 || q != 0 || max != 0 {
		t.Errorf("running %d queued %d max %d, want 0 0 0", r, q, max)
	}
}
