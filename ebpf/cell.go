package ebpf

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
)

// CellOptions configures one watched cell.
type CellOptions struct {
	// ArmAtExec delays counting until a task of the cgroup calls execve
	// (that exec included): the sandbox's own set-up before it execs the
	// cell binary is left out of the fingerprint. Seccomp kills are
	// recorded either way.
	ArmAtExec bool
	// Known are the baseline's syscall pairs; the kernel counts the pairs
	// it sees that are not among them (Stats.NovelPairs). Nil: no baseline,
	// nothing counts as novel; empty: every pair is novel.
	Known [][2]uint32
}

// Stats are a cell's counters, summed over CPUs.
type Stats struct {
	Syscalls     uint64 // syscalls that reached sys_enter
	Other        uint64 // of which numbered >= NrSlots
	Compat       uint64 // ia32 syscalls (int 0x80): not in Syscalls
	BytesWritten uint64 // written by write-family calls (their return values)
	BytesSampled uint64 // of which read into the byte histogram
	Unsampled    uint64 // pieces of written output that could not be read
	Forks        uint64 // new processes
	Threads      uint64 // new threads
	Execs        uint64 // successful execs
	Exits        uint64 // processes whose last thread exited
	NovelPairs   uint64 // new pairs not in CellOptions.Known
	PairOverflow uint64 // new pairs past the budget, not recorded
	Dropped      uint64 // events lost: a map full, no memory
	Kills        uint64 // tasks killed by seccomp
	Killed       []Kill // the first MaxKills per CPU, in time order
}

// Kill is a task killed by seccomp.
type Kill struct {
	Nr     uint32 // the denied syscall
	Compat bool   // Nr is an ia32 (int 0x80) number, not an x86_64 one
	NS     uint64 // when (CLOCK_BOOTTIME)
}

// Hist holds a cell's histograms, summed over CPUs.
type Hist struct {
	Syscalls [NrSlots]uint64 // by syscall number
	Bytes    [256]uint64     // sampled output bytes by value
}

// ResidueError reports map entries of a removed cell that are still there.
type ResidueError struct {
	Cell uint64
	Left []string
}

func (e *ResidueError) Error() string {
	return fmt.Sprintf("BPF state of cgroup %d not wiped: %s", e.Cell, strings.Join(e.Left, "; "))
}

// Cell is one watched cgroup's state in the kernel.
type Cell struct {
	t       *Tracer
	id      uint64
	slot    uint32
	known   []tccPairKey
	removed bool
}

// AddCell starts watching the cgroup2 directory whose inode number is id.
func (t *Tracer) AddCell(id uint64, opts CellOptions) (*Cell, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	if _, ok := t.cells[id]; ok {
		return nil, fmt.Errorf("watch cgroup %d: %w", id, ErrWatched)
	}
	if len(opts.Known) > int(t.cfg.PairsPerCell) {
		return nil, fmt.Errorf("watch cgroup %d: baseline has %d pairs, more than the %d a cell may record",
			id, len(opts.Known), t.cfg.PairsPerCell)
	}
	t.reclaim()
	if slices.ContainsFunc(t.dirty, func(d *Cell) bool { return d.id == id }) {
		return nil, fmt.Errorf("watch cgroup %d: the BPF state of its previous watch could not be wiped", id)
	}
	if len(t.free) == 0 {
		return nil, fmt.Errorf("watch cgroup %d: %w (%d cells watched, %d not wiped)", id, ErrFull, len(t.cells), len(t.dirty))
	}
	c := &Cell{t: t, id: id, slot: t.free[0]}
	for _, p := range opts.Known {
		c.known = append(c.known, tccPairKey{Cgid: id, Prev: p[0], Nr: p[1]})
	}
	if err := c.zeroSlot(); err != nil {
		return nil, fmt.Errorf("watch cgroup %d: %w", id, err)
	}
	flags := uint32(cellArmed)
	if opts.ArmAtExec {
		flags = cellArmAtExec
	}
	if opts.Known != nil {
		flags |= cellKnownPairs
	}
	if len(c.known) > 0 {
		vals := make([]uint8, len(c.known))
		if _, err := t.objs.TccKnown.BatchUpdate(c.known, vals, nil); err != nil {
			_ = c.deleteKnown()
			return nil, fmt.Errorf("watch cgroup %d: load baseline pairs: %w", id, err)
		}
	}
	v := tccCell{Slot: c.slot, Flags: flags, PairBudget: t.cfg.PairsPerCell}
	if err := t.objs.TccCells.Update(id, &v, ebpf.UpdateNoExist); err != nil {
		_ = c.deleteKnown()
		return nil, fmt.Errorf("watch cgroup %d: %w", id, err)
	}
	t.free = t.free[1:]
	t.cells[id] = c
	return c, nil
}

// ID returns the cgroup id.
func (c *Cell) ID() uint64 { return c.id }

func (c *Cell) check() error {
	if c.t.closed {
		return ErrClosed
	}
	if c.removed {
		return fmt.Errorf("cell %d: removed", c.id)
	}
	return nil
}

// Stats reads the counters.
func (c *Cell) Stats() (Stats, error) {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	if err := c.check(); err != nil {
		return Stats{}, err
	}
	return c.stats()
}

func (c *Cell) stats() (Stats, error) {
	var per []tccStats
	if err := c.t.objs.TccStats.Lookup(c.slot, &per); err != nil {
		return Stats{}, fmt.Errorf("read stats of cgroup %d: %w", c.id, err)
	}
	var s Stats
	for _, p := range per {
		s.Syscalls += p.Syscalls
		s.Other += p.Other
		s.Compat += p.Compat
		s.BytesWritten += p.BytesWritten
		s.BytesSampled += p.BytesSampled
		s.Unsampled += p.Unsampled
		s.Forks += p.Forks
		s.Threads += p.Threads
		s.Execs += p.Execs
		s.Exits += p.Exits
		s.NovelPairs += p.NovelPairs
		s.PairOverflow += p.PairOverflow
		s.Dropped += p.Dropped
		s.Kills += p.Kills
		for i := range min(p.Kills, MaxKills) {
			nr := p.KillNr[i]
			s.Killed = append(s.Killed, Kill{Nr: nr &^ killCompat, Compat: nr&killCompat != 0, NS: p.KillNs[i]})
		}
	}
	// Each CPU keeps its own kills: the first one is the earliest, not the
	// first CPU's.
	slices.SortStableFunc(s.Killed, func(a, b Kill) int { return cmp.Compare(a.NS, b.NS) })
	return s, nil
}

// Hist reads the histograms.
func (c *Cell) Hist() (*Hist, error) {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	if err := c.check(); err != nil {
		return nil, err
	}
	return c.hist()
}

func (c *Cell) hist() (*Hist, error) {
	var per []tccHist
	if err := c.t.objs.TccHist.Lookup(c.slot, &per); err != nil {
		return nil, fmt.Errorf("read histograms of cgroup %d: %w", c.id, err)
	}
	h := new(Hist)
	for _, p := range per {
		for i, n := range p.Sys {
			h.Syscalls[i] += n
		}
		for i, n := range p.Bytes {
			h.Bytes[i] += n
		}
	}
	return h, nil
}

// Pairs reads the syscall-pair counts, keyed {previous, current}; a task's
// first syscall has PairStart as its previous.
func (c *Cell) Pairs() (map[[2]uint32]uint64, error) {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	if err := c.check(); err != nil {
		return nil, err
	}
	out := make(map[[2]uint32]uint64)
	err := eachKey(c.t.objs.TccPairs, func(k tccPairKey, v uint64) {
		if k.Cgid == c.id {
			out[[2]uint32{k.Prev, k.Nr}] += v
		}
	})
	if err != nil {
		return nil, fmt.Errorf("read pairs of cgroup %d: %w", c.id, err)
	}
	return out, nil
}

// Remove stops watching the cell, deletes all its map entries, zeroes its
// slot and checks that nothing is left (*ResidueError otherwise).
//
// Call it once the cell's tasks are gone: a program that started before
// the cell entry was deleted can still be writing for a few microseconds,
// which is why the wipe is checked and repeated once. If it still fails,
// the slot stays out of use until a later AddCell wipes it clean.
func (c *Cell) Remove() error {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	if c.t.closed {
		return ErrClosed
	}
	if c.removed {
		return nil
	}
	if err := c.stop(); err != nil {
		return fmt.Errorf("unwatch cgroup %d: %w", c.id, err)
	}
	c.removed = true
	delete(c.t.cells, c.id)
	var err error
	for range 2 {
		if err = c.wipe(); err != nil {
			err = fmt.Errorf("unwatch cgroup %d: %w", c.id, err)
			continue
		}
		if c.t.afterWipe != nil {
			c.t.afterWipe(c)
		}
		if err = c.residue(); err == nil {
			c.t.free = append(c.t.free, c.slot)
			return nil
		}
	}
	// The slot stays out of use until a later wipe of it succeeds.
	c.t.dirty = append(c.t.dirty, c)
	return err
}

// reclaim wipes again the removed cells whose wipe failed, and frees the
// slots of those now clean. A cell whose cgroup is watched again is left
// alone: wiping it would delete the new watch's pairs.
func (t *Tracer) reclaim() {
	kept := t.dirty[:0]
	for _, c := range t.dirty {
		if _, watched := t.cells[c.id]; !watched && c.wipe() == nil && c.residue() == nil {
			t.free = append(t.free, c.slot)
			continue
		}
		kept = append(kept, c)
	}
	clear(t.dirty[len(kept):])
	t.dirty = kept
}

// Stop stops counting: the kernel forgets the cell, but its counters stay
// readable until Remove.
func (c *Cell) Stop() error {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	if err := c.check(); err != nil {
		return err
	}
	if err := c.stop(); err != nil {
		return fmt.Errorf("stop watching cgroup %d: %w", c.id, err)
	}
	return nil
}

func (c *Cell) stop() error {
	err := c.t.objs.TccCells.Delete(c.id)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	return nil
}

func (c *Cell) wipe() error {
	if err := c.deleteKnown(); err != nil {
		return err
	}
	var keys []tccPairKey
	err := eachKey(c.t.objs.TccPairs, func(k tccPairKey, _ uint64) {
		if k.Cgid == c.id {
			keys = append(keys, k)
		}
	})
	if err != nil {
		return fmt.Errorf("list pairs: %w", err)
	}
	if err := deleteKeys(c.t.objs.TccPairs, keys); err != nil {
		return fmt.Errorf("delete pairs: %w", err)
	}
	return c.zeroSlot()
}

func (c *Cell) deleteKnown() error {
	if err := deleteKeys(c.t.objs.TccKnown, c.known); err != nil {
		return fmt.Errorf("delete baseline pairs: %w", err)
	}
	return nil
}

func (c *Cell) zeroSlot() error {
	if err := c.t.objs.TccStats.Update(c.slot, make([]tccStats, c.t.ncpu), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("zero stats slot %d: %w", c.slot, err)
	}
	if err := c.t.objs.TccHist.Update(c.slot, make([]tccHist, c.t.ncpu), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("zero histogram slot %d: %w", c.slot, err)
	}
	return nil
}

// Residue lists the map entries keyed by cgroup id that exist for id:
// none once its cell is removed (or was never added). Slots are checked by
// Remove itself.
func (t *Tracer) Residue(id uint64) ([]string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	return t.residue(id)
}

func (t *Tracer) residue(id uint64) ([]string, error) {
	var left []string
	var v tccCell
	if err := t.objs.TccCells.Lookup(id, &v); err == nil {
		left = append(left, "cell entry")
	} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil, fmt.Errorf("look up cell %d: %w", id, err)
	}
	var pairs, known int
	err := eachKey(t.objs.TccPairs, func(k tccPairKey, _ uint64) {
		if k.Cgid == id {
			pairs++
		}
	})
	if err == nil {
		err = eachKey(t.objs.TccKnown, func(k tccPairKey, _ uint8) {
			if k.Cgid == id {
				known++
			}
		})
	}
	if err != nil {
		return nil, fmt.Errorf("list pairs of cell %d: %w", id, err)
	}
	if pairs > 0 {
		left = append(left, fmt.Sprintf("%d pair entries", pairs))
	}
	if known > 0 {
		left = append(left, fmt.Sprintf("%d baseline pair entries", known))
	}
	return left, nil
}

// residue lists what is left of the cell in every map that can hold it.
// (Per-task state lives in task storage, which the kernel frees with each
// task and which cannot be listed; it holds one syscall number.)
func (c *Cell) residue() error {
	left, err := c.t.residue(c.id)
	if err != nil {
		return fmt.Errorf("check wipe of cgroup %d: %w", c.id, err)
	}
	var per []tccStats
	if err := c.t.objs.TccStats.Lookup(c.slot, &per); err != nil {
		return fmt.Errorf("check wipe of cgroup %d: %w", c.id, err)
	}
	if slices.ContainsFunc(per, func(s tccStats) bool { return s != tccStats{} }) {
		left = append(left, fmt.Sprintf("stats slot %d not zero", c.slot))
	}
	h, err := c.hist()
	if err != nil {
		return err
	}
	if *h != (Hist{}) {
		left = append(left, fmt.Sprintf("histogram slot %d not zero", c.slot))
	}
	if len(left) > 0 {
		return &ResidueError{Cell: c.id, Left: left}
	}
	return nil
}

// eachKey calls fn for every entry of a hash map, in batches.
func eachKey[K comparable, V any](m *ebpf.Map, fn func(K, V)) error {
	const batch = 1024
	keys := make([]K, batch)
	vals := make([]V, batch)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			fn(keys[i], vals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// deleteKeys deletes keys from a hash map; absent keys are not an error.
func deleteKeys[K comparable](m *ebpf.Map, keys []K) error {
	for len(keys) > 0 {
		n, err := m.BatchDelete(keys, nil)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
		// The batch stopped at keys[n], which is absent: skip it.
		keys = slices.Clone(keys[min(n+1, len(keys)):])
	}
	return nil
}
