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
	// Signer signs checkpoints.
	Signer note.Signer
	// Origin is the checkpoint origin line, e.g. "tcc.local/ledger". C2SP
	// wants it equal to the key name; empty means Signer.Name(), anything
	// else that differs is refused.
	Origin string
	// CheckpointInterval is the longest an appended event stays without a
	// signed checkpoint covering it (default 1s). A negative value signs
	// one in every committed group.
	CheckpointInterval time.Duration
	// MaxGroup bounds the appends committed in one batch (default 1024).
	MaxGroup int
	// Logger receives pebble's own messages (flushes, background errors).
	// Nil discards them.
	Logger *slog.Logger
	// Now is the clock for Event.TimeNS; nil means time.Now. The
	// checkpoint interval always runs on real time.
	Now func() time.Time

	// testBeforeGroup, when set, runs in the committer before it takes a
	// group from the queue (tests use it to build a group deliberately).
	testBeforeGroup func()
}

// Ledger is the open state directory. All methods are safe for concurrent
// use.
type Ledger struct {
	dir      string
	objects  string
	db       *pebble.DB
	dirLock  io.Closer
	signer   note.Signer
	origin   string
	interval time.Duration
	maxGroup int
	now      func() time.Time
	hook     func()

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

	// Committer-only state.
	frontier map[int64]tlog.Hash // stored hashes of the complete subtrees of the current tree
	lastCP   time.Time
}

type storedCheckpoint struct {
	size   uint64
	hash   tlog.Hash
	signed []byte
}

// Open opens or creates the state directory. It fails with ErrLocked when
// another process holds it.
func Open(ctx context.Context, opts Options) (_ *Ledger, err error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("open ledger: %w: no state directory", ErrInvalid)
	}
	if opts.Signer == nil {
		return nil, fmt.Errorf("open ledger: %w: no checkpoint signer", ErrInvalid)
	}
	origin := opts.Origin
	if origin == "" {
		origin = opts.Signer.Name()
	}
	if origin != opts.Signer.Name() {
		return nil, fmt.Errorf("open ledger: %w: origin %q differs from the checkpoint key name %q; C2SP verifiers expect them equal: generate the key with the origin as its name", ErrInvalid, origin, opts.Signer.Name())
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	l := &Ledger{
		dir:      dir,
		objects:  filepath.Join(dir, "objects"),
		signer:   opts.Signer,
		origin:   origin,
		interval: opts.CheckpointInterval,
		maxGroup: opts.MaxGroup,
		now:      opts.Now,
		hook:     opts.testBeforeGroup,
		wake:     make(chan struct{}, 1),
		stopped:  make(chan struct{}),
		grown:    make(chan struct{}),
	}
	l.idle = sync.NewCond(&l.mu)
	if l.interval == 0 {
		l.interval = time.Second
	}
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
	if err := privateDir(dbDir); err != nil {
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	l.db, err = pebble.Open(dbDir, &pebble.Options{
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{opts.Logger},
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

// load reads the size, the frontier and the latest checkpoint, checks them
// against each other and signs a checkpoint for events a crash left
// uncovered.
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
		return fmt.Errorf("%w: an event is stored at seq %d, past the log size %d", ErrCorrupt, size, size)
	}
	if size > 0 {
		if _, err := getCopy(l.db, eventKey(size-1)); err != nil {
			return fmt.Errorf("%w: last event %d: %v", ErrCorrupt, size-1, err)
		}
	}
	l.size.Store(size)
	l.frontier = map[int64]tlog.Hash{}
	for _, i := range frontierIndexes(size) {
		h, err := readHash(l.db, i)
		if err != nil {
			return err
		}
		l.frontier[i] = h
	}

	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: pCP, UpperBound: prefixEnd(pCP)})
	if err != nil {
		return err
	}
	if it.Last() {
		cpSize, err := u64(it.Key()[len(pCP):])
		if err != nil {
			it.Close()
			return err
		}
		signed := bytes.Clone(it.Value())
		it.Close()
		if cpSize > size {
			return fmt.Errorf("%w: checkpoint for size %d but the log holds %d events", ErrCorrupt, cpSize, size)
		}
		text, err := noteText(signed)
		if err != nil {
			return fmt.Errorf("%w: checkpoint %d: %v", ErrCorrupt, cpSize, err)
		}
		cp, err := ParseCheckpoint(text)
		if err != nil {
			return fmt.Errorf("%w: checkpoint %d: %v", ErrCorrupt, cpSize, err)
		}
		th, err := tlog.TreeHash(int64(cpSize), l.dbHashes())
		if err != nil {
			return fmt.Errorf("%w: tree hash at %d: %v", ErrCorrupt, cpSize, err)
		}
		if cp.Size != cpSize || cp.Hash != th || cp.Origin != l.origin {
			return fmt.Errorf("%w: the stored tree of size %d does not match its signed checkpoint (origin %q)", ErrCorrupt, cpSize, cp.Origin)
		}
		l.latest.Store(&storedCheckpoint{size: cpSize, hash: th, signed: signed})
	} else if err := it.Close(); err != nil {
		return err
	}
	if cur := l.latest.Load(); cur == nil || cur.size < size {
		b := l.db.NewBatch()
		defer b.Close()
		cp, err := l.signCheckpoint(b, size, l.frontierHashes(nil))
		if err != nil {
			return err
		}
		if err := b.Commit(pebble.Sync); err != nil {
			return fmt.Errorf("store checkpoint: %w", err)
		}
		l.latest.Store(cp)
	}
	l.lastCP = time.Now()
	return ctx.Err()
}

// Close commits what is queued, signs a last checkpoint, and closes the
// database. It waits for running reads and iterators to finish.
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

// Event returns the event at seq, decoded and as stored (the Merkle leaf).
func (l *Ledger) Event(seq uint64) (*Event, []byte, error) {
	if !l.acquire() {
		return nil, nil, ErrClosed
	}
	defer l.release()
	if seq >= l.Size() {
		return nil, nil, fmt.Errorf("event %d: %w (log size %d)", seq, ErrNotFound, l.Size())
	}
	raw, err := getCopy(l.db, eventKey(seq))
	if err != nil {
		return nil, nil, fmt.Errorf("event %d: %w", seq, err)
	}
	ev, err := DecodeEvent(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("event %d: %w: %v", seq, ErrCorrupt, err)
	}
	return ev, raw, nil
}

// Filter selects events. Empty fields match everything; Types matches any
// of the listed types.
type Filter struct {
	Tenant  string // uses the tenant index: cheap for exports
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
// An error ends the sequence.
func (l *Ledger) Events(from, to uint64, f Filter) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		if !l.acquire() {
			yield(Entry{}, ErrClosed)
			return
		}
		defer l.release()
		to = min(to, l.Size())
		if from >= to {
			return
		}
		snap := l.db.NewSnapshot()
		defer snap.Close()
		lower, upper, byTenant := eventKey(from), eventKey(to), false
		if f.Tenant != "" {
			lower, upper, byTenant = tenantKey(f.Tenant, from), tenantKey(f.Tenant, to), true
		}
		it, err := snap.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
		if err != nil {
			yield(Entry{}, err)
			return
		}
		defer it.Close()
		for ok := it.First(); ok; ok = it.Next() {
			var raw []byte
			if byTenant {
				seq, err := u64(it.Key()[len(it.Key())-8:])
				if err == nil {
					raw, err = getCopy(snap, eventKey(seq))
				}
				if err != nil {
					yield(Entry{}, fmt.Errorf("tenant index: %w", err))
					return
				}
			} else {
				raw = bytes.Clone(it.Value())
			}
			ev, err := DecodeEvent(raw)
			if err != nil {
				yield(Entry{}, fmt.Errorf("%w: %v", ErrCorrupt, err))
				return
			}
			if f.match(ev) && !yield(Entry{Event: ev, Raw: raw}, nil) {
				return
			}
		}
		if err := it.Error(); err != nil {
			yield(Entry{}, err)
		}
	}
}

// Last returns the last n events that match f, oldest first, reading the
// log backwards from one snapshot (through the tenant index when f names a
// tenant).
func (l *Ledger) Last(n int, f Filter) ([]Entry, error) {
	if !l.acquire() {
		return nil, ErrClosed
	}
	defer l.release()
	if n <= 0 {
		return nil, nil
	}
	size := l.Size()
	snap := l.db.NewSnapshot()
	defer snap.Close()
	lower, upper := eventKey(0), eventKey(size)
	if f.Tenant != "" {
		lower, upper = tenantKey(f.Tenant, 0), tenantKey(f.Tenant, size)
	}
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []Entry
	for ok := it.Last(); ok && len(out) < n; ok = it.Prev() {
		raw := bytes.Clone(it.Value())
		if f.Tenant != "" {
			seq, err := u64(it.Key()[len(it.Key())-8:])
			if err == nil {
				raw, err = getCopy(snap, eventKey(seq))
			}
			if err != nil {
				return nil, fmt.Errorf("tenant index: %w", err)
			}
		}
		ev, err := DecodeEvent(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		if f.match(ev) {
			out = append(out, Entry{Event: ev, Raw: raw})
		}
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
	var seqs []uint64
	if err := scan(l.db, pOpen, func(k, _ []byte) error {
		seq, err := u64(k[len(pOpen):])
		seqs = append(seqs, seq)
		return err
	}); err != nil {
		return nil, fmt.Errorf("open calls: %w", err)
	}
	out := make([]*Event, 0, len(seqs))
	for _, seq := range seqs {
		ev, _, err := l.Event(seq)
		if err != nil {
			return nil, fmt.Errorf("open calls: %w", err)
		}
		out = append(out, ev)
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
