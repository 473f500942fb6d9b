package monitor

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/trustcells/tcc/ebpf"
)

// ErrNotSupported means this kernel cannot run the monitor; the error
// wrapping it gives the reason.
var ErrNotSupported = ebpf.ErrNotSupported

// ErrClosed is returned after Monitor.Close or Watch.Close.
var ErrClosed = ebpf.ErrClosed

// ErrWatched means the cgroup is already watched.
var ErrWatched = ebpf.ErrWatched

// ErrFull means Options.MaxCells cells are already watched.
var ErrFull = ebpf.ErrFull

var probe = sync.OnceValue(func() error {
	t, err := ebpf.Load(ebpf.Config{MaxCells: 1, PairsPerCell: 16})
	if err != nil {
		if !errors.Is(err, ErrNotSupported) {
			err = fmt.Errorf("%w: %w", ErrNotSupported, err)
		}
		return fmt.Errorf("probe BPF monitor: %w", err)
	}
	return t.Close()
})

// Probe reports whether the monitor can run here: it loads and attaches the
// programs once, detaches them, and caches the answer. The error wraps
// ErrNotSupported and says why (no BTF, no tp_btf, not permitted…).
func Probe() error { return probe() }

// Start says when a watched cell starts being counted.
type Start int

const (
	// StartAtExec counts from the first execve in the cgroup after Watch
	// (that exec included), leaving out the sandbox's set-up before it.
	StartAtExec Start = iota
	// StartAtWatch counts from Watch on.
	StartAtWatch
)

// DefaultPairsPerCell is Options.PairsPerCell when zero. A baseline may
// hold no more pairs than a cell may record: Watch refuses it otherwise.
const DefaultPairsPerCell = 2048

// DefaultIdleDetach is Options.IdleDetach when zero: calls that come less
// than 2 s apart keep the programs attached, so a steady stream pays no
// attach; a host left idle stops paying the programs' syscall overhead
// 2 s after its last call. docs/notes/004-monitor.md has the figures.
const DefaultIdleDetach = 2 * time.Second

// Options configures a Monitor. The zero value is usable.
type Options struct {
	// MaxCells is how many cells can be watched at once (default 32).
	// Kernel memory is about MaxCells × CPUs × 6.3 KiB plus 64 bytes per
	// possible pair.
	MaxCells uint32
	// PairsPerCell caps the distinct syscall pairs one cell records
	// (default 2048); past it, Counters.PairOverflow counts.
	PairsPerCell uint32
	// Start says when counting starts (default StartAtExec).
	Start Start
	// IdleDetach is how long the programs stay attached once no cell is
	// watched (default DefaultIdleDetach); negative keeps them attached
	// until Close. Detached, they cost the host's syscalls nothing; the
	// next Watch attaches them again before it returns.
	IdleDetach time.Duration
}

// Monitor owns the BPF programs. They stay loaded, with their maps, until
// Close; they are attached while a cell is watched and for
// Options.IdleDetach after the last Watch is closed.
type Monitor struct {
	opts Options
	tr   *ebpf.Tracer

	// mu orders attaching (in Watch) and the idle detach: a Watch and a
	// detach that race are one before the other, and a Watch returns with
	// the programs attached.
	mu        sync.Mutex
	closed    bool
	watches   map[uint64]*Watch
	idle      *time.Timer // the pending idle detach, if any
	idleGen   uint64      // bumped whenever a pending detach is called off
	detachErr error       // of the idle detaches, for Close
	done      chan struct{}

	beforeDetach func() // tests: runs when the idle timer fires, without m.mu
}

// Open loads and attaches the BPF programs; they are detached after
// Options.IdleDetach unless a cell is watched by then. Close unloads them.
func Open(opts Options) (*Monitor, error) {
	if opts.PairsPerCell == 0 {
		opts.PairsPerCell = DefaultPairsPerCell
	}
	if opts.IdleDetach == 0 {
		opts.IdleDetach = DefaultIdleDetach
	}
	tr, err := ebpf.Load(ebpf.Config{MaxCells: opts.MaxCells, PairsPerCell: opts.PairsPerCell})
	if err != nil {
		return nil, fmt.Errorf("open monitor: %w", err)
	}
	m := &Monitor{opts: opts, tr: tr, watches: make(map[uint64]*Watch), done: make(chan struct{})}
	m.mu.Lock()
	m.armIdle()
	m.mu.Unlock()
	go m.readEvents()
	return m, nil
}

// armIdle schedules the idle detach if no cell is watched. m.mu is held.
func (m *Monitor) armIdle() {
	if m.closed || len(m.watches) > 0 || m.opts.IdleDetach < 0 {
		return
	}
	m.cancelIdle()
	gen := m.idleGen
	m.idle = time.AfterFunc(m.opts.IdleDetach, func() { m.detachIdle(gen) })
}

// cancelIdle calls off the pending idle detach. A timer that has already
// fired may be waiting for m.mu: the new generation tells it it is stale.
// m.mu is held.
func (m *Monitor) cancelIdle() {
	m.idleGen++
	if m.idle != nil {
		m.idle.Stop()
		m.idle = nil
	}
}

// detachIdle detaches the programs, unless a Watch came (or a newer
// detach was scheduled) since the timer of generation gen was armed.
func (m *Monitor) detachIdle(gen uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if hook := m.beforeDetach; hook != nil {
		m.mu.Unlock()
		hook()
		m.mu.Lock()
	}
	if m.closed || gen != m.idleGen || len(m.watches) > 0 {
		return
	}
	m.idle = nil
	if err := m.tr.Detach(); err != nil {
		m.detachErr = errors.Join(m.detachErr, err)
	}
}

// readEvents forwards kernel notifications to the watches they concern.
func (m *Monitor) readEvents() {
	defer close(m.done)
	for {
		id, err := m.tr.ReadEvent()
		if err != nil {
			// Closed, or a ring buffer that cannot be read: either way the
			// counters, which Poll reads, stay authoritative.
			return
		}
		m.mu.Lock()
		w := m.watches[id]
		m.mu.Unlock()
		if w != nil {
			select {
			case w.notify <- struct{}{}:
			default:
			}
		}
	}
}

// Close closes the watches still open (without their final counters) and
// detaches and unloads the programs. It returns the errors of the idle
// detaches too.
func (m *Monitor) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.cancelIdle()
	ws := make([]*Watch, 0, len(m.watches))
	for _, w := range m.watches {
		ws = append(ws, w)
	}
	errs := []error{m.detachErr}
	m.mu.Unlock()
	for _, w := range ws {
		if _, err := w.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, m.tr.Close())
	<-m.done
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close monitor: %w", err)
	}
	return nil
}

// Watch is one watched cell.
type Watch struct {
	m        *Monitor
	cell     *ebpf.Cell
	id       uint64
	missed0  uint64
	notify   chan struct{}
	closeErr error
	final    *Counters
	mu       sync.Mutex
}

// Watch starts watching the cell whose cgroup2 directory has inode number
// cgroupID. With a baseline, the kernel counts syscall pairs missing from
// it (Counters.NovelPairs) as they happen; baseline may be nil.
//
// Call it after the sandbox is started and before the cell binary is
// exec'd: with StartAtExec, a Watch made after the exec counts nothing.
// The programs are attached when it returns (the first Watch after an idle
// detach attaches them), so no event of the cell after that is missed.
func (m *Monitor) Watch(cgroupID uint64, baseline *Baseline) (*Watch, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.addWatch(cgroupID, baseline)
}

// addWatch is Watch with m.mu held.
func (m *Monitor) addWatch(cgroupID uint64, baseline *Baseline) (*Watch, error) {
	if m.closed {
		return nil, ErrClosed
	}
	// From here on the programs stay attached: the idle detach is called
	// off first, then they are attached if it already happened. A Watch
	// that fails leaves them to a new idle detach.
	m.cancelIdle()
	w, err := m.watch(cgroupID, baseline)
	if err != nil {
		m.armIdle()
		return nil, err
	}
	m.watches[cgroupID] = w
	return w, nil
}

func (m *Monitor) watch(cgroupID uint64, baseline *Baseline) (*Watch, error) {
	if err := m.tr.Attach(); err != nil {
		return nil, fmt.Errorf("watch cgroup %d: %w", cgroupID, err)
	}
	opts := ebpf.CellOptions{ArmAtExec: m.opts.Start == StartAtExec}
	if baseline != nil {
		opts.Known = baseline.Pairs
		if opts.Known == nil {
			opts.Known = [][2]uint32{} // a baseline with no pairs: every pair is novel
		}
	}
	missed, err := m.tr.Missed()
	if err != nil {
		return nil, fmt.Errorf("watch cgroup %d: %w", cgroupID, err)
	}
	cell, err := m.tr.AddCell(cgroupID, opts)
	if err != nil {
		return nil, err
	}
	return &Watch{m: m, cell: cell, id: cgroupID, missed0: missed, notify: make(chan struct{}, 1)}, nil
}

// CgroupID returns the watched cgroup's id.
func (w *Watch) CgroupID() uint64 { return w.id }

// Notify returns a channel that receives (coalesced) when the kernel sees
// something notable in this cell: a novel pair (the 1st, 2nd, 4th, 8th…),
// a seccomp kill, an ia32 syscall, a lost event. Read the counters to see
// what.
func (w *Watch) Notify() <-chan struct{} { return w.notify }

// Poll reads the scalar counters only (no syscall, pair or byte
// histograms, no entropy): one per-CPU map lookup, for a tight loop.
func (w *Watch) Poll() (Counters, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.final != nil {
		return Counters{}, ErrClosed
	}
	return w.read(false)
}

// Snapshot reads all counters.
func (w *Watch) Snapshot() (Counters, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.final != nil {
		return Counters{}, ErrClosed
	}
	return w.read(true)
}

func (w *Watch) read(full bool) (Counters, error) {
	s, err := w.cell.Stats()
	if err != nil {
		return Counters{}, err
	}
	missed, err := w.m.tr.Missed()
	if err != nil {
		return Counters{}, err
	}
	c := Counters{
		TotalSyscalls:  s.Syscalls,
		OtherSyscalls:  s.Other,
		CompatSyscalls: s.Compat,
		BytesWritten:   s.BytesWritten,
		BytesSampled:   s.BytesSampled,
		Unsampled:      s.Unsampled,
		Forks:          s.Forks,
		Threads:        s.Threads,
		Execs:          s.Execs,
		Exits:          s.Exits,
		NovelPairs:     s.NovelPairs,
		PairOverflow:   s.PairOverflow,
		Dropped:        s.Dropped,
		Missed:         missed - w.missed0,
		Kills:          s.Kills,
	}
	for _, k := range s.Killed {
		sk := SeccompKill{Nr: k.Nr, Name: SyscallName(k.Nr), Compat: k.Compat}
		if k.Compat {
			sk.Name = "ia32 syscall " + strconv.FormatUint(uint64(k.Nr), 10)
		}
		c.SeccompKills = append(c.SeccompKills, sk)
	}
	if !full {
		return c, nil
	}
	h, err := w.cell.Hist()
	if err != nil {
		return Counters{}, err
	}
	c.Syscalls = make(map[uint32]uint64)
	for nr, n := range h.Syscalls {
		if n > 0 {
			c.Syscalls[uint32(nr)] = n
		}
	}
	c.Bytes = h.Bytes
	if c.Pairs, err = w.cell.Pairs(); err != nil {
		return Counters{}, err
	}
	return c, nil
}

// Close stops watching, returns the final counters, and deletes every
// kernel map entry of the cell, checking that none is left. Call it once
// the cell's processes are gone. Later calls return the same result.
//
// When the final counters cannot be read, the error says why and the
// counters returned have Unread set, so that they report Lost: a caller
// that judges them fails closed. When only the wipe check fails (an
// *ebpf.ResidueError), the counters are complete.
func (w *Watch) Close() (Counters, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.final != nil {
		return *w.final, w.closeErr
	}
	// Stop counting, read, then wipe.
	var c Counters
	err := w.cell.Stop()
	if err == nil {
		c, err = w.read(true)
	}
	if err != nil {
		c = Counters{Unread: true}
	}
	err = errors.Join(err, w.cell.Remove())
	w.m.mu.Lock()
	// Once the cell is removed, a new Watch of the same cgroup may have
	// taken its place: that one stays, and keeps the programs attached.
	if w.m.watches[w.id] == w {
		delete(w.m.watches, w.id)
	}
	w.m.armIdle()
	w.m.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("close watch of cgroup %d: %w", w.id, err)
	}
	w.final, w.closeErr = &c, err
	return c, err
}
