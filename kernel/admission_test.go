package kernel

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestAdmissionBusyPastQueue(t *testing.T) {
	a := newAdmission(1, 1)
	rel, err := a.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// One waiter fits in the queue.
	got := make(chan error, 1)
	go func() {
		r, err := a.acquire(context.Background())
		if err == nil {
			r()
		}
		got <- err
	}()
	for {
		if _, q := a.load(); q == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	// The next one does not.
	if _, err := a.acquire(context.Background()); !errors.Is(err, ErrBusy) {
		t.Fatalf("third acquire: err = %v, want ErrBusy", err)
	}
	rel()
	if err := <-got; err != nil {
		t.Fatalf("queued acquire: %v", err)
	}
	if r, q := a.load(); r != 0 || q != 0 {
		t.Errorf("after release: running %d queued %d, want 0 0", r, q)
	}
}

func TestAdmissionCancelWhileQueued(t *testing.T) {
	a := newAdmission(1, 4)
	rel, _ := a.acquire(context.Background())
	defer rel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := a.acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if _, q := a.load(); q != 0 {
		t.Errorf("queued = %d after cancel, want 0", q)
	}
}

// A caller that releases its slot and asks again at once, while one call
// waits, must queue behind it, never be told busy: the slot went to the
// waiter, and the queue is empty again (probation works this way).
func TestAdmissionReacquireAfterHandoff(t *testing.T) {
	a := newAdmission(1, 1)
	for range 200 {
		rel, err := a.acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan func(), 1)
		go func() {
			r, err := a.acquire(context.Background())
			if err != nil {
				t.Error(err)
			}
			got <- r
		}()
		for {
			if _, q := a.load(); q == 1 {
				break
			}
			time.Sleep(10 * time.Microsecond)
		}
		rel()
		again := make(chan func(), 1)
		go func() {
			r, err := a.acquire(context.Background())
			if err != nil {
				t.Errorf("acquire right after a handoff: %v", err)
				r = func() {}
			}
			again <- r
		}()
		(<-got)()
		(<-again)()
		if r, q := a.load(); r != 0 || q != 0 {
			t.Fatalf("after all releases: running %d queued %d", r, q)
		}
	}
}
