package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/mod/sumdb/tlog"
)

// A Mutation changes state atomically with the event it is appended with.
// It runs inside the committer, one at a time in log order, so what it
// reads cannot change under it. It sees the committed state, the writes of
// appends earlier in the same group, and its own writes. If it returns an
// error (or panics) the append fails with that error, writes nothing and
// consumes no sequence number; the rest of the group is unaffected.
//
// A Mutation must be quick and must not call back into the Ledger.
type Mutation func(tx *Txn) error

// Txn is what a Mutation reads and writes through. Mutations passed to
// Append and Register may only touch keys under PrefixExternal.
type Txn struct {
	b        *pebble.Batch
	ev       *Event
	internal bool
	writes   map[string]pendingWrite
}

type pendingWrite struct {
	v   []byte
	del bool
}

// Event is the event being appended: Seq and TimeNS are already assigned.
// A Mutation may fill in other fields (what it found, what it decided) but
// not change its type (nor, for a registration, its cell, identity or
// parent); Seq is restored afterwards.
func (t *Txn) Event() *Event { return t.ev }

func (t *Txn) check(op string, key []byte) error {
	if !t.internal && !external(key) {
		return fmt.Errorf("mutation %s %q: %w: keys outside %q belong to the ledger", op, key, ErrInvalid, PrefixExternal)
	}
	return nil
}

// Get returns a copy of the value of key, or ErrNotFound.
func (t *Txn) Get(key []byte) ([]byte, error) {
	if err := t.check("get", key); err != nil {
		return nil, err
	}
	if w, ok := t.writes[string(key)]; ok {
		if w.del {
			return nil, ErrNotFound
		}
		return bytes.Clone(w.v), nil
	}
	return getCopy(t.b, key)
}

// Set writes key = value when the append commits.
func (t *Txn) Set(key, value []byte) error {
	if err := t.check("set", key); err != nil {
		return err
	}
	if t.writes == nil {
		t.writes = map[string]pendingWrite{}
	}
	t.writes[string(key)] = pendingWrite{v: bytes.Clone(value)}
	return nil
}

// Delete removes key when the append commits.
func (t *Txn) Delete(key []byte) error {
	if err := t.check("delete", key); err != nil {
		return err
	}
	if t.writes == nil {
		t.writes = map[string]pendingWrite{}
	}
	t.writes[string(key)] = pendingWrite{del: true}
	return nil
}

// Scan calls fn for every key under prefix in key order until fn returns
// an error. key and value are valid only during the call.
func (t *Txn) Scan(prefix []byte, fn func(key, value []byte) error) error {
	if err := t.check("scan", prefix); err != nil {
		return err
	}
	var mine []string
	for k := range t.writes {
		if bytes.HasPrefix([]byte(k), prefix) {
			mine = append(mine, k)
		}
	}
	slices.Sort(mine)
	it, err := t.b.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	defer it.Close()
	ok := it.First()
	for ok || len(mine) > 0 {
		if len(mine) > 0 && (!ok || mine[0] <= string(it.Key())) {
			k := mine[0]
			mine = mine[1:]
			if ok && k == string(it.Key()) {
				ok = it.Next()
			}
			if w := t.writes[k]; !w.del {
				if err := fn([]byte(k), w.v); err != nil {
					return err
				}
			}
			continue
		}
		if err := fn(it.Key(), it.Value()); err != nil {
			return err
		}
		ok = it.Next()
	}
	return it.Error()
}

func (t *Txn) apply() error {
	keys := make([]string, 0, len(t.writes))
	for k := range t.writes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		w := t.writes[k]
		var err error
		if w.del {
			err = t.b.Delete([]byte(k), nil)
		} else {
			err = t.b.Set([]byte(k), w.v, nil)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func runMutations(tx *Txn, muts []Mutation) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("mutation for %s event panicked: %v", tx.ev.Type, p)
		}
	}()
	for _, m := range muts {
		if err := m(tx); err != nil {
			return err
		}
	}
	return nil
}

const (
	queued int32 = iota
	taken
	cancelled
)

type request struct {
	ev    *Event // owned by the committer once queued
	muts  []Mutation
	cat   Mutation // Register, Rollback, Revoke: runs first, may touch the catalogue
	cp    bool     // a Checkpoint call: no event
	state atomic.Int32
	done  chan result // buffered: the committer never blocks on it

	// Committer-only.
	res      result
	answered bool
}

func (r *request) answer(res result) {
	r.answered = true
	r.done <- res
}

type result struct {
	ev  *Event
	cp  *storedCheckpoint
	err error
}

// Append adds ev to the log with the Mutations and returns once it is
// durable. It assigns Seq, and TimeNS when zero, writing both back to ev.
// ev must not be modified during the call. The cell.* types are refused:
// use Register, Rollback and Revoke.
//
// A cancelled ctx abandons the append only while it is still queued; once
// the committer has taken it, Append waits for the sync (one fsync) and
// reports the outcome, so a caller never sees an error for an event that
// was in fact recorded.
func (l *Ledger) Append(ctx context.Context, ev *Event, muts ...Mutation) (uint64, error) {
	if ev == nil {
		return 0, fmt.Errorf("append: %w: nil event", ErrInvalid)
	}
	switch ev.Type {
	case TypeCellRegister, TypeCellRollback, TypeCellRevoke:
		return 0, fmt.Errorf("append %s: %w: catalogue events are written by Register, Rollback and Revoke", ev.Type, ErrInvalid)
	}
	if err := validateEvent(ev); err != nil {
		return 0, fmt.Errorf("append: %w", err)
	}
	res, err := l.submit(ctx, &request{ev: cloneEvent(ev), muts: muts})
	if err != nil {
		return 0, fmt.Errorf("append %s: %w", ev.Type, err)
	}
	*ev = *res.ev
	return ev.Seq, nil
}

func (l *Ledger) submit(ctx context.Context, r *request) (result, error) {
	if err := ctx.Err(); err != nil {
		return result{}, err
	}
	r.done = make(chan result, 1)
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return result{}, ErrClosed
	}
	if l.broken != nil {
		err := l.broken
		l.mu.Unlock()
		return result{}, fmt.Errorf("%w: %v; restart the daemon", ErrBroken, err)
	}
	l.queue = append(l.queue, r)
	l.mu.Unlock()
	l.signal()
	select {
	case res := <-r.done:
		return res, res.err
	case <-ctx.Done():
		if r.state.CompareAndSwap(queued, cancelled) {
			return result{}, ctx.Err()
		}
		res := <-r.done
		return res, res.err
	}
}

func (l *Ledger) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// commitLoop is the single committer. It takes everything queued (up to
// maxGroup) as one group, so appends that arrive during a sync share the
// next one. It returns once Close has begun and the queue is empty.
func (l *Ledger) commitLoop() {
	defer close(l.stopped)
	for range l.wake {
		for {
			if l.hook != nil {
				l.hook()
			}
			l.mu.Lock()
			n := min(len(l.queue), l.maxGroup)
			group := slices.Clone(l.queue[:n])
			l.queue = slices.Delete(l.queue, 0, n)
			closing := l.closing
			l.mu.Unlock()
			if n == 0 {
				if closing {
					return
				}
				break
			}
			l.commitGroup(group)
		}
	}
}

// commitGroup applies the group's appends in order to one indexed batch,
// signs the checkpoint of the grown tree into the same batch, syncs once
// and acknowledges everyone. So every durable event is covered by a stored
// signature from the moment it is durable, and Open can refuse a log that
// is longer than its newest signed checkpoint.
func (l *Ledger) commitGroup(group []*request) {
	l.mu.Lock()
	broken := l.broken
	l.mu.Unlock()
	if broken != nil {
		for _, r := range group {
			r.answer(result{err: fmt.Errorf("%w: %v; restart the daemon", ErrBroken, broken)})
		}
		return
	}
	b := l.db.NewIndexedBatch()
	defer b.Close()
	start := l.Size()
	size := start
	hr := &hashReader{pending: map[int64]tlog.Hash{}, frontier: l.frontier, r: b}
	var acks []*request
	keep := false // a Checkpoint call: keep the checkpoint under c/

	// fail answers everyone in the group not yet answered. Nothing of the
	// batch reached the store (it commits whole or not at all), but pebble
	// may be unusable, so the ledger refuses further writes.
	fail := func(err error) {
		l.mu.Lock()
		l.broken = err
		l.mu.Unlock()
		for _, r := range group {
			if !r.answered {
				r.answer(result{err: fmt.Errorf("%w: %v; restart the daemon", ErrBroken, err)})
			}
		}
	}

	for _, r := range group {
		if !r.state.CompareAndSwap(queued, taken) {
			r.answered = true // its caller has gone
			continue
		}
		if r.cp {
			keep = true
			acks = append(acks, r)
			continue
		}
		ev := r.ev
		ev.Seq = size
		if ev.TimeNS == 0 {
			ev.TimeNS = l.now().UnixNano()
		}
		tx := &Txn{b: b, ev: ev}
		data, hashes, err := l.prepare(tx, r, size, hr)
		if err == nil {
			err = checkRef(b, ev, size)
		}
		if err != nil {
			r.answer(result{err: err})
			continue
		}
		if err := tx.apply(); err != nil {
			fail(err)
			return
		}
		if err := b.Set(eventKey(size), data, nil); err != nil {
			fail(err)
			return
		}
		base := tlog.StoredHashIndex(0, int64(size))
		for i, h := range hashes {
			if err := b.Set(hashKey(base+int64(i)), h[:], nil); err != nil {
				fail(err)
				return
			}
			hr.pending[base+int64(i)] = h
		}
		if ev.Tenant != "" {
			if err := b.Set(tenantKey(ev.Tenant, size), nil, nil); err != nil {
				fail(err)
				return
			}
		}
		if err := indexCall(b, ev, size); err != nil {
			fail(err)
			return
		}
		size++
		r.res = result{ev: ev}
		acks = append(acks, r)
	}

	latest := l.latest.Load()
	var frontier map[int64]tlog.Hash
	write := size > start
	if write {
		frontier = make(map[int64]tlog.Hash)
		for _, i := range frontierIndexes(size) {
			h, err := hr.one(i)
			if err != nil {
				fail(err)
				return
			}
			frontier[i] = h
		}
		cp, err := l.signCheckpoint(size, hr)
		if err != nil {
			fail(err)
			return
		}
		latest = cp
		if err := errors.Join(b.Set(keySize, seqKey(nil, size), nil), b.Set(keyCheckpoint, cp.signed, nil)); err != nil {
			fail(err)
			return
		}
	}
	if keep {
		if _, err := getCopy(b, cpKey(latest.size)); errors.Is(err, ErrNotFound) {
			if err := b.Set(cpKey(latest.size), latest.signed, nil); err != nil {
				fail(err)
				return
			}
			write = true
		} else if err != nil {
			fail(err)
			return
		}
	}
	if write {
		if err := b.Commit(pebble.Sync); err != nil {
			fail(err)
			return
		}
	}
	if size > start {
		l.frontier = frontier
		l.latest.Store(latest) // before size: see Ledger.latest
		l.size.Store(size)
		l.grew()
	}
	for _, r := range acks {
		if r.cp {
			r.res = result{cp: latest}
		}
		r.answer(r.res)
	}
}

// prepare runs the mutations and computes the leaf and the new stored
// hashes; it writes nothing but tx's pending writes.
func (l *Ledger) prepare(tx *Txn, r *request, seq uint64, hr *hashReader) ([]byte, []tlog.Hash, error) {
	ev := tx.ev
	if r.cat != nil {
		tx.internal = true
		err := runMutations(tx, []Mutation{r.cat})
		tx.internal = false
		if err != nil {
			return nil, nil, err
		}
	}
	// What Append checked, or the catalogue decided, stays: a Mutation must
	// not turn an event into a cell.* one, or a registration into another.
	typ, cell, id, parent := ev.Type, ev.Cell, ev.Identity, ev.Parent
	if err := runMutations(tx, r.muts); err != nil {
		return nil, nil, err
	}
	if ev.Type != typ || r.cat != nil && (ev.Cell != cell || ev.Identity != id || ev.Parent != parent) {
		return nil, nil, fmt.Errorf("%w: a mutation changed the %s event's type, cell, identity or parent", ErrInvalid, typ)
	}
	ev.Seq = seq
	if err := validateEvent(ev); err != nil {
		return nil, nil, err
	}
	data, err := ev.Encode()
	if err != nil {
		return nil, nil, err
	}
	if len(data) > MaxEventSize {
		return nil, nil, fmt.Errorf("%w: %s event is %d bytes encoded; the limit is %d", ErrInvalid, ev.Type, len(data), MaxEventSize)
	}
	hashes, err := tlog.StoredHashes(int64(seq), data, hr)
	if err != nil {
		return nil, nil, fmt.Errorf("tree hashes for %d: %w", seq, err)
	}
	return data, hashes, nil
}

// checkRef checks what an event's Ref points at: an earlier event; for a
// call.end or call.aborted, a call.begin that is still open (so a call ends
// at most once); for a call.replay, a call.begin.
func checkRef(b *pebble.Batch, ev *Event, size uint64) error {
	if ev.Ref == nil {
		return nil
	}
	ref := *ev.Ref
	if ref >= size {
		return fmt.Errorf("%w: %s refers to seq %d, past the end of the log", ErrInvalid, ev.Type, ref)
	}
	switch ev.Type {
	case TypeCallEnd, TypeCallAborted:
		if _, err := getCopy(b, openKey(ref)); errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%w: %s refers to seq %d, which is not an open call.begin (it was closed already, or is not a call.begin)", ErrInvalid, ev.Type, ref)
		} else if err != nil {
			return err
		}
	case TypeCallReplay:
		raw, err := getCopy(b, eventKey(ref))
		if err != nil {
			return fmt.Errorf("call.replay: event %d: %w", ref, err)
		}
		orig, err := DecodeEvent(raw)
		if err != nil {
			return fmt.Errorf("%w: event %d: %v", ErrCorrupt, ref, err)
		}
		if orig.Type != TypeCallBegin {
			return fmt.Errorf("%w: call.replay refers to seq %d, a %s event, not a call.begin", ErrInvalid, ref, orig.Type)
		}
	}
	return nil
}

// indexCall keeps the open-call index in the batch of the event: a
// call.begin opens o/<seq>; the call.end or call.aborted that closes it
// removes it and records end/<begin> = its own seq. After a crash the
// index lists exactly the calls whose end was never recorded.
func indexCall(b *pebble.Batch, ev *Event, seq uint64) error {
	switch {
	case ev.Type == TypeCallBegin:
		return b.Set(openKey(seq), nil, nil)
	case ev.Ref != nil && (ev.Type == TypeCallEnd || ev.Type == TypeCallAborted):
		if err := b.Delete(openKey(*ev.Ref), nil); err != nil {
			return err
		}
		return b.Set(endKey(*ev.Ref), seqKey(nil, seq), nil)
	}
	return nil
}
