package ebpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
)

// ErrNotSupported means the kernel cannot run the programs: no BTF, no
// tp_btf or task storage, missing privileges. The error wrapping it says
// which.
var ErrNotSupported = errors.New("BPF monitoring not supported")

// ErrClosed is returned by a [Tracer] or [Cell] used after Close.
var ErrClosed = errors.New("BPF tracer closed")

// ErrFull means every cell slot is in use.
var ErrFull = errors.New("no free BPF cell slot")

// ErrWatched means the cgroup already has a cell.
var ErrWatched = errors.New("cgroup already watched")

// Kernel-side constants, as in tcc.bpf.c.
const (
	// NrSlots is the size of the syscall histogram; larger numbers count in
	// Stats.Other and appear in pairs as NrOther.
	NrSlots = 512
	// NrOther stands in a pair for a syscall number >= NrSlots.
	NrOther = 0xfffe
	// PairStart is the predecessor in the pair of a task's first syscall.
	PairStart = 0xffff
	// MaxKills is how many seccomp-killed syscall numbers a cell keeps
	// per CPU; Stats.Kills counts them all.
	MaxKills = 8

	killCompat = 0x80000000

	cellArmed      = 1
	cellArmAtExec  = 2
	cellKnownPairs = 4
)

// Config sizes the maps. Zero fields take the defaults.
type Config struct {
	// MaxCells is how many cells can be watched at once (default 32).
	MaxCells uint32
	// PairsPerCell caps the distinct syscall pairs one cell records
	// (default 2048); more count as Stats.PairOverflow.
	PairsPerCell uint32
}

func (c Config) withDefaults() Config {
	if c.MaxCells == 0 {
		c.MaxCells = 32
	}
	if c.PairsPerCell == 0 {
		c.PairsPerCell = 2048
	}
	return c
}

// Tracer is the loaded set of programs and their maps, and the links that
// attach the programs while they are attached.
type Tracer struct {
	cfg  Config
	ncpu int
	objs objects
	rb   *ringbuf.Reader

	mu     sync.Mutex
	closed bool
	links  []link.Link // nil while detached
	free   []uint32    // FIFO, so a freed slot is reused last
	dirty  []*Cell     // removed, but their wipe failed: retried by AddCell
	cells  map[uint64]*Cell

	afterWipe func(*Cell) // tests: runs between a wipe and its check
}

// objects are the generated programs and maps, without the generated
// variables: a variable keeps .rodata mapped into this process until the
// garbage collector runs, which would outlive Close.
type objects struct {
	tccPrograms
	tccMaps
}

func (o *objects) Close() error {
	return errors.Join(o.tccPrograms.Close(), o.tccMaps.Close())
}

// progOrder is the order in which the programs are attached.
var progOrder = []string{tccProgTccSysEnter, tccProgTccSysExit, tccProgTccFork, tccProgTccExec, tccProgTccExit}

// programs returns every program by name.
func (t *Tracer) programs() map[string]*ebpf.Program {
	return map[string]*ebpf.Program{
		tccProgTccSysEnter: t.objs.TccSysEnter, tccProgTccSysExit: t.objs.TccSysExit,
		tccProgTccFork: t.objs.TccFork, tccProgTccExec: t.objs.TccExec, tccProgTccExit: t.objs.TccExit,
	}
}

var memlockOnce sync.Once

// Load loads the programs and attaches them: a Tracer that loads has
// proved it can attach. Detach and Attach take the links away and back,
// keeping the programs and maps; Close detaches and unloads everything.
func Load(cfg Config) (*Tracer, error) {
	cfg = cfg.withDefaults()
	kspec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("%w: no kernel BTF (/sys/kernel/btf/vmlinux): %w", ErrNotSupported, err)
	}
	// Only kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; there
	// it must be lifted, later it is a no-op.
	memlockOnce.Do(func() { _ = rlimit.RemoveMemlock() })

	spec, err := loadTcc()
	if err != nil {
		return nil, fmt.Errorf("load BPF spec: %w", err)
	}
	spec.Maps[tccMapTccCells].MaxEntries = cfg.MaxCells
	spec.Maps[tccMapTccStats].MaxEntries = cfg.MaxCells
	spec.Maps[tccMapTccHist].MaxEntries = cfg.MaxCells
	// Room for every cell's budget, plus the few entries by which CPUs
	// racing on the budget check can overshoot it.
	spec.Maps[tccMapTccPairs].MaxEntries = cfg.MaxCells*cfg.PairsPerCell + 1024
	spec.Maps[tccMapTccKnown].MaxEntries = cfg.MaxCells * cfg.PairsPerCell

	if err := spec.Variables[tccVarExitHasGroupDead].Set(exitHasGroupDead(kspec)); err != nil {
		return nil, fmt.Errorf("configure BPF programs: %w", err)
	}

	t := &Tracer{cfg: cfg, cells: make(map[uint64]*Cell)}
	if t.ncpu, err = ebpf.PossibleCPU(); err != nil {
		return nil, fmt.Errorf("count CPUs: %w", err)
	}
	if err := spec.LoadAndAssign(&t.objs, nil); err != nil {
		return nil, classify("load BPF programs", err)
	}
	if err := t.attach(); err != nil {
		t.Close()
		return nil, err
	}
	if t.rb, err = ringbuf.NewReader(t.objs.TccEvents); err != nil {
		t.Close()
		return nil, classify("open BPF ring buffer", err)
	}
	for i := range cfg.MaxCells {
		t.free = append(t.free, i)
	}
	return t, nil
}

// exitHasGroupDead reports whether the sched_process_exit tracepoint passes
// group_dead after the task (Linux 6.16 on).
func exitHasGroupDead(kspec *btf.Spec) bool {
	var td *btf.Typedef
	if err := kspec.TypeByName("btf_trace_sched_process_exit", &td); err != nil {
		return false
	}
	ptr, ok := td.Type.(*btf.Pointer)
	if !ok {
		return false
	}
	proto, ok := ptr.Target.(*btf.FuncProto)
	// (void *__data, struct task_struct *p, bool group_dead)
	return ok && len(proto.Params) == 3
}

// classify wraps err in ErrNotSupported when the kernel, not TCC, is at fault.
func classify(op string, err error) error {
	var verr *ebpf.VerifierError
	switch {
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("%w: %s: kernel lacks a feature: %w", ErrNotSupported, op, err)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%w: %s: not permitted (needs root, or CAP_BPF and CAP_PERFMON): %w", ErrNotSupported, op, err)
	case errors.As(err, &verr):
		return fmt.Errorf("%w: %s: the kernel's verifier rejected it: %w", ErrNotSupported, op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// Attach attaches the programs to their tracepoints, unless they are
// attached already. When it returns, every CPU runs them for every event
// that follows (the kernel enables the tracepoints before the attach call
// returns), so a cell added after Attach loses nothing. On error none is
// attached.
func (t *Tracer) Attach() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	return t.attach()
}

func (t *Tracer) attach() error {
	if t.links != nil {
		return nil
	}
	links := make([]link.Link, 0, len(progOrder))
	progs := t.programs()
	for _, name := range progOrder {
		l, err := link.AttachTracing(link.TracingOptions{Program: progs[name], AttachType: ebpf.AttachTraceRawTp})
		if err != nil {
			for _, l := range links {
				_ = l.Close()
			}
			return classify("attach BPF program "+name, err)
		}
		links = append(links, l)
	}
	t.links = links
	return nil
}

// Detach detaches the programs, which stay loaded with their maps, so that
// the host's syscalls no longer run them. A cell watched while they are
// detached counts nothing: call it only when no cell is watched.
func (t *Tracer) Detach() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	return t.detach()
}

// detach closes the links; they are gone even when closing one fails.
func (t *Tracer) detach() error {
	var errs []error
	for _, l := range t.links {
		errs = append(errs, l.Close())
	}
	t.links = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("detach BPF programs: %w", err)
	}
	return nil
}

// Attached reports whether the programs are attached.
func (t *Tracer) Attached() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.links != nil
}

// Close detaches and unloads everything. Cells still open are abandoned:
// their map entries go with the maps.
func (t *Tracer) Close() error {
	t.mu.Lock()
	t.closed = true
	errs := []error{t.detach()}
	t.mu.Unlock()
	if t.rb != nil {
		errs = append(errs, t.rb.Close())
	}
	errs = append(errs, t.objs.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close BPF tracer: %w", err)
	}
	return nil
}

// ObjectIDs identifies a Tracer's kernel objects.
type ObjectIDs struct {
	Programs []ebpf.ProgramID
	Maps     []ebpf.MapID
	Links    []link.ID
}

// IDs returns the IDs of the tracer's programs, maps and links (none while
// detached), for status reports and for checking that Close left none of
// them.
func (t *Tracer) IDs() (ObjectIDs, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ObjectIDs{}, ErrClosed
	}
	var ids ObjectIDs
	// Maps are taken from the programs, which also reference the internal
	// .rodata map.
	for _, p := range t.programs() {
		info, err := p.Info()
		if err != nil {
			return ObjectIDs{}, fmt.Errorf("BPF program info: %w", err)
		}
		id, _ := info.ID()
		ids.Programs = append(ids.Programs, id)
		maps, _ := info.MapIDs()
		for _, m := range maps {
			if !slices.Contains(ids.Maps, m) {
				ids.Maps = append(ids.Maps, m)
			}
		}
	}
	for _, l := range t.links {
		info, err := l.Info()
		if err != nil {
			return ObjectIDs{}, fmt.Errorf("BPF link info: %w", err)
		}
		ids.Links = append(ids.Links, info.ID)
	}
	return ids, nil
}

// ProgramStats returns the kernel's run statistics of each program, by name.
// Run time is only counted while BPF stats are enabled
// (ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)).
func (t *Tracer) ProgramStats() (map[string]ebpf.ProgramStats, error) {
	out := make(map[string]ebpf.ProgramStats)
	for name, p := range t.programs() {
		s, err := p.Stats()
		if err != nil {
			return nil, fmt.Errorf("stats of BPF program %s: %w", name, err)
		}
		out[name] = *s
	}
	return out, nil
}

// Missed is the number of program runs the kernel skipped because another
// BPF program was running on the same CPU. Such a miss may have lost an
// event of any cell.
func (t *Tracer) Missed() (uint64, error) {
	st, err := t.ProgramStats()
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, s := range st {
		n += s.RecursionMisses
	}
	return n, nil
}

// ReadEvent blocks until the kernel sends a notification and returns the
// cgroup id of the cell it concerns: something happened there that is
// worth reading the counters for now (a novel pair, a lost event, a
// seccomp kill, an ia32 syscall). It returns ErrClosed once the tracer is
// closed.
func (t *Tracer) ReadEvent() (uint64, error) {
	rec, err := t.rb.Read()
	if errors.Is(err, os.ErrClosed) {
		return 0, ErrClosed
	}
	if err != nil {
		return 0, fmt.Errorf("read BPF ring buffer: %w", err)
	}
	if len(rec.RawSample) < 8 {
		return 0, fmt.Errorf("read BPF ring buffer: short event (%d bytes)", len(rec.RawSample))
	}
	return binary.NativeEndian.Uint64(rec.RawSample), nil
}
