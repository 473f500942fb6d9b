package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Options configure Open.
type Options struct {
	// Dir is the state directory; created 0700 if missing. It must belong
	// to the daemon's user; wider permissions are tightened to 0700.
	Dir string
	// Signer signs checkpoints and Verifier checks them: Open refuses
	// stored state that its signed checkpoint does not vouch for, and a
	// Verifier that does not verify the Signer's signatures.
	// internal/keys.LoadSignerKey gives both from a key file.
	Signer   note.Signer
	Verifier note.Verifier
	// Origin is the checkpoint origin line, e.g. "tcc.local/ledger". C2SP
	// wants it equal to the key name; empty means Signer.Name(), anything
	// else that differs is refused.
	Origin string
	// MaxGroup bounds the appends committed in one batch (default 1024).
	MaxGroup int
	// Logger receives pebble's own messages (flushes, background errors).
	// Nil discards them.
	Logger *slog.Logger
	// Now is the clock for Event.TimeNS; nil means time.Now.
	Now func() time.Time

	// testBeforeGroup, when set, runs in the committer before it takes a
	// group from the queue (tests use it to build a group deliberately).
	testBeforeGroup func()
	// testFS, when set, holds the pebble database (tests simulate power
	// loss with a crashable in-memory file system).
	testFS vfs.FS
}

// Ledger is the open state directory. All methods are safe for concurrent
// use.
type Ledger struct {
	dir       string
	objects   string
	db        *pebble.DB
	dirLock   io.Closer
	signer    note.Signer
	verifiers note.Verifiers
	origin    string
	maxGroup  int
	now       func() time.Time
	hook      func()

	// latest is the signed checkpoint of the whole durable log. The
	// committer stores it after the batch is visible and before size, so a
	// reader that loads it and then takes a snapshot finds every event it
	// covers there (and perhaps newer ones, which it ignores).
	size   atomic.Uint64
	latest atomic.Pointer[storedCheckpoint]

	// mu guards the queue and the open/close state. Lock order: mu is never
	// held while calling into pebble.
	mu      sync.Mutex
	queue   []*request
	closing bool
	broken  error
	readers int
	idle    *sync.Cond // signalled when readers drops to 0 while closing
	wake    chan struct{}
	stopped chan struct{}

	// grown is closed and replaced each time the log grows (Wait).
	grownMu sync.Mutex
	grown   chan struct{}

	// Committer-only state: stored hashes of the complete subtrees of the
	// current tree.
	frontier map[int64]tlog.Hash
}

// storedCheckpoint is a checkpoint the ledger signed or verified itself.
type storedCheckpoint struct {
	size   uint64
	hash   tlog.Hash
	signed []byte
}

// Open opens or creates the state directory. It fails with ErrLocked when
// another process holds it, and with ErrCorrupt or ErrKeyMismatch when the
// stored log is not exactly what its newest signed checkpoint covers: the
// ledger never signs a tree it has not vouched for since it was appended.
func Open(ctx context.Context, opts Options) (_ *Ledger, err error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("open ledger: %w: no state directory", ErrInvalid)
	}
	if opts.Signer == nil || opts.Verifier == nil {
		return nil, fmt.Errorf("open ledger: %w: a checkpoint signer and its verifier are both required", ErrInvalid)
	}
	origin := opts.Origin
	if origin == "" {
		origin = opts.Signer.Name()
	}
	if origin != opts.Signer.Name() {
		return nil, fmt.Errorf("open ledger: %w: origin %q differs from the checkpoint key name %q; C2SP verifiers expect them equal: generate the key with the origin as its name", ErrInvalid, origin, opts.Signer.Name())
	}
	verifiers := note.VerifierList(opts.Verifier)
	if probe, err := note.Sign(&note.Note{Text: "tcc ledger key check\n"}, opts.Signer); err != nil {
		return nil, fmt.Errorf("open ledger: checkpoint key: %w", err)
	} else if _, err := note.Open(probe, verifiers); err != nil {
		return nil, fmt.Errorf("open ledger: %w: verifier %q does not verify the signatures of checkpoint key %q", ErrInvalid, opts.Verifier.Name(), opts.Signer.Name())
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	l := &Ledger{
		dir:       dir,
		objects:   filepath.Join(dir, "objects"),
		signer:    opts.Signer,
		verifiers: verifiers,
		origin:    origin,
		maxGroup:  opts.MaxGroup,
		now:       opts.Now,
		hook:      opts.testBeforeGroup,
		wake:      make(chan struct{}, 1),
		stopped:   make(chan struct{}),
		grown:     make(chan struct{}),
	}
	l.idle = sync.NewCond(&l.mu)
	if l.maxGroup <= 0 {
		l.maxGroup = 1024
	}
	if l.now == nil {
		l.now = time.Now
	}

	if err := privateDir(dir); err != nil {
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	lockPath := filepath.Join(dir, "LOCK")
	l.dirLock, err = vfs.Default.Lock(lockPath)
	if err != nil {
		return nil, fmt.Errorf("open ledger: %w: another process holds %s (%v): is another tccd running on %s? Stop it or choose another state directory", ErrLocked, lockPath, err, dir)
	}
	defer func() {
		if err != nil {
			if l.db != nil {
				l.db.Close()
			}
			l.dirLock.Close()
		}
	}()
	if err := l.openObjects(); err != nil {
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	dbDir := filepath.Join(dir, "db")
	if opts.testFS == nil {
		if err := privateDir(dbDir); err != nil {
			return nil, fmt.Errorf("open ledger: %w", err)
		}
	}
	l.db, err = pebble.Open(dbDir, &pebble.Options{
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{opts.Logger},
		FS:                 opts.testFS,
	})
	if err != nil {
		// Our own lock is held, so a pebble lock failure means something
		// else opened db/ directly.
		return nil, fmt.Errorf("open ledger: pebble database %s: %w", dbDir, err)
	}
	if err := l.load(ctx); err != nil {
		return nil, fmt.Errorf("open ledger %s: %w", dir, err)
	}
	go l.commitLoop()
	return l, nil
}

// refuse is what every load error about the stored log tells the operator.
const refuse = "tccd will not sign over it. Restore the state directory from a backup, or move it away to start a new log (keep it: what its checkpoints cover stays verifiable with the key)"

// load reads the size and the frontier and checks them against the newest
// signed checkpoint, which must verify with the key and cover exactly the
// stored log: every committed group stores one in its own batch
// (keyCheckpoint), so anything else means the store was changed by
// something other than this ledger. A new, empty store gets its first.
func (l *Ledger) load(ctx context.Context) error {
	v, err := getCopy(l.db, keySize)
	var size uint64
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return err
	default:
		if size, err = u64(v); err != nil {
			return fmt.Errorf("meta/size: %w", err)
		}
	}
	if _, err := getCopy(l.db, eventKey(size)); !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%w: an event is stored at seq %d, past the log size %d; %s", ErrCorrupt, size, size, refuse)
	}
	if size > 0 {
		if _, err := getCopy(l.db, eventKey(size-1)); err != nil {
			return fmt.Errorf("%w: last event %d: %v; %s", ErrCorrupt, size-1, err, refuse)
		}
	}
	l.size.Store(size)
	l.frontier = map[int64]tlog.Hash{}
	for _, i := range frontierIndexes(size) {
		h, err := readHash(l.db, i)
		if err != nil {
			return fmt.Errorf("%w; %s", err, refuse)
		}
		l.frontier[i] = h
	}

	// The newest kept checkpoint; before keyCheckpoint existed it was also
	// the newest signed one.
	var kept []byte
	var keptSize uint64
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: pCP, UpperBound: prefixEnd(pCP)})
	if err != nil {
		return err
	}
	if it.Last() {
		keptSize, err = u64(it.Key()[len(pCP):])
		kept = bytes.Clone(it.Value())
	}
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if kept != nil && keptSize > size {
		return fmt.Errorf("%w: a checkpoint is kept for %d events but the log holds %d: events were removed; %s", ErrCorrupt, keptSize, size, refuse)
	}
	signed, err := getCopy(l.db, keyCheckpoint)
	switch {
	case errors.Is(err, ErrNotFound) && kept != nil:
		signed = kept
	case errors.Is(err, ErrNotFound) && size == 0:
		// A new store: vouch for the empty tree.
		cp, err := l.signCheckpoint(0, l.frontierHashes())
		if err != nil {
			return err
		}
		if err := l.db.Set(keyCheckpoint, cp.signed, pebble.Sync); err != nil {
			return fmt.Errorf("store checkpoint: %w", err)
		}
		l.latest.Store(cp)
		return ctx.Err()
	case errors.Is(err, ErrNotFound):
		return fmt.Errorf("%w: the log holds %d events but no signed checkpoint: checkpoints were removed; %s", ErrCorrupt, size, refuse)
	case err != nil:
		return err
	}
	cp, err := VerifyCheckpoint(signed, l.verifiers)
	if err != nil {
		return fmt.Errorf("%w: the newest checkpoint (%v) does not verify with checkpoint key %q: start tccd with the key that signed this ledger (--ledger-key), or, if this is that key, the checkpoint was altered and %s", ErrKeyMismatch, err, l.signer.Name(), refuse)
	}
	if cp.Size != size {
		return fmt.Errorf("%w: the log holds %d events but its newest signed checkpoint covers %d: events were added or checkpoints removed by something other than tccd; %s", ErrCorrupt, size, cp.Size, refuse)
	}
	th, err := tlog.TreeHash(int64(size), l.frontierHashes())
	if err != nil {
		return fmt.Errorf("%w: tree hash at %d: %v; %s", ErrCorrupt, size, err, refuse)
	}
	if th != cp.Hash {
		return fmt.Errorf("%w: the stored tree of %d events does not match its signed checkpoint: the log was altered; %s", ErrCorrupt, size, refuse)
	}
	latest := &storedCheckpoint{size: size, hash: th, signed: signed}
	if size > 0 {
		// The newest event is the one a crash or an editor would touch.
		raw, err := getCopy(l.db, eventKey(size-1))
		if err == nil {
			_, err = l.prove(l.db, latest, size-1, raw)
		}
		if err != nil {
			return fmt.Errorf("%w; %s", err, refuse)
		}
	}
	l.latest.Store(latest)
	return ctx.Err()
}

// Close commits what is queued and closes the database. It waits for
// running reads and iterators to finish.
func (l *Ledger) Close() error {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closing = true
	l.mu.Unlock()
	l.signal()
	<-l.stopped

	l.mu.Lock()
	for l.readers > 0 {
		l.idle.Wait()
	}
	l.mu.Unlock()
	err := l.db.Close()
	if lerr := l.dirLock.Close(); err == nil {
		err = lerr
	}
	if err != nil {
		return fmt.Errorf("close ledger: %w", err)
	}
	return nil
}

// acquire registers a reader; false once Close has begun. It never blocks,
// so readers may nest.
func (l *Ledger) acquire() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing {
		return false
	}
	l.readers++
	return true
}

func (l *Ledger) release() {
	l.mu.Lock()
	l.readers--
	if l.readers == 0 && l.closing {
		l.idle.Broadcast()
	}
	l.mu.Unlock()
}

// Dir is the state directory.
func (l *Ledger) Dir() string { return l.dir }

// Size is the number of durable events.
func (l *Ledger) Size() uint64 { return l.size.Load() }

// Event returns the event at seq, decoded and as stored (the Merkle leaf),
// checked against the signed tree like everything the ledger returns.
func (l *Ledger) Event(seq uint64) (*Event, []byte, error) {
	if !l.acquire() {
		return nil, nil, ErrClosed
	}
	defer l.release()
	cp := l.latest.Load()
	if seq >= cp.size {
		return nil, nil, fmt.Errorf("event %d: %w (log size %d)", seq, ErrNotFound, cp.size)
	}
	raw, err := getCopy(l.db, eventKey(seq))
	if err == nil {
		var ev *Event
		if ev, _, err = l.leaf(l.db, cp, seq, raw); err == nil {
			return ev, raw, nil
		}
	}
	return nil, nil, fmt.Errorf("event %d: %w", seq, err)
}

// prove returns the inclusion proof of raw as leaf seq of cp's tree, read
// from r, after checking it against cp's root: an event, or a stored hash,
// that the signed tree does not vouch for is ErrCorrupt.
func (l *Ledger) prove(r reader, cp *storedCheckpoint, seq uint64, raw []byte) (tlog.RecordProof, error) {
	p, err := tlog.ProveRecord(int64(cp.size), int64(seq), &hashReader{r: r})
	if err == nil {
		err = tlog.CheckRecord(p, int64(cp.size), cp.hash, int64(seq), tlog.RecordHash(raw))
	}
	if err != nil {
		return nil, fmt.Errorf("%w: event %d does not match the signed tree of %d events (%v): the store was altered outside tccd", ErrCorrupt, seq, cp.size, err)
	}
	return p, nil
}

// leaf decodes the stored event raw at seq and proves it in cp's tree.
func (l *Ledger) leaf(r reader, cp *storedCheckpoint, seq uint64, raw []byte) (*Event, tlog.RecordProof, error) {
	ev, err := DecodeEvent(raw)
	if err == nil && ev.Seq != seq {
		err = fmt.Errorf("it says seq %d", ev.Seq)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: event %d: %v", ErrCorrupt, seq, err)
	}
	p, err := l.prove(r, cp, seq, raw)
	return ev, p, err
}

// Filter selects events. Empty fields match everything; Types matches any
// of the listed types.
type Filter struct {
	Tenant  string // Events and Last find a tenant's events through an index
	Cell    string
	TraceID string
	Caller  string
	Types   []string
}

func (f *Filter) match(e *Event) bool {
	return (f.Tenant == "" || e.Tenant == f.Tenant) &&
		(f.Cell == "" || e.Cell == f.Cell) &&
		(f.TraceID == "" || e.TraceID == f.TraceID) &&
		(f.Caller == "" || e.Caller == f.Caller) &&
		(len(f.Types) == 0 || slices.Contains(f.Types, e.Type))
}

// Entry is one event as Events yields it: decoded and as stored.
type Entry struct {
	Event *Event
	Raw   []byte // the Merkle leaf
}

// Events yields the events with from <= seq < to that match f, in order,
// from one consistent snapshot; to is clamped to the size at the start.
// Every event is checked against the signed tree first. An error ends the
// sequence.
func (l *Ledger) Events(from, to uint64, f Filter) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		if !l.acquire() {
			yield(Entry{}, ErrClosed)
			return
		}
		defer l.release()
		for e, err := range l.proven(l.latest.Load(), from, to, f, f.Tenant != "") {
			if !yield(e.Entry, err) || err != nil {
				return
			}
		}
	}
}

// provenEntry is an event with its inclusion proof.
type provenEntry struct {
	Entry
	proof tlog.RecordProof
}

// proven yields the events of [from, min(to, cp.size)) that match f, each
// proven in cp's tree, from one snapshot. byIndex finds f.Tenant's events
// through the tenant index, which nothing authenticates: an entry removed
// from it hides an event. Evidence (exports) therefore reads every event of
// the range instead, and also checks that none is missing. The caller holds
// a reader reference.
func (l *Ledger) proven(cp *storedCheckpoint, from, to uint64, f Filter, byIndex bool) iter.Seq2[provenEntry, error] {
	return func(yield func(provenEntry, error) bool) {
		to = min(to, cp.size)
		if from >= to {
			return
		}
		snap := l.db.NewSnapshot()
		defer snap.Close()
		lower, upper := eventKey(from), eventKey(to)
		if byIndex {
			lower, upper = tenantKey(f.Tenant, from), tenantKey(f.Tenant, to)
		}
		it, err := snap.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
		if err != nil {
			yield(provenEntry{}, err)
			return
		}
		defer it.Close()
		next := from
		for ok := it.First(); ok; ok = it.Next() {
			seq, err := u64(it.Key()[len(it.Key())-8:])
			var raw []byte
			switch {
			case err != nil:
			case byIndex:
				raw, err = getCopy(snap, eventKey(seq))
			case seq != next:
				err = fmt.Errorf("%w: event %d is missing from the store: the log was altered outside tccd", ErrCorrupt, next)
			default:
				raw, next = bytes.Clone(it.Value()), seq+1
			}
			var ev *Event
			if err == nil {
				if ev, err = DecodeEvent(raw); err != nil {
					err = fmt.Errorf("%w: event %d: %v", ErrCorrupt, seq, err)
				}
			}
			if err == nil && !f.match(ev) {
				continue
			}
			var p tlog.RecordProof
			if err == nil {
				ev, p, err = l.leaf(snap, cp, seq, raw)
			}
			if err != nil {
				yield(provenEntry{}, err)
				return
			}
			if !yield(provenEntry{Entry{ev, raw}, p}, nil) {
				return
			}
		}
		err = it.Error()
		if err == nil && !byIndex && next != to {
			err = fmt.Errorf("%w: event %d is missing from the store: the log was altered outside tccd", ErrCorrupt, next)
		}
		if err != nil {
			yield(provenEntry{}, err)
		}
	}
}

// maxLastScan bounds how many stored events (or tenant index entries) one
// Last call examines, so a filter that matches little cannot make it read
// the whole log.
const maxLastScan = 100_000

// Last returns the last n events that match f, oldest first, reading the
// log backwards from one snapshot (through the tenant index when f names a
// tenant) and looking at no more than maxLastScan of them. Each is checked
// against the signed tree.
func (l *Ledger) Last(n int, f Filter) ([]Entry, error) {
	if !l.acquire() {
		return nil, ErrClosed
	}
	defer l.release()
	if n <= 0 {
		return nil, nil
	}
	cp := l.latest.Load()
	snap := l.db.NewSnapshot()
	defer snap.Close()
	lower, upper := eventKey(0), eventKey(cp.size)
	if f.Tenant != "" {
		lower, upper = tenantKey(f.Tenant, 0), tenantKey(f.Tenant, cp.size)
	}
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []Entry
	scanned := 0
	for ok := it.Last(); ok && len(out) < n && scanned < maxLastScan; ok = it.Prev() {
		scanned++
		seq, err := u64(it.Key()[len(it.Key())-8:])
		var raw []byte
		switch {
		case err != nil:
		case f.Tenant != "":
			raw, err = getCopy(snap, eventKey(seq))
		default:
			raw = bytes.Clone(it.Value())
		}
		var ev *Event
		if err == nil {
			ev, err = DecodeEvent(raw)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: event %d: %v", ErrCorrupt, seq, err)
		}
		if !f.match(ev) {
			continue
		}
		if ev, _, err = l.leaf(snap, cp, seq, raw); err != nil {
			return nil, err
		}
		out = append(out, Entry{Event: ev, Raw: raw})
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	slices.Reverse(out)
	return out, nil
}

// Wait returns once the log holds more than size events, or when ctx ends
// or the ledger closes.
func (l *Ledger) Wait(ctx context.Context, size uint64) error {
	for {
		l.grownMu.Lock()
		ch := l.grown
		l.grownMu.Unlock()
		if l.Size() > size {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-l.stopped:
			return ErrClosed
		}
	}
}

// grew wakes the callers of Wait; the committer calls it after storing a
// larger size.
func (l *Ledger) grew() {
	l.grownMu.Lock()
	close(l.grown)
	l.grown = make(chan struct{})
	l.grownMu.Unlock()
}

// OpenCalls returns the call.begin events that no call.end or call.aborted
// has closed, oldest first. While the daemon runs these are the calls in
// flight; right after Open they are the calls a crash interrupted.
func (l *Ledger) OpenCalls() ([]*Event, error) {
	if !l.acquire() {
		return nil, ErrClosed
	}
	defer l.release()
	cp := l.latest.Load() // before the snapshot: see Ledger.latest
	snap := l.db.NewSnapshot()
	defer snap.Close()
	var out []*Event
	err := scan(snap, pOpen, func(k, _ []byte) error {
		seq, err := u64(k[len(pOpen):])
		if err != nil || seq >= cp.size {
			return err
		}
		raw, err := getCopy(snap, eventKey(seq))
		if err != nil {
			return fmt.Errorf("event %d: %w", seq, err)
		}
		ev, _, err := l.leaf(snap, cp, seq, raw)
		out = append(out, ev)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open calls: %w", err)
	}
	return out, nil
}

// EndOf returns the seq of the call.end or call.aborted event that closed
// the call.begin at seq; ErrNotFound while the call is open (or seq is not
// a call.begin).
func (l *Ledger) EndOf(begin uint64) (uint64, error) {
	if !l.acquire() {
		return 0, ErrClosed
	}
	defer l.release()
	v, err := getCopy(l.db, endKey(begin))
	if err != nil {
		return 0, fmt.Errorf("end of call %d: %w", begin, err)
	}
	return u64(v)
}

// Get reads a committed key under PrefixExternal.
func (l *Ledger) Get(key []byte) ([]byte, error) {
	if !external(key) {
		return nil, fmt.Errorf("get %q: %w: keys outside %q belong to the ledger", key, ErrInvalid, PrefixExternal)
	}
	if !l.acquire() {
		return nil, ErrClosed
	}
	defer l.release()
	return getCopy(l.db, key)
}

// Scan calls fn for every committed key under prefix, which must begin
// with PrefixExternal, in key order, until fn returns an error.
func (l *Ledger) Scan(prefix []byte, fn func(key, value []byte) error) error {
	if !external(prefix) {
		return fmt.Errorf("scan %q: %w: keys outside %q belong to the ledger", prefix, ErrInvalid, PrefixExternal)
	}
	if !l.acquire() {
		return ErrClosed
	}
	defer l.release()
	return scan(l.db, prefix, fn)
}

type reader interface {
	Get(key []byte) ([]byte, io.Closer, error)
	NewIter(*pebble.IterOptions) (*pebble.Iterator, error)
}

// getCopy returns a copy of the value or ErrNotFound.
func getCopy(r reader, key []byte) ([]byte, error) {
	v, c, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return bytes.Clone(v), nil
}

func scan(r reader, prefix []byte, fn func(key, value []byte) error) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Error(); err != nil {
		it.Close()
		return err
	}
	return it.Close()
}

// privateDir creates dir 0700 or checks an existing one: a directory
// owned by us, tightened to 0700.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s belongs to uid %d, not to this process (uid %d); the state directory must be private to the daemon", dir, st.Uid, os.Geteuid())
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return err
		}
	}
	return nil
}

// pebbleLogger forwards pebble's messages to an optional slog.Logger.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	if p.l != nil {
		p.l.Info(fmt.Sprintf(format, args...), "component", "pebble")
	}
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	if p.l != nil {
		p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
	}
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if p.l != nil {
		p.l.Error(msg, "component", "pebble")
	}
	panic("pebble: " + msg)
}
